"""Structured pruning: remove N attention heads and M FFN neurons from every layer of a transformer classifier.

Importance is measured on a sample of the run's training data through a mask of ones multiplied into the input of
each layer's attention output projection (one value per head) and of its FFN output projection (one value per
intermediate neuron): a head's importance is |d loss / d mask_h| summed over batches (Michel et al. 2019,
"Are Sixteen Heads Really Better than One?", as TextPruner does), a neuron's is the same quantity, which equals
|sum over tokens of activation x gradient| (first-order Taylor). The least important are removed by rebuilding
the Linear layers structurally (``transformers.pytorch_utils.prune_linear_layer``; transformers 5 has no
``prune_heads`` any more), in rounds of at most a third of what a layer still has (Minitron), importance measured
again before each round. Optional recovery: the pruned model as a student of its unpruned self (logit KD) for a
few steps after each round.

The config keeps the family's original sizes and records what was kept in ``config.kdlab_pruned``
(``{"heads": {layer: [kept head indices]}, "ffn": {layer: [kept neuron indices]}}``, indices of the original
layer); ``restore`` rebuilds that structure on a freshly built model so the saved weights load (``load_pruned``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import KdlabError

KEY = "kdlab_pruned"


@dataclass(frozen=True)
class Spec:
    """Where a family's attention and FFN Linear layers live inside one layer of its stack."""
    attn: str | None             # the attention module whose head-count attributes are updated (None: heads refused)
    qkv: tuple = ()              # query, key, value projections (output rows = heads x head_dim)
    out: str = ""                # attention output projection (input columns = heads x head_dim)
    fused: bool = False          # one Linear holds q, k and v stacked (ModernBERT's Wqkv)
    extra: tuple = ()            # further per-head projections present only in some configs (DeBERTa's pos_*_proj)
    ffn_in: str = ""             # FFN up projection (output rows = neurons)
    ffn_out: str = ""            # FFN down projection (input columns = neurons)
    glu: bool = False            # the up projection holds two halves (ModernBERT's gated MLP)
    why_no_heads: str = ""


_BERT = Spec("attention.self", ("attention.self.query", "attention.self.key", "attention.self.value"),
             "attention.output.dense", ffn_in="intermediate.dense", ffn_out="output.dense")
SPECS = {
    "bert": _BERT, "roberta": _BERT, "electra": _BERT,
    "distilbert": Spec("attention", ("attention.q_lin", "attention.k_lin", "attention.v_lin"), "attention.out_lin",
                       ffn_in="ffn.lin1", ffn_out="ffn.lin2"),
    "deberta-v2": Spec("attention.self", ("attention.self.query_proj", "attention.self.key_proj",
                                          "attention.self.value_proj"), "attention.output.dense",
                       extra=("attention.self.pos_key_proj", "attention.self.pos_query_proj"),
                       ffn_in="intermediate.dense", ffn_out="output.dense"),
    "modernbert": Spec("attn", ("attn.Wqkv",), "attn.Wo", fused=True, ffn_in="mlp.Wi", ffn_out="mlp.Wo", glu=True),
    "mpnet": Spec(None, ffn_in="intermediate.dense", ffn_out="output.dense",
                  why_no_heads="MPNet adds one relative-position bias per head, shared by all layers"),
}
HEAD_ATTRS = ("num_attention_heads", "n_heads", "num_heads")


