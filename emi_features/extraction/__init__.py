"""The extraction runner every modality shares: planning parts and windows, decoding workers,
resume, skips, progress, background writes, torchrun, and the extraction config."""
