"""`emi-add-features`: import features a user already has into a cache as `/features/NAME`,
keyed by id (see `streams`).

Sources: a folder of `{id}.npy` (per clip `(D,)`, or per frame `(T, D)` with a frame rate), an
`.npz` keyed by id, or a CSV with a `Filename` column and numeric columns. Pickled data (object
arrays, `.pkl` files) is read only with `allow_pickle`, since unpickling runs code the file holds.
The stream joins the cache through `attach.attach_streams`: a crash leaves the old cache whole.
"""

from __future__ import annotations

import csv
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from emi_features.cache.attach import attach_streams, finished_ids, ready_to_rewrite
from emi_features.cache.schema import CacheError
from emi_features.cache.streams import CLIP, FRAME, check_stream_name, stream_from_arrays
from emi_features.core.dataset import id_column, pad_id, read_csv_rows
from emi_features.core.logs import summarise_ids

log = logging.getLogger(__name__)


def _load_array(path: Path, allow_pickle: bool) -> np.ndarray:
    if path.suffix == ".pkl":
        with path.open("rb") as handle:
            return np.asarray(pickle.load(handle))
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise CacheError(
                f"{path}: holds pickled objects; pass --allow-pickle only for files you trust"
            ) from None
        raise CacheError(f"{path}: not a readable .npy file ({error})") from None


def read_source(source: Path, *, allow_pickle: bool = False) -> dict[str, np.ndarray]:
    """id -> array from a folder of .npy (and, with allow_pickle, .pkl), an .npz, or a CSV."""
    source = Path(source)
    if allow_pickle:
        log.warning("--allow-pickle: unpickling runs code the files contain; trust %s", source)
    if source.is_dir():
        suffixes = (".npy", ".pkl") if allow_pickle else (".npy",)
        files = sorted(p for p in source.iterdir() if p.suffix in suffixes)
        pickles = [p for p in source.iterdir() if p.suffix == ".pkl"]
        if not files:
            hint = " (it holds .pkl files: --allow-pickle)" if pickles else ""
            raise CacheError(f"{source}: no {' or '.join(suffixes)} files{hint}")
        return _by_id(((p.stem, p) for p in files), source, lambda p: _load_array(p, allow_pickle))
    if source.suffix == ".npz":
        try:
            with np.load(source, allow_pickle=allow_pickle) as archive:
                return _by_id(((k, k) for k in archive.files), source, lambda k: archive[k])
        except ValueError as error:
            raise CacheError(f"{source}: pickled entries; --allow-pickle ({error})") from None
    if source.suffix == ".csv":
        with source.open(encoding="utf-8", errors="replace") as handle:
            width = len(next(csv.reader(handle), []))
        if width > MAX_CSV_COLUMNS:
            raise CacheError(
                f"{source}: {width:,} columns; a CSV import holds at most {MAX_CSV_COLUMNS:,} "
                f"(save wide features as .npy or .npz)"
            )
        columns, rows = read_csv_rows(source)
        key = id_column(columns)
        numeric = [c for c in columns if c != key]
        arrays = {}
        for line, row in enumerate(rows, start=2):
            clip_id = pad_id(row[key])
            if clip_id in arrays:
                raise CacheError(f"{source}: id {clip_id} appears twice (line {line})")
            try:
                arrays[clip_id] = np.array([float(row[c]) for c in numeric])
            except ValueError:
                raise CacheError(
                    f"{source}: line {line} has a value that is not a number"
                ) from None
        return arrays
    raise CacheError(f"{source}: give a folder of .npy files, an .npz or a .csv")


def _by_id(entries, source: Path, load: Callable[[Any], np.ndarray]) -> dict[str, np.ndarray]:
    """id -> array of (name, item) entries, refusing two entries for one id (`5`, `00005`)."""
    items: dict[str, Any] = {}
    for name, item in entries:
        clip_id = pad_id(name)
        if clip_id in items:
            raise CacheError(f"{source}: two sources for id {clip_id}: {items[clip_id]} and {item}")
        items[clip_id] = item
    return {clip_id: load(item) for clip_id, item in items.items()}


STORED = {CLIP: np.float32, FRAME: np.float16}  # what a stream stores, by kind
MAX_CSV_COLUMNS = 1 << 16  # as wide as a head's widest layer; a CSV row is parsed in Python


def check_arrays(arrays: dict[str, np.ndarray], frame_rate: float | None, where: Path) -> str:
    """The stream kind (clip or frame), after one-line checks of shapes, widths and values."""
    if not arrays:
        raise CacheError(f"{where}: no features")
    dims = {a.ndim for a in arrays.values()}
    if len(dims) != 1 or dims.pop() not in (1, 2):
        raise CacheError(f"{where}: every array must be (D,) per clip or (T, D) per frame, alike")
    kind = CLIP if next(iter(arrays.values())).ndim == 1 else FRAME
    if kind == FRAME and not frame_rate:
        raise CacheError(
            f"{where}: per-frame features (T, D) need --frame-rate (frames per second)"
        )
    widths: dict[int, str] = {}
    stored = STORED[kind]
    for clip_id, array in arrays.items():
        widths.setdefault(int(array.shape[-1]), clip_id)
        if array.dtype.kind not in "fiu" or not np.isfinite(array).all():
            raise CacheError(f"{where}: non-finite or non-numeric values for id {clip_id}")
        with np.errstate(over="ignore"):
            if not np.isfinite(array.astype(stored)).all():
                raise CacheError(
                    f"{where}: values for id {clip_id} are not finite as "
                    f"{np.dtype(stored).name}, as the stream stores them (|x| too large)"
                )
        if kind == FRAME and len(array) == 0:
            raise CacheError(f"{where}: no frames for id {clip_id}")
    if len(widths) > 1:
        shown = ", ".join(f"{d} ({i})" for d, i in sorted(widths.items())[:3])
        raise CacheError(f"{where}: inconsistent widths: {shown}")
    if 0 in widths:
        raise CacheError(f"{where}: features of width 0 (id {widths[0]})")
    return kind


def add_features(
    cache_path: str | Path,
    name: str,
    source: str | Path,
    *,
    frame_rate: float | None = None,
    allow_pickle: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Add `/features/NAME` from `source`; returns a summary (kind, dim, present, missing)."""
    cache_path, source = Path(cache_path), Path(source)
    check_stream_name(name)
    ready_to_rewrite(cache_path)
    arrays = read_source(source, allow_pickle=allow_pickle)
    kind = check_arrays(arrays, frame_rate, source)
    ids = finished_ids(cache_path)
    unknown = sorted(set(arrays) - set(ids))
    if unknown:
        raise CacheError(
            f"{source}: {len(unknown)} id(s) are not in {cache_path}: {summarise_ids(unknown, 10)}"
        )
    attrs: dict[str, Any] = {"source": str(source.resolve()), "producer": "imported"}
    if kind == FRAME:
        attrs["frame_rate"] = float(frame_rate)
    stream = stream_from_arrays(ids, arrays, kind, attrs)
    attach_streams(cache_path, {name: stream}, overwrite=overwrite)
    missing = int((~stream.present).sum())
    if missing:
        absent = [i for i, p in zip(ids, stream.present, strict=True) if not p]
        log.warning(
            "%s: %d clip(s) have no features, recorded as missing: %s",
            name,
            missing,
            summarise_ids(absent),
        )
    return {
        "kind": kind,
        "dim": stream.dim,
        "present": int(stream.present.sum()),
        "missing": missing,
    }
