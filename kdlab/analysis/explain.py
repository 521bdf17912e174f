"""The numbers the teaching views show, computed by the engine so that the dashboard, the notebooks and the CLI
get the same ones: one example through a teacher and a student (Temperature lab, Inspect), the softened
distributions and the KD term at a temperature, the student-teacher disagreements on an evaluation set (Out of
domain), the configuration differences of stored runs (Compare runs) and a teacher's fine-tuning progress
(Setup)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.batching import encode_texts, model_inputs
from ..models.features import Need, features
from ..kd.losses import kd_kl
from .probs import entropy, mapped_probs, predicted, softened
from ..records import Features


# ----------------------------------------------------------------------------------------------- one example
def encode_example(tokenizer, text: str, text_b: str | None = None, max_len: int = 64) -> dict:
    """One text (or a pair) encoded as the run's batches are (``kdlab.data.batching.encode_texts``)."""
    return encode_texts(tokenizer, [text], None if text_b is None else [text_b], max_len=max_len)


def example_logits(models: dict, tokenizer, text: str, text_b: str | None = None, max_len: int = 64) -> dict:
    """{name: logits [C] (numpy float32)} of each model on one example."""
    batch = model_inputs(encode_example(tokenizer, text, text_b, max_len))
    with torch.inference_mode():
        return {k: m(**batch).logits[0].float().numpy() for k, m in models.items()}


@dataclass
class Example:
    """Teacher and student features on one example (hidden states and attentions), its tokens and the
    separator positions of a pair."""
    teacher: Features
    student: Features
    tokens: list
    separators: list


def inspect_example(teacher, student, tokenizer, text: str, text_b: str | None = None,
                    max_len: int = 64) -> Example:
    enc = encode_example(tokenizer, text, text_b, max_len)
    batch = model_inputs(enc)
    need = Need(hidden=True, attentions=True)
    with torch.inference_mode():
        ft, fs = features(teacher, batch, need), features(student, batch, need)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    seps = [j for j, x in enumerate(tokens) if x == tokenizer.sep_token] if text_b is not None else []
    return Example(ft, fs, tokens, seps)


def output_probs(logits, kind: str = "classes"):
    """What a model's outputs on one example mean for the task: class probabilities (``classes``), one sigmoid
    per label (``multi``) or the score itself (``score``)."""
    z = np.asarray(logits.detach().float() if hasattr(logits, "detach") else logits, dtype=np.float64)
    if kind == "score":
        return z[..., 0]
    if kind == "multi":
        return 1.0 / (1.0 + np.exp(-z))
    return softened(z)


# ----------------------------------------------------------------------------------------------- temperature
def temperature_terms(teacher_logits, student_logits, T: float) -> dict:
    """One example's softened distributions at T and the KD term: ``kl`` = KL(p_T ‖ q_S) of the softened
    distributions, ``kd_loss`` = T²·KL (``kdlab.kd.losses.kd_kl``), each distribution's entropy (nats) and the
    teacher's top probability at T and at T = 1."""
    zt, zs = np.asarray(teacher_logits, dtype=np.float64), np.asarray(student_logits, dtype=np.float64)
    loss = float(kd_kl(torch.tensor(zs)[None], torch.tensor(zt)[None], T))
    pt, ps = softened(zt, T), softened(zs, T)
    return {"T": float(T), "p_teacher": pt, "p_student": ps, "kl": loss / (T * T), "kd_loss": loss,
            "entropy_teacher": float(entropy(pt)), "entropy_student": float(entropy(ps)),
            "top_teacher": float(pt.max()), "top_teacher_T1": float(softened(zt).max())}


# ----------------------------------------------------------------------------------------------- disagreements
def class_disagreements(logits: dict, labels, label_map=None) -> dict:
    """A classification evaluation set seen by a student and (optionally) its teacher (``logits``: {"student": [n, C],
    "teacher": [n, C]}): each model's probabilities over the set's classes (``label_map`` applied: summed per
    mapped class) and predicted class, the agreement and the indices where the two predictions differ."""
    probs = {k: mapped_probs(softened(v), label_map) for k, v in logits.items()}
    preds = {k: predicted(v, label_map) for k, v in logits.items()}
    out = {"probs": probs, "preds": preds, "labels": np.asarray(labels)}
    if "teacher" in logits and "student" in logits:
        dis = np.nonzero(preds["student"] != preds["teacher"])[0]
        out["disagree"] = dis
        out["agreement"] = 1 - len(dis) / max(1, len(out["labels"]))
    return out


def score_differences(logits: dict) -> np.ndarray:
    """|student − teacher| of a score task's predictions, per example."""
    return np.abs(np.asarray(logits["student"])[:, 0] - np.asarray(logits["teacher"])[:, 0])


def label_set_disagreements(logits: dict) -> np.ndarray:
    """Indices where a multi-label task's predicted label sets (logit > 0) differ between student and teacher."""
    return np.nonzero(((np.asarray(logits["student"]) > 0) != (np.asarray(logits["teacher"]) > 0)).any(axis=1))[0]


# ----------------------------------------------------------------------------------------------- stored runs
def flatten(d: dict, prefix: str = "") -> dict:
    """A nested configuration as {"train.lr": value, ...} (lists as their text)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if not isinstance(v, list) else str(v)
    return out


def config_diff(runs: list[dict]) -> dict:
    """{setting: [value per run]} of the settings (method, kind and the flattened stored configuration) whose values
    differ between stored runs; names left out."""
    flat = [{"method": r["method"], "kind": r["kind"], **flatten(r.get("config") or {})} for r in runs]
    keys = sorted({k for d in flat for k in d})
    diff = {k: [str(d.get(k, "")) for d in flat] for k in keys}
    return {k: v for k, v in diff.items() if len(set(v)) > 1 and not k.endswith("name")}


def teacher_progress(store, since: float, names: list[str], total: int) -> tuple[float, str] | None:
    """Progress of fine-tuning the teachers ``names`` (``kdlab teacher`` started at ``since``, one after the other,
    ``total`` steps each): (fraction of all, a short line), or None before the first one has started."""
    from ..engine.pipeline import teacher_run_name
    wanted = {teacher_run_name(n) for n in names}
    started = [r for r in store.runs(kind="teacher") if r["created"] >= since - 1 and r["name"] in wanted]
    if not started:
        return None
    cur = max(started, key=lambda r: r["created"])
    step = max((r["step"] for r in store.metrics(cur["id"])), default=0)
    i = len(started) - 1
    frac = (i + min(1.0, step / max(1, total))) / max(1, len(names))
    text = f"step {step}/{total}" if len(names) == 1 else f"teacher {i + 1}/{len(names)} · step {step}/{total}"
    return min(1.0, frac), text
