"""TinyBERT task distillation (Jiao et al. 2020, arXiv 1909.10351; docs/METHODS.md: tinybert), two stages in order.

Stage 1 (intermediate layers, the first ``intermediate_fraction`` of the steps, default half):

``L = w_embd·MSE(E^S W_h, E^T) + Σ_{m=1}^{M} [ w_hidn·MSE(H^S_m W_h, H^T_g(m)) + w_attn·MSE(A^S_m, A^T_g(m)) ]``

with ONE shared projection ``W_h`` (TinyBERT's ``fit_dense``, linear with bias) for the embeddings and all
layers, ``g(m) = m·N/M`` (``kdlab.kd.mapping.uniform``: 12→4 uses 3,6,9,12; 12→6 uses 2,4,…,12), and the attention
term on the **raw** scores ``A = QKᵀ/√d_k`` per head (``losses.attention_score_mse``; the head average of the
per-head MSE is the mean over B×h×L×L).

Stage 2 (prediction layer): ``L = w_pred·T²·(1/B) Σ_b −Σ_c softmax(z_T/T)_c log softmax(z_S/T)_c``
(``losses.kd_soft_ce``), T = 1 by default.

Each step records ``stage`` (1 or 2); ``mapping(state)`` is W in stage 1 and all zeros in stage 2 (no layer
pairs are active). Embeddings (layer 0 ↔ 0) are logged as ``embd/s0-t0``.

Defaults: ``temperature=1.0``, ``intermediate_fraction=0.5``, ``w_embd=w_hidn=w_attn=w_pred=1`` (all λ = 1),
``mapping="uniform"``, ``projection="auto"`` (identity when the widths agree, ``linear`` = always a learned
map), ``mask_padding=true``, ``head_average=false``.

Deviations from the reference code:
* ``mask_padding=true`` (default): the MSEs average over real tokens / real (query, key) pairs only; the
  reference averages over all positions, padding included, after zeroing the −10000-masked key columns in
  the score maps. ``mask_padding=false`` reproduces the reference form exactly.
* the soft CE is summed over classes and averaged over the batch (reference: ``.mean()`` over B×C, i.e. /C).
* N need not be divisible by M: g(m) is rounded half up (the reference requires N divisible by M).
* the projection is the identity when the widths agree (the reference always has ``fit_dense``); use
  ``projection=linear`` for the reference behaviour.
* the head counts must agree (as in the reference); ``head_average=true`` compares head-averaged scores instead.
* task distillation only: general distillation on a corpus and data augmentation are not part of this method.
"""
from __future__ import annotations

import torch

from ..kd import attention, losses, mapping
from ..errors import KdlabError
from ..models.features import Need
from ..kd.objectives import PROJECTIONS, HiddenMatch, make_projection
from .base import Method, Option, register, weight

REFERENCE_MASK = -10000.0  # additive mask of the reference BERT code; ≤ −100 entries are zeroed by the loss


@register
class TinyBERT(Method):
    """TinyBERT: stage 1 embedding + hidden + attention-score MSE, stage 2 soft CE. See the module docstring."""
    name = "tinybert"
    summary = ("stage 1: MSE(E^S W, E^T) + sum_m MSE(H^S_m W, H^T_g(m)) + MSE(A^S_m, A^T_g(m)) (raw scores); "
               "stage 2: soft CE(z_T/T, z_S/T)")
    defaults = dict(temperature=1.0, intermediate_fraction=0.5, w_embd=1.0, w_hidn=1.0, w_attn=1.0, w_pred=1.0,
                    mapping="uniform", mapping_layers=None, projection="auto", mask_padding=True,
                    head_average=False)
    options = dict(
        intermediate_fraction=Option("float", "share of the steps spent on stage 1 (layer matching)", lo=0, hi=1),
        w_embd=weight("weight of the embedding MSE"), w_hidn=weight("weight of the hidden-state MSE"),
        w_attn=weight("weight of the attention-score MSE"), w_pred=weight("weight of the stage-2 soft CE"))
    weights = ("w_embd", "w_hidn", "w_attn", "w_pred")
    choices = dict(projection=PROJECTIONS)
    needs_attentions = True

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        frac = float(self.hp["intermediate_fraction"])
        if not 0.0 <= frac <= 1.0:
            raise KdlabError(f"intermediate_fraction is the fraction of steps of stage 1, in [0, 1] (got {frac})")
        attention.check_heads(self.name, ctx.student.heads, ctx.teacher.heads, bool(self.hp["head_average"]))
        self.uses_padding = not bool(self.hp["mask_padding"])   # the reference form averages over padding
        self.W = self.build_mapping()
        self.match = HiddenMatch(ctx.student.hidden, ctx.teacher.hidden, ctx.student.layers, "mse", "tokens",
                                 shared=True, name="hidden")
        if self.hp["projection"] == "linear":
            self.match.proj[0] = make_projection("linear", ctx.student.hidden, ctx.teacher.hidden)

    @property
    def proj(self):
        """The one projection shared by the embedding and every layer (TinyBERT's ``fit_dense``)."""
        return self.match.proj[0]

    def stage(self, state) -> int:
        return 1 if state.step < round(float(self.hp["intermediate_fraction"]) * state.total_steps) else 2

    def need(self, state):
        if self.stage(state) == 1:
            return Need(hidden=True, qkv=True), Need(hidden=True, qkv=True)
        return Need(), Need()

    def mapping(self, state):
        return self.W if self.stage(state) == 1 else torch.zeros_like(self.W)

    def attention_term(self, s, t, i: int, j: int):
        """Raw-score MSE between student layer i and teacher layer j (1-based)."""
        masked = bool(self.hp["mask_padding"])
        add = None if masked else REFERENCE_MASK
        a_s = attention.layer_scores(s, i, add)
        a_t = attention.layer_scores(t, j, add)
        if self.hp["head_average"]:
            a_s, a_t = attention.head_mean(a_s), attention.head_mean(a_t)
        return losses.attention_score_mse(a_s, a_t, s.mask if masked else None)

    def intermediate(self, s, t, state):
        mask = s.mask if self.hp["mask_padding"] else None
        embd = losses.hidden_mse(self.proj(s.hidden[0]), t.hidden[0], mask)
        hid, parts = self.match(s.hidden, t.hidden, mask, self.W.to(s.logits.device))
        parts["embd/s0-t0"] = embd.detach()
        att = embd.new_zeros(())
        for i, j, _ in mapping.pairs(self.W):
            a = self.attention_term(s, t, i, j)
            parts[f"attn/s{i}-t{j}"] = a.detach()
            att = att + a
        total = self.w("w_embd", state) * embd + self.w("w_hidn", state) * hid + self.w("w_attn", state) * att
        if self.terms is not None:
            self.record_terms(embd=self.w("w_embd", state) * embd, hidn=self.w("w_hidn", state) * hid,
                              attn=self.w("w_attn", state) * att)
        parts.update(embd=embd.detach(), hidn=hid.detach(), attn=att.detach())
        return total, parts

    def loss(self, s, t, batch, state):
        stage = self.stage(state)
        if stage == 1:
            total, parts = self.intermediate(s, t, state)
        else:
            parts = {}
            pred = self.kd_term(s, t, state, parts, "soft-ce", key="pred")
            total = self.w("w_pred", state) * pred
        parts["stage"] = torch.tensor(float(stage))
        return total, parts
