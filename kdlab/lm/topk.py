"""A top-k teacher-logits file: the teacher's k most likely next tokens and their log-probabilities at every scored
position of the training set, written once (safetensors) and used instead of a live teacher.

File layout (``safetensors``): ``ids`` int32 [tokens, k], ``logprobs`` float32 [tokens, k] (log-softmax over the
full vocabulary, so the top-k mass is below 1), ``offsets`` int64 [examples + 1] (example i owns rows
``offsets[i]:offsets[i+1]``, its scored positions in order); metadata: ``k``, ``vocab``, ``key`` (the teacher,
corpus, tokenizer length and context the rows belong to).

Dense teacher distributions are rebuilt per batch (``dense_logprobs``) in one of two ways:
* ``renorm``: the top-k renormalised to sum to 1, the tail given probability 0 (reverse KL is then infinite
  wherever the student puts mass on the tail, so it is refused);
* ``uniform``: the top-k kept as they are, the tail mass 1 - sum(top-k) spread uniformly over the other V - k
  tokens.
Bytes per scored token: k x 8 (int32 id + fp32 log-prob) against V x 4 for dense fp32 logits.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from ..errors import KdlabError
from ..methods.lm import TOPK_TAILS as TAILS
from ..records import Features
from .batches import batches


@torch.no_grad()
def write_topk(teacher, examples, k: int, path, *, pad_id: int, key: str = "", batch_size: int = 16) -> dict:
    """Write the top-``k`` file of ``teacher`` over ``examples``; returns its summary (tokens, bytes per token)."""
    V = int(teacher.config.vocab_size)
    if not 1 <= k < V:
        raise KdlabError(f"--set topk must be between 1 and the vocabulary size - 1 ({V - 1}); got {k}")
    device = next(teacher.parameters()).device
    teacher.eval()
    ids, lps, counts = [], [], []
    for b in batches(examples, pad_id, batch_size):
        b = {n: v.to(device) for n, v in b.items()}
        logits = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
        m = b["target_mask"].bool()
        top = torch.log_softmax(logits[m], -1).topk(k, dim=-1)
        ids.append(top.indices.to(torch.int32).cpu())
        lps.append(top.values.cpu())
        counts += m.sum(1).tolist()
    offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
    offsets[1:] = torch.tensor(counts, dtype=torch.int64).cumsum(0)
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file({"ids": torch.cat(ids), "logprobs": torch.cat(lps), "offsets": offsets}, str(tmp),
              metadata={"k": str(k), "vocab": str(V), "key": key})
    tmp.replace(path)
    return summary(path)


def summary(path) -> dict:
    t = load_topk(path)
    n, k, V = int(t["ids"].shape[0]), t["k"], t["vocab"]
    return {"file": str(path), "k": k, "vocab": V, "tokens": n, "bytes": Path(path).stat().st_size,
            "bytes_per_token": Path(path).stat().st_size / max(n, 1), "dense_bytes_per_token": 4 * V,
            "topk_mass": float(t["logprobs"].exp().sum(-1).mean()) if n else math.nan}


def load_topk(path) -> dict:
    from safetensors import safe_open
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            out = {n: f.get_tensor(n) for n in ("ids", "logprobs", "offsets")}
    except Exception as e:   # noqa: BLE001  (a missing, truncated or foreign file: one line)
        raise KdlabError(f"'{path}' is not a kdlab top-k teacher file ({type(e).__name__}: {str(e)[:120]})") from None
    return {**out, "k": int(meta.get("k", out["ids"].shape[-1])), "vocab": int(meta.get("vocab", 0)),
            "key": meta.get("key", "")}


def dense_logprobs(ids: torch.Tensor, logprobs: torch.Tensor, vocab: int, tail: str) -> torch.Tensor:
    """Teacher log-probabilities [n, vocab] rebuilt from the top-k rows (``tail``: uniform or renorm)."""
    if tail not in TAILS:
        raise KdlabError(f"--set topk_tail must be {' or '.join(TAILS)} (got {tail!r})")
    n, k = ids.shape
    lp = logprobs.float()
    if tail == "renorm":
        out = torch.full((n, vocab), float("-inf"))
        return out.scatter(1, ids.long(), lp - torch.logsumexp(lp, -1, keepdim=True))
    rest = (1.0 - lp.exp().sum(-1, keepdim=True)).clamp(min=1e-12) / (vocab - k)
    out = rest.log().expand(n, vocab).clone()
    return out.scatter(1, ids.long(), lp)


class TopKTeacher(nn.Module):
    """The teacher of a run trained from the file: its features are the teacher's log-probabilities of the batch's
    examples (``batch['idx']``), read from the file (``kd_features``; ``config``: the live teacher's, for the
    method's context). ``uncached``: the loop's per-example cache would only copy the file."""
    uncached = True

    def __init__(self, path, tail: str, key: str = "", config=None):
        super().__init__()
        self.config = config
        self.t = load_topk(path)
        self.tail = tail
        if key and self.t["key"] and self.t["key"] != key:
            raise KdlabError(f"the top-k file '{path}' was written for other data or another teacher "
                             f"({self.t['key']}), not this run's ({key}): write it again")

    def kd_features(self, batch: dict, need) -> Features:
        """Log-probabilities [B, L, V] as the logits of the batch (row j: the next token after position j; the
        last position, which predicts nothing, and every unscored one are 0)."""
        lp = self.batch_logprobs(batch["idx"], batch["target_mask"])
        B, L = batch["attention_mask"].shape
        logits = torch.zeros((B, L, lp.shape[-1]), device=lp.device)
        logits[:, :L - 1] = lp
        return Features(logits=logits, mask=batch["attention_mask"])

    def batch_logprobs(self, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher log-probabilities of the examples ``index`` in the batch's [B, L-1, V] layout (0 off ``mask``)."""
        off = self.t["offsets"]
        rows = torch.cat([torch.arange(int(off[i]), int(off[i + 1])) for i in index.tolist()])
        m = mask.bool().cpu()
        if rows.numel() != int(m.sum()):
            raise KdlabError("the top-k file's rows do not match this run's examples: write it again")
        V = self.t["vocab"]
        dense = dense_logprobs(self.t["ids"][rows], self.t["logprobs"][rows], V, self.tail)
        out = torch.zeros((*m.shape, V))
        out[m] = dense
        return out.to(mask.device)


def key_of(teacher_dir, identity: str, vocab: int, max_len: int, n: int) -> str:
    return json.dumps({"teacher": str(teacher_dir), "data": identity, "vocab": vocab, "max_len": max_len,
                       "examples": n}, sort_keys=True)
