"""`emi-train` and `emi-predict` (= `emi train`, `emi predict`): parse options, call one library
function each. Only light modules are imported here: `--help`, argument errors and
`emi-predict --check` answer before torch loads.

Every field of `HeadConfig` and `TrainConfig` is an option, generated from the dataclass with
its default and help, so a new field is on the command line without touching this file.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from emi_features.core.logs import setup_logging
from emi_features.core.options import COMMAND_SETTINGS, device_option, logging_options
from emi_features.core.task import METRICS, TASKS
from emi_heads.cli.errors import user_errors as _user_errors
from emi_heads.cli.options import build_config, build_head_config, config_options, head_options
from emi_heads.heads.settings import ALIASES, HEADS, ConfigError
from emi_heads.heads.settings_json import head_from_dict
from emi_heads.training.config import TrainConfig
from emi_heads.training.presets import PRESETS

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("cache", type=_PATH, required=False)
@click.option(
    "--train",
    "train_csvs",
    type=_PATH,
    multiple=True,
    help="Split CSV(s) with labels; repeat to train on several (e.g. train + valid).",
)
@click.option(
    "--valid",
    "valid_csv",
    type=_PATH,
    default=None,
    help="Validation CSV: early stopping and metrics. Omit to train a final model.",
)
@click.option(
    "--task",
    "task_name",
    type=click.Choice(list(TASKS)),
    default=None,
    help="The labels' task: "
    + "; ".join(
        f"{t.name}: {len(t.targets)} targets ({', '.join(t.targets)})" for t in TASKS.values()
    )
    + "  [default: emi]",
)
@click.option(
    "--targets",
    default=None,
    metavar="COL,COL|all",
    help="Your own labels: these columns of the label CSVs (or every numeric one: all), "
    "with the id column they have; runs, predictions and exports use them.",
)
@click.option(
    "--metric",
    type=click.Choice(list(METRICS)),
    default=None,
    help="With --targets: what runs are selected and reported by, per target then averaged  "
    "[default: pearson]",
)
@click.option(
    "--head",
    type=click.Choice([*HEADS, *ALIASES]),
    default=None,
    help="; ".join(f"{k}: {v.description}" for k, v in HEADS.items()),
)
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default=None,
    help="A published head with every setting as published; options given still override. "
    + "; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run directory to write.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace a run already in --out (kept intact until the new run has weights).",
)
@click.option(
    "--from",
    "from_run",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Re-run RUN_DIR: its cache, CSVs and every setting; options and --set override.",
)
@click.option(
    "--seeds",
    default=None,
    help="Comma-separated seeds: one sub-run each in --out, the cache loaded once.",
)
@click.option(
    "--folds",
    type=click.IntRange(min=2),
    default=None,
    help="K-fold cross-validation over "
    "every labelled clip of --train and --valid: one sub-run per fold, out-of-fold predictions.",
)
@click.option(
    "--refit",
    is_flag=True,
    help="With --folds: a final model on all clips with the epochs "
    "(or ridge alpha) the folds chose.",
)
@click.option(
    "--set",
    "set_items",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Set any head or training field; several values make a grid (one sub-run each). "
    "Tuples separate their numbers by '/'.",
)
@click.option(
    "--log-to",
    type=click.Choice(["tensorboard"]),
    default=None,
    help="Also log every epoch to TensorBoard in RUN_DIR/tensorboard (the tensorboard extra).",
)
@config_options(TrainConfig)
@head_options
@device_option
@logging_options
def train_command(
    cache: Path | None,
    train_csvs: tuple[Path, ...],
    valid_csv: Path | None,
    task_name: str | None,
    targets: str | None,
    metric: str | None,
    head: str | None,
    preset: str | None,
    out: Path,
    overwrite: bool,
    from_run: Path | None,
    seeds: str | None,
    folds: int | None,
    refit: bool,
    set_items: tuple[str, ...],
    log_to: str | None,
    device: str | None,
    quiet: bool,
    verbose: bool,
    **options: Any,
) -> None:
    """Train a head on CACHE's features with labels from the split CSVs; or several: seeds,
    folds, a grid of settings, all from one load of the cache.

    \b
    emi-train cache.h5 --train data/sample/train_split.csv \\
        --valid data/sample/valid_split.csv --head concat --out runs/concat
    emi-train cache.h5 --train ... --valid ... --preset concat-2026 --seeds 0,1,2 --out runs/c
    emi-train cache.h5 --train ... --valid ... --head ridge --folds 5 --refit --out runs/cv
    emi-train --from runs/concat --set lr=1e-3,3e-4 --out runs/concat-lr
    """
    setup_logging(verbose)
    _check_paths(log_to, out)
    head_config, train_config, preset, cache, train_csvs, valid_csv = _configs(
        head, options, from_run, preset, cache, train_csvs, valid_csv
    )
    settings = _grid_settings(set_items, seeds, folds)

    try:
        task = _task(task_name, targets, metric, from_run, [*train_csvs, valid_csv])
        data = (cache, list(train_csvs), valid_csv)
        configs = (head_config, train_config, preset)
        runs = (settings, folds, refit)
        _train_all(data, out, configs, task, runs, device, quiet, overwrite, log_to)
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None
    if not folds and any(len(values) > 1 for values in settings.values()):
        _show_grid(out)


def _train_all(data, out, configs, task, runs, device, quiet, overwrite, log_to) -> None:
    """Every run the options ask for (one, seeds, folds, a grid), from one load of the cache:
    `data` is (cache, train CSVs, valid CSV), `configs` (head, training, preset), `runs`
    (grid settings, folds, refit)."""
    from emi_heads.experiments.grid import run_training

    cache, train_csvs, valid_csv = data
    head_config, train_config, preset = configs
    settings, folds, refit = runs
    run_training(
        cache,
        train_csvs,
        valid_csv,
        out,
        head_config,
        train_config,
        task=task,
        settings=settings,
        folds=folds,
        refit=refit,
        device=device,
        progress=not quiet,
        overwrite=overwrite,
        preset=preset,
        command=_command_line("train"),
        log_to=log_to,
    )


def _configs(head, options, from_run, preset, cache, train_csvs, valid_csv) -> tuple:
    """The head and training configs from the options over their base (`_base`), and the
    preset, cache and CSVs the run uses; one line when a head or the data is missing."""
    base_head, base_train, preset, cache, train_csvs, valid_csv = _base(
        from_run, preset, cache, train_csvs, valid_csv
    )
    head = head or base_head.get("head")
    if head is None:
        raise click.UsageError("give --head NAME, --preset NAME or --from RUN_DIR")
    if cache is None or not train_csvs:
        raise click.UsageError("give CACHE and --train CSV (or --from RUN_DIR)")
    head_config = build_head_config(head, options, base_head)
    train_config = build_config(TrainConfig, options, base_train)
    return head_config, train_config, preset, cache, train_csvs, valid_csv


def _base(from_run, preset, cache, train_csvs, valid_csv) -> tuple:
    """What a training starts from: a `--from` run (its settings, cache and CSVs where the
    command line gives none) or a preset's settings, else nothing."""
    if from_run is not None:
        recorded = _recorded_run(from_run)
        preset = preset or recorded.get("preset")
        cache, train_csvs, valid_csv = _recorded_data(recorded, cache, train_csvs, valid_csv)
        return recorded["head"], recorded["train"], preset, cache, train_csvs, valid_csv
    if preset is not None:
        return PRESETS[preset].head, PRESETS[preset].train, preset, cache, train_csvs, valid_csv
    return {}, {}, preset, cache, train_csvs, valid_csv


