"""emi-extract end to end on a tiny model saved to disk: values, batching, windows, skips."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import soundfile
import torch
from click.testing import CliRunner
from conftest import write_wav
from transformers import Wav2Vec2FeatureExtractor

from emi_features.audio.backbones import VadWav2Vec2, load_backbone
from emi_features.cache.reader import CacheError, open_cache
from emi_features.cli.extract import main as extract_command
from emi_features.extraction.encoding import encode_clips, encode_long_clip
from emi_features.extraction.frames import frame_count


def run_extract(*args: str, ok: bool = True):
    result = CliRunner().invoke(extract_command, [*map(str, args), "--quiet", "--workers", "0"])
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def wav_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wavs")
    for k, seconds in enumerate([0.02, 0.7, 1.3, 2.0, 3.1]):
        write_wav(folder / f"clip{k}.wav", seconds, seed=k)
    return folder


def reference_outputs(model_dir, path):
    """The model card's way: feature extractor, then one clip at a time, fp32, no batching."""
    extractor = Wav2Vec2FeatureExtractor.from_pretrained(model_dir)
    model = VadWav2Vec2.from_pretrained(model_dir).eval()
    signal, rate = soundfile.read(path, dtype="float32")
    values = extractor(signal, sampling_rate=rate, return_tensors="pt")["input_values"]
    if values.shape[1] < 400:
        values = torch.nn.functional.pad(values, (0, 400 - values.shape[1]))
    with torch.inference_mode():
        hidden = model.wav2vec2(values).last_hidden_state[0]
        pooled, vad = model(values)
        frame_vad = model.classifier(hidden)
    return hidden.numpy(), frame_vad.numpy(), pooled[0].numpy(), vad[0].numpy(), signal.size


def test_stored_values_equal_a_plain_forward_pass(tiny_model_dir, wav_folder, tmp_path):
    out = tmp_path / "cache.h5"
    run_extract(wav_folder, "--model", tiny_model_dir, "--out", out, "--batch-seconds", "8")
    with open_cache(out) as cache:
        assert cache.ids == [f"clip{k}" for k in range(5)]
        assert cache.complete and cache.attrs["vad_labels"] == "arousal,dominance,valence"
        assert cache.read("frames").dtype == np.float16
        for clip_id in cache.ids:
            frames, frame_vad, mean, vad, n = reference_outputs(
                tiny_model_dir, wav_folder / f"{clip_id}.wav"
            )
            stored = cache.clip("frames", clip_id)
            assert stored.shape == (frame_count(n), 64) == frames.shape
            np.testing.assert_allclose(stored, frames, atol=2e-3, rtol=2e-3)
            np.testing.assert_allclose(cache.clip("frame_vad", clip_id), frame_vad, atol=1e-4)
            np.testing.assert_allclose(cache.clip("mean", clip_id), mean, atol=1e-5)
            np.testing.assert_allclose(cache.clip("vad", clip_id), vad, atol=1e-5)
            assert cache.clip("num_samples", clip_id) == n


def test_batched_equals_one_at_a_time(tiny_model_dir):
    backbone = load_backbone(str(tiny_model_dir))
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) for n in (400, 5_000, 16_000, 31_234)]
    options = {"device": torch.device("cpu"), "dtype": torch.float32}
    batched = encode_clips(backbone, waves, **options)
    for wave, (frames, frame_vad) in zip(waves, batched, strict=True):
        ((alone, alone_vad),) = encode_clips(backbone, [wave], **options)
        assert frames.shape == alone.shape == (frame_count(wave.size), 64)
        np.testing.assert_allclose(frames, alone, atol=1e-4)
        np.testing.assert_allclose(frame_vad, alone_vad, atol=1e-4)


