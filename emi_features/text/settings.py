"""The settings of `emi embed-text` beyond its model and stream: how a transcript becomes a clip
vector and a token stream (light: no torch; `emi embed-text --help` and the recipe schema read
them). Each field is an option of `emi embed-text` (`core.dataclass_options`) and is recorded
with the stream (its `settings` attribute), so that the stream can be made again the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

MAX_PLACEHOLDER = 64  # characters of the text that stands in for an empty transcript


@dataclass(frozen=True)
class TextSettings:
    """How `emi embed-text` pools and what it keeps (see each field's help)."""

    pooling: Literal["auto", "cls", "mean"] = field(
        default="auto",
        metadata={
            "help": "The clip vector: as a sentence-transformers folder says (its "
            "1_Pooling), else the mean over the tokens (auto); the first token's "
            "last hidden state (cls); or the mean (mean)."
        },
    )
    special_tokens: Literal["keep", "drop"] = field(
        default="keep",
        metadata={
            "help": "The token stream (--tokens): keep the tokenizer's special tokens "
            "([CLS], [SEP], a prefix), or drop them (a text of nothing else keeps "
            "them)."
        },
    )
    empty_text: str = field(
        default="",
        metadata={
            "help": "Embed this text for a clip whose transcript is empty (e.g. "
            "'[EMPTY]'); empty: such a clip is missing from the stream."
        },
    )

    def __post_init__(self) -> None:
        if len(self.empty_text) > MAX_PLACEHOLDER or not self.empty_text.isprintable():
            raise ValueError(
                f"--empty-text must be printable and at most {MAX_PLACEHOLDER} characters"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
