"""Using trained runs: ensembles, submissions, new recordings, model folders, the Python API."""
