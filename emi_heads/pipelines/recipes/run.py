"""Running a recipe: its steps planned against what the output folder already holds, then each
run as the `emi` command it prints (stage one in its own process: this one never imports the
backbone libraries), with a ledger of finished steps so that a killed recipe re-run continues.

Layout of `--out DIR`: `cache.h5` (every stream), `run/` (the trained head), `submission.csv`,
`recipe.json` (the ledger: each finished step's exact command).
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

import click

from emi_features.cache.atomic import (
    WriteError,
    atomic_path,
    check_writable_folder,
    describe_os_error,
)
from emi_features.core.pairs import split_pair
from emi_heads.pipelines.recipes.book import RECIPES
from emi_heads.pipelines.recipes.parts import WHOLE_NUMBER_SETTINGS, Recipe, Step
from emi_heads.pipelines.steps import run_command

LEDGER = "recipe.json"


class RecipeError(ValueError):
    """A recipe that cannot run as asked; one line."""


@dataclass
class Planned:
    """A step as it will run: its `emi` arguments, and whether it is already done."""

    step: Step
    argv: list[str]
    done: bool = False

    def shell(self) -> str:
        return shlex.join(["emi", *self.argv])


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise RecipeError(f"recipe {name!r} is unknown (known: {', '.join(RECIPES)})")
    return RECIPES[name]


def parse_sets(recipe: Recipe, pairs: tuple[str, ...]) -> dict[str, str]:
    """`--set KEY=VALUE` pairs checked against the recipe's settings; one line when a key is
    not one of them."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        try:
            key, value = split_pair(pair, "--set")
        except ValueError as error:
            raise RecipeError(str(error)) from None
        if key not in recipe.settings:
            raise RecipeError(
                f"--set {key}: not a setting of {recipe.name} (its "
                f"settings: {', '.join(recipe.settings)})"
            )
        overrides[key] = _checked_value(key, value, recipe.settings[key])
    return overrides


def _checked_value(key: str, value: str, default: str) -> str:
    """A `--set` value of the kind its default is — a number (a whole one for the settings in
    WHOLE_NUMBER_SETTINGS) — before any step runs, rather than when the step that reads it
    fails."""
    try:
        float(default)
    except ValueError:
        return value  # a model, a file, a choice: its step says
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise RecipeError(f"--set {key}={value}: must be a finite number (like {default})")
    if key in WHOLE_NUMBER_SETTINGS and number != int(number):
        raise RecipeError(f"--set {key}={value}: must be a whole number (like {default})")
    return value


def plan(
    recipe: Recipe,
    data: str,
    out: Path,
    overrides: dict[str, str],
    trust_remote_code: bool = False,
) -> list[Planned]:
    """The recipe's steps with every `{key}` filled in, each marked done when the ledger holds
    that exact command and what it makes is still there."""
    places = {
        "data": data.rstrip("/") or "/",
        "cache": str(out / "cache.h5"),
        "run": str(out / "run"),
        "submission": str(out / "submission.csv"),
    }
    settings = {**recipe.settings, **overrides, **places}
    remote = [key for key in recipe.remote_code if settings[key] == recipe.settings[key]]
    if remote and not trust_remote_code:
        models = ", ".join(settings[key] for key in remote)
        raise RecipeError(
            f"{recipe.name} loads {models}, which runs its own code: read that code, then pass "
            f"--trust-remote-code (or --set {remote[0]}=ANOTHER_MODEL)"
        )
    ledger = read_ledger(out, recipe)
    planned = []
    for step in recipe.steps:
        if step.when and not _runs(step, settings):
            continue
        argv = [part.format(**settings) for part in step.command]
        if trust_remote_code and any(f"{{{key}}}" in step.command for key in recipe.remote_code):
            argv.append("--trust-remote-code")
        planned.append(Planned(step, argv, done=_done(step, argv, out, ledger)))
    return planned


def check_data(planned: list[Planned], data: str) -> None:
    """Every file of DATA a step names (its split CSVs) is there, before the first step."""
    inside = data.rstrip("/") + "/"
    for item in planned:
        for argument in item.argv:
            if argument.startswith(inside) and not Path(argument).exists():
                missing = argument.removeprefix(inside)
                raise RecipeError(
                    f"DATA {data}: no {missing} (step {item.step.name} reads it); the challenge "
                    "layout has train_split.csv, valid_split.csv and test_split.csv"
                )


def _runs(step: Step, settings: dict[str, str]) -> bool:
    """Whether a step with a `when` condition runs: `key` (the setting is set), `!key` (not)."""
    wanted = not step.when.startswith("!")
    return bool(settings[step.when.lstrip("!")]) == wanted


