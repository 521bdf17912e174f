"""Self-attention distillation (SAD): inside the student, the attention maps of shallower layers imitate those
of deeper layers (detached targets), as an auxiliary loss.

``L = w_hard·CE(y, z_S) + gamma·Σ_i KL(P_{target(i)} ‖ P_i) + alpha_soft·T²·KL(p_T^T ‖ q_S^T)``
with ``target(i) = i+1`` (``sad_target='next'``, default) or the last layer (``'last'``); the attention KL is
``kdlab.kd.losses.attention_kl`` (padded keys carry no probability, padded query rows are excluded). The maps are
the pre-dropout probabilities recomputed from each layer's Q and K (``kdlab.kd.attention.layer_probs``).
``sad`` uses the teacher for the KD term (set ``alpha_soft=0`` to drop it); ``sad-self`` is the teacher-free
variant (CE + SAD only).
"""
from __future__ import annotations

from ..kd import attention, losses
from ..models.features import Need
from .base import Method, Option, register, weight


@register
class SAD(Method):
    """Attention maps of shallower student layers imitate deeper ones, plus CE and (optionally) logit KD."""
    name = "sad"
    summary = "L = CE + gamma * sum_i KL(P_deeper || P_i) inside the student (+ alpha_soft * T^2 KD from the teacher)"
    defaults = dict(gamma=1.0, sad_target="next", alpha_soft=0.5, w_hard=1.0, temperature=2.0)
    options = dict(
        gamma=weight("weight of the self-attention distillation term"),
        sad_target=Option("choice", "each layer imitates the next layer's attention or the last layer's"),
        w_hard=weight("weight of CE to the gold label"))
    weights = ("gamma", "alpha_soft", "w_hard")
    choices = dict(sad_target=("next", "last"))
    student_need = Need(qkv=True)

    def loss(self, s, t, batch, state):
        maps = [attention.layer_probs(s, i, False) for i in range(1, len(s.qkv) + 1)]
        sad, pairs = losses.sad_loss(maps, s.mask, self.hp["sad_target"])
        ce = self.hard_loss(s.logits, batch)
        parts = {f"sad_kl/s{i}-s{j}": v.detach() for i, j, v in pairs}
        total = self.w("w_hard", state) * ce + self.w("gamma", state) * sad
        parts.update(ce=ce.detach(), sad=sad.detach())
        a = self.w("alpha_soft", state)
        if self.uses_teacher and t is not None and a > 0:
            total = total + a * self.kd_term(s, t, state, parts)
        return total, parts


@register
class SADSelf(SAD):
    """The teacher-free variant: CE + self-attention distillation only."""
    name = "sad-self"
    summary = "L = CE + gamma * sum_i KL(P_deeper || P_i) inside the student (no teacher)"
    defaults = dict(alpha_soft=0.0)
    uses_teacher = False
