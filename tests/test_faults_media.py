"""`emi predict --media`, `emi export` and `emi recipe` as a careless or hostile user meets them:
nothing of the user's is deleted or overwritten, nothing wrong is silent, every refusal is one
line."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import run_extract_cli, write_labels, write_synthetic_cache, write_wav

from emi_features.core.task import EMOTIONS
from emi_heads.cli.train import train_command
from emi_heads.cli.use import export_command, predict_command


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def one_line(result, *words: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1, result.output
    for word in words:
        assert word in error[0], error[0]


def rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def runs(sample_root, tmp_path_factory):
    """The sample in fbank; a ridge and a concat run on it."""
    work = tmp_path_factory.mktemp("faults-media")
    cache = work / "cache.h5"
    run_extract_cli(sample_root, "--model", "fbank", "--out", cache, "--quiet", "--workers", 0)
    labels = [
        "--train",
        sample_root / "train_split.csv",
        "--valid",
        sample_root / "valid_split.csv",
    ]
    for head, extra in (("ridge", []), ("concat", ["--epochs", "2", "--min-steps", "0"])):
        result = invoke(
            train_command,
            cache,
            *labels,
            "--head",
            head,
            *extra,
            "--out",
            work / "runs" / head,
            "--quiet",
        )
        assert result.exit_code == 0, result.output
    audio = sorted((sample_root / "audio").glob("*.mp3"))
    return {
        "cache": cache,
        "ridge": work / "runs" / "ridge",
        "concat": work / "runs" / "concat",
        "parent": work / "runs",
        "audio": audio,
        "labels": labels,
    }


def recordings(runs: dict, folder: Path, count: int = 2) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        Path(shutil.copy(p, folder / f"take {k}.mp3")) for k, p in enumerate(runs["audio"][:count])
    ]


@pytest.mark.slow
def test_a_work_folder_of_the_users_is_never_emptied(runs, tmp_path):
    mine = tmp_path / "project"
    (mine / "media").mkdir(parents=True)
    (mine / "media" / "my interview.wav").write_bytes(b"precious")
    (mine / "windows").mkdir()
    (mine / "windows" / "notes").mkdir()
    files = recordings(runs, tmp_path / "in")
    for option in ([], ["--window", "2"]):
        result = invoke(
            predict_command,
            runs["ridge"],
            "--media",
            *files,
            "--work",
            mine,
            "--out",
            tmp_path / "x.csv",
            *option,
        )
        one_line(result, "holds files emi did not write there")
    assert (mine / "media" / "my interview.wav").read_bytes() == b"precious"
    assert (mine / "windows" / "notes").is_dir()


@pytest.mark.slow
def test_only_the_tools_own_links_and_windows_are_cleaned(runs, tmp_path):
    files = recordings(runs, tmp_path / "in", 2)
    work = tmp_path / "work"
    out = tmp_path / "x.csv"
    assert (
        invoke(
            predict_command,
            runs["ridge"],
            "--media",
            *files,
            "--work",
            work,
            "--out",
            out,
            "--quiet",
        ).exit_code
        == 0
    )
    (work / "media" / "a sub-folder").mkdir()
    (work / "media" / "kept.txt").write_text("someone's")
    result = invoke(
        predict_command, runs["ridge"], "--media", files[0], "--work", work, "--out", out, "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert (work / "media" / "kept.txt").exists() and (work / "media" / "a sub-folder").is_dir()
    assert len(rows(out)) == 1 and len(list((work / "media").glob("m*.mp3"))) == 1


def test_out_is_never_a_recording(runs, tmp_path):
    (victim,) = recordings(runs, tmp_path / "in", 1)
    before = victim.read_bytes()
    result = invoke(predict_command, runs["ridge"], "--media", victim, "--out", victim)
    one_line(result, "names a recording")
    result = invoke(
        predict_command, runs["ridge"], "--media", victim, "--out", tmp_path / "other.wav"
    )
    one_line(result, "names a recording")
    assert victim.read_bytes() == before and not (tmp_path / "other.wav").exists()


@pytest.mark.slow
def test_a_folder_predicted_twice_never_reads_the_tools_own_files(runs, tmp_path):
    folder = tmp_path / "here"
    folder.mkdir()
    shutil.copy(max(runs["audio"], key=lambda p: p.stat().st_size), folder / "long.mp3")
    counts = []
    for _ in range(2):
        result = invoke(
            predict_command,
            runs["ridge"],
            "--media",
            folder,
            "--out",
            folder / "over.csv",
            "--window",
            "2",
            "--quiet",
        )
        assert result.exit_code == 0, result.output
        counts.append(len(rows(folder / "over.csv")))
    assert counts[0] == counts[1] > 2


@pytest.mark.slow
def test_a_second_prediction_in_the_same_work_folder_waits_its_turn(runs, tmp_path):
    files = recordings(runs, tmp_path / "in", 1)
    work = tmp_path / "work"
    assert (
        invoke(
            predict_command,
            runs["ridge"],
            "--media",
            *files,
            "--work",
            work,
            "--out",
            tmp_path / "a.csv",
            "--quiet",
        ).exit_code
        == 0
    )
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from emi_features.cache.locks import ExclusiveLock; "
                f"lock = ExclusiveLock({str(work / 'work')!r}, 'w').acquire(); "
                "print('held', flush=True); "
                "time.sleep(60)"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        result = invoke(
            predict_command,
            runs["ridge"],
            "--media",
            *files,
            "--work",
            work,
            "--out",
            tmp_path / "b.csv",
        )
        one_line(result, "in use by another process")
    finally:
        holder.kill()
        holder.wait()
    assert len(rows(tmp_path / "a.csv")) == 1 and not (tmp_path / "b.csv").exists()


@pytest.mark.slow
def test_weights_apply_with_media(runs, tmp_path):
    files = recordings(runs, tmp_path / "in", 2)
    values = {}
    for name, args in (
        ("ridge", [runs["ridge"]]),
        ("weighted", [runs["ridge"], runs["concat"], "--weights", "1,0"]),
    ):
        out = tmp_path / f"{name}.csv"
        result = invoke(predict_command, *args, "--media", *files, "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        values[name] = [[float(r[e]) for e in EMOTIONS] for r in rows(out)]
    np.testing.assert_allclose(values["weighted"], values["ridge"], atol=1e-6)
    result = invoke(
        predict_command,
        runs["ridge"],
        "--media",
        *files,
        "--out",
        tmp_path / "w.csv",
        "--weights",
        "1,2",
    )
    one_line(result, "one per RUN_DIR")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--hop", "1"], "--hop goes with --window"),
        (["--media", "MEDIA", "--cache", "CACHE"], "--cache"),
        (["--media", "MEDIA", "--ids", "IDS"], "--ids"),
        (["--ids", "IDS", "--window", "5"], "--window: only with --media"),
        (["--ids", "IDS", "--work", "W"], "--work: only with --media"),
    ],
)
def test_an_option_the_mode_would_ignore_is_refused(runs, sample_root, tmp_path, args, words):
    places = {
        "MEDIA": runs["audio"][0],
        "CACHE": runs["cache"],
        "W": tmp_path / "w",
        "IDS": sample_root / "test_split.csv",
    }
    result = invoke(
        predict_command,
        runs["ridge"],
        *(places.get(a, a) for a in args),
        "--out",
        tmp_path / "x.csv",
    )
    one_line(result, words, code=2)


@pytest.mark.parametrize(
    ("window", "hop", "words"),
    [
        ("1", "1e-7", "--hop at least"),
        ("inf", "1", "finite"),
        ("0.001", "1", "--window must"),
        ("0.1", "0.01", "windows (at most"),
    ],
)
def test_window_counts_are_bounded_before_any_work(runs, tmp_path, window, hop, words):
    long_clip = tmp_path / "long.wav"
    write_wav(long_clip, 210.0)  # 0.1 s windows every 10 ms: 21,000 of them
    started = time.perf_counter()
    result = invoke(
        predict_command,
        runs["ridge"],
        "--media",
        long_clip,
        "--window",
        window,
        "--hop",
        hop,
        "--out",
        tmp_path / "x.csv",
    )
    one_line(result, words)
    assert not (tmp_path / "x-features" / "windows").exists() or not any(
        (tmp_path / "x-features" / "windows").iterdir()
    )
    assert time.perf_counter() - started < 60  # bounded work, not a wall-clock target


@pytest.mark.slow
def test_links_that_lead_nowhere_are_skipped_with_a_reason(runs, tmp_path, caplog):
    folder = tmp_path / "in"
    recordings(runs, folder, 1)
    (folder / "gone.wav").symlink_to(tmp_path / "nothing.wav")
    (folder / "loop.mp3").symlink_to(folder / "loop.mp3")
    (folder / "sub").mkdir()
    (folder / "sub" / "back").symlink_to(folder)  # a folder loop
    out = tmp_path / "x.csv"
    result = invoke(predict_command, runs["ridge"], "--media", folder, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert [Path(r["file"]).name for r in rows(out)] == ["take 0.mp3"]
    assert "gone.wav: skipped (a link that leads nowhere)" in caplog.text


@pytest.mark.slow
def test_files_of_one_name_in_two_folders_get_a_plot_each(runs, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(runs["audio"][0 if sub == "a" else 1], tmp_path / "in" / sub / "take.mp3")
    out = tmp_path / "x.csv"
    result = invoke(
        predict_command,
        runs["ridge"],
        "--media",
        tmp_path / "in",
        "--window",
        "2",
        "--out",
        out,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "x-plots").iterdir()) == [
        "a__take.png",
        "b__take.png",
    ]


@pytest.mark.slow
def test_a_file_rewritten_with_the_same_size_and_time_gets_new_features(runs, tmp_path):
    clip = tmp_path / "in" / "clip.wav"
    clip.parent.mkdir()
    write_wav(clip, 2.0, seed=1)
    stamp = clip.stat()
    out = tmp_path / "x.csv"
    assert (
        invoke(predict_command, runs["ridge"], "--media", clip, "--out", out, "--quiet").exit_code
        == 0
    )
    first = rows(out)[0]
    write_wav(clip, 2.0, seed=2)  # the same length, other content
    os.utime(clip, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert clip.stat().st_size == stamp.st_size
    assert (
        invoke(predict_command, runs["ridge"], "--media", clip, "--out", out, "--quiet").exit_code
        == 0
    )
    assert rows(out)[0] != first


def test_non_finite_predictions_get_a_reason(runs, tmp_path):
    from safetensors.torch import load_file, save_file

    from emi_heads import load_model

    run = shutil.copytree(runs["ridge"], tmp_path / "ridge")
    from emi_heads.training.rundir import WEIGHTS

    weights = load_file(run / WEIGHTS)  # finite, but so large that the outputs overflow
    largest = max(weights, key=lambda name: weights[name].numel())
    weights[largest] = weights[largest].sign() * 3e38
    save_file(weights, str(run / WEIGHTS))
    result = load_model(run).predict_cache(runs["cache"], ["00001", "00002"])
    assert np.isnan(result.values).all()
    assert all("non-finite prediction" in reason for reason in result.reasons)


def test_a_run_of_streams_alone_says_when_a_clip_has_none_of_them(tmp_path):
    from emi_features.cli.extract import add_features_command
    from emi_heads import load_model

    rng = np.random.default_rng(0)
    ids = [f"{i:05d}" for i in range(40)]
    latents = rng.uniform(0, 1, (40, 6))
    cache = write_synthetic_cache(tmp_path / "c.h5", ids, latents)
    faces = {i: latents[k] + 0.01 * rng.standard_normal(6) for k, i in enumerate(ids) if k % 4}
    np.savez(tmp_path / "face.npz", **faces)
    assert (
        invoke(
            add_features_command, cache, "--stream", "face", "--from", tmp_path / "face.npz"
        ).exit_code
        == 0
    )
    write_labels(tmp_path / "t.csv", ids[:30], latents[:30])
    write_labels(tmp_path / "v.csv", ids[30:], latents[30:])
    result = invoke(
        train_command,
        cache,
        "--train",
        tmp_path / "t.csv",
        "--valid",
        tmp_path / "v.csv",
        "--head",
        "ridge",
        "--inputs",
        "features/face",
        "--out",
        tmp_path / "face-only",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    predicted = load_model(tmp_path / "face-only").predict_cache(cache, ids[:8])
    for k, reason in enumerate(predicted.reasons):
        assert ("none of the streams face-only reads (face)" in reason) == (k % 4 == 0), reason
        assert np.isnan(predicted.values[k]).all() == (k % 4 == 0)


def test_features_computed_otherwise_are_never_mixed(runs, tmp_path):
    import h5py

    from emi_features.extraction.remake import ModelPlace, parse_recipe
    from emi_features.extraction.remake_steps import stage_one_commands

    int8 = tmp_path / "int8.h5"
    shutil.copy(runs["cache"], int8)
    with h5py.File(int8, "a") as handle:
        handle.attrs["precision"] = "int8"
    result = invoke(
        predict_command,
        runs["ridge"],
        "--cache",
        int8,
        "--ids",
        runs["labels"][3],
        "--out",
        tmp_path / "x.csv",
    )
    one_line(result, "computed with torch fp32", "computed with torch int8")
    from emi_features.cache.reader import open_cache

    with open_cache(int8) as opened:
        spec = parse_recipe(opened.recipe(), ModelPlace(tmp_path))
    (command,) = stage_one_commands(spec, runs["audio"][0].parent, tmp_path / "new.h5")
    assert command[-2:] == ["--precision", "int8"]


def test_export_replaces_only_an_emi_model_folder(runs, tmp_path):
    docs = tmp_path / "thesis"
    docs.mkdir()
    (docs / "chapter 1.tex").write_text("two years")
    for out, words in (
        (docs, "not an emi model folder"),
        (runs["parent"], "holds or is inside the run"),
        (runs["ridge"], "holds or is inside the run"),
    ):
        result = invoke(export_command, runs["ridge"], "--out", out, "--overwrite")
        one_line(result, words)
    assert (docs / "chapter 1.tex").read_text() == "two years"
    assert (runs["ridge"] / "config.json").is_file() and (runs["concat"] / "config.json").is_file()
    link = tmp_path / "link"
    link.symlink_to(docs)
    one_line(invoke(export_command, runs["ridge"], "--out", link, "--overwrite"), "symbolic link")
    model = tmp_path / "model"
    assert invoke(export_command, runs["ridge"], "--out", model).exit_code == 0
    assert invoke(export_command, runs["concat"], "--out", model, "--overwrite").exit_code == 0
    index = json.loads((model / "emi-model.json").read_text())
    index["format_version"] = 99
    (model / "emi-model.json").write_text(json.dumps(index))
    result = invoke(
        predict_command, "--model", model, "--media", runs["audio"][0], "--out", tmp_path / "x.csv"
    )
    one_line(result, "version 99")


@pytest.mark.slow
def test_an_export_of_a_local_backbone_carries_it_and_no_machine_path(
    sample_root, tiny_model_dir, tmp_path
):
    backbone = shutil.copytree(tiny_model_dir, tmp_path / "my models" / "vad-small")
    cache = tmp_path / "c.h5"
    run_extract_cli(sample_root, "--model", backbone, "--out", cache, "--quiet", "--workers", 0)
    run = tmp_path / "run"
    assert (
        invoke(
            train_command,
            cache,
            "--train",
            sample_root / "train_split.csv",
            "--head",
            "ridge",
            "--out",
            run,
            "--quiet",
        ).exit_code
        == 0
    )
    model = tmp_path / "model"
    assert invoke(export_command, run, "--out", model).exit_code == 0
    assert (model / "models" / "vad-small" / "config.json").is_file()
    for path in model.rglob("*"):
        if path.suffix in (".json", ".md"):
            assert str(tmp_path) not in path.read_text(), path
    moved = shutil.copytree(model, tmp_path / "elsewhere" / "model")
    shutil.rmtree(tmp_path / "my models")  # the copy is what loads
    kept = invoke(
        predict_command,
        run,
        "--cache",
        cache,
        "--ids",
        sample_root / "test_split.csv",
        "--out",
        tmp_path / "s.csv",
    )
    assert kept.exit_code == 0, kept.output  # the run itself still predicts from its cache
    gone = invoke(
        predict_command,
        run,
        "--media",
        next((sample_root / "audio").glob("*.mp3")),
        "--out",
        tmp_path / "y.csv",
    )
    assert gone.exit_code == 1 and "vad-small" in gone.output  # its features: one line why
    clip = next((sample_root / "audio").glob("*.mp3"))
    result = invoke(
        predict_command, "--model", moved, "--media", clip, "--out", tmp_path / "x.csv", "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert rows(tmp_path / "x.csv")[0]["Joy"]


def fill(path: Path) -> None:
    """Write `path` until its file system is full."""
    with contextlib.suppress(OSError), path.open("wb") as handle:  # the write or its flush
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()


def test_a_full_or_read_only_place_is_one_line_and_leaves_nothing(runs, small_disk, tmp_path):
    if small_disk is not None:
        fill(small_disk / "filler")
        result = invoke(export_command, runs["ridge"], "--out", small_disk / "model")
        one_line(result, "no space left on device")
        assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
        from emi_features.cache.atomic import WriteError
        from emi_features.cache.locks import ExclusiveLock

        with pytest.raises(WriteError, match="no space left on device"):
            ExclusiveLock(small_disk / "cache.h5", "a cache").acquire()
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)], capture_output=True
    )
    target = read_only if mounted.returncode == 0 else Path("/sys")
    try:
        for result in (
            invoke(export_command, runs["ridge"], "--out", target / "m"),
            invoke(
                predict_command,
                runs["ridge"],
                "--media",
                runs["audio"][0],
                "--out",
                target / "x.csv",
            ),
        ):
            one_line(result, f"cannot write {target}/")
        from emi_heads.cli.recipe import recipe_command

        one_line(
            invoke(
                recipe_command, "audio-2024", runs["audio"][0].parent.parent, "--out", target / "r"
            ),
            "cannot write",
        )
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False, capture_output=True)


@pytest.mark.slow
def test_stage_one_ends_with_a_killed_prediction(runs, tmp_path):
    """`kill -9` of `emi predict --media` takes its extraction step with it."""
    clip = tmp_path / "long.wav"
    write_wav(clip, 600.0, seed=3)
    marker = tmp_path / "work"
    predict = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emi_heads",
            "predict",
            str(runs["ridge"]),
            "--media",
            str(clip),
            "--work",
            str(marker),
            "--out",
            str(tmp_path / "x.csv"),
            "--quiet",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    child = None
    for _ in range(600):  # the extraction step starts within a minute on a busy machine
        child = _child_of(predict.pid)
        if child is not None or predict.poll() is not None:
            break
        time.sleep(0.1)
    assert child is not None, "no extraction step started"
    predict.kill()
    predict.wait()
    for _ in range(100):
        if not Path(f"/proc/{child}").exists() or _state(child) == "Z":
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists() or _state(child) == "Z"


def _child_of(pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                return int(entry.name)
    return None


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
