"""`emi export RUN... --out DIR`: runs as a self-contained model folder that someone else can
load (`emi predict --model DIR --media ...`, `load_model(DIR)`) or publish (`hf upload`).

DIR holds `emi-model.json` (the members and their runs), one folder per run with its weights
(safetensors), its config with no machine paths (file names and digests of the training CSVs,
the stage-one recipe that makes its features) and metrics, and `README.md`: a model card with
the Hugging Face metadata block, the task, the labels, the validation scores, the models it
needs with their licences, and the commands that made it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from emi_features.cache.atomic import WriteError, check_writable_folder, describe_os_error
from emi_features.core.models import MODEL_LICENCES
from emi_features.core.task import EMI, Task
from emi_features.extraction.remake import (
    ModelPlace,
    RecipeSchemaError,
    parse_recipe,
    producer_of,
)
from emi_heads.heads.reads import streams_read
from emi_heads.heads.settings_json import head_from_dict
from emi_heads.training.rundir import CONFIG, METRICS, WEIGHTS, RunError, read_run_config
from emi_heads.use.ensemble import (
    MODEL_FORMAT,
    MODEL_INDEX,
    MODEL_VERSIONS,
    common_task,
    expand_members,
)


def export_model(run_dirs: list[str | Path], out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the model folder `out` (built beside it and renamed: never half written). With
    `overwrite`, only an emi model folder is replaced, and never one that holds a run being
    exported; a failed write leaves nothing behind."""
    out = Path(out)
    members = expand_members(run_dirs)
    _check_out(out, [run for member in members for run in member.runs], overwrite)
    staging = out.with_name(f".{out.name}.export")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_folder(staging, members)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise WriteError(describe_os_error(out, error)) from None
    return out


def _check_out(out: Path, runs: list[Path], overwrite: bool) -> None:
    """Before any work: `out` is a new name, or (with `overwrite`) an emi model folder that is
    none of the runs and holds none of them; its folder can be written."""
    if out.is_symlink():
        raise RunError(f"--out {out} is a symbolic link; give the folder itself")
    check_writable_folder(out)
    target = out.resolve()
    for run in runs:
        place = run.resolve()
        if place == target or target in place.parents or place in target.parents:
            raise RunError(f"--out {out} holds or is inside the run {run}; give another folder")
    if not out.exists():
        return
    if not overwrite:
        raise RunError(f"{out} exists; --overwrite replaces it")
    if not _is_model_folder(out):
        raise RunError(
            f"--out {out} is not an emi model folder; --overwrite replaces only "
            f"one of those: give a new folder"
        )


