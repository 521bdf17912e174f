"""Attention maps of a features record, per layer: what the model's attention computed before dropout.

A real model's record holds ``Features.maps`` (captured from the model's own attention computation for every
family, ``kdlab.models.families.capture``: the pre-dropout probabilities and the raw scores, relative-position and
rotary terms included) and ``Features.qkv`` (per-layer Q, K, V ``[B, L, d]``). The layer helpers below read
``maps`` when present; a record without them (a hand-built one) falls back to recomputing from Q and K, which is
exact for plain ``softmax(Q Kᵀ/√d)`` attention. Hugging Face returns probabilities *after* attention dropout, so
the returned maps are never used in training. The computations:

* ``scores(q, k, heads)``: raw scores ``A = Q Kᵀ / √d_k`` per head, ``[B, h, L, L]`` float32, optionally with
  the additive padding mask (``additive`` added to padded key columns, e.g. −10000 as in BERT/TinyBERT);
* ``probs(q, k, heads, mask)``: ``softmax(A + bias)`` with padded keys masked (``losses.attention_probs_from_scores``);
* ``values(v, heads, mask)``: MiniLM's value relation (``losses.value_relation``).

Attention losses need the same number of heads in student and teacher; ``check_heads`` raises a clear
``KdlabError`` otherwise, unless the method was asked to average the maps over heads (``head_mean``).
"""
from __future__ import annotations

import math

import torch

from . import losses
from ..errors import KdlabError


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[B, L, d]`` -> ``[B, h, L, d/h]`` (float32)."""
    if x.dim() != 3:
        raise KdlabError(f"attention projections must be [B, L, d], got {tuple(x.shape)}")
    B, L, d = x.shape
    if heads < 1 or d % heads:
        raise KdlabError(f"hidden size {d} is not divisible by the number of heads {heads}")
    return x.float().view(B, L, heads, d // heads).transpose(1, 2)


def scores(q: torch.Tensor, k: torch.Tensor, heads: int, mask: torch.Tensor | None = None,
           additive: float | None = None) -> torch.Tensor:
    """Raw attention scores ``Q Kᵀ / √d_k`` per head, ``[B, h, L, L]`` float32.

    With ``mask`` and ``additive`` (e.g. −10000.0) the additive padding mask is added to padded key columns,
    as a BERT layer does before its softmax; without ``additive`` the scores are returned unmasked.
    """
    qh, kh = split_heads(q, heads), split_heads(k, heads)
    a = qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1])
    if mask is not None and additive is not None:
        pad = (mask.to(device=a.device) == 0)[:, None, None, :].to(a.dtype)
        a = a + additive * pad
    return a


def probs(q: torch.Tensor, k: torch.Tensor, heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention probabilities ``softmax(Q Kᵀ/√d_k)`` over keys with padded keys masked, ``[B, h, L, L]``."""
    return losses.attention_probs_from_scores(scores(q, k, heads), mask)


def values(v: torch.Tensor, heads: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MiniLM value relation ``softmax(V_a V_aᵀ/√d_k)`` per head with padded keys masked, ``[B, h, L, L]``."""
    return losses.value_relation(v, mask, heads)


def head_mean(x: torch.Tensor) -> torch.Tensor:
    """Average attention maps over heads: ``[B, h, L, L]`` -> ``[B, 1, L, L]`` (rows of probabilities stay
    distributions)."""
    return x.mean(dim=1, keepdim=True)


def check_heads(method: str, student_heads: int, teacher_heads: int, head_average: bool) -> None:
    """Attention terms compare maps head by head: raise unless the head counts agree or maps are averaged."""
    if student_heads != teacher_heads and not head_average:
        raise KdlabError(
            f"method '{method}' compares attention maps head by head, but the student has {student_heads} heads "
            f"and the teacher {teacher_heads}: build the student with the teacher's head count "
            f"({teacher_heads}), or average the maps over heads with --set head_average=true")


def layer_probs(feats, layer: int, head_average: bool) -> torch.Tensor:
    """Attention probabilities of transformer layer ``layer`` (1-based) from a features record."""
    maps = getattr(feats, "maps", None)
    if maps is not None:
        p = maps[layer - 1]["probs"].float()
    else:
        q, k, _ = feats.qkv[layer - 1]
        p = probs(q, k, feats.heads, feats.mask)
    return head_mean(p) if head_average else p


def layer_scores(feats, layer: int, additive: float | None = None) -> torch.Tensor:
    """Raw attention scores of layer ``layer`` (1-based), ``[B, h, L, L]`` float32, without the padding mask unless
    ``additive`` is given (then added to padded key columns, as ``scores``)."""
    maps = getattr(feats, "maps", None)
    if maps is not None and maps[layer - 1].get("scores") is not None:
        a = maps[layer - 1]["scores"].float()
        if additive is not None:
            a = a + additive * (feats.mask.to(a.device) == 0)[:, None, None, :].to(a.dtype)
        return a
    q, k, _ = feats.qkv[layer - 1]
    return scores(q, k, feats.heads, feats.mask, additive=additive)


def layer_values(feats, layer: int, head_average: bool) -> torch.Tensor:
    """Value relation of transformer layer ``layer`` (1-based) from a features record."""
    _, _, v = feats.qkv[layer - 1]
    r = values(v, feats.heads, feats.mask)
    return head_mean(r) if head_average else r
