"""Model families: one small adapter (a ``Family`` entry in ``kdlab.models.families.table``) per encoder architecture.

An adapter says where a classifier's layer stack lives, how a student copies chosen layers (weights and the
per-layer parts of the config), whether the family has a pooler and token type ids, how its tiny random model is
configured, and how its attention maps are captured (``kdlab.models.families.capture``): through transformers' attention
interface, or with a family-specific hook for the families that compute attention themselves.

Adding a family is one ``Family(...)`` entry in ``kdlab/models/families/table.py`` (``register``); a model whose
``config.model_type`` no entry names gets one clear ``KdlabError`` naming the known families.
"""
from __future__ import annotations

import copy

from ...errors import KdlabError
from . import table  # noqa: F401  (registers the built-in families)
from .family import FAMILIES, Family, register  # noqa: F401


def names() -> list[str]:
    return list(FAMILIES)


def is_tiny(name) -> bool:
    """``tiny`` or ``tiny-FAMILY``: a tiny random model built in code."""
    return str(name) == "tiny" or str(name).startswith("tiny-")


def tiny_name(arch: str | None) -> str:
    """The tiny random teacher of a family: ``tiny`` for bert, ``tiny-FAMILY`` otherwise (an unknown family: one
    line naming the known ones)."""
    if arch in (None, "", "bert"):
        return "tiny"
    get(arch)
    return f"tiny-{arch}"


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise KdlabError(f"unknown model family '{name}': kdlab knows {', '.join(FAMILIES)} "
                         "(add one as a Family entry in kdlab/models/families/table.py)")
    return FAMILIES[name]


def of(model_or_config) -> Family:
    """The family of a model (or config) by its ``model_type``; one clear line for an unknown architecture."""
    cfg = getattr(model_or_config, "config", model_or_config)
    mt = getattr(cfg, "model_type", None)
    for f in FAMILIES.values():
        if mt in f.model_types:
            return f
    raise KdlabError(f"kdlab has no adapter for the architecture '{mt}' ({type(model_or_config).__name__}): it "
                     f"knows {', '.join(FAMILIES)}; add a family as one Family entry in kdlab/models/families/table.py "
                     "(where its layer stack lives, pooler, token type ids, attention capture)")


def known(model) -> bool:
    try:
        of(model)
        return True
    except KdlabError:
        return False


def _path(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def base(model):
    """The encoder inside a classifier (``model.base_model``)."""
    return getattr(model, "base_model", model)


def layers(model) -> torch.nn.ModuleList:
    """The model's layer stack."""
    return _path(base(model), of(model).layers)


def embeddings(model) -> torch.nn.Module:
    return base(model).embeddings


def set_layers(model, modules: list):
    parent_path, _, name = of(model).layers.rpartition(".")
    parent = _path(base(model), parent_path) if parent_path else base(model)
    import torch
    setattr(parent, name, torch.nn.ModuleList(modules))


def takes_token_types(model) -> bool:
    return of(model).token_types if known(model) else True


def copy_layers(teacher, idx: list[int]):
    """A student of the teacher's family that holds copies of the teacher's layers ``idx`` (0-based), in that
    order, with the teacher's embeddings, pooler and head; its config lists ``len(idx)`` layers (and the copied
    layers' per-layer fields, e.g. ModernBERT's local/global attention pattern)."""
    fam = of(teacher)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(idx)
    for key in fam.per_layer:
        vals = getattr(config, key, None)
        if isinstance(vals, (list, tuple)):
            setattr(config, key, [vals[i] for i in idx])
    student = type(teacher)(config)
    src = layers(teacher)
    mods = []
    for pos, i in enumerate(idx):
        m = copy.deepcopy(src[i])
        m.requires_grad_(True)   # a frozen teacher's layers become trainable student layers
        for sub in m.modules():
            # hooks the teacher carries (transformers' output-capturing hooks, installed on first use) would
            # record the student's layers twice: the student installs its own
            sub._forward_hooks.clear()
            sub._forward_pre_hooks.clear()
            if isinstance(getattr(sub, "layer_idx", None), int):   # caches, per-layer patterns: the new position
                sub.layer_idx = pos
            if isinstance(getattr(sub, "config", None), type(config)):   # the student's config (attention
                sub.config = config                                      # implementation), not a copy
        if hasattr(m, "attention_type") and getattr(config, "layer_types", None):
            m.attention_type = config.layer_types[pos]
        mods.append(m)
    own = {k: v for k, v in teacher.state_dict().items() if not _in_stack(fam, k)}
    missing, unexpected = student.load_state_dict(own, strict=False)
    if unexpected:
        raise RuntimeError(f"unexpected keys copying the teacher: {unexpected[:5]}")
    set_layers(student, mods)   # before the student's first call, which installs its own output hooks
    return student


def _in_stack(fam: Family, key: str) -> bool:
    return f".{fam.layers}." in f".{key}"


def resize_config(config, n: int):
    """A config for ``n`` layers of the same family (per-layer fields recomputed)."""
    fam = of(config)
    config.num_hidden_layers = n
    if fam.reset_per_layer is not None:
        fam.reset_per_layer(config)
    return config


def capture_attention(model, scores: bool = False):
    """``kdlab.models.families.capture.capture`` for ``model``'s family: a context that records each layer's attention.
    (Not named ``capture``: the submodule ``kdlab.models.families.capture`` loads on first use and takes that name.)"""
    from .capture import capture as run
    return run(model, of(model), layers(model), scores)


def tiny(name: str, *, vocab_size: int, pad_token_id: int, num_labels: int, seed: int = 0, **sizes):
    """A tiny random classifier of family ``name`` (config built in code), in eager attention."""
    import torch
    import transformers
    fam = get(name)
    cfg_cls = getattr(transformers, fam.config_class)
    model_cls = getattr(transformers, fam.model_class)
    kw = {fam.key(k): v for k, v in sizes.items() if fam.key(k) is not None}
    kw.update(fam.tiny)
    config = cfg_cls(vocab_size=vocab_size, pad_token_id=pad_token_id, num_labels=num_labels, **kw)
    torch.manual_seed(seed)
    return model_cls(config)
