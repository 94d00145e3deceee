"""The newer surfaces checked like the main cache: transcription journals that resume from
whatever a kill leaves, imports that check values after their cast and refuse ambiguity,
streams validated when a cache is opened, and weights that cannot overflow into zeros."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_labels, write_synthetic_cache
from test_text import invoke, tiny_whisper, transcripts_of, wav_cache  # noqa: F401

from emi_features.cache.reader import CacheError, open_cache
from emi_features.cli.extract import add_features_command
from emi_features.cli.text import transcribe_command
from emi_heads.cli.train import train_command
from emi_heads.cli.use import predict_command

IDS = [f"{i:05d}" for i in range(40)]


def journal_of(cache):
    return cache.with_name(f"{cache.name}.streams") / "text.jsonl"


@pytest.mark.slow
def test_a_transcription_killed_twice_before_its_first_batch_resumes(wav_cache, tiny_whisper):  # noqa: F811
    """Real kills (SIGKILL) as soon as the journal exists, twice; then a run finishes."""
    folder, cache = wav_cache
    command = [
        sys.executable,
        "-m",
        "emi_heads",
        "transcribe",
        str(folder),
        "--out",
        str(cache),
        "--model",
        str(tiny_whisper),
        "--max-new-tokens",
        "4",
        "--batch-size",
        "1",
        "--quiet",
    ]
    journal = journal_of(cache)
    for _ in range(2):
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not journal.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait()
    result = invoke(
        transcribe_command,
        folder,
        "--out",
        cache,
        "--model",
        tiny_whisper,
        "--max-new-tokens",
        4,
        "--quiet",
    )
    assert "4 clips transcribed" in result.output
    assert transcripts_of(cache)[0].present.all() and not journal.exists()


@pytest.mark.parametrize(
    "left, kept",
    [
        ("{header}\n", 0),  # killed after the header, before the first batch
        ("{header}\n{header}\n", 0),  # ... twice, by an emi that wrote the header again
        ('{{"model": "x', 0),  # killed while writing the header
        ("{header}\n{row}\n{header}\n", 1),
        ("", 0),
    ],
)
def test_the_journal_tolerates_exactly_what_a_kill_leaves(wav_cache, tiny_whisper, left, kept):  # noqa: F811
    folder, cache = wav_cache
    header = json.dumps({"model": str(tiny_whisper), "language": None, "max_new_tokens": 4})
    row = json.dumps({"id": "00002", "text": "kept", "language": "en"})
    journal = journal_of(cache)
    journal.parent.mkdir()
    journal.write_text(left.format(header=header, row=row))
    result = invoke(
        transcribe_command,
        folder,
        "--out",
        cache,
        "--model",
        tiny_whisper,
        "--max-new-tokens",
        4,
        "--quiet",
    )
    assert "4 clips transcribed" in result.output
    assert (transcripts_of(cache)[0].text[2] == "kept") == bool(kept)


@pytest.mark.parametrize(
    "row, message",
    [
        ('{"id": "00001", "text": 123, "language": "en"}', "must be text"),
        ("42", "not a journal row"),
        ('{"id": "00001", "text": "a\\u0000b", "language": "en"}', "holds a NUL byte"),
        ('{"id": "99999", "text": "a", "language": "en"}', "clip '99999' is not in the cache"),
        ('{"id": "00000", "text": "y", "language": "en"}', "clip '00000' appears twice"),
    ],
)
def test_an_edited_journal_row_is_one_line_naming_it(wav_cache, tiny_whisper, row, message):  # noqa: F811
    folder, cache = wav_cache
    header = json.dumps({"model": str(tiny_whisper), "language": None, "max_new_tokens": 4})
    journal = journal_of(cache)
    journal.parent.mkdir()
    first = '{"id": "00000", "text": "x", "language": "en"}'
    journal.write_text(f"{header}\n{first}\n{row}\n{first}\n")
    result = invoke(
        transcribe_command,
        folder,
        "--out",
        cache,
        "--model",
        tiny_whisper,
        "--max-new-tokens",
        4,
        ok=False,
    )
    assert result.exit_code == 1 and "line 3: " in result.output and message in result.output
    assert "Traceback" not in result.output


def test_a_nul_byte_in_imported_transcripts_is_one_line(wav_cache, tmp_path):  # noqa: F811
    folder, cache = wav_cache
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("Filename,text\n0,hello\x00world\n")
    result = invoke(transcribe_command, folder, "--out", cache, "--transcripts", csv_file, ok=False)
    assert result.exit_code == 1 and "the transcript of 00000 holds a NUL byte" in result.output


def test_predict_weights_that_would_overflow_are_normalised_not_zeros(synthetic, tmp_path):
    runs = []
    for seed in (0, 1):
        runs.append(tmp_path / f"r{seed}")
        invoke(
            train_command,
            synthetic["cache"],
            "--train",
            synthetic["train"],
            "--head",
            "ridge",
            "--out",
            runs[-1],
            "--quiet",
        )
    outputs = []
    for weights in ("1e308,1e308", "1,1"):
        out = tmp_path / f"{weights}.csv"
        invoke(
            predict_command,
            *runs,
            "--cache",
            synthetic["cache"],
            "--ids",
            synthetic["valid"],
            "--weights",
            weights,
            "--out",
            out,
        )
        outputs.append(out.read_text())
    values = [v for line in outputs[0].splitlines()[1:] for v in line.split(",")[1:]]
    assert outputs[0] == outputs[1] and values.count("0.000000") < len(values) / 2
    result = invoke(
        predict_command,
        *runs,
        "--cache",
        synthetic["cache"],
        "--ids",
        synthetic["valid"],
        "--weights",
        "inf,1",
        "--out",
        tmp_path / "x.csv",
        ok=False,
    )
    assert result.exit_code == 1 and "non-negative numbers" in result.output


@pytest.fixture
def cache(tmp_path):
    latents = np.random.default_rng(3).uniform(size=(40, 6))
    return write_synthetic_cache(tmp_path / "c.h5", IDS, latents)


def add(cache, *args):
    return CliRunner().invoke(add_features_command, [str(cache), *map(str, args)])


@pytest.mark.parametrize(
    "values, message",
    [
        (np.full(3, 1e39), "not finite as float32"),
        (np.full((4, 3), 70_000.0), "not finite as float16"),
    ],
)
def test_imported_values_are_checked_after_their_cast(cache, tmp_path, values, message):
    folder = tmp_path / "feats"
    folder.mkdir()
    for clip_id in IDS:
        np.save(folder / f"{clip_id}.npy", values)
    extra = ["--frame-rate", "5"] if values.ndim == 2 else []
    result = add(cache, "--stream", "big", "--from", folder, *extra)
    assert result.exit_code == 1 and message in result.output and "00000" in result.output


def test_two_sources_for_one_id_are_refused(cache, tmp_path):
    folder = tmp_path / "feats"
    folder.mkdir()
    np.save(folder / "00005.npy", np.ones(3))
    np.save(folder / "5.npy", np.zeros(3))
    result = add(cache, "--stream", "twice", "--from", folder)
    assert result.exit_code == 1 and "two sources for id 00005" in result.output
    csv_file = tmp_path / "f.csv"
    csv_file.write_text("Filename,a\n5,1\n00005,2\n")
    result = add(cache, "--stream", "twice", "--from", csv_file)
    assert result.exit_code == 1 and "00005" in result.output and "twice" in result.output


def add_frame_stream(cache, tmp_path) -> None:
    """The stream `s`: 1 to 4 frames of width 3 per clip, at 5 frames/s."""
    folder = tmp_path / "feats"
    folder.mkdir()
    for k, clip_id in enumerate(IDS):
        np.save(folder / f"{clip_id}.npy", np.full((k % 4 + 1, 3), float(k)))
    assert add(cache, "--stream", "s", "--from", folder, "--frame-rate", "5").exit_code == 0


def corrupt(path, edit) -> None:
    with h5py.File(path, "r+") as handle:
        edit(handle)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h["features/s/offsets"].resize((10,)), "offsets"),
        (lambda h: h["features/s/offsets"].__setitem__(3, 0), "offsets"),
        (lambda h: h["features/s"].attrs.__setitem__("frame_rate", 0.0), "frame_rate"),
        (lambda h: h["features/s"].attrs.__setitem__("frame_rate", np.nan), "frame_rate"),
        (lambda h: h["features/s"].attrs.__setitem__("kind", "clip"), "kind"),
        (lambda h: h["features/s/present"].resize((5,)), "present"),
        (lambda h: h.attrs.__setitem__("sample_rate", 0), "sample_rate"),
    ],
)
def test_a_received_cache_with_a_broken_stream_is_refused_on_open(cache, tmp_path, edit, message):
    add_frame_stream(cache, tmp_path)
    with h5py.File(cache, "r+") as handle:  # resizable copies of what the edits change
        group = handle["features/s"]
        for name in ("offsets", "present"):
            data = group[name][()]
            del group[name]
            group.create_dataset(name, data=data, maxshape=(None,))
    open_cache(cache).close()
    corrupt(cache, edit)
    with pytest.raises(CacheError, match=message):
        open_cache(cache)
    labels = write_labels(tmp_path / "l.csv", IDS[:20], np.zeros((20, 6)))
    args = [str(cache), "--train", str(labels), "--head", "ridge", "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_stream_names_that_inputs_cannot_select_are_refused(cache, tmp_path):
    np.savez(tmp_path / "f.npz", **{k: np.ones(3) for k in IDS})
    for name in (".", "a,b", "a b"):
        result = add(cache, "--stream", name, "--from", tmp_path / "f.npz")
        assert result.exit_code == 1 and "a stream name" in result.output, name
    np.savez(tmp_path / "w.npz", **{k: np.ones(0) for k in IDS})
    result = add(cache, "--stream", "empty", "--from", tmp_path / "w.npz")
    assert result.exit_code == 1 and "width 0" in result.output


def test_repeated_seeds_are_refused_before_training(synthetic, tmp_path):
    args = [
        str(synthetic["cache"]),
        "--train",
        str(synthetic["train"]),
        "--head",
        "ridge",
        "--seeds",
        "0,0,1",
        "--out",
        str(tmp_path / "r"),
    ]
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 2 and "--seeds: 0 appears twice" in result.output
    assert not (tmp_path / "r").exists()


def test_a_read_only_cache_is_refused_and_a_rewrite_keeps_the_mode(cache, tmp_path):
    np.savez(tmp_path / "f.npz", **{k: np.ones(3) for k in IDS})
    os.chmod(cache, 0o640)
    assert add(cache, "--stream", "a", "--from", tmp_path / "f.npz").exit_code == 0
    assert os.stat(cache).st_mode & 0o777 == 0o640
    os.chmod(cache, 0o444)
    result = add(cache, "--stream", "b", "--from", tmp_path / "f.npz")
    assert result.exit_code == 1 and "read-only" in result.output
    from emi_features.cli.text import embed_text_command

    embedded = CliRunner().invoke(embed_text_command, [str(cache)])  # refused before any work
    assert embedded.exit_code == 1 and "read-only" in embedded.output
    assert os.stat(cache).st_mode & 0o777 == 0o444
    with open_cache(cache) as opened:
        assert opened.streams() == ["a"]


def test_a_transcript_longer_than_the_encoders_positions_is_truncated(
    wav_cache,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """The tiny encoder has 64 positions; a 200-word transcript is cut to fit, not a crash."""
    from emi_features.cli.text import embed_text_command

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder, cache = wav_cache
    csv_file = tmp_path / "t.csv"
    csv_file.write_text("Filename,text\n0," + " ".join(["wonderful"] * 200) + "\n1,awful\n")
    invoke(transcribe_command, folder, "--out", cache, "--transcripts", csv_file)
    result = invoke(embed_text_command, cache, "--model", "tiny-random")
    assert "width 32 for 2 clips" in result.output


def test_a_killed_rewrite_leaves_no_copy_behind(cache, tmp_path):
    stale = cache.with_name(f".{cache.name}.999999.tmp")  # a dead process's copy
    stale.write_bytes(b"x" * 1000)
    np.savez(tmp_path / "f.npz", **{k: np.ones(3) for k in IDS})
    assert add(cache, "--stream", "a", "--from", tmp_path / "f.npz").exit_code == 0
    assert not stale.exists()


def test_a_csv_too_wide_to_import_is_one_line_before_it_is_read(cache, tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text("Filename," + ",".join(f"c{k}" for k in range(70_000)) + "\n")
    result = add(cache, "--stream", "wide", "--from", wide)
    assert result.exit_code == 1 and "70,001 columns" in result.output


def test_a_held_cache_is_refused_before_any_work(sample_root, tmp_path):
    from emi_features.cli.extract import main as extract_command

    cache = tmp_path / "c.h5"
    invoke(
        extract_command, sample_root, "--model", "fbank", "--out", cache, "--quiet", "--workers", 0
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time;"
            " from emi_features.cache.locks import ExclusiveLock;"
            " held = ExclusiveLock(sys.argv[1], 'c').acquire(); print('held', flush=True); "
            "time.sleep(120)",
            str(cache),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for extra in ([], ["--stream", "fb10", "--model", "fbank-10ms", "--pool", "mean"]):
            args = [sample_root, "--model", "fbank", "--out", cache, "--quiet", "--workers", 0]
            result = invoke(extract_command, *args, *extra, ok=False)
            assert result.exit_code == 1 and "in use by another process" in result.output
            assert not cache.with_name(f"{cache.name}.streams").exists()  # no side extraction
    finally:
        holder.kill()
        holder.wait()


def test_a_full_disk_at_the_lock_is_one_line(cache, tmp_path, monkeypatch):
    import errno

    import emi_features.cache.locks as locks

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(locks.json, "dumps", full)
    np.savez(tmp_path / "f.npz", **{k: np.ones(3) for k in IDS})
    result = add(cache, "--stream", "a", "--from", tmp_path / "f.npz")
    assert result.exit_code == 1 and "no space left on device" in result.output
    assert "Traceback" not in result.output


def test_training_options_that_would_mislead_are_refused(synthetic, tmp_path):
    base = [str(synthetic["cache"]), "--train", str(synthetic["train"])]
    lstm = CliRunner().invoke(
        train_command, [*base, "--head", "lstm", "--inputs", "mean", "--out", str(tmp_path / "a")]
    )
    assert lstm.exit_code == 2 and "the lstm head reads the frames" in lstm.output
    folds = CliRunner().invoke(
        train_command,
        [
            *base,
            "--valid",
            str(synthetic["valid"]),
            "--head",
            "ridge",
            "--folds",
            "100",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert folds.exit_code != 0 and "folds of at least 10 clips" in folds.output
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    dangling = CliRunner().invoke(
        train_command, [*base, "--head", "ridge", "--out", str(tmp_path / "dangling")]
    )
    assert dangling.exit_code == 2 and "is a link to nothing" in dangling.output


def test_from_says_when_a_label_file_changed_since_the_run(synthetic, tmp_path, caplog):
    labels = tmp_path / "train.csv"
    labels.write_text(synthetic["train"].read_text())
    invoke(
        train_command,
        synthetic["cache"],
        "--train",
        labels,
        "--head",
        "ridge",
        "--out",
        tmp_path / "first",
        "--quiet",
    )
    labels.write_text(labels.read_text().replace("0.1250", "0.2500", 5))
    invoke(train_command, "--from", tmp_path / "first", "--out", tmp_path / "again", "--quiet")
    assert any("changed since that run" in m for m in caplog.messages)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda h: h.create_dataset("features/plain", data=np.ones((7, 3))), "/features/plain"),
        (lambda h: h.create_dataset("features/c/values", data=np.ones((5, 3))), "kind clip"),
        (lambda h: h["features/s/offsets"].__setitem__(-1, 10_000), "offsets"),
        (lambda h: h.create_dataset("text/present", data=np.ones(3, dtype=bool)), "/text/present"),
    ],
)
def test_clip_streams_and_plain_arrays_are_checked_on_open(cache, tmp_path, edit, message):
    add_frame_stream(cache, tmp_path)
    with h5py.File(cache, "r+") as handle:
        group = handle.require_group("features/c")
        group.attrs["kind"] = "clip"
        group.create_dataset("present", data=np.ones(len(IDS), dtype=bool))
    corrupt(cache, edit)
    with pytest.raises(CacheError, match=message):
        open_cache(cache)
