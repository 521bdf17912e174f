"""Model outputs -> one small ``Features`` record; everything downstream sees only this record.

The model is asked only for what the active objectives need: hidden states when a hidden-state term
is on, attention maps (eager attention) only when an attention term is on, and the attention internals
(``Need.qkv``: each layer's pre-dropout probabilities, raw scores and per-head Q, K, V) only for methods that
distil attention maps, raw scores or value relations. Those are captured from what the model itself computes,
for every family (``kdlab.models.families.capture``), never recomputed from the projections.
"""
from __future__ import annotations

from . import families
from ..errors import KdlabError
from .core import set_attention
from ..records import Features, Need  # noqa: F401  (the records live in kdlab.records)
from ..speed import buckets


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
    if need.attentions or need.qkv:
        set_attention(model, True)
    segs = {"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch and \
        families.takes_token_types(model) else {}
    args = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **segs,
                output_hidden_states=need.hidden or need.qkv, output_attentions=need.attentions)
    qkv = maps = None
    if need.qkv:
        with families.capture_attention(model, scores=True) as rec:
            out = model(**args)
        if len(rec.layers) != model.config.num_hidden_layers:
            raise KdlabError(f"captured the attention of {len(rec.layers)} of {model.config.num_hidden_layers} layers "
                             f"of {type(model).__name__}: its attention does not run through kdlab's capture (see "
                             "kdlab/models/families/capture.py)")
        qkv = [(r["q"], r["k"], r["v"]) for r in rec.layers]
        maps = [{"probs": r["probs"], "scores": r["scores"]} for r in rec.layers]
    else:
        out = model(**args)
    return Features(logits=out.logits, mask=batch["attention_mask"],
                    hidden=list(out.hidden_states) if out.hidden_states is not None else None,
                    attentions=list(out.attentions) if need.attentions and out.attentions else None,
                    qkv=qkv, heads=model.config.num_attention_heads, maps=maps)
