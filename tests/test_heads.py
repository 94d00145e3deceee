"""emi-train on small caches written through the real writer: every head learns, controls
don't, seeds repeat, EMA and ablations do what they say, bad labels are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_labels
from safetensors.torch import load_file

from emi_heads.cli.train import train_command
from emi_heads.heads.base import build_head
from emi_heads.heads.reads import branch_inputs
from emi_heads.heads.settings import head_config
from emi_heads.heads.settings_json import head_from_dict
from emi_heads.training.losses import parse_loss, parse_loss_terms
from emi_heads.training.metrics import mean_pearson
from emi_heads.training.optim import Ema

# Short runs (no step floor) for the tests of mechanisms; the defaults are measured in
# bench/learning.py and tested in test_defaults.py
FAST = {
    "ridge": [],
    "concat": ["--lr", "3e-3", "--epochs", "40", "--min-steps", "0"],
    "lstm": ["--lr", "3e-3", "--epochs", "12", "--hidden", "32", "--min-steps", "0"],
}


def run_train(synthetic, head, out, *extra, train="train", ok=True, valid=True):
    args = [
        str(synthetic["cache"]),
        "--train",
        str(synthetic[train]),
        "--head",
        head,
        "--out",
        str(out),
        "--quiet",
        *FAST[head],
        *extra,
    ]
    if valid:
        args += ["--valid", str(synthetic["valid"])]
    result = CliRunner().invoke(train_command, args)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("head", ["ridge", "concat", "lstm"])
def test_each_head_learns_and_beats_a_shuffled_label_control(synthetic, tmp_path, head):
    run_train(synthetic, head, tmp_path / "real")
    run_train(synthetic, head, tmp_path / "control", train="shuffled")
    real, control = metrics(tmp_path / "real"), metrics(tmp_path / "control")
    assert real["valid_mean_r"] > 0.6, real
    assert abs(control["valid_mean_r"]) < 0.25, control
    for name in (
        "weights.safetensors",
        "config.json",
        "log.csv",
        "curves.png",
        "valid_scatter.png",
        "valid_predictions.csv",
    ):
        assert (tmp_path / "real" / name).is_file(), name
    config = json.loads((tmp_path / "real" / "config.json").read_text())
    assert config["cache"]["backbone_fingerprint"] == "synthetic-a"
    assert config["labels"][3] == "Empathic Pain" and config["head"]["head"] == head


@pytest.mark.slow
def test_same_seed_repeats_exactly_and_another_seed_differs(synthetic, tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        run_train(synthetic, "concat", tmp_path / name, "--seed", seed, "--epochs", "5")
    a, b, c = (load_file(str(tmp_path / n / "weights.safetensors")) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert (tmp_path / "a" / "log.csv").read_text().splitlines()[1].split(",")[:4] == (
        tmp_path / "b" / "log.csv"
    ).read_text().splitlines()[1].split(",")[:4]


@pytest.mark.slow
def test_ema_follows_its_formula_and_is_what_is_saved(synthetic, tmp_path):
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = Ema(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # step 1: decay min(0.9, 2/11)
    assert ema.shadow["weight"][0, 0].item() == pytest.approx(1 - 2 / 11)
    for _ in range(200):
        ema.update(model)  # the average converges on a constant model
    assert ema.shadow["weight"][0, 0].item() == pytest.approx(1.0, abs=1e-6)
    # decay ~0: the average is the live model, so the saved weights equal a run without EMA
    run_train(synthetic, "concat", tmp_path / "zero", "--epochs", "3", "--ema-decay", "1e-12")
    run_train(synthetic, "concat", tmp_path / "plain", "--epochs", "3", "--no-ema")
    run_train(synthetic, "concat", tmp_path / "ema", "--epochs", "3", "--ema-decay", "0.99")
    zero, plain, averaged = (
        load_file(str(tmp_path / n / "weights.safetensors")) for n in ("zero", "plain", "ema")
    )
    assert all(torch.allclose(zero[k], plain[k], atol=1e-6) for k in plain)
    assert not all(torch.equal(averaged[k], plain[k]) for k in plain)
    # and the saved, evaluated weights are the average: valid r in log.csv is theirs
    best = metrics(tmp_path / "ema")
    logged = np.genfromtxt(tmp_path / "ema" / "log.csv", delimiter=",", names=True)
    assert best["valid_mean_r"] == pytest.approx(logged["valid_r"][best["best_epoch"] - 1])


def test_ablation_switches_remove_inputs(synthetic, tmp_path):
    dims = {"frame_stats": 32, "mean": 16, "vad": 3, "frame_vad_stats": 6}
    assert branch_inputs(head_config("concat", dims)) == [
        "frame_stats",
        "mean",
        "vad",
        "frame_vad_stats",
    ]
    assert branch_inputs(head_config("concat", dims, use_vad=False, use_mean=False)) == [
        "frame_stats"
    ]
    run_train(synthetic, "lstm", tmp_path / "novad", "--no-vad", "--no-mean", "--epochs", "2")
    weights = load_file(str(tmp_path / "novad" / "weights.safetensors"))
    assert weights["lstm.weight_ih_l0"].shape[1] == 16  # frames only, no +3 VAD
    assert weights["mlp.1.weight"].shape[1] == 32  # LSTM state only, no global mean


@pytest.mark.slow
def test_vad_latent_supervised_free_and_off(synthetic, tmp_path):
    from emi_features.cache.reader import open_cache
    from emi_heads.training.config import TrainConfig, input_spec
    from emi_heads.training.data import load_inputs
    from emi_heads.training.rundir import load_run

    ids = [f"{i:05d}" for i in range(240, 360)]
    latent_error = {}
    for mode in ("supervised", "free", "off"):
        run_train(synthetic, "concat", tmp_path / mode, "--vad-latent", mode, "--epochs", "10")
        weights = load_file(str(tmp_path / mode / "weights.safetensors"))
        assert ("latent.weight" in weights) == (mode != "off")
        assert metrics(tmp_path / mode)["valid_mean_r"] > 0.5
        if mode == "off":
            continue
        model, config = load_run(tmp_path / mode)
        spec = input_spec(head_from_dict(config["head"]), TrainConfig.from_dict(config["train"]))
        with open_cache(synthetic["cache"]) as cache:
            inputs = load_inputs(cache, ids, spec)
        batch = inputs.batch(torch.arange(len(ids)), torch.device("cpu"))
        with torch.no_grad():
            latent = model.latent(model.branches["frame_stats"](batch["frame_stats"]))
        latent_error[mode] = float(((latent - batch["vad"]) ** 2).mean())
    # supervised ties the latent to the cached arousal/dominance/valence; free does not
    assert latent_error["supervised"] < 0.5 * latent_error["free"], latent_error


@pytest.mark.slow
def test_final_model_on_train_plus_valid_without_validation(synthetic, tmp_path):
    args = [
        str(synthetic["cache"]),
        "--train",
        str(synthetic["train"]),
        "--train",
        str(synthetic["valid"]),
        "--head",
        "concat",
        "--out",
        str(tmp_path / "final"),
        "--epochs",
        "3",
        "--quiet",
    ]
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 0, result.output
    assert metrics(tmp_path / "final")["best_epoch"] == 3
    assert len((tmp_path / "final" / "log.csv").read_text().splitlines()) == 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Filename,Admiration\n0,0.5\n", "missing column(s) 'Amusement'"),
        (
            "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy\n"
            "0,0.1,0.2,0.3,0.4,0.5,0.6\n1,0.1,1.5,0.3,0.4,0.5,0.6\n2,0.1,,0.3,0.4,0.5,0.6\n",
            "bad rows (line) 3, 4",
        ),
        (
            "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy\n"
            "0,0.1,0.2,0.3,0.4,0.5,nan\n",
            "bad rows (line) 2",
        ),
        (
            "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy\n"
            "99999,0.1,0.2,0.3,0.4,0.5,0.6\n",
            "1 id(s) of --train are not in the cache: 99999",
        ),
    ],
)
def test_bad_labels_are_one_clear_line(synthetic, tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    synthetic = {**synthetic, "bad": tmp_path / "bad.csv"}
    result = run_train(synthetic, "ridge", tmp_path / "run", train="bad", ok=False)
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_ids_the_cache_skipped_are_left_out_with_a_warning(tmp_path, caplog):
    from conftest import write_synthetic_cache

    ids = [f"{i:05d}" for i in range(40)]
    latents = np.random.default_rng(0).uniform(size=(40, 6))
    cache = write_synthetic_cache(
        tmp_path / "c.h5",
        ids[:38],
        latents[:38],
        skipped={"00038": "empty file", "00039": "no audio track"},
    )
    labels = write_labels(tmp_path / "l.csv", ids, latents)
    result = CliRunner().invoke(
        train_command,
        [str(cache), "--train", str(labels), "--head", "ridge", "--out", str(tmp_path / "run")],
    )
    assert result.exit_code == 0, result.output
    assert any(
        "leaving out 2 id(s) the cache skipped: 00038 (empty file)" in m for m in caplog.messages
    )


def test_losses_parse_and_compute():
    prediction = torch.tensor([[0.1, 0.9], [0.2, 0.5], [0.3, 0.1]])
    target = torch.tensor([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    assert parse_loss("pearson")(prediction, prediction).item() == pytest.approx(0.0, abs=1e-4)
    assert parse_loss("pearson")(prediction, target).item() == pytest.approx(
        1 - mean_pearson(prediction.numpy(), target.numpy()), abs=1e-4
    )
    assert parse_loss("mse")(prediction, target).item() == pytest.approx(
        float(((prediction - target) ** 2).mean())
    )
    combined = parse_loss("mse+0.5*ccc")(prediction, target).item()
    assert combined == pytest.approx(
        parse_loss("mse")(prediction, target).item()
        + 0.5 * parse_loss("ccc")(prediction, target).item()
    )
    # names with digits or underscores, weights like 1e-2
    assert parse_loss_terms("mse+l1+1e-2*smooth_l1+.5*pearson") == [
        (1.0, "mse"),
        (1.0, "l1"),
        (0.01, "smooth_l1"),
        (0.5, "pearson"),
    ]
    wide = torch.tensor([[0.0, 3.0], [0.5, -2.0]])
    assert parse_loss("smooth_l1")(wide, torch.zeros_like(wide)).item() == pytest.approx(
        torch.nn.functional.smooth_l1_loss(wide, torch.zeros_like(wide)).item()
    )
    with pytest.raises(ValueError, match="unknown loss 'huber'; known: mse, l1, smooth_l1"):
        parse_loss("mse+huber")
    with pytest.raises(ValueError, match="'2\\*' is not a term"):
        parse_loss("mse+2*")


@pytest.mark.slow
def test_heads_adapt_to_a_cache_without_vad(tmp_path, caplog):
    from conftest import write_synthetic_cache

    caplog.set_level("INFO")
    ids = [f"{i:05d}" for i in range(60)]
    latents = np.random.default_rng(0).uniform(size=(60, 6))
    cache = write_synthetic_cache(tmp_path / "c.h5", ids, latents, with_vad=False)
    train = write_labels(tmp_path / "train.csv", ids[:40], latents[:40])
    valid = write_labels(tmp_path / "valid.csv", ids[40:], latents[40:])
    for head in ("lstm", "concat"):
        result = CliRunner().invoke(
            train_command,
            [
                str(cache),
                "--train",
                str(train),
                "--valid",
                str(valid),
                "--head",
                head,
                "--out",
                str(tmp_path / head),
                "--epochs",
                "2",
                *(["--hidden", "16"] if head == "lstm" else []),  # a setting of lstm only
                "--quiet",
            ],
        )
        assert result.exit_code == 0, result.output
    assert "lstm head: use_vad=False, not True, on this cache" in caplog.messages
    assert "concat head: vad_latent=free, not supervised, on this cache" in caplog.messages
    # the fallbacks are written back: the saved config describes the head that was trained
    lstm = json.loads((tmp_path / "lstm" / "config.json").read_text())["head"]
    assert lstm["use_vad"] is False
    config = json.loads((tmp_path / "concat" / "config.json").read_text())["head"]
    assert "vad" not in config["dims"] and "frame_vad_stats" not in config["dims"]
    assert config["vad_latent"] == "free"


def test_frame_statistics_are_exact_and_kept_beside_the_cache(synthetic, tmp_path):
    from emi_features.cache.reader import open_cache
    from emi_heads.training.pooled_stats import cache_frame_stats

    cache_path = tmp_path / "copy.h5"
    cache_path.write_bytes(synthetic["cache"].read_bytes())
    with open_cache(cache_path) as cache:
        stats = cache_frame_stats(cache, "frames", max_frames=20)
        sidecars = list(tmp_path.glob("copy.h5.frame-stats-frames-20-*.npy"))
        assert len(sidecars) == 1
        for k in (0, 7, 359):
            frames = cache.clip("frames", k)[:20].astype(np.float64)
            np.testing.assert_allclose(
                stats[k], np.concatenate([frames.mean(0), frames.std(0)]), atol=1e-5
            )
        np.save(sidecars[0], stats * 0)  # a second call reads the sidecar: planted values
        assert np.array_equal(cache_frame_stats(cache, "frames", max_frames=20), stats * 0)


def test_lstm_padded_path_equals_packed_sequences():
    torch.manual_seed(0)
    head = build_head(head_config("lstm", {"frames": 8, "mean": 8, "frame_stats": 16}, hidden=12))
    head.eval()  # no dropout between the layers: both paths see the same network
    frames = torch.randn(4, 30, 8, requires_grad=True)
    lengths = torch.tensor([30, 1, 17, 9])
    packed = head.last_states(frames, lengths, packed=True)
    padded = head.last_states(frames, lengths, packed=False)
    torch.testing.assert_close(padded, packed, atol=1e-6, rtol=1e-5)
    (gradient,) = torch.autograd.grad(padded.sum(), frames)
    assert gradient[1, 1:].abs().max() == 0 and gradient[3, 9:].abs().max() == 0  # no padding


@pytest.mark.slow
def test_masked_attention_pooling_ignores_padding_and_learns(synthetic, tmp_path):
    """`--frame-pool attention` (concat-frames): a clip's vector comes from its own frames only
    — padding of any value changes nothing — and the head learns the synthetic labels."""
    from emi_heads.heads.base import AttentionPool

    torch.manual_seed(0)
    pool = AttentionPool(4)
    frames = torch.randn(2, 6, 4)
    lengths = torch.tensor([3, 6])
    garbage = frames.clone()
    garbage[0, 3:] = 1e4  # what lies past clip 0's end
    np.testing.assert_allclose(
        pool(frames, lengths).detach(), pool(garbage, lengths).detach(), atol=1e-6
    )
    alone = pool(frames[:1, :3], torch.tensor([3]))
    np.testing.assert_allclose(pool(frames, lengths)[0].detach(), alone[0].detach(), atol=1e-6)
    out = tmp_path / "attention"
    result = CliRunner().invoke(
        train_command,
        [
            str(synthetic["cache"]),
            "--train",
            str(synthetic["train"]),
            "--valid",
            str(synthetic["valid"]),
            "--head",
            "concat-frames",
            "--frame-pool",
            "attention",
            "--epochs",
            "8",
            "--min-steps",
            "0",
            "--lr",
            "3e-3",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    weights = load_file(str(out / "weights.safetensors"))
    assert "attention.frames.score.weight" in weights
    assert json.loads((out / "metrics.json").read_text())["valid_mean_r"] > 0.5


def test_pooling_in_blocks_gives_what_pooling_everything_at_once_gives(monkeypatch):
    """A stream's and the frames' clip statistics are pooled a block of clips at a time (memory
    bounded by the block, not the cache); blocks of a few rows give the same numbers, cropped
    or not, clips of no frames included."""
    import emi_heads.training.pooled_stats as pooled
    from emi_heads.training.data import _pooled_in_blocks, _read_clip_rows

    rng = np.random.default_rng(0)
    lengths = np.array([5, 0, 9, 1, 30, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = rng.standard_normal((int(offsets[-1]), 4)).astype(np.float16)
    rows = [4, 0, 1, 2, 5]

    class Dataset:  # h5py's read_direct and shape, on an array
        shape = frames.shape
        dtype = frames.dtype

        def read_direct(self, out, source, target):
            out[target] = frames[source]

    for crop in (None, 6):
        everything, at_once = _read_clip_rows(Dataset(), offsets, rows, crop)
        expected = pooled.pooled_stats(everything, np.diff(at_once))
        monkeypatch.setattr(pooled, "BLOCK_BYTES", 4 * 4 * 7)  # 7 rows a block
        import emi_heads.training.data as data

        monkeypatch.setattr(data, "block_rows", pooled.block_rows)
        np.testing.assert_allclose(
            _pooled_in_blocks(Dataset(), offsets, rows, crop), expected, rtol=1e-6, atol=1e-6
        )
        monkeypatch.undo()
    assert pooled.block_rows(1024) == (64 << 20) // 4096
