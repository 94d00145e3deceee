"""`emi-runs DIR...`: compare every run under the folders — head, inputs, loss, seed, best epoch,
valid mean r and per-column r, seconds, and the settings that differ between runs — sorted by a
column, with runs that differ only in their seed grouped as mean ± sd. Light: json and numpy.
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
from pathlib import Path
from typing import Any

from emi_features.core.task import TaskError, run_task
from emi_heads.heads.reads import inputs_read
from emi_heads.heads.settings_json import head_from_dict

LEADING = ["run", "head", "preset", "inputs", "loss", "seed", "best", "valid_r"]
SCORES_KEY = "_scores"  # each row's per-target score columns (the task's short names)


def score_names(rows: list[dict[str, Any]]) -> list[str]:
    """The per-target score columns of the rows, in order (Adm … Joy for EMI runs)."""
    return list(dict.fromkeys(name for row in rows for name in row.get(SCORES_KEY, ())))


def fixed_columns(rows: list[dict[str, Any]]) -> list[str]:
    return [*LEADING, *score_names(rows), "seconds"]


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    settings = {f"head.{k}": v for k, v in config["head"].items() if k != "dims"}
    settings.update({f"train.{k}": v for k, v in config["train"].items()})
    settings["inputs"] = ",".join(_inputs_read(config["head"]))
    settings["cache"] = config.get("cache", {}).get("backbone_fingerprint")
    settings["held_out"] = config.get("held_out")  # fold runs: same settings, other data
    return settings


def _inputs_read(head: dict[str, Any]) -> list[str]:
    """What the run's head reads (not every input its training cache held)."""
    try:
        return inputs_read(head_from_dict(head))
    except (ValueError, KeyError):  # an edited config: what it records
        return sorted(head.get("dims", {}))


def find_runs(folders: list[Path]) -> list[Path]:
    """Every run directory (config.json and metrics.json) at or below the folders."""
    found: list[Path] = []
    for folder in folders:
        for config in sorted(Path(folder).rglob("config.json")):
            if (config.parent / "metrics.json").is_file() and config.parent not in found:
                found.append(config.parent)
    return found


def compare_runs(folders: list[Path], sort: str = "valid_r") -> list[dict[str, Any]]:
    """One row per run (and one per seed group), sorted by `sort` (descending for scores)."""
    runs = find_runs(folders)
    if not runs:
        return []
    root = Path(os.path.commonpath([run.parent for run in runs]))
    rows, settings = [], []
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        flat = _flatten(config)
        settings.append(flat)
        columns = metrics.get("valid_r", {})
        try:
            task = run_task(config)
            short = dict(zip(task.targets, task.short, strict=True))
        except TaskError:  # an edited config: its scores under their own names
            short = {}
        shown = {short.get(e, e): value for e, value in columns.items()}
        rows.append(
            {
                "run": str(run.relative_to(root)),
                "head": config["head"]["head"],
                "preset": config.get("preset") or "",
                "inputs": flat["inputs"],
                "loss": config["train"]["loss"],
                "seed": config["train"]["seed"],
                "best": metrics["best_epoch"]
                if "best_epoch" in metrics
                else f"alpha={metrics.get('alpha'):g}",
                "valid_r": metrics.get("valid_mean_r"),
                **shown,
                SCORES_KEY: tuple(shown),
                "seconds": metrics.get("seconds"),
                "_group": tuple(sorted((k, repr(v)) for k, v in flat.items() if k != "train.seed")),
            }
        )
    # fixed columns, and head.inputs, which the inputs column (what the head reads) shows
    shown = {"head.head", "train.loss", "train.seed", "inputs", "held_out", "head.inputs"}
    # a setting differs when the runs that have it (each head has its own) disagree on it
    keys = dict.fromkeys(k for s in settings for k in s)
    differing = sorted(
        k for k in keys if len({repr(s[k]) for s in settings if k in s}) > 1 and k not in shown
    )
    for row, flat in zip(rows, settings, strict=True):
        row.update({k: flat.get(k) for k in differing})
    rows += _seed_groups(rows)
    key = sort if sort in rows[0] else "valid_r"
    descending = key in ("valid_r", *score_names(rows))
    rows.sort(key=lambda r: (r.get(key) is None, _sortable(r.get(key), descending)))
    for row in rows:
        row.pop("_group", None)
    return rows


