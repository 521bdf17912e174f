"""MiniLM deep self-attention distillation (Wang et al. 2020, arXiv 2002.10957; docs/METHODS.md: minilm).

Only the **last** self-attention module is distilled: teacher layer N → student layer M.

``L = w_at·L_AT + w_vr·L_VR`` (no CE, no KD on logits, no projection):

* ``L_AT = (1/(A_h·|x|)) Σ_a Σ_t KL(P^T_{N,a,t,:} ‖ P^S_{M,a,t,:})``, ``P = softmax(QKᵀ/√d_k)``;
* ``L_VR = (1/(A_h·|x|)) Σ_a Σ_t KL(VR^T_{N,a,t,:} ‖ VR^S_{M,a,t,:})``, ``VR_a = softmax(V_a V_aᵀ/√d_k)``, each model
  with its own ``d_k = d/A_h`` (so the widths may differ).

Padding (docs/METHODS.md: conventions / minilm): padded keys are masked (−inf) in both P and VR and the average runs over real query
tokens only, ``|x|`` = the true length (``losses.attention_kl`` with the mask). Maps are recomputed from the
pre-dropout Q, K, V captured in ``Features.qkv``.

Defaults: ``w_at=1``, ``w_vr=1``, ``teacher_layer=None`` (= N), ``student_layer=None`` (= M),
``head_average=false``. The number of heads must match (MiniLM v1); ``head_average=true`` compares maps
averaged over heads instead (a kdlab option, not in the paper). The teacher-assistant step for very small
students is not part of this method.
"""
from __future__ import annotations

import torch

from ..kd import attention, losses
from ..errors import KdlabError
from ..models.features import Need
from .base import Method, Option, register, weight


@register
class MiniLM(Method):
    """MiniLM: last-layer attention-distribution KL + value-relation KL. See the module docstring."""
    name = "minilm"
    summary = "L = KL(P^T_N || P^S_M) + KL(VR^T_N || VR^S_M)  (last layer, real query rows, no CE)"
    defaults = dict(w_at=1.0, w_vr=1.0, teacher_layer=None, student_layer=None, head_average=False)
    options = dict(
        w_at=weight("weight of the attention-distribution KL"),
        w_vr=weight("weight of the value-relation KL"),
        teacher_layer=Option("int", "teacher layer to distil (empty = the last)", lo=1, optional=True),
        student_layer=Option("int", "student layer that learns it (empty = the last)", lo=1, optional=True))
    weights = ("w_at", "w_vr")
    needs_attentions = True
    student_need = teacher_need = Need(qkv=True)

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        M, N = ctx.student.layers, ctx.teacher.layers
        self.s_layer = self._layer(self.hp["student_layer"], M, "student_layer", "student")
        self.t_layer = self._layer(self.hp["teacher_layer"], N, "teacher_layer", "teacher")
        attention.check_heads(self.name, ctx.student.heads, ctx.teacher.heads, bool(self.hp["head_average"]))
        self.W = torch.zeros(M, N)
        self.W[self.s_layer - 1, self.t_layer - 1] = 1.0

    @staticmethod
    def _layer(value, count: int, key: str, who: str) -> int:
        if value is None:
            return count
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= count:
            raise KdlabError(f"{key} must be a layer number in 1..{count} (the {who} has {count} layers), "
                             f"got {value!r}")
        return value

    def loss(self, s, t, batch, state):
        i, j, ha = self.s_layer, self.t_layer, bool(self.hp["head_average"])
        at = losses.attention_kl(attention.layer_probs(s, i, ha), attention.layer_probs(t, j, ha), s.mask)
        vr = losses.attention_kl(attention.layer_values(s, i, ha), attention.layer_values(t, j, ha), s.mask)
        total = self.w("w_at", state) * at + self.w("w_vr", state) * vr
        return total, {f"at/s{i}-t{j}": at.detach(), f"vr/s{i}-t{j}": vr.detach(),
                       "at": at.detach(), "vr": vr.detach()}
