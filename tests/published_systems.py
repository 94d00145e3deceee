"""Two more published systems, rebuilt as their public code builds and trains them, to test the
recipes against by behaviour: weights transplanted, the same outputs, the same first steps.

Written for these tests from the public code, each line cited:
- `hallmen-2025`: github.com/Skyy93/CVPR2025_abaw at e05e8c3 (branch EMI) — `abaw/model.py`
  (M:), `train_hume.py` (H:), `abaw/trainer.py` (T:), `abaw/abaw_dataset.py` (D:). The
  published model holds its speech and text encoders and fine-tunes them; here the model is
  built from the point where their outputs enter it: the audio states ⊕ VAD (M:56-57), the
  text encoder's first token (M:75) and the face frames (D:64-79).
- `mimicmetrics-2026`: github.com/Dinithipurna/MimicMetrics at f8e24a2 —
  `src/staged_fusion_training.py` (S:), as its argparse defaults run it.

Each loop takes its batches (lists of clip indices) from the caller, so that the same batches in
the same order go through EMI and through this code; the caller loads the same initial weights
into both.
"""

from __future__ import annotations

import math
from copy import deepcopy

import torch
import torch.nn.functional as F
from torch import nn

# ----------------------------------------------------------------------------- hallmen-2025
MAX_FACE_FRAMES = 400  # D:73-79


class HallmenModel(nn.Module):
    """M:41-46 and M:63-82, the task "text+vit+audio" (H:43): LSTM(1027, 1027, 2) over the
    audio frames ⊕ VAD, LSTM(1280, 768, 2) over the face frames, each read at one index per
    clip; [audio, face, text] -> Linear(2563, 1027) -> Tanh -> Linear(1027, 6). Widths are
    parameters so that a test can shrink them."""

    def __init__(
        self,
        audio: int = 1027,
        face: int = 1280,
        face_hidden: int = 768,
        text: int = 768,
        fusion: int = 1027,
    ):
        super().__init__()
        self.fusion_model = nn.Sequential(
            nn.Linear(audio + face_hidden + text, fusion), nn.Tanh(), nn.Linear(fusion, 6)
        )  # M:41-44
        self.lstm_audio = nn.LSTM(audio, audio, num_layers=2, batch_first=True)  # M:45
        self.lstm_vis = nn.LSTM(face, face_hidden, num_layers=2, batch_first=True)  # M:46

    def forward(
        self,
        audio_cat: torch.Tensor,
        effective_lengths: torch.Tensor,
        vision: torch.Tensor,
        length: torch.Tensor,
        text_feat: torch.Tensor,
    ) -> torch.Tensor:
        """`audio_cat` (B, T, 1027) padded; `effective_lengths` (B,) the index + 1 the audio
        state is read at (M:61-62); `vision` (B, 400, 1280) zero-padded with `length` (B,)
        frames each (D:73-79); `text_feat` (B, 768)."""
        features = []
        lstm_audio, _ = self.lstm_audio(audio_cat)  # M:65
        batch_indices = torch.arange(lstm_audio.size(0))
        features.append(lstm_audio[batch_indices, effective_lengths - 1, :])  # M:66-68
        lstm_output, _ = self.lstm_vis(vision)  # M:70
        features.append(lstm_output[batch_indices, length - 1, :])  # M:71-73
        features.append(text_feat)  # M:75-76
        return self.fusion_model(torch.cat(features, dim=1))  # M:78-83


def published_audio_index(samples: torch.Tensor, frames_in_batch: int) -> torch.Tensor:
    """M:53-62: the audio state of a clip of `samples` samples is read at this many frames,
    from the batch's padded frame count: floor(samples / (12 x 16000 / T)), at least 1."""
    factor = 12 * 16000 / frames_in_batch
    return torch.clamp(torch.floor(samples.float() / factor).long(), min=1)


