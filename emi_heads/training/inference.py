"""A head's predictions for loaded inputs, in batches: the one way every stage runs a trained
head (validation in the training loop, two-stage training's branch scores, `emi predict`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def predict(
    model: nn.Module, inputs: Any, *, device: torch.device, batch_size: int = 256
) -> np.ndarray:
    """(N, 6) float32 predictions of a head for loaded inputs, in their order."""
    return predict_outputs(model, inputs, [PREDICTION], device=device, batch_size=batch_size)[
        PREDICTION
    ]


PREDICTION = "prediction"


@torch.inference_mode()
def predict_outputs(
    model: nn.Module,
    inputs: Any,
    names: list[str],
    *,
    device: torch.device,
    batch_size: int = 256,
) -> dict[str, np.ndarray]:
    """Each named output of a head for loaded inputs, (N, 6) float32 in their order, from one
    pass: `prediction`, or one of its auxiliary outputs (`branch/frames`)."""
    model.to(device).eval()
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for first in range(0, len(inputs), batch_size):
        index = torch.arange(first, min(first + batch_size, len(inputs)))
        result = model(inputs.batch(index, device))
        for name in names:
            values = result.prediction if name == PREDICTION else result.aux[name]
            outputs[name].append(values.float().cpu())
    if not len(inputs):
        width = model.config.outputs
        return {name: np.zeros((0, width), dtype=np.float32) for name in names}
    return {name: torch.cat(values).numpy() for name, values in outputs.items()}
