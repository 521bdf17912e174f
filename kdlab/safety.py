"""Safety helpers: paths given through the dashboard are confined to configured roots."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import KdlabError


def confine(path, roots) -> Path:
    """``path`` resolved (symlinks and ``..`` followed) if it lies inside one of ``roots``, else KdlabError."""
    p = Path(os.path.expanduser(str(path))).resolve()
    resolved = [Path(os.path.expanduser(str(r))).resolve() for r in roots]
    for r in resolved:
        if p == r or r in p.parents:
            return p
    raise KdlabError(f"the path '{path}' is outside the allowed folders ({', '.join(map(str, resolved))}): "
                     "move the file there or add its folder to KDLAB_ALLOWED_DIRS")
