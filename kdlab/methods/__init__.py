"""Registered distillation methods, one small module each (``python -m kdlab methods`` lists them)."""
from __future__ import annotations

from .base import (REGISTRY, Context, LayerKD, LogitKD, Method, State, get, load_all, names,  # noqa: F401
                   register, schedule)
