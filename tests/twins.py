"""Twins of the real models EMI names: each model's published configuration files
(`tests/fixtures/models/OWNER--NAME/`, with the source each was taken from in `SOURCE.md`),
with only their sizes shrunk, a model built from that config and saved with `save_pretrained`,
laid into an offline Hugging Face cache under the real repository id — so that the commands
load them by the name a user types, with `HF_HUB_OFFLINE=1`, through the same code that loads
the real models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "models"
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the twin's snapshot in the cache

# The sizes a twin shrinks (every other key of the published config is kept as published).
WAV2VEC2_SIZES = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "conv_dim": [32] * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "output_hidden_size": 32,
    "classifier_proj_size": 16,
    "codevector_dim": 16,
    "proj_codevector_dim": 16,
    "tdnn_dim": [16] * 5,
    "xvector_output_dim": 16,
}


def published(repo_id: str) -> Path:
    """The folder of a model's published configuration files."""
    return FIXTURES / repo_id.replace("/", "--")


def shrunk(config: dict, sizes: dict) -> dict:
    """The published config with only `sizes` changed (each must be a key it has)."""
    missing = sorted(set(sizes) - set(config))
    assert not missing, f"not keys of the published config: {missing}"
    return {**config, **sizes}


def wav2vec2_vad_twin(repo_id: str, folder: Path) -> Path:
    """The VAD wav2vec2's twin in `folder`: EMI's loader class built from the shrunk published
    config and saved, then the published files over what `save_pretrained` wrote, shrunk."""
    import torch
    from transformers import Wav2Vec2Config

    from emi_features.audio.backbones import VadWav2Vec2

    source = published(repo_id)
    config = shrunk(json.loads((source / "config.json").read_text()), WAV2VEC2_SIZES)
    torch.manual_seed(0)
    VadWav2Vec2(Wav2Vec2Config.from_dict(config)).save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copy(source / "preprocessor_config.json", folder / "preprocessor_config.json")
    return folder


def lay_into_hub_cache(hf_home: Path, repo_id: str, folder: Path) -> Path:
    """`folder` as the cached snapshot of `repo_id` under `hf_home` (the layout
    huggingface_hub reads offline: models--OWNER--NAME/{refs/main, snapshots/COMMIT/})."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot
