"""Safety helpers: paths given through the dashboard are confined to configured roots."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import KdlabError

PATH_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".txt")


def looks_like_path(spec) -> bool:
    """Whether a typed value (data, a teacher, a student) names a file or folder rather than a hub name
    (``name`` or ``org/name``): the one rule the data loader and the dashboard share, so a value the loader
    would open as a path is the value the dashboard confines (``confine``)."""
    s = str(spec).strip()
    parts = s.replace("\\", "/").split("/")
    return (s.lower().endswith(PATH_SUFFIXES) or os.path.isabs(s) or s.startswith((".", "~")) or "\\" in s
            or s.count("/") >= 2 or ".." in parts or ("/" in s and Path(s).suffix != ""))


def confine(path, roots) -> Path:
    """``path`` resolved (symlinks and ``..`` followed) if it lies inside one of ``roots``, else KdlabError."""
    p = Path(os.path.expanduser(str(path))).resolve()
    resolved = [Path(os.path.expanduser(str(r))).resolve() for r in roots]
    for r in resolved:
        if p == r or r in p.parents:
            return p
    raise KdlabError(f"the path '{path}' is outside the allowed folders ({', '.join(map(str, resolved))}): "
                     "move the file there or add its folder to KDLAB_ALLOWED_DIRS")
