"""Many runs from one loaded cache: seeds, k-fold cross-validation (with a final refit) and
grid sweeps. Each writes one sub-run per member under a parent folder with `experiment.json`;
`emi-predict PARENT` ensembles the sub-runs and `emi-runs PARENT` compares them.

    PARENT/seed-0, seed-1, ...            --seeds 0,1,2
    PARENT/fold-1 ... fold-K, refit        --folds K [--refit]
      oof_predictions.csv                  every labelled id exactly once
      cv_metrics.json                      mean and sd over folds, per column
    PARENT/lr=0.001,dropout=0.1, ...       --set lr=1e-3,1e-4 --set dropout=0.1,0.3
"""

from __future__ import annotations

import itertools
import logging
import statistics
import typing
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from emi_features.core.pairs import split_pair
from emi_features.core.task import EMI, Task
from emi_heads.heads.settings import ConfigError, HeadConfig, all_settings, head_class, head_config
from emi_heads.training.config import TrainConfig, input_spec
from emi_heads.training.labels import Labels
from emi_heads.training.metrics import format_scores, score_columns
from emi_heads.training.rundata import RunData, load_run_data
from emi_heads.training.rundir import RunError, save_json, save_predictions
from emi_heads.training.train import TrainResult, fit

log = logging.getLogger(__name__)
EXPERIMENT = "experiment.json"


def _parse_value(config_class: type, name: str, text: str) -> Any:
    kind = typing.get_type_hints(config_class)[name]
    options = [a for a in typing.get_args(kind) if a is not type(None)] or [kind]
    if text.lower() in ("none", "null") and type(None) in typing.get_args(kind):
        return None
    base = options[0]
    if base is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"--set {name}={text}: not true or false")
        return text.lower() in ("true", "1", "yes")
    if typing.get_origin(base) is tuple:
        return tuple(float(v) for v in text.split("/"))
    if base in (int, float):
        try:
            return base(float(text)) if base is int and float(text).is_integer() else base(text)
        except ValueError:
            raise ConfigError(f"--set {name}={text}: not a number") from None
    return text


def parse_settings(items: list[str]) -> dict[str, list[Any]]:
    """`["lr=1e-3,1e-4", "head=concat"]` -> {"lr": [0.001, 0.0001], "head": ["concat"]}.
    Keys are head settings (of any head) or TrainConfig fields; a tuple's elements are
    separated by '/'."""
    owners: dict[str, type] = (
        all_settings() | {f.name: TrainConfig for f in fields(TrainConfig)} | {"head": HeadConfig}
    )
    settings: dict[str, list[Any]] = {}
    for item in items:
        try:
            key, values = split_pair(item, "--set")
        except ValueError:
            key, values = "", ""
        key = key.replace("-", "_")
        if key not in owners or key == "dims":
            known = ", ".join(sorted(k for k in owners if k != "dims"))
            raise ConfigError(f"--set {item!r}: KEY=V1,V2,... with KEY one of {known}")
        settings[key] = [_parse_value(owners[key], key, v.strip()) for v in values.split(",")]
    return settings


def apply(head: HeadConfig, train: TrainConfig, values: dict[str, Any]):
    """The two configs with `values` set (each key to the config that owns it). A new `head`
    keeps the settings it shares with the old one; a setting of another head is refused."""
    head_keys = {*all_settings(), "head"}
    changes = {k: v for k, v in values.items() if k in head_keys}
    if changes:
        name = changes.pop("head", head.head)
        own = head_class(name).setting_names()
        kept = {k: v for k, v in head.to_dict().items() if k in own}
        head = head_config(name, head.dims, **{**kept, **changes})
    train = replace(train, **{k: v for k, v in values.items() if k not in head_keys})
    return head, train


def member_name(values: dict[str, Any]) -> str:
    def text(v: Any) -> str:
        return (
            "/".join(f"{x:g}" for x in v)
            if isinstance(v, tuple)
            else f"{v:g}"
            if isinstance(v, float)
            else str(v)
        )

    return ",".join(f"{k}={text(v)}" for k, v in values.items()) or "base"


def _fit_members(
    members: list[tuple[str, dict[str, Any]]],
    parent: Path,
    head: HeadConfig,
    train: TrainConfig,
    load: Any,
    options: dict[str, Any],
) -> list[tuple[str, TrainResult]]:
    """Fit each member's settings; inputs are loaded once per distinct input spec."""
    loaded: dict[Any, RunData] = {}
    results = []
    for name, values in members:
        member_head, member_train = apply(head, train, values)
        spec = input_spec(member_head, member_train)
        if spec not in loaded:
            loaded[spec] = load(spec)
        log.info("run %s", name)
        results.append(
            (name, fit(loaded[spec], parent / name, member_head, member_train, **options))
        )
    return results


