"""BM25 candidates with ``bm25s`` (Lucene variant, English stopwords), computed once per dataset and cached.

The cross-encoder teacher reranks a query's BM25 top-k; training negatives are mined from the same lists (a
candidate that is a judged positive of the query is never a negative).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import RankingData

DEFAULT_K = 100


def cache_dir(store_root=None) -> Path:
    """``<store>/ranking-cache`` when a store is given, else ``$KDLAB_CACHE/ranking`` (~/.cache/kdlab)."""
    if store_root is not None:
        return Path(store_root) / "ranking-cache"
    return Path(os.environ.get("KDLAB_CACHE", Path.home() / ".cache" / "kdlab")) / "ranking"


def candidates(data: RankingData, k: int = DEFAULT_K, *, cache=None, log=None) -> dict:
    """{query id: (doc indices [k], bm25 scores [k])}, best first, for every query of the dataset. ``cache``:
    a folder; the lists are read from ``bm25-<identity>-k<k>.npz`` there when present, else computed and saved."""
    k = min(int(k), len(data.docs))
    qids = sorted(data.queries)
    path = Path(cache) / f"bm25-{data.identity}-k{k}.npz" if cache is not None else None
    if path is not None and path.exists():
        z = np.load(path, allow_pickle=False)
        if list(z["qids"]) == qids:
            return {q: (z["idx"][i], z["scores"][i]) for i, q in enumerate(qids)}
    import bm25s
    if log:
        log(f"bm25: indexing {len(data.docs)} documents, top-{k} for {len(qids)} queries (bm25s)")
    corpus_tokens = bm25s.tokenize(data.docs, stopwords="en", show_progress=False, return_ids=False)
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    query_tokens = bm25s.tokenize([data.queries[q] for q in qids], stopwords="en", show_progress=False,
                                  return_ids=False)
    idx, scores = retriever.retrieve(query_tokens, k=k, show_progress=False, n_threads=1)
    idx, scores = np.asarray(idx, dtype=np.int64), np.asarray(scores, dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, qids=np.array(qids), idx=idx, scores=scores)
        os.replace(tmp, path)
    return {q: (idx[i], scores[i]) for i, q in enumerate(qids)}
