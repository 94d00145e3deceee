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
from emi_features.logs import summarise_ids
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


MIN_PRESENT_SHARE = 0.5  # fewer requested ids in the cache than this: the wrong ids or cache


def predict_submission(
    run_dirs: list[str | Path],
    cache_path: str | Path,
    ids_csv: str | Path,
    out: str | Path,
    *,
    device: str | None = None,
    allow_incomplete: bool = False,
) -> PredictResult:
    """Average the runs' predictions for every id of `ids_csv` and write the submission `out`.

    Refused with one line (and `out` untouched): a cache of another backbone than a run's, a
    cache whose extraction is unfinished (unless `allow_incomplete`), fewer than half of the
    requested ids in the cache, a non-finite prediction.
    """
    if not run_dirs:
        raise RunError("give at least one RUN_DIR")
    torch_device = resolve_device(device)
    ids = sorted(set(read_csv_ids(Path(ids_csv))))
    if not ids:
        raise RunError(f"{ids_csv}: no ids to predict")
    runs = [(Path(d), *load_run(d)) for d in run_dirs]
    with open_cache(cache_path) as cache:
        if not cache.complete and not allow_incomplete:
            raise RunError(
                f"{cache.path}: its extraction is not finished (complete = false); finish it "
                f"by re-running emi-extract, or pass --allow-incomplete"
            )
        for run_dir, _, config in runs:
            trained_on = config["cache"]["backbone_fingerprint"]
            if trained_on != cache.fingerprint:
                raise RunError(
                    f"{run_dir} was trained on features of {config['cache']['backbone']} "
                    f"({trained_on}); {cache.path} holds {cache.attrs.get('backbone')} "
                    f"({cache.fingerprint}): extract with the same backbone"
                )
        in_cache = set(cache.ids)
        present = [i for i in ids if i in in_cache]
        if len(present) < MIN_PRESENT_SHARE * len(ids):
            raise RunError(
                f"only {len(present)} of the {len(ids)} ids of {ids_csv} are in {cache.path} "
                f"(first requested: {summarise_ids(ids, 3)}; first in the cache: "
                f"{summarise_ids(cache.ids, 3)}): the wrong ids file, column or cache?"
            )
        loaded: dict[InputSpec, object] = {}  # runs that read the same inputs share one load
        total = np.zeros((len(present), len(EMOTIONS)), dtype=np.float64)
        for _, model, config in runs:
            spec = input_spec(
                HeadConfig.from_dict(config["head"]), TrainConfig.from_dict(config["train"])
            )
            if spec not in loaded:
                loaded[spec] = load_inputs(cache, present, spec)
            total += predict(model, loaded[spec], device=torch_device)
        skipped = cache.skipped
    non_finite = [present[k] for k in np.flatnonzero(~np.isfinite(total).all(axis=1))]
    if non_finite:
        raise RunError(
            f"non-finite predictions for {len(non_finite)} id(s) "
            f"({summarise_ids(non_finite, 5)}); {out} was not written"
        )
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
            summarise_ids(reasons),
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
