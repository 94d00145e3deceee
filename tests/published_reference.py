"""The two published training loops, rebuilt as their public code builds and runs them, to test
the presets' behaviour against (not only their shapes).

Written for these tests from the public code, each line cited:
- `lstm-2024`: github.com/Skyy93/CVPR2024_abaw at 2c4e3c1 — `abaw/model.py` (M:), `abaw/trainer.py`
  (T:), `train_hume.py` (H:), `abaw/abaw_dataset.py` (D:).
- `concat-2026`: github.com/ReLU-H/Team-CASIA26-ABAW-10th-EMI-track at 48ce627 —
  `code_all/emi_mmta_train_v15_ablation.py` (A:), run with `code_all/v15_ablation.sh`'s switches:
  fusion concat, TCN, BiGRU and attention pooling off, VAD module and regulariser on, triplet off.
  The published model has three branches (face, audio, text); from an audio cache only its audio
  branch (`AudioVADBranch`) and the fusion head over that branch's vector are built, and the
  auxiliary loss keeps the audio branch's own weight, 0.35 (A:893-897).

Both take the batches (lists of clip indices) from the caller, so that the same batches in the
same order go through the preset and through this loop; the caller also loads the same initial
weights into both. Dropout is a parameter so that a test can switch it off.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_sequence, unpack_sequence


def pearson_mean(truth: np.ndarray, predictions: np.ndarray) -> float:
    """Mean over the six columns of Pearson's r; a constant column scores 0 (A:165-184)."""
    scores = []
    for column in range(truth.shape[1]):
        x = predictions[:, column].astype(np.float64)
        y = truth[:, column].astype(np.float64)
        if x.std() < 1e-12 or y.std() < 1e-12:
            scores.append(0.0)
            continue
        scores.append(float(np.mean((x - x.mean()) / x.std() * (y - y.mean()) / y.std())))
    return float(np.mean(scores))


# ----------------------------------------------------------------------------- lstm-2024
class AudioOnlySystem(nn.Module):
    """M:30-35: LSTM(width, hidden, 2 layers) over packed sequences; [time-mean of the input
    frames, the top layer's output at each clip's last frame] -> Linear -> tanh -> Linear(6)
    (published: width = hidden = 1027, 2 x 1027 = 2054 into the MLP)."""

    def __init__(self, width: int, hidden: int, mlp_hidden: int):
        super().__init__()
        self.fusion_model = nn.Sequential(
            nn.Linear(width + hidden, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, 6)
        )
        self.lstm_audio = nn.LSTM(width, hidden, num_layers=2, batch_first=True)

    def forward(self, clips: list[torch.Tensor]) -> torch.Tensor:
        """`clips`: (T_i, width) tensors sorted by length, longest first (D:124-125)."""
        pooled = torch.stack([x.mean(0) for x in clips])  # M:57
        output, _ = self.lstm_audio(pack_sequence(clips))  # M:59
        last = torch.stack([x[-1, :] for x in unpack_sequence(output)])  # M:66
        return self.fusion_model(torch.cat([pooled, last], dim=1))  # M:66-70


