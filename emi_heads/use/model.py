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
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emi_features.cache.atomic import check_writable_folder
from emi_features.cache.locks import ExclusiveLock, LockedError
from emi_features.core.devices import resolve_device
from emi_features.core.task import EMI, Task
from emi_features.extraction.remake import ModelPlace, RecipeSchemaError, RecipeSpec, parse_recipe
from emi_features.extraction.remake_steps import stage_one_commands
from emi_heads.heads.reads import inputs_read, streams_read
from emi_heads.heads.settings_json import head_from_dict
from emi_heads.pipelines.media import (
    MediaError,
    check_out,
    check_windows,
    collect_media,
    cut_windows,
    link_media,
    prepare_work,
    run_stage_one,
)
from emi_heads.training.rundir import CONFIG, RunError, load_run, write_atomically
from emi_heads.use.ensemble import MODEL_INDEX, Member, common_task, expand_members
from emi_heads.use.predict import average, caches_for, clip_to_range, member_weights

log = logging.getLogger(__name__)
NON_FINITE = "the model gave a non-finite prediction (NaN or infinity) for it"


@dataclass
class Predictions:
    """The targets of each named item (the six intensities of EMI): `values` (N, K), NaN where
    the item could not be predicted (`reasons` says why); with windows, each row's `starts` and
    `ends` in seconds."""

    names: list[str]
    values: np.ndarray
    reasons: list[str]
    labels: tuple[str, ...] = EMI.targets
    starts: list[float] | None = None
    ends: list[float] | None = None
    ids: list[str] = field(default_factory=list)  # the cache ids behind the rows

    def to_csv(self, path: str | Path) -> Path:
        """file[,start,end],Admiration,...,Joy,reason — written atomically."""
        timed = self.starts is not None

        def write(temporary: Path) -> None:
            with temporary.open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(
                    ["file", *(["start", "end"] if timed else []), *self.labels, "reason"]
                )
                for k, name in enumerate(self.names):
                    span = [_number(self.starts[k]), _number(self.ends[k])] if timed else []
                    values = ["" if not np.isfinite(v) else f"{v:.6f}" for v in self.values[k]]
                    writer.writerow([name, *span, *values, self.reasons[k]])

        write_atomically(Path(path), write)
        return Path(path)


