"""Runs saved by the code before the layout change still load and predict the same numbers.

The fixture (`tests/fixtures/runs_v1`, see its README) was written once by that code and is never
regenerated: it stands for the runs users already have on disk.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from emi_heads.app import main as emi

FIXTURE = Path(__file__).parent / "fixtures" / "runs_v1"
HEADS = ["linear", "concat", "lstm", "streams-lstm", "concat-frames"]


def read_submission(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as handle:
        return {row[0]: [float(v) for v in row[1:]] for row in list(csv.reader(handle))[1:]}


@pytest.mark.parametrize("head", HEADS)
def test_a_run_saved_by_the_old_layout_predicts_the_same(head: str, tmp_path: Path) -> None:
    run = shutil.copytree(FIXTURE / "runs" / head, tmp_path / head)
    out = tmp_path / "sub.csv"
    result = CliRunner().invoke(
        emi,
        ["predict", str(run), "--cache", str(FIXTURE / "cache.h5"),
         "--ids", str(FIXTURE / "test_split.csv"), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    expected = read_submission(run / "test_predictions.csv")
    got = read_submission(out)
    assert list(got) == list(expected)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-5)

