"""Capture what a model's attention itself computes, before dropout, for every family.

Families whose attention runs through transformers' attention interface (BERT, RoBERTa, ELECTRA, DistilBERT,
ModernBERT, ...) run under the attention implementation ``"kdlab"`` registered here: it calls the family's own
eager attention (``eager_attention_forward`` of the model's module) without dropout, records the probabilities it
returns, the raw scores ``Q Kᵀ · scaling`` (on request, TinyBERT) and the per-head Q, K, V it was given (after
rotary positions in ModernBERT), then applies attention dropout itself when training. Without a recorder it is
plain eager attention that returns the pre-dropout maps as its attention weights.

Families that compute attention themselves (DeBERTa-v2's disentangled attention, MPNet's relative position bias)
get a hook in their adapter (``deberta_hook``, ``mpnet_hook``): the probabilities are the input of the
attention-dropout module, Q, K, V the projections' outputs, and the scores add the family's position term.

Each layer's record: ``q``, ``k``, ``v`` ``[B, L, d]`` (heads merged), ``probs`` ``[B, h, L, L]`` and ``scores``
``[B, h, L, L]`` or None, the scores *without* the padding mask (as ``kdlab.kd.attention.scores``).
"""
from __future__ import annotations

import contextlib
import math
import sys

import torch
import torch.nn.functional as F

IMPL = "kdlab"
_ACTIVE: list = []   # the recorders of the forward passes in progress (innermost last)


class Recorder:
    def __init__(self, scores: bool = False):
        self.scores = scores
        self.layers: list[dict] = []

    def add(self, q, k, v, probs, scores=None):
        """q, k, v as ``[B, h, L, dh]`` (or ``[B, L, d]``); probs/scores ``[B, h, L, L]``."""
        m = lambda x: x if x.dim() == 3 else x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)
        self.layers.append(dict(q=m(q), k=m(k), v=m(v), probs=probs, scores=scores))


def _eager_of(module):
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if fn is None:
        from transformers.models.bert.modeling_bert import eager_attention_forward as fn
    return fn


def kdlab_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The family's eager attention without dropout, recorded; dropout applied here when training."""
    out, probs = _eager_of(module)(module, query, key, value, attention_mask, scaling=scaling, dropout=0.0,
                                   **kwargs)
    rec = _ACTIVE[-1] if _ACTIVE else None
    if rec is not None:
        scores = None
        if rec.scores:
            sc = scaling if scaling is not None else query.shape[-1] ** -0.5
            scores = torch.matmul(query, key.transpose(2, 3)) * sc
        rec.add(query, key, value, probs, scores)
    if dropout and module.training:
        out = torch.matmul(F.dropout(probs, p=dropout, training=True), value).transpose(1, 2).contiguous()
    return out, probs


def _register():
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    AttentionInterface.register(IMPL, kdlab_attention)
    AttentionMaskInterface.register(IMPL, ALL_MASK_ATTENTION_FUNCTIONS["eager"])


_register()


class _Handles:
    def __init__(self):
        self.items = []

    def remove(self):
        for h in reversed(self.items):
            h()
        self.items.clear()


def _add_hook(handles: _Handles, handle):
    handles.items.append(handle.remove)


def _split(x: torch.Tensor, heads: int) -> torch.Tensor:
    B, L, d = x.shape
    return x.view(B, L, heads, d // heads).transpose(1, 2)


def _layer_hooks(handles, sa, rec, lins: dict, dropout, heads: int, scores_fn):
    """Hooks on one self-attention module: ``lins`` name -> Linear giving q/k/v (first call per forward),
    ``dropout`` the attention-dropout module (its input: the pre-dropout probabilities); ``scores_fn(slot)`` the
    raw scores from the captured values."""
    slot: dict = {}

    def pre(_m, args, kwargs):
        slot.clear()
        slot["args"], slot["kwargs"] = args, kwargs

    _add_hook(handles, sa.register_forward_pre_hook(pre, with_kwargs=True))
    for name, lin in lins.items():
        def out_hook(_m, _inp, out, name=name):
            slot.setdefault(name, out)
        _add_hook(handles, lin.register_forward_hook(out_hook))

    def at_dropout(_m, args):
        probs = args[0]
        probs = probs.view(-1, heads, probs.shape[-2], probs.shape[-1])
        scores = scores_fn(slot) if rec.scores else None
        rec.add(slot["q"], slot["k"], slot["v"], probs, scores)

    _add_hook(handles, dropout.register_forward_pre_hook(at_dropout))
    return slot


def deberta_hook(stack, rec: Recorder):
    """DeBERTa-v2/v3 (``stack``: the layer list): scores = Q Kᵀ / √(d·f) + the disentangled relative-position term
    (f = 1 + c2p + p2c)."""
    handles = _Handles()
    for layer in stack:
        sa = layer.attention.self
        h = sa.num_attention_heads
        f = 1 + ("c2p" in sa.pos_att_type) + ("p2c" in sa.pos_att_type)

        def scores_fn(slot, h=h, f=f):
            q, k = _split(slot["q"], h), _split(slot["k"], h)
            s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1] * f)
            rel = slot.get("rel")
            return s if rel is None else s + rel.view(s.shape)

        slot = _layer_hooks(handles, sa, rec, {"q": sa.query_proj, "k": sa.key_proj, "v": sa.value_proj},
                            sa.dropout, h, scores_fn)
        if getattr(sa, "relative_attention", False):
            orig = sa.disentangled_attention_bias

            def bias(*a, orig=orig, slot=slot, **kw):
                r = orig(*a, **kw)
                slot["rel"] = r
                return r

            sa.disentangled_attention_bias = bias
            handles.items.append(lambda sa=sa: sa.__dict__.pop("disentangled_attention_bias", None))
    return handles


def mpnet_hook(stack, rec: Recorder):
    """MPNet (``stack``: the layer list): scores = Q Kᵀ / √d + the relative position bias the encoder computes once
    for all layers."""
    handles = _Handles()
    for layer in stack:
        sa = layer.attention.attn
        h = sa.num_attention_heads

        def scores_fn(slot, h=h):
            q, k = _split(slot["q"], h), _split(slot["k"], h)
            s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            args, kwargs = slot["args"], slot["kwargs"]
            bias = args[2] if len(args) > 2 else kwargs.get("position_bias")
            return s if bias is None else s + bias

        _layer_hooks(handles, sa, rec, {"q": sa.q, "k": sa.k, "v": sa.v}, sa.dropout, h, scores_fn)
    return handles


@contextlib.contextmanager
def capture(model, fam, stack, scores: bool = False):
    """Record every layer's attention during the forward passes of ``model`` (of family ``fam``, layer list
    ``stack``) inside the block; yields the ``Recorder`` (its ``layers``: one dict per layer call, in order)."""
    rec = Recorder(scores)
    if fam.interface:
        set_impl(model)
        _ACTIVE.append(rec)
        try:
            yield rec
        finally:
            _ACTIVE.remove(rec)
    else:
        handles = fam.hook(stack, rec)
        try:
            yield rec
        finally:
            handles.remove()


def set_impl(model, impl: str = IMPL):
    if getattr(model.config, "_attn_implementation", None) != impl:
        model.set_attn_implementation(impl)
