"""A narrower student initialised from the teacher's weights (``--student-hidden h --student-narrow-init pca``).

A student of hidden size h < H cannot copy the teacher's matrices, but it can copy a projection of them. kdlab
runs the teacher on a calibration sample of the training data (256 examples, seeded; ``calibrate``) and then
builds the student from the chosen teacher layers (``narrow_student``):

- **The residual stream (H -> h).** A basis U [H, h] of the space the teacher's hidden states live in:
  ``pca``: the top-h eigenvectors of the uncentred second moment of all hidden states (embeddings and every
  layer, real tokens only; uncentred, because the weights map without an offset); ``select``: the h coordinates
  with the largest mean square (U is then a column selection of the identity; channel pruning). Every matrix
  that reads the stream is multiplied by U on its input side (W U), every one that writes it by Uᵀ on its output
  side (Uᵀ W, Uᵀ b); the embedding tables become E U. A LayerNorm's scale becomes (U∘U)ᵀ γ and its shift Uᵀ β:
  exact for ``select``, an approximation for ``pca`` (LayerNorm's mean and variance are not rotation-invariant).
- **Attention (whole heads).** The head size d stays the teacher's, so the student keeps h / d heads per layer:
  those whose output (the head's context through its slice of the output projection) has the largest mean norm
  on the calibration sample. h must be a multiple of d.
- **Feed-forward (neurons).** The student keeps round(I h / H) of the I intermediate neurons per layer, those with
  the largest mean |activation| times the norm of their output weights.

With ``select`` and h = H every head and neuron is kept and the student computes exactly the teacher's function
(tested); with h < H it is a pruned teacher, and distillation then trains it as any other student. The model must
be BERT-shaped (``.embeddings``, ``.encoder.layer[i].attention.self.query`` ...): BERT, RoBERTa, ELECTRA, MiniLM.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import KdlabError
from .core import encoder, fresh_student, set_attention

HOWS = ("random", "pca", "select")


@dataclass
class Calibration:
    second_moment: torch.Tensor        # [H, H] mean x xᵀ over real tokens of all hidden states
    head_importance: list              # per teacher layer: [heads]
    neuron_importance: list            # per teacher layer: [intermediate]
    tokens: int


def _layers(model):
    return encoder(model).encoder.layer


@torch.no_grad()
def calibrate(teacher, batches) -> Calibration:
    """Statistics of the teacher on ``batches`` (dicts with input_ids, attention_mask, optional token_type_ids)."""
    cfg = teacher.config
    H, nh = cfg.hidden_size, cfg.num_attention_heads
    d = H // nh
    layers = _layers(teacher)
    heads = [torch.zeros(nh) for _ in layers]
    neurons = [torch.zeros(cfg.intermediate_size) for _ in layers]
    M = torch.zeros(H, H, dtype=torch.float64)
    n_tok = 0
    mask_now = {}

    def head_hook(i, module):
        def pre(_mod, args):
            ctx = args[0].float()                                  # [B, T, H] before the output projection
            real = mask_now["m"]
            W = module.weight.float()                              # [H, H]
            for k in range(nh):
                out = ctx[..., k * d:(k + 1) * d] @ W[:, k * d:(k + 1) * d].T
                heads[i][k] += out.norm(dim=-1)[real].sum().item()
        return pre

    def neuron_hook(i, w_out):
        def post(_mod, _args, out):
            a = out.float()[mask_now["m"]].abs().sum(0)            # [I]
            neurons[i] += a * w_out.float().norm(dim=0)
        return post

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.attention.output.dense.register_forward_pre_hook(head_hook(i, layer.attention.output.dense)))
        handles.append(layer.intermediate.register_forward_hook(neuron_hook(i, layer.output.dense.weight)))
    was_training = teacher.training
    teacher.eval()
    try:
        for b in batches:
            mask = b["attention_mask"].bool()
            mask_now["m"] = mask
            kw = {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in b}
            out = teacher(**kw, output_hidden_states=True)
            for h in out.hidden_states:
                x = h.float()[mask].double()
                M += x.T @ x
            n_tok += int(mask.sum())
    finally:
        for h in handles:
            h.remove()
        teacher.train(was_training)
    if n_tok == 0:
        raise KdlabError("the calibration sample for the narrow student has no tokens: check the training data")
    count = n_tok * (len(layers) + 1)
    return Calibration(M / count, [h / n_tok for h in heads], [n / n_tok for n in neurons], n_tok)


def basis(cal: Calibration, hidden: int, how: str) -> torch.Tensor:
    """U [H, hidden] with orthonormal columns (``pca`` or ``select``, see the module's doc)."""
    M = cal.second_moment
    if how == "select":
        idx = torch.topk(torch.diagonal(M), hidden).indices.sort().values
        return torch.eye(M.shape[0], dtype=torch.float32)[:, idx]
    if how == "pca":
        vals, vecs = torch.linalg.eigh(M)                         # ascending
        U = vecs[:, torch.argsort(vals, descending=True)[:hidden]]
        return U.float()
    raise KdlabError(f"unknown narrow initialisation {how!r}: choose one of {', '.join(HOWS)}")


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(scores, k).indices.sort().values


def _layer_norm(dst, src, U):
    dst.weight.copy_((U * U).T @ src.weight.float())
    dst.bias.copy_(U.T @ src.bias.float())


def _linear(dst, src, *, rows=None, cols=None, U_in=None, U_out=None):
    """dst = (U_outᵀ) src[rows][:, cols] (U_in), bias likewise; None = that side unchanged."""
    W = src.weight.float()
    b = None if src.bias is None else src.bias.float()
    if rows is not None:
        W = W[rows]
        b = None if b is None else b[rows]
    if cols is not None:
        W = W[:, cols]
    if U_in is not None:
        W = W @ U_in
    if U_out is not None:
        W = U_out.T @ W
        b = None if b is None else U_out.T @ b
    dst.weight.copy_(W)
    if b is not None:
        dst.bias.copy_(b)


def check_narrow(teacher_config, hidden: int):
    """The student's hidden size must be below the teacher's and a multiple of its head size."""
    H, nh = teacher_config.hidden_size, teacher_config.num_attention_heads
    d = H // nh
    if not 0 < hidden <= H:
        raise KdlabError(f"a narrow student needs 0 < hidden size <= the teacher's {H} (got {hidden})")
    if hidden % d:
        raise KdlabError(f"a student initialised from the teacher keeps whole heads of size {d}: choose a hidden size "
                         f"that is a multiple of {d} (e.g. {max(d, hidden // d * d)}), or --student-narrow-init random")


@torch.no_grad()
def narrow_student(teacher, layers: list[int], hidden: int, cal: Calibration, how: str = "pca", seed: int = 0):
    """A student of ``hidden`` size over the teacher layers ``layers`` (0-based), weights projected from them."""
    tc = teacher.config
    check_narrow(tc, hidden)
    H, nh, I = tc.hidden_size, tc.num_attention_heads, tc.intermediate_size
    d = H // nh
    heads = hidden // d
    inter = max(1, round(I * hidden / H))
    U = basis(cal, hidden, how)
    student = fresh_student(teacher, len(layers), hidden=hidden, heads=heads, intermediate=inter, seed=seed)
    s_base, t_base = encoder(student), encoder(teacher)
    se, te = s_base.embeddings, t_base.embeddings
    for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        if hasattr(te, name) and getattr(te, name) is not None:
            getattr(se, name).weight.copy_(getattr(te, name).weight.float() @ U)
    _layer_norm(se.LayerNorm, te.LayerNorm, U)
    for j, i in enumerate(layers):
        sl, tl = _layers(student)[j], _layers(teacher)[i]
        keep_h = _top(cal.head_importance[i], heads)
        rows = torch.cat([torch.arange(k * d, (k + 1) * d) for k in keep_h.tolist()])
        for name in ("query", "key", "value"):
            _linear(getattr(sl.attention.self, name), getattr(tl.attention.self, name), rows=rows, U_in=U)
        _linear(sl.attention.output.dense, tl.attention.output.dense, cols=rows, U_out=U)
        _layer_norm(sl.attention.output.LayerNorm, tl.attention.output.LayerNorm, U)
        keep_n = _top(cal.neuron_importance[i], inter)
        _linear(sl.intermediate.dense, tl.intermediate.dense, rows=keep_n, U_in=U)
        _linear(sl.output.dense, tl.output.dense, cols=keep_n, U_out=U)
        _layer_norm(sl.output.LayerNorm, tl.output.LayerNorm, U)
    if getattr(t_base, "pooler", None) is not None and getattr(s_base, "pooler", None) is not None:
        _linear(s_base.pooler.dense, t_base.pooler.dense, U_in=U, U_out=U)
    _head(student, teacher, U)
    set_attention(student, getattr(tc, "_attn_implementation", "sdpa") == "eager")
    return student


def _head(student, teacher, U):
    """The classification head (every linear layer outside the encoder): hidden-sized sides projected."""
    H = teacher.config.hidden_size
    t_mods = {n: m for n, m in teacher.named_modules() if isinstance(m, torch.nn.Linear)}
    base_prefix = teacher.base_model_prefix
    for n, m in student.named_modules():
        if not isinstance(m, torch.nn.Linear) or n.startswith(base_prefix + ".") or n not in t_mods:
            continue
        t = t_mods[n]
        _linear(m, t, U_in=U if t.in_features == H else None, U_out=U if t.out_features == H else None)


def calibration_batches(split, tokenizer, *, max_len: int, n: int = 256, batch_size: int = 32):
    """A seeded sample of ``n`` training examples as padded batches (pairs through the pair encoding)."""
    from ..data.batching import make_loader
    from ..data.loaders import _subsample
    sample = _subsample(split, n, 0)
    return list(make_loader(sample, tokenizer, batch_size=batch_size, max_len=max_len, shuffle=False))


def build_narrow(teacher, tokenizer, train_split, cfg, init: str = "skip"):
    """The default student of a run with ``cfg.student_hidden`` and ``cfg.student_narrow_init`` pca/select: the
    teacher layers chosen by ``init`` (skip, first, last, explicit), projected to the narrower width."""
    from .core import student_layer_indices
    how = cfg.student_narrow_init
    if init == "fresh":
        raise KdlabError(f"--student-init fresh is a random student; --student-narrow-init {how} copies the teacher's "
                         "layers: drop one of them")
    check_narrow(teacher.config, cfg.student_hidden)
    layers = student_layer_indices(teacher.config.num_hidden_layers, layers=cfg.student_layers, init=init,
                                   layer_list=cfg.student_layer_list)
    cal = calibrate(teacher, calibration_batches(train_split, tokenizer, max_len=cfg.train.max_len))
    return narrow_student(teacher, layers, cfg.student_hidden, cal, how=how, seed=cfg.train.seed)
