"""Run configuration: plain dataclasses, saved as JSON with every run so it can be reproduced."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .errors import KdlabError


@dataclass
class TrainConfig:
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    grad_accum: int = 1
    clip: float = 1.0
    max_len: int = 64
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"      # auto: bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16
    eval_each_epoch: bool = True
    log_every: int = 1
    checkpoint_each_epoch: bool = True
    progress: bool = True
    checkpoint_every: int = 0    # also checkpoint (for exact resume) every N optimiser steps; 0 = epochs only
    teacher_cache: str = "auto"  # auto (only when exact) | on | off: reuse teacher outputs per example
    cache_dtype: str = "fp32"    # fp32 (exact) | fp16 (half the memory; used with teacher_cache=on)
    cache_max_mb: float = 2048   # stop adding to the teacher cache past this size
    length_buckets: str = "auto"  # auto (CPU) | on | off: skip padding, rows of similar length run together

    def validate(self):
        for name in ("epochs", "batch_size", "grad_accum", "max_len"):
            if getattr(self, name) < 1:
                raise KdlabError(f"{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.max_steps is not None and self.max_steps < 1:
            raise KdlabError(f"max-steps must be at least 1 (got {self.max_steps})")
        if not self.lr > 0:
            raise KdlabError(f"learning rate must be positive (got {self.lr})")
        if not 0 <= self.warmup < 1:
            raise KdlabError(f"warmup is a fraction of the steps in [0, 1) (got {self.warmup})")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise KdlabError(f"precision must be auto, fp32 or bf16 (got {self.precision})")
        if self.checkpoint_every < 0:
            raise KdlabError(f"checkpoint-every must be 0 (epochs only) or a positive number of steps "
                             f"(got {self.checkpoint_every})")
        if self.teacher_cache not in ("auto", "on", "off"):
            raise KdlabError(f"teacher-cache must be auto, on or off (got {self.teacher_cache})")
        if self.length_buckets not in ("auto", "on", "off"):
            raise KdlabError(f"length-buckets must be auto, on or off (got {self.length_buckets})")
        if self.cache_dtype not in ("fp32", "fp16"):
            raise KdlabError(f"cache-dtype must be fp32 or fp16 (got {self.cache_dtype})")
        return self


@dataclass
class RunConfig:
    """Everything a distillation run needs; ``preset='tiny'`` swaps in a tiny random teacher."""
    teacher: str = "minilm-l6"
    data: str | None = None            # None = the embedded corpus; a file, folder or hub name
    text_col: str = "sentence"
    label_col: str = "label"
    ood: list[str] = field(default_factory=list)
    max_train: int | None = None
    max_eval: int | None = None
    student_layers: int = 3
    student_init: str = "skip"         # skip | first | last | explicit | fresh
    student_layer_list: list[int] | None = None
    student_hidden: int | None = None
    method: str = "kd"
    method_args: dict = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, lr=5e-5))
    trust_remote_code: bool = False
    name: str | None = None
    preset: str | None = None
    preset_applied: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "RunConfig":
        d = dict(d)
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
                  "checkpoint_every", "teacher_cache", "cache_dtype", "cache_max_mb"):
            t.pop(k, None)
        blob = json.dumps({"teacher": self.teacher, "data": data_identity, "train": t}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def apply_preset(cfg: RunConfig) -> RunConfig:
    if cfg.preset in (None, "") or cfg.preset_applied:
        return cfg
    if cfg.preset == "tiny":
        cfg.preset_applied = True
        cfg.teacher = "tiny"
        if cfg.student_layers == RunConfig.student_layers:  # the default: half of the tiny 4-layer teacher
            cfg.student_layers = 2
        cfg.teacher_train = dataclasses.replace(cfg.teacher_train, epochs=3, lr=1e-3, batch_size=32, max_len=48)
        cfg.train = dataclasses.replace(cfg.train, lr=max(cfg.train.lr, 5e-4), max_len=48,
                                        epochs=min(cfg.train.epochs, 2))
        return cfg
    raise KdlabError(f"unknown preset '{cfg.preset}': the only preset is 'tiny'")
