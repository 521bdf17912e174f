"""KD from internal representations (Aguilar et al. 2020, arXiv 1910.03723; docs/METHODS.md: internal-all).

Per mapped pair (student layer i <- teacher layer g(i), uniform mapping g(i) = round(i*N/M)):
``L_att = (1/(h*L)) sum_heads sum_real_queries KL(P^T || P^S)`` over all heads (``losses.attention_kl``)
and ``L_cls = 1 - cos(H^T[:,0], H^S[:,0])`` (``losses.cls_cosine``; ``squared=true`` squares it). The attention probabilities are the pre-dropout maps
recomputed from each layer's Q and K (``kdlab.kd.attention.layer_probs``).

Three algorithms:

* ``internal-all``: every layer at once, with soft-label KD from the start;
* ``internal-pid`` (progressive): stage s = 1..M distils student layer s only; stage M+1 distils the soft
  labels only;
* ``internal-sid`` (stacked): stage s distils layers 1..s; stage M+1 keeps all layers and adds soft labels.

A stage ends after ``stage_steps`` optimiser steps (default total_steps/(M+1)) or as soon as the [CLS]
cosine loss of the newest layer falls under ``threshold`` (0 = off), whichever comes first. Soft-label KD
(T = 1) is on only in the last stage. The metrics carry ``stage`` and ``stage_layer``; W holds the active pairs.
"""
from __future__ import annotations

import torch

from ..kd import attention, losses, mapping
from ..errors import KdlabError
from ..models.features import Need
from ..kd.objectives import Projection
from .base import LogitKD, Option, register, weight