def pad_face(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """D:67-79: each clip's face frames cut or zero-padded to 400, and its length."""
    padded, lengths = [], []
    for tensor in clips:
        length = tensor.size(0)
        if length < MAX_FACE_FRAMES:
            padded.append(F.pad(tensor, (0, 0, 0, MAX_FACE_FRAMES - length)))
        else:
            padded.append(tensor[:MAX_FACE_FRAMES])
            length = MAX_FACE_FRAMES
        lengths.append(length)
    return torch.stack(padded), torch.tensor(lengths)


def train_hallmen(
    model: HallmenModel,
    forward,
    labels: torch.Tensor,
    epoch_batches: list[list[torch.Tensor]],
    valid_forward,
) -> dict[str, list]:
    """H:207 AdamW(lr 1e-4, torch's weight decay), H:213-228 the cosine schedule after one
    warm-up epoch, stepped per batch (T:62-72), MSE (H:54, loss.py), clipping by value at 100
    (H:49, T:55-60). `forward(model, index)` runs a batch; `valid_forward(model)` predicts the
    validation clips. Returns each step's lr and loss, the weights after each epoch and the
    validation predictions of each epoch."""
    from transformers import get_cosine_schedule_with_warmup

    steps = len(epoch_batches[0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, num_training_steps=steps * len(epoch_batches), num_warmup_steps=steps
    )
    record: dict[str, list] = {"lr": [], "loss": [], "weights": [], "valid": []}
    optimizer.zero_grad(set_to_none=True)  # T:23
    for batches in epoch_batches:
        model.train()
        for index in batches:
            loss = F.mse_loss(forward(model, index), labels[index])
            loss.backward()
            nn.utils.clip_grad_value_(model.parameters(), 100.0)
            record["lr"].append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step()
            record["loss"].append(float(loss.detach()))
        record["weights"].append({k: v.detach().clone() for k, v in model.state_dict().items()})
        model.eval()
        with torch.no_grad():
            record["valid"].append(valid_forward(model))
    return record


# ----------------------------------------------------------------------------- mimicmetrics
def attention_pool(sequence: torch.Tensor, mask: torch.Tensor, scorer: nn.Linear) -> torch.Tensor:
    """S:292-300."""
    mask = mask.bool()
    scores = scorer(sequence).squeeze(-1)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=1).masked_fill(~mask, 0.0)
    return (sequence * weights.unsqueeze(-1)).sum(dim=1)


class MimicEncoder(nn.Module):
    """S:303-396: the text encoder (no pooling) and the audio and face encoders (attention
    pooling first): feature / proj LayerNorm -> Linear -> GELU -> Dropout -> LayerNorm, the
    unimodal head Dropout -> Linear(6), removed after its stage (S:329-330)."""

    def __init__(
        self, input_dim: int, hidden_dim: int = 384, dropout: float = 0.45, pooled: bool = True
    ):
        super().__init__()
        self.attn = nn.Linear(input_dim, 1) if pooled else None
        self.proj = nn.Sequential(
            nn.LayerNorm(input_dim),
            nn.Linear(input_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.LayerNorm(hidden_dim),
        )
        self.head: nn.Module | None = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_dim, 6))

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(x if self.attn is None else attention_pool(x, mask, self.attn))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encode(x, mask))


