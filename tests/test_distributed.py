"""torchrun with 2 CPU ranks (gloo): the cache equals the single-process cache clip for clip,
also after the whole run is killed mid-way and re-run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from conftest import extract_args, write_wav_folder

from emi_features.cache.reader import open_cache

GROUPS = ("offsets", "frames", "frame_vad", "mean", "vad", "num_samples")


def command(folder, model_dir, out, ranks: int) -> list[str]:
    extract = extract_args(folder, model_dir, out, seconds="3")
    if ranks == 1:
        return [sys.executable, *extract]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={ranks}",
        *extract,
    ]


# one thread everywhere (torchrun's default per rank): the same reduction order, so equal bits
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_two_ranks_equal_one_process_and_resume_after_a_kill(tiny_model_dir, tmp_path):
    folder = write_wav_folder(tmp_path / "clips", 60, 0.3, 2.5)
    single = tmp_path / "single.h5"
    subprocess.run(
        command(folder, tiny_model_dir, single, 1),
        env=ENV,
        check=True,
        capture_output=True,
        timeout=300,
    )

    out = tmp_path / "ranks.h5"
    parts = tmp_path / "ranks.h5.parts"
    process = subprocess.Popen(
        command(folder, tiny_model_dir, out, 2),
        env=ENV,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until both ranks have committed parts
        if {p.name[:5] for p in parts.glob("r*.h5")} == {"r000-", "r001-"}:
            break
        assert process.poll() is None, "the distributed run ended before it could be killed"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_clips = set()
    for part in parts.glob("r*.h5"):
        with h5py.File(part, "r") as handle:
            killed_clips.update(s.decode() for s in handle["ids"][()])
    assert {p.name[:5] for p in parts.glob("r*.h5")} == {"r000-", "r001-"}
    assert 0 < len(killed_clips) < 60

    resumed = subprocess.run(
        command(folder, tiny_model_dir, out, 2),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "60 clips in the cache" in resumed.stderr
    # both ranks' committed clips were kept, not recomputed
    already = {int(n) for n in re.findall(r"60 clips, (\d+) already in", resumed.stderr)}
    assert already and min(already) >= len(killed_clips), (already, len(killed_clips))
    assert f"this run {60 - min(already)} clips" in resumed.stderr
    assert not parts.exists()
    with open_cache(single) as a, open_cache(out) as b:
        assert a.ids == b.ids == [f"{k:05d}" for k in range(60)]
        assert b.complete
        for group in GROUPS:
            np.testing.assert_array_equal(a.read(group), b.read(group), err_msg=group)
