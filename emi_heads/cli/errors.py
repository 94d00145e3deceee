"""The exceptions that mean bad input to an `emi` command: one line, exit 1."""

from __future__ import annotations


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean bad input: one line, exit 1. Imported only once a command runs."""
    from emi_features.cache.atomic import WriteError
    from emi_features.cache.reader import CacheError
    from emi_features.core.dataset import DatasetError
    from emi_features.core.devices import DeviceError
    from emi_heads.training.labels import LabelError
    from emi_heads.training.rundir import RunError
    from emi_heads.use.submission import SubmissionError

    return (
        DatasetError,
        DeviceError,
        CacheError,
        LabelError,
        RunError,
        SubmissionError,
        WriteError,
        ValueError,
    )
