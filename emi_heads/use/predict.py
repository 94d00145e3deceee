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

from emi_features.cache.reader import open_cache
from emi_features.cache.schema import computed_with
from emi_features.core.dataset import read_csv_ids
from emi_features.core.devices import resolve_device
from emi_features.core.logs import summarise_ids
from emi_features.core.task import EMI, SUBMISSION_HEADER, Task
from emi_heads.heads.reads import streams_read
from emi_heads.heads.settings_json import head_from_dict
from emi_heads.training.config import InputSpec
from emi_heads.training.data import load_inputs
from emi_heads.training.inference import predict
from emi_heads.training.labels import has_labels, read_labels
from emi_heads.training.metrics import format_scores, score_columns
from emi_heads.training.rundir import RunError, load_run, save_predictions
from emi_heads.use.ensemble import common_task, expand_members, fit_weights, parse_weights

log = logging.getLogger(__name__)


@dataclass
class PredictResult:
    path: Path
    rows: int
    missing: list[str]
    scores: np.ndarray | None  # per-target score when the ids CSV has labels
    runs: int = 1
    task: Task = EMI


MIN_PRESENT_SHARE = 0.5  # fewer requested ids in the cache than this: the wrong ids or cache


def predict_submission(
    run_dirs: list[str | Path],
    cache_paths: list[str | Path] | str | Path | None,
    ids_csv: str | Path,
    out: str | Path,
    *,
    device: str | None = None,
    allow_incomplete: bool = False,
    weights: str | None = None,
    fit_weights_on: str | Path | None = None,
) -> PredictResult:
    """The ensemble of `run_dirs` (see `ensemble`: parents average their sub-runs) for every id
    of `ids_csv`, written as the submission `out`.

    Each run reads the cache among `cache_paths` that holds its backbone's features (runs of
    several backbones ensemble across caches); with no cache given, each run's recorded one.
    Refused with one line (and `out` untouched): no cache of a run's backbone, an unfinished
    cache (unless `allow_incomplete`), fewer than half of the requested ids in the caches, a
    non-finite prediction.
    """
    if not run_dirs:
        raise RunError("give at least one RUN_DIR")
    torch_device = resolve_device(device)
    ids = sorted(set(read_csv_ids(Path(ids_csv))))
    if not ids:
        raise RunError(f"{ids_csv}: no ids to predict")
    members = expand_members(run_dirs)
    runs = {run: load_run(run) for member in members for run in member.runs}
    task = common_task([config for _, config in runs.values()])
    chosen = member_weights(members, weights, fit_weights_on, task)
    paths = [cache_paths] if isinstance(cache_paths, (str, Path)) else list(cache_paths or [])
    caches = caches_for(runs, paths, allow_incomplete)
    try:
        present = _present(ids, caches, ids_csv)
        total = average(members, chosen, runs, caches, present, torch_device)
        skipped = {k: v for c in caches.values() for k, v in c.skipped.items()}
    finally:
        for cache in caches.values():
            cache.close()
    predictions, missing = _completed(ids, present, total, runs, skipped, out)
    values = clip_to_range(np.array([predictions[i] for i in ids]), task)
    header = SUBMISSION_HEADER if task.submission else (task.id_column, *task.targets)
    save_predictions(Path(out), ids, values, header)
    scores = _score(values, ids, Path(ids_csv), Path(out).name, task)
    return PredictResult(Path(out), len(ids), missing, scores, len(runs), task)


def _completed(ids, present, total, runs, skipped, out) -> tuple[dict, list[str]]:
    """Each id's prediction: the ensemble's where the caches hold it, else the runs' training
    label mean (logged, with the reason each was skipped); refused when any is not finite."""
    non_finite = [present[k] for k in np.flatnonzero(~np.isfinite(total).all(axis=1))]
    if non_finite:
        raise RunError(
            f"non-finite predictions for {len(non_finite)} id(s) "
            f"({summarise_ids(non_finite, 5)}); {out} was not written"
        )
    predictions = dict(zip(present, total, strict=True))
    missing = [i for i in ids if i not in predictions]
    if missing:
        fallback = np.mean([config["label_mean"] for _, config in runs.values()], axis=0)
        predictions.update({clip_id: fallback for clip_id in missing})
        reasons = [f"{i} ({skipped[i]})" if i in skipped else i for i in missing]
        log.warning(
            "%d id(s) not in the cache get the training label mean: %s",
            len(missing),
            summarise_ids(reasons),
        )
    return predictions, missing


def clip_to_range(values: np.ndarray, task: Task) -> np.ndarray:
    """Predictions as written: clipped to the task's range (intensities to [0, 1])."""
    return values if task.value_range is None else np.clip(values, *task.value_range)


