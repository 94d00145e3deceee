"""Reading the feature cache. Needs only h5py and numpy: stage two uses it.

Layout (`schema`, the README): `/ids` (N,), `/offsets` (N+1,), frame groups `/frames` (F, D)
float16 and `/frame_vad` (F, 3) whose rows offsets[i]:offsets[i+1] belong to clip i, clip groups
`/mean` (N, D), `/vad` (N, 3), `/num_samples` (N,), `/skipped/{ids,reasons}` (M,).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emi_features.cache.schema import (
    FEATURES,
    FORMAT,
    FORMAT_VERSION,
    FRAME_GROUPS,
    FRAME_VAD,
    FRAMES,
    IDS,
    MEAN,
    NUM_SAMPLES,
    OFFSETS,
    SKIPPED_IDS,
    SKIPPED_REASONS,
    VAD,
    VAD_DIM,
    Attr,
    CacheError,  # noqa: F401  (its home; imported from here too)
    decode_strings,
    frames_per_second,
    read_attrs,
)
from emi_features.cache.streams import stream_names, stream_problems
from emi_features.cache.text_group import read_transcripts
from emi_features.core.dataset import duplicates


def read_skipped(handle: h5py.File) -> dict[str, str]:
    """`/skipped` of an open cache or part: clip id -> reason."""
    if "skipped" not in handle:
        return {}
    ids, reasons = decode_strings(handle[SKIPPED_IDS]), decode_strings(handle[SKIPPED_REASONS])
    return dict(zip(ids, reasons, strict=True))


class FeatureCache:
    """An open cache. Arrays come back as numpy; `read` loads a whole group in one read.

    >>> with FeatureCache("cache.h5") as cache:
    ...     frames = cache.clip("frames", "00042")   # (T, D) float16, 50 frames/s
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CacheError(f"{self.path}: no such cache file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise CacheError(f"{self.path}: not an HDF5 file ({error})") from error
        self.attrs: dict[str, Any] = read_attrs(self._file)
        if self.attrs.get(Attr.FORMAT) != FORMAT:
            self.close()
            raise CacheError(f"{self.path}: not an emi cache (no format='{FORMAT}' attribute)")
        version = int(self.attrs.get(Attr.FORMAT_VERSION, -1))
        if version != FORMAT_VERSION:
            self.close()
            raise CacheError(
                f"{self.path}: cache format_version {version} is not supported "
                f"(this emi reads {FORMAT_VERSION}); re-extract or upgrade emi"
            )
        try:
            self._check_links()
            self.ids: list[str] = decode_strings(self._file[IDS])
            self.offsets: np.ndarray = self._file[OFFSETS][()].astype(np.int64)
            self._check_structure()
        except CacheError:
            self.close()
            raise
        except (KeyError, OSError, ValueError, TypeError) as error:  # a damaged or odd file
            self.close()
            raise CacheError(
                f"{self.path}: damaged cache ({type(error).__name__}: {error})"
            ) from None
        self._index = {clip_id: i for i, clip_id in enumerate(self.ids)}

    def _check_links(self) -> None:
        """A received cache must not make the reader open other files: no external links, no
        external storage, and virtual datasets only over this cache's own parts folder."""
        parts = (self.path.parent / f"{self.path.name}.parts").resolve()

        def problem(name: str, link: Any) -> str | None:  # a non-None return stops the visit
            if isinstance(link, h5py.ExternalLink):
                return f"{name} is an external link to {link.filename}"
            item = self._file.get(name) if isinstance(link, h5py.HardLink) else None
            if not isinstance(item, h5py.Dataset):
                return None
            if item.external:
                return f"{name} stores its data in another file"
            for source in item.virtual_sources() if item.is_virtual else ():
                target = (self.path.parent / source.file_name).resolve()
                inside = source.file_name == "." or target == self.path.resolve()
                if not inside and target.parent != parts:
                    return f"{name} reads {source.file_name}, outside its parts folder"
            return None

        found = self._file.visititems_links(problem)
        if found:
            raise CacheError(f"{self.path}: {found}; refused")

    def _check_structure(self) -> None:
        """Lengths, offsets, widths and ids consistent; finite means. One line when not."""
        count, offsets = len(self.ids), self.offsets
        problems = []
        if offsets.ndim != 1 or len(offsets) != count + 1:
            problems.append(f"/offsets has {len(offsets)} rows for {count} ids (needs N+1)")
        elif count and (offsets[0] != 0 or (np.diff(offsets) < 0).any()):
            problems.append("/offsets must start at 0 and never decrease")
        repeated = duplicates(self.ids)
        if repeated:
            problems.append(f"ids listed twice: {', '.join(repeated[:5])}")
        frames_total = int(offsets[-1]) if len(offsets) else 0
        widths = {
            FRAMES: self.attrs.get(Attr.HIDDEN_SIZE),
            MEAN: self.attrs.get(Attr.HIDDEN_SIZE),
            FRAME_VAD: VAD_DIM,
            VAD: VAD_DIM,
        }
        for name in (FRAMES, FRAME_VAD, MEAN, VAD, NUM_SAMPLES):
            if name not in self._file:
                continue
            shape = self._file[name].shape
            rows = frames_total if name in FRAME_GROUPS else count
            if not shape or shape[0] != rows:
                problems.append(f"/{name} has {shape[0] if shape else 0} rows, expected {rows}")
            elif name in widths and (len(shape) != 2 or int(shape[1]) != int(widths[name] or -1)):
                problems.append(f"/{name} has width {shape[1:]}, expected {widths[name]}")
        if not problems and MEAN in self._file and count:
            finite = np.isfinite(self._file[MEAN][()]).all(axis=1)
            if not finite.all():
                bad = [self.ids[k] for k in np.flatnonzero(~finite)[:5]]
                problems.append(f"non-finite /mean for clip(s) {', '.join(bad)}")
        problems += self._stream_problems()
        if problems:
            raise CacheError(f"{self.path}: damaged cache: {'; '.join(problems)}")

    def _stream_problems(self) -> list[str]:
        """Every stream, the transcripts and the root's grid, checked as the main groups are."""
        count, problems = len(self.ids), []
        rate = self.attrs.get(Attr.SAMPLE_RATE, 16000)
        if not (isinstance(rate, (int, float, np.number)) and np.isfinite(rate) and rate > 0):
            problems.append(f"sample_rate {rate!r} must be a positive number")
        for name in self.streams():
            problems += stream_problems(self._file, name, count)
        if "text" in self._file:
            text = self._file["text"]
            for name in ("present", "transcript", "language"):
                if name not in text or text[name].shape != (count,):
                    problems.append(f"/text/{name} must have {count} rows")
        return problems

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, name: str) -> bool:
        return name in self._file

    @property
    def complete(self) -> bool:
        """False while an extraction is still adding clips (or was interrupted)."""
        return bool(self.attrs.get(Attr.COMPLETE, True))

    @property
    def fingerprint(self) -> str:
        return str(self.attrs.get(Attr.FINGERPRINT, ""))

    @property
    def hidden_size(self) -> int:
        return int(self.attrs[Attr.HIDDEN_SIZE])

    @property
    def frames_per_second(self) -> float:
        """The frame rate of `/frames`, from the cache's own sample rate and frame hop."""
        return frames_per_second(self.attrs)

    @property
    def skipped(self) -> dict[str, str]:
        """Clip id -> the reason it is not in the cache."""
        return read_skipped(self._file)

    def streams(self) -> list[str]:
        """The names of the feature streams under /features."""
        return stream_names(self._file)

    def stream_fingerprints(self) -> dict[str, str]:
        """name -> what identifies each stream's features."""
        out = {}
        for name in self.streams():
            item = self._file[FEATURES][name]
            out[name] = str(getattr(item, "attrs", {}).get("fingerprint", f"array:{item.name}"))
        return out

    def stream(self, name: str):
        """The stream /features/NAME as stored (`emi_features.cache.streams.Stream`)."""
        from emi_features.cache.streams import read_stream

        if name not in self.streams():
            raise CacheError(f"{self.path}: no stream {name!r}")
        return read_stream(self._file, name, len(self))

    def stream_view(self, name: str):
        """The stream /features/NAME unread (`cache.streams.StreamView`): its kind, attributes
        and datasets, for reading some clips' rows."""
        from emi_features.cache.streams import view_stream

        if name not in self.streams():
            raise CacheError(f"{self.path}: no stream {name!r}")
        return view_stream(self._file, name)

    def transcripts(self):
        """The cache's /text (`cache.text_group.Transcripts`), or None when it has none."""
        return read_transcripts(self._file)

    def recipe(self) -> dict[str, Any]:
        """How the cache's features were made, JSON-ready: the main extraction's settings
        (`extraction`), each stream's attributes (`streams`) and the transcripts' (`text`), so
        that the same features can be made again for other media."""
        keys = (
            "backbone",
            "backbone_fingerprint",
            "layer",
            "window_seconds",
            "overlap_seconds",
            "source",
            Attr.RUNTIME,
            Attr.PRECISION,
        )
        streams = {}
        for name in self.streams():
            item = self._file[FEATURES][name]
            streams[name] = _plain(dict(getattr(item, "attrs", {})))
        text = _plain(dict(self._file["text"].attrs)) if "text" in self._file else None
        extraction = _plain({k: self.attrs[k] for k in keys if k in self.attrs})
        return {"extraction": extraction, "streams": streams, "text": text}

    def has_clip(self, clip_id: str) -> bool:
        return clip_id in self._index

    def index(self, clip_id: str) -> int:
        try:
            return self._index[clip_id]
        except KeyError:
            raise CacheError(f"{self.path}: clip {clip_id!r} is not in the cache") from None

    def is_frame_group(self, name: str) -> bool:
        """True for a group with one row per frame (indexed through offsets)."""
        dataset = self._file[name]
        return dataset.shape[0] == int(self.offsets[-1]) and name.rsplit("/", 1)[-1] in FRAME_GROUPS

    def dataset(self, name: str) -> h5py.Dataset | h5py.Group:
        """The open h5py object, for partial reads (`read_direct`) of large groups."""
        if name not in self._file:
            raise CacheError(f"{self.path}: the cache has no group {name!r}")
        return self._file[name]

    def read(self, name: str) -> np.ndarray:
        """A whole group, e.g. `read("frames")` -> (F, D) float16, in one read."""
        return self.dataset(name)[()]

    def clip(self, name: str, clip: str | int) -> np.ndarray:
        """One clip's rows of a group: (T, ...) for a frame group, the row for a clip group."""
        index = self.index(clip) if isinstance(clip, str) else int(clip)
        dataset = self._file[name]
        if self.is_frame_group(name):
            return dataset[self.offsets[index] : self.offsets[index + 1]]
        return dataset[index]


def _plain(attrs: dict[str, Any]) -> dict[str, Any]:
    """HDF5 attributes as JSON values (numpy scalars to Python, arrays to lists)."""
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in attrs.items()}


def open_cache(path: str | Path) -> FeatureCache:
    """Open a cache for reading; raises CacheError (one line) for a missing or foreign file."""
    return FeatureCache(path)
