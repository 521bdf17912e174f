"""Decoder-layer mapping of a stored LM run (the Layer mapping page's LM view): which teacher layer each student
layer was copied from as the mapping matrix W [M, N] (``kdlab.kd.mapping``; the same W the hidden-state term uses,
``kdlab.methods.lm``), and the linear CKA between the teacher's and the student's decoder layers on held-out
texts (``kdlab.analysis.cka``; each layer's outputs mean-pooled over the non-padding positions of an example)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..errors import KdlabError


def run_mapping(store, run_id: str) -> dict:
    """{"W" [M, N], "M", "N", "copied" (1-based teacher layers, or None for a student of its own: W is then the
    uniform mapping), "hidden_weight", "method"} of a stored LM student run."""
    from ..kd import mapping
    run = store.run(run_id)
    if run["kind"] != "student":
        raise KdlabError(f"run {run_id} is a teacher run: pick a student run to see its layer mapping")
    conf = run.get("config") or {}
    lm = conf.get("lm") or {}
    layers = conf.get("student_layers_from")
    folder = store.artifact(run_id, "model_dir")
    try:
        M = int(json.loads((Path(str(folder)) / "config.json").read_text())["num_hidden_layers"])
    except (OSError, ValueError, KeyError, TypeError):
        raise KdlabError(f"run {run_id} has no saved student (status {run['status']}): pick a finished LM run") \
            from None
    N = _teacher_layers(store, run_id)
    if layers:
        W = mapping.explicit([int(i) + 1 for i in layers], N)
        copied = [int(i) + 1 for i in layers]
    else:
        W, copied = mapping.uniform(M, N), None
    return {"W": np.asarray(W, dtype=float), "M": int(W.shape[0]), "N": N, "copied": copied,
            "hidden_weight": float(lm.get("hidden_weight") or 0.0), "method": run["method"]}


def _teacher_layers(store, run_id: str) -> int:
    tdir = store.artifact(run_id, "teacher_dir")
    cfg = Path(str(tdir)) / "config.json" if tdir else None
    if cfg is not None and cfg.is_file():
        return int(json.loads(cfg.read_text())["num_hidden_layers"])
    from .smollm import NAME
    if str(tdir) == NAME:
        return 30
    raise KdlabError(f"the teacher of run {run_id} ({tdir}) is not on this machine: its layers are unknown")


@torch.no_grad()
def decoder_features(model, examples, pad_id: int, batch_size: int = 16) -> list[np.ndarray]:
    """Per decoder layer, [n, hidden] features: the layer's outputs mean-pooled over each example's tokens."""
    from .batches import batches
    from .adaptor import layer_outputs
    model.eval()
    device = next(model.parameters()).device
    feats: list[list] = []
    for b in batches(examples, pad_id, batch_size):
        mask = b["attention_mask"].to(device).float()[..., None]
        with layer_outputs(model) as outs:
            model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device))
        if not feats:
            feats = [[] for _ in outs]
        for i, h in enumerate(outs):
            feats[i].append(((h.float() * mask).sum(1) / mask.sum(1)).cpu().numpy())
    return [np.concatenate(f) for f in feats]


def layer_cka(teacher, student, tok, rows, max_len: int, max_examples: int = 32) -> np.ndarray:
    """Linear CKA [N, M] between every teacher and student decoder layer (teacher rows, student columns; 1-based
    layers, no embedding row) on the first ``max_examples`` of ``rows`` (``kdlab.lm.data.Row``)."""
    from ..analysis.cka import cka_matrix
    from .data import encode
    if max_examples < 4:
        raise KdlabError(f"CKA needs at least 4 examples, got {max_examples}")
    ex = encode(list(rows)[:max_examples], tok, max_len, what="the CKA examples")
    if len(ex) < 4:
        raise KdlabError(f"CKA needs at least 4 examples, the set has {len(ex)}")
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    return cka_matrix(decoder_features(teacher, ex, pad), decoder_features(student, ex, pad))


def run_layer_cka(store, run_id: str, max_examples: int = 32) -> np.ndarray:
    """``layer_cka`` of a stored LM student run and its teacher on the run's in-domain dev texts."""
    from ..runs.run_record import StoredRun
    from .data import load_corpus
    from .explain import run_models
    from .train import data_seed
    models = run_models(store, run_id)
    if set(models) != {"teacher", "student"}:
        raise KdlabError(f"run {run_id} has no teacher of the same vocabulary on this machine: CKA compares a "
                         "student run with its teacher")
    cfg = StoredRun(store.run(run_id)).config()
    dev = load_corpus(cfg.data, ood=cfg.ood, max_eval=max_examples, seed=data_seed(cfg)).dev
    (t, tok), (s, _) = models["teacher"], models["student"]
    return layer_cka(t, s, tok, dev, cfg.train.max_len, max_examples)
