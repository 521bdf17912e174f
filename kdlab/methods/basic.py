"""Fine-tuning without a teacher, Hinton KD, and logit + hidden-state KD over a mapping matrix."""
from __future__ import annotations

from ..kd.objectives import HiddenMatch
from .base import LayerKD, LogitKD, Method, Option, register

__all__ = ["CE", "KD", "KDMSE", "HiddenKD", "LogitKD"]


@register
class CE(Method):
    """Hard-label cross-entropy only: fine-tunes a teacher, or trains a student without KD."""
    name = "ce"
    summary = "L = CE(y, z_S)  (no teacher: fine-tuning and the no-KD baseline)"
    uses_teacher = False

    def loss(self, s, t, batch, state):
        ce = self.hard_loss(s.logits, batch)   # MSE to the gold score for a score task
        self.record_terms(ce=ce)
        return ce, {"ce": ce.detach()}


@register
class KD(LogitKD):
    """Hinton et al. (2015): soft targets at temperature T with the T^2 factor, plus hard labels."""
    name = "kd"
    summary = "L = a_soft * T^2 * KL(p_T^T || q_S^T) + a_hard * CE(y, z_S)"


@register
class KDMSE(LogitKD):
    """Logit regression (Distilled BiLSTM): MSE between student and teacher logits plus hard labels."""
    name = "kd-mse"
    summary = "L = a_soft * ||z_T - z_S||^2 + a_hard * CE(y, z_S)"
    defaults = dict(kd_form="mse")


@register
class HiddenKD(LayerKD):
    """Logit KD plus hidden-state matching (MSE or cosine) on the layers the mapping matrix pairs."""
    name = "hidden"
    summary = "L = a_soft*KD + a_hard*CE + beta * sum_(i,j in W) dist(P H^S_i, H^T_j)  (padding masked)"
    defaults = dict(beta=1.0, distance="mse", pool="tokens", mapping="uniform", mapping_layers=None,
                    mapping_matrix=None)
    options = dict(
        distance=Option("choice", "distance between student and teacher hidden states"),
        pool=Option("choice", "compare every token, only [CLS], or the mean over tokens"))
    choices = dict(distance=("mse", "cosine"), pool=("tokens", "cls", "mean"))
    term = "hidden"

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        self.W = self.build_mapping()
        self.match = HiddenMatch(ctx.student.hidden, ctx.teacher.hidden, ctx.student.layers, self.hp["distance"],
                                 self.hp["pool"])

    def layer_loss(self, s, t, batch, state):
        return self.match(s.hidden, t.hidden, s.mask, self.W.to(s.logits.device))
