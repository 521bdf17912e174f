"""The causal-LM objectives as methods of the one training loop (``kdlab distill --task lm``; docs/LM.md).

An LM batch (``kdlab.lm.adaptor``) is a padded batch of token sequences: ``input_ids`` and ``attention_mask``
[B, L], ``target_mask`` [B, L - 1] (1 where token j + 1 is scored: a completion token, not padding) and ``idx``.
The models' features are their next-token logits [B, L, V] (position j predicts token j + 1) and, when the
hidden-state term is on, their decoder layers' raw outputs (``hidden[j]`` = layer j, ``hidden[0]`` the embeddings);
a top-k teacher file's features are the teacher's log-probabilities rebuilt from the file (``kdlab.lm.topk``).

* ``lm-ce``: next-token cross-entropy, no teacher (the no-KD baseline, and the tiny teacher's own training);
* ``lm-fkl``, ``lm-rkl``, ``lm-jsd``, ``lm-tvd``: a token-level divergence (``kdlab.kd.lm``) plus two optional
  terms, ``ce_weight`` x next-token CE and ``hidden_weight`` x the hidden-state MSE through W (each copied student
  layer paired with the teacher layer it was copied from, else the uniform mapping);
* ``seq-kd``: cross-entropy on the teacher's greedy continuations of the training prompts, made once before
  training (``augment_train``: the bundle's ``continued_by``), so the loop itself needs no teacher;
* ``gkd``: on-policy: before each step a fraction ``lmbda`` of the batch's sequences is re-generated (sampled) by
  the student from their prompts (``prepare_batch``, through the student module ``bind`` gave the method), then
  JSD(beta) against the teacher on every sequence.

The options of an LM run are declared here once as ``Option``s, so ``check_options`` refuses a bad one before any
work, as for every method; the ones that depend on each other (a top-k file with the hidden-state term, a
renormalised top-k tail with reverse KL) are refused there too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import KdlabError
from ..kd import mapping
from ..kd.lm import DEFAULT_CHUNK, forward_kl, generalized_jsd, hidden_mse, reverse_kl, token_ce, tvd
from ..records import Need
from .base import Method, Option, register, weight

TOPK_TAILS = ("uniform", "renorm")   # how a top-k file's dense teacher distribution is rebuilt (kdlab.lm.topk)


@dataclass(frozen=True)
class Positive(Option):
    """A number above 0."""

    def check(self, key: str, v) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or not v > 0:
            return f"{key} must be a positive number (got {v!r})"
        return None


def _count(help: str, lo: int = 1) -> Option:
    return Option("int", help, lo=lo)


LM_OPTIONS = dict(
    temperature=Positive("float", "softmax temperature T of both distributions (the divergence is x T², except TVD)"),
    beta=Option("float", "JSD(beta), TRL's convention: 0 = forward KL, 1 = reverse KL, 0.5 = Jensen-Shannon",
                lo=0.0, hi=1.0),
    chunk=_count("positions whose softmaxes are computed at a time (recomputed in the backward pass)"),
    ce_weight=weight("weight of an extra next-token cross-entropy term; 0 = off"),
    hidden_weight=weight("weight of an extra hidden-state MSE term through the mapping matrix (each copied student "
                         "layer and its teacher layer); 0 = off"),
    lmbda=Option("float", "the fraction of each batch's sequences the student re-generates (on-policy)",
                 lo=0.0, hi=1.0),
    gen_len=_count("new tokens generated per continuation"),
    prompt_tokens=_count("the prompt of a plain-text example when generating: its first N tokens"),
    eval_batch=_count("examples per batch when evaluating"),
    topk=_count("train from a file of the teacher's top-K log-probabilities (written once under the teacher "
                "cache); 0 = the live teacher", lo=0),
    topk_tail=Option("choice", "how the top-k file's dense teacher distribution is rebuilt: uniform (the rest of "
                     "the mass spread over the other tokens) or renorm (the top-k renormalised)", values=TOPK_TAILS),
)
INT_OPTIONS = ("chunk", "gen_len", "prompt_tokens", "eval_batch", "topk")


def _ints(hp: dict) -> dict:
    return {k: int(v) if k in INT_OPTIONS and v is not None else v for k, v in hp.items()}


class LMMethod(Method):
    """An objective of a causal LM run (label kind ``lm``: next tokens)."""
    label_kinds = ("lm",)
    defaults = dict(eval_batch=32)
    options = LM_OPTIONS
    choices = {k: o.values for k, o in LM_OPTIONS.items() if o.kind == "choice"}

    @classmethod
    def check_options(cls, args) -> None:
        super().check_options(args)
        hp = {**cls.all_defaults(), **args}
        if hp.get("topk") and hp.get("hidden_weight"):
            raise KdlabError("--set hidden_weight compares hidden states of the live teacher: drop it with --set topk")
        if hp.get("topk") and hp.get("topk_tail") == "renorm" and cls.mode_seeking(hp):
            raise KdlabError("--set topk_tail=renorm gives every token outside the top-k zero teacher probability, "
                             "so reverse KL is infinite: use --set topk_tail=uniform")

    @classmethod
    def mode_seeking(cls, hp: dict) -> bool:
        """The divergence weighs the teacher's log-probabilities by the student's (reverse KL)."""
        return False

    @classmethod
    def resolve_options(cls, args: dict) -> dict:
        return _ints(super().resolve_options(args))

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        self.hp = _ints(self.hp)

    @staticmethod
    def ce(s, batch) -> torch.Tensor:
        """Next-token cross-entropy of the student's logits on the batch's scored tokens."""
        return token_ce(s.logits[:, :-1], batch["input_ids"][:, 1:], batch["target_mask"])


@register
class LMCE(LMMethod):
    name = "lm-ce"
    summary = "next-token cross-entropy on the corpus, no teacher (the no-KD baseline)"
    uses_teacher = False

    def loss(self, s, t, batch, state):
        ce = self.ce(s, batch)
        return ce, {"ce": ce.detach()}


@register
class SeqKD(LMCE):
    name = "seq-kd"
    summary = "sequence-level KD: cross-entropy on the teacher's greedy continuations of the prompts"
    defaults = dict(gen_len=24, prompt_tokens=4)

    @classmethod
    def augment_train(cls, bundle, tokenizer, teacher, cfg):
        """The training set replaced by the teacher's greedy continuations of its prompts (generated once, through
        the student's tokenizer when the two differ): ``bundle.continued_by``."""
        hp = cls.resolve_options(cfg.method_args)
        return bundle.continued_by(teacher, gen_len=hp["gen_len"], prompt_tokens=hp["prompt_tokens"],
                                   seed=cfg.train.seed)


