"""Length buckets: skip the padding of a right-padded batch.

In a BERT-like encoder a real token never attends to padding (padded keys are masked) and every other
operation is per token, so the outputs at real positions do not depend on how much padding a row carries.
``features(..., bucketed=True)`` therefore runs the model on a few sub-batches of rows of similar length, each
trimmed to its own longest row, and re-pads the outputs to the batch's shape (zeros past a sub-batch's
longest row; values at padded positions are never read by a loss). Gradients flow through the re-padding,
so this serves the student's training step as well as the teacher's forward.

Only valid where no loss reads padded positions: the loop turns it off for methods that declare
``uses_padding`` (TinyBERT's unmasked reference form). Captured q/k/v are re-padded like hidden states; the
attention maps rebuilt from them mask padded keys, so their real rows are unchanged. ``plan`` chooses the
sub-batches: rows sorted by length, split into at most ``max_groups`` contiguous groups minimising the
tokens computed plus a fixed cost per extra forward call.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..records import Features


def enabled(mode: str, device) -> bool:
    """``auto``: on for CPU (compute is proportional to tokens), off on accelerators (where a padded batch
    often costs no more than its real tokens and every extra call costs a launch); ``on`` / ``off``."""
    if mode == "auto":
        return torch.device(device).type == "cpu"
    return mode == "on"


def right_padded(mask: torch.Tensor) -> bool:
    """True when every row is ones then zeros (real tokens first), so trimming columns drops only padding."""
    if mask.dim() != 2 or mask.shape[1] < 2:
        return False
    m = mask != 0
    return bool((m[:, 1:] <= m[:, :-1]).all())


def plan(lengths, overhead: float | None = None, max_groups: int = 4) -> list[tuple[list[int], int]]:
    """-> [(row indices, trimmed length)] covering every row once.

    Cost of a group = rows x its longest row (tokens computed) + ``overhead`` tokens per forward call
    (default: 1/16 of the batch's padded tokens, at least 32). Exact minimum by dynamic programming over
    the rows sorted by length (longest first).
    """
    lengths = [max(1, int(x)) for x in lengths]
    B = len(lengths)
    order = sorted(range(B), key=lambda r: -lengths[r])
    ls = np.array([lengths[r] for r in order], dtype=np.float64)
    if overhead is None:
        overhead = max(32.0, B * ls[0] / 16)
    # cost[i, j]: rows i..j-1 (sorted) in one group, whose longest row is row i
    idx = np.arange(B + 1)
    cost = (idx[None, :] - idx[:B, None]) * ls[:, None] + overhead
    cost[idx[None, :] <= idx[:B, None]] = np.inf
    # f[k][j]: least cost covering the first j rows with at most k groups; choice -1 = fewer groups
    f = [np.where(idx == 0, 0.0, np.inf)]
    choice = []
    for _ in range(max(1, max_groups)):
        tot = f[-1][:B, None] + cost                     # [i, j]: last group is rows i..j-1
        arg = tot.argmin(axis=0)
        val = tot[arg, idx]
        take = val < f[-1]
        f.append(np.where(take, val, f[-1]))
        choice.append(np.where(take, arg, -1))
    cuts, j, k = [], B, len(choice) - 1
    while j > 0:
        i = int(choice[k][j])
        if i >= 0:
            cuts.append((i, j))
            j = i
        k -= 1
    groups = []
    for i, j in reversed(cuts):
        rows = order[i:j]
        groups.append((rows, int(ls[i])))
    return groups


def _pad_seq(x: torch.Tensor, L: int, dims: int) -> torch.Tensor:
    """Zero-pad the last ``dims`` sequence dimensions of ``x`` to ``L`` ([B, l, d] or [B, h, l, l])."""
    n = x.shape[1] if dims == 1 else x.shape[-1]
    if n == L:
        return x
    pad = (0, 0, 0, L - n) if dims == 1 else (0, L - n, 0, L - n)
    return F.pad(x, pad)


def run(fn, batch: dict, max_groups: int = 4) -> Features | None:
    """``fn(sub_batch) -> Features`` on each planned sub-batch; -> one Features for the whole batch, or
    ``None`` when bucketing would not save anything (the caller then runs the batch as it is)."""
    mask = batch["attention_mask"]
    B, L = mask.shape
    if B < 1 or not right_padded(mask):
        return None
    groups = plan((mask != 0).sum(1).tolist(), max_groups=max_groups)
    if len(groups) == 1 and groups[0][1] >= L:
        return None
    dev = mask.device
    parts, rows_all = [], []
    for rows, n in groups:
        r = torch.tensor(rows, device=dev)
        parts.append(fn({k: batch[k].index_select(0, r)[:, :n] for k in ("input_ids", "attention_mask",
                                                                         "token_type_ids") if k in batch}))
        rows_all.extend(rows)
    inv = torch.empty(B, dtype=torch.long)
    inv[torch.tensor(rows_all)] = torch.arange(B)
    inv = inv.to(dev)

    def join(xs, dims=0):   # the parts' tensors, re-padded over ``dims`` sequence dims, in the batch's row order
        xs = [_pad_seq(x, L, dims) if dims else x for x in xs]
        return (torch.cat(xs) if len(xs) > 1 else xs[0]).index_select(0, inv)

    first = parts[0]
    hidden = attn = qkv = None
    if first.hidden is not None:
        hidden = [join([p.hidden[k] for p in parts], 1) for k in range(len(first.hidden))]
    if first.attentions is not None:
        attn = [join([p.attentions[k] for p in parts], 2) for k in range(len(first.attentions))]
    if first.qkv is not None:   # per layer (q, k, v), each [B, l, d]
        qkv = [tuple(join([p.qkv[k][c] for p in parts], 1) for c in range(3)) for k in range(len(first.qkv))]
    maps = None
    if first.maps is not None:   # per layer {"probs", "scores"}, each [B, h, l, l]
        maps = [{key: None if first.maps[k][key] is None else join([p.maps[k][key] for p in parts], 2)
                 for key in first.maps[k]} for k in range(len(first.maps))]
    return Features(logits=join([p.logits for p in parts]), mask=mask, hidden=hidden, attentions=attn, qkv=qkv,
                    heads=first.heads, maps=maps)
