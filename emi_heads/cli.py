"""`emi-train` and `emi-predict`: parse options, call one library function each."""

from __future__ import annotations

from pathlib import Path

import click

from emi_features.cli import setup_logging
from emi_heads.heads import HEADS, HeadConfig
from emi_heads.train import TrainConfig

_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
_DEFAULTS_TRAIN = TrainConfig()
_DEFAULTS_HEAD = HeadConfig(head="concat")


def _user_errors() -> tuple[type[Exception], ...]:
    from emi_features.dataset import DatasetError
    from emi_features.reader import CacheError
    from emi_heads.labels import LabelError
    from emi_heads.predict import SubmissionError
    from emi_heads.rundir import RunError

    return (DatasetError, CacheError, LabelError, RunError, SubmissionError, ValueError)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
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
    type=click.Choice(sorted(HEADS)),
    required=True,
    help="; ".join(f"{k}: {v.description}" for k, v in HEADS.items()),
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Run directory to write.",
)
@click.option("--loss", default=_DEFAULTS_TRAIN.loss, help="e.g. mse, pearson, mse+0.1*ccc")
@click.option("--epochs", type=int, default=_DEFAULTS_TRAIN.epochs)
@click.option("--batch-size", type=int, default=_DEFAULTS_TRAIN.batch_size)
@click.option("--lr", type=float, default=_DEFAULTS_TRAIN.lr)
@click.option("--weight-decay", type=float, default=_DEFAULTS_TRAIN.weight_decay)
@click.option(
    "--patience",
    type=int,
    default=_DEFAULTS_TRAIN.patience,
    help="Early stopping: epochs without a better valid r.",
)
@click.option(
    "--aux-weight",
    type=float,
    default=_DEFAULTS_TRAIN.aux_weight,
    help="Weight of each branch's auxiliary loss (concat).",
)
@click.option(
    "--vad-weight",
    type=float,
    default=_DEFAULTS_TRAIN.vad_weight,
    help="Weight of the VAD latent's loss (concat, --vad-latent supervised).",
)
@click.option("--ema/--no-ema", default=_DEFAULTS_TRAIN.ema, help="EMA of the weights.")
@click.option("--ema-decay", type=float, default=_DEFAULTS_TRAIN.ema_decay)
@click.option(
    "--max-seconds",
    type=float,
    default=_DEFAULTS_TRAIN.max_seconds,
    help="Use each clip's first seconds of frames (0: all).",
)
@click.option("--seed", type=int, default=_DEFAULTS_TRAIN.seed)
@click.option(
    "--hidden",
    type=int,
    default=_DEFAULTS_HEAD.hidden,
    help="LSTM hidden size (the published system: 1027).",
)
@click.option("--layers", type=int, default=_DEFAULTS_HEAD.layers, help="LSTM layers.")
@click.option("--dropout", type=float, default=_DEFAULTS_HEAD.dropout)
@click.option(
    "--vad-latent",
    type=click.Choice(["supervised", "free", "off"]),
    default=_DEFAULTS_HEAD.vad_latent,
    help="concat: how the VAD latent is learned.",
)
@click.option("--vad/--no-vad", "use_vad", default=True, help="Ablation: VAD inputs.")
@click.option("--mean/--no-mean", "use_mean", default=True, help="Ablation: global mean vector.")
@click.option("--device", default=None, help="cpu, cuda, cuda:N  [default: cuda if available]")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_command(
    cache: Path,
    train_csvs: tuple[Path, ...],
    valid_csv: Path | None,
    head: str,
    out: Path,
    device: str | None,
    quiet: bool,
    hidden: int,
    layers: int,
    dropout: float,
    vad_latent: str,
    use_vad: bool,
    use_mean: bool,
    max_seconds: float,
    **train_options: object,
) -> None:
    """Train one head on CACHE's features with labels from the split CSVs.

    \b
    emi-train cache.h5 --train data/sample/train_split.csv \\
        --valid data/sample/valid_split.csv --head concat --out runs/concat
    """
    setup_logging(verbose=False)
    from emi_heads.train import train

    head_config = HeadConfig(
        head=head,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        vad_latent=vad_latent,
        use_vad=use_vad,
        use_mean=use_mean,
    )
    train_config = TrainConfig(max_seconds=max_seconds or None, **train_options)
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
        )
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("run_dirs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--cache", type=_PATH, help="The feature cache holding the ids.")
@click.option(
    "--ids",
    "ids_csv",
    type=_PATH,
    required=True,
    help="CSV whose first column holds the ids (e.g. test_split.csv).",
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
@click.option("--device", default=None, help="cpu, cuda, cuda:N  [default: cuda if available]")
def predict_command(
    run_dirs: tuple[str, ...],
    cache: Path | None,
    ids_csv: Path,
    out: Path | None,
    check_path: Path | None,
    device: str | None,
) -> None:
    """Average the RUN_DIRs' predictions for the ids of --ids into a submission file.

    \b
    emi-predict runs/concat runs/lstm --cache cache.h5 --ids test_split.csv --out submission.csv
    emi-predict --check submission.csv --ids test_split.csv
    """
    setup_logging(verbose=False)
    from emi_heads.predict import check_submission, predict_submission

    try:
        if check_path is not None:
            rows = check_submission(check_path, ids_csv)
            click.echo(f"{check_path}: valid submission, {rows} rows")
            return
        if cache is None or out is None or not run_dirs:
            raise click.UsageError("predicting needs RUN_DIR..., --cache and --out")
        result = predict_submission(list(run_dirs), cache, ids_csv, out, device=device)
        check_submission(result.path, ids_csv)
        click.echo(
            f"{result.path}: {result.rows} rows from {len(run_dirs)} run(s)"
            + (f", {len(result.missing)} filled with the label mean" if result.missing else "")
        )
    except _user_errors() as error:
        raise click.ClickException(str(error)) from None
