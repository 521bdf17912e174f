"""Checks of a whole run configuration read from a file (``--config FILE``), before any work: every value of the
type its field declares, and the values ``build_config`` would refuse on the command line refused here too, so a
mistake is one line before the teacher is fine-tuned (and a preset never silently replaces a bad value)."""
from __future__ import annotations

import dataclasses

from .config import STUDENT_INITS, RunConfig, TrainConfig
from .errors import KdlabError

_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,), "None": (type(None),),
          "TrainConfig": (dict,)}
_NAMES = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false", "dict": "an object",
          "None": "null", "TrainConfig": "an object"}


def _accepts(annotation: str, value) -> bool:
    for t in (a.strip() for a in str(annotation).split("|")):
        if t.startswith("list"):
            if isinstance(value, list):
                return True
            continue
        kinds = _TYPES.get(t)
        if kinds is None:
            return True   # a type this check does not know: left to the code that reads it
        if isinstance(value, bool) and bool not in kinds:
            continue   # true/false is not a number here
        if isinstance(value, kinds):
            return True
    return False


def _describe(annotation: str) -> str:
    parts = [a.strip() for a in str(annotation).split("|")]
    return " or ".join("a list" if p.startswith("list") else _NAMES.get(p, p) for p in parts)


def check_types(d: dict, path: str, cls=RunConfig, where: str = ""):
    """A KdlabError naming the first key of ``d`` whose value is not of its field's type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in d.items():
        f = fields.get(k)
        if f is None:
            continue   # unknown keys: RunConfig.from_dict names them
        if not _accepts(f.type, v):
            raise KdlabError(f"the config file '{path}': '{where}{k}' must be {_describe(f.type)} (got {v!r})")
        if f.type == "TrainConfig" and isinstance(v, dict):
            check_types(v, path, TrainConfig, where=f"{where}{k}.")


def check_values(cfg: RunConfig, path: str):
    """The checks ``build_config`` makes on the command line, for a configuration read from ``path``."""
    from .methods import get
    try:
        cfg.train.validate()
    except KdlabError as e:
        raise KdlabError(f"the config file '{path}', train: {e}") from None
    try:
        cfg.teacher_train.validate()
    except KdlabError as e:
        raise KdlabError(f"the config file '{path}', teacher_train: {e}") from None
    if cfg.student_layers < 1:
        raise KdlabError(f"the config file '{path}': student_layers must be at least 1 (got {cfg.student_layers})")
    if cfg.student_hidden is not None and cfg.student_hidden < 1:
        raise KdlabError(f"the config file '{path}': student_hidden must be a positive hidden size, or null for the "
                         f"teacher's width (got {cfg.student_hidden})")
    for k in ("max_train", "max_eval"):
        if getattr(cfg, k) is not None and getattr(cfg, k) < 0:
            raise KdlabError(f"the config file '{path}': {k} must be a number of examples, or null / 0 for all "
                             f"(got {getattr(cfg, k)})")
    if cfg.student_init not in STUDENT_INITS:
        raise KdlabError(f"the config file '{path}': student_init must be one of {', '.join(STUDENT_INITS)} "
                         f"(got {cfg.student_init!r})")
    try:
        method = get(cfg.method)
    except KdlabError:   # a ranking or LM method (routed by the pipeline, which names an unknown one at once)
        return
    method.check_options(cfg.method_args)
