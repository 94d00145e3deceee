"""The words of each clip: Whisper transcription and text-encoder embeddings."""
