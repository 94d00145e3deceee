"""The presets behave as the published loops: from the same initial weights, on the same batches
in the same order, with dropout off, `emi train --preset` and the published loop
(`published_reference.py`, rebuilt from the public code line by line) give the same learning
rate and loss at every step, the same EMA (or live) weights after every step and the same
validation r after every epoch."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from published_reference import (
    AudioOnlySystem,
    AudioVadConcatFusion,
    pool_clip,
    train_audio_only_system,
    train_concat_fusion,
)

import emi_heads.training.steps as steps
import emi_heads.training.train as training
from emi_features.cache.reader import open_cache
from emi_features.core.task import EMOTIONS
from emi_heads.heads.settings import head_config
from emi_heads.training.config import TrainConfig
from emi_heads.training.presets import PRESETS

EPOCHS = 3


def read_split(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    ids = [f"{int(row['Filename']):05d}" for row in rows]
    return ids, np.array([[float(row[e]) for e in EMOTIONS] for row in rows], dtype=np.float32)


def clip_frames(cache_path: Path, ids: list[str], *, with_vad: bool, seconds: float | None):
    """Each clip's frames (⊕ frame VAD) read straight from the cache, (T_i, d) float32."""
    clips = []
    with open_cache(cache_path) as cache:
        keep = None if seconds is None else int(seconds * cache.frames_per_second)
        for clip_id in ids:
            frames = cache.clip("frames", clip_id).astype(np.float32)
            if with_vad:
                frames = np.concatenate([frames, cache.clip("frame_vad", clip_id)], axis=1)
            clips.append(frames[:keep])
    return clips


def train_preset(synthetic, tmp_path, monkeypatch, name: str, **head_overrides):
    """`name` trained EPOCHS epochs with dropout off; returns the initial weights, each epoch's
    batches, each step's (lr, loss, weights after it) and each epoch's valid r."""
    seen: dict = {"batches": [], "steps": []}
    build, order, step = training.build_head, steps.batch_order, steps.train_step

    def spy_build(config):
        model = build(config)
        seen["initial"] = {k: v.clone() for k, v in model.state_dict().items()}
        return model

    def spy_order(count, batch_size, generator, lengths=None):
        assert lengths is None, "batches bucketed by length; published: DataLoader(shuffle=True)"
        batches = order(count, batch_size, generator, lengths)
        seen["batches"].append(batches)
        return batches

    def spy_step(model, batch, target, **options):
        lr = options["optimizer"].param_groups[0]["lr"]
        loss, aux = step(model, batch, target, **options)
        ema = options["ema"]
        weights = ema.shadow if ema is not None else model.state_dict()
        seen["steps"].append((lr, float(loss + aux), {k: v.clone() for k, v in weights.items()}))
        return loss, aux

    monkeypatch.setattr(training, "build_head", spy_build)
    monkeypatch.setattr(steps, "batch_order", spy_order)
    monkeypatch.setattr(steps, "train_step", spy_step)
    preset = PRESETS[name]
    head = head_config(**{**preset.head, "dropout": 0.0, **head_overrides})
    train = TrainConfig(**{**preset.train, "epochs": EPOCHS, "seed": 5})
    result = training.train(
        synthetic["cache"],
        [synthetic["train"]],
        synthetic["valid"],
        tmp_path / name,
        head,
        train,
        device="cpu",
        progress=False,
        preset=name,
    )
    with (result.run_dir / "log.csv").open() as handle:
        seen["valid_r"] = [float(row["valid_r"]) for row in csv.DictReader(handle)]
    assert len(seen["batches"]) == EPOCHS and len(seen["valid_r"]) == EPOCHS
    return seen


