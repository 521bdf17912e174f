"""Linear CKA (Kornblith et al. 2019, arXiv 1905.00414) for comparing layers; numpy float64.

Follows the official ``representation_similarity`` demo code (google-research): linear CKA in feature space
``‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)`` on column-centred X, Y, and the debiased variant that replaces HSIC by its
unbiased U-statistic estimator in numerator and denominator. Gram-matrix (example-space) forms are provided too;
both spaces agree.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kdlab.errors import KdlabError

__all__ = [
    "gram_linear",
    "center_gram",
    "cka_from_grams",
    "linear_cka",
    "linear_cka_debiased",
    "cka_matrix",
]


def _as_2d(x, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise KdlabError(f"{what} must be a 2-D [n_examples, features] array, got shape {a.shape}")
    return a


def _pair(X, Y) -> tuple[np.ndarray, np.ndarray]:
    X = _as_2d(X, "X")
    Y = _as_2d(Y, "Y")
    if X.shape[0] != Y.shape[0]:
        raise KdlabError(
            f"CKA needs the same examples in both inputs: X has {X.shape[0]} rows, Y has {Y.shape[0]}"
        )
    if X.shape[0] < 2:
        raise KdlabError(f"CKA needs at least 2 examples, got {X.shape[0]}")
    return X, Y


def gram_linear(X) -> np.ndarray:
    """Linear kernel Gram matrix ``K = X Xᵀ`` ``[n, n]``."""
    X = _as_2d(X, "X")
    return X @ X.T


def center_gram(gram, unbiased: bool = False) -> np.ndarray:
    """Centre a symmetric Gram matrix (``HKH``); ``unbiased`` applies the U-statistic centring
    (zero diagonal, Székely & Rizzo / Song et al. 2012) used by the debiased HSIC."""
    gram = np.array(gram, dtype=np.float64, copy=True)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise KdlabError(f"a Gram matrix must be square, got shape {gram.shape}")
    if not np.allclose(gram, gram.T):
        raise KdlabError("the Gram matrix is not symmetric")
    n = gram.shape[0]
    if unbiased:
        if n < 4:
            raise KdlabError(f"debiased CKA needs at least 4 examples, got {n}")
        np.fill_diagonal(gram, 0.0)
        means = np.sum(gram, 0) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0.0)
    else:
        means = np.mean(gram, 0)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def cka_from_grams(gram_x, gram_y, debiased: bool = False) -> float:
    """CKA from two Gram matrices (example space): ``⟨K̃, L̃⟩ / (‖K̃‖_F ‖L̃‖_F)`` with centred Grams."""
    gx = center_gram(gram_x, unbiased=debiased)
    gy = center_gram(gram_y, unbiased=debiased)
    if gx.shape != gy.shape:
        raise KdlabError(f"Gram matrices differ in size: {gx.shape} vs {gy.shape}")
    return float(gx.ravel() @ gy.ravel() / (np.linalg.norm(gx) * np.linalg.norm(gy)))


# ----------------------------------------------------------------------------------------------- feature space
class _Centred:
    """Column-centred features with the quantities the (debiased) feature-space CKA needs."""

    def __init__(self, X: np.ndarray):
        self.X = X - X.mean(axis=0, keepdims=True)
        self.n = X.shape[0]
        self.row_sq = np.einsum("ij,ij->i", self.X, self.X)  # diagonal of the centred Gram
        self.sq_norm = float(self.row_sq.sum())  # trace of the centred Gram
        self.self_biased = float(np.linalg.norm(self.X.T @ self.X))  # ‖XᵀX‖_F
        self._self_debiased = None

    def self_debiased(self) -> float:
        if self._self_debiased is None:
            self._self_debiased = float(
                np.sqrt(_debiased_dot(self.self_biased**2, self, self))
            )
        return self._self_debiased


def _debiased_dot(xty_sq: float, a: _Centred, b: _Centred) -> float:
    """Unbiased HSIC·(n(n−3)) in feature space (official ``_debiased_dot_product_similarity_helper``)."""
    n = a.n
    return (
        xty_sq
        - n / (n - 2.0) * float(a.row_sq @ b.row_sq)
        + a.sq_norm * b.sq_norm / ((n - 1) * (n - 2))
    )


def _cka(a: _Centred, b: _Centred, debiased: bool) -> float:
    xty_sq = float(np.linalg.norm(a.X.T @ b.X) ** 2)
    if not debiased:
        return xty_sq / (a.self_biased * b.self_biased)
    if a.n < 4:
        raise KdlabError(f"debiased CKA needs at least 4 examples, got {a.n}")
    return _debiased_dot(xty_sq, a, b) / (a.self_debiased() * b.self_debiased())


def linear_cka(X, Y) -> float:
    """Linear CKA ``‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)`` on column-centred ``X [n, p1]``, ``Y [n, p2]`` (float64)."""
    X, Y = _pair(X, Y)
    return _cka(_Centred(X), _Centred(Y), debiased=False)


def linear_cka_debiased(X, Y) -> float:
    """Debiased linear CKA: unbiased HSIC U-statistic in numerator and denominator (needs n >= 4)."""
    X, Y = _pair(X, Y)
    return _cka(_Centred(X), _Centred(Y), debiased=True)


def cka_matrix(
    teacher_feats: Sequence[np.ndarray], student_feats: Sequence[np.ndarray], debiased: bool = False
) -> np.ndarray:
    """CKA between every teacher and student layer -> ``[len(teacher_feats), len(student_feats)]`` float64
    (``[N+1, M+1]`` when both lists start with the embedding output). Each entry is ``[n, p]`` over the same n
    examples (e.g. masked-mean pooled or [CLS] states). Pass the same list twice for a self-similarity matrix."""
    if len(teacher_feats) == 0 or len(student_feats) == 0:
        raise KdlabError("cka_matrix needs at least one teacher and one student layer")
    t = [_as_2d(x, f"teacher layer {i}") for i, x in enumerate(teacher_feats)]
    s = [_as_2d(x, f"student layer {i}") for i, x in enumerate(student_feats)]
    n = t[0].shape[0]
    for name, lst in (("teacher", t), ("student", s)):
        for i, x in enumerate(lst):
            if x.shape[0] != n:
                raise KdlabError(
                    f"{name} layer {i} has {x.shape[0]} examples but teacher layer 0 has {n}; "
                    "use the same examples for every layer"
                )
    if n < 2 or (debiased and n < 4):
        raise KdlabError(f"CKA needs at least {4 if debiased else 2} examples, got {n}")
    tc = [_Centred(x) for x in t]
    sc = tc if student_feats is teacher_feats else [_Centred(x) for x in s]
    out = np.empty((len(tc), len(sc)), dtype=np.float64)
    for i, a in enumerate(tc):
        for j, b in enumerate(sc):
            out[i, j] = _cka(a, b, debiased)
    return out
