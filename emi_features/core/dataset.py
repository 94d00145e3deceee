"""The challenge's dataset layout: clip ids, split CSVs and where each clip's media lies.

The home of the id padding rule (`pad_id`); the label names live in `task`.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from emi_features.core.task import ID_COLUMN, ID_WIDTH, TASKS

Source = Literal["auto", "audio", "video"]  # what a clip is decoded from (`--source`)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
VIDEO_SUFFIXES = (".mp4", ".m4a", ".webm", ".mkv", ".mov")
MEDIA_SUFFIXES = AUDIO_SUFFIXES + VIDEO_SUFFIXES


class DatasetError(ValueError):
    """Input that cannot be turned into a clip list; the message is one line for the user."""


def pad_id(raw: str | int) -> str:
    """Clip id as the challenge writes it: digits zero-padded to five ("42" -> "00042").

    Non-numeric ids (a plain folder's file stems) are returned unchanged.
    """
    text = str(raw).strip()
    if text.startswith("[") and text.endswith("]"):  # ERI's File_ID: "[00042]"
        text = text[1:-1].strip()
    if text.endswith(".0") and text[:-2].isdigit():  # pandas wrote the id as a float
        text = text[:-2]
    for suffix in MEDIA_SUFFIXES:  # some tools write "00042.mp4"
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
    return text.zfill(ID_WIDTH) if text.isdigit() else text


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV with a header: (column names, rows as dicts). A clear error when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such CSV file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise DatasetError(f"{path}: the CSV is empty (no header row)")
            return [name.strip() for name in reader.fieldnames], [
                {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in row.items()}
                for row in reader
            ]
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{path}: not UTF-8 text (byte {error.start}); save the CSV as UTF-8"
        ) from None
    except csv.Error as error:
        raise DatasetError(f"{path}: not a readable CSV ({error})") from None


def duplicates(ids: list[str]) -> list[str]:
    """The ids that occur more than once, sorted: the one duplicate check of every id list."""
    return sorted(clip_id for clip_id, n in Counter(ids).items() if n > 1)


def id_column(columns: list[str], preferred: str = ID_COLUMN) -> str:
    """The column that holds clip ids: `preferred` (`Filename`), else a built-in task's id
    column (ERI's `File_ID`), wherever it stands; else the first column."""
    for name in (preferred, *(task.id_column for task in TASKS.values())):
        if name in columns:
            return name
    return columns[0]


def read_csv_ids(path: Path) -> list[str]:
    """Clip ids from a CSV's `Filename` column (the first column when none is so named),
    zero-padded, in file order. An empty or repeated id is a one-line error naming it."""
    columns, rows = read_csv_rows(path)
    column = id_column(columns)
    ids = [pad_id(row.get(column, "")) for row in rows]
    empty = [str(line) for line, clip_id in enumerate(ids, start=2) if not clip_id]
    if empty:
        raise DatasetError(
            f"{path}: empty id in column {column!r} on line(s) {', '.join(empty[:10])}"
        )
    duplicated = duplicates(ids)
    if duplicated:
        raise DatasetError(f"{path}: duplicated ids {', '.join(duplicated[:10])}")
    return ids


@dataclass(frozen=True)
class Clip:
    """One clip to extract: its id and the media file to decode (None when none was found)."""

    id: str
    path: Path | None


def _is_media(path: Path, suffixes: tuple[str, ...]) -> bool:
    """A media file by its name; a dangling symlink counts, so that it is recorded as skipped
    (with its reason) rather than silently left out."""
    return (path.is_file() or path.is_symlink()) and path.suffix.lower() in suffixes


def is_challenge_layout(root: Path) -> bool:
    """True for a dataset root shaped like Hume-Vidmimic2 (`raw/`, `audio/`, `*_split.csv`)."""
    return (root / "raw").is_dir() or (root / "audio").is_dir() or any(root.glob("*_split.csv"))


def _media_by_stem(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if _is_media(path, suffixes):
            found.setdefault(pad_id(path.stem), path)
    return found


def find_clips(root: Path, *, split: str | None = None, source: Source = "auto") -> list[Clip]:
    """The clips under `root`, sorted by id.

    In the challenge layout each id is decoded from `raw/` (its video) or `audio/`:
    `source="video"` or `"audio"` forces one, `"auto"` takes the video when there is one, so
    that train, valid and test all go through the same codec path. With `split`, only the ids of
    `root/{split}_split.csv`; an id with no media file is kept with `path=None` (recorded as
    skipped by the extractor). Any other folder: every media file below it, id = file stem.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: no such file or folder")
    if root.is_file():
        return [Clip(pad_id(root.stem), root)]
    if is_challenge_layout(root):
        videos = _media_by_stem(root / "raw", VIDEO_SUFFIXES)
        audios = _media_by_stem(root / "audio", AUDIO_SUFFIXES)
        if split is not None:
            csv_path = root / f"{split}_split.csv"
            if not csv_path.is_file():
                available = sorted(p.name for p in root.glob("*_split.csv"))
                raise DatasetError(
                    f"{csv_path}: no such split file (found: {', '.join(available) or 'none'})"
                )
            ids = read_csv_ids(csv_path)
        else:
            ids = sorted(set(videos) | set(audios))
        preferred = {"video": (videos,), "audio": (audios,), "auto": (videos, audios)}[source]
        clips = []
        for clip_id in ids:
            path = next((table[clip_id] for table in preferred if clip_id in table), None)
            clips.append(Clip(clip_id, path))
        return sorted(clips, key=lambda c: c.id)
    if split is not None:
        raise DatasetError(f"{root}: --split needs the challenge layout ({split}_split.csv)")
    by_id: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if _is_media(path, MEDIA_SUFFIXES):
            clip_id = pad_id(path.stem)
            if clip_id in by_id:
                raise DatasetError(
                    f"two files share the id {clip_id!r}: {by_id[clip_id]} and {path}"
                )
            by_id[clip_id] = path
    if not by_id:
        raise DatasetError(f"{root}: no audio or video files ({', '.join(MEDIA_SUFFIXES)})")
    return [Clip(clip_id, path) for clip_id, path in sorted(by_id.items())]


def file_digest(path: Path) -> str:
    """What identifies a file's content (a run records its CSVs' digests)."""
    return "blake2b:" + hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
