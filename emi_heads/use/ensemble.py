"""Ensemble members and their weights for `emi-predict`.

A member is one RUN_DIR argument: a run, or a parent folder (seeds, folds, a sweep) whose
sub-runs it averages. Members are averaged equally, with `--weights`, or with weights fitted per
column on held-out predictions (`--fit-weights LABELS.csv`): non-negative least squares of the
labels on the members' predictions, normalised to sum to 1.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emi_features.core.dataset import pad_id
from emi_features.core.task import EMI, Task
from emi_heads.training.labels import read_labels
from emi_heads.training.rundir import CONFIG, WEIGHTS, RunError, run_task

log = logging.getLogger(__name__)
HELD_OUT = ("valid_predictions.csv", "oof_predictions.csv")
MODEL_INDEX = "emi-model.json"  # an exported model folder: its members and their runs
MODEL_FORMAT = "emi-model"  # emi-model.json's `format`
MODEL_VERSIONS = (1,)  # the emi-model.json format versions this emi reads
MIN_FIT_CLIPS = 10


@dataclass
class Member:
    """One RUN_DIR argument and the runs it stands for."""

    path: Path
    runs: list[Path]


def expand_members(paths: list[str | Path]) -> list[Member]:
    """Each path as members: a run is one, a parent one averaging its runs, an exported model
    folder the members its index lists."""
    members = []
    for path in map(Path, paths):
        if (path / MODEL_INDEX).is_file():
            members += _exported_members(path)
            continue
        if (path / CONFIG).is_file():
            members.append(Member(path, [path]))
            continue
        runs = sorted(p.parent for p in path.rglob(WEIGHTS) if (p.parent / CONFIG).is_file())
        if not runs:
            raise RunError(f"{path}: not a run directory and holds no runs")
        members.append(Member(path, runs))
    return members


def _exported_members(folder: Path) -> list[Member]:
    try:
        index = json.loads((folder / MODEL_INDEX).read_text(encoding="utf-8"))
        members = [Member(folder, [folder / name for name in runs]) for runs in index["members"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise RunError(f"{folder / MODEL_INDEX}: not a model index ({error})") from None
    if index.get("format") != MODEL_FORMAT or index.get("format_version") not in MODEL_VERSIONS:
        raise RunError(
            f"{folder / MODEL_INDEX}: format {index.get('format')!r} version "
            f"{index.get('format_version')!r}; this emi reads {MODEL_FORMAT} version "
            f"{', '.join(map(str, MODEL_VERSIONS))}"
        )
    outside = [r for m in members for r in m.runs if r.resolve().parent != folder.resolve()]
    if outside or not members or not all(m.runs for m in members):
        raise RunError(f"{folder / MODEL_INDEX}: members must name runs inside the folder")
    return members


def common_task(configs: list[dict]) -> Task:
    """The task every run of an ensemble was trained for; one line when their targets differ
    (runs of other labels cannot be averaged)."""
    tasks = [run_task(config, Path("config.json")) for config in configs]
    first = tasks[0] if tasks else EMI
    other = next((t for t in tasks if t.targets != first.targets), None)
    if other is not None:
        raise RunError(
            f"the runs predict different targets ({', '.join(first.targets)}; "
            f"{', '.join(other.targets)}): an ensemble averages runs of one task"
        )
    return first


def parse_weights(text: str, count: int, width: int = len(EMI.targets)) -> np.ndarray:
    """`0.7,0.3` -> (count, 6) weights, the same for every column, normalised to sum to 1."""
    try:
        values = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise RunError(f"--weights {text!r}: comma-separated numbers, one per RUN_DIR") from None
    if len(values) != count or not np.isfinite(values).all() or (values < 0).any():
        raise RunError(f"--weights {text!r}: {count} non-negative numbers, one per RUN_DIR")
    if values.max() <= 0:
        raise RunError(f"--weights {text!r}: at least one must be positive")
    values = values / values.max()  # first to at most 1: their sum cannot overflow
    return np.repeat((values / values.sum())[:, None], width, axis=1)


def _held_out(member: Member) -> dict[str, np.ndarray]:
    """The member's held-out predictions by id: its own file, or its sub-runs' mean."""
    files = [member.path / name for name in HELD_OUT if (member.path / name).is_file()]
    if not files:
        files = [run / HELD_OUT[0] for run in member.runs if (run / HELD_OUT[0]).is_file()]
    if not files:
        raise RunError(f"{member.path}: no held-out predictions ({' or '.join(HELD_OUT)})")
    by_id: dict[str, list[np.ndarray]] = {}
    for path in files:
        with path.open(newline="") as handle:
            for row in list(csv.reader(handle))[1:]:
                by_id.setdefault(pad_id(row[0]), []).append(np.array(row[1:], dtype=np.float64))
    return {clip_id: np.mean(values, axis=0) for clip_id, values in by_id.items()}


def fit_weights(members: list[Member], labels_csv: Path, task: Task = EMI) -> np.ndarray:
    """(members, K) non-negative weights per target, fitted on the held-out predictions of the
    clips `labels_csv` labels (NNLS with an intercept, then normalised to sum to 1)."""
    from sklearn.linear_model import LinearRegression

    labels = read_labels(labels_csv, task)
    held = [_held_out(m) for m in members]
    ids = [i for i in labels.ids if all(i in h for h in held)]
    if len(ids) < MIN_FIT_CLIPS:
        raise RunError(
            f"--fit-weights {labels_csv}: only {len(ids)} of its clips have held-out predictions "
            f"from every RUN_DIR (at least {MIN_FIT_CLIPS} needed)"
        )
    truth = dict(zip(labels.ids, labels.values, strict=True))
    target = np.array([truth[i] for i in ids])
    stacked = np.stack([np.array([h[i] for i in ids]) for h in held])  # (M, N, 6)
    weights = np.zeros((len(members), len(task.targets)))
    for column in range(len(task.targets)):
        model = LinearRegression(positive=True).fit(stacked[:, :, column].T, target[:, column])
        found = np.clip(model.coef_, 0, None)
        weights[:, column] = found / found.sum() if found.sum() > 0 else 1 / len(members)
    log.info(
        "weights fitted on %d held-out clips of %s:\n%s",
        len(ids),
        labels_csv,
        "\n".join(
            f"  {m.path}: " + " ".join(f"{e} {w:.2f}" for e, w in zip(task.short, row, strict=True))
            for m, row in zip(members, weights, strict=True)
        ),
    )
    return weights
