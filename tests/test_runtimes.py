"""`--runtime onnxruntime|openvino` and `--precision int8`: the compiled CPU path gives the eager
fp32 frames within 1e-3 (tiny VAD architecture), is exported once per backbone, is recorded in
the cache and never mixed with another runtime's or precision's clips; bad combinations and a
missing engine are one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import run_extract_cli, write_wav_folder

from emi_features.cache.reader import open_cache

pytest.importorskip("onnxruntime", reason="the onnxruntime extra (in the test extra)")
pytest.importorskip("openvino", reason="the openvino extra (in the test extra)")


@pytest.fixture(autouse=True)
def own_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_wav_folder(tmp_path_factory.mktemp("rt") / "clips", 4, 0.3, 2.5)


def extract(clips, model, out, *extra, ok=True):
    return run_extract_cli(
        clips,
        "--model",
        model,
        "--out",
        out,
        "--device",
        "cpu",
        "--quiet",
        "--workers",
        "0",
        *extra,
        ok=ok,
    )


def groups(path):
    with open_cache(path) as cache:
        return {g: cache.read(g) for g in ("frames", "frame_vad", "mean", "vad")}, cache.attrs


@pytest.mark.slow
def test_compiled_runtimes_give_the_eager_frames(clips, tiny_model_dir, tmp_path, caplog):
    caplog.set_level("INFO")
    extract(clips, tiny_model_dir, tmp_path / "torch.h5")
    eager, eager_attrs = groups(tmp_path / "torch.h5")
    assert "runtime" not in eager_attrs  # an eager fp32 cache is written as it always was
    for runtime in ("onnxruntime", "openvino"):
        out = tmp_path / f"{runtime}.h5"
        extract(clips, tiny_model_dir, out, "--runtime", runtime)
        compiled, attrs = groups(out)
        assert attrs["runtime"] == runtime and attrs["precision"] == "fp32"
        for name, values in eager.items():  # frames stored as float16: one ulp is 2^-10 relative
            np.testing.assert_allclose(
                compiled[name].astype(np.float32),
                values.astype(np.float32),
                atol=1e-3,
                rtol=2**-10,
                err_msg=name,
            )
    exported = [m for m in caplog.messages if m.startswith("exporting")]
    assert len(exported) == 1  # one export per backbone, reused by the second engine


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_the_compiled_encoder_is_within_1e_3_of_eager_fp32(tiny_model_dir, runtime):
    """Before any float16 storage: the frames and the frame VAD of clips of several lengths."""
    import torch

    from emi_features.audio.backbones import load_backbone
    from emi_features.audio.compiled import compiled_backbone

    eager = load_backbone(str(tiny_model_dir))
    compiled = compiled_backbone(eager, runtime, "fp32")
    for samples in (400, 16_000, 41_234):
        values = torch.randn(1, samples, generator=torch.Generator().manual_seed(samples))
        with torch.inference_mode():
            want, got = eager.encode(values, None), compiled.encode(values, None)
        assert got.frames.shape == want.frames.shape
        assert (got.frames - want.frames).abs().max() < 1e-3
        assert (got.frame_vad - want.frame_vad).abs().max() < 1e-3


def test_int8_is_recorded_and_never_mixed_with_fp32(clips, tiny_model_dir, tmp_path):
    fp32 = tmp_path / "fp32.h5"
    extract(clips, tiny_model_dir, fp32, "--runtime", "onnxruntime")
    reference, _ = groups(fp32)
    for runtime in ("onnxruntime", "torch"):
        out = tmp_path / f"int8-{runtime}.h5"
        extract(clips, tiny_model_dir, out, "--runtime", runtime, "--precision", "int8")
        quantised, attrs = groups(out)
        assert attrs["precision"] == "int8" and attrs["runtime"] == runtime
        drift = (
            np.abs(quantised["mean"] - reference["mean"]).max() / np.abs(reference["mean"]).max()
        )
        assert 0 < drift < 0.5, drift  # not exact, not unrelated
    mixed = extract(
        clips, tiny_model_dir, fp32, "--runtime", "onnxruntime", "--precision", "int8", ok=False
    )
    assert mixed.exit_code == 1 and "precision" in mixed.output and "--overwrite" in mixed.output


def test_bad_combinations_and_a_missing_engine_are_one_line(
    clips, tiny_model_dir, tmp_path, monkeypatch
):
    out = tmp_path / "c.h5"
    cases = [
        (["--runtime", "openvino", "--precision", "int8"], "needs NNCF"),
        (["--runtime", "onnxruntime", "--batch-seconds", "10"], "one clip per call"),
        (["--runtime", "onnxruntime", "--dtype", "bfloat16"], "computes in float32"),
    ]
    for extra, message in cases:
        result = extract(clips, tiny_model_dir, out, *extra, ok=False)
        assert result.exit_code == 1 and message in result.output, result.output
    fbank = extract(clips, "fbank", out, "--runtime", "onnxruntime", ok=False)
    assert fbank.exit_code == 1 and "Hugging Face encoders" in fbank.output
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as without the extra
    missing = extract(clips, tiny_model_dir, out, "--runtime", "onnxruntime", ok=False)
    assert missing.exit_code == 1 and "pip install 'emi[onnxruntime]'" in missing.output
    assert "Traceback" not in missing.output
