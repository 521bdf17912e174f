"""The method protocol: a method is an nn.Module that owns its learned projections and says which
features it needs, which layer-mapping matrix W is active, and how to combine the losses.

A method never touches the loop. Every hook below has a default, so a method writes only what differs:

* per optimisation step, ``kdlab.engine.distill`` calls ``prepare_batch(batch, state)`` -> ``need(state)`` ->
  ``mapping(state)`` -> ``loss(student_feats, teacher_feats, batch, state)`` -> (backward) ->
  ``after_backward(student, teacher, state)``; ``on_epoch_start(state)`` at the start of every epoch;
  ``bind(student, teacher)`` once, before the optimiser is built; ``extra_state()`` / ``load_extra_state(d)`` with
  every checkpoint;
* before training, ``kdlab.engine.pipeline.distill_run`` asks the class whether the method is a chain of runs
  (``chain``), for its student (``make_student``) and for its transfer set (``augment_train``).

Data instead of code: what a method needs is ``student_need`` / ``teacher_need``; its fixed option values are
``choices`` and each option's type, range and one-line help an ``Option`` in ``options`` (both checked in one
place, ``check_options``, which the CLI, the dashboard's forms and the constructor share; options common to many
methods are declared once in ``COMMON_OPTIONS``); its W is ``self.W``. ``LogitKD`` is Hinton KD + CE and
``LayerKD`` the template "logit KD + beta x a layer term": a layer method is then its ``__init__`` and its
``layer_loss``.
"""
from __future__ import annotations

import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..kd import losses, mapping as mapping_strategies
from ..errors import KdlabError
from ..models.features import Features, Need
from ..models.core import ModelInfo
from ..kd.objectives import ensemble_target, logit_kd


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
    label_kind: str = "classes"   # the task's labels: classes | score (one output, regression) | multi


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


