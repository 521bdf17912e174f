"""Reusable objectives (nn.Modules built on ``kdlab.kd.losses``) that methods combine.

Each returns ``(total, parts)`` where ``parts`` holds per-layer values named ``"<term>/s<i>-t<j>"``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import losses
from ..errors import KdlabError


def logit_kd(s_logits, t_logits, form: str, T: float):
    """The logit-KD forms: ``kl`` (T^2 batchmean KL), ``soft-ce`` (T^2 soft CE), ``soft-ce-unscaled`` (soft CE
    without the T^2 factor, NewsBERT's), ``mse``."""
    if form == "kl":
        return losses.kd_kl(s_logits, t_logits, T)
    if form == "soft-ce":
        return losses.kd_soft_ce(s_logits, t_logits, T)
    if form == "soft-ce-unscaled":
        return losses.kd_soft_ce(s_logits, t_logits, T, scale_t2=False)
    if form == "mse":
        return losses.kd_mse(s_logits, t_logits)
    raise KdlabError(f"unknown logit-KD form '{form}': use kl, soft-ce, soft-ce-unscaled or mse")


def sum_terms(terms) -> tuple[torch.Tensor | None, dict]:
    """``(sum of the values, {name: value.detach()})`` for an iterable of ``(name, value)`` pairs, in order
    (the sum is None when there are none)."""
    total, parts = None, {}
    for name, value in terms:
        parts[name] = value.detach()
        total = value if total is None else total + value
    return total, parts


class Projection(nn.Module):
    """Identity when widths agree, otherwise a learned linear map student width -> teacher width."""

    def __init__(self, d_in: int, d_out: int, force: bool = False, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias) if (d_in != d_out or force) else None

    def forward(self, x):
        return x if self.linear is None else self.linear(x.to(self.linear.weight.dtype))


PROJECTIONS = ("auto", "linear")  # the values of a method's ``projection`` option


def make_projection(kind: str, d_in: int, d_out: int) -> Projection:
    """The student -> teacher projection a ``projection`` option asks for: ``auto`` = a learned linear map only
    when the widths differ (identity otherwise), ``linear`` = always a learned linear map."""
    if kind not in PROJECTIONS:
        raise KdlabError(f"projection must be 'auto' or 'linear' (got {kind!r})")
    return Projection(d_in, d_out, force=kind == "linear")


class HiddenMatch(nn.Module):
    """Hidden-state matching over the mapped layer pairs of W, with padding masked.

    For student layer i the target is ``sum_j W[i-1, j-1] * H^T_j`` (one-hot rows pick one layer;
    weighted rows combine layers). ``distance`` is ``mse`` (masked token MSE) or ``cosine`` (masked
    mean of 1 - cos). ``pool`` is ``tokens`` (token level), ``cls`` or ``mean``.
    One shared projection serves all layers (TinyBERT's shared fit_dense) unless ``shared=False``.
    """

    def __init__(self, d_student: int, d_teacher: int, num_student_layers: int, distance: str = "mse",
                 pool: str = "tokens", shared: bool = True, name: str = "hidden"):
        super().__init__()
        if distance not in ("mse", "cosine"):
            raise KdlabError(f"unknown hidden-state distance '{distance}': use mse or cosine")
        if pool not in ("tokens", "cls", "mean"):
            raise KdlabError(f"unknown pooling '{pool}': use tokens, cls or mean")
        self.distance, self.pool, self.name, self.shared = distance, pool, name, shared
        n = 1 if shared else num_student_layers
        self.proj = nn.ModuleList(Projection(d_student, d_teacher) for _ in range(n))

    def _pool(self, h, mask):
        if self.pool == "cls":
            return h[:, :1]
        if self.pool == "mean":
            return losses.masked_mean(h, mask).unsqueeze(1)
        return h

    def forward(self, s_hidden, t_hidden, mask, W: torch.Tensor, student_layers=None):
        parts = {}
        total = s_hidden[0].new_zeros((), dtype=torch.float32)
        m = mask if self.pool == "tokens" else torch.ones(mask.shape[0], 1, device=mask.device, dtype=mask.dtype)
        for i in range(W.shape[0]):
            if student_layers is not None and (i + 1) not in student_layers:
                continue
            row = W[i]
            nz = torch.nonzero(row > 0).flatten().tolist()
            if not nz:
                continue
            target = sum(float(row[j]) * t_hidden[j + 1].float() for j in nz)
            proj = self.proj[0 if self.shared else i]
            s = proj(self._pool(s_hidden[i + 1], mask))
            t = self._pool(target, mask)
            val = losses.hidden_mse(s, t, m) if self.distance == "mse" else losses.hidden_cosine(s, t, m)
            tj = nz[0] + 1 if len(nz) == 1 else "+".join(str(j + 1) for j in nz)
            parts[f"{self.name}_{self.distance}/s{i + 1}-t{tj}"] = val.detach()
            total = total + val
        return total, parts


ENSEMBLE_FORMS = ("mean-probs", "mean-kl")


def ensemble_target(t_logits: list, T: float, kind: str = "classes", form: str = "kl") -> torch.Tensor:
    """One teacher's worth of logits whose softened distribution is the mean of the teachers' softened
    distributions (the ``mean-probs`` ensemble): ``T * log(mean_k softmax(z_k / T))`` for classes (a softmax at
    temperature T of it gives the mean), ``T * logit(mean_k sigmoid(z_k / T))`` for several labels per example;
    the mean of the logits for a score or the ``mse`` form (no distribution to average)."""
    z = torch.stack([t.float() for t in t_logits])   # [K, B, C]
    if kind == "score" or form == "mse":
        return z.mean(0)
    if kind == "multi":
        p = torch.sigmoid(z / T).mean(0).clamp(1e-7, 1 - 1e-7)
        return T * torch.logit(p)
    return T * (torch.logsumexp(torch.log_softmax(z / T, dim=-1), dim=0) - math.log(len(t_logits)))
