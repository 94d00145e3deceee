"""What a recipe is made of (light: no torch): `Step` (one `emi` command whose arguments name
settings as `{key}`), `Recipe` (a published system: its settings, steps, citations and what it
does differently), and the steps and settings the recipes share. The recipes themselves:
`recipes.book`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emi_features.core.models import ASR_MODEL_ID, VAD_MODEL_ID
from emi_heads.training.presets import PRESETS

MODEL_KEYS = ("audio_model", "asr_model", "text_model", "image_model")
WHOLE_NUMBER_SETTINGS = ("epochs", "seed", "max_tokens", "unimodal_epochs")  # checked by --set


@dataclass(frozen=True)
class Step:
    """One `emi` command of a recipe. `makes`: what it leaves, checked before it is skipped
    (`cache`, `transcripts`, `stream:NAME`, `run`, `submission`)."""

    name: str
    command: tuple[str, ...]  # `emi` subcommand and arguments; `{key}` are settings
    makes: str
    when: str = ""  # a setting that must be non-empty for the step to run


@dataclass(frozen=True)
class Recipe:
    name: str
    system: str
    published: str  # the published score, as the paper reports it
    settings: dict[str, str]
    steps: tuple[Step, ...]
    citations: tuple[str, ...]
    remote_code: tuple[str, ...] = ()  # settings whose default model runs its own code
    notes: tuple[str, ...] = field(default=())
    differs: tuple[str, ...] = field(default=())  # what the recipe does unlike the system, why


DATA, CACHE, RUN = "{data}", "{cache}", "{run}"
EXTRACT_AUDIO = Step(
    "audio", ("extract", DATA, "--model", "{audio_model}", "--out", CACHE), "cache"
)
TRANSCRIBE = Step(
    "transcripts",
    ("transcribe", DATA, "--model", "{asr_model}", "--out", CACHE),
    "transcripts",
    when="!transcripts",
)
IMPORT_TRANSCRIPTS = Step(
    "transcripts",
    ("transcribe", DATA, "--transcripts", "{transcripts}", "--out", CACHE),
    "transcripts",
    when="transcripts",
)


def face_step(*extra: str) -> Step:
    """The image encoder on the face, `fps` samples a second (`extra`: its other options)."""
    return Step(
        "face",
        (
            "extract",
            DATA,
            "--modality",
            "vision",
            "--model",
            "{image_model}",
            "--stream",
            "face",
            "--fps",
            "{fps}",
            "--crop",
            "{crop}",
            *extra,
            "--out",
            CACHE,
        ),
        "stream:face",
    )


PREDICT = Step(
    "submission",
    ("predict", RUN, "--cache", CACHE, "--ids", "{data}/test_split.csv", "--out", "{submission}"),
    "submission",
)
TRAIN = (
    "train",
    CACHE,
    "--train",
    "{data}/train_split.csv",
    "--valid",
    "{data}/valid_split.csv",
    "--out",
    RUN,
    "--seed",
    "{seed}",
)


def text_step(*extra: str) -> Step:
    return Step(
        "text",
        ("embed-text", CACHE, "--model", "{text_model}", "--stream", "text", *extra),
        "stream:text",
    )


def train_step(*options: str) -> Step:
    return Step("train", (*TRAIN, *options, "--epochs", "{epochs}"), "run")


def media_steps(text: tuple[str, ...] = (), face: tuple[str, ...] = ()) -> tuple[Step, ...]:
    """The stage one of a system that reads the voice, the words and the face: the audio
    backbone, the transcripts (imported with `--set transcripts=FILE`, else Whisper), the text
    encoder and the image encoder on the face (each with its own options)."""
    return (EXTRACT_AUDIO, IMPORT_TRANSCRIPTS, TRANSCRIBE, text_step(*text), face_step(*face))


def media_settings(**models: str) -> dict[str, str]:
    """The settings every multimodal recipe has, its own models and knobs over them."""
    return {
        "audio_model": VAD_MODEL_ID,
        "asr_model": ASR_MODEL_ID,
        "transcripts": "",
        "fps": "5",
        "crop": "face",
        "epochs": "30",
        "seed": "0",
        **models,
    }


def preset_options(name: str) -> tuple[str, ...]:
    return ("--preset", name)


def training_of(preset: str, *, without: tuple[str, ...] = ("epochs",)) -> tuple[str, ...]:
    """A preset's training settings as `emi train` options, for a recipe that trains another
    head the way that preset's system trained its own (the same authors' code); `without`:
    settings the recipe sets itself."""
    options: list[str] = []
    for key, value in PRESETS[preset].train.items():
        if key in without:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            options.append(flag if value else f"--no-{flag[2:]}")
        else:  # None: the option's 0 (max_seconds: all; ema_decay: tied to the run)
            options += [flag, "0" if value is None else str(value)]
    return tuple(options)