def _done(step: Step, argv: list[str], out: Path, ledger: dict[str, list[str]]) -> bool:
    """Done: what the step makes is there, and the ledger holds this command for it — or holds
    none, for a stream or the transcripts (made by the printed command, run by hand, e.g. under
    torchrun across machines: kept). Another command's stream is refused; another command's
    run or submission is made again (the cache's own extraction resumes or refuses by itself)."""
    recorded, product = ledger.get(step.name), makes(step, out)
    if not product:
        return False
    in_cache = step.makes.startswith(("stream:", "transcripts"))
    if in_cache and recorded is not None and not same_command(recorded, argv):
        raise RecipeError(
            f"{out / 'cache.h5'} already holds the {step.name} step's output from another "
            f"command; use another --out (or remove {out})"
        )
    return same_command(recorded, argv) or (in_cache and recorded is None)


def same_command(recorded: list[str] | None, argv: list[str]) -> bool:
    """The same command, also where a path is spelled otherwise (`./data`, `data`, its
    absolute path)."""
    if recorded is None or len(recorded) != len(argv):
        return False
    return all(a == b or _same_path(a, b) for a, b in zip(recorded, argv, strict=True))


def _same_path(first: str, second: str) -> bool:
    if first.startswith("-") or second.startswith("-"):
        return False
    try:
        return Path(first).resolve() == Path(second).resolve() and Path(first).exists()
    except (OSError, ValueError):
        return False


def makes(step: Step, out: Path) -> bool:
    """Whether what `step` makes is in `out` (read with h5py alone: light)."""
    cache = out / "cache.h5"
    if step.makes in ("run", "submission"):
        target = out / ("run" if step.makes == "run" else "submission.csv")
        return (target / "config.json").exists() if step.makes == "run" else target.exists()
    if not cache.exists():
        return False
    if step.makes == "cache":
        return True
    import h5py

    try:
        with h5py.File(cache, "r", locking=False) as handle:
            if step.makes == "transcripts":
                return "text" in handle
            return f"features/{step.makes.removeprefix('stream:')}" in handle
    except OSError:
        return False


def read_ledger(out: Path, recipe: Recipe) -> dict[str, list[str]]:
    """The finished steps recorded in `out`, each an `emi` argument list; one line for a
    ledger that is not one, or that belongs to another recipe (one `--out`, one recipe)."""
    path = out / LEDGER
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        ledger = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RecipeError(f"{path} is not a recipe ledger ({error}); remove it") from None
    steps = ledger.get("steps") if isinstance(ledger, dict) else None
    if not isinstance(steps, dict) or not all(
        isinstance(v, list) and all(isinstance(a, str) for a in v) for v in steps.values()
    ):
        raise RecipeError(
            f"{path} is not a recipe ledger (steps must map names to commands); remove it"
        )
    if ledger.get("recipe") != recipe.name:
        raise RecipeError(
            f"{out} holds the recipe {ledger.get('recipe')!r}, not {recipe.name}: "
            "one --out holds one recipe; give another --out"
        )
    return steps


def record(out: Path, recipe: Recipe, step: Step, argv: list[str]) -> None:
    """Add a finished step to the ledger, written beside and renamed (never half a file)."""
    steps = read_ledger(out, recipe)
    steps[step.name] = argv
    with atomic_path(out / LEDGER) as temporary:
        temporary.write_text(json.dumps({"recipe": recipe.name, "steps": steps}, indent=1))


def prepare_out(out: Path) -> None:
    """`out` as a folder that can be written, checked before the first step: one line if not."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RecipeError(f"--out {out}: not a folder")
    try:
        check_writable_folder(out)
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".{LEDGER}.probe"
        probe.write_text("")
        probe.unlink()
    except (WriteError, OSError) as error:
        text = str(error) if isinstance(error, WriteError) else describe_os_error(out, error)
        raise RecipeError(text) from None


def run_recipe(
    recipe: Recipe, planned: list[Planned], out: Path, echo, quiet: bool = False
) -> Path:
    """Run the steps not done (stage one each in its own process, stage two in this one); a
    step that fails stops the recipe with one line (the finished steps stay, a re-run
    continues). `quiet`: the steps without progress bars."""
    quiet = ["--quiet"] if quiet else []
    prepare_out(out)
    ran = False  # once a step runs, the steps of stage two after it run again
    for number, item in enumerate(planned, 1):
        head = f"[{number}/{len(planned)}] {item.step.name}"
        if item.done and ran and item.step.makes in ("run", "submission"):
            echo(f"{head}: made again (a step before it ran)")
        elif item.done:
            echo(f"{head}: done before, skipped")
            record(out, recipe, item.step, item.argv)  # one made by hand joins the ledger
            continue
        argv = list(item.argv)
        if item.step.makes == "run" and makes(item.step, out):  # settings changed: retrain
            argv.append("--overwrite")
        echo(f"{head}: {shlex.join(['emi', *argv])}")
        try:
            run_command(f"emi-{argv[0]}", [*argv[1:], *quiet], show=False)
        except click.ClickException as error:
            raise RecipeError(
                f"step {item.step.name}: {error.format_message()}; the steps "
                "before it are kept: re-run to continue"
            ) from None
        ran = True
        record(out, recipe, item.step, item.argv)
    return out / "submission.csv"
