"""The week before the deadline: seeds, folds with a refit, sweeps, comparing runs, ensembles
across caches with fixed or fitted weights, re-running a run, and what a user sees."""

from __future__ import annotations

import csv
import json
import statistics

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_synthetic_cache

from emi_heads.cli.train import train_command
from emi_heads.cli.use import predict_command, runs_command


def invoke(command, *args, ok=True):
    result = CliRunner().invoke(command, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def base(synthetic, out, *extra, head="concat"):
    return [
        synthetic["cache"],
        "--train",
        synthetic["train"],
        "--valid",
        synthetic["valid"],
        "--head",
        head,
        "--out",
        out,
        "--quiet",
        *extra,
    ]


def values(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [r[0] for r in rows], np.array([r[1:] for r in rows], dtype=float)


def predict_to(out, *runs, cache=None, extra=()):
    args = [*runs, "--ids", cache["valid"], "--out", out, *extra]
    if cache is not None and "cache" in cache:
        args += ["--cache", cache["cache"]]
    invoke(predict_command, *args)
    return values(out)[1]


FAST = ("--epochs", "4", "--lr", "3e-3", "--min-steps", "0")


@pytest.mark.slow
def test_seeds_in_one_process_and_predict_ensembles_the_parent(synthetic, tmp_path):
    parent = tmp_path / "seeds"
    result = invoke(train_command, *base(synthetic, parent, *FAST, "--seeds", "0,1"))
    assert sorted(p.name for p in parent.iterdir() if p.is_dir()) == ["seed-0", "seed-1"]
    assert json.loads((parent / "experiment.json").read_text())["kind"] == "seeds"
    assert "(2 seeds)" in result.output and "mean±sd" in result.output
    again = invoke(train_command, *base(synthetic, parent, *FAST, "--seeds", "0,5"), ok=False)
    assert again.exit_code == 1 and "already holds an experiment" in again.output
    assert json.loads((parent / "experiment.json").read_text())["members"] == ["seed-0", "seed-1"]
    both = predict_to(tmp_path / "p.csv", parent, cache=synthetic)
    one = predict_to(tmp_path / "a.csv", parent / "seed-0", cache=synthetic)
    two = predict_to(tmp_path / "b.csv", parent / "seed-1", cache=synthetic)
    inside = (both > 0) & (both < 1)
    np.testing.assert_allclose(both[inside], ((one + two) / 2)[inside], atol=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize("head", ["ridge", "concat"])
def test_folds_give_out_of_fold_predictions_and_a_refit_with_the_chosen_setting(
    synthetic, tmp_path, head
):
    parent = tmp_path / "cv"
    extra = FAST if head == "concat" else ()
    invoke(train_command, *base(synthetic, parent, *extra, "--folds", "3", "--refit", head=head))
    ids, oof = values(parent / "oof_predictions.csv")
    assert len(ids) == len(set(ids)) == 360  # every labelled id of train and valid, once
    metrics = json.loads((parent / "cv_metrics.json").read_text())
    assert metrics["folds"] == 3 and len(metrics["fold_r"]) == 3
    assert metrics["fold_mean_r"] == pytest.approx(statistics.mean(metrics["fold_r"]))
    assert metrics["fold_sd_r"] == pytest.approx(statistics.stdev(metrics["fold_r"]))
    assert (
        set(metrics["oof_r"]) == set(metrics["fold_columns_mean"]) and metrics["oof_mean_r"] > 0.5
    )
    refit = json.loads((parent / "refit" / "config.json").read_text())
    assert refit["valid_csv"] is None
    chosen = metrics["chosen"]
    if head == "ridge":  # the alpha most folds chose, not the middle one
        assert refit["head"]["ridge_alphas"] == [max(sorted(set(chosen)), key=chosen.count)]
        assert (
            json.loads((parent / "refit" / "metrics.json").read_text())["alpha"]
            == (refit["head"]["ridge_alphas"][0])
        )
    else:
        assert refit["train"]["epochs"] == round(statistics.median(chosen))


@pytest.mark.slow
def test_a_sweep_runs_the_grid_and_compares(synthetic, tmp_path):
    parent = tmp_path / "sweep"
    result = invoke(
        train_command,
        *base(
            synthetic,
            parent,
            "--epochs",
            "2",
            "--set",
            "lr=1e-3,3e-3",
            "--set",
            "dropout=0.1,0.3",
            "--set",
            "branch_dim=16",
        ),
    )
    names = sorted(p.name for p in parent.iterdir() if p.is_dir())
    assert names == [
        "lr=0.001,dropout=0.1",
        "lr=0.001,dropout=0.3",
        "lr=0.003,dropout=0.1",
        "lr=0.003,dropout=0.3",
    ]
    config = json.loads((parent / "lr=0.003,dropout=0.1" / "config.json").read_text())
    assert config["train"]["lr"] == 0.003 and config["head"]["dropout"] == 0.1
    assert config["head"]["branch_dim"] == 16  # a single value applies to every run
    assert "head.dropout" in result.output and "train.lr" in result.output
    bad = invoke(train_command, *base(synthetic, tmp_path / "x", "--set", "nonsense=1"), ok=False)
    assert bad.exit_code == 2 and "KEY=V1,V2,... with KEY one of" in bad.output


@pytest.mark.slow
def test_runs_table_sorts_groups_seeds_and_writes_csv_and_png(synthetic, tmp_path):
    invoke(train_command, *base(synthetic, tmp_path / "runs" / "c", *FAST, "--seeds", "0,1,2"))
    invoke(train_command, *base(synthetic, tmp_path / "runs" / "ridge", head="ridge"))
    result = invoke(
        runs_command, tmp_path / "runs", "--csv", tmp_path / "t.csv", "--png", tmp_path / "t.png"
    )
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["run", "head"]  # narrow: preset and loss do not differ
    assert "preset" not in lines[0] and "loss" not in lines[0]
    wide = invoke(runs_command, tmp_path / "runs", "--wide").output.splitlines()
    assert wide[0].split()[:5] == ["run", "head", "preset", "inputs", "loss"]
    assert max(map(len, lines)) <= max(map(len, wide))
    with open(tmp_path / "t.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    scores = [float(r["valid_r"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    group = next(r for r in rows if r["seed"] == "mean±sd")
    seeds = [float(r["valid_r"]) for r in rows if r["run"].startswith("c/seed-")]
    assert float(group["valid_r"]) == pytest.approx(statistics.mean(seeds))
    assert float(group["valid_r_sd"]) == pytest.approx(statistics.stdev(seeds))
    assert "head.head" not in group and "inputs" in group  # heads differ: shown as a column
    assert (tmp_path / "t.png").stat().st_size > 1000
    invoke(runs_command, tmp_path / "runs", "--sort", "seconds", "--csv", tmp_path / "s.csv")
    with open(tmp_path / "s.csv", newline="") as handle:
        seconds = [float(r["seconds"]) for r in csv.DictReader(handle) if r["seconds"]]
    assert len(seconds) == 4 and seconds == sorted(seconds)  # fastest first


@pytest.fixture(scope="module")
def two_caches(synthetic, tmp_path_factory):
    """A second cache of the same clips from another 'backbone' (other fingerprint), a good
    run on each, and a run on shuffled labels."""
    root = tmp_path_factory.mktemp("caches")
    rng = np.random.default_rng(7)
    ids = [f"{i:05d}" for i in range(360)]
    latents = rng.uniform(0, 1, size=(360, 6))  # the synthetic fixture's latents (same seed)
    other = write_synthetic_cache(
        root / "other.h5", ids, latents, dim=8, fingerprint="other-b", seed=5
    )
    runs = {}
    for name, cache, labels in (
        ("a", synthetic["cache"], "train"),
        ("b", other, "train"),
        ("noise", synthetic["cache"], "shuffled"),
    ):
        runs[name] = root / name
        invoke(
            train_command,
            cache,
            "--train",
            synthetic[labels],
            "--valid",
            synthetic["valid"],
            "--head",
            "ridge",
            "--out",
            runs[name],
            "--quiet",
        )
    return {"other": other, **runs}


@pytest.mark.slow
def test_ensembles_across_caches_with_fixed_and_fitted_weights(synthetic, two_caches, tmp_path):
    a, b = two_caches["a"], two_caches["b"]
    common = ["--ids", synthetic["valid"]]
    invoke(
        predict_command,
        a,
        b,
        "--cache",
        synthetic["cache"],
        "--cache",
        two_caches["other"],
        *common,
        "--out",
        tmp_path / "ab.csv",
    )
    invoke(predict_command, a, b, *common, "--out", tmp_path / "recorded.csv")  # recorded caches
    _, ab = values(tmp_path / "ab.csv")
    np.testing.assert_allclose(values(tmp_path / "recorded.csv")[1], ab)
    invoke(predict_command, a, *common, "--out", tmp_path / "a.csv")
    invoke(predict_command, a, b, "--weights", "1,0", *common, "--out", tmp_path / "w.csv")
    np.testing.assert_allclose(values(tmp_path / "w.csv")[1], values(tmp_path / "a.csv")[1])
    result = invoke(
        predict_command,
        a,
        two_caches["noise"],
        "--fit-weights",
        synthetic["valid"],
        *common,
        "--out",
        tmp_path / "fit.csv",
    )
    assert "2 run(s)" in result.output
    bad = invoke(
        predict_command, a, "--weights", "1,2", *common, "--out", tmp_path / "x.csv", ok=False
    )
    assert bad.exit_code == 1 and "2 non-negative numbers" not in bad.output
    assert "1 non-negative numbers, one per RUN_DIR" in bad.output


def test_fitted_weights_favour_the_informative_run(synthetic, two_caches, caplog):
    from emi_heads.use.ensemble import expand_members, fit_weights

    members = expand_members([two_caches["a"], two_caches["noise"]])
    weights = fit_weights(members, synthetic["valid"])
    assert weights.shape == (2, 6) and np.allclose(weights.sum(axis=0), 1)
    assert (weights[0] > 0.8).sum() >= 5, weights


@pytest.mark.slow
def test_from_a_run_repeats_it_and_set_overrides(synthetic, tmp_path):
    first = tmp_path / "first"
    invoke(train_command, *base(synthetic, first, *FAST, "--seed", "3"))
    config = json.loads((first / "config.json").read_text())
    provenance = config["provenance"]
    assert provenance["command"][0] == "emi-train" and provenance["cwd"]
    assert all(path.startswith("/") for path in config["train_csvs"])
    assert set(provenance["csv_digests"]) == {config["train_csvs"][0], config["valid_csv"]}
    invoke(train_command, "--from", first, "--out", tmp_path / "again", "--quiet")
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again["valid_mean_r"] == json.loads((first / "metrics.json").read_text())["valid_mean_r"]
    invoke(
        train_command, "--from", first, "--set", "epochs=2", "--out", tmp_path / "short", "--quiet"
    )
    short = json.loads((tmp_path / "short" / "config.json").read_text())
    assert short["train"]["epochs"] == 2 and short["train"]["seed"] == 3


@pytest.mark.slow
def test_what_a_user_sees_ridge_undertraining_and_tensorboard(synthetic, tmp_path, caplog):
    caplog.set_level("INFO")
    invoke(train_command, *base(synthetic, tmp_path / "ridge", head="ridge"))
    metrics = json.loads((tmp_path / "ridge" / "metrics.json").read_text())
    assert "alpha" in metrics and "best_epoch" not in metrics
    assert any("ridge coefficients" in m for m in caplog.messages)
    assert not any(" 0 parameters" in m for m in caplog.messages)
    invoke(
        train_command,
        *base(
            synthetic,
            tmp_path / "short",
            "--epochs",
            "2",
            "--lr",
            "1e-5",
            "--log-to",
            "tensorboard",
        ),
    )
    assert any(m.startswith("the best epoch is the last one (2 of 2)") for m in caplog.messages)
    assert any(m.startswith("predictions on validation barely vary") for m in caplog.messages)
    caplog.clear()
    invoke(train_command, *base(synthetic, tmp_path / "fine", *FAST))
    assert not any("barely vary" in m for m in caplog.messages)  # a head that learned: silent
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "short" / "tensorboard"))
    events.Reload()
    logged = json.loads((tmp_path / "short" / "metrics.json").read_text())
    valid_r = [e.value for e in events.Scalars("valid_r")]
    assert len(valid_r) == 2 and valid_r[-1] == pytest.approx(logged["valid_mean_r"], abs=1e-5)
    header = (tmp_path / "short" / "log.csv").read_text().splitlines()[0]
    assert "valid_loss" in header


def test_runs_groups_only_runs_that_differ_in_their_seed_and_writes_numbers_readably(tmp_path):
    from dataclasses import asdict

    from emi_features.core.task import EMOTIONS
    from emi_heads.experiments.compare import compare_runs, format_table
    from emi_heads.heads.settings import head_config
    from emi_heads.training.config import TrainConfig

    def run(name: str, seed: int, r: float) -> None:
        folder = tmp_path / name
        folder.mkdir(parents=True)
        head = head_config("concat", dims={"frame_stats": 4, "mean": 2}).to_dict()
        config = {"head": head, "train": asdict(TrainConfig(lr=3e-4, seed=seed)), "preset": None}
        (folder / "config.json").write_text(json.dumps(config))
        metrics = {
            "best_epoch": 3,
            "valid_mean_r": r,
            "seconds": 1.0,
            "valid_r": {e: r for e in EMOTIONS},
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))

    run("seeds/seed-0", 0, 0.5)
    run("seeds/seed-1", 1, 0.6)
    rows = compare_runs([tmp_path])
    assert [r["run"][-9:] for r in rows if r["seed"] == "mean±sd"] == ["(2 seeds)"]
    run("sweep/lr=0.0003", 0, 0.7)  # the same settings and seed as seed-0: no seed group
    rows = compare_runs([tmp_path])
    assert not [r for r in rows if r["seed"] == "mean±sd"]
    table = format_table(rows, wide=True)
    assert "0.0003" in table and "0.000 " not in table
