"""Tiny random Hugging Face models, built from a config and saved with `save_pretrained`: what
the demo and the tests run the text and image paths with when no hub is reachable.

Random weights still give each distinct input a distinct embedding, so a head can learn from
them what the sample's words and images carry; they say nothing about a real encoder's quality.
"""

from __future__ import annotations

from pathlib import Path

import torch

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def save_tiny_text_encoder(
    folder: Path, words: list[str], *, width: int = 32, seed: int = 0
) -> Path:
    """A 1-layer BERT whose word-piece vocabulary is `words` (lower case), with its tokenizer."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(words),
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=width,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def save_tiny_image_encoder(
    folder: Path, *, image_size: int = 32, width: int = 32, seed: int = 0
) -> Path:
    """A 1-layer ViT (8-pixel patches) with its image processor (resize to `image_size`)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=width,
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder
