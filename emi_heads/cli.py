"""`emi-train` and `emi-predict` (= `emi train`, `emi predict`): parse options, call one library
function each. Only light modules are imported here: `--help`, argument errors and
`emi-predict --check` answer before torch loads.

Every field of `HeadConfig` and `TrainConfig` is an option, generated from the dataclass with
its default and help, so a new field is on the command line without touching this file.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import click

from emi_features.logs import setup_logging
from emi_features.options import COMMAND_SETTINGS, device_option, logging_options
from emi_heads.config import HEADS, ConfigError, HeadConfig, TrainConfig
from emi_heads.options import build_config, config_options
from emi_heads.presets import PRESETS

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input: one line, exit 1. Imported only once a command runs."""
    from emi_features.atomic import WriteError
    from emi_features.dataset import DatasetError
    from emi_features.devices import DeviceError
    from emi_features.reader import CacheError
    from emi_heads.labels import LabelError
    from emi_heads.rundir import RunError
    from emi_heads.submission import SubmissionError

    return (
        DatasetError,
        DeviceError,
        CacheError,
        LabelError,
        RunError,
        SubmissionError,
        WriteError,
        ValueError,
    )


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
    "--head",
    type=click.Choice(list(HEADS)),
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
@config_options(HeadConfig)
@device_option
@logging_options
def train_command(
    cache: Path | None,
    train_csvs: tuple[Path, ...],
    valid_csv: Path | None,
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
    emi-train cache.h5 --train ... --valid ... --head linear --folds 5 --refit --out runs/cv
    emi-train --from runs/concat --set lr=1e-3,3e-4 --out runs/concat-lr
    """
    setup_logging(verbose)
    if log_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise click.UsageError(
            "--log-to tensorboard needs it installed: pip install 'emi[tensorboard]'"
        )
    base_head, base_train = {}, {}
    if from_run is not None:
        recorded = _recorded_run(from_run)
        base_head = {k: v for k, v in recorded["head"].items() if k != "dims"}
        base_train = recorded["train"]
        preset = preset or recorded.get("preset")
        cache = cache or Path(recorded["cache"]["path"])
        train_csvs = train_csvs or tuple(Path(p) for p in recorded["train_csvs"])
        valid_csv = valid_csv or (Path(recorded["valid_csv"]) if recorded["valid_csv"] else None)
    elif preset is not None:
        base_head, base_train = PRESETS[preset].head, PRESETS[preset].train
    head = head or base_head.get("head")
    if head is None:
        raise click.UsageError("give --head NAME, --preset NAME or --from RUN_DIR")
    if cache is None or not train_csvs:
        raise click.UsageError("give CACHE and --train CSV (or --from RUN_DIR)")
    head_base = {k: v for k, v in base_head.items() if k != "head"}
    head_config = build_config(HeadConfig, options, head_base, head=head)
    train_config = build_config(TrainConfig, options, base_train)
    from emi_heads.experiments import parse_settings

    try:
        settings = parse_settings(list(set_items))
        if seeds:
            settings["seed"] = [int(v) for v in seeds.split(",") if v.strip()]
    except (ConfigError, ValueError) as error:
        raise click.UsageError(str(error)) from None
    if folds and any(len(v) > 1 for v in settings.values()):
        raise click.UsageError("--folds runs one setting; use --set with single values")
    from emi_heads.experiments import run_training

    try:
        run_training(
            cache, list(train_csvs), valid_csv, out, head_config, train_config,
            settings=settings, folds=folds, refit=refit, device=device, progress=not quiet,
            overwrite=overwrite, preset=preset, command=["emi-train", *sys.argv[1:]], log_to=log_to,
        )  # fmt: skip
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None
    if not folds and any(len(values) > 1 for values in settings.values()):
        from emi_heads.runs import compare_runs, format_table

        click.echo(format_table(compare_runs([out])))


def _recorded_run(run_dir: Path) -> dict[str, Any]:
    """A run's config.json, its head and training settings checked (light: no torch)."""
    try:
        recorded = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        HeadConfig.from_dict(recorded["head"])
        TrainConfig.from_dict(recorded["train"])
        recorded["cache"]["path"], recorded["train_csvs"], recorded["valid_csv"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.UsageError(f"--from {run_dir}: not a usable run ({error})") from None
    return recorded


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--cache",
    "caches",
    type=_PATH,
    multiple=True,
    help="Feature cache(s) holding the ids, one per backbone the runs were trained on  "
    "[default: the caches the runs recorded]",
)
@click.option("--weights", default=None, help="Ensemble weights, one per RUN_DIR (e.g. 0.7,0.3).")
@click.option(
    "--fit-weights",
    "fit_weights_on",
    type=_PATH,
    default=None,
    help="Fit non-negative weights per column on the runs' held-out predictions of the clips "
    "this labelled CSV holds (valid_predictions.csv or oof_predictions.csv).",
)
@click.option(
    "--ids",
    "ids_csv",
    type=_PATH,
    required=True,
    help="CSV of the ids to predict: its Filename column (e.g. test_split.csv).",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Submission CSV to write."
)
@click.option(
    "--check",
    "check_path",
    type=_PATH,
    default=None,
    help="Validate this submission file against --ids instead of predicting.",
)
@click.option(
    "--allow-incomplete",
    is_flag=True,
    help="Predict from a cache whose extraction has not finished.",
)
@device_option
@logging_options
def predict_command(
    run_dirs: tuple[str, ...],
    caches: tuple[Path, ...],
    weights: str | None,
    fit_weights_on: Path | None,
    ids_csv: Path,
    out: Path | None,
    check_path: Path | None,
    allow_incomplete: bool,
    device: str | None,
    quiet: bool,
    verbose: bool,
) -> None:
    """Average the RUN_DIRs' predictions for the ids of --ids into a submission file.

    \b
    emi-predict runs/concat runs/lstm --cache cache.h5 --ids test_split.csv --out submission.csv
    emi-predict runs/cv runs/seeds --cache vad.h5 --cache wavlm.h5 --fit-weights valid.csv ...
    emi-predict --check submission.csv --ids test_split.csv
    """
    setup_logging(verbose)
    try:
        if check_path is not None:
            from emi_heads.submission import check_submission

            rows = check_submission(check_path, ids_csv)
            click.echo(f"{check_path}: valid submission, {rows} rows")
            return
        if out is None or not run_dirs:
            raise click.UsageError("predicting needs RUN_DIR... and --out")
        from emi_heads.predict import predict_submission
        from emi_heads.submission import check_submission

        result = predict_submission(
            list(run_dirs), list(caches), ids_csv, out, device=device,
            allow_incomplete=allow_incomplete, weights=weights, fit_weights_on=fit_weights_on,
        )  # fmt: skip
        check_submission(result.path, ids_csv)
        click.echo(
            f"{result.path}: {result.rows} rows from {result.runs} run(s)"
            + (f", {len(result.missing)} filled with the label mean" if result.missing else "")
        )
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument(
    "folders",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option("--sort", default="valid_r", help="Column to sort by (scores: best first).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the table as CSV.")  # fmt: skip
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also plot valid mean r per run (seed groups with their sd).")  # fmt: skip
@click.option("--wide", is_flag=True, help="Every setting, whole; default: what differs, cut.")
@logging_options
def runs_command(
    folders: tuple[Path, ...],
    sort: str,
    csv_path: Path | None,
    png_path: Path | None,
    wide: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Compare every run under FOLDERS: settings that differ, scores, seed groups as mean±sd.

    \b
    emi-runs runs/ --sort valid_r --csv runs.csv --png runs.png
    """
    setup_logging(verbose)
    from emi_heads.runs import compare_runs, format_table, plot_runs, write_csv

    rows = compare_runs(list(folders), sort=sort)
    if not rows:
        raise click.ClickException(
            f"no runs (config.json and metrics.json) under {', '.join(map(str, folders))}"
        )
    click.echo(format_table(rows, wide=wide))
    if csv_path:
        write_csv(rows, csv_path)
    if png_path:
        plot_runs(rows, png_path)