def assert_same_run(ours: dict, published: dict, rename, weights_key: str) -> None:
    assert len(ours["steps"]) == len(published["lr"])
    for k, (lr, loss, weights) in enumerate(ours["steps"]):
        assert lr == pytest.approx(published["lr"][k], rel=1e-9, abs=1e-15), f"lr, step {k}"
        assert loss == pytest.approx(published["loss"][k], rel=2e-5, abs=1e-7), f"loss, step {k}"
        if weights_key == "ema" or (k + 1) % len(ours["batches"][0]) == 0:
            expected = published[weights_key][
                k if weights_key == "ema" else (k + 1) // len(ours["batches"][0]) - 1
            ]
            for name, value in rename(weights).items():
                torch.testing.assert_close(
                    value, expected[name], rtol=1e-4, atol=2e-6, msg=f"{name}, step {k}"
                )
    assert ours["valid_r"] == pytest.approx(published["valid_r"], abs=2e-5)


def compare(synthetic, ours, model, rename, inputs_of, published_loop, weights_key) -> None:
    """The published loop from the preset's initial weights on its batches, then every step
    and epoch compared (`assert_same_run`)."""
    train_ids, train_labels = read_split(synthetic["train"])
    valid_ids, valid_labels = read_split(synthetic["valid"])
    model.load_state_dict(rename(ours["initial"]))
    published = published_loop(
        model,
        inputs_of(train_ids),
        torch.from_numpy(train_labels),
        ours["batches"],
        inputs_of(valid_ids),
        valid_labels,
    )
    assert_same_run(ours, published, rename, weights_key)


CONCAT_NAMES = {
    "project.frames.": "audio_proj.",
    "vad_head.": "vad_head.",
    "vad_fuse.": "fuse_proj.",
    "vector.frames.": "feat_fc.",
    "aux_heads.frames.": "reg_head.",
    "fusion.": "fusion_head.",
}


def concat_names(state: dict) -> dict:
    renamed = {}
    for name, value in state.items():
        prefix = next(p for p in CONCAT_NAMES if name.startswith(p))
        renamed[CONCAT_NAMES[prefix] + name.removeprefix(prefix)] = value
    return renamed


@pytest.mark.slow
def test_concat_2026_trains_as_the_published_loop(synthetic, tmp_path, monkeypatch):
    ours = train_preset(synthetic, tmp_path, monkeypatch, "concat-2026")

    def pooled(ids):
        frames = clip_frames(synthetic["cache"], ids, with_vad=False, seconds=None)
        return torch.stack([pool_clip(f, 128) for f in frames])

    model = AudioVadConcatFusion(in_dim=16, dropout=0.0)
    compare(synthetic, ours, model, concat_names, pooled, train_concat_fusion, "ema")


@pytest.mark.slow
def test_lstm_2024_trains_as_the_published_loop(synthetic, tmp_path, monkeypatch):
    width = 16 + 3  # frames ⊕ frame VAD; the published LSTM is as wide as its input (1027)
    ours = train_preset(
        synthetic, tmp_path, monkeypatch, "lstm-2024", hidden=width, mlp_hidden=2 * width
    )

    def lstm_names(state: dict) -> dict:
        """Ours reads [last state, mean]; the published code [mean, last state] (M:66): the
        first layer's columns are swapped, which is the same function."""
        renamed = {f"lstm_audio.{k[5:]}": v for k, v in state.items() if k.startswith("lstm.")}
        first = state["mlp.1.weight"]
        renamed["fusion_model.0.weight"] = torch.cat([first[:, width:], first[:, :width]], 1)
        renamed["fusion_model.0.bias"] = state["mlp.1.bias"]
        renamed["fusion_model.2.weight"] = state["mlp.3.weight"]
        renamed["fusion_model.2.bias"] = state["mlp.3.bias"]
        return renamed

    def clips(ids):
        frames = clip_frames(synthetic["cache"], ids, with_vad=True, seconds=12.0)
        return [torch.from_numpy(f) for f in frames]

    model = AudioOnlySystem(width, width, 2 * width)
    compare(synthetic, ours, model, lstm_names, clips, train_audio_only_system, "weights")
