"""How every stage-one path loads a Hugging Face model: from a local folder, or from the local
cache alone when offline (`--offline` or HF_HUB_OFFLINE, so that no request is retried against
an unreachable hub); never a model folder's own code; `tiny-random` for the offline fixture
encoders; and one line naming the built-ins of that kind when nothing loads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TINY_RANDOM = "tiny-random"  # the tiny random text and image encoders, built offline
TINY_KINDS = ("text", "image")
OWN_CODE = (
    "cannot load model {model!r}: it holds its own Python code, which emi runs only when you "
    "pass --trust-remote-code (read that code first)"
)
_trusted = {"remote_code": False}  # set by --trust-remote-code for this process's loads


def trust_remote_code(allowed: bool) -> None:
    """Let (or stop) this process's model loads run a model folder's own code: only ever from
    an explicit `--trust-remote-code`, never from a prompt."""
    _trusted["remote_code"] = bool(allowed)


class ModelLoadError(ValueError):
    """A model that cannot be loaded; one line."""


def is_offline(offline: bool = False) -> bool:
    """`--offline`, or HF_HUB_OFFLINE set as huggingface_hub reads it."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return offline or value in {"1", "true", "yes", "on"}


def pretrained_options(model: str, offline: bool = False) -> dict[str, bool]:
    """Keyword arguments for every `from_pretrained`: local files only when offline or for a
    folder, and never a folder's own Python code (`trust_remote_code=False`; a local folder
    whose config maps classes to its own code is refused before anything loads)."""
    trusted = _trusted["remote_code"]
    config = Path(model) / "config.json"
    text = config.read_text(encoding="utf-8", errors="replace") if config.is_file() else ""
    if '"auto_map"' in text and not trusted:
        raise ModelLoadError(OWN_CODE.format(model=model))
    return {
        "local_files_only": is_offline(offline) or Path(model).is_dir(),
        "trust_remote_code": trusted,
    }


def user_cache() -> Path:
    """emi's folder in the user's cache: $XDG_CACHE_HOME/emi (default ~/.cache/emi)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "emi"


def resolve_model(model: str, kind: str) -> str:
    """`tiny-random` -> the folder of the tiny random `kind` encoder ("text" or "image"), built
    once in `user_cache()`; any other name as given."""
    if model != TINY_RANDOM:
        return model
    if kind not in TINY_KINDS:
        raise ModelLoadError(f"{TINY_RANDOM} is a text or image encoder; there is no {kind} one")
    folder = user_cache() / f"{TINY_RANDOM}-{kind}"
    if (folder / "config.json").is_file():
        return str(folder)
    from emi_features.sample.layers import WORDS
    from emi_features.sample.tiny_models import save_tiny_image_encoder, save_tiny_text_encoder

    building = folder.with_name(f".{folder.name}.{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    if kind == "text":
        save_tiny_text_encoder(building, list(WORDS))
    else:
        save_tiny_image_encoder(building)
    try:
        os.replace(building, folder)  # another process may have built it first: keep theirs
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
    return str(folder)


def load_error(
    model: str, kind: str, offline: bool, error: Exception, builtins: list[str]
) -> ModelLoadError:
    """One line for a model that did not load: its own code refused, or not found, with the
    built-in names of this kind of model."""
    if "trust_remote_code" in str(error):
        return ModelLoadError(OWN_CODE.format(model=model))
    where = "in the local Hugging Face cache (offline)" if is_offline(offline) else "on the hub"
    named = f"not a built-in {kind} model ({', '.join(builtins)}), " if builtins else ""
    return ModelLoadError(
        f"cannot load {kind} model {model!r}: {named}not a local folder, and not found {where} "
        f"({type(error).__name__}); download it once with `hf download {model}` or pass a "
        f"local folder"
    )
