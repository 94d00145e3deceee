"""Stage two of EMI: heads trained from the feature cache in seconds, and submission files.

Never imports transformers: everything it needs from stage one is in the cache.
"""

from emi_features import __version__

__all__ = ["__version__"]