def _sortable(value: Any, descending: bool) -> Any:
    if isinstance(value, (int, float)):
        return -value if descending else value
    return str(value)


def _seed_groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Runs equal but for their seed: one more row with mean ± sd of each score."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["_group"], []).append(row)
    summaries = []
    for members in groups.values():
        scored = [m for m in members if m["valid_r"] is not None]
        if len(scored) < 2 or len({m["seed"] for m in scored}) < len(scored):
            continue  # a group is of runs that differ in their seed alone
        label = re.sub(r"(^|[,/])seed[-=][^,/]*", "", members[0]["run"]).strip(",/") or "runs"
        summary = {
            **members[0],
            "run": f"{label} ({len(scored)} seeds)",
            "seed": "mean±sd",
            "best": "",
            "seconds": None,
        }
        for key in ("valid_r", *score_names(members)):
            values = [m[key] for m in scored if key in m]
            if len(values) < 2:
                continue
            summary[key] = statistics.mean(values)
            summary[f"{key}_sd"] = statistics.stdev(values)
        summaries.append(summary)
    return summaries


NARROW_CELL = 28  # characters a cell keeps in the narrow view


def format_table(rows: list[dict[str, Any]], wide: bool = False) -> str:
    """The rows as an aligned text table: scores to 3 decimals (seed groups as mean±sd), other
    numbers as written (3e-04, not 0.000). Narrow (default): the run, the scores and only the
    columns whose values differ, each cell cut to NARROW_CELL characters; `wide`: every
    column, whole."""
    if not rows:
        return "no runs found"
    fixed, scores = fixed_columns(rows), {"valid_r", *score_names(rows)}
    always = {"run", "best", "seconds", *scores}  # the narrow view's own
    columns = [c for c in fixed if c in rows[0]] + [
        c for c in rows[0] if c not in fixed and not c.endswith("_sd") and not c.startswith("_")
    ]
    if not wide:
        distinct = {
            c: len({repr(r.get(c)) for r in rows if r.get("seed") != "mean±sd"}) > 1
            for c in columns
        }
        columns = [c for c in columns if c in always or distinct[c]]
    table = [columns, *([_cell(r, c, wide, scores) for c in columns] for r in rows)]
    widths = [max(len(line[k]) for line in table) for k in range(len(columns))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in table
    )


def _cell(row: dict[str, Any], column: str, wide: bool, scores: set[str]) -> str:
    value = row.get(column)
    if isinstance(value, float) and f"{column}_sd" in row:
        text = f"{value:.3f}±{row[f'{column}_sd']:.3f}"
    elif isinstance(value, float) and column in scores:
        text = f"{value:.3f}"
    elif isinstance(value, float) and column == "seconds":
        text = f"{value:.1f}"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = "" if value is None else str(value)
    if not wide and len(text) > NARROW_CELL:
        text = text[: NARROW_CELL - 1] + "…"
    return text


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    from emi_features.cache.atomic import atomic_path

    columns = list(dict.fromkeys(k for row in rows for k in row if not k.startswith("_")))
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot_runs(rows: list[dict[str, Any]], path: Path) -> None:
    """Valid mean r per run (seed groups with their sd as error bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emi_features.cache.atomic import atomic_path

    scored = [r for r in rows if r.get("valid_r") is not None]
    figure, axis = plt.subplots(figsize=(8, 0.35 * len(scored) + 1.2))
    axis.barh(
        [r["run"] for r in scored],
        [r["valid_r"] for r in scored],
        xerr=[r.get("valid_r_sd", 0.0) for r in scored],
        color="tab:blue",
    )
    axis.invert_yaxis()
    axis.set(xlabel="valid mean Pearson r")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    plt.close(figure)
