"""A fused teacher: BM25 plus a pretrained bi-encoder's score, each normalised per query, mixed with one weight.

``score(q, d) = w * norm(bm25(q, .))[d] + (1 - w) * norm(dense(q, .))[d]``, ``norm`` min-max or z-score over the
query's scores of the whole corpus. The weight and the normalisation are chosen on a dev split carved from the
TRAINING queries (``data.carve_dev``), by nDCG@10 against the train qrels; the test qrels are never read for the
choice. Cheap on a CPU: the corpus is encoded once (cached), BM25 and one matrix product score every document.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data import RankingData
from .metrics import ranking_metrics, run_from_scores

NORMS = ("minmax", "zscore")
WEIGHTS = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.05))


def normalise(scores: np.ndarray, how: str) -> np.ndarray:
    """Each row (one query's scores of every document) to [0, 1] (minmax) or mean 0, sd 1 (zscore)."""
    s = np.asarray(scores, dtype=np.float64)
    if how == "minmax":
        lo, hi = s.min(1, keepdims=True), s.max(1, keepdims=True)
        return (s - lo) / np.where(hi > lo, hi - lo, 1.0)
    if how == "zscore":
        sd = s.std(1, keepdims=True)
        return (s - s.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    raise ValueError(f"normalisation must be one of {NORMS}")


def fuse(bm25: np.ndarray, dense: np.ndarray, weight: float, how: str) -> np.ndarray:
    return weight * normalise(bm25, how) + (1.0 - weight) * normalise(dense, how)


class BM25Scorer:
    """BM25 (bm25s, the same tokenisation as ``bm25.candidates``) of a query against every document."""

    def __init__(self, docs):
        import bm25s
        self.bm25s = bm25s
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(list(docs), stopwords="en", show_progress=False, return_ids=False),
                             show_progress=False)

    def scores(self, queries) -> np.ndarray:
        toks = self.bm25s.tokenize(list(queries), stopwords="en", show_progress=False, return_ids=False)
        return np.stack([self.retriever.get_scores(t) for t in toks]).astype(np.float64)


def choose(bm25: np.ndarray, dense: np.ndarray, qids, doc_ids, qrels: dict) -> tuple[float, str, list]:
    """(weight, normalisation, [(norm, weight, nDCG@10)...]): the best mix on these (dev) queries; ties go to the
    first in grid order."""
    table, best = [], (-1.0, 0.0, NORMS[0])
    for how in NORMS:
        for w in WEIGHTS:
            run = run_from_scores(qids, doc_ids, fuse(bm25, dense, w, how), k=10)
            v = ranking_metrics({q: qrels[q] for q in qids}, run)["ndcg@10"]
            table.append((how, w, v))
            if v > best[0] + 1e-12:
                best = (v, w, how)
    return best[1], best[2], table


@dataclass
class FusedTeacher:
    """Scores (query, document) pairs with the chosen mix; full-corpus rows kept per query."""
    data: RankingData
    bm25: BM25Scorer
    bi: object                  # the bi-encoder (a ``BiEncoder``)
    doc_emb: object             # its corpus matrix [n_docs, H]
    weight: float
    norm: str
    rows: dict = field(default_factory=dict)

    def full(self, qids) -> np.ndarray:
        """[n_queries, n_docs] fused scores."""
        from .reference import dense_scores
        new = [q for q in dict.fromkeys(qids) if q not in self.rows]
        if new:
            b = self.bm25.scores([self.data.queries[q] for q in new])
            d = dense_scores(self.bi, self.doc_emb, self.data, new)
            self.rows.update(zip(new, fuse(b, d, self.weight, self.norm)))
        return np.stack([self.rows[q] for q in qids])

    def pair_scores(self, groups) -> np.ndarray:
        """[n_groups, k] scores of ``groups`` [(qid, [doc indices])]."""
        full = self.full([q for q, _ in groups])
        return np.stack([full[i, ids] for i, (_, ids) in enumerate(groups)])

    def latency_ms(self, qids) -> float:
        """Median CPU ms per query at batch 1: BM25 over the corpus, encoding the query, one matrix product."""
        import time
        times = []
        for q in qids:
            self.rows.pop(q, None)
            t0 = time.perf_counter()
            self.full([q])
            times.append((time.perf_counter() - t0) * 1000)
        return float(np.median(times))

    def evaluate(self, qids, split: str = "test") -> dict:
        run = run_from_scores(qids, self.data.doc_ids, self.full(qids), k=100)
        return ranking_metrics({q: self.data.qrels[split][q] for q in qids}, run)


def build(data: RankingData, dev_qids, *, cache=None, log=None, bi=None, doc_emb=None, dense: str = "minilm-l6"):
    """The fused teacher of ``data``: BM25 + the pretrained bi-encoder, the weight chosen on ``dev_qids`` (train
    queries, judged by the train qrels). Returns (teacher, choice table)."""
    from .embcache import corpus_embeddings
    from .reference import dense_scores, pretrained_encoder
    if bi is None or doc_emb is None:
        bi, key = pretrained_encoder(dense)
        doc_emb = corpus_embeddings(bi, data.docs, key=key, identity=data.identity, cache=cache, log=log)
    scorer = BM25Scorer(data.docs)
    dev_qids = list(dev_qids)
    b = scorer.scores([data.queries[q] for q in dev_qids])
    d = dense_scores(bi, doc_emb, data, dev_qids)
    w, how, table = choose(b, d, dev_qids, data.doc_ids, data.qrels["train"])
    if log:
        best = max(v for h, x, v in table if h == how and x == w)
        log(f"fused teacher: weight {w:.2f} on BM25 ({how}), dev nDCG@10 {best:.3f} on {len(dev_qids)} train "
            f"queries (BM25 alone {[v for h, x, v in table if h == how and x == 1.0][0]:.3f}, dense alone "
            f"{[v for h, x, v in table if h == how and x == 0.0][0]:.3f})")
    return FusedTeacher(data, scorer, bi, doc_emb, w, how), table
