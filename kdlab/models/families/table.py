"""The built-in model families, one ``Family`` entry each (see ``kdlab.models.families``).

To add a family: one ``register(Family(...))`` here with the ``model_type`` its config reports, its transformers
classes, where its layer stack lives under the base model, whether it has a pooler and token type ids; a family
whose attention does not run through transformers' attention interface also names a capture hook
(``kdlab.models.families.capture``).
"""
from __future__ import annotations

from .family import Family, register


def deberta_hook(stack, rec):
    """``kdlab.models.families.capture.deberta_hook``, imported when used (torch and transformers load then)."""
    from .capture import deberta_hook as hook
    return hook(stack, rec)


def mpnet_hook(stack, rec):
    """``kdlab.models.families.capture.mpnet_hook``, imported when used."""
    from .capture import mpnet_hook as hook
    return hook(stack, rec)


def _modernbert_layer_types(config):
    every = int(getattr(config, "global_attn_every_n_layers", 1) or 1)
    config.layer_types = ["full_attention" if i % every == 0 else "sliding_attention"
                          for i in range(config.num_hidden_layers)]


def _modernbert_first_norm(model, state: dict):
    """ModernBERT builds its first layer without an attention norm; a student whose first layer is a deeper
    teacher layer keeps that layer's norm when saved, and it is put back here on load."""
    import torch
    key = next((k for k in state if k.endswith("layers.0.attn_norm.weight")), None)
    if key is None:
        return
    layer = model.base_model.layers[0]
    if isinstance(layer.attn_norm, torch.nn.LayerNorm):
        return
    c = model.config
    norm = torch.nn.LayerNorm(c.hidden_size, eps=c.norm_eps, bias=c.norm_bias)
    bias = state.get(key[:-len("weight")] + "bias")
    norm.load_state_dict({"weight": state[key], **({"bias": bias} if bias is not None else {})})
    layer.attn_norm = norm


register(Family("bert", ("bert",), "BertConfig", "BertForSequenceClassification", "encoder.layer", pooler=True))
register(Family("roberta", ("roberta", "xlm-roberta"), "RobertaConfig", "RobertaForSequenceClassification",
                "encoder.layer", token_types=False,
                # positions start after the padding index: two more position slots than tokens
                tiny=dict(max_position_embeddings=130)))
register(Family("electra", ("electra",), "ElectraConfig", "ElectraForSequenceClassification", "encoder.layer",
                tiny=dict(embedding_size=64)))
register(Family("distilbert", ("distilbert",), "DistilBertConfig", "DistilBertForSequenceClassification",
                "transformer.layer", token_types=False,
                config_keys=dict(hidden_size="dim", num_hidden_layers="n_layers", num_attention_heads="n_heads",
                                 intermediate_size="hidden_dim", hidden_dropout_prob="dropout",
                                 attention_probs_dropout_prob="attention_dropout")))
register(Family("deberta-v2", ("deberta-v2",), "DebertaV2Config", "DebertaV2ForSequenceClassification",
                "encoder.layer", pooler=True, token_types=False, interface=False, hook=deberta_hook,
                tiny=dict(relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16,
                          max_relative_positions=-1, type_vocab_size=0)))
register(Family("modernbert", ("modernbert",), "ModernBertConfig", "ModernBertForSequenceClassification",
                "layers", token_types=False, per_layer=("layer_types",), reset_per_layer=_modernbert_layer_types,
                config_keys=dict(hidden_dropout_prob="mlp_dropout", attention_probs_dropout_prob="attention_dropout"),
                tiny=dict(global_attn_every_n_layers=2, local_attention=16, bos_token_id=None, eos_token_id=None,
                          cls_token_id=None, sep_token_id=None), after_load=_modernbert_first_norm))
register(Family("mpnet", ("mpnet",), "MPNetConfig", "MPNetForSequenceClassification", "encoder.layer",
                token_types=False, interface=False, hook=mpnet_hook, tiny=dict(max_position_embeddings=130)))
