"""Stage one for new recordings: the media a user names, linked into a work folder under stable
ids, cut into windows when asked, and the features every run needs made there as each run's
training cache made them (its recipe: backbone and layer, each stream's model, frame rate and
pooling, the transcription and text encoder).

Stage one runs as the `emi` commands a user would type, in subprocesses, so that stage two
never imports the backbone libraries; each cache is crash-safe and resumable like any other,
and kept in the work folder so that the next call reuses and extends it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emi_features.core.dataset import MEDIA_SUFFIXES

log = logging.getLogger(__name__)


class MediaError(ValueError):
    """Media that cannot be predicted, or a run whose features cannot be made again; one line."""


@dataclass
class MediaSet:
    """The media of one call: each id's file, and with windows each id's span in its file."""

    folder: Path  # links (or window wavs) named by id
    files: dict[str, Path]  # id -> the file as the user named it, in the order given
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)  # windows: seconds
    reasons: dict[str, str] = field(default_factory=dict)  # a file that gave no window: why


def collect_media(paths: list[str | Path]) -> list[Path]:
    """Every media file among `paths` (files, and folders searched recursively), in order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MediaError(f"{path}: no such file or folder")
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES)
            if not inside:
                raise MediaError(f"{path}: no audio or video files ({', '.join(MEDIA_SUFFIXES)})")
            found += inside
        else:
            found.append(path)
    first: dict[Path, Path] = {}  # each file once, under the name it was first given
    for path in found:
        first.setdefault(path.resolve(), path)
    return list(first.values())


def media_id(path: Path) -> str:
    """A stable id for a file: its absolute path, size and modification time, hashed (a changed
    file gets a new id, so a kept cache never answers for its old content)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return "m" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def link_media(paths: list[Path], folder: Path) -> MediaSet:
    """Each file linked as `folder/<id><suffix>`, the folder holding exactly these files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {media_id(p): p for p in paths}
    for stale in folder.iterdir():
        if stale.stem not in files:
            stale.unlink()
    for clip_id, path in files.items():
        link = folder / f"{clip_id}{path.suffix.lower()}"
        if not link.is_symlink():
            link.symlink_to(path.resolve())
    return MediaSet(folder, files)


def cut_windows(paths: list[Path], folder: Path, window: float, hop: float) -> MediaSet:
    """Each file's audio (16 kHz mono) cut into `window`-second pieces every `hop` seconds (the
    last piece ends with the file), written as `folder/<id>-<start ms>.wav`; a file that cannot
    be decoded is recorded with its reason."""
    import soundfile

    from emi_features.audio.decode import DecodeError, load_audio
    from emi_features.cache.schema import SAMPLE_RATE

    if not (window > 0 and hop > 0):
        raise MediaError("--window and --hop must be > 0 seconds")
    folder.mkdir(parents=True, exist_ok=True)
    media = MediaSet(folder, {})
    wanted: set[str] = set()
    for path in paths:
        try:
            samples = load_audio(path)
        except DecodeError as error:
            media.reasons[str(path)] = str(error)
            continue
        seconds, file_id = len(samples) / SAMPLE_RATE, media_id(path)
        starts = np.arange(0.0, max(seconds - window, 0.0) + 1e-9, hop)
        if starts[-1] + window < seconds - 1e-9:
            starts = np.append(starts, seconds - window)
        for start in starts:
            clip_id = f"{file_id}-{round(start * 1000):09d}-{round(window * 1000)}"
            end = min(start + window, seconds)
            media.files[clip_id], media.spans[clip_id] = path, (float(start), float(end))
            wanted.add(clip_id)
            target = folder / f"{clip_id}.wav"
            if not target.is_file():
                piece = samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
                soundfile.write(target, piece, SAMPLE_RATE, subtype="FLOAT")
    for stale in folder.iterdir():
        if stale.stem not in wanted:
            stale.unlink()
    return media


def stage_one_commands(recipe: dict[str, Any], source: Path, cache: Path) -> list[list[str]]:
    """The `emi` commands that make, for the media in `source`, the features `recipe` describes
    (see `FeatureCache.recipe`) in `cache`: the main extraction, then each stream."""
    main = recipe["extraction"]
    commands = [["extract", str(source), "--model", main["backbone"], "--out", str(cache),
                 *_layer(main), "--window-seconds", str(main.get("window_seconds", 30.0)),
                 "--overlap-seconds", str(main.get("overlap_seconds", 4.0))]]  # fmt: skip
    ids = {path.stem for path in source.iterdir()}
    for name, attrs in recipe["streams"].items():
        if not _stream_is_current(cache, name, attrs, ids):
            commands += _stream_commands(name, attrs, recipe.get("text"), source, cache)
    return commands


