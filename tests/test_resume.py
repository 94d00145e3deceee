"""A real extraction process killed with SIGKILL mid-run: the cache opens, keeps what was
committed, and the resumed cache equals an uninterrupted one clip for clip."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import extract_args, write_wav_folder

from emi_features.cache.reader import open_cache


def extract_process(folder, model_dir, out):
    return subprocess.Popen(
        [sys.executable, *extract_args(folder, model_dir, out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def cache_arrays(path):
    with open_cache(path) as cache:
        groups = {
            name: cache.read(name) for name in ("frames", "frame_vad", "mean", "vad", "num_samples")
        }
        return cache.ids, cache.offsets, groups


@pytest.mark.slow
def test_kill_nine_mid_run_then_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    folder = write_wav_folder(tmp_path / "clips", 60, 0.3, 1.5)
    out = tmp_path / "killed.h5"
    parts = tmp_path / "killed.h5.parts"
    process = extract_process(folder, tiny_model_dir, out)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.h5"))) < 4 and time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    with open_cache(out) as cache:  # opens, and holds what was committed
        assert not cache.complete
        committed = len(cache)
        assert 4 <= committed < 60
        assert cache.read("frames").shape[0] == cache.offsets[-1]
        assert np.isfinite(cache.read("mean")).all()

    resumed = extract_process(folder, tiny_model_dir, out)
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, output
    # the index is replaced right after each part lands, so a kill between the two leaves one
    # batch in the parts that the index does not list yet: resuming keeps it too
    already = int(re.search(r"60 clips, (\d+) already in", output).group(1))
    assert committed <= already < 60
    assert f"this run {60 - already} clips" in output
    whole = tmp_path / "whole.h5"
    uninterrupted = extract_process(folder, tiny_model_dir, whole)
    assert uninterrupted.wait(timeout=300) == 0

    ids, offsets, groups = cache_arrays(out)
    ids_whole, offsets_whole, groups_whole = cache_arrays(whole)
    assert ids == ids_whole == [f"{k:05d}" for k in range(60)]
    np.testing.assert_array_equal(offsets, offsets_whole)
    for name, array in groups.items():
        np.testing.assert_array_equal(array, groups_whole[name], err_msg=name)
    assert not parts.exists()
