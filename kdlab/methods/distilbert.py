"""DistilBERT (Sanh et al. 2019, arXiv 1910.01108; docs/METHODS.md: distilbert), kdlab's task-stage adaptation.

``L = α_ce·T²·KL(softmax(z_T/T) ‖ softmax(z_S/T)) + α_hard·CE(y, z_S) + α_cos·L_cos``

``L_cos = (1/Σm) Σ_{b,l: m_bl=1} (1 − cos(H^S_M[b,l], H^T_N[b,l]))`` on the **last** hidden layer only, padding
masked (``losses.hidden_cosine``), as the reference ``masked_select`` + ``CosineEmbeddingLoss`` does.

Defaults (the released command): ``temperature=2.0``, ``alpha_ce=5.0``, ``alpha_cos=1.0``; ``alpha_hard=2.0``
takes the weight of the MLM term, which the class-label task replaces by hard-label CE. ``mapping="final"``
pairs student layer M with teacher layer N only; any ``kdlab.kd.mapping`` strategy (``uniform``, ``last``,
``explicit`` with ``mapping_layers``, ...) extends the cosine term to every mapped pair.

Student init: the teacher's embeddings plus the layers ``round_half_up(linspace(0, N−1, M))`` (0-based),
which for 12→6 is the reference ``extract_distilbert.py`` list [0,2,4,7,9,11]; pooler and classifier are
copied too. A ``--student-init`` other than the default, an explicit layer list or ``--student-hidden``
take precedence.

Deviations: the reference distils the MLM vocabulary distribution during pre-training; here the KD term is on
the class logits (batchmean, canonical) plus hard CE. When the widths differ (the reference requires equal
widths) a learned linear projection maps the student's states to the teacher's width.
"""
from __future__ import annotations

import math

import torch

from ..errors import KdlabError
from ..models.features import Need
from ..kd.objectives import HiddenMatch
from .base import MAPPINGS, Method, Option, register, weight


def init_layers(M: int, N: int) -> list[int]:
    """DistilBERT's student init: 0-based teacher layers spread from the first to the last one."""
    if M < 1 or M > N:
        raise KdlabError(f"a student needs 1..{N} layers for a {N}-layer teacher (got {M})")
    if M == 1:
        return [N - 1]
    return [int(math.floor(i * (N - 1) / (M - 1) + 0.5)) for i in range(M)]


@register
class DistilBERT(Method):
    """DistilBERT adapted to the task stage. See the module docstring for the loss, defaults and deviations."""
    name = "distilbert"
    summary = "L = a_ce*T^2*KL + a_hard*CE + a_cos*(1 - cos(H^S_M, H^T_N)) (token-level, padding masked)"
    defaults = dict(temperature=2.0, alpha_ce=5.0, alpha_hard=2.0, alpha_cos=1.0, mapping="final",
                    mapping_layers=None)
    options = dict(
        alpha_ce=weight("weight of the soft-target KL term"),
        alpha_cos=weight("weight of the hidden-state cosine term"),
        mapping=Option("choice", "layers of the cosine term: final = last student vs last teacher layer",
                       values=("final",) + MAPPINGS))
    weights = ("alpha_ce", "alpha_hard", "alpha_cos")
    student_init = "explicit"  # the layers of init_layers(M, N), see make_student
    student_need = teacher_need = Need(hidden=True)

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        M, N = ctx.student.layers, ctx.teacher.layers
        if self.hp["mapping"] == "final":
            self.W = torch.zeros(M, N)
            self.W[M - 1, N - 1] = 1.0
        else:
            self.W = self.build_mapping()
        self.match = HiddenMatch(ctx.student.hidden, ctx.teacher.hidden, M, "cosine", "tokens", name="hidden")

    @classmethod
    def make_student(cls, teacher, tokenizer, cfg):
        from ..models.core import build_student
        if cfg.student_init != "skip" or cfg.student_hidden:
            return build_student(teacher, layers=cfg.student_layers, init=cfg.student_init,
                                 layer_list=cfg.student_layer_list, hidden=cfg.student_hidden, seed=cfg.train.seed)
        n = teacher.config.num_hidden_layers
        return build_student(teacher, init="explicit", layer_list=init_layers(cfg.student_layers, n))

    def loss(self, s, t, batch, state):
        cos, parts = self.match(s.hidden, t.hidden, s.mask, self.W.to(s.logits.device))
        kd = self.kd_term(s, t, state, parts)
        ce = self.hard_loss(s.logits, batch)
        total = (self.w("alpha_ce", state) * kd + self.w("alpha_hard", state) * ce
                 + self.w("alpha_cos", state) * cos)
        if self.terms is not None:
            self.record_terms(kd=self.w("alpha_ce", state) * kd, ce=self.w("alpha_hard", state) * ce,
                              cos=self.w("alpha_cos", state) * cos)
        parts.update(ce=ce.detach(), cos=cos.detach())
        return total, parts
