"""MobileBERT layer-wise knowledge transfer (Sun et al. 2020, arXiv 2004.02984; docs/METHODS.md: mobilebert), progressive.

Per mapped layer pair (student l, teacher g(l)):

* feature-map transfer, release-code form (``losses.feature_map_mse``): both states standardised per token by a
  non-trainable LayerNorm, then MSE over real tokens and d: ``L_FMT = Σ_{real t} Σ_n (LN(H^S W)−LN(H^T))² / (Σm·d)``;
* attention transfer (``losses.attention_kl``): ``L_AT = Σ_{b,a,t: real t} KL(P^T_{a,t,:} ‖ P^S_{a,t,:}) / (h·Σm)``
  with ``P = softmax(QKᵀ/√d_k)`` recomputed from Q, K (padded keys masked).

``L = mean over active layers of (fmt_weight·L_FMT + at_weight·L_AT)`` (+ optional logit terms, off by default).

Progressive schedule (the paper's best): the steps are cut into M stages of ``stage_steps`` steps (default
``total_steps / M``); in stage l only student layer l's loss is on, lower layers' losses are off after their
stage. Each step records ``active_layer``; ``mapping(state)`` holds only the active layer's row.
``schedule="joint"`` turns all layers on together (joint KT).

Lower layers (``lower_layers``, progressive only): ``freeze`` (default, the paper's "lower layers frozen") — in
stage l the student layers 1..l-1 and, from stage 2 on, the embeddings (the layer below layer 1) receive no
update: ``after_backward`` (after the DDP all-reduce, before clipping and the optimiser step) sets their ``.grad``
to None, so AdamW skips them (no moment update, no weight decay) and clipping ignores them. ``train`` keeps them
learning (their loss is still off). The release code's lr×0.1 after a phase is not offered.

Defaults: ``fmt_weight=100``, ``at_weight=1`` (release code), ``schedule="progressive"``, ``stage_steps=None``,
``lower_layers="freeze"``, ``mapping="uniform"`` (MobileBERT maps 1:1 because teacher and student share depth; the
kit's students are shallower, so g is any ``kdlab.kd.mapping`` strategy), ``projection="auto"`` (a TinyBERT-style learned linear map
student → teacher width when the widths differ; ``linear`` = always), ``mask_padding=true``,
``head_average=false``, ``alpha_soft=0``, ``alpha_hard=0``, ``temperature=1``.

Deviations from the reference code:
* lower layers are frozen outright (release code: lr×0.1 after their phase); the embeddings are trained in
  stage 1 (the paper copies them from the teacher, which the kit's narrower students cannot);
* mean-transfer and variance-transfer terms of the release code are not included, nor the pre-training
  distillation stage (``alpha_soft`` / ``alpha_hard`` add logit KD / CE if wanted);
* padded query rows are excluded from the attention average (the reference excludes only padded keys); with
  ``mask_padding=false`` both averages run over all positions (padded keys stay masked in the softmax);
* the head counts must agree (as in the reference: 4 and 4); ``head_average=true`` compares head-averaged maps.
"""
from __future__ import annotations

import math

import torch

from ..kd import attention, losses, mapping
from ..errors import KdlabError
from ..models.features import Need
from ..models import families
from ..kd.objectives import PROJECTIONS, make_projection
from .base import Method, Option, register, weight