def _stream_is_current(cache: Path, name: str, attrs: dict[str, Any], ids: set[str]) -> bool:
    """True when `cache` already holds the stream, made the same way, for every clip of `ids`
    it holds: then the stream is reused, not made again."""
    from emi_features.cache.reader import CacheError, open_cache

    if not cache.is_file():
        return False
    try:
        with open_cache(cache) as opened:
            if opened.stream_fingerprints().get(name) != attrs.get("fingerprint"):
                return False
            mask = opened.stream_view(name).present  # its mask only, not its frames
            present = [True] * len(opened) if mask is None else mask[()]
            held = {i for i, kept in zip(opened.ids, present, strict=True) if kept}
            return ids <= held | set(opened.skipped)
    except (CacheError, KeyError, OSError):
        return False


def _layer(attrs: dict[str, Any]) -> list[str]:
    layer = attrs.get("layer", "last")
    return [] if layer in ("last", None) else ["--layer", str(layer)]


def _recorded_modality(attrs: dict[str, Any], made_by: str) -> tuple[str, dict[str, Any]]:
    """The modality and settings a stream was extracted with; for a stream written before they
    were recorded, vision's from its frame rate and crop, else audio's."""
    if "modality" in attrs:
        return attrs["modality"], json.loads(attrs.get("settings") or "{}")
    if made_by.startswith("emi-extract --modality vision"):
        return "vision", {"fps": attrs["frame_rate"], "crop": attrs.get("crop", "none")}
    return "audio", {}


def _stream_commands(name: str, attrs: dict, text: dict | None, source: Path,
                     cache: Path) -> list[list[str]]:  # fmt: skip
    """The commands that make one stream again, or a MediaError naming why they cannot."""
    made_by = str(attrs.get("source", ""))
    common = ["--out", str(cache), "--overwrite"]
    if made_by.startswith("emi-extract"):
        modality, settings = _recorded_modality(attrs, made_by)
        flags = [part for key, value in settings.items()
                 for part in (f"--{key.replace('_', '-')}", str(value))]  # fmt: skip
        model = ["--model", attrs["backbone"]] if "--model" in made_by else []
        pool = ["--pool", "mean"] if attrs.get("pooled") else []
        layer = _layer(attrs) if modality == "audio" else []  # the others name their own
        return [["extract", str(source), "--modality", modality, *model, "--stream", name,
                 *flags, *layer, *pool, *common]]  # fmt: skip
    if made_by.startswith("emi embed-text") and text and text.get("model"):
        tokens = ["--tokens"] if name.endswith("-tokens") else []
        base = name.removesuffix("-tokens")
        return [["transcribe", str(source), "--model", text["model"], *common],
                ["embed-text", str(cache), "--model", made_by.split("--model ", 1)[1],
                 "--stream", base, *tokens, "--overwrite"]]  # fmt: skip
    if made_by.startswith("emi embed-text"):
        raise MediaError(
            f"the stream features/{name} was embedded from imported transcripts: no speech "
            f"recognizer is recorded to transcribe new media; transcribe them (emi transcribe) "
            f"into a cache and predict with --cache"
        )
    raise MediaError(
        f"the stream features/{name} was imported ({made_by or 'emi add-features'}): emi cannot "
        f"make it for new media; add it to a cache of them yourself and predict with --cache"
    )


def run_stage_one(commands: list[list[str]], progress: bool) -> None:
    """Each command as `python -m emi_heads ...` (the `emi` group), its output passing through."""
    seen: set[tuple[str, ...]] = set()
    for command in commands:
        if tuple(command) in seen:  # a transcription shared by two text streams
            continue
        seen.add(tuple(command))
        log.info("$ emi %s", " ".join(command))
        quiet = [] if progress else ["--quiet"]
        completed = subprocess.run(
            [sys.executable, "-m", "emi_heads", *command, *quiet], check=False
        )
        if completed.returncode != 0:
            raise MediaError(f"emi {command[0]} failed (exit {completed.returncode}); see above")


def recipe_streams(recipe: dict[str, Any], needed: list[str]) -> dict[str, Any]:
    """The recipe with only the streams a run reads (the others need not be made)."""
    return {**recipe, "streams": {k: v for k, v in recipe["streams"].items() if k in needed}}


def is_audio_only(recipe: dict[str, Any]) -> bool:
    """True when every stream is made from the audio alone (windows can be cut from it)."""
    return all(
        str(a.get("source", "")).startswith("emi-extract --modality audio")
        for a in recipe["streams"].values()
    )
