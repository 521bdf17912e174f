"""CKA between a teacher and a student on a held-out split (docs/METHODS.md: CKA).

Per layer j (0 = embeddings), each example is one row: the masked token mean of ``H_j`` (``pool="mean"``)
or its [CLS] vector (``pool="cls"``). ``kdlab.analysis.cka.cka_matrix`` turns the teacher's N+1 and the student's
M+1 feature sets into [N+1, M+1] linear and debiased CKA matrices (float64), plus the linear
self-similarity matrices of each model.

``alp_weights_of`` runs two models on a batch and gives ALP-KD's attention over teacher layers as a W (the Layer
mapping page draws it for an untrained student). ``cka_between`` is the API the dashboard and notebooks call; ``cka_for_run`` does it for a stored
student run and keeps the result as artifacts of that run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..analysis import cka
from ..kd import losses, mapping
from ..data.batching import make_loader
from ..errors import KdlabError
from ..models.features import Need, features

POOLS = ("mean", "cls")


@torch.inference_mode()
def layer_features(model, tokenizer, split, pool: str = "mean", max_examples: int | None = 512,
                   max_len: int = 64, batch_size: int = 64, device="cpu") -> list[np.ndarray]:
    """Pooled hidden states per layer (embeddings first): a list of ``[n, d]`` float64 arrays."""
    if pool not in POOLS:
        raise KdlabError(f"unknown CKA pooling '{pool}': use mean (masked token mean) or cls")
    if max_examples is not None and int(max_examples) < 1:
        raise KdlabError(f"max_examples must be at least 1, got {max_examples}")
    n = len(split) if not max_examples else min(len(split), int(max_examples))
    texts = list(split.texts[:n])
    labels = list(split.labels[:n])
    from ..data.loaders import Split
    texts_b = getattr(split, "texts_b", None)   # a sentence pair: both texts
    sub = Split(getattr(split, "name", "split"), texts, labels, getattr(split, "domain", ""),
                None if texts_b is None else list(texts_b[:n]))
    was_training = model.training
    model.eval()
    model.to(device)
    out: list[list[np.ndarray]] = []
    try:
        for batch in make_loader(sub, tokenizer, batch_size=batch_size, max_len=max_len, shuffle=False):
            batch = {k: v.to(device) for k, v in batch.items()}
            f = features(model, batch, Need(hidden=True))
            if not out:
                out = [[] for _ in f.hidden]
            for j, h in enumerate(f.hidden):
                v = losses.masked_mean(h, f.mask) if pool == "mean" else h[:, 0].float()
                out[j].append(v.double().cpu().numpy())
    finally:
        model.train(was_training)
    return [np.concatenate(x, axis=0) for x in out]


def cka_between(teacher, student, tokenizer, split, pool: str = "mean", max_examples: int = 512,
                max_len: int = 64, batch_size: int = 64, device="cpu") -> dict:
    """Teacher x student CKA on ``split`` (a ``kdlab.data.Split``).

    Returns ``dict(linear=[N+1, M+1], debiased=[N+1, M+1], teacher_self=[N+1, N+1], student_self=[M+1, M+1],
    pool=..., n=...)``; rows are teacher layers 0..N, columns student layers 0..M (0 = embeddings). Entries of a
    layer whose features are the same for every example are NaN (with ``pool="cls"`` the embedding output).
    """
    if len(split) < 4:
        raise KdlabError(f"CKA needs at least 4 examples in the split '{getattr(split, 'name', '')}', "
                         f"it has {len(split)}: use a larger held-out split")
    if max_examples is not None and int(max_examples) < 4:
        raise KdlabError(f"CKA needs at least 4 examples (debiased CKA), got max_examples={max_examples}")
    kw = dict(pool=pool, max_examples=max_examples, max_len=max_len, batch_size=batch_size, device=device)
    t = layer_features(teacher, tokenizer, split, **kw)
    s = layer_features(student, tokenizer, split, **kw)
    return dict(linear=_matrix(t, s), debiased=_matrix(t, s, debiased=True),
                teacher_self=_matrix(t, t), student_self=_matrix(s, s),
                pool=pool, n=int(t[0].shape[0]))


def _constant(x: np.ndarray) -> bool:
    return not np.any(np.abs(x - x.mean(axis=0, keepdims=True)) > 1e-12 * max(1.0, float(np.abs(x).max())))


def _matrix(t: list[np.ndarray], s: list[np.ndarray], debiased: bool = False) -> np.ndarray:
    """``cka.cka_matrix`` with NaN for layers whose features do not vary over the examples (CKA is undefined
    there, e.g. the [CLS] embedding output, which is the same vector for every example)."""
    ti = [i for i, x in enumerate(t) if not _constant(x)]
    si = [j for j, x in enumerate(s) if not _constant(x)]
    out = np.full((len(t), len(s)), np.nan)
    if ti and si:
        out[np.ix_(ti, si)] = cka.cka_matrix([t[i] for i in ti], [s[j] for j in si], debiased=debiased)
    return out


def format_matrix(m: np.ndarray, title: str = "") -> str:
    """Plain-text matrix: rows teacher layers (T0 = embeddings), columns student layers (S0 ...)."""
    m = np.asarray(m)
    lines = [title] if title else []
    lines.append("      " + " ".join(f"{'S' + str(j):>6s}" for j in range(m.shape[1])))
    for i in range(m.shape[0]):
        lines.append(f"{'T' + str(i):>5s} " + " ".join(f"{v:6.3f}" for v in m[i]))
    return "\n".join(lines)


def _model_dir(store, run_id: str, what: str) -> Path:
    folder = store.artifact(run_id, "model_dir")
    if not folder or not Path(folder).exists():
        raise KdlabError(f"the {what} run {run_id} has no saved model (artifact model_dir missing or deleted): "
                         "use a finished run")
    return Path(folder)


def cka_for_run(store, run_id: str, pool: str = "mean", max_examples: int = 512, split: str = "dev",
                device="cpu", log=None) -> dict:
    """CKA of a stored student run against its teacher; stored as artifacts ``cka`` (latest) and
    ``cka:<split>:<pool>`` of the run. Returns the result with the run id and the split name."""
    from ..models.core import load_saved
    from ..engine.pipeline import load_bundle
    from ..runs.run_record import StoredRun
    if pool not in POOLS:
        raise KdlabError(f"unknown CKA pooling '{pool}': use --pool mean or --pool cls")
    rec = StoredRun.load(store, run_id)
    run_id, teacher_run = rec.id, rec.teacher_run
    if not teacher_run:
        raise KdlabError(f"run {run_id} has no teacher run (config teacher_run / parent): "
                         "CKA compares a distilled student with its teacher; pick a student run")
    student, tok = load_saved(_model_dir(store, run_id, "student"))
    teacher, _ = load_saved(_model_dir(store, teacher_run, "teacher"))
    cfg = rec.config()
    bundle = load_bundle(cfg)
    splits = {"train": bundle.train, **bundle.eval_splits()}
    if split not in splits:
        raise KdlabError(f"the run's data has no split '{split}': choose one of {', '.join(splits)}")
    if log:
        log(f"cka: {run_id} vs teacher {teacher_run} on {split} ({pool} pooling)")
    res = cka_between(teacher, student, tok, splits[split], pool=pool, max_examples=max_examples,
                      max_len=cfg.train.max_len, device=device)
    res.update(run=run_id, teacher_run=teacher_run, split=split)
    record = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in res.items()}
    if store.writable:   # a read-only store: computed and printed, not kept
        store.set_artifact(run_id, f"cka:{split}:{pool}", record)
        store.set_artifact(run_id, "cka", record)
    return res


def alp_weights_of(teacher, student, batch) -> torch.Tensor:
    """``alp_weights`` of two models on one batch (a ``make_loader`` batch): what ALP-KD's first step attends to
    for this student. Runs both models in inference mode, [M, N], every row sums to 1."""
    with torch.inference_mode():
        ft, fs = features(teacher, batch, Need(hidden=True)), features(student, batch, Need(hidden=True))
        return mapping.alp_weights(fs.hidden, ft.hidden)
