"""Transcripts into a cache's `/text` (the group: `cache.text_group`): imported from a CSV or
made by `emi transcribe` (Whisper), attached by id under the cache's lock, read by `emi
embed-text`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emi_features.cache.reader import CacheError, open_cache
from emi_features.cache.schema import TEXT
from emi_features.cache.text_group import Transcripts, write_transcripts
from emi_features.core.dataset import DatasetError, id_column, pad_id, read_csv_rows
from emi_features.core.logs import summarise_ids

TEXT_COLUMNS = ("text", "transcript")  # the transcript column of an imported CSV
LANGUAGE_COLUMN = "language"


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
        rewrite_cache(
            cache_path,
            lambda target: write_transcripts(target, transcripts),
            group=TEXT,
            extra=size,
        )
    return transcripts