def run_grid(
    parent: Path,
    settings: dict[str, list[Any]],
    head: HeadConfig,
    train: TrainConfig,
    load: Any,
    options: dict[str, Any],
    kind: str,
) -> list[tuple[str, TrainResult]]:
    """Every combination of the settings' values (seeds are the grid `seed=...`)."""
    keys = list(settings)
    members = [
        (
            f"seed-{combo[0]}"
            if keys == ["seed"]
            else member_name(dict(zip(keys, combo, strict=True))),
            dict(zip(keys, combo, strict=True)),
        )
        for combo in itertools.product(*(settings[k] for k in keys))
    ]
    for _, values in members:  # check every member before the first is trained
        try:
            apply(head, train, values)
        except (ConfigError, TypeError) as error:
            raise ConfigError(f"--set: {error}") from None
    parent.mkdir(parents=True, exist_ok=True)
    save_json(
        parent / EXPERIMENT,
        {"kind": kind, "settings": settings, "members": [n for n, _ in members]},
    )
    return _fit_members(members, parent, head, train, load, options)


def fold_assignment(count: int, folds: int, seed: int) -> np.ndarray:
    """(count,) fold numbers 0..folds-1, balanced, shuffled with `seed`."""
    order = np.random.default_rng(seed).permutation(count)
    assignment = np.empty(count, dtype=np.int64)
    assignment[order] = np.arange(count) % folds
    return assignment


MIN_FOLD_CLIPS = 10  # a held-out fold smaller than this scores noise


def cross_validate(
    parent: Path,
    folds: int,
    data: RunData,
    head: HeadConfig,
    train: TrainConfig,
    options: dict[str, Any],
    *,
    refit: bool,
) -> dict[str, Any]:
    """K folds over every labelled clip of `data` (train and valid together); out-of-fold
    predictions, metrics over folds, and optionally a final model on all clips with the epochs
    (or ridge alpha) the folds chose."""
    labels, inputs = _union(data)
    most = len(labels.ids) // MIN_FOLD_CLIPS
    if not 2 <= folds <= most:
        raise ConfigError(
            f"--folds {folds}: {len(labels.ids)} labelled clips make 2..{max(most, 2)} folds of "
            f"at least {MIN_FOLD_CLIPS} clips (a fold's r on fewer says nothing)"
        )
    assignment = fold_assignment(len(labels.ids), folds, train.seed)
    parent.mkdir(parents=True, exist_ok=True)
    save_json(parent / EXPERIMENT, {"kind": "folds", "folds": folds, "refit": refit})
    csvs = [*data.sources["train_csvs"], *filter(None, [data.sources["valid_csv"]])]
    union = {"train_csvs": csvs, "valid_csv": None}
    oof = np.zeros_like(labels.values)
    per_fold, chosen = [], []
    for fold in range(folds):
        inside, held = np.flatnonzero(assignment != fold), np.flatnonzero(assignment == fold)
        fold_data = data.with_splits(
            (labels.subset(inside.tolist()), inputs.subset(inside)),
            (labels.subset(held.tolist()), inputs.subset(held)),
            **union,
            held_out=f"fold {fold + 1} of {folds} (seed {train.seed})",
        )
        log.info("fold %d of %d: %d train, %d held out", fold + 1, folds, len(inside), len(held))
        result = fit(fold_data, parent / f"fold-{fold + 1}", head, train, **options)
        oof[held] = result.valid_predictions
        per_fold.append(result.valid_columns)
        chosen.append(result.alpha if result.alpha is not None else result.best_epoch)
    save_predictions(
        parent / "oof_predictions.csv",
        labels.ids,
        oof,
        (labels.task.id_column, *labels.task.targets),
    )
    metrics = fold_metrics(oof, labels.values, per_fold, chosen, labels.task)
    if refit:
        refit_head, refit_train, description = _refit_settings(head, train, chosen)
        metrics["refit"] = description
        log.info("refit on all %d clips with %s", len(labels.ids), description)
        fit(
            data.with_splits((labels, inputs), None, **union),
            parent / "refit",
            refit_head,
            refit_train,
            **options,
        )
    save_json(parent / "cv_metrics.json", metrics)
    return metrics


