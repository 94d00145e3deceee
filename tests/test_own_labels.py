"""A lab's own labels and the second built-in task: any clip-level targets train every head,
predict, ensemble and export with the commands of the challenge; ERI's layout (bracketed
`File_ID`, seven reactions); bad label files in one line; EMI's runs as they were."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_synthetic_cache

from emi_features.core.task import EMI, ERI
from emi_heads.cli.train import train_command
from emi_heads.cli.use import export_command, predict_command, runs_command
from emi_heads.training.metrics import ccc_columns

OWN = ("warmth", "mimicry", "arousal")


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A synthetic cache of 80 clips and a lab's ratings of three things, on their own
    scales (warmth 1..7, mimicry 0..1, arousal -1..1), with a free-text column."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(5)
    ids = [f"{i:05d}" for i in range(80)]
    latents = rng.uniform(0, 1, (80, 6))
    cache = write_synthetic_cache(root / "c.h5", ids, latents)
    ratings = np.stack([1 + 6 * latents[:, 0], latents[:, 1], 2 * latents[:, 2] - 1], axis=1)

    def write(path: Path, keep: slice) -> Path:
        lines = ["clip,warmth,mimicry,arousal,notes"]
        lines += [
            f"{i},{a:.4f},{b:.4f},{c:.4f},seen twice"
            for i, (a, b, c) in zip(ids[keep], ratings[keep], strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    return {
        "cache": cache,
        "root": root,
        "ratings": ratings,
        "ids": ids,
        "train": write(root / "train.csv", slice(0, 56)),
        "valid": write(root / "valid.csv", slice(56, 80)),
    }


HEADS = {
    "ridge": [],
    "concat": ["--output-activation", "none", "--epochs", "3"],
    "lstm": ["--output-activation", "none", "--epochs", "2", "--hidden", "16"],
    "concat-frames": ["--output-activation", "none", "--epochs", "2"],
    "streams-lstm": ["--output-activation", "none", "--epochs", "2", "--hidden", "16"],
}


@pytest.fixture(scope="module")
def own_runs(lab):
    runs = {}
    for head, extra in HEADS.items():
        out = lab["root"] / "runs" / head
        result = invoke(
            train_command,
            lab["cache"],
            "--train",
            lab["train"],
            "--valid",
            lab["valid"],
            "--targets",
            ",".join(OWN),
            "--head",
            head,
            *extra,
            "--min-steps",
            "0",
            "--out",
            out,
            "--quiet",
        )
        assert result.exit_code == 0, result.output
        runs[head] = out
    return runs


@pytest.mark.slow
def test_every_head_trains_on_own_targets_and_records_its_task(lab, own_runs):
    for head, run in own_runs.items():
        config = json.loads((run / "config.json").read_text())
        assert config["labels"] == list(OWN) and config["task"]["targets"] == list(OWN)
        assert config["task"]["id_column"] == "clip" and config["task"]["value_range"] is None
        assert config["head"]["outputs"] == 3
        metrics = json.loads((run / "metrics.json").read_text())
        assert list(metrics["valid_r"]) == list(OWN), head
        assert rows(run / "valid_predictions.csv")[0].keys() == {"clip", *OWN}
    ridge = json.loads((own_runs["ridge"] / "metrics.json").read_text())
    assert ridge["valid_mean_r"] > 0.8  # the synthetic frames carry the ratings


def test_own_targets_predict_ensemble_and_export(lab, own_runs, tmp_path):
    from emi_heads import load_model

    out = tmp_path / "pred.csv"
    result = invoke(
        predict_command,
        own_runs["ridge"],
        own_runs["concat"],
        "--cache",
        lab["cache"],
        "--ids",
        lab["valid"],
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    written = rows(out)
    assert list(written[0]) == ["clip", *OWN] and len(written) == 24
    warmth = [float(r["warmth"]) for r in written]
    assert max(warmth) > 1.5  # not clipped to [0, 1]: the lab's scale
    model = load_model(own_runs["ridge"])
    assert model.labels == OWN
    assert model.predict_cache(lab["cache"], lab["ids"][:4]).values.shape == (4, 3)
    folder = tmp_path / "model"
    exported = invoke(export_command, own_runs["ridge"], own_runs["lstm"], "--out", folder)
    assert exported.exit_code == 0, exported.output
    assert json.loads((folder / "emi-model.json").read_text())["labels"] == list(OWN)
    card = (folder / "README.md").read_text()
    assert "warmth, mimicry, arousal" in card and "| mean | warmth | mimicry | arousal |" in card
    table = invoke(runs_command, own_runs["ridge"].parent)
    assert table.exit_code == 0 and "war" in table.output.splitlines()[0]


def test_every_numeric_column_and_a_ccc_metric(lab, tmp_path):
    run = tmp_path / "all"
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        lab["train"],
        "--valid",
        lab["valid"],
        "--targets",
        "all",
        "--metric",
        "ccc",
        "--head",
        "ridge",
        "--out",
        run,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["labels"] == list(OWN) and config["task"]["metric"] == "ccc"  # not notes
    metrics = json.loads((run / "metrics.json").read_text())
    predicted = np.array([[float(r[t]) for t in OWN] for r in rows(run / "valid_predictions.csv")])
    truth = lab["ratings"][56:]
    assert metrics["valid_mean_r"] == pytest.approx(float(ccc_columns(predicted, truth).mean()))


def test_a_sigmoid_head_on_unbounded_targets_is_one_line(lab, tmp_path):
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        lab["train"],
        "--targets",
        "warmth",
        "--head",
        "concat",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 1
    assert "targets warmth are finite numbers, not in [0, 1]: give --output-activation none" in (
        result.output
    )


def test_own_targets_in_zero_one_keep_the_sigmoid(lab, tmp_path):
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        lab["train"],
        "--targets",
        "mimicry",
        "--head",
        "concat",
        "--epochs",
        "1",
        "--min-steps",
        "0",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    task = json.loads((tmp_path / "r" / "config.json").read_text())["task"]
    assert task["value_range"] == [0.0, 1.0]


def write_eri(path: Path, ids: list[str], values: np.ndarray, split: str) -> Path:
    """ERI's layout: File_ID in brackets, the seven reactions, and its other columns."""
    header = ["File_ID", "Split", *ERI.targets, "Age", "Country"]
    lines = [",".join(header)]
    lines += [
        ",".join([f"[{i}]", split, *(f"{v:.4f}" for v in row), "30", "United States"])
        for i, row in zip(ids, values, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_run_on_the_eri_layout(lab, tmp_path):
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, (80, 7))
    values[:, 0] = (lab["ratings"][:, 0] - 1) / 6  # Adoration carried by the frames
    train = write_eri(tmp_path / "train.csv", lab["ids"][:56], values[:56], "Train")
    valid = write_eri(tmp_path / "valid.csv", lab["ids"][56:], values[56:], "Val")
    run = tmp_path / "eri"
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        train,
        "--valid",
        valid,
        "--task",
        "eri",
        "--head",
        "ridge",
        "--out",
        run,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["valid_r"]) == list(ERI.targets) and metrics["valid_r"]["Adoration"] > 0.8
    out = tmp_path / "eri.csv"
    result = invoke(predict_command, run, "--cache", lab["cache"], "--ids", valid, "--out", out)
    assert result.exit_code == 0, result.output
    assert list(rows(out)[0]) == ["File_ID", *ERI.targets] and rows(out)[0]["File_ID"] == "00056"
    emi_csv = tmp_path / "emi.csv"
    emi_csv.write_text("Filename," + ",".join(EMI.targets) + "\n1," + ",".join(["0.5"] * 6) + "\n")
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        emi_csv,
        "--task",
        "eri",
        "--head",
        "ridge",
        "--out",
        tmp_path / "x",
    )
    assert result.exit_code == 1 and "missing column(s) 'Adoration'" in result.output


