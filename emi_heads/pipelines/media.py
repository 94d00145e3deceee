"""Stage one for new recordings: the media a user names, linked into a work folder under ids
keyed by path and content, cut into windows when asked, and the features every run needs made
there as each run's training cache made them (its recipe, checked against a closed schema by
`emi_features.extraction.remake`).

Stage one runs as the `emi` commands a user would type, in subprocesses, so that stage two
never imports the backbone libraries; each cache is crash-safe and resumable like any other,
and kept in the work folder so that the next call reuses and extends it.

The work folder is the tool's own: created and marked by it, locked while a call uses it, and
the only place anything is ever removed — and there only the links and window files it wrote.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emi_features.cache.atomic import WriteError, describe_os_error
from emi_features.core.dataset import MEDIA_SUFFIXES

log = logging.getLogger(__name__)
WORK_MARK = ".emi-work"  # the file that makes a folder an emi work folder
MIN_WINDOW_SECONDS = 0.025  # one frame's receptive field at 16 kHz
MIN_HOP_SECONDS = 0.01  # window ids count milliseconds: hops far above that stay distinct
MAX_WINDOWS = 20_000  # per call: a hop far below the window is a mistake, not a request
_LINK_NAME = re.compile(r"^m[0-9a-f]{16}\.[a-z0-9]+$")  # what link_media writes
_WINDOW_NAME = re.compile(r"^m[0-9a-f]{16}-\d{9}-\d+\.wav$")  # what cut_windows writes


class MediaError(ValueError):
    """Media that cannot be predicted, or a run whose features cannot be made again; one line."""


@dataclass
class MediaSet:
    """The media of one call: each id's file, and with windows each id's span in its file."""

    folder: Path  # links (or window wavs) named by id
    files: dict[str, Path]  # id -> the file as the user named it, in the order given
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)  # windows: seconds
    reasons: dict[str, str] = field(default_factory=dict)  # a file that gave no window: why


def prepare_work(work: Path) -> Path:
    """`work` as an emi work folder: made and marked when new or empty; refused (one line)
    when it holds files emi did not put there, so that nothing of the user's is ever removed."""
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise MediaError(f"--work {work}: not a folder")
    if work.is_dir() and any(work.iterdir()) and not (work / WORK_MARK).is_file():
        raise MediaError(
            f"--work {work} holds files emi did not write there; give a new or empty folder"
        )
    try:
        work.mkdir(parents=True, exist_ok=True)
        (work / WORK_MARK).write_text("a work folder of emi predict --media: its own files\n")
    except OSError as error:
        raise WriteError(describe_os_error(work / WORK_MARK, error)) from None
    return work


def _in_work_folder(path: Path) -> bool:
    return any((parent / WORK_MARK).is_file() for parent in path.parents)


def collect_media(paths: list[str | Path]) -> list[Path]:
    """Every media file among `paths` (files, and folders searched recursively), in order;
    links that lead nowhere and emi's own work folders are passed over with a logged reason."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise MediaError(f"{path}: no such file or folder")
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES)
            inside = [p for p in inside if _usable(p)]
            if not inside:
                raise MediaError(f"{path}: no audio or video files ({', '.join(MEDIA_SUFFIXES)})")
            found += inside
        else:
            found.append(path)
    first: dict[Path, Path] = {}  # each file once, under the name it was first given
    for path in found:
        first.setdefault(path.resolve(), path)
    return list(first.values())


def _usable(path: Path) -> bool:
    if _in_work_folder(path):
        return False  # the tool's own links and windows are not recordings
    if not path.is_file():
        what = "a link that leads nowhere" if path.is_symlink() else "not a file"
        log.warning("%s: skipped (%s)", path, what)
        return False
    return True


def media_id(path: Path) -> str:
    """A stable id for a file: its absolute path and a digest of its content (a changed file
    gets a new id, so a kept cache never answers for its old content)."""
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=8)
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        raise MediaError(f"{path}: cannot be read ({error.strerror or error})") from None
    return "m" + digest.hexdigest()


def check_out(out: Path, files: list[Path]) -> None:
    """`--out` is never one of the recordings, nor a recording's kind of file."""
    target = out.resolve()
    if any(target == f.resolve() for f in files) or out.suffix.lower() in MEDIA_SUFFIXES:
        raise MediaError(f"--out {out}: names a recording; give a new .csv file")


