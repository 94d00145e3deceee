"""What a run reads, loaded once: labels and cache inputs of the training and validation clips,
the cache's identity and the labels' sources. Seeds, folds and sweeps share one load."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emi_features.cache.reader import open_cache
from emi_features.cache.schema import computed_with
from emi_features.core.dataset import file_digest
from emi_features.core.logs import summarise_ids
from emi_features.core.task import EMI, Task
from emi_heads.training.config import InputSpec
from emi_heads.training.data import Inputs, load_inputs
from emi_heads.training.labels import Labels, align_to_cache, check_train_labels, read_labels

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """What a run reads, loaded once: labels and inputs of the training and validation clips,
    the cache's identity, and where the labels came from. Several runs (seeds, folds, a sweep)
    share one."""

    cache_info: dict[str, Any]
    train: tuple[Labels, Inputs]
    valid: tuple[Labels, Inputs] | None
    sources: dict[str, Any]

    def with_splits(self, train: tuple[Labels, Inputs], valid, **sources: Any) -> RunData:
        """The same cache and sources (updated by `sources`) with other splits."""
        return RunData(self.cache_info, train, valid, {**self.sources, **sources})


def load_run_data(
    cache_path: str | Path,
    train_csvs: list[Path],
    valid_csv: Path | None,
    spec: InputSpec,
    task: Task = EMI,
) -> RunData:
    """Read the labels of `task` and the cache groups `spec` names, once."""
    with open_cache(cache_path) as cache:
        train_labels, train_inputs = _load_split(cache, train_csvs, "--train", spec, task)
        check_train_labels(train_labels)
        valid = None
        if valid_csv is not None:
            valid = _load_split(cache, [valid_csv], "--valid", spec, task)
            overlap = set(train_labels.ids) & set(valid[0].ids)
            if overlap:
                log.warning(
                    "%d id(s) are in both --train and --valid (%s): validation scores will be "
                    "optimistic",
                    len(overlap),
                    summarise_ids(sorted(overlap), 5),
                )
        cache_info = {
            "path": str(Path(cache.path).resolve()),
            "backbone": cache.attrs.get("backbone"),
            "backbone_fingerprint": cache.fingerprint,
            "hidden_size": cache.hidden_size,
            "computed_with": computed_with(cache.attrs),  # never predicted across a mix
            "streams": cache.stream_fingerprints(),
            "recipe": cache.recipe(),  # how to make the same features for other media
        }
    csvs = [*train_csvs, *([valid_csv] if valid_csv else [])]
    sources = {
        "train_csvs": [str(Path(p).resolve()) for p in train_csvs],
        "valid_csv": str(Path(valid_csv).resolve()) if valid_csv else None,
        "csv_digests": {str(Path(p).resolve()): file_digest(p) for p in csvs},
    }
    return RunData(cache_info, (train_labels, train_inputs), valid, sources)


def _load_split(
    cache, paths: list[Path], what: str, spec: InputSpec, task: Task
) -> tuple[Labels, Inputs]:
    labels = align_to_cache(read_labels(paths, task), set(cache.ids), cache.skipped, what)
    if not labels.ids:
        raise ValueError(f"{what}: no labelled clip is in the cache")
    return labels, load_inputs(cache, labels.ids, spec)