def _get(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _set(obj, path: str, value):
    parent, _, name = path.rpartition(".")
    setattr(_get(obj, parent) if parent else obj, name, value)


def spec_of(model) -> Spec:
    from ..models import families
    if not families.known(model):
        raise KdlabError(f"head and FFN pruning needs a transformer classifier of a family kdlab knows "
                         f"({', '.join(SPECS)}); this model is {type(model).__name__}")
    return SPECS[families.of(model).name]


def sizes(model) -> tuple[int, int, int]:
    """(layers, heads per layer, FFN neurons per layer) of the model as it is now (layer 0)."""
    from ..models import families
    layer = families.layers(model)[0]
    s = spec_of(model)
    n_ffn = _get(layer, s.ffn_out).in_features
    n_heads = _get(layer, s.out).in_features // head_dim(model) if s.out else _orig_heads(model)
    return len(families.layers(model)), n_heads, n_ffn


def _orig_heads(model) -> int:
    from ..models import families
    return int(getattr(model.config, families.of(model).key("num_attention_heads")))


def head_dim(model) -> int:
    from ..models import families
    c = model.config
    return int(getattr(c, "attention_head_size", None) or getattr(c, "head_dim", None)
               or getattr(c, families.of(model).key("hidden_size")) // _orig_heads(model))


def current(model) -> dict:
    return dict(getattr(model.config, KEY, None) or {})


def check(model, heads: int, ffn: int):
    """One clear line for a request that cannot be met (before any measurement)."""
    if heads < 0 or ffn < 0:
        raise KdlabError("--prune-heads and --prune-ffn take a count >= 0")
    if not heads and not ffn:
        raise KdlabError("nothing to prune: give --prune-heads N and/or --prune-ffn M (per layer)")
    s = spec_of(model)
    _, n_heads, n_ffn = sizes(model)
    if heads and s.attn is None:
        raise KdlabError(f"attention heads of a {type(model).__name__} cannot be pruned ({s.why_no_heads}); "
                         "prune its FFN neurons (--prune-ffn) only")
    if heads >= n_heads:
        raise KdlabError(f"--prune-heads {heads}: each layer has {n_heads} attention heads, so at most "
                         f"{n_heads - 1} can be removed")
    if ffn >= n_ffn:
        raise KdlabError(f"--prune-ffn {ffn}: each layer has {n_ffn} FFN neurons, so at most {n_ffn - 1} can be "
                         "removed")


# ---- structural rebuild ----

def _prune_linear(layer: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    from transformers.pytorch_utils import prune_linear_layer
    new = prune_linear_layer(layer, index.to(layer.weight.device), dim=dim)
    new.requires_grad_(layer.weight.requires_grad)
    return new


def _head_rows(keep: list[int], d: int, blocks: int = 1, n: int = 0) -> torch.Tensor:
    """Row indices of the kept heads in a projection of ``blocks`` stacked groups of ``n`` heads x ``d``."""
    rows = [b * n * d + h * d + j for b in range(blocks) for h in keep for j in range(d)]
    return torch.tensor(rows, dtype=torch.long)


def prune_layer_heads(model, i: int, keep: list[int]):
    """Keep only heads ``keep`` (positions in the layer's current heads) of layer ``i``."""
    from ..models import families
    s = spec_of(model)
    layer = families.layers(model)[i]
    d = head_dim(model)
    n = _get(layer, s.out).in_features // d
    for path in s.qkv:
        lin = _get(layer, path)
        _set(layer, path, _prune_linear(lin, _head_rows(keep, d, 3 if s.fused else 1, n), 0))
    for path in s.extra:
        lin = _get(layer, path)
        if isinstance(lin, nn.Linear):
            _set(layer, path, _prune_linear(lin, _head_rows(keep, d), 0))
    _set(layer, s.out, _prune_linear(_get(layer, s.out), _head_rows(keep, d), 1))
    attn = _get(layer, s.attn)
    for a in HEAD_ATTRS:
        if isinstance(getattr(attn, a, None), int):
            setattr(attn, a, len(keep))
    if isinstance(getattr(attn, "all_head_size", None), int):
        attn.all_head_size = len(keep) * d


def prune_layer_ffn(model, i: int, keep: list[int]):
    from ..models import families
    s = spec_of(model)
    layer = families.layers(model)[i]
    out = _get(layer, s.ffn_out)
    n = out.in_features
    idx = torch.tensor(keep, dtype=torch.long)
    rows = torch.cat([idx, idx + n]) if s.glu else idx
    _set(layer, s.ffn_in, _prune_linear(_get(layer, s.ffn_in), rows, 0))
    _set(layer, s.ffn_out, _prune_linear(out, idx, 1))


def apply(model, keep_heads: dict, keep_ffn: dict):
    """Prune layer by layer to the kept positions (positions among the layer's current heads / neurons) and
    update ``config.kdlab_pruned`` with the kept indices of the original layer."""
    rec = current(model)
    n_layers, n_heads, n_ffn = sizes(model)
    heads_rec, ffn_rec = dict(rec.get("heads", {})), dict(rec.get("ffn", {}))
    for i, keep in keep_heads.items():
        keep = sorted(int(k) for k in keep)
        prune_layer_heads(model, int(i), keep)
        was = heads_rec.get(str(i), list(range(_orig_heads(model))))
        heads_rec[str(i)] = [was[k] for k in keep]
    for i, keep in keep_ffn.items():
        keep = sorted(int(k) for k in keep)
        orig = _orig_ffn(model)
        was = ffn_rec.get(str(i), list(range(orig)))
        prune_layer_ffn(model, int(i), keep)
        ffn_rec[str(i)] = [was[k] for k in keep]
    setattr(model.config, KEY, {"heads": heads_rec, "ffn": ffn_rec})
    return model


def _orig_ffn(model) -> int:
    from ..models import families
    return int(getattr(model.config, families.of(model).key("intermediate_size")))


def restore(model):
    """Rebuild the pruned structure recorded in the config on a model freshly built from that config (its weights
    are then loaded over it). No-op for a model that was never pruned."""
    rec = current(model)
    if not rec:
        return model
    heads, ffn = rec.get("heads", {}), rec.get("ffn", {})
    setattr(model.config, KEY, {})
    apply(model, heads, ffn)   # kept indices of the original layer == positions in the fresh (unpruned) layer
    return model


def load_pruned(folder):
    """A model saved after pruning: built from its config, the recorded structure restored, weights loaded."""
    from pathlib import Path

    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification
    folder = Path(folder)
    config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_config(config)
    restore(model)
    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # tied or non-persistent entries may be absent from the file; any other mismatch is a broken folder
    missing = [k for k in missing if "position_ids" not in k]
    if unexpected or missing:
        raise KdlabError(f"'{folder}': the pruned model's weights do not match its recorded structure "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.eval()
    return model


def is_pruned_folder(folder) -> bool:
    import json
    from pathlib import Path
    p = Path(folder) / "config.json"
    return p.exists() and bool(json.loads(p.read_text()).get(KEY))


# ---- importance ----

class _Masks:
    """Forward pre-hooks that multiply the input of each attention / FFN output projection by a mask of ones."""

    def __init__(self, model, heads: bool, ffn: bool):
        from ..models import families
        s = spec_of(model)
        self.handles, self.head, self.ffn = [], [], []
        d = head_dim(model)
        for layer in families.layers(model):
            if heads:
                lin = _get(layer, s.out)
                m = torch.ones(lin.in_features // d, requires_grad=True)
                self.head.append(m)
                self.handles.append(lin.register_forward_pre_hook(self._hook(m, d)))
            if ffn:
                lin = _get(layer, s.ffn_out)
                m = torch.ones(lin.in_features, requires_grad=True)
                self.ffn.append(m)
                self.handles.append(lin.register_forward_pre_hook(self._hook(m, 1)))

    @staticmethod
    def _hook(mask, d):
        def pre(module, args):
            x = args[0]
            shape = x.shape
            x = (x.reshape(*shape[:-1], -1, d) * mask.to(x.dtype)[:, None]).reshape(shape)
            return (x,) + tuple(args[1:])
        return pre

    def remove(self):
        for h in self.handles:
            h.remove()


def batches(tok, texts, texts_b, labels, *, max_len: int, batch: int, token_types: bool):
    for i in range(0, len(texts), batch):
        b = None if texts_b is None else list(texts_b[i:i + batch])
        enc = tok(list(texts[i:i + batch]), b, padding=True, truncation=True, max_length=max_len,
                  return_tensors="pt")
        if not token_types:
            enc.pop("token_type_ids", None)
        y = None if labels is None else torch.as_tensor(list(labels[i:i + batch]))
        yield dict(enc), y


def importance(model, tok, texts, texts_b, labels, *, heads: bool, ffn: bool, max_len: int = 64,
               batch: int = 16) -> tuple[list, list]:
    """Per-layer importance tensors (heads, FFN neurons): |d loss / d mask| summed over the batches."""
    from ..models import families
    masks = _Masks(model, heads, ffn)
    was = model.training
    model.eval()   # no dropout: the gradient of the deterministic model
    h_imp = [torch.zeros_like(m) for m in masks.head]
    f_imp = [torch.zeros_like(m) for m in masks.ffn]
    tt = families.takes_token_types(model)
    try:
        for enc, y in batches(tok, texts, texts_b, labels, max_len=max_len, batch=batch, token_types=tt):
            if y is not None and (y.dtype.is_floating_point or y.ndim == 2):   # scores, multi-hot rows
                y = y.float()
            out = model(**enc, labels=y)
            grads = torch.autograd.grad(out.loss, masks.head + masks.ffn, allow_unused=True)
            for acc, g in zip(h_imp + f_imp, grads):
                if g is not None:
                    acc += g.detach().abs()
    finally:
        masks.remove()
        model.train(was)
    return h_imp, f_imp


# ---- the whole procedure ----

def plan_rounds(total: int, have: int) -> list[int]:
    """How many to remove in each round: at most a third of what is left (at least one), summing to ``total``."""
    out = []
    while total > 0:
        step = min(total, max(1, have // 3))
        out.append(step)
        total -= step
        have -= step
    return out


def prune(model, tok, data: dict, *, heads: int = 0, ffn: int = 0, max_len: int = 64, recover_steps: int = 0,
          teacher=None, log=print) -> dict:
    """Remove ``heads`` heads and ``ffn`` FFN neurons from every layer, in rounds of at most a third, importance
    measured on ``data`` (texts, texts_b, labels) before each round; with ``recover_steps``, logit KD from
    ``teacher`` (the unpruned model) after each round. Returns the step record for the lineage."""
    check(model, heads, ffn)
    n_layers, n_heads, n_ffn = sizes(model)
    h_rounds, f_rounds = plan_rounds(heads, n_heads), plan_rounds(ffn, n_ffn)
    rounds = max(len(h_rounds), len(f_rounds))
    h_rounds += [0] * (rounds - len(h_rounds))
    f_rounds += [0] * (rounds - len(f_rounds))
    per_round = math.ceil(recover_steps / rounds) if recover_steps else 0
    recovered = []
    for r, (dh, df) in enumerate(zip(h_rounds, f_rounds)):
        h_imp, f_imp = importance(model, tok, data["texts"], data.get("texts_b"), data.get("labels"),
                                  heads=bool(dh), ffn=bool(df), max_len=max_len)
        keep_h = {i: _keep(imp, dh) for i, imp in enumerate(h_imp)} if dh else {}
        keep_f = {i: _keep(imp, df) for i, imp in enumerate(f_imp)} if df else {}
        apply(model, keep_h, keep_f)
        _, nh, nf = sizes(model)
        log(f"prune: round {r + 1}/{rounds}: -{dh} heads, -{df} FFN neurons per layer -> {nh} heads, {nf} neurons")
        if per_round and teacher is not None:
            recovered.append(recover(model, teacher, tok, data, steps=per_round, max_len=max_len))
    rec = current(model)
    return {"step": "prune-structure", "importance": "|d loss / d mask| on the training sample (Michel et al. "
            "2019); neurons: |activation x gradient|", "sample": len(data["texts"]), "heads_removed": heads,
            "ffn_removed": ffn, "heads_before": n_heads, "ffn_before": n_ffn, "layers": n_layers,
            "rounds": [{"heads": a, "ffn": b} for a, b in zip(h_rounds, f_rounds)],
            "recover_steps": per_round * len(recovered), "recover_final_kl": recovered[-1] if recovered else None,
            "kept_heads": rec.get("heads", {}), "kept_ffn_neurons": {k: len(v) for k, v in rec.get("ffn", {}).items()}}


def _keep(imp: torch.Tensor, remove: int) -> list[int]:
    order = torch.argsort(imp, stable=True)   # least important first; ties: the lower index goes first
    drop = set(order[:remove].tolist())
    return [i for i in range(len(imp)) if i not in drop]


def recover(model, teacher, tok, data: dict, *, steps: int, max_len: int = 64, batch: int = 16, lr: float = 3e-5,
            temperature: float = 2.0, seed: int = 0) -> float:
    """Logit KD (KL at ``temperature``) from ``teacher`` for ``steps`` steps on the data's texts; returns the last
    batch's KL."""
    import torch.nn.functional as F
    from ..models import families
    g = torch.Generator().manual_seed(seed)
    n = len(data["texts"])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    tt = families.takes_token_types(model)
    teacher.eval()
    model.train()
    kl = float("nan")
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch, n),), generator=g).tolist()
        tb = None if data.get("texts_b") is None else [data["texts_b"][i] for i in idx]
        enc, _ = next(batches(tok, [data["texts"][i] for i in idx], tb, None, max_len=max_len, batch=len(idx),
                              token_types=tt))
        with torch.no_grad():
            t = teacher(**enc).logits
        s = model(**enc).logits
        if s.shape[-1] == 1 or model.config.problem_type == "multi_label_classification":
            loss = F.mse_loss(s, t)   # a score or independent labels: match the teacher's logits
        else:
            loss = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                            log_target=True, reduction="batchmean") * temperature ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        kl = float(loss.detach())
    model.eval()
    return kl