@register
class MobileBERT(Method):
    """MobileBERT progressive knowledge transfer (FMT + AT per layer). See the module docstring."""
    name = "mobilebert"
    summary = ("L = 100*MSE(LN(H^S_l W), LN(H^T_g(l))) + KL(P^T_g(l) || P^S_l), one layer l at a time "
               "(progressive, stage = total_steps/M)")
    defaults = dict(fmt_weight=100.0, at_weight=1.0, schedule="progressive", stage_steps=None,
                    lower_layers="freeze", mapping="uniform",
                    mapping_layers=None, projection="auto", mask_padding=True, head_average=False,
                    alpha_soft=0.0, alpha_hard=0.0, temperature=1.0)
    options = dict(
        fmt_weight=weight("weight of the feature-map transfer (MSE of standardised states)"),
        at_weight=weight("weight of the attention transfer (KL)"),
        schedule=Option("choice", "progressive: one layer per stage; joint: all layers at once"),
        lower_layers=Option("choice", "progressive: freeze or keep training the layers below the active one"))
    weights = ("fmt_weight", "at_weight", "alpha_soft", "alpha_hard")
    choices = dict(schedule=("progressive", "joint"), projection=PROJECTIONS, lower_layers=("freeze", "train"))
    needs_attentions = True
    student_need = teacher_need = Need(hidden=True, qkv=True)

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        st = self.hp["stage_steps"]
        if st is not None and (not isinstance(st, (int, float)) or st <= 0):
            raise KdlabError(f"stage_steps must be a positive number of steps (got {st!r})")
        attention.check_heads(self.name, ctx.student.heads, ctx.teacher.heads, bool(self.hp["head_average"]))
        self.W = self.build_mapping()
        self.proj = make_projection(self.hp["projection"], ctx.student.hidden, ctx.teacher.hidden)

    def stage_length(self, state) -> float:
        st = self.hp["stage_steps"]
        return float(st) if st is not None else state.total_steps / self.W.shape[0]

    def active_layer(self, state) -> int:
        """1-based student layer whose loss is on (progressive), or 0 when all are on (joint)."""
        if self.hp["schedule"] == "joint":
            return 0
        M = self.W.shape[0]
        return min(M, int(math.floor(state.step / self.stage_length(state))) + 1)

    def frozen_modules(self, student, state) -> list:
        """Student modules that get no update at this step: embeddings and layers 1..l-1 in stage l >= 2."""
        layer = self.active_layer(state)
        if self.hp["lower_layers"] != "freeze" or layer < 2:
            return []
        return [families.embeddings(student), *families.layers(student)[: layer - 1]]

    @torch.no_grad()
    def after_backward(self, student, teacher, state):
        for module in self.frozen_modules(student, state):
            for p in module.parameters():
                p.grad = None   # AdamW skips None grads (a zero grad would still move p by weight decay)

    def mapping(self, state):
        layer = self.active_layer(state)
        if layer == 0:
            return self.W
        W = torch.zeros_like(self.W)
        W[layer - 1] = self.W[layer - 1]
        return W

    def layer_terms(self, s, t, i: int, j: int):
        """(FMT, AT) between student layer i and teacher layer j (1-based)."""
        mask = s.mask if self.hp["mask_padding"] else None
        fmt = losses.feature_map_mse(self.proj(s.hidden[i]), t.hidden[j].float(), mask)
        ha = bool(self.hp["head_average"])
        at = losses.attention_kl(attention.layer_probs(s, i, ha), attention.layer_probs(t, j, ha), mask)
        return fmt, at

    def loss(self, s, t, batch, state):
        W = self.mapping(state)
        parts, total, n = {}, s.logits.float().sum() * 0.0, 0  # keeps a graph when no pair is active
        w_fmt, w_at = self.w("fmt_weight", state), self.w("at_weight", state)
        for i, j, _ in mapping.pairs(W):
            fmt, at = self.layer_terms(s, t, i, j)
            parts[f"fmt/s{i}-t{j}"] = fmt.detach()
            parts[f"at/s{i}-t{j}"] = at.detach()
            total = total + w_fmt * fmt + w_at * at
            n += 1
        total = total / max(1, n)
        a_soft, a_hard = self.w("alpha_soft", state), self.w("alpha_hard", state)
        if a_soft:
            total = total + a_soft * self.kd_term(s, t, state, parts, log_temperature=False)
        if a_hard:
            ce = self.hard_loss(s.logits, batch)
            total = total + a_hard * ce
            parts["ce"] = ce.detach()
        parts["active_layer"] = torch.tensor(float(self.active_layer(state)))
        return total, parts
