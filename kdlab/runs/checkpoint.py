"""Checkpoints for exact resume, in safetensors + JSON (no pickle anywhere).

A checkpoint folder holds the student (``save_pretrained``, safetensors) and tokenizer, the method's
learned parameters (``method.safetensors``), and ``train_state.safetensors`` + ``state.json``:
optimizer state tensors flattened as ``opt.<param index>.<name>``, the RNG states (torch, CUDA, numpy
as tensors; Python's as JSON), and in JSON the step, epoch, batches consumed in the current epoch,
optimizer hyper-parameters, scheduler state, the fp16 gradient scaler's state (its loss scale and growth
counter; only when the run has a scaler) and the method's extra state. Written to
``<folder>.partial`` and renamed, so a kill during the write keeps the previous checkpoint.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import KdlabError


def _rng_state() -> tuple[dict, dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    ver, internal, gauss = random.getstate()
    js = {"numpy": [kind, int(pos), int(has_gauss), float(cached)], "python": [ver, list(internal), gauss]}
    return tensors, js


def _set_rng_state(tensors: dict, js: dict):
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    ver, internal, gauss = js["python"]
    random.setstate((ver, tuple(internal), gauss))


def optimizer_state(opt) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = v
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"groups": groups, "scalars": scalars}


def load_optimizer_state(opt, tensors: dict, js: dict):
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in js.get("scalars", {}).items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": js["groups"]})


def scheduler_state(sched) -> dict:
    return {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}


def save_checkpoint(folder, student, tokenizer, method, state, *, opt=None, sched=None, position: dict | None = None,
                    scaler=None):
    """Student (save_pretrained, safetensors) + method parameters + (optionally) the full training state."""
    from ..models.core import quiet_hf
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    quiet_hf()
    student.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    sd = {k: v.detach().cpu().contiguous() for k, v in method.state_dict().items()}
    if sd:
        save_file(sd, str(tmp / "method.safetensors"))
    info = {"step": state.step, "epoch": state.epoch, "method": method.name, "extra": method.extra_state()}
    if opt is not None:
        tensors, ojs = optimizer_state(opt)
        rng, rjs = _rng_state()
        tensors.update(rng)
        # the student's own state dict, exactly (save_pretrained may tie or rename weights); a tied weight (e.g. a
        # causal LM's input embeddings and output head) is stored under each of its names, as a copy, since
        # safetensors refuses tensors that share memory
        seen = set()
        for k, v in student.state_dict().items():
            t = v.detach().cpu().contiguous()
            if t.data_ptr() in seen:
                t = t.clone()
            seen.add(t.data_ptr())
            tensors[f"student.{k}"] = t
        save_file(tensors, str(tmp / "train_state.safetensors"))
        info.update(optimizer=ojs, scheduler=scheduler_state(sched) if sched is not None else None, rng=rjs,
                    position=position or {}, memo=_jsonable(state.memo))
        if scaler is not None:   # GradScaler.state_dict(): the scale and counters, plain floats and ints
            info["scaler"] = {k: float(v) if isinstance(v, float) else v for k, v in scaler.state_dict().items()}
    (tmp / "state.json").write_text(json.dumps(info, default=str))
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in (d or {}).items():
        try:
            json.dumps(v)
            out[k] = v
        except (TypeError, ValueError):
            pass
    return out


def find_checkpoint(folder) -> Path | None:
    """The newest complete checkpoint: ``checkpoint``, or ``checkpoint.old`` if a kill hit the rename."""
    folder = Path(folder)
    for p in (folder, folder.with_name(folder.name + ".old")):
        if (p / "state.json").exists() and (p / "train_state.safetensors").exists():
            return p
    return None


def load_checkpoint(folder, student, method, opt, sched, state, *, scaler=None) -> dict:
    """Restore everything ``save_checkpoint`` wrote; returns the data position. RNG is restored by
    ``restore_rng`` (call it right before training continues). A ``scaler`` takes the saved loss scale; a
    checkpoint without one (written in bf16 or fp32) leaves it at its initial scale."""
    p = find_checkpoint(folder)
    if p is None:
        raise KdlabError(f"no resumable checkpoint in '{folder}': the run stopped before its first checkpoint; "
                         "start it again (use --checkpoint-every N to checkpoint during an epoch)")
    info = json.loads((p / "state.json").read_text())
    tensors = load_file(str(p / "train_state.safetensors"))
    sd = {k[len("student."):]: v for k, v in tensors.items() if k.startswith("student.")}
    student.load_state_dict(sd, strict=True)
    if (p / "method.safetensors").exists():
        method.load_state_dict(load_file(str(p / "method.safetensors")), strict=False)
    method.load_extra_state(info.get("extra") or {})
    load_optimizer_state(opt, tensors, info["optimizer"])
    if sched is not None and info.get("scheduler"):
        sched.load_state_dict({**info["scheduler"], "lr_lambdas": [None] * len(getattr(sched, "lr_lambdas", []))})
    if scaler is not None and info.get("scaler"):
        scaler.load_state_dict(info["scaler"])
    state.step, state.epoch = int(info["step"]), int(info["epoch"])
    state.memo.update(info.get("memo") or {})
    pos = dict(info.get("position") or {})
    pos["_rng"] = ({k: v for k, v in tensors.items() if k.startswith("rng.")}, info["rng"])
    return pos


def restore_rng(pos: dict):
    if "_rng" in pos:
        _set_rng_state(*pos["_rng"])


def checkpoint_position(folder) -> tuple[int, int]:
    """(step, epoch) of a complete checkpoint folder (as ``find_checkpoint`` returns it)."""
    info = json.loads((Path(folder) / "state.json").read_text())
    return int(info["step"]), int(info["epoch"])