def test_long_clips_run_in_windows_on_the_whole_clip_grid(tiny_model_dir):
    backbone = load_backbone(str(tiny_model_dir))
    options = {"device": torch.device("cpu"), "dtype": torch.float32, "batch_seconds": 4.0}
    wave = np.random.default_rng(1).standard_normal(16_000 * 7 + 123).astype(np.float32)
    frames, frame_vad = encode_long_clip(
        backbone, wave, window_seconds=2.0, overlap_seconds=0.5, **options
    )
    assert frames.shape == (frame_count(wave.size), 64) and frame_vad.shape == (frames.shape[0], 3)
    ((whole, _),) = encode_clips(backbone, [wave], device=options["device"], dtype=torch.float32)
    # windows see less context, but the grid is the same: frames correlate with the whole run
    corr = np.corrcoef(frames.numpy().ravel(), whole.numpy().ravel())[0, 1]
    assert corr > 0.9
    short = wave[: 16_000 * 2 - 10]  # just under the window: exactly the whole-clip run
    windowed, _ = encode_long_clip(
        backbone, short, window_seconds=2.0, overlap_seconds=0.5, **options
    )
    ((alone, _),) = encode_clips(backbone, [short], device=options["device"], dtype=torch.float32)
    np.testing.assert_allclose(windowed, alone, atol=1e-5)


@pytest.mark.slow
def test_challenge_layout_video_by_default_audio_on_request(tiny_model_dir, sample_root, tmp_path):
    run_extract(
        sample_root,
        "--model",
        tiny_model_dir,
        "--out",
        tmp_path / "v.h5",
        "--split",
        "valid",
        "--window-seconds",
        "10",
    )
    run_extract(
        sample_root,
        "--model",
        tiny_model_dir,
        "--out",
        tmp_path / "a.h5",
        "--split",
        "valid",
        "--source",
        "audio",
        "--window-seconds",
        "10",
    )
    with open_cache(tmp_path / "v.h5") as video, open_cache(tmp_path / "a.h5") as audio:
        assert video.ids == audio.ids == ["00008", "00009", "00010", "00011", "00012"]
        assert video.attrs["source"] == "auto" and audio.attrs["source"] == "audio"
        lengths = video.read("num_samples")
        assert lengths.max() > 39 * 16_000  # the 40 s clip, windowed at 10 s
        for clip in range(len(video)):
            assert len(video.clip("frames", clip)) == frame_count(lengths[clip])
        # the same sound through two codecs: close, not equal
        corr = np.corrcoef(video.read("mean").ravel(), audio.read("mean").ravel())[0, 1]
        assert corr > 0.9


def test_bad_inputs_are_skipped_with_reasons_and_the_run_goes_on(tiny_model_dir, tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    write_wav(folder / "good.wav", 1.0)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "junk.mp3").write_bytes(b"junk" * 100)
    soundfile.write(folder / "nan.wav", np.full(800, np.nan, np.float32), 16_000, subtype="FLOAT")
    result = run_extract(folder, "--model", tiny_model_dir, "--out", tmp_path / "c.h5")
    assert "skip empty: empty file empty.wav" in caplog.messages
    assert "1 clips in the cache, 3 skipped" in result.output
    with open_cache(tmp_path / "c.h5") as cache:
        assert cache.ids == ["good"]
        assert set(cache.skipped) == {"empty", "junk", "nan"}
        assert "non-finite" in cache.skipped["nan"] and "cannot decode" in cache.skipped["junk"]
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "empty.wav").write_bytes(b"")
    result = run_extract(only_bad, "--model", tiny_model_dir, "--out", tmp_path / "d.h5", ok=False)
    assert result.exit_code == 1 and "no clip could be processed" in result.output
    assert "Traceback" not in result.output


def test_missing_split_ids_are_recorded(tiny_model_dir, sample_root, tmp_path):
    root = tmp_path / "root"
    (root / "raw").mkdir(parents=True)
    (root / "train_split.csv").write_text("Filename\n7\n8\n")
    write_wav(root / "raw" / "00007.wav", 0.5)  # a wav is no video: nothing for id 7
    result = run_extract(
        root, "--model", tiny_model_dir, "--out", tmp_path / "c.h5", "--split", "train", ok=False
    )
    assert result.exit_code == 1
    with open_cache(tmp_path / "c.h5") as cache:
        assert cache.skipped == {
            "00007": "no media file for this id",
            "00008": "no media file for this id",
        }