def train_audio_only_system(
    model: AudioOnlySystem,
    train_clips: list[torch.Tensor],
    train_labels: torch.Tensor,
    epoch_batches: list[list[torch.Tensor]],
    valid_clips: list[torch.Tensor],
    valid_labels: np.ndarray,
) -> dict[str, list]:
    """H:206 AdamW(lr 1e-4, torch's weight decay), H:212-227 the cosine schedule with one
    warm-up epoch stepped per batch, T:76-95 MSE, clipping by value at 100 (H:49), then
    validation every epoch (H:263-269). Returns the lr and loss of every step, the weights
    after each epoch and the valid mean r of each epoch."""
    from transformers import get_cosine_schedule_with_warmup

    steps = len(epoch_batches[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, num_warmup_steps=steps, num_training_steps=steps * len(epoch_batches)
    )
    record: dict[str, list] = {"lr": [], "loss": [], "weights": [], "valid_r": []}
    optimizer.zero_grad(set_to_none=True)  # T:24
    for batches in epoch_batches:
        model.train()
        for index in batches:
            # D:124-130: the batch sorted by length, longest first, the labels permuted with it
            order = sorted(index.tolist(), key=lambda i: -len(train_clips[i]))
            prediction = model([train_clips[i] for i in order])
            loss = F.mse_loss(prediction, train_labels[order])  # T:76-77, loss.py MSE
            loss.backward()
            nn.utils.clip_grad_value_(model.parameters(), 100.0)  # T:84-85
            record["lr"].append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # T:89
            optimizer.zero_grad()  # T:91
            scheduler.step()  # T:94-95
            record["loss"].append(float(loss.detach()))
        record["weights"].append({k: v.detach().clone() for k, v in model.state_dict().items()})
        model.eval()
        with torch.no_grad():
            predictions = torch.cat(
                [model([valid_clips[i]]) for i in range(len(valid_clips))]
            ).numpy()
        record["valid_r"].append(pearson_mean(valid_labels, predictions))
    return record


# ----------------------------------------------------------------------------- concat-2026
def regression_head(width: int, hidden: int, dropout: float) -> nn.Sequential:
    """A:424-431, A:615-622: LayerNorm -> Linear -> GELU -> Dropout -> Linear(6) -> sigmoid."""
    return nn.Sequential(
        nn.LayerNorm(width),
        nn.Linear(width, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, 6),
        nn.Sigmoid(),
    )


class AudioVadConcatFusion(nn.Module):
    """A:490-562 (`AudioVADBranch`, VAD module on, no BiGRU, mean pooling) and A:615-638 (the
    concat fusion head over the branch vectors, here the audio branch's alone)."""

    def __init__(self, in_dim: int, hidden: int = 256, feat_dim: int = 256, dropout: float = 0.2):
        super().__init__()
        self.audio_proj = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout)
        )  # A:505-510
        self.vad_head = nn.Sequential(
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden // 2),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden // 2, 3),
            nn.Sigmoid(),
        )  # A:513-520
        self.fuse_proj = nn.Sequential(
            nn.LayerNorm(hidden + 3),
            nn.Linear(hidden + 3, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
        )  # A:521-526
        self.feat_fc = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, feat_dim))
        self.reg_head = regression_head(feat_dim, hidden, dropout)  # A:538-545
        self.fusion_head = regression_head(feat_dim, hidden, dropout)  # A:615-622

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.audio_proj(x)  # A:547-562
        vad = self.vad_head(a.mean(dim=1))
        a = self.fuse_proj(torch.cat([a, vad.unsqueeze(1).expand(-1, a.size(1), -1)], dim=-1))
        z = self.feat_fc(a.mean(dim=1))
        prediction = self.fusion_head(z).clamp(0.0, 1.0)  # A:634-635
        return prediction, self.reg_head(z), vad


def batch_pearson_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A:187-197: 1 - mean over columns of the batch Pearson r, population sd floored at 1e-8."""
    if prediction.size(0) < 2:
        return prediction.new_tensor(0.0)
    x = prediction - prediction.mean(dim=0, keepdim=True)
    y = target - target.mean(dim=0, keepdim=True)
    sx = x.std(dim=0, keepdim=True, unbiased=False).clamp_min(1e-8)
    sy = y.std(dim=0, keepdim=True, unbiased=False).clamp_min(1e-8)
    return 1.0 - ((x / sx) * (y / sy)).mean(dim=0).mean()


class ModelEma:
    """A:248-317: a shadow of the trainable parameters (decay 0.999 from the first update) and a
    copy of the buffers."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for name, parameter in model.named_parameters():
            self.shadow[name] = self.decay * self.shadow[name] + (1.0 - self.decay) * parameter

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """apply_shadow / restore (A:275-305): exchange the live and the averaged weights."""
        for name, parameter in model.named_parameters():
            live = parameter.detach().clone()
            parameter.copy_(self.shadow[name])
            self.shadow[name] = live


