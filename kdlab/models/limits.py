"""The longest input (``--max-len``) a model's position embeddings take, checked before any expensive work.

A model with learned absolute positions has ``max_position_embeddings`` of them; RoBERTa-style models (roberta,
xlm-roberta, camembert, mpnet) start counting at ``pad_token_id + 1``, so they take that many fewer tokens. A
model without absolute positions (DeBERTa-v2 with ``position_biased_input`` off, rotary ModernBERT) has no limit
here. Beyond the limit a long text fails deep in the model with an index error; here it is one line.
"""
from __future__ import annotations

import json

from ..errors import KdlabError

OFFSET_TYPES = ("roberta", "xlm-roberta", "camembert", "mpnet")
NO_LIMIT_TYPES = ("modernbert",)


def position_limit(config: dict) -> int | None:
    """The longest input a model config (a dict) takes, or None when it has no absolute-position limit."""
    mt = str(config.get("model_type", ""))
    mp = config.get("max_position_embeddings")
    if not isinstance(mp, int) or mt in NO_LIMIT_TYPES or config.get("position_biased_input") is False:
        return None
    if mt in OFFSET_TYPES:
        mp -= int(config.get("pad_token_id") or 0) + 1
    return mp


def _config_of(name_or_path) -> dict | None:
    """The config of a teacher name or folder read without weights (None: a hub name, read when loaded)."""
    from pathlib import Path
    from .core import TINY_CONFIG, is_tiny, resolve, tiny_arch
    if is_tiny(name_or_path):
        from .families import get
        fam = get(tiny_arch(name_or_path))
        return {**TINY_CONFIG, **fam.tiny, "model_type": fam.model_types[0], "pad_token_id": 0}
    try:
        path = resolve(name_or_path)
    except KdlabError:   # e.g. an optional teacher not installed: loading it says so
        return None
    if not isinstance(path, Path):
        return None
    try:
        return json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None


def check_max_len(max_len: int, *, model=None, name=None, option: str = "--max-len"):
    """A KdlabError when ``max_len`` exceeds the position limit of ``model`` (a loaded model) or of the model
    ``name`` (a teacher name or folder)."""
    if model is not None:
        cfg = getattr(model, "config", None)
        config = cfg.to_dict() if hasattr(cfg, "to_dict") else None
    else:
        config = _config_of(name)
    limit = position_limit(config) if config else None
    if limit is not None and max_len > limit:
        what = f"the model '{name}'" if name else "the model"
        raise KdlabError(f"{option} {max_len} is longer than {what} takes ({limit} tokens, its position "
                         f"embeddings): use {option} {limit} or less")
