"""Many runs at once (seeds, folds, grids), comparing them, and their plots."""
