"""Stage two of EMI: heads trained from the feature cache in seconds, and submission files.

Never imports transformers: everything it needs from stage one is in the cache. `load_model`
(see `emi_heads.use.model`) is imported on first use, so `import emi_heads` stays light.
"""

from typing import Any

from emi_features import __version__

__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from emi_heads.use.model import load_model

        return load_model
    raise AttributeError(f"module 'emi_heads' has no attribute {name!r}")