class InternalKD(LogitKD):
    defaults = dict(temperature=1.0, alpha_soft=1.0, alpha_hard=0.0, att_weight=1.0, cls_weight=1.0,
                    squared=False, stage_steps=None, threshold=0.0, head_average=False,
                    mapping="uniform", mapping_layers=None)
    options = dict(
        att_weight=weight("weight of the attention-map KL term"),
        cls_weight=weight("weight of the [CLS] cosine term"),
        squared=Option("bool", "use the squared cosine distance"),
        threshold=Option("float", "move to the next stage when the cosine loss is below this (0 = off)", lo=0))
    weights = ("att_weight", "cls_weight")
    needs_attentions = False  # maps come from the Q, K projections (Need.qkv), any attention implementation
    mode = "all"

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        M = self.M = ctx.student.layers
        attention.check_heads(self.name, ctx.student.heads, ctx.teacher.heads, bool(self.hp["head_average"]))
        self.full = self.build_mapping()
        self.pairs = {i: j for i, j, _ in mapping.pairs(self.full)}
        self.proj = Projection(ctx.student.hidden, ctx.teacher.hidden)
        if self.hp["stage_steps"] is not None and int(self.hp["stage_steps"]) < 1:
            raise KdlabError(f"{self.name}: stage_steps must be at least 1 step, got {self.hp['stage_steps']}")
        if float(self.hp["threshold"]) < 0:
            raise KdlabError(f"{self.name}: threshold must be >= 0 (0 = off), got {self.hp['threshold']}")
        self.stage = 1 if self.mode != "all" else M + 1
        self.stage_start = 0
        self.advance_pending = False

    # -- stages --------------------------------------------------------------------------------
    @property
    def last_stage(self) -> int:
        return self.M + 1

    def budget(self, state) -> int:
        if self.hp["stage_steps"] is not None:
            return int(self.hp["stage_steps"])
        return max(1, state.total_steps // (self.M + 1))

    def update_stage(self, state):
        """Move to the next stage when the step budget is spent or the threshold was reached."""
        if self.stage >= self.last_stage:
            return
        if self.advance_pending or state.step - self.stage_start >= self.budget(state):
            self.stage += 1
            self.stage_start = state.step
            self.advance_pending = False

    def active_layers(self) -> list[int]:
        """Student layers whose internal losses are on in the current stage."""
        if self.mode == "all":
            return list(range(1, self.M + 1))
        if self.stage >= self.last_stage:
            return [] if self.mode == "pid" else list(range(1, self.M + 1))
        return [self.stage] if self.mode == "pid" else list(range(1, self.stage + 1))

    def newest_layer(self) -> int:
        return min(self.stage, self.M) if self.mode != "all" else self.M

    def need(self, state):
        self.update_stage(state)
        n = Need(hidden=True, qkv=bool(self.active_layers()))
        return n, n

    def mapping(self, state):
        self.update_stage(state)
        W = torch.zeros_like(self.full)
        for i in self.active_layers():
            W[i - 1] = self.full[i - 1]
        return W

    # -- loss ----------------------------------------------------------------------------------
    def loss(self, s, t, batch, state):
        self.update_stage(state)
        active = self.active_layers()
        parts = {"stage": torch.tensor(float(self.stage)),
                 "stage_layer": torch.tensor(float(self.newest_layer() if self.stage <= self.M else 0))}
        total = s.logits.new_zeros((), dtype=torch.float32)
        if self.stage >= self.last_stage:
            kd_total, kparts = self.logit_terms(s, t, batch, state)
            parts.update(kparts)
            total = total + kd_total
        elif self.w("alpha_hard", state):
            ce = self.hard_loss(s.logits, batch)
            parts["ce"] = ce.detach()
            total = total + self.w("alpha_hard", state) * ce
            self.record_terms(ce=self.w("alpha_hard", state) * ce)
        att_sum = cls_sum = None
        for i in active:
            j = self.pairs.get(i)
            if j is None:
                continue
            ha = bool(self.hp["head_average"])
            att = losses.attention_kl(attention.layer_probs(s, i, ha), attention.layer_probs(t, j, ha), s.mask)
            cos = losses.cls_cosine(self.proj(s.cls(i)), t.cls(j).float(), squared=bool(self.hp["squared"]))
            parts[f"att_kl/s{i}-t{j}"] = att.detach()
            parts[f"cls_cos/s{i}-t{j}"] = cos.detach()
            att_sum = att if att_sum is None else att_sum + att
            cls_sum = cos if cls_sum is None else cls_sum + cos
            if (i == self.newest_layer() and self.mode != "all" and self.stage <= self.M
                    and float(self.hp["threshold"]) > 0 and float(cos.detach()) < float(self.hp["threshold"])):
                self.advance_pending = True
        if att_sum is not None:
            parts["att_kl"] = att_sum.detach()
            parts["cls_cos"] = cls_sum.detach()
            total = total + self.w("att_weight", state) * att_sum + self.w("cls_weight", state) * cls_sum
            if self.terms is not None:
                self.record_terms(att_kl=self.w("att_weight", state) * att_sum,
                                  cls_cos=self.w("cls_weight", state) * cls_sum)
        return total, parts

    def extra_state(self):
        return {"stage": self.stage, "stage_start": self.stage_start, "advance_pending": self.advance_pending}

    def load_extra_state(self, d):
        self.stage = int(d.get("stage", self.stage))
        self.stage_start = int(d.get("stage_start", self.stage_start))
        self.advance_pending = bool(d.get("advance_pending", self.advance_pending))


@register
class InternalAll(InternalKD):
    """All layers at once: attention KL + [CLS] cosine on every mapped pair, plus soft-label KD."""
    name = "internal-all"
    summary = "L = KD(T=1) + sum_i [ KL(P^T_g(i) || P^S_i) + (1 - cos(h^T_g(i)[CLS], h^S_i[CLS])) ]  (all heads)"
    mode = "all"


@register
class InternalPID(InternalKD):
    """Progressive: one student layer at a time, bottom-up, then soft labels only."""
    name = "internal-pid"
    summary = ("stage s<=M: L = KL(P^T_g(s) || P^S_s) + (1 - cos [CLS]);  stage M+1: L = KD(T=1)  "
               "(switch after total/(M+1) steps or when the cosine loss < threshold)")
    mode = "pid"


@register
class InternalSID(InternalKD):
    """Stacked: layers 1..s at stage s, then all layers plus soft labels."""
    name = "internal-sid"
    summary = ("stage s<=M: L = sum_{i<=s} [KL(P^T_g(i) || P^S_i) + (1 - cos [CLS])];  stage M+1: + KD(T=1)  "
               "(switch after total/(M+1) steps or when the cosine loss < threshold)")
    mode = "sid"
