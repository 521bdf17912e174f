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


SCHEDULES = ("constant", "linear", "cosine")


def schedule(kind: str, start: float, end: float, progress: float) -> float:
    """Value of a constant / linear / cosine schedule from ``start`` to ``end`` at progress in [0, 1]."""
    if kind not in SCHEDULES:
        raise KdlabError(f"unknown schedule '{kind}': use constant, linear or cosine")
    if kind == "constant" or start == end:
        return start
    if kind == "linear":
        return start + (end - start) * progress
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


class Method(nn.Module):
    """Base class. Subclasses set ``name``, ``summary``, ``defaults`` and implement ``loss``."""

    name = "base"
    summary = ""
    defaults: dict = {}
    weights: tuple = ()  # loss-weight options that accept a schedule (merged over the class hierarchy); the
                         # temperature, when a method has one, always does. For each such key ``X``:
                         # ``X_end`` (value at the last step) and ``X_schedule`` (constant | linear | cosine;
                         # linear when only ``X_end`` is given). ``self.w(X, state)`` is the value at a step.
    uses_teacher = True
    trains_teacher = False   # True: the teacher learns too (its parameters join the optimiser, no freezing,
                             # teacher features computed with gradients); ``loss`` then includes its loss
    needs_attentions = False  # True: load models with eager attention from the start
    student_init = None  # e.g. "skip" when the method prescribes copying teacher layers
    uses_padding = False  # True: a loss reads padded positions, so neither the teacher cache (which re-pads
                          # with zeros) nor length buckets may replace them

    # Regimes that are a chain of runs (teacher assistants, self-distillation) define
    #   @classmethod run_chain(cls, cfg, store, *, teacher, tokenizer, bundle, teacher_run, log) -> run_id
    # and ``kdlab.pipeline.distill_run`` hands the whole run to it.
    # Methods with their own student architecture define
    #   @classmethod make_student(cls, teacher, tokenizer, cfg) -> model

    def __init__(self, ctx: Context, **overrides):
        super().__init__()
        self.check_options(overrides)
        self.ctx = ctx
        self.hp = {**self.all_defaults(), **overrides}
        for key in self.scheduled_keys():
            end, kind = f"{key}_end", f"{key}_schedule"
            if overrides.get(end) is not None and kind not in overrides:
                self.hp[kind] = "linear"
            if self.hp.get(kind) is None:
                self.hp[kind] = "constant"
            if self.hp[kind] not in SCHEDULES:
                raise KdlabError(f"method '{self.name}': unknown {kind} '{self.hp[kind]}': use constant, linear "
                                 "or cosine")
            for k in (key, end):
                v = self.hp.get(k)
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise KdlabError(f"method '{self.name}': {k} must be a number, got {v!r}")

    @classmethod
    def all_defaults(cls) -> dict:
        d = {}
        for klass in reversed(cls.__mro__):
            d.update(getattr(klass, "defaults", {}) or {})
        return d

    @classmethod
    def scheduled_keys(cls) -> tuple:
        """Options whose value may follow a schedule over training: the loss weights and the temperature."""
        keys = []
        for klass in reversed(cls.__mro__):
            keys += [k for k in getattr(klass, "weights", ()) or () if k not in keys]
        if "temperature" in cls.all_defaults() and "temperature" not in keys:
            keys.append("temperature")
        return tuple(keys)

    @classmethod
    def option_names(cls) -> list[str]:
        """Every option the method accepts: its defaults plus ``X_end`` / ``X_schedule`` for scheduled ``X``."""
        names = set(cls.all_defaults())
        for key in cls.scheduled_keys():
            names |= {f"{key}_end", f"{key}_schedule"}
        return sorted(names)

    @classmethod
    def check_options(cls, args) -> None:
        """Raise a clear ``KdlabError`` for options the method does not have."""
        unknown = set(args) - set(cls.option_names())
        if unknown:
            raise KdlabError(f"method '{cls.name}' has no option(s) {sorted(unknown)}; "
                             f"its options are {cls.option_names()}")

    @classmethod
    def resolve_options(cls, args: dict) -> dict:
        """The method's defaults overridden by ``args``, after ``check_options`` (for methods that read their
        options before an instance exists: chains of runs, augmentation)."""
        cls.check_options(args)
        return {**cls.all_defaults(), **args}

    def w(self, key: str, state: State, start: float | None = None) -> float:
        """Value of option ``key`` (a loss weight or the temperature) at ``state``'s progress: ``start`` (default
        the option's value) moving to ``<key>_end`` along ``<key>_schedule``; constant when no end is set."""
        v = self.hp[key] if start is None else start
        end = self.hp.get(f"{key}_end")
        kind = self.hp.get(f"{key}_schedule") or "constant"
        if v is None:
            return v
        if end is None or kind == "constant":
            return float(v)
        return schedule(kind, float(v), float(end), state.progress)

    def schedule_parts(self, state: State) -> dict:
        """``{"weight/<key>": value}`` for every option with a non-constant schedule (logged by the loop)."""
        out = {}
        for key in self.scheduled_keys():
            if key != "temperature" and self.hp.get(f"{key}_end") is not None \
                    and self.hp.get(f"{key}_schedule") != "constant" and self.hp.get(key) is not None:
                out[f"weight/{key}"] = torch.tensor(self.w(key, state))
        return out

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
        """The KD temperature at this step (``temperature`` -> ``temperature_end`` along its schedule)."""
        return self.w("temperature", state) if "temperature" in self.hp else 1.0

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
