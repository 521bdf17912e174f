"""``--set mapping=cka``: each student layer learns from the teacher layer it is most similar to before training.

Before the first step, ``kdlab.engine.pipeline.distill_run`` runs the teacher and the freshly built student over a sample
of the training texts (``SAMPLE`` rows, masked token mean per layer as in ``kdlab.tools.cka_run``) and
stores the student x teacher linear CKA scores [M, N] in the run's method options as ``mapping_cka``; the method
then builds its mapping with ``kdlab.kd.mapping.from_cka`` (each student layer <- its highest-CKA teacher layer). The
scores travel with the run's configuration, so a resumed run maps the same way.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..kd import losses
from .cka import linear_cka
from ..errors import KdlabError
from ..models.features import Need, features

SAMPLE = 256


@torch.inference_mode()
def _pooled(model, tokenizer, split, n: int, max_len: int, device) -> list[np.ndarray]:
    """Masked token mean of every transformer layer's states (embeddings left out) on the first ``n`` rows."""
    from ..data.batching import make_loader
    from ..data.loaders import Split
    texts_b = getattr(split, "texts_b", None)
    sub = Split("sample", list(split.texts[:n]), list(split.labels[:n]), getattr(split, "domain", ""),
                None if texts_b is None else list(texts_b[:n]))
    was_training = model.training
    model.eval().to(device)
    out: list[list[np.ndarray]] = []
    try:
        for batch in make_loader(sub, tokenizer, batch_size=64, max_len=max_len, shuffle=False):
            f = features(model, {k: v.to(device) for k, v in batch.items()}, Need(hidden=True))
            out = out or [[] for _ in f.hidden[1:]]
            for j, h in enumerate(f.hidden[1:]):
                out[j].append(losses.masked_mean(h, f.mask).double().cpu().numpy())
    finally:
        model.train(was_training)
    return [np.concatenate(x) for x in out]


def cka_scores(teacher, student, tokenizer, split, max_examples: int = SAMPLE, max_len: int = 64,
               device="cpu") -> list[list[float]]:
    """Student x teacher linear CKA [M, N] (``kdlab.analysis.cka.linear_cka`` of masked-mean pooled states, embeddings left
    out) on the first ``max_examples`` rows of ``split``; a layer constant over the rows scores -1 (never chosen)."""
    n = min(len(split), int(max_examples))
    if n < 4:
        raise KdlabError(f"--set mapping=cka needs at least 4 training rows to compare layers on, got {n}")
    t = _pooled(teacher, tokenizer, split, n, max_len, device)
    s = _pooled(student, tokenizer, split, n, max_len, device)
    flat = lambda x: bool(np.all(np.ptp(x, axis=0) == 0))
    return [[-1.0 if flat(a) or flat(b) else round(float(linear_cka(a, b)), 4) for b in t] for a in s]


def with_cka_scores(cfg, teacher, student, tokenizer, bundle, retokenized: bool = False, log=print):
    """``cfg`` with ``method_args['mapping_cka']`` filled in from the models before training."""
    if retokenized:
        raise KdlabError("--set mapping=cka compares teacher and student layers on the same tokens: it needs a "
                         "student with the teacher's tokenizer")
    if teacher is None or getattr(teacher, "runs", None) or getattr(teacher, "soft_labels", False):
        raise KdlabError("--set mapping=cka needs one teacher model with hidden states (not an ensemble or soft "
                         "labels)")
    device = next(student.parameters()).device
    scores = cka_scores(teacher, student, tokenizer, bundle.train, max_len=cfg.train.max_len, device=device)
    from ..kd.mapping import from_cka, one_hot_layers
    W = from_cka(scores, len(scores), len(scores[0]))
    chosen = one_hot_layers(W)
    log("mapping=cka: student layer <- teacher layer " + ", ".join(
        f"{i + 1}<-{j} ({scores[i][j - 1]:.2f})" for i, j in enumerate(chosen))
        + f" (linear CKA on {min(SAMPLE, len(bundle.train))} training rows)")
    return dataclasses.replace(cfg, method_args={**cfg.method_args, "mapping_cka": scores})
