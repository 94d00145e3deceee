"""The README and the documentation site agree with the code: every page the site's nav names
exists, every page is in the nav, every `docs/` link of the README leads to a page, every
`emi SUBCOMMAND` they show is a command, and each recipe's generated page holds its citations
and what it does differently (`docs/hooks.py`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

from emi_heads.cli.app import SUBCOMMANDS
from emi_heads.pipelines.recipes.book import RECIPES

ROOT = Path(__file__).resolve().parents[1]


def nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in nav_pages(item)]
    return [page for value in node.values() for page in nav_pages(value)]


def test_the_nav_and_the_pages_are_the_same_set():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text().replace("!!python", "#"))
    listed = set(nav_pages(config["nav"]))
    generated = {f"recipes/{name}.md" for name in RECIPES}
    written = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert listed == written | generated


def test_readme_links_and_commands_are_real():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links and all((ROOT / link).is_file() for link in links), links
    pages = [readme, *(p.read_text() for p in (ROOT / "docs").rglob("*.md"))]
    blocks = [b for page in pages for b in re.findall(r"```(?:bash)?\n(.*?)```", page, re.S)]
    used = {m for block in blocks for m in re.findall(r"^\s*emi ([a-z][a-z-]+)", block, re.M)}
    assert used and used <= set(SUBCOMMANDS), used - set(SUBCOMMANDS)


def test_each_recipe_page_is_written_from_the_recipe():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        from hooks import recipe_page
    finally:
        sys.path.remove(str(ROOT / "docs"))
    for name, recipe in RECIPES.items():
        page = recipe_page(name)
        assert page.startswith(f"# `{name}`: {recipe.system}")
        for line in (*recipe.citations, *recipe.differs, *recipe.notes):
            assert f"- {line}" in page
        assert f"emi recipe {name} DATA --out {name}" in page
        assert "emi train " in page and "emi predict " in page
