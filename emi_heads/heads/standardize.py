"""Per-dimension standardisation of every input a head reads, with the training set's statistics.

Streams differ in scale by orders of magnitude (log-mel energies near -10, layer-normed hidden
states near 0, VAD in [0, 1], a text embedding of unit norm); a head fed them raw spends its
first thousand steps undoing that. The statistics are buffers of the head, so they are saved
with its weights and applied at prediction exactly as in training.
"""

from __future__ import annotations

import torch
from torch import nn

from emi_heads.heads.reads import LAYERS, module_key

MIN_SD = 1e-6  # a dimension that never varies in training is centred, not scaled
CHUNK_ROWS = 1 << 18  # frames summed at once in float64 (2 MiB a column)


def lengths_key(name: str) -> str | None:
    """The batch key holding the lengths of a padded frame input, None for a clip vector."""
    if name in ("frames", "frame_vad"):
        return "lengths"
    if name.startswith("seq/"):
        return f"lengths/{name.removeprefix('seq/')}"
    return None


def column_stats(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d,) mean and sd over the rows of (N, d) values (any float dtype), summed in float64."""
    total = torch.zeros(values.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for first in range(0, len(values), CHUNK_ROWS):
        block = values[first : first + CHUNK_ROWS].double()
        total += block.sum(0)
        squares += (block * block).sum(0)
    count = max(1, len(values))
    mean = total / count
    sd = (squares / count - mean * mean).clamp(min=0).sqrt()
    return mean.float(), torch.where(sd < MIN_SD, torch.ones_like(sd), sd).float()


class Standardizer(nn.Module):
    """(x - mean) / sd for every input named in `dims` (clip vectors (B, d), padded frames
    (B, T, d) whose padding stays zero); `fit` sets the statistics from training inputs."""

    def __init__(self, dims: dict[str, int]):
        super().__init__()
        self.names = sorted(n for n in dims if not n.startswith(f"{LAYERS}/"))  # not inputs
        for name in self.names:
            self.register_buffer(f"mean__{module_key(name)}", torch.zeros(dims[name]))
            self.register_buffer(f"sd__{module_key(name)}", torch.ones(dims[name]))

    def _tensors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"mean__{module_key(name)}"), getattr(self, f"sd__{module_key(name)}")

    @torch.no_grad()
    def fit(self, inputs) -> None:
        """Statistics of loaded training `Inputs`: over clips for vectors, over every frame for
        frame inputs."""
        sources = dict(inputs.vectors)
        if inputs.frames is not None:
            sources["frames"] = inputs.frames
        if inputs.frame_vad is not None:
            sources["frame_vad"] = inputs.frame_vad
        sources.update({f"seq/{n}": q.frames for n, q in inputs.sequences.items()})
        for name in self.names:
            mean, sd = self._tensors(name)
            new_mean, new_sd = column_stats(sources[name])
            mean.copy_(new_mean)
            sd.copy_(new_sd)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(batch)
        for name in self.names:
            if name not in batch:
                continue
            mean, sd = self._tensors(name)
            value = (batch[name].float() - mean) / sd
            lengths = lengths_key(name)
            if lengths is not None and lengths in batch:  # keep the padding at zero
                steps = torch.arange(value.shape[1], device=value.device)
                inside = steps[None, :] < batch[lengths].to(value.device)[:, None]
                value = value * inside[..., None]
            out[name] = value
        return out
