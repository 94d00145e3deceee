"""The bundled synthetic sample, its other modalities, and tiny offline models for tests."""
