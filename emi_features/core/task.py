"""The task, as data, in one home: the targets a run predicts, their range, the metric runs are
selected and reported by, the id column, and whether the challenge takes a submission file.
EMI (the ABAW EMI track) is the default; ERI (Hume-Reaction, ABAW 5) the second built-in; a
lab's own labels are a task made from the columns it names (`own_task`). Light: nothing but the
standard library.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

EMOTIONS: tuple[str, ...] = (
    "Admiration",
    "Amusement",
    "Determination",
    "Empathic Pain",
    "Excitement",
    "Joy",
)
ID_COLUMN = "Filename"  # the id column of every split CSV and of a submission
ID_WIDTH = 5  # ids are digits zero-padded to five ("00042"); see `dataset.pad_id`
CHALLENGE_ID = re.compile(rf"^\d{{{ID_WIDTH}}}$")
SUBMISSION_HEADER = (ID_COLUMN, *EMOTIONS)  # then one row per requested id, sorted, in [0, 1]
METRICS = ("pearson", "ccc")  # per target, then the mean over the targets


class TaskError(ValueError):
    """A task that cannot be: one line."""


@dataclass(frozen=True)
class Task:
    """What is predicted: `targets` (the label columns, in order), each in `value_range` (None:
    any finite number), scored by `metric` per target and averaged, ids in `id_column` (digits
    zero-padded to five when they are digits, any other id as written), and whether the
    challenge takes a `submission` file (header, every requested id, values in range)."""

    name: str
    targets: tuple[str, ...]
    value_range: tuple[float, float] | None = (0.0, 1.0)
    metric: str = "pearson"
    id_column: str = ID_COLUMN
    submission: bool = False

    def __post_init__(self) -> None:
        problems = []
        if not self.targets or len(set(self.targets)) != len(self.targets):
            problems.append("targets must be distinct column names, at least one")
        if any(not t.strip() or t == self.id_column for t in self.targets):
            problems.append(f"a target is empty or the id column {self.id_column!r}")
        if self.metric not in METRICS:
            problems.append(f"metric must be one of {', '.join(METRICS)}")
        if self.value_range is not None:
            low, high = self.value_range
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                problems.append("value_range must be two finite numbers, low < high")
        if problems:
            raise TaskError(f"task {self.name}: {'; '.join(problems)}")

    @property
    def short(self) -> list[str]:
        """Column names for tables: each target's first three letters, longer where two share
        them (`Adm`, `Amu`; `warmth`, `warmer` -> `warmt`, `warme`)."""
        for width in range(3, max(len(t) for t in self.targets) + 1):
            names = [t[:width] for t in self.targets]
            if len(set(names)) == len(names):
                return names
        return list(self.targets)

    def in_range(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return self.value_range is None or self.value_range[0] <= value <= self.value_range[1]

    def range_text(self) -> str:
        if self.value_range is None:
            return "finite numbers"
        return f"numbers in [{self.value_range[0]:g}, {self.value_range[1]:g}]"

    def to_dict(self) -> dict[str, Any]:
        value_range = None if self.value_range is None else list(self.value_range)
        return {**asdict(self), "targets": list(self.targets), "value_range": value_range}

    @classmethod
    def from_dict(cls, data: Any) -> Task:
        """The task a run's config.json records; one line when it is not one."""
        if not isinstance(data, dict):
            raise TaskError("task: must be an object")
        try:
            value_range = data.get("value_range")
            return cls(
                name=str(data["name"]),
                targets=tuple(str(t) for t in data["targets"]),
                value_range=None
                if value_range is None
                else (float(value_range[0]), float(value_range[1])),
                metric=str(data.get("metric", "pearson")),
                id_column=str(data.get("id_column", ID_COLUMN)),
                submission=bool(data.get("submission", False)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as error:
            if isinstance(error, TaskError):
                raise
            raise TaskError(f"task: not a task ({error})") from None


def run_task(config: dict[str, Any]) -> Task:
    """The task a run's config.json says it was trained for: its `task` (a run saved before
    tasks were recorded: EMI's, whose six labels it lists); TaskError when its `labels`
    disagree."""
    task = Task.from_dict(config["task"]) if "task" in config else EMI
    if tuple(config.get("labels") or ()) != task.targets:
        raise TaskError(
            f"trained for labels {config.get('labels')}, not the targets of its "
            f"task {task.name} {list(task.targets)}"
        )
    return task


EMI = Task("emi", EMOTIONS, (0.0, 1.0), "pearson", ID_COLUMN, submission=True)
# Hume-Reaction, the ERI challenge of the 5th ABAW: seven reaction intensities in [0, 1] per
# clip, ids in `File_ID` written in brackets ("[00042]"), scored by the mean Pearson r.
ERI = Task(
    "eri",
    ("Adoration", "Amusement", "Anxiety", "Disgust", "Empathic-Pain", "Fear", "Surprise"),
    (0.0, 1.0),
    "pearson",
    "File_ID",
)
TASKS: dict[str, Task] = {task.name: task for task in (EMI, ERI)}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise TaskError(f"task {name!r} is unknown (known: {', '.join(TASKS)})")
    return TASKS[name]


def own_task(
    targets: tuple[str, ...],
    *,
    id_column: str = ID_COLUMN,
    metric: str = "pearson",
    value_range: tuple[float, float] | None = None,
) -> Task:
    """A lab's own labels: the columns `targets` of its CSVs, any finite values unless a range
    is given, no submission file."""
    return Task("own", tuple(targets), value_range, metric, id_column)
