"""The feature cache: the one contract both stages read. Its format (`schema`), the reader, the
crash-safe writer, feature streams and transcripts keyed by id, atomic writes and locks."""
