"""``--set mapping=cka``: each student layer learns from the teacher layer it is most similar to before training.

Before the first step, ``kdlab.pipeline.distill_run`` runs the teacher and the freshly built student over a sample
of the training texts (``SAMPLE`` rows, masked token mean per layer, ``kdlab.tools.cka_run.cka_between``) and
stores the student x teacher linear CKA scores [M, N] in the run's method options as ``mapping_cka``; the method
then builds its mapping with ``kdlab.mapping.from_cka`` (each student layer <- its highest-CKA teacher layer). The
scores travel with the run's configuration, so a resumed run maps the same way.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import KdlabError

SAMPLE = 256


def cka_scores(teacher, student, tokenizer, split, max_examples: int = SAMPLE, max_len: int = 64,
               device="cpu") -> list[list[float]]:
    """Student x teacher linear CKA [M, N] (embeddings left out) on the first ``max_examples`` rows of ``split``;
    a constant layer's NaN scores become -1 (never chosen)."""
    from .tools.cka_run import cka_between
    res = cka_between(teacher, student, tokenizer, split, pool="mean", max_examples=max_examples, max_len=max_len,
                      device=device)
    lin = np.asarray(res["linear"], dtype=np.float64)[1:, 1:].T   # [N+1, M+1] -> student x teacher layers
    return np.round(np.nan_to_num(lin, nan=-1.0), 4).tolist()


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
    from .mapping import from_cka, one_hot_layers
    W = from_cka(scores, len(scores), len(scores[0]))
    chosen = one_hot_layers(W)
    log("mapping=cka: student layer <- teacher layer " + ", ".join(
        f"{i + 1}<-{j} ({scores[i][j - 1]:.2f})" for i, j in enumerate(chosen))
        + f" (linear CKA on {min(SAMPLE, len(bundle.train))} training rows)")
    return dataclasses.replace(cfg, method_args={**cfg.method_args, "mapping_cka": scores})