@pytest.mark.parametrize(
    ("text", "targets", "words"),
    [
        ("clip,warmth\n1,3\n2,4\n", "warmth,coldness", "missing column(s) 'coldness'"),
        ("clip,warmth\n1,3\n2,high\n3,4\n", "warmth", "bad rows (line) 3"),
        ("clip,warmth\n1,3\n2,3\n", "warmth", "target(s) warmth take one value in every"),
        ("clip,warmth\n1,3\n1,4\n", "warmth", "ids listed twice"),
        ("clip,notes\n1,x\n", "all", "no numeric column besides the id column 'clip'"),
        ("clip,clip2\n1,3\n", "clip", "the id column"),
    ],
)
def test_a_bad_label_file_is_one_line(lab, tmp_path, text, targets, words):
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        labels,
        "--targets",
        targets,
        "--head",
        "ridge",
        "--out",
        tmp_path / "r",
    )
    assert result.exit_code == 1, result.output
    assert words in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_rows_without_labels_are_dropped_with_a_count(lab, tmp_path, caplog):
    text = lab["train"].read_text().splitlines()
    text[3] = text[3].split(",")[0] + ",,NaN,,note"  # one clip not rated
    labels = tmp_path / "t.csv"
    labels.write_text("\n".join(text) + "\n")
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        labels,
        "--targets",
        ",".join(OWN),
        "--head",
        "ridge",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert "1 row(s) without labels (every target empty or NaN) left out: line(s) 4" in caplog.text


def test_runs_of_other_targets_are_not_averaged(lab, own_runs, tmp_path):
    other = tmp_path / "other"
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        lab["train"],
        "--targets",
        "warmth,arousal",
        "--head",
        "ridge",
        "--out",
        other,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    result = invoke(
        predict_command,
        own_runs["ridge"],
        other,
        "--cache",
        lab["cache"],
        "--ids",
        lab["valid"],
        "--out",
        tmp_path / "x.csv",
    )
    assert result.exit_code == 1
    assert "the runs predict different targets (warmth, mimicry, arousal; warmth, arousal)" in (
        result.output
    )


def test_an_emi_run_records_the_emi_task(lab, tmp_path):
    ids = lab["ids"]
    labels = tmp_path / "emi.csv"
    rng = np.random.default_rng(2)
    lines = ["Filename," + ",".join(EMI.targets)]
    lines += [f"{int(i)}," + ",".join(f"{v:.3f}" for v in rng.uniform(0, 1, 6)) for i in ids[:40]]
    labels.write_text("\n".join(lines) + "\n")
    result = invoke(
        train_command,
        lab["cache"],
        "--train",
        labels,
        "--head",
        "ridge",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["labels"] == list(EMI.targets) and config["task"] == EMI.to_dict()
    assert config["head"]["outputs"] == 6
