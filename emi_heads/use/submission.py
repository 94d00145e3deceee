"""The submission format and its checker. Light (csv and the standard library): `emi-predict
--check` answers without loading torch.

A submission: header `Filename,Admiration,...,Joy`, one row per requested id (zero-padded to
five digits, sorted), values finite and in [0, 1].
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from emi_features.core.dataset import DatasetError, duplicates, read_csv_ids
from emi_features.core.logs import summarise_ids
from emi_features.core.task import CHALLENGE_ID, SUBMISSION_HEADER


class SubmissionError(ValueError):
    """A submission file that would be rejected; the message lists what is wrong."""


def check_submission(path: str | Path, ids_csv: str | Path) -> int:
    """Validate a submission against the ids it must cover; returns its row count.

    Raises SubmissionError listing every problem: header, ids (five digits, duplicates,
    missing, extra, order), row width, values (number, finite, in [0, 1]). The requested ids
    themselves must be the challenge's five-digit ids.
    """
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (UnicodeDecodeError, csv.Error) as error:
        raise SubmissionError(
            f"{path}: not UTF-8 text ({type(error).__name__}); save it as UTF-8"
        ) from None
    try:
        requested = read_csv_ids(Path(ids_csv))
    except DatasetError as error:
        raise SubmissionError(str(error)) from None
    foreign = [i for i in requested if not CHALLENGE_ID.match(i)]
    if foreign:
        raise SubmissionError(
            f"{ids_csv}: {len(foreign)} id(s) are not the challenge's five-digit ids: "
            f"{summarise_ids(foreign, 5)}"
        )
    problems: list[str] = []
    if not rows or tuple(c.strip() for c in rows[0]) != SUBMISSION_HEADER:
        problems.append(f"header must be {','.join(SUBMISSION_HEADER)}")
    body = rows[1:]
    problems += _id_problems([row[0] if row else "" for row in body], set(requested))
    problems += _value_problems(body)
    if problems:
        shown = problems[:10] + ([f"and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise SubmissionError(f"{path}: " + "; ".join(shown))
    return len(body)


def _id_problems(ids: list[str], wanted: set[str]) -> list[str]:
    """Empty, unpadded, duplicated, missing, extra or unsorted ids."""
    problems = []
    empty = [str(line) for line, clip_id in enumerate(ids, start=2) if not clip_id.strip()]
    if empty:
        problems.append(f"empty id on line(s) {', '.join(empty[:5])}")
    unpadded = [i for i in ids if i.strip() and not CHALLENGE_ID.match(i)]
    if unpadded:
        problems.append(f"ids not zero-padded to five digits: {summarise_ids(unpadded, 5)}")
    duplicated = duplicates(ids)
    if duplicated:
        problems.append(f"duplicated ids: {summarise_ids(duplicated, 5)}")
    absent = sorted(wanted - set(ids))
    if absent:
        problems.append(f"{len(absent)} requested id(s) missing: {summarise_ids(absent, 5)}")
    extra = sorted(set(ids) - wanted - {""})
    if extra:
        problems.append(f"{len(extra)} id(s) not requested: {summarise_ids(extra, 5)}")
    if ids != sorted(ids):
        problems.append("rows are not sorted by id")
    return problems


def _value_problems(body: list[list[str]]) -> list[str]:
    """Rows of the wrong width, values that are not finite numbers in [0, 1]."""
    problems = []
    for line, row in enumerate(body, start=2):
        if len(row) != len(SUBMISSION_HEADER):
            problems.append(f"line {line}: {len(row)} fields, expected {len(SUBMISSION_HEADER)}")
            continue
        try:
            values = [float(v) for v in row[1:]]
        except ValueError:
            problems.append(f"line {line}: a value is not a number")
            continue
        if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
            problems.append(f"line {line}: values must be finite and in [0, 1]")
    return problems