class TokenLevel(LMMethod):
    """A divergence between the teacher's and the student's next-token distributions on the scored tokens, plus
    ``ce_weight`` x next-token CE and (where the method has it) ``hidden_weight`` x the hidden-state MSE."""
    defaults = dict(temperature=1.0, chunk=DEFAULT_CHUNK, ce_weight=0.0)

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        self.W = None
        t = ctx.teacher
        if self.hp.get("hidden_weight") and t is not None and ctx.student.hidden != t.hidden:
            raise KdlabError(f"--set hidden_weight compares hidden states, but the student's width "
                             f"({ctx.student.hidden}) differs from the teacher's ({t.hidden})")

    def divergence(self, s_logits, t_logits, mask, T: float) -> torch.Tensor:
        raise NotImplementedError

    def need(self, state):
        n = Need(hidden=bool(self.hp.get("hidden_weight")))
        return n, n

    def bind(self, student, teacher):
        """W of the hidden-state term: each copied student layer and the teacher layer it was copied from
        (the student module's ``copied_from``, 0-based), else the uniform mapping."""
        if self.hp.get("hidden_weight") and teacher is not None:
            copied = getattr(student, "copied_from", None)
            N = self.ctx.teacher.layers
            self.W = mapping.explicit([i + 1 for i in copied], N) if copied else \
                mapping.uniform(self.ctx.student.layers, N)

    def loss(self, s, t, batch, state):
        mask, s_logits = batch["target_mask"], s.logits[:, :-1]
        kd = self.divergence(s_logits, t.logits[:, :-1], mask, self.temperature(state))
        parts, terms = {"kd": kd.detach()}, {"kd": kd}
        if self.W is not None:
            h = hidden_mse(s.hidden[1:], t.hidden[1:], self.W, batch["attention_mask"], parts)
            parts["hidden"] = h.detach()
            terms["hidden"] = self.hp["hidden_weight"] * h
        if self.hp["ce_weight"]:
            ce = self.ce(s, batch)
            parts["ce"] = ce.detach()
            terms["ce"] = self.hp["ce_weight"] * ce
        if len(terms) > 1:
            self.record_terms(**terms)
        return sum(terms.values()), parts


