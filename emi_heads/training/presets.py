"""Presets: the published heads with every setting as published (`emi-train --preset NAME`).

Each value was read from the system's public code (the `source` names the files); options given
on the command line still override. Light: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A published head with every setting as published (`emi-train --preset NAME`); options
    given on the command line still override."""

    description: str
    source: str
    head: dict[str, Any]
    train: dict[str, Any]


PRESETS: dict[str, Preset] = {
    "lstm-2024": Preset(
        "the audio-only system (2nd, 6th ABAW EMI, arXiv 2403.11879): frames + frame VAD "
        "(1027-d) -> LSTM(1027, 2 layers), [time-mean, last state] -> Linear(2054) -> tanh "
        "-> Linear(6)",
        "github.com/Skyy93/CVPR2024_abaw @2c4e3c1 (branch blackimgs): abaw/model.py, "
        "train_hume.py, abaw/trainer.py",
        head={
            "head": "lstm",
            "hidden": 1027,
            "layers": 2,
            "dropout": 0.0,
            "mlp_hidden": 2054,
            "use_vad": True,
            "use_mean": True,
            "input_norm": False,
            "mean_input": "frames",
            "output_activation": "none",
            "bias_at_label_mean": False,
            "standardize": False,
        },
        train={
            "loss": "mse",
            "min_steps": 0,
            "select_window": 1,
            "lr": 1e-4,
            "weight_decay": 0.01,  # torch's AdamW default; the code passes none
            "lr_schedule": "warmup-cosine",
            "warmup_fraction": 0.0,
            "warmup_epochs": 1.0,  # train_hume.py: warmup_steps = len(loader) x 1, per batch
            "length_buckets": False,  # a DataLoader with shuffle=True
            "grad_clip": 100.0,
            "clip_mode": "value",
            "epochs": 30,
            "batch_size": 32,
            "max_seconds": 12.0,
            "ema": False,
            "patience": 30,  # every epoch evaluated, none stops the run
            "corr_ramp_epochs": 0,
            "min_improvement": 0.0,
        },
    ),
    "concat-2026": Preset(
        "the concatenation fusion (10th ABAW EMI, arXiv 2603.13760): per stream LayerNorm -> "
        "Linear(256) -> GELU -> Dropout, mean over time, LayerNorm -> Linear(256); VAD latent on "
        "the acoustic stream; shared and auxiliary heads; EMA",
        "github.com/ReLU-H/Team-CASIA26-ABAW-10th-EMI-track @48ce627: code_all/emi_mmta_train_v15_"
        "ablation.py with --fusion_type concat and the temporal modules off",
        head={
            "head": "concat-frames",
            "branch_dim": 256,
            "mlp_hidden": 256,
            "dropout": 0.2,
            "pool_steps": 128,
            "vad_latent": "free",
            "vad_center_weight": 0.01,
            "aux_weight": 0.03,
            "stream_aux_weights": "frames=0.35",  # the audio branch's share (face .2, text .45)
            "aux_loss": "smooth_l1",
            "output_activation": "sigmoid",
            "bias_at_label_mean": False,
            "standardize": False,
        },
        train={
            "loss": "mse+0.1*pearson",
            "min_steps": 0,
            "select_window": 1,
            "corr_ramp_epochs": 8,
            "lr": 1e-4,
            "weight_decay": 1e-4,
            "lr_schedule": "cosine-epoch",
            "warmup_fraction": 0.0,
            "grad_clip": 1.0,
            "clip_mode": "norm",
            "epochs": 30,
            "batch_size": 32,
            "patience": 8,
            "min_improvement": 1e-4,
            "ema": True,
            "ema_decay": 0.999,
            "ema_warmup": False,
            "max_seconds": None,  # whole clips, pooled to 128 steps
            "length_buckets": False,  # a DataLoader with shuffle=True
        },
    ),
}
