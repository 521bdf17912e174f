"""The causal-LM objectives (``kdlab.methods.lm``): token-level divergences over the full vocabulary, next-token
cross-entropy and the hidden-state MSE through a mapping matrix.

Every objective takes the student's and the teacher's logits ``[..., V]`` at the same (already shifted)
positions and a ``mask`` of the same leading shape (1 = a token that counts: a completion token that is not
padding; 0 = padding or prompt). It returns the mean over the unmasked tokens of a per-token divergence (0 when
no token counts). Positions are processed in chunks of ``chunk`` rows: each chunk's softmaxes are recomputed in
the backward pass (activation checkpointing), so memory beyond the logits themselves is bounded by
``chunk x V`` whatever the sequence length.

Conventions (P = teacher, Q = student, both softmaxes at temperature T):

* ``forward_kl``: KL(P || Q) x T² (Hinton's scaling keeps gradient sizes comparable across T).
* ``reverse_kl``: KL(Q || P) x T².
* ``generalized_jsd``: TRL's GKD convention (``GKDTrainer``, ``beta``): with M = beta P + (1 - beta) Q,
  JSD(beta) = beta KL(P || M) + (1 - beta) KL(Q || M), x T². beta = 0 is defined as forward KL(P || Q) and
  beta = 1 as reverse KL(Q || P), as TRL special-cases them; these are the limits of JSD(beta) / beta as
  beta -> 0 and of JSD(beta) / (1 - beta) as beta -> 1 (the unscaled formula itself goes to 0 at both ends).
  beta = 0.5 is the ordinary Jensen-Shannon divergence (natural log).
* ``tvd``: total variation distance 0.5 sum |P - Q|, in [0, 1], not scaled by T².
* ``token_ce``: next-token cross-entropy on the unmasked tokens (no teacher).
* ``hidden_mse``: decoder-layer outputs of the student and the teacher paired by W (``kdlab.kd.mapping``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import KdlabError

DEFAULT_CHUNK = 1024


def _kl(log_a: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(A || B) per row from log-probabilities (a token A gives probability 0 contributes 0)."""
    pa = log_a.exp()
    return torch.where(pa > 0, pa * (log_a - log_b), torch.zeros_like(pa)).sum(-1)


def _fkl_rows(s, t, T: float):
    return _kl(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1)) * T * T


def _rkl_rows(s, t, T: float):
    return _kl(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)) * T * T


def _jsd_rows(s, t, T: float, beta: float):
    if beta == 0.0:
        return _fkl_rows(s, t, T)
    if beta == 1.0:
        return _rkl_rows(s, t, T)
    ls, lt = F.log_softmax(s / T, -1), F.log_softmax(t / T, -1)
    lm = torch.logsumexp(torch.stack([lt + math.log(beta), ls + math.log1p(-beta)]), 0)
    return (beta * _kl(lt, lm) + (1.0 - beta) * _kl(ls, lm)) * T * T


def _tvd_rows(s, t, T: float):
    return 0.5 * (F.softmax(s / T, -1) - F.softmax(t / T, -1)).abs().sum(-1)


def _check(student_logits, teacher_logits, mask, temperature, chunk):
    if student_logits.shape != teacher_logits.shape:
        what = ("vocabularies" if student_logits.shape[:-1] == teacher_logits.shape[:-1] else "shapes")
        raise KdlabError(f"token-level KD compares the student's and the teacher's next-token distributions, but their "
                         f"{what} differ ({tuple(student_logits.shape)} vs {tuple(teacher_logits.shape)}): use the "
                         "teacher's tokenizer, or sequence-level KD (--method seq-kd) across tokenizers")
    if mask is not None and tuple(mask.shape) != tuple(student_logits.shape[:-1]):
        raise KdlabError(f"the token mask has shape {tuple(mask.shape)} but the logits have positions "
                         f"{tuple(student_logits.shape[:-1])}")
    if not temperature > 0:
        raise KdlabError(f"the temperature must be positive (got {temperature})")
    if int(chunk) < 1:
        raise KdlabError(f"the chunk of positions must be at least 1 (got {chunk})")


