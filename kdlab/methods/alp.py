"""ALP-KD: attention-based layer projection (Passban et al. 2021, arXiv 2012.14022; docs/METHODS.md: alp-kd).

Each student layer i attends over the [CLS] vectors of ALL teacher layers 1..N, per example:
``alpha_ij = softmax_j <h^S_i, h^T_j>``, ``f_i = sum_j alpha_ij h^T_j``, ``L_ALP = sum_i MSE(h^S_i, f_i)``
(``kdlab.kd.losses.alp_loss``; no 1/sqrt(d) scaling, GLMKD form). A learned linear map takes the student's
[CLS] to the teacher width when the widths differ. Total ``0.1*CE + 0.7*KD(T=20) + 0.2*L_ALP`` (GLMKD).

The mapping matrix W [M, N] is the batch-averaged alpha of the latest batch (rows sum to 1), so the
run store records how the attention over teacher layers moves during training.
"""
from __future__ import annotations

import torch

from ..kd import losses
from ..kd.objectives import Projection
from .base import LayerKD, register


@register
class ALPKD(LayerKD):
    """Attention over all teacher layers' [CLS] per student layer."""
    name = "alp-kd"
    summary = ("L = 0.1*CE + 0.7*KD(T=20) + 0.2 * sum_i MSE(h^S_i, sum_j softmax_j<h^S_i,h^T_j> h^T_j)  "
               "([CLS], all teacher layers)")
    defaults = dict(alpha_hard=0.1, alpha_soft=0.7, beta=0.2, temperature=20.0)
    term = "alp"

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        M, N = ctx.student.layers, ctx.teacher.layers
        self.proj = Projection(ctx.student.hidden, ctx.teacher.hidden)
        self.register_buffer("W", torch.full((M, N), 1.0 / N), persistent=False)

    def layer_loss(self, s, t, batch, state):
        N = len(t.hidden) - 1
        t_stack = torch.stack([t.cls(j).float() for j in range(1, N + 1)], dim=1)  # [B, N, d_T]
        alp, rows, parts = None, [], {}
        tall = "+".join(str(j) for j in range(1, N + 1))
        for i in range(1, len(s.hidden)):
            term, alphas = losses.alp_loss([self.proj(s.cls(i))], t_stack)
            w = alphas[0].detach().mean(dim=0)  # [N], sums to 1
            rows.append(w)
            parts[f"alp/s{i}-t{tall}"] = term.detach()
            for j in range(N):
                parts[f"alp_weight/s{i}-t{j + 1}"] = w[j]
            alp = term if alp is None else alp + term
        self.W = torch.stack(rows).to(self.W.dtype)
        return alp, parts
