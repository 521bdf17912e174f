"""Padded batches of encoded LM examples with the mask of the scored next-token targets."""
from __future__ import annotations

import torch


def collate(examples, pad_id: int) -> dict:
    """``input_ids`` and ``attention_mask`` [B, L] (right-padded); ``target_mask`` [B, L-1]: 1 where the token at
    position j+1 is scored (a completion token, not padding), aligned with ``logits[:, :-1]``."""
    L = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), L), pad_id, dtype=torch.long)
    att = torch.zeros((len(examples), L), dtype=torch.long)
    tgt = torch.zeros((len(examples), max(L - 1, 0)), dtype=torch.float32)
    for i, e in enumerate(examples):
        ids[i, :len(e.ids)] = torch.tensor(e.ids)
        att[i, :len(e.ids)] = 1
        first = max(e.n_prompt, 1)   # token j is predicted at position j-1: the first token is never scored
        tgt[i, first - 1:len(e.ids) - 1] = 1.0
    return {"input_ids": ids, "attention_mask": att, "target_mask": tgt}


def batches(examples, pad_id: int, size: int, order=None):
    """``collate``d batches of ``size`` examples in ``order`` (default: as given), each with ``idx`` (the examples'
    positions: what the loop and the top-k teacher file key an example by)."""
    order = range(len(examples)) if order is None else order
    order = list(order)
    for i in range(0, len(order), size):
        b = collate([examples[j] for j in order[i:i + size]], pad_id)
        b["idx"] = torch.tensor(order[i:i + size], dtype=torch.long)   # the examples' positions (top-k file rows)
        yield b
