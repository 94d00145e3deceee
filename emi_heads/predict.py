"""`emi-predict`: average runs (a seed or head ensemble) over a cache and write a submission;
and the submission checker.

A submission: header `Filename,Admiration,...,Joy`, one row per requested id (zero-padded to
five digits, sorted), values in [0, 1]. An id the cache lacks still gets a row (the training
label mean) and a warning: a submission is never short.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emi_features.dataset import EMOTIONS, ID_COLUMN, pad_id, read_csv_ids
from emi_features.distributed import resolve_device
from emi_features.reader import open_cache
from emi_heads.data import load_inputs
from emi_heads.heads import HEADS
from emi_heads.labels import has_labels, read_labels
from emi_heads.metrics import format_scores, pearson_columns
from emi_heads.rundir import RunError, load_run, predict, save_predictions

log = logging.getLogger(__name__)
HEADER = (ID_COLUMN, *EMOTIONS)


class SubmissionError(ValueError):
    """A submission file that would be rejected; the message lists what is wrong."""


@dataclass
class PredictResult:
    path: Path
    rows: int
    missing: list[str]
    scores: np.ndarray | None  # per-column r when the ids CSV has labels


def predict_submission(
    run_dirs: list[str | Path],
    cache_path: str | Path,
    ids_csv: str | Path,
    out: str | Path,
    *,
    device: str | None = None,
) -> PredictResult:
    """Average the runs' predictions for every id of `ids_csv` and write the submission `out`."""
    if not run_dirs:
        raise RunError("give at least one RUN_DIR")
    torch_device = resolve_device(device)
    ids = sorted(set(read_csv_ids(Path(ids_csv))))
    runs = [(Path(d), *load_run(d)) for d in run_dirs]
    with open_cache(cache_path) as cache:
        for run_dir, _, config in runs:
            trained_on = config["cache"]["backbone_fingerprint"]
            if trained_on != cache.fingerprint:
                raise RunError(
                    f"{run_dir} was trained on features of {config['cache']['backbone']} "
                    f"({trained_on}); {cache.path} holds {cache.attrs.get('backbone')} "
                    f"({cache.fingerprint}): extract with the same backbone"
                )
        present = [i for i in ids if i in set(cache.ids)]
        loaded: dict[tuple, object] = {}
        total = np.zeros((len(present), len(EMOTIONS)), dtype=np.float64)
        for _, model, config in runs:
            head = config["head"]
            key = (
                HEADS[head["head"]].build.needs_frames,
                head["use_vad"],
                config["train"]["max_seconds"],
            )
            if key not in loaded and present:
                loaded[key] = load_inputs(
                    cache, present, need_frames=key[0], use_vad=key[1], max_seconds=key[2]
                )
            if present:
                total += predict(model, loaded[key], device=torch_device)
        skipped = cache.skipped
    predictions = dict(zip(present, total / len(runs), strict=True))
    missing = [i for i in ids if i not in predictions]
    if missing:
        fallback = np.mean([config["label_mean"] for _, _, config in runs], axis=0)
        for clip_id in missing:
            predictions[clip_id] = fallback
        reasons = [f"{i} ({skipped[i]})" if i in skipped else i for i in missing]
        log.warning(
            "%d id(s) not in the cache get the training label mean: %s",
            len(missing),
            ", ".join(reasons),
        )
    values = np.clip(np.array([predictions[i] for i in ids]), 0.0, 1.0)
    save_predictions(Path(out), ids, values, HEADER)
    scores = None
    if has_labels(Path(ids_csv)):
        labels = read_labels(Path(ids_csv))
        truth = dict(zip(labels.ids, labels.values, strict=True))
        scored = [k for k, i in enumerate(ids) if i in truth]
        scores = pearson_columns(values[scored], np.array([truth[ids[k]] for k in scored]))
        log.info("%s on %d labelled ids: %s", Path(out).name, len(scored), format_scores(scores))
    return PredictResult(Path(out), len(ids), missing, scores)


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
