"""Labels from the split CSVs: an id column plus the task's target columns, in any order (the
EMI track's `Filename` and six emotions by default; a lab's own columns with `--targets`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emi_features.core.dataset import DatasetError, duplicates, id_column, pad_id, read_csv_rows
from emi_features.core.task import EMI, Task, own_task

log = logging.getLogger(__name__)


class LabelError(ValueError):
    """Labels that cannot be used; the message is one line naming the rows."""


@dataclass
class Labels:
    """ids (N,) as the cache names them, values (N, K) float32 in the order of `task.targets`."""

    ids: list[str]
    values: np.ndarray
    task: Task = field(default=EMI)

    def subset(self, keep: list[int]) -> Labels:
        return Labels([self.ids[i] for i in keep], self.values[keep], self.task)


def _rows_text(rows: list) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return shown + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def has_labels(path: Path, task: Task = EMI) -> bool:
    """True when the CSV has every target column of `task`."""
    columns, _ = read_csv_rows(path)
    return set(task.targets).issubset(columns)


def numeric_columns(path: Path) -> tuple[str, ...]:
    """The columns of a label CSV, but its id column, whose every filled cell is a number
    (`--targets all`)."""
    columns, rows = read_csv_rows(Path(path))
    key = id_column(columns)
    found = []
    for column in columns:
        cells = [row[column] for row in rows if (row[column] or "").strip()]
        if column != key and cells and all(_is_number(c) for c in cells):
            found.append(column)
    if not found:
        raise LabelError(f"{path}: no numeric column besides the id column {key!r}")
    return tuple(found)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def task_for(targets: str, csvs: list[Path], metric: str = "pearson") -> Task:
    """A lab's own task (`emi train --targets COL,COL`, or `all`: every numeric column of the
    first CSV): those columns, the id column the CSVs use, `metric`; in [0, 1] when every
    value of every CSV given is (a sigmoid output fits), else any finite values."""
    first = Path(csvs[0])
    names = (
        numeric_columns(first)
        if targets.strip() == "all"
        else tuple(t.strip() for t in targets.split(",") if t.strip())
    )
    columns, _ = read_csv_rows(first)
    try:
        task = own_task(names, id_column=id_column(columns), metric=metric)
    except ValueError as error:
        raise LabelError(f"--targets: {error}") from None
    values = read_labels(csvs, task).values
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        task = own_task(names, id_column=task.id_column, metric=metric, value_range=(0.0, 1.0))
    return task


def read_labels(paths: list[Path] | Path, task: Task = EMI) -> Labels:
    """Read one or several label CSVs (concatenated, e.g. train + valid for a final model): the
    id column (`task.id_column`, found as `id_column` finds it) and every target of `task`.
    A row whose targets are all empty (NaN) is dropped with a count; a value outside the task's
    range, a word, or a row with some targets missing is an error naming the lines (the header
    is line 1)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    ids: list[str] = []
    values: list[list[float]] = []
    for path in paths:
        try:
            columns, rows = read_csv_rows(Path(path))
        except DatasetError as error:
            raise LabelError(str(error)) from None
        key = id_column(columns, task.id_column)
        missing = [c for c in task.targets if c not in columns]
        if missing:
            raise LabelError(f"{path}: missing column(s) {', '.join(repr(c) for c in missing)}")
        found, dropped = _read_rows(Path(path), rows, key, task)
        if dropped:
            log.warning(
                "%s: %d row(s) without labels (every target empty or NaN) left out: line(s) %s",
                path,
                len(dropped),
                _rows_text(dropped),
            )
        ids += [clip_id for clip_id, _ in found]
        values += [numbers for _, numbers in found]
    duplicated = duplicates(ids)
    if duplicated:
        raise LabelError(
            f"{', '.join(map(str, paths))}: ids listed twice: {_rows_text(duplicated)}"
        )
    return Labels(ids, np.asarray(values, dtype=np.float32).reshape(-1, len(task.targets)), task)


def _read_rows(path: Path, rows: list[dict], key: str, task: Task) -> tuple[list, list[int]]:
    """(id, values) of each usable row, and the lines of rows with no label at all."""
    found, dropped, bad, empty = [], [], [], []
    for line, row in enumerate(rows, start=2):
        if not pad_id(row[key]):
            empty.append(line)
            continue
        cells = [(row[name] or "").strip() for name in task.targets]
        if all(cell.lower() in ("", "nan") for cell in cells):
            dropped.append(line)
            continue
        try:
            numbers = [float(cell) for cell in cells]
        except ValueError:
            bad.append(line)
            continue
        if not all(task.in_range(v) for v in numbers):
            bad.append(line)
            continue
        found.append((pad_id(row[key]), numbers))
    if empty:
        raise LabelError(f"{path}: empty id ({key}) on line(s) {_rows_text(empty)}")
    if bad:
        raise LabelError(
            f"{path}: label values must be {task.range_text()} in every target "
            f"column; bad rows (line) {_rows_text(bad)}"
        )
    return found, dropped


def check_train_labels(labels: Labels, what: str = "--train") -> None:
    """One line for a target that does not vary in the training labels (nothing to learn,
    and no correlation to select by)."""
    if len(labels.ids) < 2:
        return
    constant = [
        t
        for t, sd in zip(labels.task.targets, labels.values.std(axis=0), strict=True)
        if not sd > 0
    ]
    if constant:
        raise LabelError(
            f"{what}: target(s) {', '.join(constant)} take one value in every "
            "training clip: nothing to learn"
        )


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