def fold_metrics(
    oof: np.ndarray,
    targets: np.ndarray,
    per_fold: list[list[float]],
    chosen: list,
    task: Task = EMI,
) -> dict[str, Any]:
    """The out-of-fold score (every clip predicted by the fold that held it out), each fold's
    mean score and its spread over folds, per target too; logged in one line."""
    columns = score_columns(oof, targets, task)
    names = task.targets
    fold_means = [float(np.mean(r)) for r in per_fold]
    metrics = {
        "folds": len(per_fold),
        "oof_mean_r": float(columns.mean()),
        "oof_r": dict(zip(names, map(float, columns), strict=True)),
        "fold_mean_r": statistics.mean(fold_means),
        "fold_sd_r": statistics.stdev(fold_means),
        "fold_r": fold_means,
        "fold_columns_mean": dict(zip(names, np.mean(per_fold, axis=0).tolist(), strict=True)),
        "fold_columns_sd": dict(zip(names, np.std(per_fold, axis=0, ddof=1).tolist(), strict=True)),
        "chosen": chosen,
    }
    log.info(
        "%d-fold: out-of-fold %s; folds %.4f ± %.4f",
        len(per_fold),
        format_scores(columns, task),
        metrics["fold_mean_r"],
        metrics["fold_sd_r"],
    )
    return metrics


def _refit_settings(head: HeadConfig, train: TrainConfig, chosen: list) -> tuple:
    if head.head == "ridge":  # the alpha most folds chose (ties: the smaller)
        alpha = max(sorted(set(chosen)), key=chosen.count)
        return replace(head, ridge_alphas=(float(alpha),)), train, f"ridge alpha {alpha:g}"
    epochs = max(1, int(round(statistics.median(chosen))))
    return head, replace(train, epochs=epochs), f"{epochs} epochs (the folds' median best)"


def _union(data: RunData) -> tuple[Labels, Any]:
    """Training and validation clips as one labelled set (for folds); ids in both count once."""
    labels, inputs = data.train
    if data.valid is None:
        return labels, inputs
    valid_labels, valid_inputs = data.valid
    seen = set(labels.ids)
    keep = [k for k, clip_id in enumerate(valid_labels.ids) if clip_id not in seen]
    extra = valid_labels.subset(keep)
    merged = Labels(
        labels.ids + extra.ids, np.concatenate([labels.values, extra.values]), labels.task
    )
    return merged, inputs.join(valid_inputs.subset(keep))


def run_training(
    cache: Path,
    train_csvs: list[Path],
    valid_csv: Path | None,
    out: Path,
    head: HeadConfig,
    train: TrainConfig,
    *,
    settings: dict[str, list[Any]],
    folds: int | None = None,
    refit: bool = False,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    preset: str | None = None,
    command: list[str] | None = None,
    log_to: str | None = None,
    task: Task = EMI,
) -> Any:
    """What `emi-train` runs, for the labels of `task`: one run, a grid (seeds, --set with
    several values; the caller shows `experiments.compare.compare_runs` of `out`) or folds.
    Settings with one value each apply to every run."""
    from emi_features.core.devices import resolve_device

    head, train = apply(head, train, {k: v[0] for k, v in settings.items() if len(v) == 1})
    grid = {k: v for k, v in settings.items() if len(v) > 1}
    options = {
        "device": resolve_device(device),
        "progress": progress,
        "overwrite": overwrite,
        "preset": preset,
        "command": command,
        "log_to": log_to,
    }
    load = load_data_factory(cache, train_csvs, valid_csv, task)
    out = Path(out)
    if (folds or grid) and (out / EXPERIMENT).exists() and not overwrite:
        raise RunError(
            f"{out} already holds an experiment; pass --overwrite to replace its runs, or "
            f"choose another --out"
        )
    if folds:
        return cross_validate(
            out, folds, load(input_spec(head, train)), head, train, options, refit=refit
        )
    if grid:
        return run_grid(
            out,
            grid,
            head,
            train,
            load,
            options,
            kind="seeds" if list(grid) == ["seed"] else "sweep",
        )
    return fit(load(input_spec(head, train)), out, head, train, **options)


def load_data_factory(
    cache: Path, train_csvs: list[Path], valid_csv: Path | None, task: Task = EMI
):
    return lambda spec: load_run_data(cache, train_csvs, valid_csv, spec, task)
