"""A trained model on new recordings: `emi predict --media` (files with their own names, over
time with --window), the Python API as a user imports it, and `emi export` model folders that
predict the same numbers wherever they are copied."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from emi_features.cli.extract import add_features_command
from emi_features.cli.extract import main as extract_command
from emi_features.core.task import EMOTIONS
from emi_heads.cli.train import train_command
from emi_heads.cli.use import export_command, predict_command


def invoke(command, *args, ok=True):
    result = CliRunner().invoke(command, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(sample_root, tmp_path_factory):
    """The sample extracted with fbank plus a pooled fbank-10ms stream; a ridge run on both and
    a concat run on the main frames."""
    work = tmp_path_factory.mktemp("use")
    cache = work / "cache.h5"
    invoke(
        extract_command, sample_root, "--model", "fbank", "--out", cache, "--quiet", "--workers", 0
    )
    invoke(
        extract_command,
        sample_root,
        "--model",
        "fbank-10ms",
        "--stream",
        "fb10",
        "--pool",
        "mean",
        "--out",
        cache,
        "--quiet",
        "--workers",
        0,
    )
    splits = sample_root / "train_split.csv", sample_root / "valid_split.csv"
    labels = ["--train", splits[0], "--valid", splits[1]]
    invoke(train_command, cache, *labels, "--head", "ridge", "--out", work / "ridge", "--quiet")
    invoke(
        train_command,
        cache,
        *labels,
        "--head",
        "concat",
        "--inputs",
        "frame_stats,mean",
        "--epochs",
        "3",
        "--min-steps",
        "0",
        "--out",
        work / "concat",
        "--quiet",
    )
    return {"cache": cache, "ridge": work / "ridge", "concat": work / "concat", "work": work}


def renamed_recordings(sample_root: Path, folder: Path) -> dict[str, str]:
    """Test-split videos and one train mp3 under names of a user's own; file -> sample id."""
    folder.mkdir()
    names = {}
    for clip_id, name in (("00013", "interview A.mp4"), ("00014", "b.mp4")):
        shutil.copy(sample_root / "raw" / f"{clip_id}.mp4", folder / name)
        names[name] = clip_id
    shutil.copy(sample_root / "audio" / "00001.mp3", folder / "take 2.mp3")
    names["take 2.mp3"] = "00001"
    (folder / "broken.mp4").write_bytes(b"not a video")
    write_silent_video(folder / "no sound.mp4")
    return names


def write_silent_video(path: Path) -> None:
    """A video with no audio track."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for _ in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_predict_media_names_files_and_predicts_as_the_cache_does(trained, sample_root, tmp_path):
    from emi_heads import load_model

    names = renamed_recordings(sample_root, tmp_path / "mine")
    out = tmp_path / "intensities.csv"
    first = invoke(
        predict_command,
        trained["ridge"],
        trained["concat"],
        "--media",
        tmp_path / "mine",
        "--out",
        out,
        "--quiet",
    )
    assert "5 rows; 2 could not be predicted" in first.output
    rows = {Path(r["file"]).name: r for r in read_rows(out)}
    assert set(rows) == {*names, "broken.mp4", "no sound.mp4"}
    assert rows["broken.mp4"]["reason"].startswith("cannot decode broken.mp4")
    assert rows["broken.mp4"]["Joy"] == "" and rows["no sound.mp4"]["Joy"] == ""
    assert rows["no sound.mp4"]["reason"] == "no audio track"
    expected = load_model(trained["ridge"], trained["concat"]).predict_cache(
        trained["cache"], list(names.values())
    )
    for k, name in enumerate(names):  # the videos, decoded as the cache decoded them
        got = [float(rows[name][e]) for e in EMOTIONS]
        if name.endswith(".mp4"):
            np.testing.assert_allclose(got, expected.values[k], atol=2e-6)
        assert all(0 <= v <= 1 for v in got)
    kept = next((tmp_path / "intensities-features").glob("*.h5"))
    before = kept.stat().st_mtime_ns
    files = sorted((tmp_path / "mine").iterdir())
    invoke(
        predict_command,
        trained["ridge"],
        "--media",
        *files,
        "--work",
        tmp_path / "intensities-features",
        "--out",
        tmp_path / "again.csv",
    )
    assert kept.stat().st_mtime_ns == before  # the kept cache is reused, not made again
    assert len(read_rows(tmp_path / "again.csv")) == 5


@pytest.mark.slow
def test_intensities_over_time_with_a_plot_per_file(trained, sample_root, tmp_path):
    long_clip = max((sample_root / "audio").iterdir(), key=lambda p: p.stat().st_size)
    shutil.copy(long_clip, tmp_path / "long talk.mp3")
    out = tmp_path / "time.csv"
    result = invoke(
        predict_command,
        trained["ridge"],
        "--media",
        tmp_path / "long talk.mp3",
        "--window",
        "10",
        "--hop",
        "5",
        "--out",
        out,
        "--quiet",
    )
    rows = read_rows(out)
    starts = [float(r["start"]) for r in rows]
    assert starts[:3] == [0.0, 5.0, 10.0] and float(rows[-1]["end"]) == pytest.approx(40.0, 0.01)
    assert all(float(r["end"]) - float(r["start"]) == pytest.approx(10.0) for r in rows)
    assert "plots in" in result.output
    assert (tmp_path / "time-plots" / "long talk.png").stat().st_size > 5000


@pytest.mark.slow
def test_the_python_api_as_a_user_imports_it(trained, sample_root, tmp_path):
    renamed_recordings(sample_root, tmp_path / "mine")
    script = f"""
