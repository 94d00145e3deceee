"""The `emi` steps that make a recorded recipe's features again for new media (`emi predict
--media`): a RecipeSpec (`remake.parse_recipe`, checked against the schema) and a folder of
media -> the `emi extract` / `emi transcribe` / `emi embed-text` command lines, each option made
from the modality's settings class, never from a recorded key. Light: no torch.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from emi_features.extraction.registry import modality_class
from emi_features.extraction.remake import RecipeSpec, StreamSpec
from emi_features.text.settings import TextSettings


class RemakeError(ValueError):
    """A recorded stream that emi cannot make again for new media; one line saying why."""


def stage_one_commands(
    spec: RecipeSpec, source: Path, cache: Path, *, trust_remote_code: bool = False
) -> list[list[str]]:
    """The `emi` commands that make, for the media in `source`, the features `spec` describes
    in `cache`: the main extraction, then each stream the cache does not already hold for them.
    `--trust-remote-code` only where the user gave it (`trust_remote_code`)."""
    trusted = ["--trust-remote-code"] if trust_remote_code else []
    commands = [
        [
            "extract",
            str(source),
            "--model",
            spec.resolved(spec.backbone),
            "--out",
            str(cache),
            *_layer_flag(spec.layer),
            "--window-seconds",
            repr(spec.window_seconds),
            "--overlap-seconds",
            repr(spec.overlap_seconds),
            *_runtime_flags(spec.runtime, spec.precision),
            *trusted,
        ]
    ]
    ids = {path.stem for path in source.iterdir()}
    for stream in spec.streams.values():
        if not stream_is_current(cache, stream, ids):
            commands += [[*c, *trusted] for c in _stream_commands(stream, spec, source, cache)]
    return commands


def _stream_commands(
    stream: StreamSpec, spec: RecipeSpec, source: Path, cache: Path
) -> list[list[str]]:
    common = ["--out", str(cache), "--overwrite"]
    if stream.producer == "extract":
        model = ["--model", spec.resolved(stream.model)] if stream.model else []
        pool = ["--pool", "mean"] if stream.pooled else []
        return [
            [
                "extract",
                str(source),
                "--modality",
                str(stream.modality),
                *model,
                "--stream",
                stream.name,
                *settings_flags(str(stream.modality), stream.settings),
                *_layer_flag(stream.layer),
                *pool,
                *_runtime_flags(stream.runtime, stream.precision),
                *common,
            ]
        ]
    if stream.producer == "embed-text" and spec.asr_model:
        base = stream.name.removesuffix("-tokens") if stream.tokens else stream.name
        limit = [] if stream.max_tokens is None else ["--max-tokens", str(stream.max_tokens)]
        return [
            ["transcribe", str(source), "--model", spec.resolved(spec.asr_model), *common],
            [
                "embed-text",
                str(cache),
                "--model",
                spec.resolved(str(stream.model)),
                "--stream",
                base,
                *(["--tokens"] if stream.tokens else []),
                *limit,
                *fields_flags(TextSettings, stream.settings),
                "--overwrite",
            ],
        ]
    if stream.producer == "embed-text":
        raise RemakeError(
            f"the stream features/{stream.name} was embedded from imported transcripts: no "
            f"speech recognizer is recorded to transcribe new media; transcribe them (emi "
            f"transcribe) into a cache and predict with --cache"
        )
    raise RemakeError(
        f"the stream features/{stream.name} was imported ({stream.source or 'emi add-features'}"
        f"): emi cannot make it for new media; add it to a cache of them yourself and predict "
        f"with --cache"
    )


def settings_flags(modality: str, settings: dict[str, Any]) -> list[str]:
    """A modality's validated settings as its `emi extract` options (`fields_flags`)."""
    return fields_flags(modality_class(modality).settings, settings)


def fields_flags(settings_class: type, settings: dict[str, Any]) -> list[str]:
    """Validated settings as the options of the command `settings_class` belongs to (`--fps
    5.0`, a switch as `--x`/`--no-x`), named by the settings class, never by a recorded key."""
    flags: list[str] = []
    for item in fields(settings_class):
        if item.name not in settings:
            continue
        flag = item.metadata.get("flag", item.name).replace("_", "-")
        value = settings[item.name]
        if isinstance(value, bool):
            flags.append(f"--{flag}" if value else f"--no-{flag}")
        else:
            flags += [f"--{flag}", repr(value) if isinstance(value, float) else str(value)]
    return flags


def _layer_flag(layer: int | None) -> list[str]:
    return [] if layer is None else ["--layer", str(layer)]


def _runtime_flags(runtime: str, precision: str) -> list[str]:
    return [
        *(["--runtime", runtime] if runtime != "torch" else []),
        *(["--precision", precision] if precision != "fp32" else []),
    ]


def stream_is_current(cache: Path, stream: StreamSpec, ids: set[str]) -> bool:
    """True when `cache` already holds the stream, made the same way, for every clip of `ids`
    it holds: then the stream is reused, not made again."""
    from emi_features.cache.reader import CacheError, open_cache

    if not cache.is_file():
        return False
    try:
        with open_cache(cache) as opened:
            if opened.stream_fingerprints().get(stream.name) != stream.fingerprint:
                return False
            mask = opened.stream_view(stream.name).present  # its mask only, not its frames
            present = [True] * len(opened) if mask is None else mask[()]
            held = {i for i, kept in zip(opened.ids, present, strict=True) if kept}
            return ids <= held | set(opened.skipped)
    except (CacheError, KeyError, OSError):
        return False
