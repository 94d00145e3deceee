"""Training losses, combinable by a spec such as `mse+0.1*pearson` (weights default to 1)."""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EPS = 1e-8


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.mean((prediction - target) ** 2)


def pearson(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over columns of Pearson r over the batch: (B, K), (B, K) -> scalar."""
    x = prediction - prediction.mean(dim=0)
    y = target - target.mean(dim=0)
    r = (x * y).sum(dim=0) / torch.sqrt((x * x).sum(dim=0) * (y * y).sum(dim=0) + EPS)
    return 1.0 - r.mean()


def ccc(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over columns of Lin's concordance correlation coefficient."""
    mean_x, mean_y = prediction.mean(dim=0), target.mean(dim=0)
    var_x, var_y = prediction.var(dim=0, unbiased=False), target.var(dim=0, unbiased=False)
    covariance = ((prediction - mean_x) * (target - mean_y)).mean(dim=0)
    value = 2 * covariance / (var_x + var_y + (mean_x - mean_y) ** 2 + EPS)
    return 1.0 - value.mean()


LOSSES: dict[str, Loss] = {"mse": mse, "pearson": pearson, "ccc": ccc}
_TERM = re.compile(r"^\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?([a-z]+)\s*$")


def parse_loss(spec: str) -> Loss:
    """`mse+0.1*pearson` -> a function of (prediction, target); one-line error if malformed."""
    terms: list[tuple[float, Loss]] = []
    for text in spec.split("+"):
        match = _TERM.match(text)
        if not match or match.group(2) not in LOSSES:
            raise ValueError(
                f"--loss {spec!r}: terms are [WEIGHT*]NAME joined by '+', NAME one of "
                f"{', '.join(LOSSES)}"
            )
        terms.append((float(match.group(1) or 1.0), LOSSES[match.group(2)]))

    def combined(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(weight * loss(prediction, target) for weight, loss in terms)

    return combined
