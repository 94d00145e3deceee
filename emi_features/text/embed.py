"""`emi embed-text CACHE.h5 [--model ENCODER] [--name text] [--tokens]`: the cache's transcripts
embedded by a Hugging Face text encoder into `/features/NAME`.

A sentence-transformers model (a folder, or a hub id: its files on the hub or in the local
Hugging Face cache) is pooled as it says (`1_Pooling/config.json`: CLS or mean, and
L2-normalised when it has a Normalize module); any other encoder by the mean of its last hidden
state over the attention mask. A clip with no transcript, or an empty one (silence,
non-speech), is recorded as missing from the stream, never embedded from an empty string. With
`tokens`, the per-token states also become the frame stream `NAME-tokens` (unit "token": one
row per token, never cropped by seconds). `TextSettings` (`text.settings`) choose the pooling
(the first token's state, as the 8th ABAW EMI winner read its text encoder), whether the token
stream keeps the special tokens, and a text that stands in for an empty transcript (CASIA's
"[EMPTY]").
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from emi_features.audio.backbones import state_fingerprint
from emi_features.cache.attach import attach_streams, ready_to_rewrite, refuse_existing
from emi_features.cache.reader import CacheError, open_cache
from emi_features.cache.streams import check_stream_name, clip_stream, frame_stream
from emi_features.core.hub import (
    TINY_RANDOM,
    is_offline,
    load_error,
    pretrained_options,
    resolve_model,
)
from emi_features.core.models import TEXT_MODEL_ID
from emi_features.text.settings import TextSettings

log = logging.getLogger(__name__)
MAX_TOKENS = 512


def sentence_pooling(model: str, offline: bool = False) -> tuple[str, bool]:
    """("cls" or "mean", normalise?) as a sentence-transformers model says (`modules.json`,
    `1_Pooling/config.json`), in a local folder or on the hub (its cached copy when offline);
    ("mean", False) for a plain encoder."""
    modules_text = _model_file(model, "modules.json", offline)
    if modules_text is None:
        return "mean", False
    modules = json.loads(modules_text)
    normalise = any(m.get("type", "").endswith("Normalize") for m in modules)
    pooling = next((m for m in modules if m.get("type", "").endswith("Pooling")), None)
    mode = "mean"
    if pooling is not None:
        config_text = _model_file(model, f"{pooling['path']}/config.json", offline) or "{}"
        mode = "cls" if json.loads(config_text).get("pooling_mode_cls_token") else "mean"
    return mode, normalise


def _model_file(model: str, name: str, offline: bool) -> str | None:
    """The text of the file `name` of a model folder or hub repository (None: it has none)."""
    if Path(model).is_dir():
        path = Path(model) / name
        return path.read_text() if path.is_file() else None
    from transformers.utils import cached_file

    try:
        found = cached_file(
            model,
            name,
            local_files_only=is_offline(offline),
            _raise_exceptions_for_missing_entries=False,
        )
    except (OSError, ValueError):
        return None
    return Path(found).read_text() if found else None


# Encoders whose position ids start after the padding index (RoBERTa's scheme): they hold
# max_position_embeddings - pad_token_id - 1 tokens.
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text"}


def token_limit(tokenizer_limit: int, config) -> int:
    """The most tokens a text may keep: MAX_TOKENS, the tokenizer's own limit and the encoder's
    positions, whichever is least (a text past it is truncated, never a crash)."""
    limits = [MAX_TOKENS]
    if 0 < tokenizer_limit < 1_000_000:  # tokenizers without a limit report a huge number
        limits.append(int(tokenizer_limit))
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        offset = (config.pad_token_id or 0) + 1 if config.model_type in OFFSET_POSITIONS else 0
        limits.append(int(positions) - offset)
    return max(1, min(limits))


# Models whose own code returns (T, B, D) states: ChatGLM (as CASIA's extractor handles it,
# github.com/ReLU-H/Team-CASIA26-ABAW-10th-EMI-track code_all/extract_chatglm3_feats.py,
# `get_hidden`). Not tested here: its weights and code are not on this machine.
SEQUENCE_FIRST = {"chatglm"}


class TextEncoder:
    """Texts -> (N, D) sentence vectors and each text's (T_k, D) token states, float32."""

    def __init__(
        self,
        model: str,
        *,
        device: torch.device,
        offline: bool = False,
        max_tokens: int | None = None,
        settings: TextSettings = TextSettings(),
    ):
        import transformers
        from transformers import AutoModel, AutoTokenizer

        transformers.utils.logging.disable_progress_bar()
        model = resolve_model(model, "text")
        options = pretrained_options(model, offline)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, **options)
            self.network = AutoModel.from_pretrained(model, **options).eval().to(device)
        except (OSError, ValueError) as error:
            raise load_error(model, "text", offline, error, [TINY_RANDOM]) from error
        if settings.pooling != "auto":
            self.pooling, self.normalise = settings.pooling, False
        else:
            self.pooling, self.normalise = sentence_pooling(model, offline)
        self.drop_special = settings.special_tokens == "drop"
        self.device = device
        self.max_tokens = token_limit(self.tokenizer.model_max_length, self.network.config)
        if max_tokens is not None:  # a recipe's own limit (the 8th ABAW winner: 128)
            self.max_tokens = min(self.max_tokens, max_tokens)
        self.hidden_size = int(self.network.config.hidden_size)
        made_as = ("drop-special",) if self.drop_special else ()  # earlier streams: unchanged
        self.fingerprint = state_fingerprint(self.network, self.pooling, self.normalise, *made_as)

    @torch.inference_mode()
    def __call__(self, texts: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
            return_special_tokens_mask=self.drop_special,
        ).to(self.device)
        special = batch.pop("special_tokens_mask", None)
        states = self.network(**batch).last_hidden_state.float()
        if getattr(self.network.config, "model_type", "") in SEQUENCE_FIRST:
            states = states.transpose(0, 1)
        mask = batch["attention_mask"].bool()
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            weights = mask[..., None].float()
            pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        if self.normalise:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        kept = mask
        if special is not None:  # as CASIA's extractor: a text of nothing else keeps them
            plain = mask & ~special.bool()
            kept = torch.where(plain.any(dim=1, keepdim=True), plain, mask)
        tokens = [states[k, kept[k]].cpu().numpy() for k in range(len(texts))]
        return pooled.cpu().numpy(), tokens


