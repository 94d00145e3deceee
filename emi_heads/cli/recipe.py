"""`emi recipe NAME DATA --out DIR`: a published EMI system whole, from the media to a checked
submission (the recipes: `emi_heads.pipelines.recipes.book`). Light: no torch in this process;
each step runs as its own `emi` command."""

from __future__ import annotations

from pathlib import Path

import click

from emi_features.core.logs import setup_logging
from emi_features.core.options import COMMAND_SETTINGS, logging_options
from emi_heads.pipelines.recipes.book import MODEL_KEYS, RECIPES


def _list(context: click.Context, _: click.Parameter, value: bool) -> None:
    if not value or context.resilient_parsing:
        return
    for recipe in RECIPES.values():
        click.echo(f"{recipe.name}: {recipe.system}, {recipe.published}")
        models = [f"{k}={recipe.settings[k]}" for k in MODEL_KEYS if k in recipe.settings]
        click.echo(f"  downloads: {', '.join(models)}")
        for note in recipe.notes:
            click.echo(f"  note: {note}")
        for difference in recipe.differs:
            click.echo(f"  differs: {difference}")
    context.exit()


def _show(recipe, planned, out: Path) -> None:
    """The dry run: every command, in order; those done before as comments."""
    click.echo(f"# {recipe.name}: {recipe.system} ({recipe.published}), into {out}")
    for citation in recipe.citations:
        click.echo(f"#   {citation}")
    for difference in recipe.differs:
        click.echo(f"# differs: {difference}")
    for item in planned:
        click.echo(("# done: " if item.done else "") + item.shell())


@click.command(context_settings=COMMAND_SETTINGS)
@click.argument("name", type=click.Choice(list(RECIPES)))
@click.argument("data", required=False)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of the cache, the run and the submission  [default: NAME]",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a setting: a model (audio_model, asr_model, text_model, "
    "image_model), transcripts=FILE, fps, epochs, seed...",
)
@click.option("--dry-run", is_flag=True, help="Print the commands it would run, and stop.")
@click.option(
    "--trust-remote-code",
    is_flag=True,
    help="Allow a model that runs its own code (casia-2026's ChatGLM3).",
)
@click.option(
    "--list",
    "list_",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list,
    help="List the recipes and what each downloads; exit.",
)
@logging_options
def recipe_command(
    name: str,
    data: str | None,
    out: str | None,
    sets: tuple[str, ...],
    dry_run: bool,
    trust_remote_code: bool,
    verbose: bool,
    quiet: bool,
) -> None:
    """Run the published system NAME on the dataset DATA, from the media to a checked
    submission; re-running continues where it stopped.

    \b
    emi recipe --list
    emi recipe hallmen-2025 --dry-run
    emi recipe hallmen-2025 /data/vidmimic2 --out hallmen
    emi recipe casia-2026 /data/vidmimic2 --out casia --trust-remote-code
    """
    setup_logging(verbose)
    from emi_heads.pipelines.recipes.run import (
        RecipeError,
        check_data,
        get_recipe,
        parse_sets,
        plan,
        run_recipe,
    )
    from emi_heads.use.submission import SubmissionError, check_submission

    folder = Path(out or name)
    try:
        recipe = get_recipe(name)
        if data is None and not dry_run:
            raise RecipeError("DATA is missing: the dataset folder (or --dry-run)")
        if data is not None and not Path(data).is_dir():
            raise RecipeError(f"DATA {data}: no such folder")
        overrides = parse_sets(recipe, sets)
        if dry_run:  # printed with the flag each command needs; nothing is run
            _show(recipe, plan(recipe, data or "DATA", folder, overrides, True), folder)
            return
        planned = plan(recipe, data, folder, overrides, trust_remote_code)
        check_data(planned, data)
        echo = lambda line: click.echo(line, err=True)  # noqa: E731
        submission = run_recipe(recipe, planned, folder, echo, quiet)
        rows = check_submission(submission, Path(data) / "test_split.csv")
    except (RecipeError, SubmissionError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{submission}: {rows} clips, checked", err=True)
