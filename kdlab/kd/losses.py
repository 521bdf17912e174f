"""Pure loss functions for knowledge distillation (one definition each).

Conventions (docs/ARCHITECTURE.md, docs/METHODS.md: conventions):

* argument order: the student's tensor first, then the teacher's (or the target), then the mask.
* shapes: logits ``[B, C]``; hidden states ``[B, L, d]``; attention probabilities / scores ``[B, h, L, L]``
  (query rows, key columns); ``mask [B, L]`` with 1 = real token (any int / bool / float dtype).
* every function computes in float32 (inputs are cast with ``.float()``, so bf16 inputs are fine) and returns
  a 0-dim tensor that is differentiable w.r.t. the student inputs.
* padded positions never contribute: per-token losses are selected with ``torch.where`` on the mask (so even
  inf/NaN garbage in padded positions cannot leak into the value) and divided by the number of real tokens.
* canonical KD reduction: ``T^2 * batchmean KL``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from kdlab.errors import KdlabError

__all__ = [
    "hard_ce",
    "kd_kl",
    "kd_soft_ce",
    "kd_mse",
    "masked_mean",
    "hidden_mse",
    "hidden_cosine",
    "cls_cosine",
    "l2_normalized_mse",
    "pkd_pt",
    "attention_kl",
    "attention_score_mse",
    "attention_probs_from_scores",
    "value_relation",
    "alp_attention",
    "alp_loss",
    "feature_map_mse",
    "label_smoothing_targets",
    "soft_target_ce",
    "crd_nce_loss",
]

_LOG_EPS = 1e-12  # clamp for the student's probabilities before log (attention KL)
_NORM_EPS = 1e-12  # eps of L2 normalisation


# ----------------------------------------------------------------------------------------------- helpers
def _same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise KdlabError(
            f"{what}: student and teacher tensors have different shapes {tuple(a.shape)} vs {tuple(b.shape)}; "
            "project the student to the teacher's width (or pick matching layers) first"
        )


def _token_mask(mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Mask ``[B, L]`` -> bool ``[B, L]`` checked against ``h [B, L, ...]``."""
    if mask.dim() != 2 or tuple(mask.shape) != tuple(h.shape[:2]):
        raise KdlabError(
            f"mask has shape {tuple(mask.shape)} but the tensor has shape {tuple(h.shape)}; "
            "the mask must be [B, L] matching the first two dimensions"
        )
    return mask.to(device=h.device) != 0


