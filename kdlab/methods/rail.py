"""RAIL-KD: random intermediate layer KD (Haidar et al. 2022, arXiv 2109.10164; docs/METHODS.md: rail-kd).

At the start of every epoch (every ``resample_epochs`` epochs) k = M-1 distinct teacher layers are drawn
from 1..N-1 without replacement, sorted and paired with student layers 1..k
(``kdlab.kd.mapping.rail_random(seed, epoch)``: the same seed repeats the same draws). Layer states are
mean-pooled over real tokens (masked mean; GLMKD averages over all positions), projected to u = 128 and
L2-normalised:

* ``rail-kd-l`` (layer-wise): ``L_RAIL = sum_i || norm(W_S h_S,i) - norm(W_T h_T,k_i) ||^2`` with one
  W_S / W_T shared across layers;
* ``rail-kd-c`` (concatenated): ``L_RAIL = || norm(W_S [h_S,1;...;h_S,k]) - norm(W_T [h_T,k_1;...;h_T,k_k]) ||^2``.

Total ``L = 1/3 CE + 1/3 KD(T=10) + 1/3 L_RAIL`` (GLMKD defaults).
"""
from __future__ import annotations

import torch
from torch import nn

from ..kd import losses, mapping
from ..errors import KdlabError
from ..kd.objectives import sum_terms
from .base import LayerKD, Option, register


class RailKD(LayerKD):
    defaults = dict(alpha_hard=1 / 3, alpha_soft=1 / 3, beta=1 / 3, temperature=10.0, proj_dim=128, k=None,
                    resample_epochs=1, exclude_last=True)
    options = dict(
        proj_dim=Option("int", "size of the projection both models' states are mapped to", lo=1),
        k=Option("int", "teacher layers drawn per epoch (empty = student layers - 1)", lo=1, optional=True),
        resample_epochs=Option("int", "redraw the teacher layers every this many epochs", lo=1),
        exclude_last=Option("bool", "leave the last layers out of the draw (the KD term covers them)"))
    term = "rail"
    concat = False

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        M, N = ctx.student.layers, ctx.teacher.layers
        self.M, self.N = M, N
        k = self.hp["k"]
        self.k = M - 1 if k is None else int(k)
        if self.k < 1:
            raise KdlabError(f"{self.name}: no intermediate layers to sample (student has {M} layer(s), k={self.k}); "
                             "use a student with at least 2 layers or --set k=1 --set exclude_last=false")
        if int(self.hp["resample_epochs"]) < 1:
            raise KdlabError(f"{self.name}: resample_epochs must be at least 1, got {self.hp['resample_epochs']}")
        u = int(self.hp["proj_dim"])
        if u < 1:
            raise KdlabError(f"{self.name}: proj_dim must be a positive integer, got {u}")
        mult = self.k if self.concat else 1
        self.proj_s = nn.Linear(mult * ctx.student.hidden, u)
        self.proj_t = nn.Linear(mult * ctx.teacher.hidden, u)
        self.draw_epoch = None
        self.W = self.draw(0)

    def draw(self, epoch: int) -> torch.Tensor:
        """The mapping for ``epoch`` (redrawn every ``resample_epochs`` epochs)."""
        period = int(self.hp["resample_epochs"])
        self.draw_epoch = epoch // period
        return mapping.rail_random(self.M, self.N, seed=self.ctx.seed, epoch=self.draw_epoch, k=self.k,
                                   exclude_last=bool(self.hp["exclude_last"]))

    def on_epoch_start(self, state):
        self.W = self.draw(state.epoch)

    def pairs(self) -> list[tuple[int, int]]:
        return [(i, j) for i, j, _ in mapping.pairs(self.W)]

    def layer_loss(self, s, t, batch, state):
        pairs = self.pairs()
        pool = lambda h: losses.masked_mean(h, s.mask)
        if self.concat:
            cs = torch.cat([pool(s.hidden[i]) for i, _ in pairs], dim=-1)
            ct = torch.cat([pool(t.hidden[j]) for _, j in pairs], dim=-1)
            val = losses.l2_normalized_mse(self.proj_s(cs), self.proj_t(ct))
            name = (f"rail/s{'+'.join(str(i) for i, _ in pairs)}-t{'+'.join(str(j) for _, j in pairs)}")
            return val, {name: val.detach()}
        return sum_terms((f"rail/s{i}-t{j}",
                          losses.l2_normalized_mse(self.proj_s(pool(s.hidden[i])), self.proj_t(pool(t.hidden[j]))))
                         for i, j in pairs)

    def extra_state(self):
        return {"draw_epoch": self.draw_epoch}


@register
class RailKDLayerwise(RailKD):
    """RAIL-KD_l: random sorted teacher layers per epoch, per-layer projected + normalised mean states."""
    name = "rail-kd-l"
    summary = ("L = 1/3 CE + 1/3 KD(T=10) + 1/3 sum_i ||norm(W_S mean_m H^S_i) - norm(W_T mean_m H^T_k_i)||^2  "
               "(k_i random sorted teacher layers, redrawn every epoch)")


@register
class RailKDConcat(RailKD):
    """RAIL-KD_c: the randomly drawn layers' mean states concatenated, projected and normalised."""
    name = "rail-kd-c"
    summary = ("L = 1/3 CE + 1/3 KD(T=10) + 1/3 ||norm(W_S [h^S_1;..;h^S_k]) - norm(W_T [h^T_k1;..;h^T_kk])||^2  "
               "(random sorted teacher layers, redrawn every epoch)")
    concat = True
