"""`ridge`: ridge regression on the standardised clip vectors (scikit-learn), the baseline. Its
fit is the whole of its training (`training.ridge_fit`); `linear` is its old name."""

from __future__ import annotations

import numpy as np
import torch

from emi_heads.heads.base import Head, HeadOutput
from emi_heads.heads.reads import branch_inputs
from emi_heads.heads.settings import RidgeConfig


class RidgeHead(Head):
    """Standardised clip vectors -> ridge regression (fitted by scikit-learn, not by SGD)."""

    config_class = RidgeConfig

    def __init__(self, config: RidgeConfig):
        super().__init__(config)
        self.names = branch_inputs(config)
        width = sum(config.dims[name] for name in self.names)
        self.register_buffer("center", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.register_buffer("coef", torch.zeros(config.outputs, width))
        self.register_buffer("intercept", torch.zeros(config.outputs))
        self.register_buffer("alpha", torch.zeros(()))

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([batch[name].float() for name in self.names], dim=-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> HeadOutput:
        x = (self.features(batch) - self.center) / self.scale
        return HeadOutput(x @ self.coef.T + self.intercept)

    def fit(self, batch: dict[str, torch.Tensor], targets: np.ndarray, alpha: float) -> None:
        """Closed-form ridge on (N, d) features for (N, 6) targets."""
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import StandardScaler

        x = self.features(batch).double().numpy()
        scaler = StandardScaler().fit(x)
        ridge = Ridge(alpha=alpha).fit(scaler.transform(x), targets)
        self.center.copy_(torch.from_numpy(scaler.mean_))
        self.scale.copy_(torch.from_numpy(scaler.scale_))
        self.coef.copy_(torch.from_numpy(ridge.coef_))
        self.intercept.copy_(torch.from_numpy(np.asarray(ridge.intercept_)))
        self.alpha.fill_(alpha)
