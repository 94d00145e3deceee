"""`/text`: each clip's transcript and language, keyed by id like a stream (aligned to `/ids`,
with a `present` mask: a clip never transcribed is absent; one transcribed as silence is present
with an empty text). Written by `emi transcribe` (Whisper, or imported with `--transcripts`),
read by `emi embed-text`, carried when a cache is extended.

/text/present (N,) bool; /text/transcript (N,) utf-8; /text/language (N,) utf-8 ("" unknown);
attrs: source (the model or file), model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emi_features.cache.reader import CacheError, open_cache
from emi_features.cache.schema import TEXT
from emi_features.core.dataset import DatasetError, id_column, pad_id, read_csv_rows
from emi_features.core.logs import summarise_ids

TEXT_COLUMNS = ("text", "transcript")  # the transcript column of an imported CSV
LANGUAGE_COLUMN = "language"


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


def read_transcripts_csv(path: Path) -> dict[str, tuple[str, str]]:
    """id -> (text, language) from a CSV with `Filename`, `text` (or `transcript`) and an
    optional `language` column. An empty text is a clip transcribed as silence."""
    columns, rows = read_csv_rows(path)
    text_column = next((c for c in columns if c.lower() in TEXT_COLUMNS), None)
    if text_column is None:
        raise DatasetError(f"{path}: no text column (one of {', '.join(TEXT_COLUMNS)})")
    key = id_column(columns)
    found: dict[str, tuple[str, str]] = {}
    for row in rows:
        clip_id = pad_id(row.get(key, ""))
        if clip_id in found:
            raise DatasetError(f"{path}: id {clip_id} appears twice")
        text = row[text_column] or ""
        if "\0" in text:
            raise DatasetError(f"{path}: the transcript of {clip_id} holds a NUL byte")
        found[clip_id] = (text.strip(), (row.get(LANGUAGE_COLUMN) or "").strip())
    if not found:
        raise DatasetError(f"{path}: no transcripts (a header and no rows)")
    return found


def attach_transcripts(
    cache_path: Path,
    found: dict[str, tuple[str, str]],
    attrs: dict[str, Any],
    *,
    overwrite: bool,
) -> Transcripts:
    """Write id -> (text, language) as the cache's /text (beside it, renamed over it, under its
    lock). Ids unknown to the cache are refused; clips without a transcript are absent."""
    from emi_features.cache.attach import cache_lock, finished_ids, rewrite_cache

    with cache_lock(cache_path):
        ids = finished_ids(cache_path)
        with open_cache(cache_path) as cache:
            if TEXT in cache and not overwrite:
                raise CacheError(f"{cache_path} has transcripts already; --overwrite replaces them")
        unknown = sorted(set(found) - set(ids))
        if unknown:
            raise CacheError(
                f"{len(unknown)} transcript id(s) are not in {cache_path}: "
                f"{summarise_ids(unknown, 10)}"
            )
        transcripts = Transcripts.from_dict(ids, found, attrs)
        size = sum(len(t.encode()) for t in transcripts.text) * 2
        rewrite_cache(cache_path, lambda target: write_transcripts(target, transcripts),
                      group=TEXT, extra=size)  # fmt: skip
    return transcripts