def _task(
    name: str | None,
    targets: str | None,
    metric: str | None,
    from_run: Path | None,
    csvs: list[Path | None],
):
    """The task a training is for: `--task`, own `--targets` (with `--metric`), or the task
    of the `--from` run when neither is given; EMI by default."""
    from emi_features.core.task import EMI, Task, get_task
    from emi_heads.training.labels import task_for

    if name and targets:
        raise click.UsageError("give --task or --targets, not both")
    if metric and not targets:
        raise click.UsageError("--metric goes with --targets (a built-in task has its metric)")
    if name:
        return get_task(name)
    if targets:
        return task_for(targets, [p for p in csvs if p is not None], metric or "pearson")
    if from_run is not None:
        recorded = _recorded_run(from_run)
        return Task.from_dict(recorded["task"]) if "task" in recorded else EMI
    return EMI


def _show_grid(out: Path) -> None:
    """A grid's runs side by side (`emi runs OUT`)."""
    from emi_heads.experiments.compare import compare_runs, format_table

    click.echo(format_table(compare_runs([out])))


def _check_paths(log_to: str | None, out: Path) -> None:
    if out.is_symlink() and not out.exists():
        raise click.UsageError(f"--out {out} is a link to nothing ({os.readlink(out)})")
    if log_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise click.UsageError(
            "--log-to tensorboard needs it installed: pip install 'emi[tensorboard]'"
        )


