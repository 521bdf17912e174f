"""How much a teacher's soft targets say beyond the label ("dark knowledge"), as the temperature changes.

For teacher logits ``z`` [n, C] on a dataset and each temperature T, with ``p = softmax(z / T)``:

* ``entropy``: the mean entropy of ``p`` (nats; at most log C);
* ``non_target_mass``: the mean probability the soft target puts on the classes other than the gold label
  (the teacher's top class when no labels are given): ``mean(1 - p[y])``;
* ``second_informative``: the share of examples whose *second choice is informative*: the second most likely
  class has probability at least ``threshold`` **and** it is not the only alternative, i.e. the soft target ranks
  two or more wrong classes, so the second choice says which other class the example resembles. With two
  classes the only alternative is fixed ("not the top class"), so this share is 0 by definition;
* ``non_target_entropy``: the mean entropy (nats) of the non-target classes' probabilities renormalised to sum
  to one: how the teacher spreads its doubt among the other classes (0 with two classes: one alternative).

Binary sentiment therefore transfers only a confidence per example (non-target mass), while a many-class task's
soft targets also rank the wrong classes.
"""
from __future__ import annotations

import numpy as np
from scipy.special import softmax
from scipy.stats import entropy as _entropy

from ..errors import KdlabError


def dark_knowledge(logits, temperatures, labels=None, threshold: float = 0.05) -> dict:
    """``{"T": [...], "entropy": [...], "non_target_mass": [...], "second_informative": [...],
    "non_target_entropy": [...], "classes": C, "threshold": threshold}``, one value per temperature (see the
    module docstring)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise KdlabError(f"dark knowledge needs logits of shape [examples, classes >= 2], got {list(z.shape)}")
    n, C = z.shape
    y = z.argmax(1) if labels is None else np.asarray(labels, dtype=np.int64)
    if y.shape != (n,) or y.min() < 0 or y.max() >= C:
        raise KdlabError(f"dark knowledge needs one class label in 0..{C - 1} per example")
    out = {"T": [], "entropy": [], "non_target_mass": [], "second_informative": [], "non_target_entropy": [],
           "classes": C, "threshold": float(threshold), "max_entropy": float(np.log(C))}   # of the uniform
    for T in temperatures:
        if not float(T) > 0:
            raise KdlabError(f"temperatures must be > 0, got {T}")
        p = softmax(z / float(T), axis=1)
        rest = p[np.arange(C)[None, :] != y[:, None]].reshape(n, C - 1)   # the non-target classes, in order
        second = np.sort(p, axis=1)[:, -2]
        out["T"].append(float(T))
        out["entropy"].append(float(_entropy(p, axis=1).mean()))
        out["non_target_mass"].append(float((1.0 - p[np.arange(n), y]).mean()))
        out["second_informative"].append(float(((second >= threshold) & (C > 2)).mean()))
        out["non_target_entropy"].append(float(_entropy(rest, axis=1).mean()))   # scipy renormalises each row
    return out
