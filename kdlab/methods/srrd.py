"""SRRD: softmax regression representation distillation (Yang et al., ICLR 2021; docs/METHODS.md: srrd).

A connector ``r`` (Linear d_S -> d_T + ReLU) maps the student's last-layer [CLS] vector ``h_S =
H^S_M[:, 0]`` (before the pooler) to the teacher's width; ``h_T = H^T_N[:, 0]``.

* ``L_FM = mean((h_T − r(h_S))²)`` (feature matching; mean over B×d_T, ``losses.hidden_mse``),
* ``L_SR = mean((Cls_T(r(h_S)) − Cls_T(h_T))²)`` (mean over B×C, the reference ``F.mse_loss``): the
  transformed student feature goes through the teacher's frozen classification head and regresses the
  teacher's logits.
* ``L = CE + α·L_FM + β·L_SR`` (α = β = 1, the reference code's single weight for both terms).

Decision: **the teacher pooler is part of Cls_T.** For ``BertForSequenceClassification`` the head applied to the
last-layer [CLS] vector is ``pooler (dense + tanh) -> dropout -> classifier``; we use exactly that with dropout
off, so ``Cls_T(h_T)`` equals the teacher's logits and ``r(h_S)`` lives in the same space as ``h_T`` (the
feature that enters the head). The head's parameters belong to the frozen teacher: they get no gradient and
no optimiser updates, but gradients flow through them to the connector and the student.
"""
from __future__ import annotations

import torch
from torch import nn

from ..kd import losses
from ..errors import KdlabError
from ..models.features import Need
from .base import Method, register, weight


def teacher_head(teacher):
    """``(pooler, classifier)`` of a BERT-style sequence classifier (pooler may be None)."""
    classifier = getattr(teacher, "classifier", None)
    base = getattr(teacher, "base_model", None)
    pooler = getattr(base, "pooler", None) if base is not None else None
    if not isinstance(classifier, nn.Linear) or getattr(getattr(teacher, "config", None), "model_type", "bert") != "bert":
        raise KdlabError(f"srrd needs a teacher with a linear classification head on the [CLS] vector "
                         f"(BERT-style), but {type(teacher).__name__} has none: use a BERT-family teacher")
    return pooler, classifier


def apply_head(pooler, classifier, h_cls: torch.Tensor) -> torch.Tensor:
    """Cls_T(h) = classifier(pooler(h)) for [CLS] vectors ``h [B, d_T]`` (dropout off)."""
    x = h_cls.to(classifier.weight.dtype)
    if pooler is not None:
        x = pooler(x.unsqueeze(1))        # BertPooler takes [B, L, d] and reads position 0
    return classifier(x)


@register
class SRRD(Method):
    """Feature matching + softmax regression through the teacher's frozen classifier, via a connector."""
    name = "srrd"
    label_kinds = ("classes",)   # softmax regression through the teacher's class head
    summary = "L = CE + a*||h_T - r(h_S)||^2 + b*||Cls_T(r(h_S)) - Cls_T(h_T)||^2  (frozen teacher head)"
    defaults = dict(alpha=1.0, beta=1.0)
    options = dict(alpha=weight("weight of the feature-matching MSE"),
                   beta=weight("weight of the softmax-regression MSE (through the teacher's head)"))
    weights = ("alpha", "beta")
    student_need = teacher_need = Need(hidden=True)

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        if ctx.teacher_model is None:
            raise KdlabError("srrd needs the teacher model for its classification head: build the method "
                             "with kdlab.engine.distill.build_method (or pass Context.teacher_model)")
        self.connector = nn.Sequential(nn.Linear(ctx.student.hidden, ctx.teacher.hidden), nn.ReLU())
        pooler, classifier = teacher_head(ctx.teacher_model)
        for mod in (pooler, classifier):
            if mod is not None:
                for p in mod.parameters():
                    p.requires_grad_(False)
        # kept outside the module tree: the head stays the teacher's (not copied, not checkpointed here)
        self._head = (pooler, classifier)

    def head(self, h_cls):
        return apply_head(*self._head, h_cls)

    def loss(self, s, t, batch, state):
        h_s = s.hidden[-1][:, 0].float()
        h_t = t.hidden[-1][:, 0].float()
        r = self.connector(h_s)
        fm = losses.hidden_mse(r.unsqueeze(1), h_t.unsqueeze(1))
        with torch.no_grad():
            z_t = self.head(h_t).float()
        z_r = self.head(r).float()
        sr = losses.hidden_mse(z_r.unsqueeze(1), z_t.unsqueeze(1))
        ce = self.hard_loss(s.logits, batch)
        total = ce + self.w("alpha", state) * fm + self.w("beta", state) * sr
        return total, {"ce": ce.detach(), "fm": fm.detach(), "sr": sr.detach()}
