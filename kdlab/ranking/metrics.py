"""Ranking metrics through ``ir-measures`` (trec_eval's implementation): nDCG@10, MRR@10 (RR@10), Recall@100.

A query of the qrels that the run does not rank counts as 0 (it is given an empty ranking's scores)."""
from __future__ import annotations

import numpy as np

NAMES = {"ndcg@10": "nDCG@10", "mrr@10": "RR@10", "recall@100": "R@100"}


def per_query_metrics(qrels: dict, run: dict) -> dict:
    """{metric: {qid: value}} for every query of ``qrels`` (0 for a query the run does not rank)."""
    import ir_measures
    measures = {k: ir_measures.parse_measure(v) for k, v in NAMES.items()}
    per_q = {k: dict.fromkeys(qrels, 0.0) for k in NAMES}
    judged = {q: {str(d): int(g) for d, g in row.items()} for q, row in qrels.items()}
    ranked = {q: {str(d): float(s) for d, s in run[q].items()} for q in judged if run.get(q)}
    if ranked:
        for m in ir_measures.iter_calc(list(measures.values()), judged, ranked):
            for k, v in measures.items():
                if m.measure == v:
                    per_q[k][m.query_id] = float(m.value)
    return per_q


def ranking_metrics(qrels: dict, run: dict) -> dict:
    """``qrels`` {qid: {did: grade}}, ``run`` {qid: {did: score}} (higher = better) -> {"ndcg@10", "mrr@10",
    "recall@100", "n"}, each the mean over the qrels' queries."""
    per_q = per_query_metrics(qrels, run)
    out = {k: float(np.mean(list(per_q[k].values()))) if qrels else float("nan") for k in NAMES}
    return {**out, "n": float(len(qrels))}


def run_from_scores(qids, doc_ids, scores, k: int = 100, candidates=None) -> dict:
    """{qid: {did: score}} of each query's top-``k`` documents. ``scores``: [n_queries, n_docs] over the whole
    corpus, or [n_queries, n_candidates] over ``candidates`` (doc indices per query)."""
    scores = np.asarray(scores, dtype=np.float64)
    run = {}
    for i, q in enumerate(qids):
        row = scores[i]
        top = np.argsort(-row, kind="stable")[:k]
        idx = top if candidates is None else np.asarray(candidates[i])[top]
        run[q] = {doc_ids[j]: float(row[t]) for j, t in zip(idx, top)}
    return run
