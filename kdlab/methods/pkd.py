"""BERT-PKD, Patient Knowledge Distillation (Sun et al. 2019, arXiv 1908.09355; docs/METHODS.md: pkd-skip).

``L = (1−α)·CE(y, z_S) + α·T²·KL(p_T^T ‖ q_S^T) + β·L_PT`` with the patient loss on L2-normalised [CLS] states

``L_PT = (1/B) Σ_b Σ_{i=1}^{M−1} ‖ s_bi/‖s_bi‖ − t_b,g(i)/‖t_b,g(i)‖ ‖²`` (``losses.pkd_pt``)

over the first M−1 student layers (the last one is supervised by the KD term). The mapping g comes from
``kdlab.kd.mapping``: ``pkd-skip`` = ``uniform`` (12→6: 2,4,6,8,10), ``pkd-last`` = ``last`` (12→6: 7,8,9,10,11);
the last student row of W is zero. [CLS] only, so no padding mask is needed.

Defaults (the official repo's RTE preset): ``temperature=10``, ``alpha=0.7``; ``beta=None`` means
``beta_official / (k·d)`` with ``beta_official=500``, i.e. the official code's β=500 re-scaled from its
``F.mse_loss`` (mean over B×k×d) to our sum-over-layers-and-d form. Give ``beta`` to set it directly.
``mapping`` may be any ``kdlab.kd.mapping`` strategy (``mapping_layers`` for ``explicit``). When the widths differ
a learned linear projection (student → teacher width) is applied before normalising (``projection``: ``auto``
= only when the widths differ, ``linear`` = always).

Deviations from the reference code: the KD term uses kdlab's canonical ``batchmean`` reduction (the official
code's ``KLDivLoss('mean')`` divides additionally by the number of classes C); L_PT is summed over layers and d
(official: mean, hence the β re-scaling above).
"""
from __future__ import annotations

from ..kd import losses, mapping
from ..errors import KdlabError
from ..models.features import Need
from ..kd.objectives import PROJECTIONS, make_projection
from .base import Method, Option, register, weight


class PKD(Method):
    summary = "L = (1-a)*CE + a*T^2*KL + beta * sum_{i<M} ||s_i/|s_i| - t_g(i)/|t_g(i)|||^2 on [CLS]"
    defaults = dict(temperature=10.0, alpha=0.7, beta=None, beta_official=500.0, mapping="uniform",
                    mapping_layers=None, projection="auto")
    options = dict(
        alpha=Option("float", "L = (1-alpha) CE + alpha KD: share of the soft targets", lo=0, hi=1),
        beta=Option("float", "weight of the [CLS] patient term (empty = beta_official / (layers x width))", lo=0,
                    optional=True),
        beta_official=weight("the paper's beta, divided by (matched layers x teacher width) when beta is empty"))
    weights = ("alpha", "beta")
    choices = dict(projection=PROJECTIONS)
    student_need = teacher_need = Need(hidden=True)

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        M = ctx.student.layers
        if M < 2:
            raise KdlabError(f"method '{self.name}' matches the first M-1 student layers, so the student needs "
                             f"at least 2 layers (it has {M}): use --student-layers 2 or more")
        if not 0.0 <= float(self.hp["alpha"]) <= 1.0:
            raise KdlabError(f"alpha must be in [0, 1] (got {self.hp['alpha']}): L = (1-alpha)*CE + alpha*KD")
        W = self.build_mapping().clone()
        W[M - 1] = 0.0  # the last student layer is supervised by the KD term
        if (W.sum(dim=1)[: M - 1] == 0).any():
            raise KdlabError("the PKD mapping must give every student layer below the last one a teacher layer")
        self.W = W
        k = M - 1
        self.beta = (float(self.hp["beta_official"]) / (k * ctx.teacher.hidden)
                     if self.hp["beta"] is None else float(self.hp["beta"]))
        self.proj = make_projection(self.hp["projection"], ctx.student.hidden, ctx.teacher.hidden)

    def pt_terms(self, s, t):
        """Per-layer normalised [CLS] distances and their sum (= ``losses.pkd_pt``)."""
        pairs = mapping.pairs(self.W)
        s_cls = [self.proj(s.cls(i)) for i, _, _ in pairs]
        t_cls = [t.cls(j).float() for _, j, _ in pairs]
        parts = {}
        for (i, j, _), a, b in zip(pairs, s_cls, t_cls):
            parts[f"pt/s{i}-t{j}"] = losses.l2_normalized_mse(a, b).detach()
        return losses.pkd_pt(s_cls, t_cls), parts

    def loss(self, s, t, batch, state):
        a = self.w("alpha", state)
        pt, parts = self.pt_terms(s, t)
        kd = self.kd_term(s, t, state, parts)
        ce = self.hard_loss(s.logits, batch)
        total = (1 - a) * ce + a * kd + self.w("beta", state, start=self.beta) * pt
        if self.terms is not None:
            self.record_terms(ce=(1 - a) * ce, kd=a * kd, pt=self.w("beta", state, start=self.beta) * pt)
        parts.update(ce=ce.detach(), pt=pt.detach())
        return total, parts


@register
class PKDSkip(PKD):
    """BERT-PKD with the skip mapping (every N/M-th teacher layer; 12→6: 2,4,6,8,10). See the module docstring."""
    name = "pkd-skip"
    defaults = dict(mapping="uniform")


@register
class PKDLast(PKD):
    """BERT-PKD with the last mapping (the top teacher layers below the last; 12→6: 7..11). See the module
    docstring."""
    name = "pkd-last"
    defaults = dict(mapping="last")
