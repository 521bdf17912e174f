"""The method protocol: a method is an nn.Module that owns its learned projections and says which
features it needs, which layer-mapping matrix W is active, and how to combine the losses.

A method never touches the loop; the loop (``kdlab.distill``) calls, per optimisation step:
``need(state)`` -> ``mapping(state)`` -> ``loss(student_feats, teacher_feats, batch, state)``, and
the optional hooks ``on_epoch_start``, ``after_backward`` (e.g. gradient mixing) and ``teacher_loss``
(for regimes whose teacher also learns).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import KdlabError
from ..features import Features, Need
from ..models import ModelInfo


@dataclass
class Context:
    """What a method may know when it is built."""
    teacher: ModelInfo | None
    student: ModelInfo
    num_labels: int
    total_steps: int = 1
    steps_per_epoch: int = 1
    seed: int = 0
    num_train: int = 0
    teacher_model: object = field(default=None, repr=False)  # the teacher module itself (e.g. to
                                                             # reuse its frozen classification head)


@dataclass
class State:
    """Where the loop is; methods may keep their own values in ``memo``."""
    step: int = 0
    epoch: int = 0
    total_steps: int = 1
    steps_per_epoch: int = 1
    memo: dict = field(default_factory=dict)

    @property
    def progress(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))


def schedule(kind: str, start: float, end: float, progress: float) -> float:
    """Value of a constant / linear / cosine schedule from ``start`` to ``end`` at progress in [0, 1]."""
    if kind == "constant" or start == end:
        return start
    if kind == "linear":
        return start + (end - start) * progress
    if kind == "cosine":
        return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))
    raise KdlabError(f"unknown schedule '{kind}': use constant, linear or cosine")


class Method(nn.Module):
    """Base class. Subclasses set ``name``, ``summary``, ``defaults`` and implement ``loss``."""

    name = "base"
    summary = ""
    defaults: dict = {}
    uses_teacher = True
    trains_teacher = False   # True: the teacher learns too (its parameters join the optimiser, no freezing,
                             # teacher features computed with gradients); ``loss`` then includes its loss
    needs_attentions = False  # True: load models with eager attention from the start
    student_init = None  # e.g. "skip" when the method prescribes copying teacher layers

    # Regimes that are a chain of runs (teacher assistants, self-distillation) define
    #   @classmethod run_chain(cls, cfg, store, *, teacher, tokenizer, bundle, teacher_run, log) -> run_id
    # and ``kdlab.pipeline.distill_run`` hands the whole run to it.
    # Methods with their own student architecture define
    #   @classmethod make_student(cls, teacher, tokenizer, cfg) -> model

    def __init__(self, ctx: Context, **overrides):
        super().__init__()
        unknown = set(overrides) - set(self.all_defaults())
        if unknown:
            raise KdlabError(f"method '{self.name}' has no option(s) {sorted(unknown)}; "
                             f"its options are {sorted(self.all_defaults())}")
        self.ctx = ctx
        self.hp = {**self.all_defaults(), **overrides}

    @classmethod
    def all_defaults(cls) -> dict:
        d = {}
        for klass in reversed(cls.__mro__):
            d.update(getattr(klass, "defaults", {}) or {})
        return d

    # -- what the loop asks ------------------------------------------------------------------
    def need(self, state: State) -> tuple[Need, Need]:
        """(student needs, teacher needs)."""
        return Need(), Need()

    def mapping(self, state: State) -> torch.Tensor | None:
        """The active layer-mapping matrix W [M, N], or None when no layers are matched."""
        return None

    def loss(self, s: Features, t: Features | None, batch: dict, state: State):
        raise NotImplementedError

    def temperature(self, state: State) -> float:
        T = float(self.hp.get("temperature", 1.0))
        return schedule(self.hp.get("temperature_schedule", "constant"), T,
                        float(self.hp.get("temperature_end", T)), state.progress)

    def on_epoch_start(self, state: State):
        pass

    def after_backward(self, student, teacher, state: State):
        pass

    def extra_state(self) -> dict:
        """JSON-able state for checkpoints (besides parameters)."""
        return {}

    def load_extra_state(self, d: dict):
        pass


REGISTRY: dict[str, type[Method]] = {}


def register(cls):
    if cls.name in REGISTRY:
        raise RuntimeError(f"method {cls.name} registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Method]:
    from . import load_all
    load_all()
    if name not in REGISTRY:
        raise KdlabError(f"unknown method '{name}': run `python -m kdlab methods` to list the methods")
    return REGISTRY[name]


def names() -> list[str]:
    from . import load_all
    load_all()
    return sorted(REGISTRY)
