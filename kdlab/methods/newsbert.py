"""NewsBERT (docs/METHODS.md: newsbert): teacher and student learn together and share the top pooler and classifier;
momentum distillation mixes the teacher's layer gradients into the student's.

* Shared head: the student's ``pooler`` and ``classifier`` ARE the teacher's module objects (one set of
  parameters; the optimiser sees them once).
* Student layer i (1-based) corresponds to the teacher block of K = N/M layers ``(i-1)K+1 .. iK`` and is
  initialised as a copy of the block's last layer, teacher layer ``iK`` (0-based index ``iK - 1``), which is
  also the layer its hidden state is matched to.
* Student loss: ``MSE(E^T, E^S) + Σ_i MSE(H^T_{iK}, H^S_i) + MSE(pool^T, pool^S) + w_soft·CE(p_T^t, q_S^t)
  + CE(y, z_S)`` (token-level MSEs with padding masked; soft CE without T², as in the paper's formula).
  Teacher loss: ``CE(y, z_T)``. Teacher targets inside the student loss are detached, so the teacher learns
  from the labels only (its shared head also receives the student's gradients).
* Momentum distillation (``after_backward``): per parameter tensor of student layer k,
  ``g^s_k <- beta · mean_{j in block k} g^t_j + (1 - beta) · g^s_k``. beta = 0.5 is a kit default, not a value
  from the paper.
"""
from __future__ import annotations

import torch

from ..kd import losses
from ..errors import KdlabError
from ..models.features import Need
from ..models.core import encoder, student_from_teacher
from .base import Method, Option, register, weight


def block_size(teacher_layers: int, student_layers: int) -> int:
    if student_layers < 1 or teacher_layers % student_layers:
        raise KdlabError(f"NewsBERT maps each student layer to a block of K = N/M teacher layers, but the teacher's "
                         f"{teacher_layers} layers do not divide into {student_layers} student layers: choose a "
                         f"student layer count that divides {teacher_layers}")
    return teacher_layers // student_layers


def mix_gradients(student_grad: torch.Tensor, teacher_grads: list[torch.Tensor], beta: float) -> torch.Tensor:
    """Momentum distillation: ``beta · mean(teacher_grads) + (1 - beta) · student_grad``."""
    g_t = torch.stack([g.to(student_grad.dtype) for g in teacher_grads]).mean(dim=0)
    return beta * g_t + (1.0 - beta) * student_grad


def _shared_head(model):
    base = encoder(model)
    if getattr(base, "pooler", None) is None or not hasattr(model, "classifier"):
        raise KdlabError(f"NewsBERT shares the teacher's pooler and classifier, but {type(model).__name__} has no "
                         "pooler/classifier (BERT-style sequence classifier): use a BERT-family teacher")
    return base


