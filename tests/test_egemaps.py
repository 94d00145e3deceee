"""`emi extract --modality egemaps`: openSMILE's eGeMAPS through the one stream interface, as
low-level descriptors (a 100 frames/s stream) or per-clip functionals (a clip stream); the
values are openSMILE's own; a clip too short is recorded as skipped with its reason; without the
opensmile package, and with another modality's option, one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import run_extract_cli as run
from conftest import write_wav

from emi_features.cache.reader import open_cache

opensmile = pytest.importorskip("opensmile", reason="the egemaps extra (in the test extra)")


@pytest.fixture(scope="module")
def folder_and_cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    for k, seconds in enumerate((1.0, 2.5, 0.03)):  # the last: shorter than eGeMAPS needs
        write_wav(folder / f"{k:05d}.wav", seconds, seed=k)
    cache = folder.parent / f"{folder.name}.h5"
    run(folder, "--model", "fbank", "--out", cache, "--quiet", "--workers", "0")
    return folder, cache


def test_descriptors_are_a_100_per_second_stream_of_opensmiles_own_values(folder_and_cache):
    folder, cache = folder_and_cache
    result = run(folder, "--out", cache, "--quiet", "--modality", "egemaps", "--stream", "eg")
    assert "1 skipped" in result.output
    with open_cache(cache) as opened:
        stream, ids = opened.stream("eg"), list(opened.ids)
    assert stream.kind == "frame" and stream.dim == 25 and stream.attrs["frame_rate"] == 100.0
    assert stream.present.tolist() == [True, True, False]
    assert stream.attrs["source"] == "emi-extract --modality egemaps"  # no model: weight-free
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )
    row = ids.index("00001")
    wave, _ = __import__("soundfile").read(folder / "00001.wav", dtype="float32")
    expected = smile.process_signal(wave, 16_000).to_numpy(dtype=np.float32)
    got = stream.frames[stream.offsets[row] : stream.offsets[row + 1]].astype(np.float32)
    assert got.shape == expected.shape and abs(len(got) - 250) <= 6  # 2.5 s at 100/s
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)  # stored as float16
    np.testing.assert_allclose(stream.mean[row], expected.mean(axis=0), rtol=1e-4, atol=1e-4)


def test_functionals_are_a_clip_stream(folder_and_cache):
    folder, cache = folder_and_cache
    run(
        folder,
        "--out",
        cache,
        "--quiet",
        "--modality",
        "egemaps",
        "--level",
        "functionals",
        "--stream",
        "egf",
    )
    with open_cache(cache) as opened:
        stream = opened.stream("egf")
    assert stream.kind == "clip" and stream.values.shape == (3, 88)
    assert stream.present.tolist() == [True, True, False]
    assert np.isfinite(stream.values).all() and stream.values[0].any()


def test_without_opensmile_and_with_anothers_option_one_line(folder_and_cache, monkeypatch):
    folder, cache = folder_and_cache
    monkeypatch.setitem(sys.modules, "opensmile", None)  # as on a machine without the extra
    missing = run(folder, "--out", cache, "--modality", "egemaps", "--stream", "e2", ok=False)
    assert missing.exit_code == 1 and "pip install 'emi[egemaps]'" in missing.output
    assert "Traceback" not in missing.output
    other = run(
        folder, "--out", cache, "--modality", "egemaps", "--fps", "3", "--stream", "e3", ok=False
    )
    assert other.exit_code == 2 and "--fps is a setting of --modality vision" in other.output
    no_stream = run(folder, "--out", cache, "--modality", "egemaps", ok=False)
    assert no_stream.exit_code == 2 and "give --stream NAME" in no_stream.output


@pytest.mark.slow
def test_two_torchrun_ranks_write_the_stream_one_process_writes(folder_and_cache, tmp_path):
    """Every modality runs under torchrun like audio extraction: each rank takes its share of
    the clips, rank 0 consolidates and attaches; the stream equals the one-process stream."""
    import os
    import shutil
    import subprocess

    folder, cache = folder_and_cache
    streams = {}
    for ranks in (1, 2):
        copy = shutil.copy(cache, tmp_path / f"c{ranks}.h5")
        extract = [
            "-m",
            "emi_features",
            str(folder),
            "--out",
            str(copy),
            "--modality",
            "egemaps",
            "--stream",
            "by-ranks",
            "--device",
            "cpu",
            "--quiet",
        ]
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        subprocess.run(
            [sys.executable, *(launcher if ranks > 1 else []), *extract],
            check=True,
            capture_output=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        with open_cache(copy) as opened:
            streams[ranks] = opened.stream("by-ranks")
    assert streams[2].present.tolist() == streams[1].present.tolist() == [True, True, False]
    np.testing.assert_array_equal(streams[2].offsets, streams[1].offsets)
    np.testing.assert_array_equal(streams[2].frames, streams[1].frames)


def test_the_stream_records_how_to_make_it_again_for_new_media(folder_and_cache, tmp_path):
    """`emi predict --media` re-runs each stream a model reads: the recorded modality and
    settings give the command, and the command gives the same values."""
    import shutil

    from emi_features.extraction.remake import ModelPlace, parse_recipe
    from emi_features.extraction.remake_steps import stage_one_commands

    folder, cache = folder_and_cache
    run(
        folder,
        "--out",
        cache,
        "--quiet",
        "--modality",
        "egemaps",
        "--level",
        "functionals",
        "--stream",
        "again",
    )
    with open_cache(cache) as opened:
        stream = opened.stream("again")
    assert stream.attrs["modality"] == "egemaps"
    copy = shutil.copy(cache, tmp_path / "copy.h5")
    with open_cache(cache) as opened:
        recipe = parse_recipe(opened.recipe(), ModelPlace(tmp_path)).only(["again"])
    (_, command) = stage_one_commands(recipe, folder, copy)
    assert command == [
        "extract",
        str(folder),
        "--modality",
        "egemaps",
        "--stream",
        "again",
        "--level",
        "functionals",
        "--feature-set",
        "eGeMAPSv02",
        "--out",
        str(copy),
        "--overwrite",
    ]
    run(*command[1:], "--quiet")
    with open_cache(copy) as opened:
        np.testing.assert_array_equal(opened.stream("again").values, stream.values)