class MimicFusion(nn.Module):
    """S:438-455 FusionRegressor and S:458-514 StackedFusionModel: the encoders' outputs
    [text, audio, face], modality dropout on them in training (S:483-495), LayerNorm -> Dropout
    -> Linear -> GELU -> Dropout -> Linear(6)."""

    def __init__(
        self,
        encoders: list[MimicEncoder],
        hidden: int = 384,
        dropout: float = 0.45,
        modality_drop_prob: float = 0.3,
    ):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)
        width = sum(e.proj[1].out_features for e in encoders)
        self.mlp = nn.Sequential(
            nn.LayerNorm(width),
            nn.Dropout(dropout),
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 6),
        )
        self.modality_drop_prob = modality_drop_prob

    def modality_dropout(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """S:483-495, line for line."""
        if self.modality_drop_prob <= 0.0 or not self.training:
            return feats
        B, N = feats[0].size(0), len(feats)  # noqa: N806
        device = feats[0].device
        keep = (torch.rand(B, N, device=device) >= self.modality_drop_prob).float()
        all_dropped = keep.sum(dim=1) == 0
        if all_dropped.any():
            choice = torch.randint(0, N, (all_dropped.sum(),), device=device)
            keep[all_dropped, choice] = 1.0
        scale = 1.0 / max(1e-3, 1.0 - self.modality_drop_prob)
        return [f * keep[:, i].unsqueeze(1) * scale for i, f in enumerate(feats)]

    def forward(self, inputs: list[tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
        feats = [e.encode(x, m) for e, (x, m) in zip(self.encoders, inputs, strict=True)]
        return self.mlp(torch.cat(self.modality_dropout(feats), dim=1))


def ccc_loss(preds: torch.Tensor, targets: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """S:521-533."""
    loss = torch.tensor(0.0, device=preds.device)
    for d in range(preds.size(1)):
        x, y = preds[:, d], targets[:, d]
        mx, my = x.mean(), y.mean()
        vx, vy = x.var(unbiased=False), y.var(unbiased=False)
        cov = ((x - mx) * (y - my)).mean()
        loss = loss + (1.0 - (2.0 * cov) / (vx + vy + (mx - my).pow(2) + eps))
    return loss / preds.size(1)


def combined_loss(preds: torch.Tensor, targets: torch.Tensor, alpha: float = 0.7) -> torch.Tensor:
    """S:536-539."""
    return alpha * ccc_loss(preds, targets) + (1.0 - alpha) * F.mse_loss(preds, targets)


def pearson_mean(preds: torch.Tensor, targets: torch.Tensor, eps: float = 1e-8) -> float:
    """S:546-558."""
    pc, tc = preds - preds.mean(dim=0, keepdim=True), targets - targets.mean(dim=0, keepdim=True)
    denom = torch.sqrt(pc.pow(2).sum(dim=0) * tc.pow(2).sum(dim=0)).clamp(min=eps)
    return ((pc * tc).sum(dim=0) / denom).clamp(-1.0, 1.0).mean().item()


def mimic_stage(
    model: nn.Module,
    parameters,
    lr_groups,
    forward,
    labels: torch.Tensor,
    epoch_batches: list[list[torch.Tensor]],
    valid_forward,
    valid_labels,
    keep,
    record: dict[str, list],
    patience: int = 10,
) -> None:
    """S:630-702 `train_stage` and S:1041-1101 the fusion loop (the same steps): AdamW
    (weight decay 0.01) over `lr_groups`, ReduceLROnPlateau(max, x0.5, patience max(3,
    patience // 3)) stepped on each epoch's valid r, clipping of `parameters`' norm at 1.0
    (S:601, the whole model's), the best epoch above the best + 1e-4 kept (`keep`: the module
    restored at the end), early stop after `patience` epochs without one. Appends each step's
    lr and loss to `record`."""
    parameters = list(parameters)  # clipped at every step
    optimizer = torch.optim.AdamW(lr_groups, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=max(3, patience // 3)
    )
    best_state, best_val, no_improve = None, -math.inf, 0
    for batches in epoch_batches:
        model.train()
        for index in batches:  # S:593-602
            optimizer.zero_grad()
            loss = combined_loss(forward(index), labels[index])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            record["lr"].append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            record["loss"].append(float(loss.detach()))
        model.eval()
        with torch.no_grad():
            r = pearson_mean(valid_forward(), valid_labels)
        scheduler.step(r)
        record["valid_r"].append(r)
        if r > best_val + 1e-4:
            best_val, best_state, no_improve = r, deepcopy(keep.state_dict()), 0
        else:
            no_improve += 1
            if no_improve >= patience:
                break
    if best_state is not None:
        keep.load_state_dict(best_state)