class TokenKD(TokenLevel):
    """A token-level objective on the training corpus: the live teacher, or its top-k file (``topk``)."""
    defaults = dict(hidden_weight=0.0, topk=0, topk_tail="uniform")


@register
class ForwardKL(TokenKD):
    name = "lm-fkl"
    summary = "token-level forward KL(teacher || student) over the full vocabulary, x T²"

    def divergence(self, s_logits, t_logits, mask, T):
        return forward_kl(s_logits, t_logits, mask, temperature=T, chunk=self.hp["chunk"])


@register
class ReverseKL(TokenKD):
    name = "lm-rkl"
    summary = "token-level reverse KL(student || teacher), x T² (mode-seeking)"

    @classmethod
    def mode_seeking(cls, hp):
        return True

    def divergence(self, s_logits, t_logits, mask, T):
        return reverse_kl(s_logits, t_logits, mask, temperature=T, chunk=self.hp["chunk"])


@register
class JSD(TokenKD):
    name = "lm-jsd"
    summary = "token-level generalized JSD(beta) (TRL's GKD convention: beta 0 = forward, 1 = reverse KL)"
    defaults = dict(beta=0.5)

    @classmethod
    def mode_seeking(cls, hp):
        return float(hp["beta"]) == 1.0

    def divergence(self, s_logits, t_logits, mask, T):
        return generalized_jsd(s_logits, t_logits, mask, beta=self.hp["beta"], temperature=T, chunk=self.hp["chunk"])


@register
class TVD(TokenKD):
    name = "lm-tvd"
    summary = "token-level total variation distance"

    def divergence(self, s_logits, t_logits, mask, T):
        return tvd(s_logits, t_logits, mask, temperature=T, chunk=self.hp["chunk"])


@register
class GKD(TokenLevel):
    name = "gkd"
    summary = "on-policy GKD: a fraction lmbda of each batch generated by the student, scored by the teacher (JSD)"
    defaults = dict(beta=0.5, lmbda=0.5, gen_len=24, prompt_tokens=4)
    cacheable = False   # the teacher reads the student's own sequences, not the training examples

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        self._student = None

    def bind(self, student, teacher):
        self._student = (student,)   # a reference, not a submodule (its parameters are the loop's)

    def on_policy_rows(self, batch) -> int:
        return int(round(self.hp["lmbda"] * batch["input_ids"].shape[0]))

    def prepare_batch(self, batch, state):
        """A fraction lmbda of the batch's sequences replaced by the student's sampled continuation of their
        prompt; which ones, and the sampling, drawn from the run's seed and the step (the same after a resume)."""
        k = self.on_policy_rows(batch)
        if not k:
            return batch
        if self._student is None:
            raise KdlabError("gkd generates with the student, which the loop binds before training "
                             "(kdlab.engine.distill.train)")
        rng = np.random.default_rng([self.ctx.seed, state.step])
        pick = sorted(rng.choice(batch["input_ids"].shape[0], size=k, replace=False).tolist())
        return self._student[0].on_policy(batch, pick, max_new=self.hp["gen_len"],
                                          prompt_tokens=self.hp["prompt_tokens"], seed=self.ctx.seed + state.step)

    def divergence(self, s_logits, t_logits, mask, T):
        return generalized_jsd(s_logits, t_logits, mask, beta=self.hp["beta"], temperature=T, chunk=self.hp["chunk"])

    def loss(self, s, t, batch, state):
        total, parts = super().loss(s, t, batch, state)
        parts["on_policy"] = torch.tensor(float(self.on_policy_rows(batch)))
        return total, parts


LM_METHODS = (LMCE.name, ForwardKL.name, ReverseKL.name, JSD.name, TVD.name, SeqKD.name, GKD.name)
