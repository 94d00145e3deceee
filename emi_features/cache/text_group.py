"""`/text`, the group: each clip's transcript and language, keyed by id like a stream (aligned
to `/ids`, with a `present` mask: a clip never transcribed is absent; one transcribed as silence
is present with an empty text). The reader and the writer read and carry it; writing it into a
cache from Whisper or a CSV is `cache.transcripts`'.

/text/present (N,) bool; /text/transcript (N,) utf-8; /text/language (N,) utf-8 ("" unknown);
attrs: source (the model or file), model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np

from emi_features.cache.schema import TEXT


@dataclass
class Transcripts:
    """Transcripts of N clips in cache order; `present[k]` is False where none was made."""

    present: np.ndarray
    text: list[str]
    language: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(
        cls, ids: list[str], found: dict[str, tuple[str, str]], attrs: dict[str, Any]
    ) -> Transcripts:
        """From id -> (text, language) for some of `ids`."""
        rows = [found.get(i) for i in ids]
        return cls(
            np.array([r is not None for r in rows], dtype=bool),
            [r[0] if r else "" for r in rows],
            [r[1] if r else "" for r in rows],
            attrs,
        )

    def by_id(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        return {
            i: (t, lang)
            for i, p, t, lang in zip(ids, self.present, self.text, self.language, strict=True)
            if p
        }


def write_transcripts(handle: h5py.File, transcripts: Transcripts) -> None:
    group = handle.create_group(TEXT)
    group.attrs.update(transcripts.attrs)
    group.create_dataset("present", data=transcripts.present)
    strings = h5py.string_dtype("utf-8")
    group.create_dataset("transcript", data=np.array(transcripts.text, dtype=object), dtype=strings)
    group.create_dataset(
        "language", data=np.array(transcripts.language, dtype=object), dtype=strings
    )


def read_transcripts(handle: h5py.File) -> Transcripts | None:
    """The cache's /text, or None when it has none."""
    if TEXT not in handle:
        return None
    group = handle[TEXT]
    text = [t.decode("utf-8") for t in group["transcript"][()]]
    language = [t.decode("utf-8") for t in group["language"][()]]
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in group.attrs.items()}
    return Transcripts(group["present"][()].astype(bool), text, language, attrs)


def carry_transcripts(
    source: h5py.File, old_ids: list[str], target: h5py.File, new_ids: list[str]
) -> None:
    """Copy /text of `source` into `target`, realigned from `old_ids` to `new_ids`."""
    found = read_transcripts(source)
    if found is not None:
        write_transcripts(target, Transcripts.from_dict(new_ids, found.by_id(old_ids), found.attrs))
