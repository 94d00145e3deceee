"""Runs saved by the code before the layout change still load and predict the same numbers.

The fixture (`tests/fixtures/runs_v1`, see its README) was written once by that code and is never
regenerated: it stands for the runs users already have on disk.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from emi_heads.cli.app import main as emi
from emi_heads.heads.settings_json import head_from_dict

FIXTURE = Path(__file__).parent / "fixtures" / "runs_v1"
HEADS = ["linear", "concat", "lstm", "streams-lstm", "concat-frames"]


@pytest.fixture(scope="module")
def fixture_cache(tmp_path_factory) -> Path:
    """The fixture's cache copied out: stage two writes its pooled statistics beside the cache
    it reads, and the fixture folder is part of the source tree."""
    return Path(shutil.copy(FIXTURE / "cache.h5", tmp_path_factory.mktemp("v1") / "cache.h5"))


def read_submission(path: Path) -> dict[str, list[float]]:
    with open(path, newline="") as handle:
        return {row[0]: [float(v) for v in row[1:]] for row in list(csv.reader(handle))[1:]}


@pytest.mark.parametrize("head", HEADS)
def test_a_run_saved_by_the_old_layout_predicts_the_same(
    head: str, tmp_path: Path, fixture_cache: Path
) -> None:
    run = shutil.copytree(FIXTURE / "runs" / head, tmp_path / head)
    out = tmp_path / "sub.csv"
    result = CliRunner().invoke(
        emi,
        [
            "predict",
            str(run),
            "--cache",
            str(fixture_cache),
            "--ids",
            str(FIXTURE / "test_split.csv"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    expected = read_submission(run / "test_predictions.csv")
    got = read_submission(out)
    assert list(got) == list(expected)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-5)


def test_old_configs_load_as_each_heads_own_settings():
    from emi_heads.heads.settings import LstmConfig, RidgeConfig
    from emi_heads.training.config import InputSpec

    old = json.loads((FIXTURE / "runs" / "linear" / "config.json").read_text())
    ridge = head_from_dict(old["head"])
    assert type(ridge) is RidgeConfig and ridge.head == "ridge"  # `linear` is its old name
    assert ridge.ridge_alphas == tuple(old["head"]["ridge_alphas"])
    assert "hidden" not in ridge.to_dict()  # the other heads' settings are left out
    assert InputSpec.from_run(old) == InputSpec(False, True, 12.0)  # no `reads` block: derived
    lstm = json.loads((FIXTURE / "runs" / "lstm" / "config.json").read_text())
    config = head_from_dict(lstm["head"])
    assert type(config) is LstmConfig and config.hidden == 8 and config.mlp_hidden == 8
    assert InputSpec.from_run(lstm) == InputSpec(True, True, 12.0)
    with pytest.raises(ValueError, match="unknown field"):  # a foreign key is still refused
        head_from_dict({**lstm["head"], "surprise": 1})


def test_a_new_run_saves_its_heads_settings_and_what_it_reads(tmp_path, fixture_cache):
    out = tmp_path / "r"
    result = CliRunner().invoke(
        emi,
        [
            "train",
            str(fixture_cache),
            "--train",
            str(FIXTURE / "train_split.csv"),
            "--head",
            "linear",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["head"]["head"] == "ridge"
    assert set(config["head"]) == {
        "head",
        "dims",
        "outputs",
        "use_vad",
        "use_mean",
        "inputs",
        "ridge_alphas",
    }
    assert config["head"]["outputs"] == 6 and config["task"]["name"] == "emi"
    assert config["reads"] == {"frames": False, "vad": True, "max_seconds": 12.0}


def test_a_setting_of_another_head_is_one_line():
    result = CliRunner().invoke(
        emi,
        [
            "train",
            str(FIXTURE / "cache.h5"),
            "--train",
            str(FIXTURE / "train_split.csv"),
            "--head",
            "lstm",
            "--pool-steps",
            "8",
            "--out",
            "unused",
        ],
    )
    assert result.exit_code == 2
    assert "--pool-steps is a setting of the concat-frames head(s), not of lstm" in result.output
