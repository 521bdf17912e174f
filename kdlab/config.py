"""Run configuration: plain dataclasses, saved as JSON with every run so it can be reproduced."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .choices import (BUDGETS, DEFAULT_STUDENT_LR, DEFAULT_TEACHER_LR, DEFAULTS, PRECISIONS, PRESETS,  # noqa: F401
                      STUDENT_INITS, TEACHER_LR, allowed)
from .errors import KdlabError

D = DEFAULTS   # every default below comes from the one table of run choices (kdlab.choices)


@dataclass
class TrainConfig:
    epochs: int = D["epochs"]
    max_steps: int | None = D["max_steps"]
    batch_size: int = D["batch_size"]
    lr: float = DEFAULT_TEACHER_LR   # RunConfig.train (the student) defaults to DEFAULT_STUDENT_LR (D["lr"])
    weight_decay: float = 0.01
    warmup: float = 0.1
    grad_accum: int = D["grad_accum"]
    clip: float = 1.0
    max_len: int = D["max_len"]
    seed: int = D["seed"]
    device: str = D["device"]
    precision: str = D["precision"]   # auto: fp32 on CPU; on CUDA bf16 autocast, or fp16 + a gradient scaler where the GPU
                                 # has no bf16 (kdlab.engine.distill.autocast_dtype); or fp32 / bf16 / fp16
    threads: int = D["threads"]  # CPU threads; 0 = this process's share of the cores (kdlab.threads)
    eval_each_epoch: bool = True
    log_every: int = 1
    checkpoint_each_epoch: bool = True
    progress: bool = True
    checkpoint_every: int = D["checkpoint_every"]   # also checkpoint (for exact resume) every N optimiser steps; 0 = epochs only
    teacher_cache: str = D["teacher_cache"]   # auto (only when exact) | on | off: reuse teacher outputs per example
    cache_dtype: str = D["cache_dtype"]       # fp32 (exact) | fp16 (half the memory; used with teacher_cache=on)
    cache_max_mb: float = 2048   # stop adding to the teacher cache past this size
    length_buckets: str = D["length_buckets"]   # auto (CPU) | on | off: skip padding, rows of similar length run together
    select: str | None = D["select"]    # 'split:metric': keep the best epoch's model (kdlab.engine.selection)
    patience: int = D["patience"]       # with select: stop after this many epochs without improvement; 0 = never
    tensorboard: bool = D["tensorboard"]   # also write TensorBoard event files into the run's folder (kdlab.engine.tensorboard)
    grad_share_every: int = D["grad_share_every"]   # every N optimiser steps, the gradient norm each loss term puts on the student
                                 # (kdlab.analysis.grad_share, read by `kdlab doctor`); 0 = off

    def validate(self):
        for name in ("epochs", "batch_size", "grad_accum", "max_len"):
            if getattr(self, name) < 1:
                raise KdlabError(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.patience < 0:
            raise KdlabError(f"patience must be 0 (no early stopping) or a positive number of epochs "
                             f"(got {self.patience})")
        if self.select is not None or self.patience:
            from .engine.selection import parse_select
            if parse_select(self.select) is None:
                raise KdlabError("--patience stops when the selected metric stops improving: give it with "
                                 "--select split:metric (e.g. --select dev:accuracy)")
        if self.max_steps is not None and self.max_steps < 1:
            raise KdlabError(f"max-steps must be at least 1 (got {self.max_steps})")
        if not self.lr > 0:
            raise KdlabError(f"learning rate must be positive (got {self.lr})")
        if not 0 <= self.warmup < 1:
            raise KdlabError(f"warmup is a fraction of the steps in [0, 1) (got {self.warmup})")
        if self.precision not in allowed("precision"):
            raise KdlabError(f"precision must be auto, fp32, bf16 or fp16 (got {self.precision})")
        if self.checkpoint_every < 0:
            raise KdlabError(f"checkpoint-every must be 0 (epochs only) or a positive number of steps "
                             f"(got {self.checkpoint_every})")
        if self.teacher_cache not in allowed("teacher_cache"):
            raise KdlabError(f"teacher-cache must be auto, on or off (got {self.teacher_cache})")
        if self.length_buckets not in allowed("length_buckets"):
            raise KdlabError(f"length-buckets must be auto, on or off (got {self.length_buckets})")
        from .threads import check as check_threads
        check_threads(self.threads)
        if self.grad_share_every < 0:
            raise KdlabError(f"grad-share-every must be 0 (off) or a positive number of steps "
                             f"(got {self.grad_share_every})")
        if self.cache_dtype not in allowed("cache_dtype"):
            raise KdlabError(f"cache-dtype must be fp32 or fp16 (got {self.cache_dtype})")
        return self


@dataclass
class RunConfig:
    """Everything a distillation run needs; ``preset='tiny'`` swaps in a tiny random teacher."""
    teacher: str = D["teacher"]
    teacher_finetuned: bool = False    # the teacher is a fine-tuned classifier: used as is (kdlab.models.ready_teacher)
    teachers: list[str] = field(default_factory=list)  # several teachers (an ensemble, kdlab.models.teachers); [] = one
    ensemble: str = D["ensemble"]      # an ensemble's loss: mean-probs (KD to the mean distribution) | mean-kl
    teacher_logits: str | None = None  # a teacher given as soft labels (a .npy/.csv/.tsv file, kdlab.models.teachers)
    data: str | None = None            # None = the embedded corpus; a file, folder or hub name
    text_col: str | None = None        # None = the task's ('sentence' for sentiment); 'a,b' = a sentence pair
    label_col: str | None = None       # None = the task's ('label' for sentiment)
    task: str | None = None            # a built-in task (kdlab.tasks); None = the GLUE folder's, else sentiment
    label_kind: str | None = None      # classes | score | multi; None = the task's
    ood_map: str | None = None         # 'model_label=ood_label,...' for OOD sets with other labels
    ood: list[str] = field(default_factory=list)
    max_train: int | None = None
    max_eval: int | None = None
    data_seed: int | None = None       # the seed of the data's subsampling and dev split; None = train.seed (a
                                       # study fixes it, so every seed's cell trains on the same data and teacher)
    transfer: str | None = None        # a file of extra texts the student learns from the teacher's outputs on
    augment: bool = False              # enlarge the transfer set by augmentation (kdlab.data.augment)
    augment_args: dict = field(default_factory=dict)   # n_samples, p_mask, p_replace, p_ng, ng_max
    student_layers: int = D["student_layers"]
    student_init: str = D["student_init"]   # skip | first | last | explicit | fresh
    student_layer_list: list[int] | None = None
    student_hidden: int | None = None
    student_narrow_init: str = D["student_narrow_init"]  # a narrower student (student_hidden): random | pca | select (kdlab.models.narrow)
    student: str | None = None         # a pretrained student: built-in name, folder or hub name (kdlab.models.students)
    method: str = D["method"]
    method_args: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=D["lr"]))   # DEFAULT_STUDENT_LR
    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=D["teacher_epochs"],
                                                                           lr=DEFAULT_TEACHER_LR))
    trust_remote_code: bool = False
    name: str | None = None
    preset: str | None = None
    preset_applied: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "RunConfig":
        d = dict(d)
        d.pop("task_spec", None)   # the resolved task a stored run records next to its configuration
        known = {f.name for f in dataclasses.fields(RunConfig)}
        unknown = set(d) - known
        if unknown:
            raise KdlabError(f"unknown configuration keys {sorted(unknown)}; known keys are {sorted(known)}")
        tk = {f.name for f in dataclasses.fields(TrainConfig)}
        for key in ("train", "teacher_train"):
            if key in d and isinstance(d[key], dict):
                bad = set(d[key]) - tk
                if bad:
                    raise KdlabError(f"unknown keys {sorted(bad)} in '{key}'; known keys are {sorted(tk)}")
                d[key] = TrainConfig(**d[key])
        return RunConfig(**d)

    def teacher_key(self, data_identity: str) -> str:
        """Identity of a fine-tuned teacher: base model, data, and the fine-tuning settings."""
        t = dataclasses.asdict(self.teacher_train)
        for k in ("progress", "log_every", "device", "eval_each_epoch", "checkpoint_each_epoch",
                  "checkpoint_every", "teacher_cache", "cache_dtype", "cache_max_mb", "tensorboard",
                  "grad_share_every", "threads"):
            t.pop(k, None)
        blob = json.dumps({"teacher": self.teacher, "data": data_identity, "train": t}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- building a RunConfig
# The choices a run is built from, with their defaults (declared in kdlab.choices.TABLE). The command line
# (`kdlab distill --lr ...`), the dashboard and the notebooks all go through ``build_config(**choices)``: these names
# are the CLI's option names. PRESETS and BUDGETS (kdlab.choices) change some of these defaults.
CHOICES = DEFAULTS


def teacher_lr_for(teacher: str) -> float:
    if str(teacher).startswith("tiny-"):   # a tiny random teacher of another family (--arch)
        teacher = "tiny"
    return TEACHER_LR.get(teacher, DEFAULT_TEACHER_LR)


def teacher_members(cfg: RunConfig) -> list[RunConfig]:
    """One single-teacher ``RunConfig`` per teacher of ``cfg`` (``cfg.teachers``, else ``cfg.teacher``): a name
    given again gets the next seed (a seed ensemble), each teacher its own default learning rate. The pipeline
    prepares these; the dashboard finds their folders without loading the engine."""
    out, seen = [], {}
    for name in cfg.teachers or [cfg.teacher]:
        k = seen[name] = seen.get(name, -1) + 1
        lr = cfg.teacher_train.lr
        if name != cfg.teacher and lr == teacher_lr_for(cfg.teacher):   # the default: each teacher's own
            lr = teacher_lr_for(name)
        out.append(dataclasses.replace(cfg, teacher=name, teachers=[], teacher_train=dataclasses.replace(
            cfg.teacher_train, seed=cfg.teacher_train.seed + k, lr=lr)))
    return out


def tiny_teacher_of(arch: str | None, teacher: str) -> str:
    """``--arch FAMILY``: the tiny random teacher of that family (``tiny-FAMILY``; ``tiny`` for bert). Only the
    tiny teacher is built by family; a model folder or name has its own family (its config's model_type)."""
    if not arch:
        return teacher
    from .models.families import get
    get(arch)   # an unknown family: one clear line naming the known ones
    if teacher != "tiny" and not str(teacher).startswith("tiny-"):
        raise KdlabError(f"--arch {arch} builds a tiny random teacher of that family (with --preset tiny or "
                         f"--teacher tiny); the teacher '{teacher}' has its own family: drop --arch")
    return "tiny" if arch == "bert" else f"tiny-{arch}"


def build_config(**choices) -> RunConfig:
    """A validated ``RunConfig`` from the choices (names and defaults in ``CHOICES``; None = the default).

    ``preset`` supplies other defaults (``PRESETS``), ``temperature`` is a shortcut for
    ``method_args['temperature']``, ``data='embedded'`` is the embedded corpus, ``student_init='uniform'`` is
    ``'skip'`` and a ``student_layer_list`` makes the init ``'explicit'``. Raises ``KdlabError`` on a bad choice.
    """
    unknown = sorted(set(choices) - set(CHOICES))
    if unknown:
        raise KdlabError(f"unknown run setting(s) {unknown}: known settings are {', '.join(CHOICES)}")
    preset = choices.get("preset") or None
    if preset is not None and preset not in PRESETS:
        raise KdlabError(f"unknown preset '{preset}': the only preset is {', '.join(map(repr, PRESETS))}")
    c = {**CHOICES, **PRESETS.get(preset, {}), **{k: v for k, v in choices.items() if v is not None}}
    names = [c["teacher"]] if isinstance(c["teacher"], str) else list(c["teacher"])   # --teacher A --teacher B
    if not names:
        raise KdlabError("no teacher given: name one with --teacher")
    names = [tiny_teacher_of(c["arch"], t) for t in names]
    c["teacher"], teachers = names[0], (names if len(names) > 1 else [])
    if c["ensemble"] not in allowed("ensemble"):
        raise KdlabError(f"ensemble must be mean-probs or mean-kl (got {c['ensemble']!r})")
    if teachers and c["teacher_logits"]:
        raise KdlabError("--teacher-logits gives the teacher as soft labels: give one --teacher (the student's base "
                         "model) with it, not several")
    if c["student_init"] not in STUDENT_INITS:
        raise KdlabError(f"student-init must be one of {', '.join(STUDENT_INITS)} (got {c['student_init']})")
    if c["student_layers"] is not None and c["student_layers"] < 1:
        raise KdlabError(f"student-layers must be at least 1 (got {c['student_layers']})")
    if c["student_hidden"] is not None and c["student_hidden"] < 0:   # 0 (the dashboard's): the teacher's width
        raise KdlabError(f"student-hidden is the narrower student's hidden size, e.g. 192 (got {c['student_hidden']}); "
                         "leave it out for the teacher's width")
    for k in ("max_train", "max_eval"):
        if c[k] is not None and c[k] < 0:
            raise KdlabError(f"{k.replace('_', '-')} must be a number of examples, or 0 for all (got {c[k]})")
    init = "skip" if c["student_init"] == "uniform" else c["student_init"]
    if c["student_layer_list"] and init == "skip":
        init = "explicit"
    args = dict(c["method_args"] or {})   # a dict, or (key, value) pairs as `--set` gives them
    if c["temperature"] is not None:
        args["temperature"] = c["temperature"]
    shared = dict(batch_size=c["batch_size"], max_len=c["max_len"], seed=c["seed"], device=c["device"],
                  precision=c["precision"], progress=not c["no_progress"], threads=c["threads"] or 0)
    train = TrainConfig(epochs=c["epochs"], max_steps=c["max_steps"], lr=c["lr"], grad_accum=c["grad_accum"],
                        checkpoint_every=c["checkpoint_every"], teacher_cache=c["teacher_cache"],
                        cache_dtype=c["cache_dtype"], length_buckets=c["length_buckets"], select=c["select"] or None,
                        patience=c["patience"] or 0, tensorboard=bool(c["tensorboard"]),
                        grad_share_every=c["grad_share_every"], **shared).validate()
    teacher_train = TrainConfig(epochs=c["teacher_epochs"], lr=c["teacher_lr"] or teacher_lr_for(c["teacher"]),
                                **shared).validate()
    data = None if str(c["data"] or "").strip().lower() in ("", "embedded") else c["data"]
    if c["student_narrow_init"] not in allowed("student_narrow_init"):
        raise KdlabError(f"student-narrow-init must be random, pca or select (got {c['student_narrow_init']!r})")
    if c["student_narrow_init"] != "random" and not c["student_hidden"]:
        raise KdlabError(f"--student-narrow-init {c['student_narrow_init']} initialises a narrower student: give its "
                         "hidden size with --student-hidden (e.g. 192)")
    if c["label_kind"] is not None and c["label_kind"] not in allowed("label_kind"):
        raise KdlabError(f"label-kind must be classes, score or multi (got {c['label_kind']})")
    if c["task"] is not None or c["text_col"] is not None:   # a bad task name or column list fails here, not later
        from .tasks import resolve
        resolve(None, task=c["task"], text_col=c["text_col"], label_col=c["label_col"], label_kind=c["label_kind"])
    if c["transfer"]:
        from pathlib import Path
        if not Path(str(c["transfer"])).is_file():
            raise KdlabError(f"--transfer: no file {c['transfer']!r}: give a .txt/.tsv/.csv/.jsonl file of texts")
    if c["ood_map"] is not None:
        from .tasks import parse_ood_map
        parse_ood_map(c["ood_map"])
    return RunConfig(teacher=c["teacher"], teacher_finetuned=bool(c["teacher_finetuned"]), teachers=teachers,
                     ensemble=c["ensemble"], teacher_logits=c["teacher_logits"] or None, data=data, text_col=c["text_col"], label_col=c["label_col"],
                     task=c["task"], label_kind=c["label_kind"], ood_map=c["ood_map"],
                     ood=list(c["ood"]), max_train=c["max_train"] or None, max_eval=c["max_eval"] or None,
                     data_seed=c["data_seed"], transfer=c["transfer"] or None, augment=bool(c["augment"]),
                     augment_args=dict(c["augment_args"] or {}),
                     student_layers=c["student_layers"], student_init=init,
                     student_layer_list=c["student_layer_list"], student_hidden=c["student_hidden"] or None,
                     student_narrow_init=c["student_narrow_init"], student=c["student"] or None, method=c["method"], method_args=args, train=train, teacher_train=teacher_train,
                     trust_remote_code=c["trust_remote_code"], name=c["name"], preset=preset,
                     preset_applied=preset is not None)


def apply_preset(cfg: RunConfig) -> RunConfig:
    """A ``RunConfig`` made directly (not by ``build_config``) with ``preset`` set: the preset's values
    (``PRESETS``) replace the teacher and its fine-tuning settings; the student keeps a larger learning rate
    and fewer epochs of its own."""
    if cfg.preset in (None, "") or cfg.preset_applied:
        return cfg
    if cfg.preset not in PRESETS:
        raise KdlabError(f"unknown preset '{cfg.preset}': the only preset is {', '.join(map(repr, PRESETS))}")
    p = PRESETS[cfg.preset]
    cfg.preset_applied = True
    if not str(cfg.teacher).startswith(p["teacher"] + "-"):   # tiny-FAMILY (--arch) stays
        cfg.teacher = p["teacher"]
    if cfg.student_layers == RunConfig.student_layers:  # the default: the preset's student
        cfg.student_layers = p["student_layers"]
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, epochs=p["teacher_epochs"],
                                            lr=teacher_lr_for(p["teacher"]), batch_size=CHOICES["batch_size"],
                                            max_len=p["max_len"])
    cfg.train = dataclasses.replace(cfg.train, lr=max(cfg.train.lr, p["lr"]), max_len=p["max_len"],
                                    epochs=min(cfg.train.epochs, p["epochs"]))
    return cfg
