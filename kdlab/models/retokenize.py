"""A teacher that tokenizes differently from its student: each model reads the same text through its own tokenizer.

The distillation loop batches the student's tokens. ``RetokenizedTeacher`` wraps the teacher and, for each row of
a batch, finds the text's encoding in the teacher's own tokenizer (a table built once from every split the run
sees: training rows, transfer rows, dev and out-of-domain sets), runs the teacher on those tokens and returns its
logits. Only logits cross over: token positions of two tokenizers do not correspond, so a method that matches
hidden states or attention maps position by position refuses this teacher (``check_logit_method``).

An eval-mode teacher is deterministic, so its logits are computed once per distinct teacher encoding and kept
(this teacher's cache is keyed on the teacher's own tokens; the loop's per-example cache, keyed on the student's
batch, is off for it). Two texts the student tokenizes identically but the teacher does not (rare: e.g. casing a
lower-casing student drops) share the first text's teacher encoding, as the student cannot tell them apart either.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.batching import collate, encode_split
from ..errors import KdlabError
from .core import same_tokenizer  # noqa: F401  (re-exported: the one tokenizer comparison)
from ..records import Features, Need


def check_logit_method(method_cls) -> None:
    """One line for a method that cannot learn across two tokenizers."""
    from .teachers import _logits_only
    if not method_cls.uses_teacher:
        return
    why = _logits_only(method_cls)
    if why:
        raise KdlabError(f"method '{method_cls.name}' cannot distil between models that tokenize differently: {why}, "
                         "and token positions of two tokenizers do not correspond; use a logit-level method such "
                         "as kd or kd-mse, or a student that shares the teacher's tokenizer")


class RetokenizedTeacher(nn.Module):
    """``teacher`` (with ``teacher_tok``) fed the same texts as a student that uses ``student_tok``."""
    uncached = True      # the loop's cache keys on the student's tokens; this one keeps its own (teacher's tokens)

    def __init__(self, teacher, teacher_tok, student_tok, splits, max_len: int):
        super().__init__()
        self.teacher = teacher
        self.tokenizer = teacher_tok
        self.config = teacher.config
        self.pad_id = int(teacher_tok.pad_token_id or 0)
        self.table: dict[tuple, tuple] = {}    # student ids -> the teacher's ids of the same text
        self.items: dict[tuple, dict] = {}     # the teacher's ids -> its batch item (input_ids, token_type_ids)
        for split in splits:
            self.add(split, student_tok, max_len)
        self.logits: dict[tuple, torch.Tensor] = {}   # teacher ids -> logits (computed once)

    def add(self, split, student_tok, max_len: int) -> None:
        s_ds, t_ds = encode_split(split, student_tok, max_len), encode_split(split, self.tokenizer, max_len)
        for i in range(len(s_ds)):
            item = {"input_ids": t_ds.input_ids[i]}
            if t_ds.token_type_ids is not None:
                item["token_type_ids"] = t_ds.token_type_ids[i]
            t_key = tuple(t_ds.input_ids[i])
            self.items.setdefault(t_key, item)
            self.table.setdefault(tuple(s_ds.input_ids[i]), t_key)

    def kd_features(self, batch: dict, need: Need) -> Features:
        if need.hidden or need.attentions or need.qkv:
            raise KdlabError("teacher and student tokenize differently: only the teacher's logits can be distilled; "
                             "use a logit-level method such as kd or kd-mse")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        keys = []
        for r in range(ids.shape[0]):
            key = tuple(ids[r, : int(mask[r].sum())].tolist())
            if key not in self.table:
                raise KdlabError("a text reached the teacher that was not among the run's splits: a teacher that "
                                 "tokenizes differently from its student reads only the run's own texts")
            keys.append(self.table[key])
        todo = list(dict.fromkeys(k for k in keys if k not in self.logits))
        if todo:
            items = [{**self.items[k], "label": 0, "idx": j} for j, k in enumerate(todo)]
            tb = collate(items, pad_id=self.pad_id)
            dev = next(self.teacher.parameters()).device
            inputs = {k: tb[k].to(dev) for k in ("input_ids", "attention_mask", "token_type_ids") if k in tb}
            with torch.inference_mode():
                out = self.teacher(**inputs).logits.float()
            for k, z in zip(todo, out):
                self.logits[k] = z.clone()
        logits = torch.stack([self.logits[k] for k in keys]).to(ids.device)
        return Features(logits=logits, mask=mask, heads=0)