def _masked_token_average(per_token: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """sum over real tokens of ``per_token [B, L]`` / number of real tokens (at least 1)."""
    zero = torch.zeros((), dtype=per_token.dtype, device=per_token.device)
    total = torch.where(m, per_token, zero).sum()
    count = m.sum().clamp_min(1).to(per_token.dtype)
    return total / count


# ----------------------------------------------------------------------------------------------- logits
def hard_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hard-label cross-entropy.

    ``L = (1/B) Σ_b −log softmax(z_b)[y_b]`` (mean over the batch).
    """
    return F.cross_entropy(logits.float(), labels.long(), reduction="mean")


def kd_kl(s_logits: torch.Tensor, t_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Hinton KD, canonical form (docs/METHODS.md: conventions / kd).

    ``L = T² · (1/B) Σ_b KL( softmax(z_T,b/T) ‖ softmax(z_S,b/T) )``
    with ``KL(p‖q) = Σ_c p_c (log p_c − log q_c)``; reduction = batchmean (sum over classes, mean over batch).
    """
    _same_shape(s_logits, t_logits, "kd_kl")
    if T <= 0:
        raise KdlabError(f"the KD temperature T must be > 0, got {T}")
    log_q = F.log_softmax(s_logits.float() / T, dim=-1)
    log_p = F.log_softmax(t_logits.float() / T, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1)
    return (T * T) * kl.mean()


def kd_soft_ce(
    s_logits: torch.Tensor, t_logits: torch.Tensor, T: float = 1.0, scale_t2: bool = True
) -> torch.Tensor:
    """Soft-target cross-entropy (TinyBERT's prediction loss; same gradient as ``kd_kl``).

    ``L = T² · (1/B) Σ_b ( −Σ_c p_T,c log q_S,c )`` with ``p_T = softmax(z_T/T)``, ``q_S = softmax(z_S/T)``;
    the ``T²`` factor is applied only when ``scale_t2`` is true. Reduction: sum over classes, mean over batch
    (TinyBERT's code uses ``.mean()`` over B×C, i.e. this value / C). Not zero at a perfect match (= H(p_T)).
    """
    _same_shape(s_logits, t_logits, "kd_soft_ce")
    if T <= 0:
        raise KdlabError(f"the KD temperature T must be > 0, got {T}")
    log_q = F.log_softmax(s_logits.float() / T, dim=-1)
    p = F.softmax(t_logits.float() / T, dim=-1)
    ce = -(p * log_q).sum(dim=-1).mean()
    return ce * (T * T) if scale_t2 else ce


def kd_mse(s_logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
    """MSE on logits (Distilled BiLSTM): ``L = (1/B) Σ_b Σ_c (z_S,bc − z_T,bc)²`` (sum over classes, mean over batch)."""
    _same_shape(s_logits, t_logits, "kd_mse")
    return (s_logits.float() - t_logits.float()).pow(2).sum(dim=-1).mean()


def score_mse(s_pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Regression (a score task, e.g. STS-B): ``L = (1/B) Σ_b (ŷ_S,b − y_b)²`` with ``ŷ_S = z_S[:, 0]`` (the model has
    one output); ``target`` is the gold score [B] or the teacher's prediction [B] / [B, 1]. No temperature."""
    s = s_pred.float().reshape(s_pred.shape[0], -1)[:, 0]
    t = target.float().reshape(target.shape[0], -1)[:, 0]
    return (s - t).pow(2).mean()


def multi_label_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multi-label hard loss: per-label sigmoid BCE against 0/1 targets ``[B, C]``, mean over labels and batch."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="mean")


def multi_label_kd(s_logits: torch.Tensor, t_logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Multi-label KD: ``T² · mean_{b,c} BCE(sigmoid(z_S/T), sigmoid(z_T/T))`` (per-label sigmoid with temperature,
    BCE to the teacher's softened probabilities)."""
    _same_shape(s_logits, t_logits, "multi_label_kd")
    if T <= 0:
        raise KdlabError(f"the KD temperature T must be > 0, got {T}")
    p = torch.sigmoid(t_logits.float() / T)
    return (T * T) * F.binary_cross_entropy_with_logits(s_logits.float() / T, p, reduction="mean")


def label_smoothing_targets(labels: torch.Tensor, C: int, eps: float) -> torch.Tensor:
    """Label-smoothed target distribution ``[B, C]``: ``(1 − eps)·onehot(y) + eps/C`` (rows sum to 1)."""
    if not 0.0 <= eps <= 1.0:
        raise KdlabError(f"label smoothing eps must be in [0, 1], got {eps}")
    onehot = F.one_hot(labels.long(), num_classes=C).float()
    return (1.0 - eps) * onehot + eps / C


def soft_target_ce(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a target distribution: ``L = (1/B) Σ_b −Σ_c t_bc log softmax(z_b)_c``."""
    _same_shape(logits, target_probs, "soft_target_ce")
    log_q = F.log_softmax(logits.float(), dim=-1)
    return -(target_probs.float() * log_q).sum(dim=-1).mean()


# ----------------------------------------------------------------------------------------------- hidden states
def masked_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Masked token mean ``mean_m(H)_b = Σ_l m_bl H_bl / Σ_l m_bl`` -> ``[B, d]`` (float32).

    ``mask=None`` averages over all positions. A row without real tokens gives zeros.
    """
    h = h.float()
    if mask is None:
        return h.mean(dim=1)
    m = _token_mask(mask, h).unsqueeze(-1)
    summed = torch.where(m, h, torch.zeros((), dtype=h.dtype, device=h.device)).sum(dim=1)
    count = m.sum(dim=1).clamp_min(1).to(h.dtype)
    return summed / count


def hidden_mse(s_h: torch.Tensor, t_h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Masked MSE on hidden states ``[B, L, d]``.

    ``L = Σ_{b,l: m_bl=1} Σ_k (s_blk − t_blk)² / (Σ m · d)``.
    ``mask=None`` -> plain mean over all B×L×d elements (TinyBERT's reference form, padding included).
    """
    _same_shape(s_h, t_h, "hidden_mse")
    diff2 = (s_h.float() - t_h.float()).pow(2)
    if mask is None:
        return diff2.mean()
    m = _token_mask(mask, diff2)
    return _masked_token_average(diff2.mean(dim=-1), m)


def hidden_cosine(s_h: torch.Tensor, t_h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine distance on token states (DistilBERT ``L_cos``).

    ``L = (1/Σm) Σ_{b,l: m_bl=1} (1 − cos(s_bl, t_bl))``; ``mask=None`` -> mean over all B×L tokens.
    ``cos = ⟨s,t⟩ / max(‖s‖‖t‖, 1e−8)`` (torch convention: a zero vector has cos 0, i.e. distance 1).
    """
    _same_shape(s_h, t_h, "hidden_cosine")
    dist = 1.0 - F.cosine_similarity(s_h.float(), t_h.float(), dim=-1, eps=1e-8)
    if mask is None:
        return dist.mean()
    return _masked_token_average(dist, _token_mask(mask, dist))


def cls_cosine(s_cls: torch.Tensor, t_cls: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """[CLS] cosine distance (KD from internal representations, docs/METHODS.md: internal-all).

    ``L = (1/B) Σ_b (1 − cos(s_b, t_b))``, or ``(1/B) Σ_b (1 − cos(s_b, t_b))²`` when ``squared``.
    """
    _same_shape(s_cls, t_cls, "cls_cosine")
    dist = 1.0 - F.cosine_similarity(s_cls.float(), t_cls.float(), dim=-1, eps=1e-8)
    if squared:
        dist = dist.pow(2)
    return dist.mean()


def l2_normalized_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distance of L2-normalised vectors ``[B, u]`` (RAIL-KD, PKD).

    ``L = (1/B) Σ_b Σ_k (a_bk/‖a_b‖₂ − b_bk/‖b_b‖₂)²`` (sum over the dimension, mean over the batch).
    """
    _same_shape(a, b, "l2_normalized_mse")
    an = F.normalize(a.float(), p=2, dim=-1, eps=_NORM_EPS)
    bn = F.normalize(b.float(), p=2, dim=-1, eps=_NORM_EPS)
    return (an - bn).pow(2).sum(dim=-1).mean()


def pkd_pt(s_cls_list: Sequence[torch.Tensor], t_cls_list: Sequence[torch.Tensor]) -> torch.Tensor:
    """BERT-PKD patient loss (docs/METHODS.md: pkd-skip, "our spec").

    ``L_PT = (1/B) Σ_b Σ_j ‖ s_bj/‖s_bj‖₂ − t_bj/‖t_bj‖₂ ‖²₂`` over the paired [CLS] vectors ``[B, d]``
    (sum over layers and d, mean over the batch). The official code's ``F.mse_loss`` = this / (k·d).
    """
    if len(s_cls_list) != len(t_cls_list):
        raise KdlabError(
            f"pkd_pt: {len(s_cls_list)} student layers but {len(t_cls_list)} teacher layers; pair them one to one"
        )
    if len(s_cls_list) == 0:
        raise KdlabError("pkd_pt: no layer pairs given; the mapping selects no intermediate layers")
    total = l2_normalized_mse(s_cls_list[0], t_cls_list[0])
    for s, t in zip(s_cls_list[1:], t_cls_list[1:]):
        total = total + l2_normalized_mse(s, t)
    return total


def feature_map_mse(s_h: torch.Tensor, t_h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """MobileBERT feature-map transfer (release-code form, docs/METHODS.md: mobilebert).

    Both states are standardised per token by a non-trainable LayerNorm (``F.layer_norm`` without weight/bias,
    eps 1e-5), then ``hidden_mse`` is applied: ``Σ_{real tokens} Σ_k (LN(s) − LN(t))² / (Σm · d)``.
    """
    _same_shape(s_h, t_h, "feature_map_mse")
    d = s_h.shape[-1]
    s_n = F.layer_norm(s_h.float(), (d,))
    t_n = F.layer_norm(t_h.float(), (d,))
    return hidden_mse(s_n, t_n, mask)


# ----------------------------------------------------------------------------------------------- attention
def _check_attn(x: torch.Tensor, mask: torch.Tensor | None, what: str) -> None:
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise KdlabError(f"{what}: attention maps must be [B, h, L, L], got {tuple(x.shape)}")
    if mask is not None and (mask.dim() != 2 or tuple(mask.shape) != (x.shape[0], x.shape[-1])):
        raise KdlabError(
            f"{what}: mask has shape {tuple(mask.shape)} but the attention maps are {tuple(x.shape)}; "
            "the mask must be [B, L]"
        )


def attention_probs_from_scores(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention probabilities ``P = softmax_k(A + bias)`` over keys, ``[B, h, L, L]`` float32.

    Padded key columns get the most negative float32 value before the softmax (probability ≈ 0 there);
    ``mask=None`` -> plain softmax.
    """
    _check_attn(scores, mask, "attention_probs_from_scores")
    s = scores.float()
    if mask is not None:
        key_pad = (mask.to(device=s.device) == 0)[:, None, None, :]
        s = s.masked_fill(key_pad, torch.finfo(torch.float32).min)
    return F.softmax(s, dim=-1)


def attention_kl(s_probs: torch.Tensor, t_probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention-distribution KL ``KL(P^T ‖ P^S)`` (MiniLM / MobileBERT / internal-representation KD); student
    first, like every loss here.

    Per (b, head a, query t): ``KL_bat = Σ_k P^T_batk (log P^T_batk − log max(P^S_batk, 1e−12))``
    (``xlogy`` so 0·log 0 = 0 on padded key columns). Reduction: mean over heads and over REAL query rows only,
    ``L = Σ_{b,a,t: m_bt=1} KL_bat / (h · Σm)``; ``mask=None`` -> mean over all B×h×L rows.
    """
    _same_shape(s_probs, t_probs, "attention_kl")
    _check_attn(s_probs, mask, "attention_kl")
    p = t_probs.float()
    q = s_probs.float()
    kl = (torch.xlogy(p, p) - p * torch.log(q.clamp_min(_LOG_EPS))).sum(dim=-1)  # [B, h, L]
    if mask is None:
        return kl.mean()
    heads = kl.shape[1]
    m = (mask.to(device=kl.device) != 0)[:, None, :].expand_as(kl)
    zero = torch.zeros((), dtype=kl.dtype, device=kl.device)
    total = torch.where(m, kl, zero).sum()
    count = (mask != 0).sum().clamp_min(1).to(kl.dtype) * heads
    return total / count


def attention_score_mse(
    s_scores: torch.Tensor, t_scores: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """TinyBERT attention loss on unnormalised scores ``A = QKᵀ/√d_k``.

    Entries ``≤ −100`` (additively masked padded keys) are set to 0 in both maps, then
    ``mask=None`` -> MSE over all B×h×L×L entries (TinyBERT's reference form; padded query rows included).
    With a mask (kdlab's masked variant): average only over real (query, key) pairs,
    ``L = Σ_{b,a,t,k: m_bt=m_bk=1} (A^S − A^T)² / (h · Σ_b (Σ_l m_bl)²)``.
    """
    _same_shape(s_scores, t_scores, "attention_score_mse")
    _check_attn(s_scores, mask, "attention_score_mse")
    s = s_scores.float()
    t = t_scores.float()
    zero = torch.zeros((), dtype=s.dtype, device=s.device)
    s = torch.where(s <= -100.0, zero, s)
    t = torch.where(t <= -100.0, zero, t)
    diff2 = (s - t).pow(2)
    if mask is None:
        return diff2.mean()
    m = mask.to(device=s.device) != 0
    pair = (m[:, :, None] & m[:, None, :])[:, None, :, :].expand_as(diff2)  # [B, h, L, L]
    total = torch.where(pair, diff2, zero).sum()
    count = pair.sum().clamp_min(1).to(diff2.dtype)
    return total / count


def value_relation(v: torch.Tensor, mask: torch.Tensor | None, heads: int) -> torch.Tensor:
    """MiniLM value relation ``VR_a = softmax(V_a V_aᵀ / √d_k)`` per head -> ``[B, h, L, L]`` float32.

    ``v [B, L, d]`` is split into ``heads`` heads of size ``d_k = d / heads``; padded keys are masked as in
    ``attention_probs_from_scores``. Feed two of these to ``attention_kl`` for ``L_VR``.
    """
    if v.dim() != 3:
        raise KdlabError(f"value_relation: values must be [B, L, d], got {tuple(v.shape)}")
    B, L, d = v.shape
    if heads < 1 or d % heads != 0:
        raise KdlabError(f"value_relation: hidden size {d} is not divisible by the number of heads {heads}")
    dk = d // heads
    va = v.float().view(B, L, heads, dk).transpose(1, 2)  # [B, h, L, dk]
    scores = va @ va.transpose(-1, -2) / math.sqrt(dk)
    return attention_probs_from_scores(scores, mask)


# ----------------------------------------------------------------------------------------------- ALP-KD
def alp_attention(s_cls: torch.Tensor, t_cls_stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ALP-KD attention over teacher layers (docs/METHODS.md: alp-kd).

    ``ε_bj = ⟨s_b, t_bj⟩``, ``α_bj = softmax_j(ε_bj)`` -> ``alpha [B, N]``; ``f_b = Σ_j α_bj t_bj`` -> ``[B, d]``.
    No 1/√d scaling (GLMKD form).
    """
    if s_cls.dim() != 2 or t_cls_stack.dim() != 3 or t_cls_stack.shape[0] != s_cls.shape[0] \
            or t_cls_stack.shape[2] != s_cls.shape[1]:
        raise KdlabError(
            f"alp_attention: expected s_cls [B, d] and t_cls_stack [B, N, d], got {tuple(s_cls.shape)} and "
            f"{tuple(t_cls_stack.shape)}; project the student to the teacher's width first"
        )
    s = s_cls.float()
    t = t_cls_stack.float()
    eps = torch.einsum("bd,bnd->bn", s, t)
    alpha = F.softmax(eps, dim=-1)
    f = torch.einsum("bn,bnd->bd", alpha, t)
    return alpha, f


def alp_loss(s_cls_list: Sequence[torch.Tensor], t_cls_stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ALP-KD loss: ``L_ALP = Σ_i MSE(s_i, f_i)`` with MSE the mean over B×d and ``f_i`` from ``alp_attention``.

    Returns ``(total, alphas [M, B, N])``.
    """
    if len(s_cls_list) == 0:
        raise KdlabError("alp_loss: no student layers given")
    alphas = []
    total = None
    for s in s_cls_list:
        alpha, f = alp_attention(s, t_cls_stack)
        term = (s.float() - f).pow(2).mean()
        total = term if total is None else total + term
        alphas.append(alpha)
    return total, torch.stack(alphas, dim=0)


# ----------------------------------------------------------------------------------------------- contrastive
def crd_nce_loss(scores: torch.Tensor, n_data: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's NCE loss with the critic ``h(P) = P / (P + K/n)`` (docs/METHODS.md: crd, RepDistiller ``ContrastLoss``).

    ``scores [B, 1+K]`` holds the normalised scores ``P = exp(<v, g(x)>/τ) / Z``; column 0 is the positive, the
    K other columns the negatives. ``L = −(1/B) Σ_b [log h(P_b0) + Σ_{k=1..K} log(1 − h(P_bk))]`` with
    ``1 − h(P) = (K/n) / (P + K/n)``; ``eps`` guards the denominators as in the reference code (sum over K, mean
    over the batch).
    """
    if scores.dim() != 2 or scores.shape[1] < 2:
        raise KdlabError(f"crd_nce_loss: scores must be [B, 1+K] with K >= 1 negatives, got {tuple(scores.shape)}")
    if n_data < 1:
        raise KdlabError(f"crd_nce_loss: n_data must be >= 1 (the training-set size), got {n_data}")
    x = scores.float()
    K = x.shape[1] - 1
    noise = K / float(n_data)
    pos = x[:, 0]
    neg = x[:, 1:]
    log_d1 = torch.log(pos / (pos + noise + eps))
    log_d0 = torch.log(noise / (neg + noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / x.shape[0]


# ----------------------------------------------------------------------------------------------- teacher-free,
# mutual learning, self-attention distillation
def label_smoothing_targets_others(labels: torch.Tensor, C: int, eps: float) -> torch.Tensor:
    """Label smoothing spread over the other classes (TF-KD's baseline, docs/METHODS.md: tf-kd): ``[B, C]`` with
    ``1 − eps`` on the true class and ``eps/(C − 1)`` on each other class (rows sum to 1)."""
    if C < 2:
        raise KdlabError(f"label smoothing needs at least 2 classes, got {C}")
    if not 0.0 <= eps <= 1.0:
        raise KdlabError(f"label smoothing eps must be in [0, 1], got {eps}")
    onehot = F.one_hot(labels.long(), num_classes=C).float()
    return onehot * (1.0 - eps) + (1.0 - onehot) * (eps / (C - 1))


def tfkd_reg_targets(labels: torch.Tensor, C: int, a: float = 0.99, tau: float = 20.0) -> torch.Tensor:
    """Tf-KD_reg's hand-made teacher (docs/METHODS.md: tf-kd, reference-code form): ``p^d = a`` on the true class and
    ``(1 − a)/(C − 1)`` elsewhere, then ``softmax(p^d / tau)`` over the classes (the code softmaxes the
    *probabilities* divided by tau, which gives a very flat target). Returns ``[B, C]``."""
    if C < 2:
        raise KdlabError(f"the Tf-KD_reg teacher needs at least 2 classes, got {C}")
    if not 0.0 < a <= 1.0:
        raise KdlabError(f"the Tf-KD_reg correct-class probability a must be in (0, 1], got {a}")
    if tau <= 0:
        raise KdlabError(f"the Tf-KD_reg temperature tau must be > 0, got {tau}")
    onehot = F.one_hot(labels.long(), num_classes=C).float()
    pd = onehot * a + (1.0 - onehot) * ((1.0 - a) / (C - 1))
    return F.softmax(pd / tau, dim=-1)


def kl_to_targets(logits: torch.Tensor, target_probs: torch.Tensor, reduction: str = "batchmean") -> torch.Tensor:
    """``KL(t ‖ softmax(z))`` against a fixed target distribution ``t [B, C]`` (computed by ``kd_kl`` at T = 1
    on ``log t``). ``batchmean``: ``(1/B) Σ_b Σ_c t_bc (log t_bc − log q_bc)``; ``mean``: that value / C
    (PyTorch ``KLDivLoss()`` default, as in the TF-KD reference code). Targets are clamped at 1e-12."""
    _same_shape(logits, target_probs, "kl_to_targets")
    if reduction not in ("batchmean", "mean"):
        raise KdlabError(f"unknown KL reduction '{reduction}': use batchmean or mean")
    kl = kd_kl(logits, target_probs.float().clamp_min(_LOG_EPS).log(), 1.0)
    return kl / logits.shape[-1] if reduction == "mean" else kl


def dml_losses(logits_list: Sequence[torch.Tensor], labels: torch.Tensor, T: float = 1.0) -> list[torch.Tensor]:
    """Deep mutual learning (docs/METHODS.md: dml): per peer k,
    ``L_k = CE(y, z_k) + (1/(K − 1)) Σ_{l≠k} kd_kl(z_k, z_l.detach(), T)`` (peer targets detached; at T = 1 the
    KD term is ``KL(p_l ‖ p_k)`` with batchmean reduction). Returns the K per-peer losses."""
    K = len(logits_list)
    if K < 2:
        raise KdlabError(f"mutual learning needs at least 2 peers, got {K}: set peers=2 or more")
    out = []
    for k, zk in enumerate(logits_list):
        mutual = sum(kd_kl(zk, zl.detach(), T) for l, zl in enumerate(logits_list) if l != k)
        out.append(hard_ce(zk, labels) + mutual / (K - 1))
    return out


def sad_loss(attentions: Sequence[torch.Tensor], mask: torch.Tensor | None = None, target: str = "next"
             ) -> tuple[torch.Tensor, list[tuple[int, int, torch.Tensor]]]:
    """Self-attention distillation inside one model: the attention probabilities ``[B, h, L, L]`` of a shallower
    layer imitate those of a deeper layer (detached). ``target='next'``: layer i -> layer i + 1 for i = 1..M−1;
    ``'last'``: layer i -> layer M. Each pair is ``attention_kl(P_i, P_deep.detach(), mask)``; the total is
    their sum. Returns ``(total, [(i, j, value), ...])`` with 1-based layers."""
    M = len(attentions)
    if M < 2:
        raise KdlabError(f"self-attention distillation needs a model with at least 2 layers, got {M}")
    if target not in ("next", "last"):
        raise KdlabError(f"unknown self-attention target '{target}': use next or last")
    pairs = []
    total = None
    for i in range(1, M):
        j = i + 1 if target == "next" else M
        v = attention_kl(attentions[i - 1], attentions[j - 1].detach(), mask)
        pairs.append((i, j, v))
        total = v if total is None else total + v
    return total, pairs


__all__ += ["score_mse", "multi_label_bce", "multi_label_kd"]
__all__ += ["label_smoothing_targets_others", "tfkd_reg_targets", "kl_to_targets", "dml_losses", "sad_loss"]
