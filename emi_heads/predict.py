"""`emi-predict`: average runs (a seed or head ensemble) over a cache and write a submission;
and the submission checker.

A submission: header `Filename,Admiration,...,Joy`, one row per requested id (zero-padded to
five digits, sorted), values in [0, 1]. An id the cache lacks still gets a row (the training
label mean) and a warning: a submission is never short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emi_features.dataset import EMOTIONS, read_csv_ids
from emi_features.devices import resolve_device
from emi_features.reader import open_cache
from emi_heads.config import HeadConfig, InputSpec, TrainConfig, input_spec
from emi_heads.data import load_inputs
from emi_heads.labels import has_labels, read_labels
from emi_heads.metrics import format_scores, pearson_columns
from emi_heads.rundir import RunError, load_run, predict, save_predictions
from emi_heads.submission import HEADER

log = logging.getLogger(__name__)


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
        loaded: dict[InputSpec, object] = {}  # runs that read the same inputs share one load
        total = np.zeros((len(present), len(EMOTIONS)), dtype=np.float64)
        for _, model, config in runs:
            spec = input_spec(
                HeadConfig.from_dict(config["head"]), TrainConfig.from_dict(config["train"])
            )
            if spec not in loaded and present:
                loaded[spec] = load_inputs(cache, present, spec)
            if present:
                total += predict(model, loaded[spec], device=torch_device)
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


