"""Teacher-output cache: an eval-mode teacher is deterministic, so its outputs per example are computed
once (in the first epoch) and reused in later epochs.

* Keyed by example id (``batch['idx']``, not batch order) and by an identity of teacher weights, training
  data (texts and labels), tokenizer and ``max_len``; a different identity empties the cache.
* Stored per example, unpadded (``n`` real tokens), and re-padded per batch, so it works with dynamic
  padding and any shuffling.
* Holds only what the active objectives ask for: logits always; hidden states (all layers, embeddings
  included) when a hidden-state term is on; attention maps only when an attention term is on. Stored in
  ``fp32`` (exact) or ``fp16`` (half the memory); entries stop being added past ``max_mb`` (the
  remaining examples are computed live).
* Modes (``TrainConfig.teacher_cache``): ``auto`` (default) caches only when it is exact: frozen
  eval-mode teacher, no teacher training, a method that does not perturb the teacher's input
  (``Method.cacheable``), no q/k/v capture, ``fp32`` storage; ``on`` also caches in ``fp16``;
  ``off`` never caches.
"""
from __future__ import annotations

import hashlib

import torch

from ..models.features import Features, Need

_SHARED: dict = {}   # one cache per process, reused across runs while its identity holds


def teacher_identity(teacher, tokenizer, train_split, data_identity: str, max_len: int) -> str:
    """Hash of teacher weights + data (identity and the actual training texts, second texts of pairs, labels) +
    tokenizer + max_len."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(teacher.state_dict().items()):
        h.update(name.encode())
        t = t.detach()
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(t.cpu().contiguous().numpy().tobytes())
    h.update(type(teacher).__name__.encode())
    h.update(str(getattr(teacher.config, "_attn_implementation", "")).encode())
    h.update(str(data_identity).encode())
    for text, label in zip(getattr(train_split, "texts", []), getattr(train_split, "labels", [])):
        h.update(str(text).encode())
        h.update(str(label).encode())
    texts_b = getattr(train_split, "texts_b", None)   # pairs: an example is both texts
    if texts_b is not None:
        h.update("\x00".join(map(str, texts_b)).encode())
    if tokenizer is not None:
        h.update(type(tokenizer).__name__.encode())
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        h.update(hashlib.sha1(repr(sorted(vocab.items())).encode()).digest())
        h.update(str(getattr(tokenizer, "do_lower_case", "")).encode())
    h.update(str(max_len).encode())
    return h.hexdigest()


class TeacherCache:
    """Per-example teacher outputs; ``get(batch, need)`` -> Features or None, ``put(batch, feats, need)``."""

    def __init__(self, key: str, dtype: str = "fp32", max_mb: float = 2048):
        self.key = key
        self.dtype = torch.float16 if dtype == "fp16" else torch.float32
        self.max_bytes = int(max_mb * 2 ** 20)
        self.entries: dict[int, dict] = {}
        self.bytes = 0
        self.hits = self.misses = 0
        self.full = False

    def __len__(self):
        return len(self.entries)

    @staticmethod
    def _covers(have: Need, need: Need) -> bool:
        return (have.hidden or not need.hidden) and (have.attentions or not need.attentions)

    def get(self, batch: dict, need: Need) -> Features | None:
        ids = batch["idx"].tolist()
        ents = []
        for i in ids:
            e = self.entries.get(i)
            if e is None or not self._covers(e["need"], need):
                self.misses += 1
                return None
            ents.append(e)
        self.hits += 1
        mask = batch["attention_mask"]
        B, L = mask.shape
        dev = mask.device
        logits = torch.stack([e["logits"] for e in ents]).to(dev)
        hidden = attn = None
        if need.hidden:
            layers = len(ents[0]["hidden"])
            d = ents[0]["hidden"][0].shape[-1]
            hidden = []
            for j in range(layers):
                hj = torch.zeros(B, L, d, dtype=torch.float32)
                for r, e in enumerate(ents):
                    x = e["hidden"][j]
                    hj[r, :x.shape[0]] = x
                hidden.append(hj.to(dev))
        if need.attentions:
            layers = len(ents[0]["attn"])
            h = ents[0]["attn"][0].shape[0]
            attn = []
            for j in range(layers):
                aj = torch.zeros(B, h, L, L, dtype=torch.float32)
                for r, e in enumerate(ents):
                    x = e["attn"][j]
                    n = x.shape[-1]
                    aj[r, :, :n, :n] = x
                attn.append(aj.to(dev))
        return Features(logits=logits, mask=mask, hidden=hidden, attentions=attn, heads=ents[0]["heads"])

    def put(self, batch: dict, f: Features, need: Need):
        if self.full:
            return
        lengths = batch["attention_mask"].sum(1).tolist()
        for r, i in enumerate(batch["idx"].tolist()):
            n = int(lengths[r])
            e = {"need": Need(hidden=need.hidden and f.hidden is not None,
                              attentions=need.attentions and f.attentions is not None),
                 "logits": f.logits[r].detach().float().cpu().clone(), "heads": f.heads}
            size = e["logits"].numel() * 4
            if e["need"].hidden:
                e["hidden"] = [h[r, :n].detach().to("cpu", self.dtype).clone() for h in f.hidden]
                size += sum(x.numel() * x.element_size() for x in e["hidden"])
            if e["need"].attentions:
                e["attn"] = [a[r, :, :n, :n].detach().to("cpu", self.dtype).clone() for a in f.attentions]
                size += sum(x.numel() * x.element_size() for x in e["attn"])
            if self.bytes + size > self.max_bytes:
                self.full = True
                return
            old = self.entries.get(i)
            if old is not None:
                self.bytes -= old["size"]
            e["size"] = size
            self.entries[i] = e
            self.bytes += size

    def clear(self):
        """Forget every entry (the next epoch runs the teacher live again)."""
        self.entries.clear()
        self.bytes = 0
        self.full = False

    def stats(self) -> dict:
        return {"entries": len(self.entries), "mb": round(self.bytes / 2 ** 20, 2), "hits": self.hits,
                "misses": self.misses, "full": self.full, "dtype": str(self.dtype).replace("torch.", "")}


def should_cache(mode: str, *, teacher, method, need: Need, dtype: str = "fp32") -> tuple[bool, str]:
    """(use the cache?, why) for ``mode`` in auto/on/off."""
    if mode == "off" or teacher is None:
        return False, "off"
    if getattr(teacher, "uncached", False):
        return False, "the teacher is a table of soft labels or an ensemble"
    if getattr(method, "trains_teacher", False) or teacher.training:
        return False, "the teacher trains"
    if not getattr(method, "cacheable", True):
        return False, f"method '{method.name}' perturbs the teacher's input"
    if need.qkv:
        return False, "q/k/v features are not cached"
    if getattr(method, "uses_padding", False):
        return False, f"method '{method.name}' reads padded positions"
    if mode == "auto" and dtype != "fp32":
        return False, "auto caches only exact (fp32) outputs"
    return True, "exact" if dtype == "fp32" else "fp16"


def shared_cache(key: str, dtype: str = "fp32", max_mb: float = 2048) -> TeacherCache:
    """The process's cache for ``key``; a different key (teacher, data, tokenizer, max_len or dtype changed)
    replaces it (invalidation)."""
    full_key = f"{key}:{dtype}:{max_mb}"
    c = _SHARED.get("cache")
    if c is None or c.key != full_key:
        c = TeacherCache(full_key, dtype, max_mb)
        _SHARED["cache"] = c
    return c


def clear():
    _SHARED.clear()
