"""The metric against scipy, and emi-predict: ensembles, exact submission files, refusals."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_labels, write_synthetic_cache
from scipy.stats import pearsonr

from emi_features.core.task import EMOTIONS
from emi_heads.cli.train import train_command
from emi_heads.cli.use import predict_command
from emi_heads.training.metrics import mean_pearson, pearson_columns
from emi_heads.use.submission import SubmissionError, check_submission

HEADER = ["Filename", *EMOTIONS]


def test_metric_equals_scipy_and_constant_columns_give_zero(caplog):
    rng = np.random.default_rng(0)
    predictions, targets = rng.uniform(size=(50, 6)), rng.uniform(size=(50, 6))
    expected = [pearsonr(predictions[:, k], targets[:, k])[0] for k in range(6)]
    np.testing.assert_allclose(pearson_columns(predictions, targets), expected, atol=1e-12)
    assert mean_pearson(predictions, targets) == pytest.approx(np.mean(expected))
    predictions[:, 2] = 0.5
    r = pearson_columns(predictions, targets)
    assert r[2] == 0.0 and np.isfinite(r).all()
    assert "constant column(s) Determination: Pearson r set to 0" in caplog.messages


@pytest.fixture(scope="module")
def two_runs(synthetic, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for head, extra in (("ridge", []), ("concat", ["--epochs", "5", "--lr", "3e-3"])):
        result = CliRunner().invoke(
            train_command,
            [
                str(synthetic["cache"]),
                "--train",
                str(synthetic["train"]),
                "--valid",
                str(synthetic["valid"]),
                "--head",
                head,
                "--out",
                str(root / head),
                "--quiet",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
    return root / "ridge", root / "concat"


def run_predict(*args, ok=True):
    result = CliRunner().invoke(predict_command, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.slow
def test_ensemble_is_the_mean_of_its_runs(synthetic, two_runs, tmp_path):
    outs = {}
    for name, runs in (("a", two_runs[:1]), ("b", two_runs[1:]), ("ab", two_runs)):
        outs[name] = tmp_path / f"{name}.csv"
        run_predict(
            *runs, "--cache", synthetic["cache"], "--ids", synthetic["valid"], "--out", outs[name]
        )
    values = {k: np.array([row[1:] for row in read_rows(p)[1:]], float) for k, p in outs.items()}
    inside = (values["a"] > 0) & (values["a"] < 1)  # a ridge can leave [0, 1]: clipped alone
    assert inside.mean() > 0.7
    mean = (values["a"] + values["b"]) / 2
    np.testing.assert_allclose(values["ab"][inside], mean[inside], atol=2e-6)


def test_submission_is_exact_and_never_short(synthetic, two_runs, tmp_path, caplog):
    ids_csv = tmp_path / "ids.csv"
    # unsorted, unpadded, one id unknown to the cache
    ids_csv.write_text("Filename,Other\n300,x\n7,y\n99999,z\n250,w\n")
    out = tmp_path / "submission.csv"
    result = run_predict(*two_runs, "--cache", synthetic["cache"], "--ids", ids_csv, "--out", out)
    rows = read_rows(out)
    assert rows[0] == HEADER
    assert [r[0] for r in rows[1:]] == ["00007", "00250", "00300", "99999"]
    values = np.array([r[1:] for r in rows[1:]], float)
    assert ((values >= 0) & (values <= 1)).all()
    assert any(
        "1 id(s) not in the cache get the training label mean: 99999" in m for m in caplog.messages
    )
    assert "1 filled with the label mean" in result.output
    check = run_predict("--check", out, "--ids", ids_csv)
    assert "valid submission, 4 rows" in check.output


def test_labelled_ids_print_the_score_of_the_written_file(synthetic, two_runs, tmp_path, caplog):
    caplog.set_level("INFO")
    run_predict(
        *two_runs,
        "--cache",
        synthetic["cache"],
        "--ids",
        synthetic["valid"],
        "--out",
        tmp_path / "s.csv",
    )
    written = np.array([row[1:] for row in read_rows(tmp_path / "s.csv")[1:]], float)
    truth = np.array([row[1:] for row in read_rows(synthetic["valid"])[1:]], float)
    expected = mean_pearson(written, truth)
    assert expected > 0.5
    (line,) = [m for m in caplog.messages if "on 120 labelled ids" in m]
    assert f"r {expected:.4f}" in line


def test_checker_names_every_problem(synthetic, tmp_path):
    ids_csv = tmp_path / "ids.csv"
    ids_csv.write_text("Filename\n1\n2\n3\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(
        ",".join(HEADER) + "\n00002,0.1,0.2,0.3,0.4,0.5,1.2\n1,0,0,0,0,0,0\n00004,0,0,0,0,0,nan\n"
    )
    with pytest.raises(SubmissionError) as caught:
        check_submission(bad, ids_csv)
    message = str(caught.value)
    for part in (
        "ids not zero-padded to five digits: 1",
        "requested id(s) missing: 00001",
        "id(s) not requested: 00004",
        "not sorted",
        "line 2: values must be finite",
        "line 4: values must be finite",
    ):
        assert part in message, part
    result = run_predict("--check", bad, "--ids", ids_csv, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_a_cache_of_another_backbone_is_refused(synthetic, two_runs, tmp_path):
    ids = [f"{i:05d}" for i in range(10)]
    other = write_synthetic_cache(
        tmp_path / "other.h5", ids, np.zeros((10, 6)), fingerprint="synthetic-b"
    )
    result = run_predict(
        two_runs[0],
        "--cache",
        other,
        "--ids",
        synthetic["valid"],
        "--out",
        tmp_path / "s.csv",
        ok=False,
    )
    assert result.exit_code == 1
    assert "was trained on features of synthetic (synthetic-a)" in result.output
    assert "synthetic-b" in result.output and not (tmp_path / "s.csv").exists()


def test_train_ids_missing_from_the_cache_name_the_rows(synthetic, tmp_path):
    labels = write_labels(tmp_path / "l.csv", ["00001", "77777"], np.zeros((2, 6)))
    result = CliRunner().invoke(
        train_command,
        [
            str(synthetic["cache"]),
            "--train",
            str(labels),
            "--head",
            "ridge",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 1
    assert "1 id(s) of --train are not in the cache: 77777" in result.output
