"""The face: per-frame image-encoder embeddings of a clip's video."""
