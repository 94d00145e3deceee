"""How one extraction runs: a frozen config whose defaults the command line takes.

No heavy imports: `emi-extract --help` and argument errors answer before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from emi_features.core.dataclass_options import choice_problems
from emi_features.core.dataset import Source
from emi_features.core.models import (  # noqa: F401  (their names, where they were)
    ASR_MODEL_ID,
    IMAGE_MODEL_ID,
    MODEL_LICENCES,
    TEXT_MODEL_ID,
    VAD_MODEL_ID,
)
from emi_features.extraction.registry import MODALITIES, modality_class

DTYPE_NAMES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ExtractConfig:
    """Every setting of `emi-extract` but the input and output paths.

    `device`, `dtype` and `batch_seconds` left as None are chosen for the device (cuda when
    available; float32 and one clip per batch on a CPU, bfloat16 and 160 s batches on a GPU).
    """

    model: str = VAD_MODEL_ID
    split: str | None = None
    source: Source = "auto"
    device: str | None = None
    dtype: str | None = None
    layer: int | None = None
    batch_seconds: float | None = None
    window_seconds: float = 30.0
    overlap_seconds: float = 4.0
    part_seconds: float = 120.0
    workers: int = 2
    overwrite: bool = False
    retry_skipped: bool = False
    offline: bool = False
    runtime: Literal["torch", "onnxruntime", "openvino"] = "torch"  # see audio.compiled
    precision: Literal["fp32", "int8"] = "fp32"
    modality: str = "audio"  # a name in `extraction.modality.MODALITIES`
    settings: Any = None  # the modality's own settings dataclass (None: its defaults)

    def __post_init__(self) -> None:
        problems = []
        if self.window_seconds <= 0:
            problems.append("--window-seconds must be > 0")
        if not 0 <= self.overlap_seconds < self.window_seconds:
            problems.append("--overlap-seconds must be >= 0 and less than --window-seconds")
        if self.part_seconds <= 0:
            problems.append("--part-seconds must be > 0")
        if self.batch_seconds is not None and self.batch_seconds < 0:
            problems.append("--batch-seconds must be >= 0")
        if self.workers < 0:
            problems.append("--workers must be >= 0")
        if self.modality not in MODALITIES:
            problems.append(f"--modality must be one of {', '.join(MODALITIES)}")
        elif self.settings is None:
            object.__setattr__(self, "settings", modality_class(self.modality).settings())
        if self.dtype is not None and self.dtype not in DTYPE_NAMES:
            problems.append(f"--dtype must be one of {', '.join(DTYPE_NAMES)}")
        problems += [f"--{p.replace('_', '-')}" for p in choice_problems(self)]
        if problems:
            raise ValueError("; ".join(problems))


EXTRACT_DEFAULTS = ExtractConfig()
EXTRACT_FIELDS = tuple(f.name for f in fields(ExtractConfig))
