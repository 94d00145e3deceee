"""Faults and hostile inputs for stage one and the cache: two extractions at once, kill -9 and
SIGTERM (no decoder outlives its parent), stale temporaries, read-only and full disks, missing
parts, damaged or hostile caches, dangling symlinks, decoder noise."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import extract_args, write_synthetic_cache, write_wav, write_wav_folder

from emi_features.cache.atomic import process_alive
from emi_features.cache.reader import CacheError, open_cache
from emi_features.cache.schema import ClipFeatures
from emi_features.cache.writer import CacheWriter
from emi_features.cli.extract import main as extract_command


def start_extraction(folder: Path, model: Path, out: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, *extract_args(folder, model, out, seconds="1"), *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_parts(process: subprocess.Popen, parts: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.h5"))) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)


def children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def wait_gone(pids: set[int], seconds: float = 10.0) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(process_alive(p) for p in pids):
        time.sleep(0.05)
    return {p for p in pids if process_alive(p) and "zombie" not in _state(p)}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "zombie"


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return write_wav_folder(tmp_path_factory.mktemp("faults") / "clips", 40, 0.3, 1.5)


@pytest.mark.slow
def test_a_second_extraction_into_the_same_cache_is_refused_and_nothing_is_lost(
    clips, tiny_model_dir, tmp_path
):
    out = tmp_path / "c.h5"
    first = start_extraction(clips, tiny_model_dir, out, "--workers", "2")
    wait_for_parts(first, tmp_path / "c.h5.parts", 1)
    os.kill(first.pid, signal.SIGSTOP)  # paused mid-run, holding the cache, while the second tries
    try:
        second = start_extraction(clips, tiny_model_dir, out)
        _, error = second.communicate(timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 1
    assert f"cache {out} is in use by another process (pid {first.pid} on " in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1
    _, error = first.communicate(timeout=300)
    assert first.returncode == 0, error
    with open_cache(out) as cache:
        assert cache.complete and cache.ids == [f"{k:05d}" for k in range(40)]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_a_killed_extraction_leaves_no_decoder_running_and_resumes(
    clips, tiny_model_dir, tmp_path, how
):
    out = tmp_path / "c.h5"
    process = start_extraction(clips, tiny_model_dir, out, "--workers", "2")
    wait_for_parts(process, tmp_path / "c.h5.parts", 2)
    workers = children(process.pid)
    assert len(workers) >= 2  # the decoding processes (and torch's helpers)
    process.send_signal(getattr(signal, how))
    _, error = process.communicate(timeout=60)
    if how == "SIGTERM":  # like Ctrl-C: one line, committed work kept
        assert process.returncode == 1, error
        assert "interrupted: committed clips are kept; re-run to resume" in error
        assert "Traceback" not in error
    assert wait_gone(workers) == set(), "decoding workers outlived the extraction"
    with open_cache(out) as cache:
        committed = len(cache)
    assert committed >= 2
    resumed = start_extraction(clips, tiny_model_dir, out)
    _, error = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, error
    with open_cache(out) as cache:
        assert cache.complete and len(cache) == 40


def dead_pid() -> int:
    pid = 4_000_000
    while process_alive(pid):
        pid += 1
    return pid


def test_stale_temporaries_of_killed_writers_are_removed(clips, tmp_path):
    out = tmp_path / "c.h5"
    stale = tmp_path / f".c.h5.{dead_pid()}.tmp"  # a consolidation killed half-way
    stale.write_bytes(b"\0" * 4096)
    live = tmp_path / f".c.h5.{os.getppid()}.tmp"  # another, live writer's: kept
    live.write_bytes(b"x")
    (tmp_path / "c.h5.parts").mkdir()
    stale_part = tmp_path / "c.h5.parts" / f".p1.h5.{dead_pid()}.tmp"
    stale_part.write_bytes(b"x")
    result = CliRunner().invoke(
        extract_command, [str(clips), "--model", "fbank", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert not stale.exists() and not stale_part.exists() and live.exists()


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_keeps_what_was_committed(
    clips, tiny_model_dir, small_disk, tmp_path, monkeypatch
):
    args = ["--model", str(tiny_model_dir), "--quiet", "--workers", "0", "--part-seconds", "1"]
    if small_disk is not None:  # really full: 400 KiB cannot hold 40 clips' parts and index
        out = small_disk / "c.h5"
        result = CliRunner().invoke(extract_command, [str(clips), "--out", str(out), *args])
        assert result.exit_code == 1, result.output
        assert f"cannot write {small_disk}" in result.output
        assert "no space left on device" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
        with open_cache(out) as cache:  # what was committed before the disk filled is readable
            assert 0 < len(cache) < 40
            assert np.isfinite(cache.read("mean")).all()
    # the free-space check before consolidation, whatever the machine allows
    out = tmp_path / "c.h5"
    real_usage = shutil.disk_usage

    def full_where_the_cache_lies(path):  # the parts folder has room, the cache's folder not
        return (
            type("U", (), {"free": 1024})()
            if Path(path) == tmp_path.resolve()
            else real_usage(path)
        )

    monkeypatch.setattr(shutil, "disk_usage", full_where_the_cache_lies)
    result = CliRunner().invoke(extract_command, [str(clips), "--out", str(out), *args])
    assert result.exit_code == 1
    assert f"cannot consolidate {out}: it needs about" in result.output
    assert "free space and re-run" in result.output
    with open_cache(out) as cache:
        assert len(cache) == 40 and not cache.complete  # everything kept, in the parts
    monkeypatch.undo()
    result = CliRunner().invoke(extract_command, [str(clips), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    with open_cache(out) as cache:
        assert cache.complete and len(cache) == 40


def test_read_only_and_missing_folders_are_one_line(clips, tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)], capture_output=True
    )
    target = read_only if mounted.returncode == 0 else Path("/sys")  # /sys refuses new files
    try:
        result = CliRunner().invoke(
            extract_command, [str(clips), "--model", "fbank", "--out", str(target / "c.h5")]
        )
    finally:
        subprocess.run(["umount", "-l", str(read_only)], check=False, capture_output=True)
    assert result.exit_code == 1
    assert f"cannot write {target}/" in result.output
    assert any(
        reason in result.output
        for reason in ("is not writable", "read-only file system", "permission denied")
    ), result.output
    missing = tmp_path / "no" / "such" / "c.h5"
    result = CliRunner().invoke(
        extract_command, [str(clips), "--model", "fbank", "--out", str(missing)]
    )
    assert result.exit_code == 1 and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_a_missing_part_is_recomputed_and_names_never_collide(tmp_path):
    attrs = {"backbone": "s", "backbone_fingerprint": "s", "hidden_size": 4}

    def clip(k: int) -> ClipFeatures:
        frames = np.full((3, 4), k, np.float32)
        return ClipFeatures(f"{k:05d}", frames, None, frames.mean(0), None, 1000)

    writer = CacheWriter(tmp_path / "c.h5", attrs)
    for k in range(3):
        writer.write_part([clip(k)], {})
    writer.close()
    parts = sorted((tmp_path / "c.h5.parts").glob("*.h5"))
    assert len(parts) == 3
    parts[1].unlink()  # lost (a disk error, a careless clean-up)
    writer = CacheWriter(tmp_path / "c.h5", attrs)
    assert writer.done_ids == {"00000", "00002"}  # 00001 will be computed again
    writer.write_part([clip(1)], {})
    assert len(list((tmp_path / "c.h5.parts").glob("*.h5"))) == 3  # nothing overwritten
    writer.finish()
    with open_cache(tmp_path / "c.h5") as cache:
        assert cache.ids == ["00000", "00001", "00002"]
        assert [float(cache.clip("mean", i)[0]) for i in range(3)] == [0.0, 1.0, 2.0]


def damage(path: Path, how: str, tmp_path: Path) -> None:
    with h5py.File(path, "a") as handle:
        if how == "offsets length":
            data = handle["offsets"][()]
            del handle["offsets"]
            handle["offsets"] = data[:-1]
        elif how == "offsets decrease":
            data = handle["offsets"][()]
            data[2], data[3] = data[3], data[2]
            handle["offsets"][...] = data
        elif how == "duplicate ids":
            handle["ids"][1] = handle["ids"][0]
        elif how == "width":
            data = handle["mean"][()]
            del handle["mean"]
            handle["mean"] = data[:, :-1]
        elif how == "non-finite mean":
            handle["mean"][3, 0] = np.nan
        elif how == "external link":
            outside = tmp_path / "outside.h5"
            with h5py.File(outside, "w") as other:
                other["x"] = np.zeros((10, 3), np.float32)
            handle["vad_copy"] = h5py.ExternalLink(str(outside), "x")
        elif how == "virtual outside":
            outside = tmp_path / "secret.h5"
            with h5py.File(outside, "w") as other:
                other["x"] = np.zeros((10, 3), np.float32)
            layout = h5py.VirtualLayout(shape=(10, 3), dtype=np.float32)
            layout[:] = h5py.VirtualSource(str(outside), "x", shape=(10, 3))
            handle.create_virtual_dataset("virtual", layout)


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("offsets length", "/offsets has 10 rows for 10 ids"),
        ("offsets decrease", "/offsets must start at 0 and never decrease"),
        ("duplicate ids", "ids listed twice: 00000"),
        ("width", "/mean has width (15,), expected 16"),
        ("non-finite mean", "non-finite /mean for clip(s) 00003"),
        ("external link", "is an external link to"),
        ("virtual outside", "outside its parts folder; refused"),
    ],
)
def test_a_damaged_or_hostile_cache_is_refused_in_one_line(tmp_path, how, message):
    ids = [f"{k:05d}" for k in range(10)]
    path = write_synthetic_cache(
        tmp_path / "c.h5", ids, np.random.default_rng(0).uniform(size=(10, 6))
    )
    damage(path, how, tmp_path)
    with pytest.raises(CacheError, match="refused|damaged cache") as caught:
        open_cache(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_dangling_symlinks_are_recorded_and_decoder_noise_is_a_reason(tmp_path, capfd):
    folder = tmp_path / "in"
    folder.mkdir()
    write_wav(folder / "good.wav", 0.8)
    (folder / "gone.wav").symlink_to(tmp_path / "nowhere.wav")
    (folder / "junk.mp3").write_bytes(b"ID3" + b"junk" * 300)  # libmpg123 talks about this
    result = CliRunner().invoke(
        extract_command,
        [str(folder), "--model", "fbank", "--out", str(tmp_path / "c.h5"), "--workers", "0"],
    )
    assert result.exit_code == 0, result.output
    with open_cache(tmp_path / "c.h5") as cache:
        assert cache.ids == ["good"]
        assert cache.skipped["gone"].startswith("dangling symlink gone.wav -> ")
        assert cache.skipped["junk"].startswith("cannot decode junk.mp3")
    printed = capfd.readouterr().err
    assert "libmpg123" not in printed and "ID3v2" not in printed
