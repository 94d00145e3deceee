"""What a cache records of how its features were made, read back as data: the recipe of
`FeatureCache.recipe` (copied into every run's `config.json`) checked against a closed schema,
and turned into the `emi` steps that make the same features for new media.

A recipe may come from a folder someone else wrote (a received run or exported model), so
nothing in it is trusted: each stream's modality must be a registered one, its settings the
fields of that modality's settings class (types and ranges checked by the class itself), every
model a built-in name, a hub id or a folder inside the model folder (an absolute path only in
a run of this machine's, never in an exported folder), names plain words. No option is made
from a recorded key, `--trust-remote-code` never comes from a recipe (only from the user's own
flag), and no path is built from a recorded value. Light: no torch.
"""

from __future__ import annotations

import json
import math
import re
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from emi_features.extraction.registry import MODALITIES, modality_class
from emi_features.text.settings import TextSettings

# a hub id (`owner/name`, or a legacy `name`) or a built-in name: nothing that walks a path
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # a stream's name
RUNTIMES = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")


class RecipeSchemaError(ValueError):
    """A recorded recipe outside the schema; one line naming the field."""


@dataclass(frozen=True)
class ModelPlace:
    """Where a recorded model may be looked for: `base` (the run, or the exported model folder
    its runs sit in), and whether an absolute path of this machine is accepted (a run of this
    machine's) or refused (an exported folder, which never records one)."""

    base: Path
    local_paths: bool = True


@dataclass(frozen=True)
class StreamSpec:
    """How one stream (`/features/NAME`) is made: by `emi extract` (`modality`, `model`, its
    `settings`, pooled or not, a layer), by `emi embed-text` (its text `model`, `tokens`,
    `max_tokens`), or imported (`producer` "imported": emi cannot make it again)."""

    name: str
    producer: Literal["extract", "embed-text", "imported"]
    fingerprint: str
    source: str = ""
    modality: str | None = None
    model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    pooled: bool = False
    layer: int | None = None
    runtime: str = "torch"
    precision: str = "fp32"
    tokens: bool = False
    max_tokens: int | None = None
    medium: str = "audio"  # what it is made from: audio, video, or text (the transcripts)


@dataclass(frozen=True)
class RecipeSpec:
    """The main extraction (`backbone` and its settings), every stream, and the speech
    recognizer that made the transcripts (None: imported, or none)."""

    backbone: str
    fingerprint: str
    layer: int | None
    window_seconds: float
    overlap_seconds: float
    runtime: str
    precision: str
    streams: dict[str, StreamSpec]
    asr_model: str | None
    place: ModelPlace

    def resolved(self, model: str) -> str:
        """A recorded model as `--model` takes it (stage one runs in the work folder): a folder
        inside the model folder, or a run's own local folder, as its absolute path; a hub id or
        built-in name as recorded (checked when read)."""
        inside = _inside(self.place.base, model)
        if inside is not None:
            return str(inside)
        if self.place.local_paths and Path(model).is_dir():  # as the run's extraction found it
            return str(Path(model).resolve())
        return model

    def only(self, names: list[str]) -> RecipeSpec:
        """The recipe with only the streams `names` (what a run reads)."""
        return replace(self, streams={k: v for k, v in self.streams.items() if k in names})

    def joined(self, other: RecipeSpec) -> RecipeSpec:
        """This recipe with the streams of `other` (a run of the same backbone) added."""
        return replace(self, streams={**self.streams, **other.streams})

    def models(self) -> list[tuple[str, str]]:
        """(what for, model) of every model its steps load, each once."""
        found = [("backbone", self.backbone)]
        for spec in self.streams.values():
            if spec.producer == "embed-text" and self.asr_model:
                found.append(("speech recognizer", self.asr_model))
            if spec.model:
                found.append((f"stream {spec.name}", spec.model))
        return list(dict.fromkeys(found))

    @property
    def audio_only(self) -> bool:
        """Every stream made from the audio alone (windows can be cut from it)."""
        return all(s.medium == "audio" and s.producer == "extract" for s in self.streams.values())


