"""`emi-train` and `emi-predict` (= `emi train`, `emi predict`): parse options, call one library
function each. Only light modules are imported here: `--help`, argument errors and
`emi-predict --check` answer before torch loads.

Every field of `HeadConfig` and `TrainConfig` is an option, generated from the dataclass with
its default and help, so a new field is on the command line without touching this file.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import click

from emi_features.logs import setup_logging
from emi_features.options import COMMAND_SETTINGS, device_option, logging_options
from emi_heads.config import HEADS, PRESETS, ConfigError, HeadConfig, TrainConfig

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
# Fields set by the command's own arguments, not by a generated option.
_NOT_OPTIONS = {"head", "dims"}


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


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


def config_options(config_class: type) -> Any:
    """click options for every field of a config dataclass (but `_NOT_OPTIONS`)."""
    hints = typing.get_type_hints(config_class)

    def decorate(function: Any) -> Any:
        for item in reversed(fields(config_class)):
            if item.name in _NOT_OPTIONS:
                continue
            meta, kind = item.metadata, hints[item.name]
            flag = meta.get("flag", item.name).replace("_", "-")
            default = item.default if item.default is not MISSING else item.default_factory()
            options: dict[str, Any] = {"help": meta.get("help"), "show_default": True}
            if kind is bool:
                names = [f"--{flag}/--no-{flag}", item.name]
                options["default"] = default
            elif "choices" in meta:
                names = [f"--{flag}", item.name]
                options.update(type=click.Choice(meta["choices"]), default=default)
            elif typing.get_origin(kind) is tuple:
                names = [f"--{flag}", item.name]
                options.update(
                    type=str,
                    default=",".join(f"{v:g}" for v in default),
                    callback=lambda _c, _p, v: _float_list(v),
                )
            else:
                base = next(a for a in typing.get_args(kind) or (kind,) if a is not type(None))
                names = [f"--{flag}", item.name]
                options.update(type=base, default=0 if default is None else default)
            function = click.option(*names, **options)(function)
        return function

    return decorate


def _build(config_class: type, values: dict[str, Any], preset: dict[str, Any], **fixed: Any) -> Any:
    """A config from parsed options: an option given on the command line wins, then the
    preset's value, then the default; `zero_is_none` fields map 0 to None."""
    context = click.get_current_context()
    own = {}
    for item in fields(config_class):
        if item.name not in values:
            continue
        value = values.pop(item.name)
        given = context.get_parameter_source(item.name) == click.core.ParameterSource.COMMANDLINE
        if item.name in preset and not given:
            own[item.name] = preset[item.name]
            continue
        if item.metadata.get("zero_is_none") and value == 0:
            value = None
        own[item.name] = value
    try:
        return config_class(**own, **fixed)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("cache", type=_PATH)
@click.option(
    "--train",
    "train_csvs",
    type=_PATH,
    multiple=True,
    required=True,
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
@config_options(TrainConfig)
@config_options(HeadConfig)
@device_option
@logging_options
def train_command(
    cache: Path,
    train_csvs: tuple[Path, ...],
    valid_csv: Path | None,
    head: str | None,
    preset: str | None,
    out: Path,
    overwrite: bool,
    device: str | None,
    quiet: bool,
    verbose: bool,
    **options: Any,
) -> None:
    """Train one head on CACHE's features with labels from the split CSVs.

    \b
    emi-train cache.h5 --train data/sample/train_split.csv \\
        --valid data/sample/valid_split.csv --head concat --out runs/concat
    """
    setup_logging(verbose)
    published = PRESETS[preset] if preset else None
    head = head or (published.head["head"] if published else None)
    if head is None:
        raise click.UsageError("give --head NAME or --preset NAME")
    head_preset = {k: v for k, v in published.head.items() if k != "head"} if published else {}
    head_config = _build(HeadConfig, options, head_preset, head=head)
    train_config = _build(TrainConfig, options, published.train if published else {})
    from emi_heads.train import train

    try:
        train(
            cache,
            list(train_csvs),
            valid_csv,
            out,
            head_config,
            train_config,
            device=device,
            progress=not quiet,
            overwrite=overwrite,
            preset=preset,
        )
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--cache", type=_PATH, help="The feature cache holding the ids.")
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
    cache: Path | None,
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
    emi-predict --check submission.csv --ids test_split.csv
    """
    setup_logging(verbose)
    try:
        if check_path is not None:
            from emi_heads.submission import check_submission

            rows = check_submission(check_path, ids_csv)
            click.echo(f"{check_path}: valid submission, {rows} rows")
            return
        if cache is None or out is None or not run_dirs:
            raise click.UsageError("predicting needs RUN_DIR..., --cache and --out")
        from emi_heads.predict import predict_submission
        from emi_heads.submission import check_submission

        result = predict_submission(
            list(run_dirs), cache, ids_csv, out, device=device, allow_incomplete=allow_incomplete
        )
        check_submission(result.path, ids_csv)
        click.echo(
            f"{result.path}: {result.rows} rows from {len(run_dirs)} run(s)"
            + (f", {len(result.missing)} filled with the label mean" if result.missing else "")
        )
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None
