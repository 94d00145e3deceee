"""Labels from the split CSVs: `Filename` plus the six emotion columns, in any order."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emi_features.core.dataset import DatasetError, duplicates, pad_id, read_csv_rows
from emi_features.core.task import EMOTIONS, ID_COLUMN

log = logging.getLogger(__name__)


class LabelError(ValueError):
    """Labels that cannot be used; the message is one line naming the rows."""


@dataclass
class Labels:
    """ids (N,) zero-padded, values (N, 6) float32 in [0, 1] in the order of EMOTIONS."""

    ids: list[str]
    values: np.ndarray

    def subset(self, keep: list[int]) -> Labels:
        return Labels([self.ids[i] for i in keep], self.values[keep])


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return shown + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def has_labels(path: Path) -> bool:
    """True when the CSV has all six emotion columns."""
    columns, _ = read_csv_rows(path)
    return set(EMOTIONS).issubset(columns)


def read_labels(paths: list[Path] | Path) -> Labels:
    """Read one or several split CSVs (concatenated, e.g. train + valid for a final model).

    Row numbers in errors are the CSV's line numbers (the header is line 1).
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    ids: list[str] = []
    values: list[list[float]] = []
    for path in paths:
        try:
            columns, rows = read_csv_rows(Path(path))
        except DatasetError as error:
            raise LabelError(str(error)) from None
        missing = [c for c in (ID_COLUMN, *EMOTIONS) if c not in columns]
        if missing:
            raise LabelError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}")
        bad: list[int] = []
        empty: list[int] = []
        for line, row in enumerate(rows, start=2):
            if not pad_id(row[ID_COLUMN]):
                empty.append(line)
                continue
            try:
                numbers = [float(row[name]) for name in EMOTIONS]
            except ValueError:
                bad.append(line)
                continue
            if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in numbers):
                bad.append(line)
                continue
            ids.append(pad_id(row[ID_COLUMN]))
            values.append(numbers)
        if empty:
            raise LabelError(f"{path}: empty id (Filename) on line(s) {_rows_text(empty)}")
        if bad:
            raise LabelError(
                f"{path}: label values must be numbers in [0, 1]; bad rows (line) {_rows_text(bad)}"
            )
    duplicated = duplicates(ids)
    if duplicated:
        raise LabelError(
            f"{', '.join(map(str, paths))}: ids listed twice: {_rows_text(duplicated)}"
        )
    return Labels(ids, np.asarray(values, dtype=np.float32).reshape(-1, len(EMOTIONS)))


def align_to_cache(
    labels: Labels, cache_ids: set[str], skipped: dict[str, str], what: str
) -> Labels:
    """Keep the labelled ids that the cache holds. Ids the cache skipped are dropped with a
    warning; ids it never saw are an error naming them."""
    unknown = [i for i in labels.ids if i not in cache_ids and i not in skipped]
    if unknown:
        raise LabelError(
            f"{len(unknown)} id(s) of {what} are not in the cache: {_rows_text(unknown)}; "
            f"extract them first (emi-extract ... --split)"
        )
    dropped = [i for i in labels.ids if i in skipped]
    if dropped:
        log.warning(
            "%s: leaving out %d id(s) the cache skipped: %s",
            what,
            len(dropped),
            _rows_text([f"{i} ({skipped[i]})" for i in dropped]),
        )
    keep = [k for k, i in enumerate(labels.ids) if i in cache_ids]
    return labels.subset(keep)