def parse_recipe(
    recipe: Any, place: ModelPlace, where: str = "recipe", reads: list[str] | None = None
) -> RecipeSpec:
    """The recorded `recipe` (JSON data) as a RecipeSpec — with `reads`, only those streams
    (what a run reads; the others are never made) — or a RecipeSchemaError naming the first
    field outside the schema (`where` prefixes it: the file it came from)."""
    if not isinstance(recipe, dict):
        raise RecipeSchemaError(f"{where}: not an object")
    main = _object(recipe.get("extraction"), f"{where}: extraction")
    streams = _object(recipe.get("streams", {}), f"{where}: streams")
    specs = {}
    for name, attrs in streams.items():
        label = f"{where}: stream {name!r}"
        if reads is not None and name not in reads:
            continue
        if not isinstance(name, str) or not _NAME.match(name):
            raise RecipeSchemaError(f"{label}: a stream's name is a plain word")
        specs[name] = _stream(name, _object(attrs, label), place, label)
    missing = sorted(set(reads or ()) - set(specs))
    if missing:
        raise RecipeSchemaError(
            f"{where}: no recorded stream {', '.join(missing)} (read by the head)"
        )
    text = recipe.get("text")
    asr = None
    if any(s.producer == "embed-text" for s in specs.values()) and text is not None:
        text = _object(text, f"{where}: text")
        asr = _model(text.get("model"), place, f"{where}: text.model", True)
    return RecipeSpec(
        backbone=_model(main.get("backbone"), place, f"{where}: extraction.backbone"),
        fingerprint=_text(main.get("backbone_fingerprint", ""), f"{where}: backbone_fingerprint"),
        layer=_layer(main.get("layer"), f"{where}: extraction.layer"),
        window_seconds=_seconds(main.get("window_seconds", 30.0), f"{where}: window_seconds"),
        overlap_seconds=_seconds(
            main.get("overlap_seconds", 4.0), f"{where}: overlap_seconds", zero=True
        ),
        runtime=_choice(main.get("runtime", "torch"), RUNTIMES, f"{where}: runtime"),
        precision=_choice(main.get("precision", "fp32"), PRECISIONS, f"{where}: precision"),
        streams=specs,
        asr_model=asr or None,
        place=place,
    )


PRODUCERS = ("extract", "embed-text", "imported")  # what a stream's `producer` attribute says


def producer_of(attrs: dict) -> str:
    """Which command made a stream: its recorded `producer` (streams written since it is
    recorded), else derived once from the command line an older writer recorded (`source`)."""
    if "producer" in attrs:
        return str(attrs["producer"])
    source = str(attrs.get("source", ""))
    if source.startswith("emi-extract"):
        return "extract"
    return "embed-text" if source.startswith("emi embed-text") else "imported"


def _stream(name: str, attrs: dict, place: ModelPlace, label: str) -> StreamSpec:
    source = _text(attrs.get("source", ""), f"{label}: source")
    common = {
        "name": name,
        "fingerprint": _text(attrs.get("fingerprint", ""), f"{label}: fingerprint"),
        "source": source,
    }
    producer = _choice(producer_of(attrs), PRODUCERS, f"{label}: producer")
    if producer == "extract":
        modality, settings = _recorded_modality(attrs, source, label)
        model = None
        if modality_class(modality).default_model is not None:
            model = _model(attrs.get("backbone"), place, f"{label}: backbone")
        return StreamSpec(
            **common,
            producer="extract",
            modality=modality,
            model=model,
            settings=settings,
            pooled=bool(attrs.get("pooled")),
            layer=_layer(attrs.get("layer"), f"{label}: layer") if modality == "audio" else None,
            runtime=_choice(attrs.get("runtime", "torch"), RUNTIMES, f"{label}: runtime"),
            precision=_choice(attrs.get("precision", "fp32"), PRECISIONS, f"{label}: precision"),
            medium=modality_class(modality).source,
        )
    if producer == "embed-text":
        recorded = attrs.get("model") or source.removeprefix("emi embed-text --model ").strip()
        maximum = attrs.get("max_tokens")
        if maximum is not None and (not _is_int(maximum) or int(maximum) <= 0):
            raise RecipeSchemaError(f"{label}: max_tokens must be a positive whole number")
        return StreamSpec(
            **common,
            producer="embed-text",
            model=_model(recorded, place, f"{label}: model"),
            tokens=attrs.get("unit") == "token" or name.endswith("-tokens"),
            max_tokens=None if maximum is None else int(maximum),
            medium="text",
            settings=checked_fields(
                TextSettings,
                _object(_json_object(attrs.get("settings"), label), f"{label}: settings"),
                label,
                "emi embed-text",
            ),
        )
    return StreamSpec(**common, producer="imported", medium="imported")


def _recorded_modality(attrs: dict, source: str, label: str) -> tuple[str, dict[str, Any]]:
    """The modality and its validated settings; for a stream written before they were
    recorded, vision's from its frame rate and crop, else audio's."""
    if "modality" in attrs:
        modality = _choice(attrs["modality"], tuple(MODALITIES), f"{label}: modality")
        settings = _json_object(attrs.get("settings"), label)
    elif source.startswith("emi-extract --modality vision"):
        modality = "vision"
        settings = {"fps": attrs.get("frame_rate"), "crop": attrs.get("crop", "none")}
    else:
        modality, settings = "audio", {}
    return modality, checked_settings(modality, _object(settings, f"{label}: settings"), label)