@register
class NewsBERT(Method):
    name = "newsbert"
    summary = ("joint teacher+student, shared pooler/classifier; L_s = MSE(emb)+sum MSE(H^T_iK,H^S_i)+MSE(pool)"
               "+softCE_t+CE, L_t = CE; momentum gradient mixing (beta)")
    trains_teacher = True
    student_need = teacher_need = Need(hidden=True)
    defaults = dict(beta=0.5, temperature=1.0, w_emb=1.0, w_hidden=1.0, w_pool=1.0, w_soft=1.0, w_hard=1.0,
                    w_teacher=1.0)
    options = dict(
        beta=Option("float", "share of the teacher's gradient mixed into the student's (momentum distillation)",
                    lo=0, hi=1),
        w_emb=weight("weight of the embedding MSE"), w_hidden=weight("weight of the hidden-state MSE"),
        w_pool=weight("weight of the pooled-output MSE"), w_soft=weight("weight of the soft-target CE"),
        w_hard=weight("weight of the student's CE to the gold label"),
        w_teacher=weight("weight of the teacher's own CE (it learns too)"))
    weights = ("w_emb", "w_hidden", "w_pool", "w_soft", "w_hard", "w_teacher")

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        if not 0.0 <= float(self.hp["beta"]) <= 1.0:
            raise KdlabError(f"NewsBERT beta must be in [0, 1], got {self.hp['beta']}")
        M, N = ctx.student.layers, ctx.teacher.layers
        if ctx.student.hidden != ctx.teacher.hidden:
            raise KdlabError(f"NewsBERT needs student and teacher of the same width (student {ctx.student.hidden}, "
                             f"teacher {ctx.teacher.hidden}): build the student by copying teacher layers")
        self.K = block_size(N, M)
        W = torch.zeros(M, N)
        for i in range(1, M + 1):
            W[i - 1, i * self.K - 1] = 1.0
        self.register_buffer("W", W, persistent=False)
        self._models = ()

    @classmethod
    def make_student(cls, teacher, tokenizer, cfg):
        """Student layer i = copy of teacher layer iK (0-based iK-1); pooler and classifier shared."""
        _shared_head(teacher)   # a BERT-style sequence classifier, or one line why not
        K = block_size(teacher.config.num_hidden_layers, cfg.student_layers)
        student = student_from_teacher(teacher, [i * K - 1 for i in range(1, cfg.student_layers + 1)])
        share_head(student, teacher)
        return student

    def bind(self, student, teacher):
        """Keep references (not submodules) to both models: the pooler output needs the shared pooler."""
        share_head(student, teacher)  # no-op when make_student already shared them
        self._models = (student, teacher)

    def loss(self, s, t, batch, state):
        if not self._models:
            raise KdlabError("NewsBERT needs the models bound before training (kdlab.engine.distill.train does this)")
        pooler = encoder(self._models[0]).pooler
        m = s.mask
        td = t.detach()
        parts = {}
        emb = losses.hidden_mse(s.hidden[0], td.hidden[0], m)
        hid = s.logits.new_zeros((), dtype=torch.float32)
        for i in range(1, self.W.shape[0] + 1):
            j = i * self.K
            v = losses.hidden_mse(s.hidden[i], td.hidden[j], m)
            parts[f"hidden_mse/s{i}-t{j}"] = v.detach()
            hid = hid + v
        pool = losses.hidden_mse(pooler(s.hidden[-1]), pooler(td.hidden[-1]).detach())  # [B, d] rows
        soft = self.kd_term(s, td, state, parts, "soft-ce-unscaled", key="soft_ce")
        ce = self.hard_loss(s.logits, batch)
        t_ce = self.hard_loss(t.logits, batch)
        w = lambda key: self.w(key, state)
        student_loss = (w("w_emb") * emb + w("w_hidden") * hid + w("w_pool") * pool + w("w_soft") * soft
                        + w("w_hard") * ce)
        parts.update(emb_mse=emb.detach(), hidden=hid.detach(), pool_mse=pool.detach(), ce=ce.detach(),
                     student_loss=student_loss.detach(), teacher_ce=t_ce.detach())
        return student_loss + w("w_teacher") * t_ce, parts

    @torch.no_grad()
    def after_backward(self, student, teacher, state):
        beta = float(self.hp["beta"])
        s_layers = encoder(student).encoder.layer
        t_layers = encoder(teacher).encoder.layer
        for k, s_layer in enumerate(s_layers):
            block = [dict(t_layers[j].named_parameters()) for j in range(k * self.K, (k + 1) * self.K)]
            for name, p in s_layer.named_parameters():
                if p.grad is None:
                    continue
                grads = []
                for tp in block:
                    q = tp.get(name)
                    if q is None or q.shape != p.shape:
                        raise KdlabError(f"momentum distillation needs identical layer shapes, but student "
                                         f"parameter '{name}' has no same-shaped teacher counterpart: build the "
                                         "student by copying teacher layers")
                    grads.append(torch.zeros_like(p) if q.grad is None else q.grad)
                p.grad.copy_(mix_gradients(p.grad, grads, beta))


def share_head(student, teacher):
    """Make the student's pooler and classifier the teacher's module objects (one set of parameters)."""
    s_base, t_base = _shared_head(student), _shared_head(teacher)
    if s_base.pooler is not t_base.pooler:
        s_base.pooler = t_base.pooler
    if student.classifier is not teacher.classifier:
        student.classifier = teacher.classifier
    return student