def _grid_settings(set_items: tuple[str, ...], seeds: str | None, folds: int | None) -> dict:
    """`--set` and `--seeds` as the grid's settings (one line for a bad one)."""
    from emi_heads.experiments.grid import parse_settings

    try:
        settings = parse_settings(list(set_items))
        if seeds:
            settings["seed"] = [int(v) for v in seeds.split(",") if v.strip()]
            repeated = sorted({v for v in settings["seed"] if settings["seed"].count(v) > 1})
            if repeated:
                raise ValueError(f"--seeds: {repeated[0]} appears twice")
    except (ConfigError, ValueError) as error:
        raise click.UsageError(str(error)) from None
    if folds and any(len(v) > 1 for v in settings.values()):
        raise click.UsageError("--folds runs one setting; use --set with single values")
    return settings


def _recorded_data(
    recorded: dict[str, Any],
    cache: Path | None,
    train_csvs: tuple[Path, ...],
    valid_csv: Path | None,
) -> tuple[Path, tuple[Path, ...], Path | None]:
    """`--from`: the run's cache and split CSVs where the command line gives none; a CSV that
    changed since the run is said."""
    cache = cache or Path(recorded["cache"]["path"])
    train_csvs = train_csvs or tuple(Path(p) for p in recorded["train_csvs"])
    valid_csv = valid_csv or (Path(recorded["valid_csv"]) if recorded["valid_csv"] else None)
    _warn_changed_csvs(recorded, [*train_csvs, *([valid_csv] if valid_csv else [])])
    return cache, train_csvs, valid_csv


def _warn_changed_csvs(recorded: dict[str, Any], csvs: list[Path]) -> None:
    """`--from`: a label file that changed since the run (its digest differs) is said."""
    from emi_features.core.dataset import file_digest

    digests = (recorded.get("provenance") or {}).get("csv_digests") or {}
    for path in csvs:
        before = digests.get(str(Path(path).resolve()))
        if before is not None and Path(path).is_file() and file_digest(path) != before:
            logging.getLogger("emi").warning(
                "--from: %s changed since that run (its digest differs): this run trains on "
                "other labels",
                path,
            )


def _command_line(name: str) -> list[str]:
    """The command as typed: `emi NAME ...` or `emi-NAME ...`."""
    arguments = sys.argv[1:]
    return ["emi", *arguments] if arguments[:1] == [name] else [f"emi-{name}", *arguments]


def _recorded_run(run_dir: Path) -> dict[str, Any]:
    """A run's config.json, its head and training settings checked (light: no torch)."""
    try:
        recorded = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        head_from_dict(recorded["head"])
        TrainConfig.from_dict(recorded["train"])
        recorded["cache"]["path"], recorded["train_csvs"], recorded["valid_csv"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.UsageError(f"--from {run_dir}: not a usable run ({error})") from None
    return recorded


__all__ = ["train_command"]