def _encode_rows(
    encoder: TextEncoder, texts: list[str], rows: list[int], count: int, batch_size: int
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The texts at `rows` encoded in batches: (count, D) sentence vectors (zero rows for the
    others) and each row's (T_k, D) token states."""
    values = np.zeros((count, encoder.hidden_size), dtype=np.float32)
    token_states: dict[int, np.ndarray] = {}
    for first in range(0, len(rows), batch_size):
        chunk = rows[first : first + batch_size]
        pooled, states = encoder([texts[k] for k in chunk])
        values[chunk] = pooled
        token_states.update(zip(chunk, states, strict=True))
    return values, token_states


def embed_text(
    cache_path: str | Path,
    *,
    model: str = TEXT_MODEL_ID,
    name: str = "text",
    tokens: bool = False,
    batch_size: int = 32,
    device: str | None = None,
    overwrite: bool = False,
    offline: bool = False,
    max_tokens: int | None = None,
    settings: TextSettings = TextSettings(),
) -> dict[str, int]:
    """Embed /text into /features/NAME (and NAME-tokens); a summary of what was written.
    `max_tokens`: truncate each transcript to that many tokens (default: the encoder's limit);
    `settings`: the pooling, the special tokens, the stand-in for an empty transcript."""
    from emi_features.core.devices import default_device, resolve_device

    cache_path = Path(cache_path)
    check_stream_name(name)
    ready_to_rewrite(cache_path)
    with open_cache(cache_path) as cache:
        transcripts = cache.transcripts()
        ids = list(cache.ids)
    if transcripts is None:
        raise CacheError(f"{cache_path} has no transcripts: run `emi transcribe` first")
    refuse_existing(cache_path, [name, f"{name}-tokens"] if tokens else [name], overwrite)
    encoder = TextEncoder(
        model,
        device=resolve_device(device or default_device()),
        offline=offline,
        max_tokens=max_tokens,
        settings=settings,
    )
    texts, rows, empty = _texts_to_embed(transcripts, settings.empty_text, name)
    values, token_states = _encode_rows(encoder, texts, rows, len(ids), batch_size)
    present = np.zeros(len(ids), dtype=bool)
    present[rows] = True
    attrs = {
        "source": f"emi embed-text --model {model}",
        "producer": "embed-text",
        "model": model,
        "fingerprint": encoder.fingerprint,
        "pooling": encoder.pooling,
        "max_tokens": encoder.max_tokens,
        "settings": json.dumps(settings.to_dict()),
        "transcripts": transcripts.attrs.get("source", ""),
    }
    pooled_rows = [values[k] if present[k] else None for k in range(len(ids))]
    streams = {name: clip_stream(pooled_rows, encoder.hidden_size, attrs)}
    if tokens:
        blocks = [token_states.get(k) for k in range(len(ids))]
        streams[f"{name}-tokens"] = frame_stream(
            blocks, encoder.hidden_size, {**attrs, "unit": "token"}
        )
    attach_streams(cache_path, streams, overwrite=overwrite)
    missing = len(ids) - len(rows)
    return {"present": len(rows), "missing": missing, "empty": empty, "dim": encoder.hidden_size}


def _texts_to_embed(transcripts, empty_text: str, name: str) -> tuple[list[str], list[int], int]:
    """The texts, the rows to embed and how many transcripts are empty: a clip with an empty
    transcript is embedded as `empty_text`, or (without one) left missing from the stream."""
    texts = list(transcripts.text)
    said = [bool(p and t.strip()) for p, t in zip(transcripts.present, texts, strict=True)]
    empty = int(transcripts.present.sum()) - sum(said)
    if empty_text:
        texts = [
            t if s or not p else empty_text
            for t, s, p in zip(texts, said, transcripts.present, strict=True)
        ]
        said = [bool(p) for p in transcripts.present]
    if empty:
        what = f"embedded as {empty_text!r}" if empty_text else f"recorded as missing from {name}"
        log.info("%d clip(s) have an empty transcript: %s", empty, what)
    return texts, [k for k, s in enumerate(said) if s], empty