def _present(ids: list[str], caches: dict, ids_csv: str | Path) -> list[str]:
    """The ids every cache holds; one line when fewer than half of them are there."""
    present = [i for i in ids if all(c.has_clip(i) for c in caches.values())]
    if len(present) < MIN_PRESENT_SHARE * len(ids):
        where = ", ".join(str(c.path) for c in caches.values())
        first = next(iter(caches.values()))
        raise RunError(
            f"only {len(present)} of the {len(ids)} ids of {ids_csv} are in {where} "
            f"(first requested: {summarise_ids(ids, 3)}; first in the cache: "
            f"{summarise_ids(first.ids, 3)}): the wrong ids file, column or cache?"
        )
    return present


def member_weights(
    members: list, weights: str | None, fit_on: str | Path | None, task: Task = EMI
) -> np.ndarray:
    """(members, K): given (`--weights`), fitted on a labelled split, or equal."""
    if weights is not None and fit_on is not None:
        raise RunError("give --weights or --fit-weights, not both")
    if weights is not None:
        return parse_weights(weights, len(members), len(task.targets))
    if fit_on is not None:
        return fit_weights(members, Path(fit_on), task)
    return np.full((len(members), len(task.targets)), 1 / len(members))


def _score(
    values: np.ndarray, ids: list[str], ids_csv: Path, name: str, task: Task
) -> np.ndarray | None:
    """(K,) score of the written predictions when the ids file has labels (a validation
    split)."""
    if not has_labels(ids_csv, task):
        return None
    labels = read_labels(ids_csv, task)
    truth = dict(zip(labels.ids, labels.values, strict=True))
    scored = [k for k, i in enumerate(ids) if i in truth]
    scores = score_columns(values[scored], np.array([truth[ids[k]] for k in scored]), task)
    log.info("%s on %d labelled ids: %s", name, len(scored), format_scores(scores, task))
    return scores


def average(
    members, member_weights: np.ndarray, runs: dict, caches: dict, ids: list[str], device
) -> np.ndarray:
    """(len(ids), K) float64: each member's runs averaged, the members weighted per target;
    each run reads the cache of its backbone (`caches`: fingerprint -> open cache)."""
    loaded: dict[tuple, object] = {}  # runs that read the same inputs share one load
    width = member_weights.shape[1]  # the task's targets
    total = np.zeros((len(ids), width), dtype=np.float64)
    for member, weight in zip(members, member_weights, strict=True):
        for run in member.runs:
            model, config = runs[run]
            cache = caches[config["cache"]["backbone_fingerprint"]]
            spec = InputSpec.from_run(config)  # its `reads` block: no training config
            if (cache.fingerprint, spec) not in loaded:
                loaded[cache.fingerprint, spec] = load_inputs(cache, ids, spec)
            outputs = predict(model, loaded[cache.fingerprint, spec], device=device)
            total += weight * outputs / len(member.runs)
    return total


def caches_for(runs: dict, paths: list[str | Path], allow_incomplete: bool) -> dict:
    """fingerprint -> open cache, one for each backbone the runs were trained on: among
    `paths`, or (none given) the caches the runs recorded."""
    wanted = {
        config["cache"]["backbone_fingerprint"]: (run, config) for run, (_, config) in runs.items()
    }
    candidates = paths or sorted({config["cache"]["path"] for _, config in runs.values()})
    caches: dict = {}
    seen: list[str] = []
    try:
        for path in candidates:
            cache = open_cache(path)
            seen.append(f"{cache.path} holds {cache.attrs.get('backbone')} ({cache.fingerprint})")
            if cache.fingerprint in wanted and cache.fingerprint not in caches:
                if not cache.complete and not allow_incomplete:
                    cache.close()
                    raise RunError(
                        f"{cache.path}: its extraction is not finished (complete = false); "
                        f"finish it by re-running emi-extract, or pass --allow-incomplete"
                    )
                caches[cache.fingerprint] = cache
            else:
                cache.close()
        for run, (_, config) in runs.items():  # every stream a run reads, the same features
            cache = caches.get(config["cache"]["backbone_fingerprint"])
            trained = config["cache"].get("computed_with")  # absent: a run from before
            if cache is not None and trained and trained != computed_with(cache.attrs):
                raise RunError(
                    f"{run} was trained on features computed with {trained}; {cache.path} "
                    f"holds them computed with {computed_with(cache.attrs)}: extract with the "
                    f"run's --runtime and --precision"
                )
            needed = streams_read(head_from_dict(config["head"]))
            held = cache.stream_fingerprints() if cache is not None else {}
            recorded = config["cache"].get("streams", {})
            for name in needed:
                if cache is not None and name not in held:
                    raise RunError(f"{run} reads the stream features/{name}; {cache.path} has none")
                if cache is not None and recorded.get(name, held[name]) != held[name]:
                    raise RunError(
                        f"{run} was trained on features/{name} {recorded[name]}; {cache.path} "
                        f"holds other features under that name ({held[name]})"
                    )
        for fingerprint, (run, config) in wanted.items():
            if fingerprint not in caches:
                raise RunError(
                    f"{run} was trained on features of {config['cache']['backbone']} "
                    f"({fingerprint}); no cache given holds them ({'; '.join(seen)}): extract "
                    f"with the same backbone, or pass its cache with --cache"
                )
    except BaseException:
        for cache in caches.values():
            cache.close()
        raise
    return caches
