"""Feature streams keyed by id: imported from each source kind, aligned by id with missing clips
recorded, carried when a cache is extended, read with their own frame rate, chosen with
--inputs, and checked by fingerprint when predicting."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_labels, write_synthetic_cache

from emi_features.cache.reader import open_cache
from emi_features.cli.extract import add_features_command
from emi_features.cli.extract import main as extract_command
from emi_heads.cli.train import train_command
from emi_heads.cli.use import predict_command
from emi_heads.training.config import InputSpec
from emi_heads.training.data import load_inputs

IDS = [f"{i:05d}" for i in range(60)]


@pytest.fixture
def cache(tmp_path):
    latents = np.random.default_rng(3).uniform(size=(60, 6))
    return write_synthetic_cache(tmp_path / "c.h5", IDS, latents), latents


def add(cache_path, name, source, *extra, ok=True):
    result = CliRunner().invoke(
        add_features_command, [str(cache_path), "--stream", name, "--from", str(source), *extra]
    )
    if ok:
        assert result.exit_code == 0, result.output
    return result


def stream(cache_path, name):
    with open_cache(cache_path) as opened:
        return opened.stream(name), opened.ids


def test_per_clip_streams_from_npy_npz_and_csv_align_by_id(cache, tmp_path):
    path, latents = cache
    vectors = {clip_id: latents[k] * 10 for k, clip_id in enumerate(IDS)}
    folder = tmp_path / "npy"
    folder.mkdir()
    for clip_id in IDS[5:]:  # five clips have no features
        np.save(folder / f"{int(clip_id)}.npy", vectors[clip_id])  # unpadded file names
    result = add(path, "vec", folder)
    assert "clip features of width 6 for 55 clips, 5 missing" in result.output
    np.savez(tmp_path / "f.npz", **{k: vectors[k][:3] for k in reversed(IDS)})  # shuffled order
    add(path, "npz", tmp_path / "f.npz")
    lines = ["Filename,a,b"] + [f"{k},{vectors[k][0]},{vectors[k][1]}" for k in IDS[::-1]]
    (tmp_path / "f.csv").write_text("\n".join(lines) + "\n")
    add(path, "csv", tmp_path / "f.csv")
    loaded, ids = stream(path, "vec")
    assert ids == IDS and loaded.present.tolist() == [False] * 5 + [True] * 55
    np.testing.assert_allclose(loaded.values[5:], latents[5:] * 10, rtol=1e-6)
    assert (loaded.values[:5] == 0).all() and loaded.attrs["fingerprint"].startswith("blake2b:")
    np.testing.assert_allclose(stream(path, "npz")[0].values, latents[:, :3] * 10, rtol=1e-6)
    np.testing.assert_allclose(stream(path, "csv")[0].values, latents[:, :2] * 10, rtol=1e-5)
    with open_cache(path) as opened:  # the main groups are untouched by the rewrite
        assert opened.complete and opened.read("mean").shape == (60, 16)


def test_per_frame_stream_is_pooled_with_its_own_frame_rate(cache, tmp_path):
    path, _ = cache
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    frames = {clip_id: rng.normal(size=(int(rng.integers(3, 40)), 4)) for clip_id in IDS}
    for clip_id, array in frames.items():
        np.save(folder / f"{clip_id}.npy", array)
    refused = add(path, "face", folder, ok=False)
    assert refused.exit_code == 1 and "need --frame-rate" in refused.output
    add(path, "face", folder, "--frame-rate", "10")
    np.savez(tmp_path / "frames.npz", **{k: v for k, v in list(frames.items())[::-1]})
    add(path, "face_npz", tmp_path / "frames.npz", "--frame-rate", "10")
    from_folder, from_npz = stream(path, "face")[0], stream(path, "face_npz")[0]
    np.testing.assert_array_equal(from_folder.offsets, from_npz.offsets)
    np.testing.assert_array_equal(from_folder.frames, from_npz.frames)
    with open_cache(path) as opened:
        inputs = load_inputs(opened, IDS, InputSpec(False, True, max_seconds=1.0))
    pooled = inputs.vectors["features/face"].numpy()
    for row, clip_id in enumerate(IDS[:8]):
        first = frames[clip_id][:10].astype(np.float16).astype(np.float64)  # 1 s at 10 frames/s
        expected = np.concatenate([first.mean(0), first.std(0)])
        np.testing.assert_allclose(pooled[row], expected, atol=2e-3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: np.save(d / "99999.npy", np.zeros(3)), "1 id(s) are not in"),
        (lambda d: np.save(d / "00001.npy", np.array([0.0, np.nan, 1.0])), "non-finite"),
        (
            lambda d: (
                np.save(d / "00001.npy", np.zeros(3)),
                np.save(d / "00002.npy", np.zeros(4)),
            ),
            "inconsistent widths",
        ),
        (
            lambda d: np.save(d / "00001.npy", np.array([{"a": 1}], dtype=object)),
            "pickled objects; pass --allow-pickle",
        ),
        (lambda d: (d / "00001.pkl").write_bytes(pickle.dumps(np.zeros(3))), "--allow-pickle"),
    ],
)
def test_bad_sources_are_one_line(cache, tmp_path, make, message):
    path, _ = cache
    folder = tmp_path / "bad"
    folder.mkdir()
    make(folder)
    result = add(path, "bad", folder, ok=False)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_pickle_only_when_allowed_with_a_warning(cache, tmp_path, caplog):
    path, _ = cache
    folder = tmp_path / "pkl"
    folder.mkdir()
    for clip_id in IDS:
        (folder / f"{clip_id}.pkl").write_bytes(pickle.dumps(np.ones(2)))
    add(path, "p", folder, "--allow-pickle")
    assert any("unpickling runs code" in m for m in caplog.messages)
    assert add(path, "p", folder, "--allow-pickle", ok=False).exit_code == 1  # exists already
    add(path, "p", folder, "--allow-pickle", "--overwrite")


def test_a_stream_survives_extending_the_cache_with_another_split(sample_root, tmp_path):
    out = tmp_path / "c.h5"
    args = [str(sample_root), "--model", "fbank", "--out", str(out), "--quiet", "--workers", "0"]
    result = CliRunner().invoke(extract_command, [*args, "--split", "valid"])
    assert result.exit_code == 0, result.output
    with open_cache(out) as opened:
        valid_ids = opened.ids
    csv_lines = ["Filename,x,y"] + [f"{i},{int(i)},{2 * int(i)}" for i in valid_ids]
    (tmp_path / "s.csv").write_text("\n".join(csv_lines) + "\n")
    add(out, "idx", tmp_path / "s.csv")
    result = CliRunner().invoke(extract_command, [*args, "--split", "train"])  # extend
    assert result.exit_code == 0, result.output
    loaded, ids = stream(out, "idx")
    assert ids == sorted(ids) and len(ids) == len(valid_ids) + 8
    for row, clip_id in enumerate(ids):
        if clip_id in valid_ids:
            assert loaded.present[row] and loaded.values[row].tolist() == [
                int(clip_id),
                2 * int(clip_id),
            ]
        else:
            assert not loaded.present[row] and (loaded.values[row] == 0).all()


@pytest.mark.slow
def test_inputs_choose_streams_and_predict_checks_their_fingerprint(cache, tmp_path):
    path, latents = cache
    np.savez(tmp_path / "good.npz", **{k: latents[i] for i, k in enumerate(IDS)})
    add(path, "latent", tmp_path / "good.npz")
    train = write_labels(tmp_path / "t.csv", IDS[:40], latents[:40])
    valid = write_labels(tmp_path / "v.csv", IDS[40:], latents[40:])
    run = tmp_path / "run"
    args = [str(path), "--train", str(train), "--valid", str(valid), "--head", "ridge"]
    result = CliRunner().invoke(
        train_command, [*args, "--inputs", "features/latent", "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["head"]["inputs"] == "features/latent"
    assert config["cache"]["streams"]["latent"].startswith("blake2b:")
    assert json.loads((run / "metrics.json").read_text())["valid_mean_r"] > 0.95  # the labels
    bad = CliRunner().invoke(
        train_command, [*args, "--inputs", "features/nope", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1 and "--inputs: features/nope not in the cache" in bad.output
    np.savez(tmp_path / "other.npz", **{k: latents[i] * 0 + i for i, k in enumerate(IDS)})
    add(path, "latent", tmp_path / "other.npz", "--overwrite")
    predict_args = [str(run), "--cache", str(path), "--ids", str(valid), "--out", str(run) + ".csv"]
    refused = CliRunner().invoke(predict_command, predict_args)
    assert refused.exit_code == 1 and "holds other features under that name" in refused.output


@pytest.mark.slow
def test_a_second_backbone_becomes_a_stream_with_its_own_grid(sample_root, tmp_path, caplog):
    from emi_features.audio.backbones import load_backbone

    caplog.set_level("INFO")
    out = tmp_path / "c.h5"
    base_args = [str(sample_root), "--out", str(out), "--quiet", "--workers", "0"]
    assert CliRunner().invoke(extract_command, [*base_args, "--model", "fbank"]).exit_code == 0
    # an interrupted --stream run left its side cache with the valid clips: the run resumes it
    side = tmp_path / "c.h5.streams" / "fb10.h5"
    side.parent.mkdir()
    partial = [
        str(sample_root),
        "--out",
        str(side),
        "--model",
        "fbank-10ms",
        "--split",
        "valid",
        "--quiet",
        "--workers",
        "0",
    ]
    assert CliRunner().invoke(extract_command, partial).exit_code == 0
    result = CliRunner().invoke(
        extract_command, [*base_args, "--model", "fbank-10ms", "--stream", "fb10"]
    )
    assert result.exit_code == 0, result.output
    assert any("16 clips, 5 already in" in m for m in caplog.messages)
    assert not side.parent.exists()  # attached, then removed
    loaded, ids = stream(out, "fb10")
    assert loaded.kind == "frame" and loaded.attrs["frame_rate"] == 100.0 and loaded.present.all()
    assert loaded.attrs["fingerprint"] == load_backbone("fbank-10ms").fingerprint
    with open_cache(out) as opened:
        samples = opened.read("num_samples")
        main_counts = np.diff(opened.offsets)
    counts = np.diff(loaded.offsets)
    grid = load_backbone("fbank-10ms").grid
    assert [grid.frame_count(n) for n in samples] == counts.tolist()
    assert (counts >= 2 * main_counts - 2).all()  # twice the main stream's 50 frames/s
    again = CliRunner().invoke(
        extract_command, [*base_args, "--model", "fbank-10ms", "--stream", "fb10"]
    )
    assert again.exit_code == 1 and "has a stream 'fb10' already" in again.output
    tiny_args = ["--model", "tiny-random-untrained", "--stream", "tiny", "--pool", "mean"]
    pooled = CliRunner().invoke(extract_command, [*base_args, *tiny_args])
    assert pooled.exit_code == 0, pooled.output
    tiny, _ = stream(out, "tiny")
    assert tiny.kind == "clip" and tiny.values.shape == (16, 128) and tiny.attrs["pooled"]


@pytest.mark.slow
def test_one_lstm_per_frame_stream(cache, tmp_path):
    import torch
    from safetensors.torch import load_file

    path, latents = cache
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for k, clip_id in enumerate(IDS[2:], start=2):  # two clips lack the stream
        np.save(folder / f"{clip_id}.npy", latents[k] + 0.1 * rng.normal(size=(12, 6)))
    add(path, "face", folder, "--frame-rate", "5")
    train = write_labels(tmp_path / "t.csv", IDS[:40], latents[:40])
    valid = write_labels(tmp_path / "v.csv", IDS[40:], latents[40:])
    args = [
        str(path),
        "--train",
        str(train),
        "--valid",
        str(valid),
        "--head",
        "streams-lstm",
        "--hidden",
        "16",
        "--epochs",
        "3",
        "--lr",
        "3e-3",
        "--quiet",
    ]
    result = CliRunner().invoke(train_command, [*args, "--out", str(tmp_path / "both")])
    assert result.exit_code == 0, result.output
    weights = load_file(str(tmp_path / "both" / "weights.safetensors"))
    assert weights["encoders.frames.lstm.weight_ih_l0"].shape[1] == 16 + 3  # frames ⊕ VAD
    assert weights["encoders.seq__features__face.lstm.weight_ih_l0"].shape[1] == 6
    result = CliRunner().invoke(
        train_command, [*args, "--inputs", "features/face", "--out", str(tmp_path / "face")]
    )
    assert result.exit_code == 0, result.output
    only = load_file(str(tmp_path / "face" / "weights.safetensors"))
    assert not any(k.startswith("encoders.frames") for k in only)
    assert torch.isfinite(only["mlp.3.weight"]).all()


def test_modality_dropout_blanks_streams_as_missing_clips_do():
    import torch

    from emi_heads.training.data import drop_streams

    batch = {
        "mean": torch.ones(400, 2),
        "features/text": torch.ones(400, 3),
        "seq/features/face": torch.ones(400, 5, 2),
        "lengths/features/face": torch.full((400,), 5),
        "features/face": torch.ones(400, 4),
    }
    generator = torch.Generator().manual_seed(0)
    assert drop_streams(batch, 0.0, generator) is batch
    dropped = drop_streams(batch, 0.5, generator)
    assert torch.equal(dropped["mean"], batch["mean"])  # the acoustic inputs are never dropped
    blank = (dropped["features/face"] == 0).all(1)
    assert 0.4 < blank.float().mean() < 0.6
    assert torch.equal(blank, (dropped["seq/features/face"] == 0).all(2).all(1))
    assert torch.equal(dropped["lengths/features/face"][blank], torch.ones(int(blank.sum())))
    text_blank = (dropped["features/text"] == 0).all(1)
    assert not torch.equal(text_blank, blank)  # each stream draws its own clips


@pytest.mark.slow
def test_a_head_trained_with_modality_dropout_predicts_clips_that_lack_a_stream(cache, tmp_path):
    """The stream carries the labels exactly but the valid clips lack it: the head trained with
    --modality-dropout falls back on the audio; the one trained without it does not."""
    path, latents = cache
    np.savez(tmp_path / "train_only.npz", **{k: latents[i] for i, k in enumerate(IDS[:40])})
    add(path, "latent", tmp_path / "train_only.npz")
    train = write_labels(tmp_path / "t.csv", IDS[:40], latents[:40])
    valid = write_labels(tmp_path / "v.csv", IDS[40:], latents[40:])
    scores = {}
    for p in ("0", "0.5"):
        out = tmp_path / f"p{p}"
        args = [
            str(path),
            "--train",
            str(train),
            "--valid",
            str(valid),
            "--head",
            "concat",
            "--modality-dropout",
            p,
            "--out",
            str(out),
            "--quiet",
        ]
        result = CliRunner().invoke(train_command, args)
        assert result.exit_code == 0, result.output
        scores[p] = json.loads((out / "metrics.json").read_text())["valid_mean_r"]
        saved = json.loads((out / "config.json").read_text())["train"]
        assert saved["modality_dropout"] == float(p)
    assert scores["0.5"] > scores["0"] + 0.01, scores  # measured 0.932 against 0.907


@pytest.mark.slow
def test_predict_and_runs_use_only_the_inputs_a_run_reads(cache, tmp_path):
    from emi_heads.experiments.compare import compare_runs

    path, latents = cache
    plain = tmp_path / "plain.h5"
    write_synthetic_cache(plain, IDS, latents)  # the same frames, no stream
    np.savez(tmp_path / "s.npz", **{k: latents[i] for i, k in enumerate(IDS)})
    add(path, "latent", tmp_path / "s.npz")
    train = write_labels(tmp_path / "t.csv", IDS[:40], latents[:40])
    valid = write_labels(tmp_path / "v.csv", IDS[40:], latents[40:])
    args = [str(path), "--train", str(train), "--valid", str(valid), "--quiet"]
    for head, inputs in (("concat", ["--inputs", "frame_stats,mean"]), ("ridge", [])):
        result = CliRunner().invoke(
            train_command,
            [
                *args,
                "--head",
                head,
                *inputs,
                "--epochs",
                "2",
                "--min-steps",
                "0",
                "--out",
                str(tmp_path / "runs" / head),
            ],
        )
        assert result.exit_code == 0, result.output
    ids = write_labels(tmp_path / "ids.csv", IDS[40:], latents[40:])
    predicted = CliRunner().invoke(
        predict_command,
        [
            str(tmp_path / "runs" / "concat"),
            "--cache",
            str(plain),
            "--ids",
            str(ids),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 21
    refused = CliRunner().invoke(
        predict_command,
        [
            str(tmp_path / "runs" / "ridge"),
            "--cache",
            str(plain),
            "--ids",
            str(ids),
            "--out",
            str(tmp_path / "q.csv"),
        ],
    )
    assert refused.exit_code == 1 and "reads the stream features/latent" in refused.output
    inputs = {row["head"]: row["inputs"] for row in compare_runs([tmp_path / "runs"])}
    assert inputs["concat"] == "frame_stats,mean"
    assert "features/latent" in inputs["ridge"].split(",")


def test_stream_is_the_one_word_and_the_old_names_still_work_and_say_so(cache, tmp_path):
    path, latents = cache
    np.savez(tmp_path / "s.npz", **{k: latents[i] for i, k in enumerate(IDS)})
    old = CliRunner().invoke(
        add_features_command, [str(path), "--name", "old", "--from", str(tmp_path / "s.npz")]
    )
    assert old.exit_code == 0, old.output
    assert "--name is now --stream" in old.output and "/features/old" in old.output
    assert stream(path, "old")[0].values.shape == (60, 6)
    both = CliRunner().invoke(
        add_features_command,
        [str(path), "--name", "a", "--stream", "b", "--from", str(tmp_path / "s.npz")],
    )
    assert both.exit_code == 2 and "give --stream once" in both.output
    missing = CliRunner().invoke(add_features_command, [str(path), "--from", str(tmp_path)])
    assert missing.exit_code == 2 and "give --stream NAME" in missing.output
    for command in (add_features_command, extract_command):
        assert "--stream" in CliRunner().invoke(command, ["--help"]).output


@pytest.mark.slow
def test_a_stream_no_head_asks_for_is_never_read(cache, tmp_path, monkeypatch):
    """Training and prediction read the streams a head's settings name, nothing else: a cache
    holding a large stream the head never asks for costs it nothing."""
    from emi_features.cache.reader import FeatureCache

    path, latents = cache
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", **{i: rng.standard_normal((40, 8)) for i in IDS})
    np.savez(tmp_path / "face.npz", **{i: latents[k] for k, i in enumerate(IDS)})
    add(path, "big", tmp_path / "big.npz", "--frame-rate", "50")
    add(path, "face", tmp_path / "face.npz")
    read: list[str] = []
    original = FeatureCache.stream_view

    def spy(self, name):
        read.append(name)
        return original(self, name)

    monkeypatch.setattr(FeatureCache, "stream_view", spy)
    labels = write_labels(tmp_path / "t.csv", IDS[:40], latents[:40])
    valid = write_labels(tmp_path / "v.csv", IDS[40:], latents[40:])
    for head, inputs, streams in (
        ("ridge", "frame_stats,features/face", ["face"]),
        ("concat-frames", "frames", []),
        ("lstm", None, []),
    ):
        read.clear()
        run = tmp_path / head
        chosen = [] if inputs is None else ["--inputs", inputs]
        result = CliRunner().invoke(
            train_command,
            [
                str(path),
                "--train",
                str(labels),
                "--valid",
                str(valid),
                "--head",
                head,
                *chosen,
                "--epochs",
                "1",
                "--min-steps",
                "0",
                "--out",
                str(run),
                "--quiet",
            ],
        )
        assert result.exit_code == 0, result.output
        assert "big" not in read and sorted(set(read)) == streams, (head, read)
        assert json.loads((run / "config.json").read_text())["reads"]["streams"] == streams
        read.clear()
        predicted = ["--ids", str(valid), "--out", str(tmp_path / "p.csv")]
        result = CliRunner().invoke(predict_command, [str(run), "--cache", str(path), *predicted])
        assert result.exit_code == 0, result.output
        assert "big" not in read, (head, read)
    read.clear()
    every = ["--head", "ridge", "--out", str(tmp_path / "all"), "--quiet"]
    result = CliRunner().invoke(train_command, [str(path), "--train", str(labels), *every])
    assert result.exit_code == 0 and {"big", "face"} <= set(read)  # no --inputs: every stream


def test_each_stream_records_the_command_that_made_it(cache, tmp_path):
    """A stream's `producer` (with its model and settings): what `emi predict --media` makes
    again, read as data, never parsed from a command line."""
    from emi_features.extraction.remake import ModelPlace, parse_recipe

    path, latents = cache
    np.savez(tmp_path / "face.npz", **{i: latents[k] for k, i in enumerate(IDS)})
    add(path, "face", tmp_path / "face.npz")
    with open_cache(path) as opened:
        assert opened.stream("face").attrs["producer"] == "imported"
        spec = parse_recipe(opened.recipe(), ModelPlace(tmp_path))
    assert spec.streams["face"].producer == "imported"
