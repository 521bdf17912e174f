"""Teacher-free KD (docs/METHODS.md: tf-kd): self-distillation, a hand-made regularising teacher, and label smoothing.

* ``tf-kd-self``: hop 1 trains the student normally (method ``ce``); hop 2 freezes that model and distils it
  into a fresh copy of the same initial student with ``(1-alpha)·CE + alpha·T²·KL(p^T ‖ q^T)`` (method ``kd``,
  alpha = 0.95, T = 6 as in the reference presets; kdlab's canonical batchmean reduction, the reference's
  ``KLDivLoss()`` divides additionally by C and its ResNet18 preset multiplies by 50). Two stored runs: hop 1
  (kind ``assistant``) and hop 2 (parent = hop 1, artifact ``chain = [hop1_run, hop2_run]``).
* ``tf-kd-reg``: ``L = (1-alpha)·CE + alpha·multiplier·KL(softmax(p^d/tau) ‖ softmax(z_S))`` with
  ``p^d = a`` on the true class, ``(1-a)/(C-1)`` elsewhere (reference code: a = 0.99, tau = 20, ResNet18 preset
  alpha = 0.1, multiplier = 100, KL with ``KLDivLoss()`` default elementwise mean -> ``reduction='mean'``).
* ``label-smoothing``: ``CE`` against ``1-eps`` on the true class and ``eps/(C-1)`` elsewhere (eps = 0.1).
"""
from __future__ import annotations

import torch

from ..kd import losses
from ..errors import KdlabError
from .base import Method, Option, register, weight


@register
class TfKDSelf(Method):
    name = "tf-kd-self"
    accepts_unlabeled = False   # uses every row's gold label
    summary = "hop 1: student with CE; hop 2: a fresh copy of the same initial student learns (1-a)CE + a T^2 KL from it"
    uses_teacher = False
    defaults = dict(alpha=0.95, temperature=6.0)
    options = dict(alpha=Option("float", "share of the soft targets of the hop-1 model", lo=0, hi=1))

    chain = True   # run by kdlab.engine.chains: hop 1 (ce) and hop 2 (kd from hop 1 into a fresh copy)

    @classmethod
    def hop_args(cls, method_args: dict) -> dict:
        """The options of hop 2's ``kd`` run: ``(1-alpha)·CE + alpha·T²·KL``."""
        hp = cls.resolve_options(method_args)
        a = float(hp["alpha"])
        if not 0.0 <= a <= 1.0:
            raise KdlabError(f"tf-kd-self alpha must be in [0, 1], got {a}")
        kd_args = dict(alpha_soft=a, alpha_hard=1.0 - a, temperature=float(hp["temperature"]), kd_form="kl")
        kd_args.update({k: hp[k] for k in ("temperature_end", "temperature_schedule") if k in method_args})
        return kd_args


@register
class TfKDReg(Method):
    name = "tf-kd-reg"
    accepts_unlabeled = False   # uses every row's gold label
    label_kinds = ("classes",)   # the hand-made target puts its mass on the true class
    summary = "L = (1-a) CE + a * mult * KL(softmax(p^d/tau) || softmax(z_S)); p^d hand-made (0.99 true class)"
    uses_teacher = False
    defaults = dict(alpha=0.1, correct_prob=0.99, tau=20.0, multiplier=100.0, reduction="mean")
    options = dict(
        alpha=Option("float", "share of the hand-made regularising targets", lo=0, hi=1),
        correct_prob=Option("float", "probability of the true class in the hand-made targets", lo=0, hi=1),
        tau=Option("float", "temperature of the hand-made targets", lo=0, lo_open=True),
        multiplier=weight("factor on the regularising KL term"),
        reduction=Option("choice", "KL averaged over classes too (mean) or summed per example (batchmean)",
                         values=("mean", "batchmean")))
    weights = ("alpha",)

    def loss(self, s, t, batch, state):
        hp = self.hp
        C = s.logits.shape[-1]
        target = losses.tfkd_reg_targets(batch["labels"], C, float(hp["correct_prob"]), float(hp["tau"]))
        reg = losses.kl_to_targets(s.logits, target, hp["reduction"])
        ce = losses.hard_ce(s.logits, batch["labels"])
        a = self.w("alpha", state)
        total = (1.0 - a) * ce + a * float(hp["multiplier"]) * reg
        return total, {"ce": ce.detach(), "reg_kl": reg.detach()}


@register
class LabelSmoothing(Method):
    name = "label-smoothing"
    accepts_unlabeled = False   # uses every row's gold label
    label_kinds = ("classes",)   # smoothing is over classes
    summary = "L = CE against (1-eps) on the true class and eps/(C-1) on the others"
    uses_teacher = False
    defaults = dict(eps=0.1)
    options = dict(eps=Option("float", "probability mass moved from the true class to the others", lo=0,
                                   hi=1))

    def loss(self, s, t, batch, state):
        C = s.logits.shape[-1]
        target = losses.label_smoothing_targets_others(batch["labels"], C, float(self.hp["eps"]))
        ls = losses.soft_target_ce(s.logits, target)
        with torch.no_grad():
            ce = losses.hard_ce(s.logits, batch["labels"])
        return ls, {"ls_ce": ls.detach(), "ce": ce}
