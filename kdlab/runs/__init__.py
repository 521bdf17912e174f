"""The run store and what belongs to a stored run: the SQLite store and its paths, a stored run read back (run_record),
exact-resume checkpoints, the preparation lock, disk use, a run's progress."""
