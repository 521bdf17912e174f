"""Model outputs -> one small ``Features`` record; everything downstream sees only this record.

The model is asked only for what the active objectives need: hidden states when a hidden-state term
is on, attention maps (eager attention) only when an attention term is on, and the query/key/value
projections (captured with forward hooks) only for methods that need raw scores or value relations.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .models import encoder, set_attention


@dataclass(frozen=True)
class Need:
    hidden: bool = False
    attentions: bool = False
    qkv: bool = False

    def __or__(self, other: "Need") -> "Need":
        return Need(self.hidden or other.hidden, self.attentions or other.attentions, self.qkv or other.qkv)


@dataclass
class Features:
    logits: torch.Tensor                       # [B, C]
    mask: torch.Tensor                         # [B, L] 1 = real token
    hidden: list[torch.Tensor] | None = None   # N+1 x [B, L, d]; hidden[0] = embeddings
    attentions: list[torch.Tensor] | None = None  # N x [B, h, L, L] probabilities
    qkv: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None  # N x (q, k, v) [B, L, d]
    heads: int = 0
    extra: dict = field(default_factory=dict)

    def cls(self, layer: int) -> torch.Tensor:
        return self.hidden[layer][:, 0]

    def detach(self) -> "Features":
        d = lambda t: None if t is None else [x.detach() for x in t]
        qkv = None if self.qkv is None else [tuple(x.detach() for x in t) for t in self.qkv]
        return Features(self.logits.detach(), self.mask, d(self.hidden), d(self.attentions), qkv, self.heads,
                        dict(self.extra))


def _qkv_hooks(model, store: list):
    handles = []
    for li, layer in enumerate(encoder(model).encoder.layer):
        sa = layer.attention.self
        slot = {}
        store.append(slot)
        for name in ("query", "key", "value"):
            def hook(_m, _inp, out, name=name, slot=slot):
                slot[name] = out
            handles.append(getattr(sa, name).register_forward_hook(hook))
    return handles


def features(model, batch: dict, need: Need = Need(), buckets: bool = False) -> Features:
    """Run ``model`` on ``batch`` (input_ids, attention_mask) and return the features record.

    Models that are not BERT-like (e.g. the BiLSTM student) provide ``kd_features(batch, need)``.
    ``buckets=True`` skips padding (``kdlab.speed.buckets``): rows of similar length run together, trimmed to their
    longest row, and the outputs (q/k/v included) are re-padded to the batch's shape.
    """
    if hasattr(model, "kd_features"):
        return model.kd_features(batch, need)
    if buckets:
        from .speed import buckets as _b
        f = _b.run(lambda sub: features(model, sub, need), batch)
        if f is not None:
            return f
    if need.attentions:
        set_attention(model, True)
    qkv_store: list = []
    handles = _qkv_hooks(model, qkv_store) if need.qkv else []
    try:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_hidden_states=need.hidden or need.qkv, output_attentions=need.attentions)
    finally:
        for h in handles:
            h.remove()
    qkv = [(s["query"], s["key"], s["value"]) for s in qkv_store] if need.qkv else None
    return Features(logits=out.logits, mask=batch["attention_mask"],
                    hidden=list(out.hidden_states) if out.hidden_states is not None else None,
                    attentions=list(out.attentions) if need.attentions and out.attentions else None,
                    qkv=qkv, heads=model.config.num_attention_heads)
