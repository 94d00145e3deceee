"""Stage one of EMI: decode clips, run a speech backbone once, write the HDF5 feature cache.

Importing this package is light (no torch, no transformers): stage two uses its reader.
"""

__version__ = "0.1.0"