def token_divergence(rows_fn, student_logits, teacher_logits, mask=None, *, chunk: int = DEFAULT_CHUNK, **kw):
    """Mean of ``rows_fn(student_rows, teacher_rows, **kw)`` over the unmasked positions, ``chunk`` rows at a time."""
    V = student_logits.shape[-1]
    s = student_logits.reshape(-1, V)
    t = teacher_logits.reshape(-1, V).detach().to(s.dtype)
    if mask is not None:
        keep = mask.reshape(-1).bool()
        s, t = s[keep], t[keep]
    n = s.shape[0]
    if n == 0:
        return student_logits.sum() * 0.0
    acc = torch.float64 if s.dtype == torch.float64 else torch.float32   # half-precision logits sum in fp32
    total = s.new_zeros((), dtype=acc)
    for i in range(0, n, int(chunk)):
        a, b = s[i:i + chunk], t[i:i + chunk]
        if torch.is_grad_enabled() and a.requires_grad:
            rows = checkpoint(lambda x, y: rows_fn(x, y, **kw), a, b, use_reentrant=False)
        else:
            rows = rows_fn(a, b, **kw)
        total = total + rows.to(acc).sum()
    return total / n


def forward_kl(student_logits, teacher_logits, mask=None, *, temperature: float = 1.0, chunk: int = DEFAULT_CHUNK):
    """KL(teacher || student) per token at temperature T, x T², averaged over the unmasked tokens."""
    _check(student_logits, teacher_logits, mask, temperature, chunk)
    return token_divergence(_fkl_rows, student_logits, teacher_logits, mask, chunk=chunk, T=float(temperature))


def reverse_kl(student_logits, teacher_logits, mask=None, *, temperature: float = 1.0, chunk: int = DEFAULT_CHUNK):
    """KL(student || teacher) per token at temperature T, x T², averaged over the unmasked tokens."""
    _check(student_logits, teacher_logits, mask, temperature, chunk)
    return token_divergence(_rkl_rows, student_logits, teacher_logits, mask, chunk=chunk, T=float(temperature))


def generalized_jsd(student_logits, teacher_logits, mask=None, *, beta: float = 0.5, temperature: float = 1.0,
                    chunk: int = DEFAULT_CHUNK):
    """JSD(beta) per token (TRL's GKD convention: beta 0 = forward KL, 1 = reverse KL), x T², averaged."""
    _check(student_logits, teacher_logits, mask, temperature, chunk)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= float(beta) <= 1.0:
        raise KdlabError(f"the JSD beta must be a number in [0, 1] (0 = forward KL, 1 = reverse KL; got {beta!r})")
    return token_divergence(_jsd_rows, student_logits, teacher_logits, mask, chunk=chunk, T=float(temperature),
                            beta=float(beta))


def tvd(student_logits, teacher_logits, mask=None, *, temperature: float = 1.0, chunk: int = DEFAULT_CHUNK):
    """Total variation distance 0.5 sum |P - Q| per token at temperature T, averaged over the unmasked tokens."""
    _check(student_logits, teacher_logits, mask, temperature, chunk)
    return token_divergence(_tvd_rows, student_logits, teacher_logits, mask, chunk=chunk, T=float(temperature))


def token_ce(student_logits, targets, mask=None):
    """Next-token cross-entropy on the unmasked tokens (the no-KD objective); ``targets`` aligned with the logits."""
    V = student_logits.shape[-1]
    x = student_logits.reshape(-1, V)
    ce = F.cross_entropy(x if x.dtype == torch.float64 else x.float(), targets.reshape(-1), reduction="none")
    if mask is None:
        return ce.mean()
    m = mask.reshape(-1).to(ce.dtype)
    return (ce * m).sum() / m.sum().clamp(min=1.0)


def hidden_mse(s_layers, t_layers, W, mask, per_pair: dict | None = None) -> torch.Tensor:
    """Hidden-state MSE through the mapping matrix ``W`` [M, N] (``kdlab.kd.mapping``): sum over its pairs (student
    layer s, teacher layer t, weight w; 1-based) of w x the mean squared difference of the two layers' outputs
    (``s_layers[s - 1]``, ``t_layers[t - 1]``) on the non-padding positions, divided by the sum of the weights.
    ``per_pair``: filled with each pair's MSE as ``hidden/s<s>-t<t>`` (the per-layer names the Train page draws)."""
    from .mapping import pairs
    m = mask.bool()
    total, weight = s_layers[0].new_zeros((), dtype=torch.float32), 0.0
    for s, t, w in pairs(W):
        d = ((s_layers[s - 1][m].float() - t_layers[t - 1][m].float()) ** 2).mean()
        if per_pair is not None:
            per_pair[f"hidden/s{s}-t{t}"] = d.detach()
        total = total + w * d
        weight += w
    return total / max(weight, 1e-12)
