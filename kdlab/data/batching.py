"""Tokenise a ``Split`` once and batch it with dynamic padding. Batches carry ``idx`` (example ids
within the split) so per-example results can be joined back to the texts."""

from __future__ import annotations

from functools import partial

import torch
from torch.utils.data import DataLoader, Dataset


def _label(y):
    """A class id stays an int; a score (float) and a multi-hot row (list) are kept as they are."""
    if isinstance(y, (list, tuple)):
        return [float(v) for v in y]
    if isinstance(y, float) and not y.is_integer():
        return y
    return int(y) if not isinstance(y, float) else y


class TextDataset(Dataset):
    """Pre-tokenised ids of one split; item = ``{"input_ids": list[int], "label": int, "idx": int}`` (and
    ``"token_type_ids"`` for sentence pairs whose model has segment ids). A label is a class id (int), a score
    (float) or a multi-hot list."""

    def __init__(self, input_ids: list[list[int]], labels: list, name: str = "",
                 pad_id: int = 0, token_type_ids: list[list[int]] | None = None):
        if len(input_ids) != len(labels):
            raise ValueError("input_ids and labels differ in length")
        self.input_ids = input_ids
        self.labels = [_label(y) for y in labels]
        self.name = name
        self.pad_id = pad_id
        self.token_type_ids = token_type_ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        item = {"input_ids": self.input_ids[i], "label": self.labels[i], "idx": i}
        if self.token_type_ids is not None:
            item["token_type_ids"] = self.token_type_ids[i]
        return item


def _pad_id(tokenizer) -> int:
    pid = getattr(tokenizer, "pad_token_id", None)
    return 0 if pid is None else int(pid)


def uses_segments(tokenizer) -> bool:
    """True when the tokenizer's model takes segment ids (``token_type_ids``, BERT-like)."""
    return "token_type_ids" in (getattr(tokenizer, "model_input_names", None) or ())


def encode_texts(tokenizer, texts, texts_b=None, *, max_len: int = 64) -> dict:
    """Raw texts (or pairs, ``texts_b``) -> padded tensors ``input_ids``, ``attention_mask`` and, for a pair whose
    model takes segment ids, ``token_type_ids``: the same encoding as ``encode_split`` (longest-first truncation
    of a pair), for callers that time or check a model on a few texts."""
    texts = list(texts)
    if texts_b is None:
        return dict(tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt",
                              return_token_type_ids=False))
    return dict(tokenizer(texts, list(texts_b), padding=True, truncation="longest_first", max_length=max_len,
                          return_tensors="pt", return_token_type_ids=uses_segments(tokenizer)))


def model_inputs(enc: dict) -> dict:
    """The keys of an encoded batch that a classifier takes."""
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def encode_split(split, tokenizer, max_len: int = 64) -> TextDataset:
    """Tokenise ``split.texts`` with a (fast) HF tokenizer, special tokens added, truncated to
    ``max_len``. No padding here: ``collate`` pads each batch to its longest row.

    A pair split (``split.texts_b``) goes through the tokenizer's pair encoding (``[CLS] a [SEP] b [SEP]``),
    truncated longest-first so that both texts keep tokens, with segment ids where the model has them."""
    texts_b = getattr(split, "texts_b", None)
    if texts_b is None:
        enc = tokenizer(list(split.texts), truncation=True, max_length=max_len,
                        add_special_tokens=True, padding=False, return_attention_mask=False,
                        return_token_type_ids=False)
        tt = None
    else:
        seg = uses_segments(tokenizer)
        enc = tokenizer(list(split.texts), list(texts_b), truncation="longest_first", max_length=max_len,
                        add_special_tokens=True, padding=False, return_attention_mask=False,
                        return_token_type_ids=seg)
        tt = [list(x) for x in enc["token_type_ids"]] if seg else None
    return TextDataset([list(x) for x in enc["input_ids"]], list(split.labels),
                       name=getattr(split, "name", ""), pad_id=_pad_id(tokenizer), token_type_ids=tt)


def collate(batch: list[dict], pad_id: int = 0) -> dict:
    """-> ``input_ids`` [B, L] (padded with ``pad_id`` to the longest row), ``attention_mask``
    [B, L] (1 = real token), ``labels`` [B], ``idx`` [B]; all LongTensors; ``token_type_ids`` [B, L] (padded
    with 0) for pairs. Scores give float ``labels`` [B], multi-hot rows float ``labels`` [B, C]."""
    L = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), L), dtype=torch.long)
    segs = "token_type_ids" in batch[0]
    tt = torch.zeros((len(batch), L), dtype=torch.long) if segs else None
    for r, b in enumerate(batch):
        n = len(b["input_ids"])
        ids[r, :n] = torch.tensor(b["input_ids"], dtype=torch.long)
        mask[r, :n] = 1
        if segs:
            tt[r, :n] = torch.tensor(b["token_type_ids"], dtype=torch.long)
    ys = [b["label"] for b in batch]
    real = any(isinstance(y, (float, list)) for y in ys)
    out = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": torch.tensor(ys, dtype=torch.float32 if real else torch.long),
        "idx": torch.tensor([b["idx"] for b in batch], dtype=torch.long),
    }
    if segs:
        out["token_type_ids"] = tt
    return out


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
