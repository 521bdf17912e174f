"""The two model shapes of ranking distillation.

* A **cross-encoder** reads ``[CLS] query [SEP] document [SEP]`` and gives one score: a kdlab sequence classifier
  with one output (``num_labels=1``), scored with ``cross_scores``.
* A **bi-encoder** embeds queries and documents separately (``BiEncoder``: mean or [CLS] pooling) and scores them
  by a dot product or a cosine. The corpus is encoded once (``encode``); search is a matrix product.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.batching import encode_texts, model_inputs, uses_segments
from ..errors import KdlabError

POOLINGS = ("mean", "cls")
SCORES = ("dot", "cosine")


def clip_words(texts, max_len: int) -> list:
    """Each text cut to its first ``max_len`` whitespace words. Every word is at least one token, so the
    tokenizer's truncation to ``max_len`` tokens gives the same ids, without tokenizing a whole abstract."""
    return [t if t.count(" ") < max_len else " ".join(t.split()[:max_len]) for t in texts]


class TextIds:
    """Tokenise each distinct text once and build single or pair inputs from the stored tokens with the
    tokenizer's own post-processor (``tokenizers.Tokenizer.post_process``: the same special tokens, segment ids and
    longest-first truncation as ``encode_texts``), so a document scored against 100 queries is tokenised once.
    A tokenizer without a ``tokenizers`` backend goes through ``encode_texts``."""

    def __init__(self, tok, max_len: int):
        self.tok, self.max_len, self.memo = tok, int(max_len), {}
        bt = getattr(tok, "backend_tokenizer", None)
        self.backend = None
        if bt is not None:
            from tokenizers import Tokenizer
            self.backend = Tokenizer.from_str(bt.to_str())
            self.backend.no_padding()
            self.backend.enable_truncation(self.max_len, strategy="longest_first")
        self.segments = uses_segments(tok)
        self.pad = 0 if tok.pad_token_id is None else int(tok.pad_token_id)

    def _enc(self, texts):
        new = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if new:
            raw = self.backend.encode_batch(clip_words(new, self.max_len), add_special_tokens=False)
            self.memo.update(zip(new, raw))
        return [self.memo[t] for t in texts]

    def __call__(self, texts, texts_b=None) -> dict:
        if self.backend is None:
            return encode_texts(self.tok, clip_words(texts, self.max_len),
                                None if texts_b is None else clip_words(texts_b, self.max_len), max_len=self.max_len)
        a = self._enc(list(texts))
        b = [None] * len(a) if texts_b is None else self._enc(list(texts_b))
        encs = [self.backend.post_process(x, y, add_special_tokens=True) for x, y in zip(a, b)]
        n = max(len(e.ids) for e in encs)
        ids = torch.full((len(encs), n), self.pad, dtype=torch.long)
        mask = torch.zeros((len(encs), n), dtype=torch.long)
        types = torch.zeros((len(encs), n), dtype=torch.long)
        for i, e in enumerate(encs):
            ids[i, :len(e.ids)] = torch.tensor(e.ids)
            mask[i, :len(e.ids)] = 1
            types[i, :len(e.ids)] = torch.tensor(e.type_ids)
        out = {"input_ids": ids, "attention_mask": mask}
        if texts_b is not None and self.segments:
            out["token_type_ids"] = types
        return out


_IDS: dict = {}


def text_ids(tok, max_len: int) -> TextIds:
    """The ``TextIds`` of a tokenizer and length limit (one per pair, kept for the process)."""
    key = (id(tok), int(max_len))
    if key not in _IDS or _IDS[key][0] is not tok:
        _IDS[key] = (tok, TextIds(tok, max_len))
    return _IDS[key][1]


def _to(enc: dict, device) -> dict:
    return {k: v.to(device) for k, v in model_inputs(enc).items()}


def cross_scores(model, tok, queries, docs, *, max_len: int = 128, batch_size: int = 64, device="cpu",
                 grad: bool = False) -> torch.Tensor:
    """The cross-encoder's score of each (query, document) pair: ``logits[:, 0]``, shape [n]."""
    out = []
    ctx = torch.enable_grad() if grad else torch.inference_mode()
    with ctx:
        for i in range(0, len(queries), batch_size):
            enc = text_ids(tok, max_len)(queries[i:i + batch_size], docs[i:i + batch_size])
            out.append(model(**_to(enc, device)).logits[:, 0].float())
    return torch.cat(out) if out else torch.zeros(0)


