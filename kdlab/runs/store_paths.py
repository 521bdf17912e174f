"""Where a run store is and what it may do: paths recorded relative to the store, read-only stores.

Model folders inside a store are recorded relative to it, so a store that is moved or copied (a workshop pack
handed to a class) finds its own models where it lands. Stores written before that recorded absolute paths:
``resolve`` looks such a path up inside this store first (the longest tail of it that exists here, e.g.
``<run>/student``), so a moved store finds its models and a copied one reads its own, not the original's (a run
folder deleted in the copy is reported gone, never read from the original); a path outside any store
(``$KDLAB_TEACHERS``) is used as recorded.
"""
from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from urllib.parse import quote

RUN_FOLDER = re.compile(r"^\d{8}-\d{6}-")   # a run's folder name (Store.create_run: date-time-method-hex)

# artifacts that hold paths: name -> the keys of a dict value that are paths ("*": every value; None: the value)
PATH_ARTIFACTS = {"model_dir": None, "selection": ("model_dir", "last_model_dir"), "models": "*"}


def map_paths(name: str, value, fn):
    """``value`` of the artifact ``name`` with ``fn`` applied to each path it holds."""
    if name not in PATH_ARTIFACTS or value is None:
        return value
    keys = PATH_ARTIFACTS[name]
    if keys is None:
        return fn(value) if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(value, dict):
        return value
    return {k: fn(v) if (keys == "*" or k in keys) and isinstance(v, (str, os.PathLike)) and v else v
            for k, v in value.items()}


def relative(root, path) -> str:
    """``path`` relative to the store ``root`` when it is inside it, else absolute."""
    a, r = os.path.abspath(path), os.path.abspath(root)
    return os.path.relpath(a, r) if a == r or a.startswith(r.rstrip(os.sep) + os.sep) else a


def resolve(root, recorded) -> str:
    """A recorded path as an absolute path on this machine (see the module's docstring)."""
    p = Path(recorded)
    root = Path(os.path.abspath(root))
    if not p.is_absolute():
        return str(root / p)
    parts = p.parts[1:]
    for i in range(len(parts) - 1):   # the longest tail first, at least two parts (<run>/student, teachers/<key>)
        cand = root.joinpath(*parts[i:])
        if cand.exists():
            return str(cand)
    for i in reversed(range(len(parts) - 1)):   # a run's folder of the store this one was copied from: this
        if RUN_FOLDER.match(parts[i]):           # store's own, even where it is gone (never the original's model)
            return str(root.joinpath(*parts[i:]))
    return str(p)   # outside any store (a shared teacher cache): as recorded


def writable(root: Path, db: Path) -> bool:
    return os.access(root, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))


def readonly_uri(db: Path) -> str:
    """A read-only SQLite URI for ``db``; ``immutable`` where even the WAL index cannot be made (a read-only
    folder without the database's -shm file)."""
    uri = f"file:{quote(os.path.abspath(db))}?mode=ro"
    try:
        c = sqlite3.connect(uri, uri=True)
        try:
            c.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            c.close()
        return uri
    except sqlite3.Error:
        return uri + "&immutable=1"