def link_media(paths: list[Path], folder: Path) -> MediaSet:
    """Each file linked as `folder/<id><suffix>`, the folder holding exactly these links (only
    links emi made are ever removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {media_id(p): p for p in paths}
    for stale in folder.iterdir():
        if stale.is_symlink() and _LINK_NAME.match(stale.name) and stale.stem not in files:
            stale.unlink()
    for clip_id, path in files.items():
        link = folder / f"{clip_id}{path.suffix.lower()}"
        if link.is_symlink():
            link.unlink()  # made for an earlier call: point it at this file again
        link.symlink_to(path.resolve())
    return MediaSet(folder, files)


def window_starts(seconds: float, window: float, hop: float) -> np.ndarray:
    """Start times (s) of the windows of a `seconds`-long file: every `hop`, the last ending
    with the file."""
    starts = np.arange(0.0, max(seconds - window, 0.0) + 1e-9, hop)
    if starts[-1] + window < seconds - 1e-9:
        starts = np.append(starts, seconds - window)
    return starts


def check_windows(window: float, hop: float) -> None:
    if not (math.isfinite(window) and math.isfinite(hop)):
        raise MediaError("--window and --hop must be finite numbers of seconds")
    if window < MIN_WINDOW_SECONDS or hop < MIN_HOP_SECONDS:
        raise MediaError(
            f"--window must be at least {MIN_WINDOW_SECONDS} s and --hop at least "
            f"{MIN_HOP_SECONDS} s"
        )


def cut_windows(paths: list[Path], folder: Path, window: float, hop: float) -> MediaSet:
    """Each file's audio (16 kHz mono) cut into `window`-second pieces every `hop` seconds (the
    last piece ends with the file), written as `folder/<id>-<start ms>-<window ms>.wav`; a file
    that cannot be decoded is recorded with its reason. More than MAX_WINDOWS in all is refused
    before a window is written."""
    import soundfile

    from emi_features.audio.decode import DecodeError, load_audio, probe_seconds
    from emi_features.cache.schema import SAMPLE_RATE

    check_windows(window, hop)
    planned = sum(len(window_starts(probe_seconds(p), window, hop)) for p in paths)
    if planned > MAX_WINDOWS:
        raise MediaError(
            f"--window {window:g} --hop {hop:g} makes {planned:,} windows (at most "
            f"{MAX_WINDOWS:,} a call): a longer hop, or fewer files"
        )
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
        for start in window_starts(seconds, window, hop):
            clip_id = f"{file_id}-{round(start * 1000):09d}-{round(window * 1000)}"
            end = min(start + window, seconds)
            media.files[clip_id], media.spans[clip_id] = path, (float(start), float(end))
            wanted.add(clip_id)
            target = folder / f"{clip_id}.wav"
            if not target.is_file():
                piece = samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
                soundfile.write(target, piece, SAMPLE_RATE, subtype="FLOAT")
    for stale in folder.iterdir():
        if _WINDOW_NAME.match(stale.name) and stale.stem not in wanted and stale.is_file():
            stale.unlink()
    return media


def run_stage_one(commands: list[list[str]], progress: bool, cwd: Path | None = None) -> None:
    """Each command as the `emi` step a user would type (`cli.steps.run_command`: a subprocess
    that ends with this process, `kill -9` included), its output passing through, run in `cwd`
    (the work folder: a recorded hub id never meets a folder of the user's)."""
    from emi_heads.pipelines.steps import StepFailed, run_command

    seen: set[tuple[str, ...]] = set()
    for command in commands:
        if tuple(command) in seen:  # a transcription shared by two text streams
            continue
        seen.add(tuple(command))
        log.info("$ emi %s", " ".join(command))
        quiet = [] if progress else ["--quiet"]
        try:
            run_command(f"emi-{command[0]}", [*command[1:], *quiet], show=False, cwd=cwd)
        except StepFailed as error:
            raise MediaError(
                f"emi {command[0]} failed (exit {error.returncode}); see above"
            ) from None