class BiEncoder(nn.Module):
    """``encoder``: a transformers base model (``last_hidden_state``); ``pooling`` mean (masked) or cls;
    ``score`` dot or cosine (embeddings L2-normalised)."""

    def __init__(self, encoder, tokenizer, *, pooling: str = "mean", score: str = "dot", query_len: int = 32,
                 doc_len: int = 128):
        super().__init__()
        if pooling not in POOLINGS:
            raise KdlabError(f"pooling must be {' or '.join(POOLINGS)} (got {pooling!r}): --set pooling=mean")
        if score not in SCORES:
            raise KdlabError(f"score must be {' or '.join(SCORES)} (got {score!r}): --set score=dot")
        self.encoder, self.tokenizer = encoder, tokenizer
        self.pooling, self.score_fn, self.query_len, self.doc_len = pooling, score, int(query_len), int(doc_len)

    @property
    def config(self):
        return self.encoder.config

    def embed(self, enc: dict) -> torch.Tensor:
        """Pooled (and, for cosine, L2-normalised) embeddings [B, H] of an encoded batch."""
        enc = model_inputs(enc)
        h = self.encoder(**enc).last_hidden_state
        if self.pooling == "cls":
            e = h[:, 0]
        else:
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(e, dim=-1) if self.score_fn == "cosine" else e

    def group_batch(self, data, groups) -> dict:
        """A batch of groups [(qid, [doc indices])] for ``kd_features``: ``q_*`` [B, Lq], ``d_*`` [B, 1 + K, Ld]."""
        k1 = len(groups[0][1])
        q = text_ids(self.tokenizer, self.query_len)([data.queries[qid] for qid, _ in groups])
        d = text_ids(self.tokenizer, self.doc_len)([data.docs[j] for _, ids in groups for j in ids])
        batch = {"q_" + k: v for k, v in q.items()}
        batch.update({"d_" + k: v.view(len(groups), k1, -1) for k, v in d.items()})
        batch["attention_mask"] = q["attention_mask"]
        return batch

    def transfer_batch(self, data, idx) -> dict:
        """Corpus documents ``idx`` for the embedding-matching term only (``transfer_docs``): ``x_*`` [M, Ld] and
        ``x_idx`` [M]."""
        x = text_ids(self.tokenizer, self.doc_len)([data.docs[int(j)] for j in idx])
        return {**{"x_" + k: v for k, v in x.items()}, "x_idx": torch.as_tensor(list(idx), dtype=torch.long)}

    def kd_features(self, batch: dict, need=None):
        """The loop's features of a batch of groups (``kdlab.ranking.adaptor``): the scores [B, 1 + K] of each
        group's documents as ``logits``, the embeddings as ``extra['q']`` [B, H] and ``extra['d']`` [B, 1 + K, H]
        (and ``extra['x']`` [M, H] of a batch's transfer documents)."""
        from ..records import Features
        q = self.embed({k[2:]: v for k, v in batch.items() if k.startswith("q_")})
        shape = batch["d_input_ids"].shape
        d = self.embed({k[2:]: v.reshape(shape[0] * shape[1], -1) for k, v in batch.items() if k.startswith("d_")})
        d = d.view(shape[0], shape[1], -1)
        extra = {"q": q, "d": d}
        if "x_input_ids" in batch:
            extra["x"] = self.embed({k[2:]: v for k, v in batch.items() if k.startswith("x_") and k != "x_idx"})
        return Features(logits=(q.unsqueeze(1) * d).sum(-1), mask=batch["attention_mask"], extra=extra)

    def save_pretrained(self, folder, safe_serialization: bool = True):
        """The loop's checkpoints and selected models: the same folder as ``save``."""
        return self.save(folder)

    def encode(self, texts, *, kind: str = "doc", batch_size: int = 64, device="cpu", grad: bool = False):
        """Embeddings [n, H] of ``texts`` (queries or documents: their length limit)."""
        max_len = self.doc_len if kind == "doc" else self.query_len
        out = []
        ctx = torch.enable_grad() if grad else torch.inference_mode()
        with ctx:
            for i in range(0, len(texts), batch_size):
                enc = text_ids(self.tokenizer, max_len)(texts[i:i + batch_size])
                out.append(self.embed(_to(enc, device)))
        return torch.cat(out) if out else torch.zeros(0, self.config.hidden_size)

    @staticmethod
    def scores(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """All query x document scores [nq, nd]: one matrix product (embeddings already normalised for cosine)."""
        return q @ d.T

    def pair_scores(self, queries, docs, **kw) -> torch.Tensor:
        """The score of each (query, document) pair, encoding both sides of every pair: [n]."""
        return (self.encode(queries, kind="query", **kw) * self.encode(docs, kind="doc", **kw)).sum(-1)

    def save(self, folder, extra: dict | None = None):
        from ..models.core import quiet_hf
        folder = Path(folder)
        quiet_hf()
        self.encoder.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        info = {"model": "bi-encoder", "pooling": self.pooling, "score": self.score_fn, "query_len": self.query_len,
                "doc_len": self.doc_len, **(extra or {})}
        (folder / "kdlab.json").write_text(json.dumps(info, indent=2))
        from . import st_format   # the same folder loads in sentence-transformers
        st_format.write(folder, pooling=self.pooling, score=self.score_fn, hidden=self.config.hidden_size,
                        max_len=self.doc_len)
        return folder

    @staticmethod
    def load(folder) -> "BiEncoder":
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging
        from ..models.core import load_tokenizer
        info = json.loads((Path(folder) / "kdlab.json").read_text())
        hf_logging.disable_progress_bar()
        enc = AutoModel.from_pretrained(str(folder), use_safetensors=True)
        return BiEncoder(enc, load_tokenizer(str(folder)), pooling=info["pooling"], score=info["score"],
                         query_len=info["query_len"], doc_len=info["doc_len"])


class CrossEncoder(nn.Module):
    """A cross-encoder (a sequence classifier with one output) as the loop's model of groups: ``group_batch``
    tokenises each (query, document) pair of a group together (``p_*`` [B, 1 + K, L]); ``kd_features`` gives their
    scores [B, 1 + K] as ``logits``. The teacher's fine-tuning runs through the one loop with it."""

    def __init__(self, model, tokenizer, max_len: int = 128):
        super().__init__()
        self.model, self.tokenizer, self.max_len = model, tokenizer, clamp_len(model, max_len)

    @property
    def config(self):
        return self.model.config

    def group_batch(self, data, groups) -> dict:
        k1 = len(groups[0][1])
        enc = text_ids(self.tokenizer, self.max_len)([data.queries[q] for q, ids in groups for _ in ids],
                                                     [data.docs[i] for _, ids in groups for i in ids])
        batch = {"p_" + k: v.view(len(groups), k1, -1) for k, v in enc.items()}
        batch["attention_mask"] = batch["p_attention_mask"][:, 0]
        return batch

    def kd_features(self, batch: dict, need=None):
        from ..records import Features
        shape = batch["p_input_ids"].shape
        enc = {k[2:]: v.reshape(shape[0] * shape[1], -1) for k, v in batch.items() if k.startswith("p_")}
        s = self.model(**model_inputs(enc)).logits[:, 0].view(shape[0], shape[1])
        return Features(logits=s, mask=batch["attention_mask"])

    def save_pretrained(self, folder, safe_serialization: bool = True):
        from ..models.core import quiet_hf
        quiet_hf()
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        Path(folder, "kdlab.json").write_text(json.dumps({"model": "cross-encoder"}, indent=2))
        return Path(folder)


def model_kind(folder) -> str | None:
    """'bi-encoder', 'cross-encoder' or None for a kdlab model folder."""
    p = Path(folder) / "kdlab.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text()).get("model")
    except (OSError, ValueError):
        return None


def base_encoder(model):
    """The transformers base model inside a sequence classifier (a BertModel inside BertForSequenceClassification)."""
    base = getattr(model, "base_model", model)
    if not hasattr(base, "embeddings"):
        raise KdlabError(f"{type(model).__name__} has no base encoder to embed texts with: use a BERT-like model")
    return base


def sentence_encoder(name_or_path: str):
    """A pretrained encoder (e.g. the packaged sentence-embedding model ``minilm-l6``) and its tokenizer."""
    from transformers import AutoModel
    from ..models.core import TINY, load_tokenizer, resolve, tiny_model
    if str(name_or_path) == TINY:
        model, tok = tiny_model(1)
        return base_encoder(model), tok
    path = resolve(name_or_path)
    try:
        return AutoModel.from_pretrained(str(path), use_safetensors=True), load_tokenizer(name_or_path)
    except (OSError, ValueError) as e:
        raise KdlabError(f"could not load the encoder '{name_or_path}': {str(e).splitlines()[0]}") from None


def keep_layers(enc, layers: int):
    """``enc`` (a BERT-shaped base encoder) cut to ``layers`` of its layers, chosen by the skip mapping (e.g. 3 of 6:
    layers 2, 4 and 6), in place; the same model when it has no more than that."""
    from ..models.core import student_layer_indices
    stack = getattr(getattr(enc, "encoder", None), "layer", None)
    if stack is None:
        raise KdlabError(f"{type(enc).__name__} has no .encoder.layer to keep layers of: keep_layers works on "
                         "BERT-shaped encoders (BERT, MiniLM, RoBERTa, ELECTRA)")
    n = len(stack)
    if layers >= n:
        if layers > n:
            raise KdlabError(f"keep_layers={layers}, but the encoder the student starts from has {n} layers: "
                             f"choose at most {n}")
        return enc
    idx = student_layer_indices(n, layers=layers, init="skip")
    enc.encoder.layer = torch.nn.ModuleList([stack[i] for i in idx])
    enc.config.num_hidden_layers = len(idx)
    return enc


def clamp_len(model, n: int) -> int:
    """A length limit no longer than the model's position embeddings."""
    return int(min(n, getattr(model.config, "max_position_embeddings", n) or n))


@torch.inference_mode()
def query_latency(*, bi: BiEncoder | None = None, doc_emb=None, cross=None, tok=None, queries, cand_docs=None,
                  cross_len: int = 128, rounds: int = 3) -> float:
    """Median milliseconds per query at batch 1: a bi-encoder encodes the query and takes its dot product with
    the stored corpus matrix (plus top-100); a cross-encoder scores the query with each of its candidates
    (``cand_docs``: one list of document texts per query, scored as one batch)."""
    times = []
    for _ in range(rounds):
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            if bi is not None:
                s = BiEncoder.scores(bi.encode([q], kind="query"), doc_emb)
                torch.topk(s[0], min(100, s.shape[1]))
            else:
                docs = cand_docs[i]
                cross_scores(cross, tok, [q] * len(docs), docs, max_len=cross_len, batch_size=len(docs))
            times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))