def test_other_settings_on_an_existing_cache_are_refused(tiny_model_dir, wav_folder, tmp_path):
    out = tmp_path / "c.h5"
    run_extract(wav_folder, "--model", tiny_model_dir, "--out", out)
    result = run_extract(wav_folder, "--model", "fbank", "--out", out, ok=False)
    assert result.exit_code == 1
    assert "written with other settings" in result.output and "--overwrite" in result.output
    assert "backbone_fingerprint" in result.output
    result = run_extract(
        wav_folder, "--model", tiny_model_dir, "--out", out, "--layer", "1", ok=False
    )
    assert "layer" in result.output
    run_extract(wav_folder, "--model", "fbank", "--out", out, "--overwrite")
    with open_cache(out) as cache:
        assert cache.hidden_size == 80 and "frame_vad" not in cache and "vad" not in cache


def test_rerun_resumes_and_a_finished_cache_is_extended(tiny_model_dir, sample_root, tmp_path):
    out = tmp_path / "c.h5"
    run_extract(sample_root, "--model", tiny_model_dir, "--out", out, "--split", "train")
    again = run_extract(sample_root, "--model", tiny_model_dir, "--out", out, "--split", "train")
    assert "this run 0 clips" in again.output
    run_extract(sample_root, "--model", tiny_model_dir, "--out", out, "--split", "test")
    with open_cache(out) as cache:
        assert cache.ids == [f"{i:05d}" for i in range(8)] + ["00013", "00014", "00015"]
        assert cache.complete
    assert not (tmp_path / "c.h5.parts").exists()


def test_reader_refuses_an_unknown_format_version(tiny_model_dir, wav_folder, tmp_path):
    out = tmp_path / "c.h5"
    run_extract(wav_folder, "--model", "fbank", "--out", out)
    with h5py.File(out, "a") as handle:
        handle.attrs["format_version"] = 2
    with pytest.raises(CacheError, match="format_version 2 is not supported"):
        open_cache(out)


def test_unknown_model_gets_one_line_saying_what_to_do(wav_folder, tmp_path):
    result = run_extract(
        wav_folder,
        "--model",
        "no-such-org/no-such-model",
        "--offline",
        "--out",
        tmp_path / "c.h5",
        ok=False,
    )
    assert result.exit_code == 1
    expected = "cannot load audio model 'no-such-org/no-such-model': not a built-in audio model"
    assert f"{expected} (fbank" in result.output
    assert "hf download" in result.output and "Traceback" not in result.output


@pytest.mark.hub
def test_real_vad_model_reference_values():
    """Opt-in (pytest -m hub): the model card's values for one second of zeros."""
    backbone = load_backbone("audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim")
    wave = backbone.feature_extractor(
        np.zeros(16_000, np.float32), sampling_rate=16_000, return_tensors="np"
    )["input_values"][0]
    ((frames, _),) = encode_clips(backbone, [wave], device=torch.device("cpu"), dtype=torch.float32)
    with torch.inference_mode():
        vad = backbone.vad(frames.mean(dim=0)).numpy()
    np.testing.assert_allclose(vad, [0.5460754, 0.6062266, 0.40431657], atol=1e-4)


def test_a_split_cache_extended_with_the_whole_dataset_computes_each_clip_once(
    sample_root, tmp_path
):
    """Parts planned over all clips mix finished and new ones: only the new are computed."""
    out = tmp_path / "c.h5"
    run_extract(sample_root, "--model", "fbank", "--out", out, "--split", "valid")
    result = run_extract(sample_root, "--model", "fbank", "--out", out)
    assert "16 clips in the cache" in result.output and "this run 11 clips" in result.output
    with open_cache(out) as cache:
        assert cache.ids == [f"{i:05d}" for i in range(16)] and cache.complete
