"""Faults and hostile inputs for stage two: ids files that would give a wrong submission,
incomplete caches, non-finite predictions, retraining into a finished run, two trainings at
once, and run directories edited or received from someone else."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_labels
from safetensors.torch import load_file, save_file

from emi_heads.cli.train import train_command
from emi_heads.cli.use import predict_command
from emi_heads.training.rundir import RunWriter

HEADER = "Filename,Admiration,Amusement,Determination,Empathic Pain,Excitement,Joy"


def train(synthetic, out, *extra, head="ridge", ok=True):
    args = [
        str(synthetic["cache"]),
        "--train",
        str(synthetic["train"]),
        "--valid",
        str(synthetic["valid"]),
        "--head",
        head,
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    result = CliRunner().invoke(train_command, args)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def run(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ridge"
    train(synthetic, out)
    return out


def predict(*args):
    return CliRunner().invoke(predict_command, [str(a) for a in args])


def one_line_error(result, *parts):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    for part in parts:
        assert part in result.output, result.output


def test_the_filename_column_is_read_wherever_it_stands(synthetic, run, tmp_path):
    ids = tmp_path / "ids.csv"
    ids.write_text("Index,Filename\n1,00300\n2,00007\n3,00250\n")  # first column: row numbers
    out = tmp_path / "s.csv"
    result = predict(run, "--cache", synthetic["cache"], "--ids", ids, "--out", out)
    assert result.exit_code == 0, result.output
    assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == [
        "00007",
        "00250",
        "00300",
    ]
    assert "valid submission" in predict("--check", out, "--ids", ids).output


@pytest.mark.parametrize(
    ("content", "parts"),
    [
        ("Filename;Admiration\n00001;0.1\n00002;0.2\n", ["only 0 of the 2 ids"]),  # semicolons
        ("Filename\n000001\n000002\n000003\n", ["only 0 of the 3 ids", "the wrong ids file"]),
        ("Filename\n", ["no ids to predict"]),
        ("Filename\n00001\n\n00002\n,\n", ["empty id in column 'Filename' on line(s) 4"]),
        ("Filename\n00001\n00001\n", ["duplicated ids 00001"]),
    ],
)
def test_ids_files_that_would_give_a_wrong_submission_are_refused(
    synthetic, run, tmp_path, content, parts
):
    ids = tmp_path / "ids.csv"
    ids.write_text(content)
    out = tmp_path / "s.csv"
    out.write_text("an older submission\n")
    result = predict(run, "--cache", synthetic["cache"], "--ids", ids, "--out", out)
    one_line_error(result, *parts)
    assert out.read_text() == "an older submission\n"


def test_non_utf8_csv_and_six_digit_check(synthetic, tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes("Filename,Caf\xe9\n00001,x\n".encode("latin-1"))
    one_line_error(predict("--check", latin, "--ids", latin), f"{latin}: not UTF-8 text")
    valid = tmp_path / "valid.csv"
    valid.write_text(f"{HEADER}\n00001,0,0,0,0,0,0\n")
    one_line_error(predict("--check", valid, "--ids", latin), f"{latin}: not UTF-8 text")
    six = tmp_path / "six.csv"
    six.write_text("Filename\n000001\n")
    submission = tmp_path / "s.csv"
    submission.write_text(f"{HEADER}\n000001,0,0,0,0,0,0\n")
    one_line_error(
        predict("--check", submission, "--ids", six), "are not the challenge's five-digit ids"
    )


def test_long_lists_of_missing_ids_are_summarised(synthetic, run, tmp_path, caplog):
    ids = tmp_path / "ids.csv"
    wanted = [f"{k:05d}" for k in range(240, 360)] + [f"{k:05d}" for k in range(50_000, 50_030)]
    ids.write_text("Filename\n" + "\n".join(wanted) + "\n")
    result = predict(run, "--cache", synthetic["cache"], "--ids", ids, "--out", tmp_path / "s.csv")
    assert result.exit_code == 0, result.output
    (line,) = [m for m in caplog.messages if "not in the cache get the training label mean" in m]
    assert line.startswith("30 id(s)") and "and 10 more" in line and len(line) < 300


def test_an_unfinished_cache_is_refused_unless_allowed(synthetic, run, tmp_path):
    cache = tmp_path / "c.h5"
    shutil.copy(synthetic["cache"], cache)
    with h5py.File(cache, "a") as handle:
        handle.attrs["complete"] = False
    args = [run, "--cache", cache, "--ids", synthetic["valid"], "--out", tmp_path / "s.csv"]
    one_line_error(predict(*args), "its extraction is not finished", "--allow-incomplete")
    assert predict(*args, "--allow-incomplete").exit_code == 0


def test_non_finite_predictions_leave_the_old_submission_alone(synthetic, run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    weights = load_file(str(broken / "weights.safetensors"))
    weights["scale"] = torch.zeros_like(weights["scale"])  # finite weights, 0/0 predictions
    save_file(weights, str(broken / "weights.safetensors"))
    out = tmp_path / "s.csv"
    out.write_text("an older submission\n")
    result = predict(
        broken, "--cache", synthetic["cache"], "--ids", synthetic["valid"], "--out", out
    )
    one_line_error(result, "non-finite predictions for 120 id(s)", "was not written")
    assert out.read_text() == "an older submission\n"


@pytest.mark.slow
def test_a_finished_run_is_refused_and_overwrite_replaces_it_whole(synthetic, tmp_path):
    out = tmp_path / "run"
    train(synthetic, out, "--epochs", "2", head="concat")
    (out / "old_only.png").write_bytes(b"a plot of the old run")
    before = (out / "weights.safetensors").read_bytes()
    result = train(synthetic, out, ok=False)
    one_line_error(result, f"{out} already holds a run", "--overwrite")
    assert (out / "weights.safetensors").read_bytes() == before
    train(synthetic, out, "--overwrite")
    config = json.loads((out / "config.json").read_text())
    assert config["head"]["head"] == "ridge" and not (out / "old_only.png").exists()
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.") and p.is_dir()]


def test_an_overwrite_that_dies_before_its_first_weights_leaves_the_old_run(
    synthetic, run, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def dies(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(
        "emi_heads.training.train.train_sgd", dies
    )  # Ctrl-C before the first epoch ends
    result = CliRunner().invoke(
        train_command,
        [
            str(synthetic["cache"]),
            "--train",
            str(synthetic["train"]),
            "--head",
            "concat",
            "--out",
            str(out),
            "--overwrite",
        ],
    )
    assert result.exit_code == 1 and "Aborted" in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.") and p.is_dir()]


def test_leftovers_of_a_killed_training_are_cleaned_or_restored(synthetic, run, tmp_path):
    out = tmp_path / "run"
    dead = 4_000_000
    while os.path.exists(f"/proc/{dead}"):
        dead += 1
    shutil.copytree(run, tmp_path / f".run.old-{dead}")  # killed between the two renames
    (tmp_path / f".run.staging-{dead}").mkdir()  # killed before its first weights
    with RunWriter(out, overwrite=True):  # a new run that ends before its first weights
        pass
    assert json.loads((out / "config.json").read_text())["head"]["head"] == "ridge"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["run"]


def test_two_trainings_into_one_folder_the_second_is_refused(synthetic, tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from emi_heads.training.rundir import RunWriter
            with RunWriter({str(out)!r}):
                print("held", flush=True)
                time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = train(synthetic, out, ok=False)
        one_line_error(
            result, f"run directory {out} is in use by another process (pid {holder.pid}"
        )
    finally:
        holder.kill()
        holder.wait()


def edit(run_dir, how):
    config_path, weights_path = run_dir / "config.json", run_dir / "weights.safetensors"
    config = json.loads(config_path.read_text())
    if how == "not json":
        config_path.write_text("{ this is not json")
        return
    if how == "weights garbage":
        weights_path.write_bytes(b"\0" * 100)
        return
    if how == "non-finite weights":
        weights = load_file(str(weights_path))
        weights["fusion.3.bias"][0] = float("nan")
        save_file(weights, str(weights_path))
        return
    if how == "wrong shapes":
        weights = load_file(str(weights_path))
        weights["fusion.0.weight"] = weights["fusion.0.weight"][:, :-1].contiguous()
        save_file(weights, str(weights_path))
        return
    changes = {
        "unknown key": lambda c: c["head"].update(surprise=1),
        "missing key": lambda c: c.pop("label_mean"),
        "missing head key": lambda c: c["head"].pop("head"),
        "wrong type": lambda c: c["head"].update(hidden="256"),
        "huge layer": lambda c: c["head"].update(mlp_hidden=4_000_000),
        "edited width": lambda c: c["head"].update(mlp_hidden=40_000),
        "label mean length": lambda c: c.update(label_mean=[0.1, 0.2]),
        "label mean nan": lambda c: c.update(label_mean=[float("nan")] * 6),
        "labels": lambda c: c.update(labels=["Joy"]),
        "unknown head": lambda c: c["head"].update(head="transformer"),
    }
    changes[how](config)
    config_path.write_text(json.dumps(config))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("not json", "config.json: not readable JSON"),
        ("weights garbage", "not a readable safetensors file"),
        ("non-finite weights", "non-finite values in weight(s) fusion.3.bias"),
        ("wrong shapes", "weight fusion.0.weight has shape"),
        ("unknown key", "HeadConfig: unknown field(s) surprise"),
        ("missing key", "missing field(s) label_mean"),
        ("missing head key", "HeadConfig: missing field(s) head"),
        ("wrong type", "HeadConfig.hidden: '256' is not a int"),
        ("huge layer", "mlp_hidden must be in 1..65536"),
        ("edited width", "weight fusion.0.weight has shape"),
        ("label mean length", "label_mean must be 6 finite numbers in [0, 1]"),
        ("label mean nan", "label_mean must be 6 finite numbers in [0, 1]"),
        ("labels", "trained for labels ['Joy']"),
        ("unknown head", "head 'transformer' is unknown"),
    ],
)
def test_an_edited_or_received_run_is_one_line_before_anything_is_built(
    synthetic, tmp_path_factory, tmp_path, how, message
):
    source = tmp_path_factory.getbasetemp() / "concat-run"
    if not source.exists():
        train(synthetic, source, "--epochs", "1", head="concat")
    run_dir = tmp_path / "received"
    shutil.copytree(source, run_dir)
    edit(run_dir, how)
    result = predict(
        run_dir,
        "--cache",
        synthetic["cache"],
        "--ids",
        synthetic["valid"],
        "--out",
        tmp_path / "s.csv",
    )
    one_line_error(result, message)
    assert str(run_dir) in result.output


def test_validation_overlapping_training_is_warned(synthetic, tmp_path, caplog):
    labels = np.random.default_rng(0).uniform(size=(10, 6)).round(2)
    overlap = write_labels(tmp_path / "v.csv", [f"{k:05d}" for k in range(10)], labels)
    result = CliRunner().invoke(
        train_command,
        [
            str(synthetic["cache"]),
            "--train",
            str(synthetic["train"]),
            "--valid",
            str(overlap),
            "--head",
            "ridge",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert any(m.startswith("10 id(s) are in both --train and --valid") for m in caplog.messages)
