"""Other backbones: Hugging Face wav2vec2 / HuBERT / WavLM at a chosen layer, and fbank."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import write_wav
from transformers import (
    HubertConfig,
    HubertModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)
from transformers.audio_utils import hertz_to_mel

from emi_features.audio.backbones import default_feature_extractor, load_backbone
from emi_features.cache.reader import open_cache
from emi_features.cli.extract import main as extract_command
from emi_features.extraction.frames import frame_count

SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (32,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}


@pytest.fixture(scope="module", params=["wav2vec2", "hubert", "wavlm"])
def encoder_dir(request, tmp_path_factory):
    config_class, model_class = {
        "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
        "hubert": (HubertConfig, HubertModel),
        "wavlm": (WavLMConfig, WavLMModel),
    }[request.param]
    directory = tmp_path_factory.mktemp(request.param)
    torch.manual_seed(0)
    model = model_class(config_class(**SMALL, feat_extract_norm="layer", do_stable_layer_norm=True))
    model.save_pretrained(directory)
    default_feature_extractor().save_pretrained(directory)
    return directory


def test_hf_encoders_store_the_chosen_layer_without_vad(encoder_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_wav(folder / "a.wav", 1.2)
    for layer, name in ((None, "last.h5"), (1, "one.h5")):
        args = [
            str(folder),
            "--model",
            str(encoder_dir),
            "--out",
            str(tmp_path / name),
            "--quiet",
            "--workers",
            "0",
        ] + ([] if layer is None else ["--layer", str(layer)])
        result = CliRunner().invoke(extract_command, args)
        assert result.exit_code == 0, result.output
    backbone = load_backbone(str(encoder_dir), layer=1)
    wave = backbone.feature_extractor(
        np.asarray(__import__("soundfile").read(folder / "a.wav", dtype="float32")[0]),
        sampling_rate=16_000,
        return_tensors="pt",
    )["input_values"]
    with torch.inference_mode():
        output = backbone.encoder(wave, output_hidden_states=True)
    with open_cache(tmp_path / "last.h5") as last, open_cache(tmp_path / "one.h5") as one:
        assert "frame_vad" not in last and "vad" not in last and "vad_labels" not in last.attrs
        assert last.attrs["layer"] == "last" and one.attrs["layer"] == "1"
        assert last.fingerprint != one.fingerprint
        np.testing.assert_allclose(
            one.clip("frames", "a"), output.hidden_states[1][0], atol=2e-3, rtol=2e-3
        )
        np.testing.assert_allclose(
            last.clip("frames", "a"), output.last_hidden_state[0], atol=2e-3, rtol=2e-3
        )


def test_layer_out_of_range_is_one_line(encoder_dir, tmp_path):
    write_wav(tmp_path / "a.wav", 0.5)
    result = CliRunner().invoke(
        extract_command,
        [
            str(tmp_path / "a.wav"),
            "--model",
            str(encoder_dir),
            "--out",
            str(tmp_path / "c.h5"),
            "--layer",
            "9",
            "--quiet",
        ],
    )
    assert result.exit_code == 1 and "has hidden states 0..3" in result.output


def test_fbank_is_log_mel_on_the_same_grid(tmp_path):
    backbone = load_backbone("fbank")
    rng = np.random.default_rng(0)
    t = np.arange(16_000) / 16_000
    tone = torch.from_numpy(np.sin(2 * np.pi * 1000 * t).astype(np.float32))[None]
    noise = torch.from_numpy(rng.standard_normal((1, 16_000)).astype(np.float32))
    with torch.inference_mode():
        tone_frames = backbone.encode(tone, torch.ones_like(tone)).frames[0]
        noise_frames = backbone.encode(noise, torch.ones_like(noise)).frames[0]
    assert tone_frames.shape == (frame_count(16_000), 80)
    band = int(tone_frames.mean(dim=0).argmax())
    low, high, tone_mel = hertz_to_mel(np.array([20.0, 8000.0, 1000.0]), mel_scale="slaney")
    assert abs(band - 81 * (tone_mel - low) / (high - low) + 1) <= 1.5  # 1 kHz's mel band
    # white noise spreads its energy: a flatter spectrum than the tone
    assert noise_frames.mean(dim=0).std() < tone_frames.mean(dim=0).std()