def pool_clip(frames: np.ndarray, steps: int = 128) -> torch.Tensor:
    """A:112-116, A:136-138: one clip's (T, d) frames adaptive-average-pooled to (steps, d)."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))
    return F.adaptive_avg_pool1d(tensor.T[None], steps)[0].T


def train_concat_fusion(
    model: AudioVadConcatFusion,
    train_inputs: torch.Tensor,
    train_labels: torch.Tensor,
    epoch_batches: list[list[torch.Tensor]],
    valid_inputs: torch.Tensor,
    valid_labels: np.ndarray,
) -> dict[str, list]:
    """A:843-1002 with the final run's settings (S: v15_ablation.sh): AdamW(lr 1e-4, weight decay
    1e-4), CosineAnnealingLR(T_max=epochs) stepped per epoch (A:954), loss MSE +
    0.1 min(1, epoch/8) batch Pearson + 0.03 x 0.35 Smooth-L1 of the audio branch's head +
    0.01 mean((v - 0.5)^2) (A:869-923), gradient norm clipped at 1.0 (A:932), the EMA updated
    after every step (A:936-937) and validated each epoch (A:956-963)."""
    epochs = len(epoch_batches)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    ema = ModelEma(model)
    record: dict[str, list] = {"lr": [], "loss": [], "ema": [], "valid_r": []}
    for epoch, batches in enumerate(epoch_batches, start=1):
        model.train()
        lam_corr = 0.10 * min(1.0, epoch / 8)
        for index in batches:
            target = train_labels[index]
            prediction, branch, vad = model(train_inputs[index])
            prediction = torch.nan_to_num(prediction, nan=0.5, posinf=1.0, neginf=0.0)
            loss = (
                F.mse_loss(prediction, target)
                + lam_corr * batch_pearson_loss(prediction, target)
                + 0.03 * (0.35 * F.smooth_l1_loss(branch, target))
                + 0.01 * ((vad - 0.5) ** 2).mean()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            record["lr"].append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            ema.update(model)
            record["loss"].append(float(loss.detach()))
            record["ema"].append({k: v.clone() for k, v in ema.shadow.items()})
        scheduler.step()
        ema.swap(model)
        model.eval()
        with torch.no_grad():
            predictions = model(valid_inputs)[0].numpy()
        ema.swap(model)
        record["valid_r"].append(pearson_mean(valid_labels, predictions))
    return record


# ----------------------------------------------------------------------------- MimicMetrics
# github.com/Dinithipurna/MimicMetrics @f8e24a2, src/staged_fusion_training.py
def mimicmetrics_branch(input_dim: int, hidden: int, dropout: float, attention: bool) -> nn.Module:
    """TextMLPEncoder (lines 303-331) without attention; Audio/VisionAttentionEncoder (lines
    333-397) with it: attn Linear(input, 1); LayerNorm -> Linear -> GELU -> Dropout -> LayerNorm;
    head Dropout -> Linear(hidden, 6)."""
    branch = nn.Module()
    if attention:
        branch.attn = nn.Linear(input_dim, 1)
    branch.proj = nn.Sequential(
        nn.LayerNorm(input_dim),
        nn.Linear(input_dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.LayerNorm(hidden),
    )
    branch.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, 6))
    return branch


def mimicmetrics_fusion(width: int, hidden: int, dropout: float) -> nn.Sequential:
    """FusionRegressor (lines 438-456): LayerNorm -> Dropout -> Linear -> GELU -> Dropout ->
    Linear(6)."""
    return nn.Sequential(
        nn.LayerNorm(width),
        nn.Dropout(dropout),
        nn.Linear(width, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, 6),
    )