def _is_model_folder(folder: Path) -> bool:
    try:
        index = json.loads((folder / MODEL_INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return folder.is_dir() and isinstance(index, dict) and index.get("format") == MODEL_FORMAT


def _write_folder(staging: Path, members: list) -> None:
    staging.mkdir(parents=True)
    index: list[list[str]] = []
    configs: dict[str, dict[str, Any]] = {}
    for member in members:
        index.append([])
        for run in member.runs:
            name = f"run-{len(configs)}"
            (staging / name).mkdir()
            shutil.copyfile(run / WEIGHTS, staging / name / WEIGHTS)
            if (run / METRICS).is_file():
                shutil.copyfile(run / METRICS, staging / name / METRICS)
            config = read_run_config(run)
            moved = _carry_local_models(run, config, staging)
            configs[name] = portable_config(config, moved)
            (staging / name / CONFIG).write_text(json.dumps(configs[name], indent=2) + "\n")
            index[-1].append(name)
    header = {"format": MODEL_FORMAT, "format_version": MODEL_VERSIONS[-1]}
    task = common_task(list(configs.values()))
    index_data = {**header, "labels": list(task.targets), "members": index}
    (staging / MODEL_INDEX).write_text(json.dumps(index_data, indent=2) + "\n")
    (staging / "README.md").write_text(model_card(configs, staging, task))


def _carry_local_models(run: Path, config: dict[str, Any], staging: Path) -> dict[str, str]:
    """Every model the run's features need that is a folder of this machine, copied into the
    model folder as `models/NAME` (the only place a received folder may name): path -> name."""
    recipe = config["cache"].get("recipe")
    if recipe is None:
        return {}
    try:
        reads = streams_read(head_from_dict(config["head"]))
        spec = parse_recipe(recipe, ModelPlace(run), f"{run / CONFIG}: cache.recipe", reads)
    except RecipeSchemaError as error:
        raise RunError(str(error)) from None
    moved: dict[str, str] = {}
    for _, model in spec.models():
        if not Path(spec.resolved(model)).is_dir() or model in moved:
            continue  # a hub id or built-in name
        name = f"models/{Path(model).name}"
        while (staging / name).exists():
            name += "-"
        shutil.copytree(spec.resolved(model), staging / name, symlinks=False)
        moved[model] = name
    return moved


def portable_config(config: dict[str, Any], moved: dict[str, str] | None = None) -> dict[str, Any]:
    """A run's config with no path of the machine it was trained on: CSVs, transcripts and
    any other path by file name (the CSVs' digests kept), local models by the name they were
    copied under (`moved`), no cache path, no working directory."""
    portable = json.loads(json.dumps(config))
    portable["cache"].pop("path", None)
    recipe = portable["cache"].get("recipe")
    if recipe is not None:  # only the streams the head reads: what a user must make again
        read = streams_read(head_from_dict(portable["head"]))
        recipe["streams"] = {k: v for k, v in recipe["streams"].items() if k in read}
        if not any(producer_of(v) == "embed-text" for v in recipe["streams"].values()):
            recipe["text"] = None
    portable["train_csvs"] = [Path(p).name for p in portable.get("train_csvs") or []]
    if portable.get("valid_csv"):
        portable["valid_csv"] = Path(portable["valid_csv"]).name
    provenance = portable.get("provenance") or {}
    provenance.pop("cwd", None)
    provenance["csv_digests"] = {
        Path(k).name: v for k, v in (provenance.get("csv_digests") or {}).items()
    }
    portable["provenance"] = provenance
    return _without_paths(portable, moved or {})


_ABSOLUTE = re.compile(r"(?<![\w.:])/[^\s\"',;|]+")


def _without_paths(value: Any, moved: dict[str, str]) -> Any:
    """Every string of a JSON value with a local model's path as its new name, and any other
    absolute path as its file name."""
    if isinstance(value, dict):
        return {k: _without_paths(v, moved) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v, moved) for v in value]
    if isinstance(value, str):
        if value in moved:
            return moved[value]
        return _ABSOLUTE.sub(lambda m: moved.get(m.group(0), Path(m.group(0)).name), value)
    return value


def models_needed(configs: dict[str, dict[str, Any]], folder: Path) -> dict[str, str]:
    """Every model the runs' features need (backbones, stream encoders, speech recognizer) as
    the exported folder names them, with its licence where known."""
    names: list[str] = [
        config["cache"]["backbone"]
        for config in configs.values()
        if not config["cache"].get("recipe")
    ]
    for name, config in configs.items():
        if config["cache"].get("recipe"):
            place = ModelPlace(folder, local_paths=False)
            spec = parse_recipe(config["cache"]["recipe"], place, f"{name}: cache.recipe")
            names += [model for _, model in spec.models()]
    unknown = "see that model's own card"
    return {name: MODEL_LICENCES.get(name, unknown) for name in dict.fromkeys(names)}


def _score_rows(configs: dict[str, dict[str, Any]], folder: Path, task: Task) -> list[str]:
    """One Markdown row per run: its head, preset, valid mean score and each target's."""
    rows = []
    for name, config in configs.items():
        path = folder / name / METRICS
        metrics = json.loads(path.read_text()) if path.is_file() else {}
        scores = metrics.get("valid_r") or {}
        mean = metrics.get("valid_mean_r")
        cells = [
            name,
            config["head"]["head"],
            config.get("preset") or "",
            "–" if mean is None else f"{mean:.3f}",
            *(f"{scores[e]:.3f}" if e in scores else "–" for e in task.targets),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _what_it_predicts(task: Task, metric: str, version: str) -> list[str]:
    """The card's title and first paragraph: the task, its targets and its metric."""
    if task.targets == EMI.targets:
        return [
            "# Emotional Mimicry Intensity model (EMI)",
            "",
            "Predicts six intensities in [0, 1] of a person imitating an emotional video (the "
            "ABAW challenge's EMI task): " + ", ".join(task.targets) + f". Scored by the mean "
            f"{metric} over the six. Made with emi {version}.",
        ]
    value_range = (
        "any value"
        if task.value_range is None
        else (f"values in [{task.value_range[0]:g}, {task.value_range[1]:g}]")
    )
    return [
        f"# A model of emi, task {task.name}",
        "",
        f"Predicts {len(task.targets)} target(s) per recording ({value_range}): "
        + ", ".join(task.targets)
        + f". Scored by the mean {metric} over them. Ids: "
        f"`{task.id_column}`. Made with emi {version}.",
    ]


USE = [
    "## Use",
    "",
    "```bash",
    "emi predict --model THIS_FOLDER --media recordings/ --out intensities.csv",
    "emi predict --model THIS_FOLDER --media long.wav --window 10 --hop 5 \\",
    "    --out over_time.csv",
    "```",
    "",
    "```python",
    "from emi_heads import load_model",
    'result = load_model("THIS_FOLDER").predict(["recordings/"])',
    "```",
    "",
]
RESEARCH_ONLY = [
    "**Research use only**: a model it needs is licensed CC BY-NC-SA 4.0 (audeering's VAD "
    "model), so this model is too.",
    "",
]


def model_card(configs: dict[str, dict[str, Any]], folder: Path, task: Task) -> str:
    """README.md: the Hugging Face metadata block, then what the model is and needs."""
    needed = models_needed(configs, folder)
    research_only = any("NC" in licence for licence in needed.values())
    metric = {"pearson": "Pearson r", "ccc": "concordance correlation (CCC)"}[task.metric]
    first = next(iter(configs.values()))
    return "\n".join(
        [
            *_metadata(research_only, task),
            *_what_it_predicts(task, metric, str(first.get("emi_version", ""))),
            "",
            *USE,
            "## Validation (the runs, averaged as listed in emi-model.json)",
            "",
            "| run | head | preset | mean | " + " | ".join(task.targets) + " |",
            "|" + " --- |" * (4 + len(task.targets)),
            *_score_rows(configs, folder, task),
            "",
            "## What it needs (its features are made again from your media with these)",
            "",
            *(f"- `{name}`: {licence}" for name, licence in needed.items()),
            "",
            *(RESEARCH_ONLY if research_only else []),
            *_provenance(configs),
        ]
    )


def _metadata(research_only: bool, task: Task) -> list[str]:
    """The Hugging Face metadata block."""
    return [
        "---",
        "library_name: emi",
        f"license: {'cc-by-nc-sa-4.0' if research_only else 'mit'}",
        "pipeline_tag: audio-classification",
        "tags: [emotion, emotional-mimicry-intensity, abaw, affective-computing]",
        f"metrics: [{'pearsonr' if task.metric == 'pearson' else 'ccc'}]",
        "---",
        "",
    ]


def _provenance(configs: dict[str, dict[str, Any]]) -> list[str]:
    """The training data's digests and the commands that made the runs."""
    first = next(iter(configs.values()))
    digests = first.get("provenance", {}).get("csv_digests", {})
    commands = [
        " ".join(c["provenance"]["command"])
        for c in configs.values()
        if c.get("provenance", {}).get("command")
    ]
    return [
        "## Training data",
        "",
        *(f"- `{name}`: `{digest}`" for name, digest in digests.items()),
        "",
        "## How it was made",
        "",
        "```bash",
        *commands,
        "```",
        "",
    ]


def export_command_main(run_dirs: tuple[str, ...], out: Path, overwrite: bool) -> str:
    """What `emi export` does and says (the click command in cli.py parses, this acts)."""
    folder = export_model(list(run_dirs), out, overwrite=overwrite)
    runs = sum(1 for p in folder.iterdir() if (p / CONFIG).is_file())
    return f"{folder}: a model of {runs} run(s); load it with `emi predict --model {folder}`"
