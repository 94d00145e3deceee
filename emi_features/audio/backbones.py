"""Backbones that turn normalised 16 kHz audio into frames on the 20 ms grid.

- audeering's VAD-finetuned wav2vec2 (`VadWav2Vec2`, the model card's layout: `wav2vec2.*`,
  `classifier.dense`, `classifier.out_proj`), which also yields arousal/dominance/valence;
- any Hugging Face wav2vec2, HuBERT or WavLM checkpoint, at a chosen hidden layer;
- `fbank` (20 ms hop) and `fbank-10ms`: weight-free log-mel filterbank frames;
- `tiny-random-untrained`: the VAD architecture shrunk to ~250 k random parameters, for tests
  and for trying the commands offline. Its features mean nothing.

Each backbone declares its frame grid (`grid`), its preprocessing (`feature_extractor`) and
what it writes (`has_vad`). Built-in names live in one registry, `BACKBONES`: a new built-in is
a module with a class and a factory under `@register_backbone` (as `fbank.py`), named in
`BUILT_IN_MODULES`.
"""

from __future__ import annotations

import abc
import hashlib
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
    Wav2Vec2PreTrainedModel,
)

from emi_features.cache.schema import SAMPLE_RATE, VAD_DIM
from emi_features.core.hub import load_error, pretrained_options
from emi_features.core.models import VAD_MODEL_ID
from emi_features.extraction.frames import WAV2VEC2_GRID, FrameGrid

log = logging.getLogger(__name__)

__all__ = ["VAD_MODEL_ID", "BACKBONES", "Backbone", "load_backbone", "register_backbone"]
TINY_NAME = "tiny-random-untrained"
VAD_ARCHITECTURES = {"Wav2Vec2ForSpeechClassification", "EmotionModel", "VadWav2Vec2"}
ENCODER_TYPES = {"wav2vec2", "hubert", "wavlm", "data2vec-audio"}


class BackboneError(ValueError):
    """A backbone that cannot be loaded; the message is one line saying what to do."""


class RegressionHead(nn.Module):
    """The model card's head: dropout, dense (D->D), tanh, dropout, out_proj (D->3)."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(config.final_dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(features)))
        return self.out_proj(self.dropout(x))


class VadWav2Vec2(Wav2Vec2PreTrainedModel):
    """audeering's EmotionModel: a Wav2Vec2Model plus the VAD regression head.

    `forward(input_values (B, N), attention_mask)` -> (pooled (B, D), vad (B, 3)) as on the
    model card: the head on the plain mean over time of the last hidden state.
    """

    def __init__(self, config: Wav2Vec2Config):
        super().__init__(config)
        self.wav2vec2 = Wav2Vec2Model(config)
        self.classifier = RegressionHead(config)
        self.post_init()  # the card's init_weights() fails on transformers 5

    def forward(self, input_values, attention_mask=None):  # noqa: D102 - the card's forward
        hidden = self.wav2vec2(input_values, attention_mask=attention_mask).last_hidden_state
        pooled = hidden.mean(dim=1)
        return pooled, self.classifier(pooled)


def tiny_config() -> Wav2Vec2Config:
    """The VAD model's architecture (same conv stack, so the same frame grid), shrunk."""
    return Wav2Vec2Config(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=256,
        conv_dim=(64,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_labels=VAD_DIM,
        architectures=["Wav2Vec2ForSpeechClassification"],
    )


def default_feature_extractor() -> Wav2Vec2FeatureExtractor:
    """16 kHz, per-clip zero mean and unit variance, zero padding, attention mask on."""
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    )


def state_fingerprint(module: nn.Module, *extra: object) -> str:
    """A digest of every parameter and buffer (names and fp32 values) and `extra` settings."""
    digest = hashlib.blake2b(digest_size=16)
    for item in extra:
        digest.update(repr(item).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensor.detach().float().cpu().numpy()).data)
    return "blake2b:" + digest.hexdigest()


@dataclass
class Encoded:
    """A batch through a backbone: frames (B, T, D) and, for the VAD model, frame_vad (B, T, 3),
    T on the backbone's grid."""

    frames: torch.Tensor
    frame_vad: torch.Tensor | None


class Backbone(nn.Module, abc.ABC):
    """The interface the extractor uses. Inputs are normalised, zero-padded audio (B, N) float32
    at 16 kHz with an attention mask (B, N); outputs lie on the backbone's `grid`."""

    name: str
    fingerprint: str
    hidden_size: int
    grid: FrameGrid = WAV2VEC2_GRID
    has_vad: bool = False
    uses_attention_mask: bool = True
    feature_extractor: Wav2Vec2FeatureExtractor

    @abc.abstractmethod
    def encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> Encoded:
        """Frames for a padded batch; rows past a clip's own frame count are padding."""

    def vad(self, vectors: torch.Tensor) -> torch.Tensor:
        """The VAD head on (..., D) vectors -> (..., VAD_DIM); only where `has_vad`."""
        raise BackboneError(f"{self.name} has no VAD head")


