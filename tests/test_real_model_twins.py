"""The real models by name, offline, from twins of their published configurations
(`twins.py`): the commands the README shows load them as a user types them, with
`HF_HUB_OFFLINE=1` and the twin in the Hugging Face cache under the real repository id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from twins import lay_into_hub_cache, published, wav2vec2_vad_twin

from emi_features.cache.reader import open_cache
from emi_features.core.models import VAD_MODEL_ID


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory) -> Path:
    """An offline Hugging Face home holding the twins under their real ids."""
    home = tmp_path_factory.mktemp("hf-home")
    twin = wav2vec2_vad_twin(VAD_MODEL_ID, tmp_path_factory.mktemp("vad-twin"))
    lay_into_hub_cache(home, VAD_MODEL_ID, twin)
    return home


def offline_env(hub_home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HOME": str(hub_home),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def test_the_twin_keeps_the_published_configuration():
    """Only sizes differ: the published architecture name, the stable layer norm, the layer
    feature extractor, vocab_size null and the feature extractor's normalisation are kept."""
    config = json.loads((published(VAD_MODEL_ID) / "config.json").read_text())
    assert config["architectures"] == ["Wav2Vec2ForSpeechClassification"]
    assert config["vocab_size"] is None and config["do_stable_layer_norm"] is True
    assert config["hidden_size"] == 1024 and config["num_hidden_layers"] == 12
    extractor = json.loads((published(VAD_MODEL_ID) / "preprocessor_config.json").read_text())
    assert extractor["do_normalize"] is True and extractor["return_attention_mask"] is True


LOAD_BY_NAME = """
import sys
import numpy as np, torch
from transformers import Wav2Vec2FeatureExtractor
from emi_features.audio.backbones import VadWav2Vec2, load_backbone
from emi_features.core.models import VAD_MODEL_ID
backbone = load_backbone(VAD_MODEL_ID)
assert backbone.has_vad and backbone.hidden_size == 32, (backbone.has_vad, backbone.hidden_size)
wave = np.random.default_rng(0).normal(scale=0.1, size=16_000).astype(np.float32)
values = backbone.feature_extractor(wave, sampling_rate=16_000, return_tensors="pt")
with torch.no_grad():
    frames = backbone.encode(values["input_values"], torch.ones(1, 16_000, dtype=torch.long))
frames = frames.frames[0].numpy()
snapshot = sys.argv[1]
network = VadWav2Vec2.from_pretrained(snapshot).eval()
values = Wav2Vec2FeatureExtractor.from_pretrained(snapshot)(wave, sampling_rate=16_000)
with torch.no_grad():
    hidden = network.wav2vec2(torch.tensor(np.asarray(values["input_values"]))).last_hidden_state
np.testing.assert_allclose(frames, hidden[0].numpy(), atol=1e-4)
print("ok")
"""


@pytest.mark.slow
def test_the_default_backbone_loads_by_name_offline(hub_home):
    """`load_backbone(VAD_MODEL_ID)` with the hub offline finds the twin in the cache, reads it
    as the VAD model (by its published architecture name), and its frames equal the twin's own
    network run by hand on the published feature extractor's output."""
    snapshot = next((hub_home / "hub").glob("models--audeering--*/snapshots/*"))
    done = subprocess.run(
        [sys.executable, "-c", LOAD_BY_NAME, str(snapshot)],
        env=offline_env(hub_home),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


@pytest.mark.slow
def test_emi_extract_with_the_default_model_runs_offline(hub_home, sample_root, tmp_path):
    """`emi extract DATA --out cache.h5`, as the README shows it (no --model), offline."""
    cache = tmp_path / "vad.h5"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emi_features",
            str(sample_root),
            "--out",
            str(cache),
            "--quiet",
            "--workers",
            "0",
        ],
        env=offline_env(hub_home),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with open_cache(cache) as opened:
        assert opened.attrs["backbone"] == VAD_MODEL_ID
        assert opened.read("mean").shape[1] == 32 and opened.read("vad").shape[1] == 3
        assert np.isfinite(opened.read("vad")).all()