import sys
import emi_heads
assert "torch" not in sys.modules  # importing the package stays light
from emi_heads import load_model
model = load_model({str(trained["ridge"])!r})
result = model.predict([{str(tmp_path / "mine")!r}], work={str(tmp_path / "w")!r}, progress=False)
print(model.labels == result.labels, result.values.shape, sorted(result.names)[0].endswith("b.mp4"))
print(sum(bool(r) for r in result.reasons))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["True (5, 6) True", "2"]


@pytest.mark.slow
def test_an_exported_model_folder_predicts_the_same_anywhere(trained, sample_root, tmp_path):
    model = tmp_path / "model"
    invoke(export_command, trained["ridge"], trained["concat"], "--out", model)
    card = (model / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: emi\nlicense: mit\n")
    assert "`fbank`: none: no weights" in card and "train_split.csv" in card
    index = json.loads((model / "emi-model.json").read_text())
    assert index["members"] == [["run-0"], ["run-1"]]
    for config in model.glob("*/config.json"):
        text = config.read_text()
        assert str(tmp_path.parent) not in text and str(sample_root) not in text, config
    refused = invoke(export_command, trained["ridge"], "--out", model, ok=False)
    assert refused.exit_code == 1 and "--overwrite replaces it" in refused.output
    elsewhere = tmp_path / "copied" / "model"
    shutil.copytree(model, elsewhere)
    renamed_recordings(sample_root, tmp_path / "mine")
    for folder, out in ((model, "a.csv"), (elsewhere, "b.csv")):
        invoke(
            predict_command,
            "--model",
            folder,
            "--media",
            tmp_path / "mine",
            "--out",
            tmp_path / out,
            "--quiet",
        )
    first, second = read_rows(tmp_path / "a.csv"), read_rows(tmp_path / "b.csv")
    assert [r["Joy"] for r in first] == [r["Joy"] for r in second] and first[0]["Joy"]


@pytest.mark.slow
def test_media_that_cannot_be_predicted_is_one_line(trained, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(
        predict_command, trained["ridge"], "--media", empty, "--out", tmp_path / "x.csv", ok=False
    )
    assert result.exit_code == 1 and "no audio or video files" in result.output
    assert not (tmp_path / "x.csv").exists()
    cache = tmp_path / "c.h5"
    shutil.copy(trained["cache"], cache)
    np.savez(tmp_path / "f.npz", **{"00001": np.ones(3), "00002": np.zeros(3)})
    invoke(add_features_command, cache, "--stream", "face", "--from", tmp_path / "f.npz")
    labels = trained["ridge"].parent  # the sample's CSVs are recorded in the run's config
    config = json.loads((trained["ridge"] / "config.json").read_text())
    invoke(
        train_command,
        cache,
        "--train",
        config["train_csvs"][0],
        "--valid",
        config["valid_csv"],
        "--head",
        "ridge",
        "--out",
        tmp_path / "face",
    )
    wav = next(Path(config["train_csvs"][0]).parent.glob("audio/*.mp3"))
    refused = invoke(
        predict_command, tmp_path / "face", "--media", wav, "--out", tmp_path / "y.csv", ok=False
    )
    assert refused.exit_code == 1 and "the stream features/face was imported" in refused.output
    assert labels.exists() and not (tmp_path / "y.csv").exists()
    other = tmp_path / "other.h5"  # features of another backbone than the run's
    invoke(
        extract_command,
        wav.parent,
        "--model",
        "fbank-10ms",
        "--out",
        other,
        "--quiet",
        "--workers",
        0,
    )
    wrong = invoke(
        predict_command,
        trained["ridge"],
        "--cache",
        other,
        "--ids",
        config["valid_csv"],
        "--out",
        tmp_path / "z.csv",
        ok=False,
    )
    assert wrong.exit_code == 1 and "no cache given holds them" in wrong.output
