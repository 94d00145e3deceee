"""Presets reproduce the published heads: layer shapes and parameter counts against reference
modules built as the published code builds them, schedules against the schedulers the published
code used, EMA and loss ramps, and `emi train --preset` with overrides."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from emi_heads.cli.train import train_command
from emi_heads.heads.base import build_head
from emi_heads.heads.settings import head_config
from emi_heads.training.config import TrainConfig
from emi_heads.training.losses import parse_loss
from emi_heads.training.optim import Ema, lr_factor
from emi_heads.training.presets import PRESETS

VAD_CACHE_DIMS = {"frames": 1024, "frame_vad": 3, "mean": 1024, "vad": 3, "frame_stats": 2048}


def shapes(module: nn.Module) -> list[tuple[int, ...]]:
    return sorted(tuple(p.shape) for p in module.parameters())


def reference_lstm_2024() -> nn.Module:
    """The audio-only system's head as its model.py builds it (backbone aside)."""
    model = nn.Module()
    model.lstm_audio = nn.LSTM(1027, 1027, num_layers=2, batch_first=True, bidirectional=False)
    model.fusion_model = nn.Sequential(nn.Linear(2054, 2054), nn.Tanh(), nn.Linear(2054, 6))
    return model


def reference_concat_2026(in_dim: int, hidden: int = 256) -> nn.Module:
    """The concat fusion's audio branch (VAD module on, temporal modules off, mean pooling) and
    its fusion head for one stream, as its v15 ablation script builds them."""

    def regressor(width: int) -> nn.Sequential:
        return nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(0.2),
            nn.Linear(hidden, 6),
            nn.Sigmoid(),
        )

    model = nn.Module()
    model.audio_proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU())
    model.vad_head = nn.Sequential(
        nn.LayerNorm(hidden),
        nn.Linear(hidden, hidden // 2),
        nn.GELU(),
        nn.Linear(hidden // 2, 3),
        nn.Sigmoid(),
    )
    model.fuse_proj = nn.Sequential(nn.LayerNorm(hidden + 3), nn.Linear(hidden + 3, hidden))
    model.feat_fc = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden))
    model.reg_head = regressor(hidden)
    model.fusion_head = regressor(hidden)
    return model


def test_lstm_2024_is_the_published_architecture():
    preset = PRESETS["lstm-2024"]
    head = build_head(head_config(**preset.head, dims=VAD_CACHE_DIMS))
    reference = reference_lstm_2024()
    assert shapes(head) == shapes(reference)
    count = sum(p.numel() for p in head.parameters())
    assert count == sum(p.numel() for p in reference.parameters()) == 21_125_396
    assert head.lstm.input_size == head.lstm.hidden_size == 1027 and head.lstm.dropout == 0
    assert isinstance(head.input_norm, nn.Identity)
    # the mean is the time-mean of the 1027-d input frames over the crop, then no activation
    batch = {
        "frames": torch.randn(2, 5, 1024),
        "frame_vad": torch.rand(2, 5, 3),
        "lengths": torch.tensor([5, 3]),
        "mean": torch.full((2, 1024), 1e6),  # would show up if the cache's /mean were read
    }
    head.eval()
    with torch.no_grad():
        output = head(batch).prediction
        frames = torch.cat([batch["frames"], batch["frame_vad"]], dim=-1)
        state = head.last_states(frames, batch["lengths"])
        mean = torch.stack([frames[0].mean(0), frames[1, :3].mean(0)])
        expected = head.mlp(torch.cat([state, mean], dim=-1))
    torch.testing.assert_close(output, expected)


def test_concat_2026_is_the_published_architecture():
    preset = PRESETS["concat-2026"]
    head = build_head(head_config(**preset.head, dims={"frames": 1024, "mean": 1024}))
    reference = reference_concat_2026(1024)
    assert shapes(head) == shapes(reference)
    assert sum(p.numel() for p in head.parameters()) == sum(
        p.numel() for p in reference.parameters()
    )
    output = head({"frames": torch.randn(4, 37, 1024), "lengths": torch.tensor([37, 1, 20, 5])})
    assert output.prediction.shape == (4, 6) and output.aux["vad_latent"].shape == (4, 3)
    assert ((output.prediction > 0) & (output.prediction < 1)).all()


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_set_every_field_they_name_and_are_valid(name):
    preset = PRESETS[name]
    head_config(**preset.head)
    TrainConfig(**preset.train)
    assert preset.source.startswith("github.com/")


def test_warmup_cosine_is_transformers_schedule_and_cosine_epoch_is_torchs():
    from transformers import get_cosine_schedule_with_warmup

    config = TrainConfig(**PRESETS["lstm-2024"].train)
    steps_per_epoch = 7
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_cosine_schedule_with_warmup(optimizer, steps_per_epoch, steps_per_epoch * 30)
    for step in range(steps_per_epoch * 30):
        assert lr_factor(step, config, steps_per_epoch) == pytest.approx(
            optimizer.param_groups[0]["lr"], abs=1e-12
        ), step
        optimizer.step()
        schedule.step()
    config = TrainConfig(**PRESETS["concat-2026"].train)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30)
    for epoch in range(30):
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            assert lr_factor(step, config, steps_per_epoch) == pytest.approx(
                optimizer.param_groups[0]["lr"], abs=1e-12
            )
        optimizer.step()
        annealing.step()


def test_ema_without_warmup_and_the_correlation_ramp():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = Ema(model, 0.999, warmup=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.shadow["weight"].item() == pytest.approx(0.001)  # 0.999 from the first step
    prediction, target = torch.rand(8, 6), torch.rand(8, 6)
    full = parse_loss("mse+0.1*pearson")(prediction, target)
    ramped = parse_loss("mse+0.1*pearson", correlation_weight=3 / 8)(prediction, target)
    mse = parse_loss("mse")(prediction, target)
    assert (ramped - mse).item() == pytest.approx(3 / 8 * (full - mse).item(), rel=1e-5)


OWN_SIZE = {"lstm-2024": ["--hidden", "24"], "concat-2026": ["--branch-dim", "32"]}  # its head's


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PRESETS))
def test_train_with_a_preset_records_it_and_options_override(synthetic, tmp_path, name):
    out = tmp_path / name
    result = CliRunner().invoke(
        train_command,
        [
            str(synthetic["cache"]),
            "--train",
            str(synthetic["train"]),
            "--valid",
            str(synthetic["valid"]),
            "--preset",
            name,
            "--out",
            str(out),
            "--quiet",
            "--epochs",
            "2",
            *OWN_SIZE[name],
            "--mlp-hidden",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == name
    preset = PRESETS[name]
    for key, value in preset.head.items():
        if key not in ("hidden", "branch_dim", "mlp_hidden"):
            assert config["head"][key] == value, key
    for key, value in preset.train.items():
        if key != "epochs":
            assert config["train"][key] == value or (
                isinstance(value, float) and math.isclose(config["train"][key], value)
            ), key
    assert config["train"]["epochs"] == 2  # given on the command line: it wins
    assert config["head"]["mlp_hidden"] == 16
    log = (out / "log.csv").read_text().splitlines()
    assert len(log) == 3


def test_head_or_preset_is_required(synthetic, tmp_path):
    result = CliRunner().invoke(
        train_command,
        [str(synthetic["cache"]), "--train", str(synthetic["train"]), "--out", str(tmp_path)],
    )
    assert (
        result.exit_code == 2
        and "give --head NAME, --preset NAME or --from RUN_DIR" in result.output
    )
