"""`concat`: the concatenation fusion of the 10th ABAW EMI track on clip vectors: one branch per
clip input (pooled frames, global mean, VAD, /features/*), concatenated into a shared regression
head, an auxiliary head on each branch, and a 3-d VAD-aware latent on the acoustic branch."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from emi_features.cache.schema import VAD_DIM
from emi_heads.heads.base import Head, HeadOutput, latent_without_cached_vad
from emi_heads.heads.reads import branch_inputs, layer_count, module_key
from emi_heads.heads.settings import ConcatConfig
from emi_heads.training.losses import mse


class ConcatHead(Head):
    """Branches (Linear -> GELU -> dropout) concatenated, with the VAD latent, into an MLP.

    The acoustic branch (pooled frames) also emits a 3-d latent that joins the fusion: tied to
    the cached arousal/dominance/valence by an auxiliary loss (`supervised`), learned with no
    VAD target as in the published system (`free`), or left out (`off`).
    """

    config_class = ConcatConfig

    @classmethod
    def resolve_config(cls, config: ConcatConfig) -> ConcatConfig:
        if config.vad_latent != "off" and "frame_stats" not in branch_inputs(config):
            return replace(config, vad_latent="off")  # its acoustic branch is not read
        return latent_without_cached_vad(config)

    def __init__(self, config: ConcatConfig):
        super().__init__(config)
        self.names = branch_inputs(config)
        self.layer_logits = nn.ParameterDict(
            {
                module_key(name): nn.Parameter(torch.zeros(layer_count(config, name)))
                for name in self.names
                if config.layer_weights and layer_count(config, name) > 1
            }
        )
        summed = {name for name in self.names if module_key(name) in self.layer_logits}
        width = {
            n: config.dims[n] // (layer_count(config, n) if n in summed else 1) for n in self.names
        }
        self.branches = nn.ModuleDict(
            {
                module_key(name): nn.Sequential(
                    nn.LayerNorm(width[name]),
                    nn.Linear(width[name], config.branch_dim),
                    nn.GELU(),
                    nn.Dropout(config.dropout),
                )
                for name in self.names
            }
        )
        self.aux_heads = nn.ModuleDict(
            {key: nn.Linear(config.branch_dim, config.outputs) for key in self.branches}
        )
        self.vad_latent = config.vad_latent
        latent = VAD_DIM if self.vad_latent != "off" else 0
        self.latent = nn.Linear(config.branch_dim, VAD_DIM) if latent else None
        fused = config.branch_dim * len(self.names) + latent
        self.fusion = nn.Sequential(
            nn.Linear(fused, config.mlp_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.mlp_hidden, config.outputs),
        )

    def output_layers(self) -> list[nn.Linear]:
        return [self.fusion[-1], *self.aux_heads.values()]

    def layer_weights(self) -> dict[str, list[float]]:
        """Each layered stream's softmax weight per hidden layer (0 = the CNN features)."""
        return {
            name: torch.softmax(self.layer_logits[module_key(name)].detach().float(), 0).tolist()
            for name in self.names
            if module_key(name) in self.layer_logits
        }

    def branch_input(self, batch: dict[str, torch.Tensor], name: str, key: str) -> torch.Tensor:
        """The input `name` (B, d); a layered one summed over its layers with their weights."""
        if key not in self.layer_logits:
            return batch[name]
        logits = self.layer_logits[key]
        layers = batch[name].reshape(len(batch[name]), len(logits), -1)
        return (torch.softmax(logits, 0).to(layers.dtype)[None, :, None] * layers).sum(dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        embedded = {
            key: self.branches[key](self.branch_input(batch, name, key))
            for name, key in zip(self.names, self.branches, strict=True)
        }
        aux = {
            f"branch/{key}": self.activate(self.aux_heads[key](e)) for key, e in embedded.items()
        }
        parts = list(embedded.values())
        if self.latent is not None:
            latent = self.latent(embedded["frame_stats"])
            parts.append(latent)
            if self.vad_latent == "supervised":
                aux["vad_latent"] = latent
        return HeadOutput(self.activate(self.fusion(torch.cat(parts, dim=-1))), aux)

    def auxiliary_loss(self, output, batch, target, main_loss) -> torch.Tensor:
        """Each branch's head on the main loss (`aux_weight`), and the VAD latent against the
        cached VAD (`vad_weight`, supervised mode)."""
        branch_loss = self.branch_loss(main_loss)
        total = output.prediction.new_zeros(())
        for name, value in output.aux.items():
            if name == "vad_latent":
                total = total + self.config.vad_weight * mse(value.float(), batch["vad"])
            else:
                total = total + self.config.aux_weight * branch_loss(value.float(), target)
        return total
