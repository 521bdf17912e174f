"""Model outputs -> one small ``Features`` record; everything downstream sees only this record.

The model is asked only for what the active objectives need: hidden states when a hidden-state term
is on, attention maps (eager attention) only when an attention term is on, and the query/key/value
projections (captured with forward hooks) only for methods that need raw scores or value relations.
"""
from __future__ import annotations

from .models import encoder, set_attention
from .records import Features, Need  # noqa: F401  (the records live in kdlab.records)
from .speed import buckets


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


def features(model, batch: dict, need: Need = Need(), bucketed: bool = False) -> Features:
    """Run ``model`` on ``batch`` (input_ids, attention_mask, and token_type_ids for sentence pairs) and return
    the features record.

    Models that are not BERT-like (e.g. the BiLSTM student) provide ``kd_features(batch, need)``.
    ``bucketed=True`` skips padding (``kdlab.speed.buckets``): rows of similar length run together, trimmed to their
    longest row, and the outputs (q/k/v included) are re-padded to the batch's shape.
    """
    if hasattr(model, "kd_features"):
        return model.kd_features(batch, need)
    if bucketed:
        f = buckets.run(lambda sub: features(model, sub, need), batch)
        if f is not None:
            return f
    if need.attentions:
        set_attention(model, True)
    qkv_store: list = []
    handles = _qkv_hooks(model, qkv_store) if need.qkv else []
    try:
        segs = {"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch else {}
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **segs,
                    output_hidden_states=need.hidden or need.qkv, output_attentions=need.attentions)
    finally:
        for h in handles:
            h.remove()
    qkv = [(s["query"], s["key"], s["value"]) for s in qkv_store] if need.qkv else None
    return Features(logits=out.logits, mask=batch["attention_mask"],
                    hidden=list(out.hidden_states) if out.hidden_states is not None else None,
                    attentions=list(out.attentions) if need.attentions and out.attentions else None,
                    qkv=qkv, heads=model.config.num_attention_heads)
