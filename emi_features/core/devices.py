"""`--device` resolution, shared by every command; torch is imported only when called."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class DeviceError(ValueError):
    """A device that cannot be used; one line for the user."""


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: str | None) -> torch.device:
    """`--device` as given (default: cuda when available), checked to exist; one-line error."""
    import torch

    try:
        device = torch.device(name or default_device())
    except RuntimeError as error:
        raise DeviceError(f"--device {name}: not a device name (cpu, cuda, cuda:N)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: no CUDA GPU is visible; use --device cpu")
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible")
    return device
