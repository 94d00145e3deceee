"""A trained model used outside the challenge layout: `load_model` takes runs, parents of runs
(an ensemble), exported model folders or a hub id of one, and predicts the six intensities of
any recordings — whole, or window by window over time — or of the clips of a cache.

>>> from emi_heads import load_model
>>> model = load_model("runs/concat")
>>> result = model.predict(["interview.mp4", "recordings/"])    # files and folders
>>> result.names, result.values.shape, result.labels             # (N, 6) in [0, 1]
>>> model.predict(["long.wav"], window=10, hop=5).to_csv("over_time.csv")
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emi_features.core.devices import resolve_device
from emi_features.core.task import EMOTIONS
from emi_heads.heads.reads import streams_read
from emi_heads.heads.settings import HeadConfig
from emi_heads.training.rundir import RunError, load_run, write_atomically
from emi_heads.use.ensemble import Member, expand_members
from emi_heads.use.media import (
    MediaError,
    collect_media,
    cut_windows,
    is_audio_only,
    link_media,
    recipe_streams,
    run_stage_one,
    stage_one_commands,
)
from emi_heads.use.predict import average, caches_for

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """The six intensities of each named item: `values` (N, 6) in [0, 1], NaN where the item
    could not be predicted (`reasons` says why); with windows, each row's `starts` and `ends`
    in seconds."""

    names: list[str]
    values: np.ndarray
    reasons: list[str]
    labels: tuple[str, ...] = EMOTIONS
    starts: list[float] | None = None
    ends: list[float] | None = None
    ids: list[str] = field(default_factory=list)  # the cache ids behind the rows

    def to_csv(self, path: str | Path) -> Path:
        """file[,start,end],Admiration,...,Joy,reason — written atomically."""
        timed = self.starts is not None

        def write(temporary: Path) -> None:
            with temporary.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["file", *(["start", "end"] if timed else []), *self.labels,
                                 "reason"])  # fmt: skip
                for k, name in enumerate(self.names):
                    span = [_number(self.starts[k]), _number(self.ends[k])] if timed else []
                    values = ["" if not np.isfinite(v) else f"{v:.6f}" for v in self.values[k]]
                    writer.writerow([name, *span, *values, self.reasons[k]])

        write_atomically(Path(path), write)
        return Path(path)


class EmiModel:
    """Runs averaged as one model (parents and exported folders average their runs)."""

    labels = EMOTIONS

    def __init__(self, members: list[Member]):
        self.members = members
        self.weights = np.full((len(members), len(EMOTIONS)), 1 / len(members))
        self.runs = {run: load_run(run) for member in members for run in member.runs}

    def predict_cache(self, cache: str | Path | list, ids: list[str] | None = None, *,
                      device: str | None = None) -> Predictions:  # fmt: skip
        """The clips `ids` (default: all) of a cache (or one cache per backbone)."""
        paths = cache if isinstance(cache, list) else [cache]
        caches = caches_for(self.runs, paths, allow_incomplete=False)
        try:
            first = next(iter(caches.values()))
            ids = list(first.ids) if ids is None else list(ids)
            present = [i for i in ids if all(c.has_clip(i) for c in caches.values())]
            skipped = {k: v for c in caches.values() for k, v in c.skipped.items()}
            total = average(self.members, self.weights, self.runs, caches, present,
                            resolve_device(device))  # fmt: skip
        finally:
            for opened in caches.values():
                opened.close()
        rows = dict(zip(present, np.clip(total, 0.0, 1.0), strict=True))
        values = np.array([rows.get(i, np.full(len(EMOTIONS), np.nan)) for i in ids])
        reasons = ["" if i in rows else skipped.get(i, "not in the cache") for i in ids]
        return Predictions(list(ids), values.reshape(len(ids), len(EMOTIONS)), reasons, ids=ids)

    def predict(self, paths: list[str | Path], *, work: str | Path | None = None,
                window: float | None = None, hop: float | None = None,
                device: str | None = None, progress: bool = True) -> Predictions:  # fmt: skip
        """The files among `paths` (files and folders), whole or with `window` (and `hop`,
        default the window) seconds over time. Stage one runs as each run's training cache
        ran it, into caches kept in `work` (default `./emi-media`) for the next call."""
        files = collect_media(paths)
        work = Path(work or "emi-media")
        recipes = self.recipes()
        if window is not None:
            if not all(is_audio_only(r) for r in recipes.values()):
                raise MediaError("--window reads the audio alone; these runs read text or video")
            media = cut_windows(files, work / "windows", window, hop or window)
        else:
            media = link_media(files, work / "media")
        caches = []
        for fingerprint, recipe in recipes.items():
            cache = work / f"{'windows-' if window else ''}{fingerprint.replace(':', '-')}.h5"
            run_stage_one(stage_one_commands(recipe, media.folder, cache), progress)
            caches.append(cache)
        result = self.predict_cache(caches, list(media.files), device=device)
        result.names = [str(media.files[i]) for i in result.ids]
        for k, clip_id in enumerate(result.ids):  # reasons name the user's file, not its link
            original = media.files[clip_id]
            link = media.folder / f"{clip_id}{original.suffix.lower()}"
            reason = result.reasons[k].replace(str(link), str(original))
            result.reasons[k] = reason.replace(link.name, original.name)
        if window is not None:
            result.starts = [media.spans[i][0] for i in result.ids]
            result.ends = [media.spans[i][1] for i in result.ids]
            _add_undecoded(result, media.reasons)
        return result

    def recipes(self) -> dict[str, dict]:
        """backbone fingerprint -> how to make the features every run of it reads."""
        recipes: dict[str, dict] = {}
        for run, (_, config) in self.runs.items():
            recipe = config["cache"].get("recipe")
            if recipe is None:
                raise RunError(
                    f"{run} does not record how its features were made (trained before emi "
                    f"recorded it); train it again, or extract your media and use --cache"
                )
            needed = streams_read(HeadConfig.from_dict(config["head"]))
            fingerprint = config["cache"]["backbone_fingerprint"]
            kept = recipes.setdefault(fingerprint, recipe_streams(recipe, []))
            kept["streams"].update(recipe_streams(recipe, needed)["streams"])
        return recipes


def _number(seconds: float) -> str:
    return f"{seconds:.2f}" if np.isfinite(seconds) else ""


def _add_undecoded(result: Predictions, reasons: dict[str, str]) -> None:
    """A file that gave no window still gets its row, with its reason."""
    for name, reason in reasons.items():
        result.names.append(name)
        result.values = np.vstack([result.values, np.full((1, len(EMOTIONS)), np.nan)])
        result.reasons.append(reason)
        result.starts.append(float("nan"))
        result.ends.append(float("nan"))
        result.ids.append("")


def load_model(*sources: str | Path) -> EmiModel:
    """Runs, parents of runs, exported model folders, or the hub id of an exported folder
    (downloaded where the hub is reachable), averaged as one model."""
    if not sources:
        raise RunError("give at least one run, parent folder or model")
    return EmiModel(expand_members([local_source(s) for s in sources]))


def predict_media(sources: list[str | Path], media: list[str | Path], out: str | Path, *,
                  window: float | None = None, hop: float | None = None,
                  work: str | Path | None = None, device: str | None = None,
                  progress: bool = True) -> str:  # fmt: skip
    """`emi predict --media`: the CSV `out` (and with a window a plot per file beside it);
    returns the line that says what was written."""
    out = Path(out)
    work = Path(work) if work is not None else out.with_name(f"{out.stem}-features")
    result = load_model(*sources).predict(media, work=work, window=window, hop=hop,
                                          device=device, progress=progress)  # fmt: skip
    result.to_csv(out)
    failed = sum(1 for reason in result.reasons if reason)
    line = f"{out}: {len(result.names)} rows"
    if window is not None:
        from emi_heads.experiments.plots import plot_over_time

        plots = out.with_name(f"{out.stem}-plots")
        named = zip(result.names, result.reasons, strict=True)
        for name in dict.fromkeys(n for n, reason in named if not reason):
            rows = [k for k, n in enumerate(result.names) if n == name]
            plot_over_time(plots / f"{Path(name).stem}.png", Path(name).name,
                           [result.starts[k] for k in rows], result.values[rows])  # fmt: skip
        line += f" ({window:g} s windows), plots in {plots}"
    return line + (f"; {failed} could not be predicted (see the reason column)" if failed else "")


def split_media(arguments: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    """RUN_DIR arguments that are media (a media file, or a folder holding no run) apart."""
    from emi_features.core.dataset import MEDIA_SUFFIXES
    from emi_heads.training.rundir import CONFIG
    from emi_heads.use.ensemble import MODEL_INDEX

    runs, media = [], []
    for argument in arguments:
        path = Path(argument)
        holds_runs = path.is_dir() and ((path / MODEL_INDEX).is_file() or any(path.rglob(CONFIG)))
        is_media = path.is_file() and path.suffix.lower() in MEDIA_SUFFIXES
        (media if is_media or (path.is_dir() and not holds_runs) else runs).append(argument)
    return tuple(runs), tuple(Path(m) for m in media)


def local_source(source: str | Path) -> Path:
    """A run, parent or model folder as a local path; an `owner/name` that is no local path is
    a hub id, downloaded (where the hub is reachable)."""
    path = Path(source)
    if path.exists() or "/" not in str(source) or str(source).startswith((".", "/")):
        return path
    from huggingface_hub import snapshot_download  # a hub id: owner/name

    try:
        return Path(snapshot_download(str(source)))
    except Exception as error:  # the hub's own error types
        raise RunError(
            f"{source}: no such folder, and not loadable from the hub ({error})"
        ) from None
