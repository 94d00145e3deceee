"""The submission format and its checker. Light (csv and the standard library): `emi-predict
--check` answers without loading torch.

A submission: header `Filename,Admiration,...,Joy`, one row per requested id (zero-padded to
five digits, sorted), values finite and in [0, 1].
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

from emi_features.dataset import EMOTIONS, ID_COLUMN, pad_id, read_csv_ids

HEADER = (ID_COLUMN, *EMOTIONS)


class SubmissionError(ValueError):
    """A submission file that would be rejected; the message lists what is wrong."""


def check_submission(path: str | Path, ids_csv: str | Path) -> int:
    """Validate a submission against the ids it must cover; returns its row count.

    Raises SubmissionError listing every problem: header, ids (padding, duplicates, missing,
    extra, order), row width, values (number, finite, in [0, 1]).
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    problems: list[str] = []
    if not rows or tuple(c.strip() for c in rows[0]) != HEADER:
        problems.append(f"header must be {','.join(HEADER)}")
    body = rows[1:]
    ids = [row[0] if row else "" for row in body]
    wanted = set(read_csv_ids(Path(ids_csv)))
    unpadded = [i for i in ids if pad_id(i) != i or not i]
    if unpadded:
        problems.append(f"ids not zero-padded to five digits: {', '.join(unpadded[:5])}")
    duplicated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicated:
        problems.append(f"duplicated ids: {', '.join(duplicated[:5])}")
    absent = sorted(wanted - set(ids))
    if absent:
        problems.append(f"{len(absent)} requested id(s) missing: {', '.join(absent[:5])}")
    extra = sorted(set(ids) - wanted)
    if extra:
        problems.append(f"{len(extra)} id(s) not requested: {', '.join(extra[:5])}")
    if ids != sorted(ids):
        problems.append("rows are not sorted by id")
    for line, row in enumerate(body, start=2):
        if len(row) != len(HEADER):
            problems.append(f"line {line}: {len(row)} fields, expected {len(HEADER)}")
            continue
        try:
            values = [float(v) for v in row[1:]]
        except ValueError:
            problems.append(f"line {line}: a value is not a number")
            continue
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            problems.append(f"line {line}: values must be finite and in [0, 1]")
    if problems:
        shown = problems[:10] + ([f"and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise SubmissionError(f"{path}: " + "; ".join(shown))
    return len(body)