class EmiModel:
    """Runs averaged as one model (parents and exported folders average their runs), each
    member weighted per target: equally, by `weights` (`0.7,0.3`), or fitted on the held-out
    predictions of the clips a labelled CSV holds (`fit_weights_on`)."""

    def __init__(
        self,
        members: list[Member],
        weights: str | None = None,
        fit_weights_on: str | Path | None = None,
    ):
        self.members = members
        self.runs = {run: load_run(run) for member in members for run in member.runs}
        self.task = common_task([config for _, config in self.runs.values()])
        self.weights = member_weights(members, weights, fit_weights_on, self.task)
        self._recipes = {run: _run_recipe(run, config) for run, (_, config) in self.runs.items()}

    @property
    def labels(self) -> tuple[str, ...]:
        """What it predicts: the targets of its runs' task (the six emotions of EMI)."""
        return self.task.targets

    def predict_cache(
        self, cache: str | Path | list, ids: list[str] | None = None, *, device: str | None = None
    ) -> Predictions:
        """The clips `ids` (default: all) of a cache (or one cache per backbone); a clip that
        cannot be predicted gets NaN and its reason."""
        paths = cache if isinstance(cache, list) else [cache]
        caches = caches_for(self.runs, paths, allow_incomplete=False)
        try:
            first = next(iter(caches.values()))
            ids = list(first.ids) if ids is None else list(ids)
            present = [i for i in ids if all(c.has_clip(i) for c in caches.values())]
            reasons_of = {k: v for c in caches.values() for k, v in c.skipped.items()}
            total = average(
                self.members, self.weights, self.runs, caches, present, resolve_device(device)
            )
            total = total.reshape(len(present), len(self.labels))
            reasons_of.update(self._nothing_to_read(caches, present))
        finally:
            for opened in caches.values():
                opened.close()
        finite = np.isfinite(total).all(axis=1)
        reasons_of.update({i: NON_FINITE for i, ok in zip(present, finite, strict=True) if not ok})
        written = clip_to_range(total, self.task)
        rows = {i: v for i, v in zip(present, written, strict=True) if i not in reasons_of}
        values = np.array([rows.get(i, np.full(len(self.labels), np.nan)) for i in ids])
        reasons = ["" if i in rows else reasons_of.get(i, "not in the cache") for i in ids]
        values = values.reshape(len(ids), len(self.labels))
        return Predictions(list(ids), values, reasons, labels=self.labels, ids=ids)

    def _nothing_to_read(self, caches: dict, ids: list[str]) -> dict[str, str]:
        """id -> why, for the clips some run reads nothing of: it reads streams alone, and
        none of them holds the clip (a vision-only run given a file with no video track)."""
        found: dict[str, str] = {}
        for run, (_, config) in self.runs.items():
            head = head_from_dict(config["head"])
            names = streams_read(head)
            if len(names) != len(inputs_read(head)) or not ids:
                continue  # it reads the backbone's own features too: always there
            cache = caches[config["cache"]["backbone_fingerprint"]]
            rows = [cache.index(i) for i in ids]
            held = np.zeros(len(ids), dtype=bool)
            for name in names:
                mask = cache.stream_view(name).present
                held |= np.ones(len(ids), bool) if mask is None else mask[()][rows]
            why = (
                f"none of the streams {run.name} reads ({', '.join(names)}) could be made "
                "for it (does the file have the track they come from?)"
            )
            found.update({i: why for i, ok in zip(ids, held, strict=True) if not ok})
        return found

    def predict(
        self,
        paths: list[str | Path],
        *,
        work: str | Path | None = None,
        window: float | None = None,
        hop: float | None = None,
        device: str | None = None,
        progress: bool = True,
        trust_remote_code: bool = False,
        out: str | Path | None = None,
    ) -> Predictions:
        """The files among `paths` (files and folders), whole or with `window` (and `hop`,
        default the window) seconds over time. Stage one runs as each run's training cache
        ran it, into caches kept in `work` (default `./emi-media`: a folder emi owns, locked
        while in use) for the next call; a model that runs its own code only with
        `trust_remote_code`. `out`: the file the caller will write, never one of the inputs."""
        if window is not None:
            check_windows(window, hop or window)
        files = collect_media(paths)
        if out is not None:
            check_out(Path(out), files)
        recipes = self.recipes()
        if window is not None and not all(r.audio_only for r in recipes.values()):
            raise MediaError("--window reads the audio alone; these runs read text or video")
        work = prepare_work(Path(work or "emi-media").absolute())
        try:
            lock = ExclusiveLock(work / "work", f"the work folder {work}").acquire()
        except LockedError as error:
            raise MediaError(str(error)) from None
        try:
            return self._predict_in(
                work, files, recipes, window, hop, device, progress, trust_remote_code
            )
        finally:
            lock.release()

    def _predict_in(self, work, files, recipes, window, hop, device, progress, trusted):
        if window is not None:
            media = cut_windows(files, work / "windows", window, hop or window)
        else:
            media = link_media(files, work / "media")
        commands = {}
        for fingerprint, recipe in recipes.items():  # a cache's name never comes from a run
            name = hashlib.blake2b(fingerprint.encode(), digest_size=8).hexdigest()
            cache = work / f"{'windows-' if window else ''}{name}.h5"
            commands[cache] = stage_one_commands(
                recipe, media.folder, cache, trust_remote_code=trusted
            )
        for recipe in recipes.values():
            for role, model in recipe.models():
                log.info("stage one loads %s: %s", role, model)
        for steps in commands.values():
            run_stage_one(steps, progress, cwd=work)
        result = self.predict_cache(list(commands), list(media.files), device=device)
        result.names = [str(media.files[i]) for i in result.ids]
        for k, clip_id in enumerate(result.ids):  # reasons name the user's file, not its link
            original = media.files[clip_id]
            suffix = ".wav" if window is not None else original.suffix.lower()  # cut_windows'
            link = media.folder / f"{clip_id}{suffix}"
            reason = result.reasons[k].replace(str(link), str(original))
            result.reasons[k] = reason.replace(link.name, original.name)
        if window is not None:
            result.starts = [media.spans[i][0] for i in result.ids]
            result.ends = [media.spans[i][1] for i in result.ids]
            _add_undecoded(result, media.reasons)
        return result

    def recipes(self) -> dict[str, RecipeSpec]:
        """backbone fingerprint -> how to make the features every run of it reads (checked
        against the schema when the model was loaded)."""
        recipes: dict[str, RecipeSpec] = {}
        for run, (_, config) in self.runs.items():
            recipe = self._recipes[run]
            if isinstance(recipe, RunError):
                raise recipe
            if recipe is None:
                raise RunError(
                    f"{run} does not record how its features were made (trained before emi "
                    f"recorded it); train it again, or extract your media and use --cache"
                )
            fingerprint = config["cache"]["backbone_fingerprint"]  # recipe: what the run reads
            recipes[fingerprint] = recipes.get(fingerprint, recipe.only([])).joined(recipe)
        return recipes