def _json_object(raw: Any, label: str) -> Any:
    """A recorded `settings` attribute (JSON text, or absent: none recorded) as a value."""
    try:
        return json.loads(raw or "{}") if isinstance(raw, str) or raw is None else raw
    except ValueError:
        raise RecipeSchemaError(f"{label}: settings is not JSON") from None


def checked_settings(modality: str, settings: dict, label: str) -> dict[str, Any]:
    """`settings` as the modality's own settings class takes them (`checked_fields`)."""
    return checked_fields(
        modality_class(modality).settings, settings, label, f"--modality {modality}"
    )


def checked_fields(settings_class: type, settings: dict, label: str, owner: str) -> dict[str, Any]:
    """`settings` as `settings_class` takes them: only its fields, each of its type (a Literal
    one of its choices), its ranges checked by the class; JSON-ready. `owner`: what the
    settings belong to, for the message (`--modality vision`, `emi embed-text`)."""
    hints = typing.get_type_hints(settings_class)
    known = {f.name for f in fields(settings_class)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise RecipeSchemaError(
            f"{label}: {', '.join(map(str, unknown))} is not a setting of "
            f"{owner} (its settings: "
            f"{', '.join(sorted(known)) or 'none'})"
        )
    values = {k: _typed(v, hints[k], f"{label}: settings.{k}") for k, v in settings.items()}
    try:
        made = settings_class(**values)
    except (TypeError, ValueError) as error:
        raise RecipeSchemaError(f"{label}: {error}") from None
    return {f.name: getattr(made, f.name) for f in fields(made)}


def _typed(value: Any, kind: Any, label: str) -> Any:
    allowed = typing.get_args(kind) if typing.get_origin(kind) is Literal else None
    if allowed is not None:
        return _choice(value, allowed, label)
    if kind is bool:
        if not isinstance(value, bool):
            raise RecipeSchemaError(f"{label}: must be true or false")
        return value
    if kind is int:
        if not _is_int(value):
            raise RecipeSchemaError(f"{label}: must be a whole number")
        return int(value)
    if kind is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise RecipeSchemaError(f"{label}: must be a finite number")
        return float(value)
    if kind is str:
        return _text(value, label)
    raise RecipeSchemaError(f"{label}: a setting of a type a recipe cannot carry")


def _model(value: Any, place: ModelPlace, label: str, empty_ok: bool = False) -> str:
    """A recorded model, checked: a built-in name or hub id, a folder inside `place.base`, an
    absolute folder only where `place.local_paths`."""
    if empty_ok and value in ("", None):
        return ""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise RecipeSchemaError(f"{label}: a model is a hub id, a built-in name or a folder")
    if _HUB_ID.match(value) and ".." not in value:
        return value
    if place.local_paths and Path(value).is_dir():  # a folder of this machine's own run
        return value
    if Path(value).is_absolute():
        raise RecipeSchemaError(
            f"{label}: {value} is a path outside the model folder; a received model names "
            f"its models by hub id, or holds them inside its folder"
        )
    if _inside(place.base, value) is None:
        raise RecipeSchemaError(f"{label}: {value} is not a folder inside {place.base}")
    return value


def _inside(base: Path, relative: str) -> Path | None:
    """`base/relative` when it is a folder that resolves inside `base` (no link out of it)."""
    if Path(relative).is_absolute():
        return None
    candidate = (base / relative).resolve()
    root = base.resolve()
    if candidate.is_dir() and candidate != root and root in candidate.parents:
        return candidate
    return None


def _object(value: Any, label: str) -> dict:
    if not isinstance(value, dict):
        raise RecipeSchemaError(f"{label}: must be an object, not {type(value).__name__}")
    return value


def _text(value: Any, label: str) -> str:
    if not isinstance(value, str) or "\x00" in value or len(value) > 4096:
        raise RecipeSchemaError(f"{label}: must be text")
    return value


def _choice(value: Any, allowed: tuple, label: str) -> Any:
    if value not in allowed:
        raise RecipeSchemaError(f"{label}: {value!r} is not one of {', '.join(map(str, allowed))}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _layer(value: Any, label: str) -> int | None:
    if value in (None, "last"):
        return None
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,4}", value):
        return int(value)
    if not _is_int(value) or abs(value) > 9999:
        raise RecipeSchemaError(f"{label}: a layer is a whole number or 'last'")
    return int(value)


def _seconds(value: Any, label: str, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecipeSchemaError(f"{label}: must be a number of seconds")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero) or value > 86400:
        raise RecipeSchemaError(f"{label}: {value} seconds is out of range")
    return float(value)
