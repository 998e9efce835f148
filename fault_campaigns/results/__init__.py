"""Stage 3, results: classification of each run against the golden trace and the SQLite results store."""
