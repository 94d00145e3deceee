"""`emi predict`, `emi runs` and `emi export`: the commands that use trained runs. Each parses
its options and calls one library function; only light modules are imported here, so `--help`,
argument errors and `emi predict --check` answer before torch loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from emi_features.core.logs import setup_logging
from emi_features.core.options import COMMAND_SETTINGS, device_option, logging_options
from emi_heads.cli.errors import user_errors as _user_errors

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True))
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
    default=None,
    help="CSV of the ids to predict: its Filename column (e.g. test_split.csv).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="An exported model folder (emi export), or its hub id; like a RUN_DIR.",
)
@click.option(
    "--media",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Predict these recordings (files or folders, audio or video; repeat): a CSV of file "
    "names and intensities, the features made as each run's training cache made them.",
)
@click.option(
    "--window",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --media: predict each WINDOW-second piece of every file (intensities over time, "
    "a CSV with start and end, and a plot per file).",
)
@click.option(
    "--hop",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --window: seconds between window starts  [default: the window]",
)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="With --media: where the features are kept for the next call  [default: OUT's name "
    "with -features]",
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
@click.option(
    "--trust-remote-code",
    is_flag=True,
    help="With --media: let a model that runs its own Python code load (never read from a run "
    "or model folder, only from this flag). Read that code first.",
)
@device_option
@logging_options
def predict_command(run_dirs: tuple[str, ...], verbose: bool, **options: Any) -> None:
    """Average the RUN_DIRs' predictions for the ids of --ids into a submission file, or predict
    the recordings of --media (files or folders) into a CSV of their intensities.

    \b
    emi-predict runs/concat runs/lstm --cache cache.h5 --ids test_split.csv --out submission.csv
    emi-predict runs/cv runs/seeds --cache vad.h5 --cache wavlm.h5 --fit-weights valid.csv ...
    emi-predict --check submission.csv --ids test_split.csv
    emi-predict runs/concat --media my_recordings/ --out intensities.csv
    emi-predict --model exported/ --media long.wav --window 10 --hop 5 --out over_time.csv
    """
    setup_logging(verbose)
    given = dict(options, run_dirs=run_dirs)
    _refuse_unused(media=bool(given["media"]), **_named(given, UNUSED_CHECKED))
    try:
        if given["media"]:
            return _predict_media(**_named(given, MEDIA_OPTIONS))
        _submission_or_check(**_named(given, SUBMISSION_OPTIONS))
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None


UNUSED_CHECKED = (
    "window",
    "hop",
    "work",
    "caches",
    "ids_csv",
    "check_path",
    "allow_incomplete",
    "trust_remote_code",
)
MEDIA_OPTIONS = (
    "run_dirs",
    "models",
    "media",
    "out",
    "window",
    "hop",
    "work",
    "device",
    "quiet",
    "weights",
    "fit_weights_on",
    "trust_remote_code",
)
SUBMISSION_OPTIONS = (
    "run_dirs",
    "models",
    "caches",
    "ids_csv",
    "out",
    "check_path",
    "device",
    "allow_incomplete",
    "weights",
    "fit_weights_on",
)


def _named(options: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """The options of `names`, as keyword arguments."""
    return {name: options[name] for name in names}


def _submission_or_check(
    run_dirs: tuple[str, ...],
    models: tuple[str, ...],
    caches: tuple[Path, ...],
    ids_csv: Path | None,
    out: Path | None,
    check_path: Path | None,
    device: str | None,
    allow_incomplete: bool,
    weights: str | None,
    fit_weights_on: Path | None,
) -> None:
    """`--check FILE`: the submission checked against --ids; else the runs' (or models')
    predictions for --ids from the caches, into a submission."""
    if ids_csv is None:
        raise click.UsageError("give --ids IDS.csv (or --media PATH to predict recordings)")
    if check_path is not None:
        from emi_heads.use.submission import check_submission

        rows = check_submission(check_path, ids_csv)
        click.echo(f"{check_path}: valid submission, {rows} rows")
        return
    if out is None or not (run_dirs or models):
        raise click.UsageError("predicting needs RUN_DIR... (or --model) and --out")
    _predict_ids(
        run_dirs,
        models,
        caches,
        ids_csv,
        out,
        device,
        allow_incomplete,
        weights,
        fit_weights_on,
    )


def _predict_ids(
    run_dirs, models, caches, ids_csv, out, device, allow_incomplete, weights, fit_weights_on
) -> None:
    """The ids of `--ids` from caches: a submission (checked) or, for a run's own labels, a
    CSV of the id column and the targets."""
    from emi_heads.use.model import local_source
    from emi_heads.use.predict import predict_submission
    from emi_heads.use.submission import check_submission

    run_dirs = (*run_dirs, *(str(local_source(m)) for m in models))
    result = predict_submission(
        list(run_dirs),
        list(caches),
        ids_csv,
        out,
        device=device,
        allow_incomplete=allow_incomplete,
        weights=weights,
        fit_weights_on=fit_weights_on,
    )
    if result.task.submission:  # the challenge's file: checked as the challenge checks it
        check_submission(result.path, ids_csv)
    click.echo(
        f"{result.path}: {result.rows} rows from {result.runs} run(s)"
        + (f", {len(result.missing)} filled with the label mean" if result.missing else "")
    )


def _refuse_unused(
    *,
    media: bool,
    window,
    hop,
    work,
    caches,
    ids_csv,
    check_path,
    allow_incomplete: bool,
    trust_remote_code: bool,
) -> None:
    """An option that the chosen mode would ignore is refused in one line, never dropped."""
    if hop is not None and window is None:
        raise click.UsageError("--hop goes with --window")
    if media:
        pairs = (
            ("--cache", caches),
            ("--ids", ids_csv),
            ("--check", check_path),
            ("--allow-incomplete", allow_incomplete),
        )
        given = [name for name, value in pairs if value]
        if given:
            raise click.UsageError(
                f"{', '.join(given)}: not used with --media (which makes "
                "the features of the recordings itself)"
            )
        return
    given = [
        name
        for name, value in (
            ("--window", window),
            ("--work", work),
            ("--trust-remote-code", trust_remote_code),
        )
        if value
    ]
    if given:
        raise click.UsageError(f"{', '.join(given)}: only with --media")


def _predict_media(
    run_dirs,
    models,
    media,
    out,
    window,
    hop,
    work,
    device,
    quiet,
    weights,
    fit_weights_on,
    trust_remote_code,
) -> None:
    """`--media`: the recordings' intensities (the library function says what it wrote)."""
    if out is None:
        raise click.UsageError("--media needs --out CSV")
    from emi_heads.use.model import predict_media, split_media

    # `--media a.wav b.wav`: click gives b.wav to RUN_DIRS; it is media all the same
    run_dirs, more = split_media(run_dirs)
    click.echo(
        predict_media(
            [*run_dirs, *models],
            [*media, *more],
            out,
            window=window,
            hop=hop,
            work=work,
            device=device,
            progress=not quiet,
            weights=weights,
            fit_weights_on=fit_weights_on,
            trust_remote_code=trust_remote_code,
        )
    )


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument(
    "folders",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option("--sort", default="valid_r", help="Column to sort by (scores: best first).")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the table as CSV.",
)
@click.option(
    "--png",
    "png_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also plot valid mean r per run (seed groups with their sd).",
)
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
    from emi_heads.experiments.compare import compare_runs, format_table, plot_runs, write_csv

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


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The model folder to write.",
)
@click.option("--overwrite", is_flag=True, help="Replace a folder already at --out.")
@logging_options
def export_command(
    run_dirs: tuple[str, ...], out: Path, overwrite: bool, quiet: bool, verbose: bool
) -> None:
    """Write RUN_DIRs (runs or parents: an ensemble) as one self-contained model folder: the
    weights, configs with no machine paths, the recipe of their features, a model card.

    \b
    emi export runs/concat runs/lstm --out my-emi-model
    emi predict --model my-emi-model --media recordings/ --out intensities.csv
    hf upload me/my-emi-model my-emi-model     # then --model me/my-emi-model
    """
    setup_logging(verbose)
    from emi_heads.use.export import export_command_main

    try:
        click.echo(export_command_main(run_dirs, out, overwrite))
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None
