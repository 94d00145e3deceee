"""torchrun with 2 CPU ranks (gloo): the cache equals the single-process cache clip for clip,
also after the whole run is killed mid-way and re-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from conftest import extract_args, write_wav_folder

from emi_features.reader import open_cache

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
    while len(list(parts.glob("r*.h5"))) < 3 and time.monotonic() < deadline:
        assert process.poll() is None, "the distributed run ended before it could be killed"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_parts = {p.name for p in parts.glob("r*.h5")}
    assert killed_parts and any(
        name.startswith("r001-") or name.startswith("r000-") for name in killed_parts
    )

    resumed = subprocess.run(
        command(folder, tiny_model_dir, out, 2),
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "60 clips in the cache" in resumed.stderr
    assert not parts.exists()
    with open_cache(single) as a, open_cache(out) as b:
        assert a.ids == b.ids == [f"{k:05d}" for k in range(60)]
        assert b.complete
        for group in GROUPS:
            np.testing.assert_array_equal(a.read(group), b.read(group), err_msg=group)