@dataclass(frozen=True)
class Option:
    """What a method option is: ``kind`` (float | int | bool | choice | text | layers | matrix), a one-line
    ``help``, an allowed range ``lo``..``hi`` (``lo_open``: ``lo`` itself excluded), ``optional`` (None is
    allowed: "automatic", as the help says) and, for the dashboard's select box, ``values``. The dashboard builds
    its form widgets from these; ``check`` gives the message that refuses a bad value."""
    kind: str
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    optional: bool = False
    values: tuple = ()

    def check(self, key: str, v) -> str | None:
        """None when ``v`` fits, else one line naming the problem and the allowed values."""
        if v is None:
            return None if self.optional else f"{key} needs a value ({self.help})"
        if self.kind in ("float", "int"):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (self.kind == "int" and v != int(v)):
                return f"{key} must be {'an integer' if self.kind == 'int' else 'a number'}, got {v!r}"
            if not math.isfinite(float(v)):
                return f"{key} must be a finite number, got {v!r}"
            low = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
            high = self.hi is not None and v > self.hi
            if low or high:
                return f"{key} must be {self.range_text()}, got {v!r} ({self.help})"
        elif self.kind == "bool" and not isinstance(v, bool):
            return f"{key} must be true or false, got {v!r}"
        elif self.kind in ("choice", "text") and not isinstance(v, str):
            return f"{key} must be a name, got {v!r}"
        elif self.kind == "layers" and not (isinstance(v, (list, tuple)) and all(
                isinstance(x, int) and not isinstance(x, bool) for x in v)):
            return f"{key} must be a list of 1-based layer numbers, e.g. [2, 4], got {v!r}"
        elif self.kind == "matrix" and not (isinstance(v, (list, tuple)) and all(isinstance(r, (list, tuple))
                                                                                 for r in v)):
            return f"{key} must be a list of rows, e.g. [[1, 0], [0, 1]], got {v!r}"
        return None

    def range_text(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"<= {self.hi:g}" if self.hi is not None else "a number"


def weight(help: str) -> Option:
    """A non-negative loss weight."""
    return Option("float", help, lo=0.0)


MAPPINGS = ("uniform", "first", "last", "grouped", "random", "explicit", "matrix", "cka")
# options shared by many methods, declared once; a method's own ``options`` override these
COMMON_OPTIONS = dict(
    temperature=Option("float", "softmax temperature T of the soft targets (higher = softer)", lo=0.0, lo_open=True),
    alpha_soft=weight("weight of the soft-target (KD) term"),
    alpha_hard=weight("weight of the hard-label loss (cross-entropy to the gold label)"),
    kd_form=Option("choice", "distance between the softened distributions: kl (Hinton), soft-ce or mse on logits"),
    beta=weight("weight of the layer term"),
    mapping=Option("choice", "which teacher layers each student layer learns from (kdlab.kd.mapping strategy)",
                   values=MAPPINGS),
    mapping_layers=Option("layers", "with mapping=explicit: one 1-based teacher layer per student layer",
                          optional=True),
    mapping_matrix=Option("matrix", "with mapping=matrix: the weight matrix W [student layers x teacher layers]",
                          optional=True),
    mapping_cka=Option("matrix", "with mapping=cka: the linear CKA scores [student layers x teacher layers] each "
                       "student layer takes its best teacher layer from (computed before training when empty)",
                       optional=True),
    projection=Option("choice", "student->teacher width map: auto (linear only when widths differ) or always linear"),
    head_average=Option("bool", "compare attention maps averaged over heads (allows different head counts)"),
    mask_padding=Option("bool", "leave padded positions out of the loss"),
    stage_steps=Option("int", "steps per stage of a progressive schedule (empty = total steps / stages)", lo=1,
                       optional=True),
)
_SCHEDULE_END = "value at the last step (empty = constant)"


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
    """Base class. Subclasses set ``name``, ``summary``, ``defaults`` and implement ``loss``; every other hook
    has a default that does nothing (see the module docstring)."""

    name = "base"
    summary = ""
    defaults: dict = {}
    weights: tuple = ()  # loss-weight options that accept a schedule (merged over the class hierarchy); the
                         # temperature, when a method has one, always does. For each such key ``X``:
                         # ``X_end`` (value at the last step) and ``X_schedule`` (constant | linear | cosine;
                         # linear when only ``X_end`` is given). ``self.w(X, state)`` is the value at a step.
    choices: dict = {}   # option -> its allowed values (merged over the class hierarchy), checked by check_options
    options: dict = {}   # option -> Option (type, range, help), merged over the hierarchy over COMMON_OPTIONS
    student_need = Need()  # the features ``need`` asks of the student and of the teacher (methods whose needs
    teacher_need = Need()  # change during training override ``need``)
    uses_teacher = True
    accepts_unlabeled = True     # rows without a gold label (a transfer set) only reach the teacher terms
    trains_teacher = False   # True: the teacher learns too (its parameters join the optimiser, no freezing,
                             # teacher features computed with gradients); ``loss`` then includes its loss
    needs_attentions = False  # True: load models with eager attention from the start
    student_init = None  # e.g. "skip" when the method prescribes copying teacher layers
    uses_padding = False  # True: a loss reads padded positions, so neither the teacher cache (which re-pads
                          # with zeros) nor length buckets may replace them
    chain = False  # True: a chain of runs handled by kdlab.engine.pipeline (kdlab.engine.chains: teacher assistants,
                   # self-distillation); each hop is a run of another method
    label_kinds = ("classes", "score", "multi")  # the label kinds (kdlab.tasks) the method's loss is defined for;
                   # a method that reads class labels directly sets ("classes",) and refuses other tasks

    @classmethod
    def check_label_kind(cls, kind: str, task_name: str = "") -> None:
        """Refuse, with one clear line, a task whose label kind the method's loss is not defined for."""
        if kind not in cls.label_kinds:
            what = {"score": "a real-valued score", "multi": "several labels per example"}.get(kind, kind)
            raise KdlabError(f"method '{cls.name}' is defined only for {' or '.join(cls.label_kinds)} labels, but the "
                             f"task{' ' + repr(task_name) if task_name else ''} has {what} ({kind}): use a method "
                             "such as kd, kd-mse, hidden, pkd-skip or tinybert")

    def __init__(self, ctx: Context, **overrides):
        super().__init__()
        self.check_options(overrides)
        self.check_label_kind(getattr(ctx, "label_kind", "classes"))
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
    def _merged(cls, attr: str) -> dict:
        d = {}
        for klass in reversed(cls.__mro__):
            d.update(getattr(klass, attr, {}) or {})
        return d

    @classmethod
    def all_defaults(cls) -> dict:
        return cls._merged("defaults")

    @classmethod
    def all_choices(cls) -> dict:
        """``{option: allowed values}`` over the class hierarchy."""
        return cls._merged("choices")

    @classmethod
    def option_specs(cls) -> dict:
        """``{option: Option}`` for every option of ``option_names`` (declared by the method or its bases, else
        ``COMMON_OPTIONS``; ``X_end`` / ``X_schedule`` of a scheduled ``X`` are derived from ``X``'s)."""
        declared = {**COMMON_OPTIONS, **cls._merged("options")}
        out = {}
        for key in cls.option_names():
            if key in declared:
                out[key] = declared[key]
            elif key.endswith("_end") and key[:-4] in declared:
                base = declared[key[:-4]]
                out[key] = Option(base.kind, f"{key[:-4]}: {_SCHEDULE_END}", base.lo, base.hi, base.lo_open, True)
            elif key.endswith("_schedule"):
                out[key] = Option("choice", f"{key[:-9]}: how it moves to {key[:-9]}_end", optional=True,
                                  values=SCHEDULES)
        for key, allowed in cls.all_choices().items():
            if key in out:
                out[key] = Option("choice", out[key].help, optional=out[key].optional, values=tuple(allowed))
        return out

    @classmethod
    def defines(cls, hook: str) -> bool:
        """True when the method replaces the base class's default for ``hook`` (e.g. ``make_student``)."""
        return any(hook in vars(klass) for klass in cls.__mro__[: cls.__mro__.index(Method)])

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
        if "mapping" in names:   # mapping=cka reads its scores (kdlab.analysis.cka_mapping) from this option
            names.add("mapping_cka")
        for key in cls.scheduled_keys():
            names |= {f"{key}_end", f"{key}_schedule"}
        return sorted(names)

    @classmethod
    def check_options(cls, args) -> None:
        """Raise a clear ``KdlabError`` for options the method does not have and for values outside an option's
        ``choices``."""
        unknown = set(args) - set(cls.option_names())
        if unknown:
            raise KdlabError(f"method '{cls.name}' has no option(s) {sorted(unknown)}; "
                             f"its options are {cls.option_names()}")
        for key, allowed in cls.all_choices().items():
            if key in args and args[key] not in allowed:
                raise KdlabError(f"method '{cls.name}': unknown {key} {args[key]!r}: use "
                                 + " or ".join(f"{key}={v}" for v in allowed))
        specs = cls.option_specs()
        for key in sorted(args):
            problem = specs[key].check(key, args[key]) if key in specs else None
            if problem:
                raise KdlabError(f"method '{cls.name}': {problem}")

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

    def build_mapping(self) -> torch.Tensor:
        """W [M, N] from the options ``mapping`` (a ``kdlab.kd.mapping`` strategy), ``mapping_layers`` (for
        ``explicit``) and ``mapping_matrix`` (for ``matrix``), for the context's student and teacher depths."""
        cka = self.hp["mapping"] == "cka"
        return mapping_strategies.build(self.hp["mapping"], self.ctx.student.layers, self.ctx.teacher.layers,
                                        layers=self.hp.get("mapping_layers"), seed=self.ctx.seed,
                                        matrix=self.hp.get("mapping_cka" if cka else "mapping_matrix"))

    # -- what the loop asks, per step ----------------------------------------------------------
    def need(self, state: State) -> tuple[Need, Need]:
        """(student needs, teacher needs): by default the class attributes ``student_need``, ``teacher_need``."""
        return self.student_need, self.teacher_need

    def mapping(self, state: State) -> torch.Tensor | None:
        """The active layer-mapping matrix W [M, N] (by default ``self.W``), or None when no layers are matched."""
        return getattr(self, "W", None)

    def loss(self, s: Features, t: Features | None, batch: dict, state: State):
        """``(total, parts)``: the loss to minimise and named values to log (per-layer ``"<term>/s<i>-t<j>"``)."""
        raise NotImplementedError

    terms = None   # while the loop measures gradient shares (kdlab.analysis.grad_share): {term: its weighted tensor}

    def record_terms(self, **weighted):
        """Name the weighted terms whose sum is the loss (with their graphs), for the loop's gradient shares;
        a no-op except on the steps it measures."""
        if self.terms is not None:
            self.terms.update(weighted)

    def temperature(self, state: State) -> float:
        """The KD temperature at this step (``temperature`` -> ``temperature_end`` along its schedule)."""
        return self.w("temperature", state) if "temperature" in self.hp else 1.0

    @property
    def label_kind(self) -> str:
        return getattr(getattr(self, "ctx", None), "label_kind", "classes")

    def hard_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """The loss to the gold labels for the task's label kind: CE (classes), MSE to the score (score),
        per-label BCE (multi). Rows without a gold label (a transfer set's, ``kdlab.data.transfer``) are left
        out; a batch with none gives 0."""
        from ..data.transfer import labeled_mask
        mask = labeled_mask(batch["labels"])
        if mask is not None:
            if not bool(mask.any()):
                return logits.float().sum() * 0.0
            logits, batch = logits[mask], {**batch, "labels": batch["labels"][mask]}
        kind = self.label_kind
        if kind == "score":
            return losses.score_mse(logits, batch["labels"])
        if kind == "multi":
            return losses.multi_label_bce(logits, batch["labels"])
        return losses.hard_ce(logits, batch["labels"])

    def soft_loss(self, s_logits: torch.Tensor, t_logits: torch.Tensor, form: str, T: float) -> torch.Tensor:
        """The loss to the teacher's outputs for the task's label kind: logit KD of ``form`` at temperature ``T``
        (classes), MSE to the teacher's prediction, no temperature (score), BCE to the teacher's sigmoid
        probabilities at ``T`` (multi)."""
        kind = self.label_kind
        if kind == "score":
            return losses.score_mse(s_logits, t_logits)
        if kind == "multi":
            return losses.multi_label_kd(s_logits, t_logits, T)
        return logit_kd(s_logits, t_logits, form, T)

    def teacher_soft_loss(self, s_logits: torch.Tensor, t: Features, form: str, T: float) -> torch.Tensor:
        """``soft_loss`` to the teacher's features ``t``; for a teacher ensemble (``kdlab.models.teachers``:
        ``t.extra["ensemble"]``) either ``mean-probs`` (the loss to the mean of the teachers' softened
        distributions, ``kdlab.kd.objectives.ensemble_target``) or ``mean-kl`` (the mean of the per-teacher losses)."""
        ens = t.extra.get("ensemble") if t.extra else None
        if ens is None:
            return self.soft_loss(s_logits, t.logits, form, T)
        if ens["form"] == "mean-kl":
            return sum(self.soft_loss(s_logits, z, form, T) for z in ens["logits"]) / len(ens["logits"])
        return self.soft_loss(s_logits, ensemble_target(ens["logits"], T, self.label_kind, form), form, T)

    def kd_term(self, s: Features, t: Features, state: State, parts: dict, form: str = "kl",
                log_temperature: bool = True, key: str = "kd") -> torch.Tensor:
        """The logit-KD term, the one way a method reaches it (``teacher_soft_loss``: ``kdlab.kd.objectives.logit_kd``
        at this step's temperature for classes, the task's own loss for scores and several labels, a teacher
        ensemble's form), recorded in ``parts`` as ``key`` (and ``temperature``; a score task has none)."""
        T = self.temperature(state)
        kd = self.teacher_soft_loss(s.logits, t, form, T)
        parts[key] = kd.detach()
        if log_temperature and self.label_kind != "score":
            parts["temperature"] = torch.tensor(T)
        return kd

    def on_epoch_start(self, state: State):
        """Called at the start of every epoch (e.g. to redraw a random mapping)."""

    def prepare_batch(self, batch: dict, state: State) -> dict:
        """The batch both models read this step: by default ``batch`` itself; an on-policy method replaces some of
        its sequences with the student's own (``kdlab.methods.lm``: gkd)."""
        return batch

    def after_backward(self, student, teacher, state: State):
        """Called after the backward pass (and the DDP all-reduce), before clipping and the optimiser step
        (e.g. gradient mixing or freezing)."""

    def bind(self, student, teacher):
        """Called once with the models, before the optimiser is built (e.g. shared modules, peer models)."""

    def extra_state(self) -> dict:
        """JSON-able state for checkpoints (besides parameters)."""
        return {}

    def load_extra_state(self, d: dict):
        """Restore what ``extra_state`` returned."""

    # -- what the pipeline asks, before training -----------------------------------------------
    @classmethod
    def make_student(cls, teacher, tokenizer, cfg):
        """The method's own student model, or None for the default student (``kdlab.models.core.build_student``
        from the run configuration)."""
        return None

    @classmethod
    def augment_train(cls, bundle, tokenizer, teacher, cfg):
        """The data bundle to train on (e.g. a transfer set enlarged by augmentation); by default ``bundle``."""
        return bundle


class LogitKD(Method):
    """Hinton KD on the logits plus hard-label CE: ``alpha_soft * KD + alpha_hard * CE``."""
    defaults = dict(temperature=2.0, alpha_soft=0.5, alpha_hard=0.5, kd_form="kl")  # + temperature_end/_schedule
    weights = ("alpha_soft", "alpha_hard")
    choices = dict(kd_form=("kl", "soft-ce", "mse"))

    def logit_terms(self, s, t, batch, state):
        """``(alpha_soft * KD + alpha_hard * CE, {"kd", "ce", "temperature"})``. A score task (one output):
        ``alpha_soft * MSE(student, teacher prediction) + alpha_hard * MSE(student, gold)``, no temperature
        (parts ``kd``, ``mse``); multi-label: sigmoid KD with temperature + BCE (``kd``, ``bce``, ``temperature``)."""
        T = self.temperature(state)
        kd = self.teacher_soft_loss(s.logits, t, self.hp["kd_form"], T)
        hard = self.hard_loss(s.logits, batch)
        total = self.w("alpha_soft", state) * kd + self.w("alpha_hard", state) * hard
        name = {"score": "mse", "multi": "bce"}.get(self.label_kind, "ce")
        if self.terms is not None:
            self.record_terms(**{"kd": self.w("alpha_soft", state) * kd, name: self.w("alpha_hard", state) * hard})
        if self.label_kind == "score":
            return total, {"kd": kd.detach(), "mse": hard.detach()}
        return total, {"kd": kd.detach(), name: hard.detach(), "temperature": torch.tensor(T)}

    def loss(self, s, t, batch, state):
        return self.logit_terms(s, t, batch, state)


class LayerKD(LogitKD):
    """Template: logit KD + ``beta`` x a layer term. A subclass writes its ``__init__`` (building ``self.W`` and its
    projections) and ``layer_loss``; the total is ``alpha_soft*KD + alpha_hard*CE + beta*layer`` and the parts are
    the logit parts, the layer parts and the layer sum under ``term``."""
    defaults = dict(beta=1.0)
    weights = ("beta",)
    student_need = teacher_need = Need(hidden=True)
    term = "layer"   # name of the summed layer term in the parts

    def layer_loss(self, s: Features, t: Features, batch: dict, state: State):
        """``(total, parts)`` of the layer term, its per-layer parts named ``"<term>/s<i>-t<j>"``."""
        raise NotImplementedError

    def loss(self, s, t, batch, state):
        total, parts = self.logit_terms(s, t, batch, state)
        layer, lparts = self.layer_loss(s, t, batch, state)
        parts.update(lparts)
        parts[self.term] = layer.detach()
        if self.terms is not None:
            self.record_terms(**{self.term: self.w("beta", state) * layer})
        return total + self.w("beta", state) * layer, parts


REGISTRY: dict[str, type[Method]] = {}


def register(cls):
    if cls.name in REGISTRY:
        raise RuntimeError(f"method {cls.name} registered twice")
    REGISTRY[cls.name] = cls
    return cls


_loaded = False


def load_all():
    """Import every module of this package so that each registers its methods."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")


def get(name: str) -> type[Method]:
    load_all()
    if name not in REGISTRY:
        raise KdlabError(f"unknown method '{name}': run `python -m kdlab methods` to list the methods")
    return REGISTRY[name]


def names(kind: str = "classes") -> list[str]:
    """The registered methods for a task of label kind ``kind`` (``classes``: the classification methods, which
    also cover score and multi-label tasks where their loss is defined; ``ranking``: the ranking objectives; ``lm``:
    the causal-LM objectives)."""
    load_all()
    if kind in OTHER_KINDS:
        return sorted(n for n, c in REGISTRY.items() if kind in c.label_kinds)
    return sorted(n for n, c in REGISTRY.items() if not set(OTHER_KINDS) & set(c.label_kinds))


OTHER_KINDS = ("ranking", "lm")   # tasks with methods of their own (kdlab.methods.ranking, kdlab.methods.lm)
