"""Class probabilities from logits, in one place: the softened distribution ``softmax(z / T)`` (the KD target,
the Temperature lab, evaluation at T = 1), its entropy, and an evaluation set's label map applied to
probabilities and predictions. A leaf module (numpy and scipy only)."""
from __future__ import annotations

import numpy as np
from scipy.special import softmax as _softmax


def softened(logits, T: float = 1.0) -> np.ndarray:
    """``softmax(z / T)`` along the last axis, float64 (a torch tensor is detached and moved to the CPU)."""
    if hasattr(logits, "detach"):
        logits = logits.detach().cpu().float().numpy()
    return _softmax(np.asarray(logits, dtype=np.float64) / float(T), axis=-1)


def entropy(p) -> np.ndarray | float:
    """Shannon entropy in nats along the last axis (0·log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)
    return float(h) if np.ndim(h) == 0 else h


def mapped_probs(probs: np.ndarray, label_map) -> np.ndarray:
    """Probabilities over the model's classes -> over an evaluation set's classes (``label_map``: model class ->
    the set's class; several model classes summed into one). ``label_map`` None: unchanged."""
    if label_map is None:
        return probs
    lm = np.asarray(label_map)
    return probs @ np.eye(int(lm.max()) + 1)[lm]     # [n, C_model] x [C_model, C_set]


def predicted(logits, label_map=None) -> np.ndarray:
    """The predicted class of each row: the model's top class, mapped through ``label_map`` when given (the usual
    protocol for an evaluation set with other classes)."""
    pred = np.asarray(logits).argmax(axis=-1)
    return pred if label_map is None else np.asarray(label_map)[pred]
