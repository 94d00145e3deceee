"""The one parser of `KEY=VALUE` text (light): `--set KEY=VALUE` of `emi recipe`, `--set
KEY=V1,V2` of `emi train`, and the per-stream options (`--stream-hidden features/face=768`) all
split their pairs here, so that they agree on what a pair is."""

from __future__ import annotations


def split_pair(text: str, option: str) -> tuple[str, str]:
    """`KEY=VALUE` -> (KEY, VALUE), both stripped; the value may hold further `=`. A ValueError
    naming `option` when there is no `=` or no key."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise ValueError(f"{option} {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()