def _run_recipe(run: Path, config: dict) -> RecipeSpec | RunError | None:
    """The run's recorded stage-one recipe, checked against the schema; an exported folder's
    models only by hub id, built-in name or a folder inside it. A received (exported) folder
    outside the schema is refused at once; a run of this machine's whose recipe no longer holds
    (its backbone folder moved) still predicts from caches, and says why at `--media`."""
    recipe = config["cache"].get("recipe")
    if recipe is None:
        return None
    exported = (run.parent / MODEL_INDEX).is_file()
    place = ModelPlace(run.parent if exported else run, local_paths=not exported)
    reads = streams_read(head_from_dict(config["head"]))
    try:
        return parse_recipe(recipe, place, f"{run / CONFIG}: cache.recipe", reads)
    except RecipeSchemaError as error:
        if exported:
            raise RunError(str(error)) from None
        return RunError(str(error))


def _number(seconds: float) -> str:
    return f"{seconds:.2f}" if np.isfinite(seconds) else ""


def _add_undecoded(result: Predictions, reasons: dict[str, str]) -> None:
    """A file that gave no window still gets its row, with its reason."""
    for name, reason in reasons.items():
        result.names.append(name)
        result.values = np.vstack([result.values, np.full((1, len(result.labels)), np.nan)])
        result.reasons.append(reason)
        result.starts.append(float("nan"))
        result.ends.append(float("nan"))
        result.ids.append("")


def load_model(*sources: str | Path, weights: str | None = None) -> EmiModel:
    """Runs, parents of runs, exported model folders, or the hub id of an exported folder
    (downloaded where the hub is reachable), averaged as one model (`weights`: one per source,
    as `emi predict --weights`). What each run records is checked as data: a crafted folder is
    refused in one line, and nothing it holds runs."""
    if not sources:
        raise RunError("give at least one run, parent folder or model")
    return EmiModel(expand_members([local_source(s) for s in sources]), weights)


def predict_media(
    sources: list[str | Path],
    media: list[str | Path],
    out: str | Path,
    *,
    window: float | None = None,
    hop: float | None = None,
    work: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    weights: str | None = None,
    fit_weights_on: str | Path | None = None,
    trust_remote_code: bool = False,
) -> str:
    """`emi predict --media`: the CSV `out` (and with a window a plot per file beside it);
    returns the line that says what was written."""
    out = Path(out)
    check_writable_folder(out)
    work = Path(work) if work is not None else out.with_name(f"{out.stem}-features")
    model = EmiModel(expand_members([local_source(s) for s in sources]), weights, fit_weights_on)
    result = model.predict(
        media,
        work=work,
        window=window,
        hop=hop,
        device=device,
        progress=progress,
        trust_remote_code=trust_remote_code,
        out=out,
    )
    result.to_csv(out)
    failed = sum(1 for reason in result.reasons if reason)
    line = f"{out}: {len(result.names)} rows"
    if window is not None:
        plots = out.with_name(f"{out.stem}-plots")
        _plot_files(result, plots, model.task)
        line += f" ({window:g} s windows), plots in {plots}"
    return line + (f"; {failed} could not be predicted (see the reason column)" if failed else "")


def _plot_files(result: Predictions, plots: Path, task: Task) -> None:
    """One plot per predicted file, named by its stem; files of the same stem in different
    folders by their path below the folder they share (`a__take.png`, `b__take.png`)."""
    from emi_heads.experiments.plots import plot_over_time

    named = zip(result.names, result.reasons, strict=True)
    names = list(dict.fromkeys(n for n, reason in named if not reason))
    stems = [Path(n).stem for n in names]
    shared = Path(os.path.commonpath([str(Path(n).resolve().parent) for n in names] or ["."]))
    for name, stem in zip(names, stems, strict=True):
        if stems.count(stem) > 1:
            stem = "__".join(Path(name).resolve().relative_to(shared).with_suffix("").parts)
        rows = [k for k, n in enumerate(result.names) if n == name]
        plot_over_time(
            plots / f"{stem}.png",
            Path(name).name,
            [result.starts[k] for k in rows],
            result.values[rows],
            task,
        )


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
