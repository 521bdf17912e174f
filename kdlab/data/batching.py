"""Tokenise a ``Split`` once and batch it with dynamic padding. Batches carry ``idx`` (example ids
within the split) so per-example results can be joined back to the texts."""

from __future__ import annotations

from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset


class TextDataset(Dataset):
    """Pre-tokenised ids of one split; item = ``{"input_ids": list[int], "label": int, "idx": int}``."""

    def __init__(self, input_ids: list[list[int]], labels: list[int], name: str = "",
                 pad_id: int = 0):
        if len(input_ids) != len(labels):
            raise ValueError("input_ids and labels differ in length")
        self.input_ids = input_ids
        self.labels = [int(y) for y in labels]
        self.name = name
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.input_ids[i], "label": self.labels[i], "idx": i}


def _pad_id(tokenizer) -> int:
    pid = getattr(tokenizer, "pad_token_id", None)
    return 0 if pid is None else int(pid)


def encode_split(split, tokenizer, max_len: int = 64) -> TextDataset:
    """Tokenise ``split.texts`` with a (fast) HF tokenizer, special tokens added, truncated to
    ``max_len``. No padding here: ``collate`` pads each batch to its longest row."""
    enc = tokenizer(list(split.texts), truncation=True, max_length=max_len,
                    add_special_tokens=True, padding=False, return_attention_mask=False,
                    return_token_type_ids=False)
    return TextDataset([list(x) for x in enc["input_ids"]], list(split.labels),
                       name=getattr(split, "name", ""), pad_id=_pad_id(tokenizer))


def collate(batch: list[dict], pad_id: int = 0) -> dict:
    """-> ``input_ids`` [B, L] (padded with ``pad_id`` to the longest row), ``attention_mask``
    [B, L] (1 = real token), ``labels`` [B], ``idx`` [B]; all LongTensors."""
    L = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    for r, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[r, :n] = torch.tensor(b["input_ids"], dtype=torch.long)
        mask[r, :n] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor([b["label"] for b in batch], dtype=torch.long),
        "idx": torch.tensor([b["idx"] for b in batch], dtype=torch.long),
    }


def make_loader(split, tokenizer, batch_size: int = 32, max_len: int = 64, shuffle: bool = False,
                seed: int = 0, drop_last: bool = False) -> DataLoader:
    """DataLoader over ``encode_split(split, tokenizer, max_len)``; shuffling is deterministic
    (a ``torch.Generator`` seeded with ``seed``); ``num_workers=0``. ``split`` may also be an
    already encoded ``TextDataset`` (then ``tokenizer`` is only used for the pad id)."""
    ds = split if isinstance(split, TextDataset) else encode_split(split, tokenizer, max_len)
    pad_id = _pad_id(tokenizer) if tokenizer is not None else ds.pad_id
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=0, generator=gen, collate_fn=partial(collate, pad_id=pad_id))
