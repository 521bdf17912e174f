"""CKD, "Why Skip If You Can Combine" (Wu et al. 2020, arXiv 2010.03034; docs/METHODS.md: ckd).

Teacher layers 1..N are split into M contiguous buckets (``kdlab.kd.mapping.grouped``; 12->6: {1,2},{3,4},...).
For bucket i the teacher states are concatenated along the hidden dimension and mapped to the student width
by a learned linear map of its own, ``f_i = W_i [H^T_a; ...; H^T_b] + b_i``; the student layer i matches it
with a masked MSE. ``L = a_hard*CE + a_soft*KD + beta * sum_i MSE(H^S_i, f_i)`` (defaults 1, 1, 1).
"""
from __future__ import annotations

import torch
from torch import nn

from ..kd import losses, mapping
from ..kd.objectives import sum_terms
from .base import LayerKD, Option, register


def _label(a: int, b: int) -> str:
    return "+".join(str(j) for j in range(a, b + 1))


@register
class CKD(LayerKD):
    """Combinatorial KD: each student layer learns a learned projection of its concatenated teacher bucket."""
    name = "ckd"
    summary = ("L = CE + KD + beta * sum_i maskedMSE(H^S_i, W_i [H^T_a;...;H^T_b])  "
               "(contiguous teacher buckets, learned linear map per bucket)")
    defaults = dict(alpha_soft=1.0, alpha_hard=1.0, temperature=2.0, beta=1.0, pool="tokens")
    options = dict(pool=Option("choice", "match every token's state or only [CLS]"))
    choices = dict(pool=("tokens", "cls"))
    term = "ckd"

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        M, N = ctx.student.layers, ctx.teacher.layers
        self.W = mapping.grouped(M, N)
        self.groups = []
        for i in range(M):
            cols = torch.nonzero(self.W[i] > 0).flatten().tolist()
            self.groups.append((cols[0] + 1, cols[-1] + 1))
        dS, dT = ctx.student.hidden, ctx.teacher.hidden
        self.proj = nn.ModuleList(nn.Linear((b - a + 1) * dT, dS) for a, b in self.groups)

    def layer_loss(self, s, t, batch, state):
        """(sum over buckets, {"ckd/s<i>-t<a+..+b>": value})."""
        tokens = self.hp["pool"] == "tokens"
        mask = s.mask if tokens else torch.ones(s.mask.shape[0], 1, dtype=s.mask.dtype, device=s.mask.device)

        def bucket(i, a, b):
            cat = torch.cat([t.hidden[j].float() for j in range(a, b + 1)], dim=-1)
            hs = s.hidden[i + 1]
            if not tokens:
                cat, hs = cat[:, :1], hs[:, :1]
            return losses.hidden_mse(hs, self.proj[i](cat.to(self.proj[i].weight.dtype)), mask)

        return sum_terms((f"ckd/s{i + 1}-t{_label(a, b)}", bucket(i, a, b)) for i, (a, b) in enumerate(self.groups))
