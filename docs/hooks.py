"""MkDocs hook: one page per recipe, written from the recipe itself
(`emi_heads.pipelines.recipes.book`: its system, settings, steps as `emi recipe NAME
--dry-run` prints them, citations and what it does unlike the published system), so that the
pages never restate what the code holds."""

from __future__ import annotations

from pathlib import Path

from emi_heads.pipelines.recipes.book import RECIPES
from emi_heads.pipelines.recipes.run import plan


def recipe_page(name: str) -> str:
    """The Markdown page of the recipe `name`."""
    recipe = RECIPES[name]
    trust = " --trust-remote-code" if recipe.remote_code else ""
    steps = plan(recipe, "DATA", Path(name), {}, trust_remote_code=bool(recipe.remote_code))
    lines = [
        f"# `{name}`: {recipe.system}",
        "",
        f"Published: {recipe.published}. Run it whole, from the media to a checked submission:",
        "",
        "```bash",
        f"emi recipe {name} DATA --out {name}{trust}",
        "```",
        "",
        "## Settings",
        "",
        "Each is overridden with `--set KEY=VALUE`.",
        "",
        "| key | default |",
        "| --- | --- |",
        *(
            f"| `{key}` | `{value}` |" if value else f"| `{key}` | (empty) |"
            for key, value in recipe.settings.items()
        ),
        "",
        f"## The steps (`emi recipe {name} --dry-run`)",
        "",
        "```bash",
        *(item.shell() for item in steps),
        "```",
        "",
        "## Where each setting was read",
        "",
        *(f"- {citation}" for citation in recipe.citations),
        "",
        "## What differs from the published system",
        "",
        *(f"- {difference}" for difference in recipe.differs or ("nothing known",)),
    ]
    if recipe.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in recipe.notes)]
    return "\n".join(lines) + "\n"


def on_files(files, config):
    from mkdocs.structure.files import File

    for name in RECIPES:
        files.append(File.generated(config, f"recipes/{name}.md", content=recipe_page(name)))
    return files
