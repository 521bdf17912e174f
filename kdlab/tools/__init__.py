"""Tools built on the engine: the benchmark, CKA for a stored run, the demo, and the process launcher the
dashboard uses. A first reading of kdlab can skip this package."""