def conv_grid(config) -> FrameGrid:
    """The frame grid of a wav2vec2-style convolutional feature encoder: the hop is the product
    of the strides, the receptive field grows by (kernel - 1) x the hop so far at each layer."""
    hop, field = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (kernel - 1) * hop
        hop *= stride
    return FrameGrid(hop=hop, receptive_field=field)


class HFBackbone(Backbone):
    """A Hugging Face speech encoder; with `head`, audeering's VAD model."""

    def __init__(
        self,
        name: str,
        encoder: nn.Module,
        head: RegressionHead | None,
        layer: int | None,
        feature_extractor: Wav2Vec2FeatureExtractor,
    ):
        super().__init__()
        self.name = name
        self.encoder = encoder
        self.head = head
        num_layers = encoder.config.num_hidden_layers
        if layer is not None and not -num_layers - 1 <= layer <= num_layers:
            raise BackboneError(f"--layer {layer}: {name} has hidden states 0..{num_layers}")
        # None: last_hidden_state (after the final layer norm of stable-layer-norm models);
        # k: hidden_states[k] as transformers returns them (0 = the CNN features projected).
        self.layer = None if layer is None else layer % (num_layers + 1)
        self.has_vad = head is not None and self.layer is None
        if head is not None and self.layer is not None:
            log.warning("the VAD head reads the last layer: no VAD groups with --layer %s", layer)
        self.hidden_size = encoder.config.hidden_size
        self.grid = conv_grid(encoder.config)
        self.feature_extractor = feature_extractor
        self.uses_attention_mask = bool(feature_extractor.return_attention_mask)
        self.fingerprint = state_fingerprint(self, type(encoder).__name__, self.layer)

    def encode(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> Encoded:
        output = self.encoder(
            input_values,
            attention_mask=attention_mask if self.uses_attention_mask else None,
            output_hidden_states=self.layer is not None,
        )
        frames = (
            output.last_hidden_state if self.layer is None else output.hidden_states[self.layer]
        )
        return Encoded(frames, self.head(frames) if self.has_vad else None)

    def vad(self, vectors: torch.Tensor) -> torch.Tensor:
        if not self.has_vad:
            return super().vad(vectors)
        return self.head(vectors.to(next(self.head.parameters()).dtype))


@dataclass(frozen=True)
class BuiltIn:
    """A backbone known by name: how to make it, and one line for `--list-models`."""

    factory: Callable[[], Backbone]
    description: str


BACKBONES: dict[str, BuiltIn] = {}


def register_backbone(name: str, description: str):
    """Decorator: make `factory()` available as `--model NAME`."""

    def register(factory: Callable[[], Backbone]) -> Callable[[], Backbone]:
        BACKBONES[name] = BuiltIn(factory, description)
        return factory

    return register


# Built-ins in modules of their own register themselves when imported: a new one is its module
# and its line here.
BUILT_IN_MODULES = ("emi_features.audio.fbank",)
for _module in BUILT_IN_MODULES:
    importlib.import_module(_module)


@register_backbone(TINY_NAME, "the VAD architecture with 190 k random weights: tests only")
def _load_tiny() -> HFBackbone:
    torch.manual_seed(0)
    model = VadWav2Vec2(tiny_config()).eval()
    return HFBackbone(
        TINY_NAME, model.wav2vec2, model.classifier, None, default_feature_extractor()
    )


def load_backbone(model: str, *, layer: int | None = None, offline: bool = False) -> Backbone:
    """A backbone by built-in name, local Hugging Face folder or hub id, in eval mode, fp32, CPU.

    `layer` picks a hidden state (0 = the CNN features after projection, default the last).
    """
    if model in BACKBONES:
        return BACKBONES[model].factory().eval()
    import transformers

    transformers.utils.logging.disable_progress_bar()
    options = pretrained_options(model, offline)
    try:
        config = AutoConfig.from_pretrained(model, **options)
    except (OSError, ValueError) as error:
        raise load_error(model, "audio", offline, error, list(BACKBONES)) from error
    if config.model_type not in ENCODER_TYPES:
        raise BackboneError(
            f"{model}: model type {config.model_type!r} is not a speech encoder emi supports "
            f"({', '.join(sorted(ENCODER_TYPES))})"
        )
    try:
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(model, **options)
    except (OSError, ValueError):
        log.warning("%s has no preprocessor_config.json: using per-clip normalisation", model)
        extractor = default_feature_extractor()
    try:
        if VAD_ARCHITECTURES.intersection(config.architectures or []):
            vad_model = VadWav2Vec2.from_pretrained(model, **options)
            encoder, head = vad_model.wav2vec2, vad_model.classifier
        else:
            encoder, head = AutoModel.from_pretrained(model, **options), None
    except (OSError, ValueError) as error:
        raise load_error(model, "audio", offline, error, list(BACKBONES)) from error
    return HFBackbone(model, encoder, head, layer, extractor).eval()
