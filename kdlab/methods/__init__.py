"""Registered distillation methods, one small module each (``python -m kdlab methods`` lists them)."""
from __future__ import annotations

import importlib
import pkgutil

from .base import REGISTRY, Context, Method, State, get, names, register, schedule  # noqa: F401

_loaded = False


def load_all():
    """Import every module in this package so that each registers its methods."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base",) and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
