"""Fine-tuning without a teacher, Hinton KD, and logit + hidden-state KD over a mapping matrix."""
from __future__ import annotations

import torch

from .. import losses, mapping
from ..features import Need
from ..objectives import HiddenMatch, logit_kd
from .base import Method, register


@register
class CE(Method):
    """Hard-label cross-entropy only: fine-tunes a teacher, or trains a student without KD."""
    name = "ce"
    summary = "L = CE(y, z_S)  (no teacher: fine-tuning and the no-KD baseline)"
    uses_teacher = False

    def loss(self, s, t, batch, state):
        ce = losses.hard_ce(s.logits, batch["labels"])
        return ce, {"ce": ce.detach()}


class LogitKD(Method):
    defaults = dict(temperature=2.0, alpha_soft=0.5, alpha_hard=0.5, kd_form="kl")  # + temperature_end/_schedule
    weights = ("alpha_soft", "alpha_hard")

    def logit_terms(self, s, t, batch, state):
        T = self.temperature(state)
        kd = logit_kd(s.logits, t.logits, self.hp["kd_form"], T)
        ce = losses.hard_ce(s.logits, batch["labels"])
        total = self.w("alpha_soft", state) * kd + self.w("alpha_hard", state) * ce
        return total, {"kd": kd.detach(), "ce": ce.detach(), "temperature": torch.tensor(T)}


@register
class KD(LogitKD):
    """Hinton et al. (2015): soft targets at temperature T with the T^2 factor, plus hard labels."""
    name = "kd"
    summary = "L = a_soft * T^2 * KL(p_T^T || q_S^T) + a_hard * CE(y, z_S)"

    def loss(self, s, t, batch, state):
        return self.logit_terms(s, t, batch, state)


@register
class KDMSE(LogitKD):
    """Logit regression (Distilled BiLSTM): MSE between student and teacher logits plus hard labels."""
    name = "kd-mse"
    summary = "L = a_soft * ||z_T - z_S||^2 + a_hard * CE(y, z_S)"
    defaults = dict(kd_form="mse")

    def loss(self, s, t, batch, state):
        return self.logit_terms(s, t, batch, state)


@register
class HiddenKD(LogitKD):
    """Logit KD plus hidden-state matching (MSE or cosine) on the layers the mapping matrix pairs."""
    name = "hidden"
    summary = "L = a_soft*KD + a_hard*CE + beta * sum_(i,j in W) dist(P H^S_i, H^T_j)  (padding masked)"
    defaults = dict(beta=1.0, distance="mse", pool="tokens", mapping="uniform", mapping_layers=None,
                    mapping_matrix=None)
    weights = ("beta",)

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        M, N = ctx.student.layers, ctx.teacher.layers
        self.W = mapping.build(self.hp["mapping"], M, N, layers=self.hp["mapping_layers"], seed=ctx.seed,
                               matrix=self.hp["mapping_matrix"])
        self.match = HiddenMatch(ctx.student.hidden, ctx.teacher.hidden, M, self.hp["distance"], self.hp["pool"])

    def need(self, state):
        return Need(hidden=True), Need(hidden=True)

    def mapping(self, state):
        return self.W

    def loss(self, s, t, batch, state):
        total, parts = self.logit_terms(s, t, batch, state)
        h, hparts = self.match(s.hidden, t.hidden, s.mask, self.W.to(s.logits.device))
        parts.update(hparts)
        parts["hidden"] = h.detach()
        return total + self.w("beta", state) * h, parts
