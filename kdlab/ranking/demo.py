"""``python -m kdlab demo --task ranking --data BEIR_FOLDER``: BM25, the cross-encoder teacher (reranking BM25's
top-100), a bi-encoder without KD (in-batch contrastive on the qrels) and with Margin-MSE and listwise KL; one
table of nDCG@10, MRR@10, Recall@100 and the query latency, with the reference rows (``kdlab.ranking.reference``:
BM25 and the pretrained bi-encoder measured on every test query, the fused teacher, published rows)."""
from __future__ import annotations

import dataclasses
import time

from ..config import RunConfig
from ..runs.store import Store
from . import baselines
from . import bm25 as bm25_mod
from .data import load_beir
from .reference import reference_lines

ROWS = (("student, no KD", "contrastive"), ("student, margin-mse", "margin-mse"), ("student, listwise-kl", "listwise-kl"))


def run_ranking_demo(cfg: RunConfig, store: Store, log=print) -> int:
    from ..engine.pipeline import distill_run   # the one entry of every run (it dispatches to the ranking adaptor)
    t0 = time.time()
    rows = []
    args = {"teacher_eval": "all", **cfg.method_args}   # the teacher's row on every test query
    for label, method in ROWS:
        run_id = distill_run(dataclasses.replace(cfg, method=method, name=f"demo {label}", method_args=args),
                             store, log=log)
        rows.append((label, run_id))
    teacher_run = store.run(rows[1][1])["parent"]
    data = load_beir(cfg.data)
    refs = baselines.rows_for(data, bm25_mod.cache_dir(store.root), measure_missing=True, log=log)
    kind = "fused BM25 + dense" if args.get("teacher_kind") == "fused" else "cross-encoder"
    print(table(store, [(f"teacher ({kind})", teacher_run), *rows], refs=refs, name=data.name))
    print(f"\ntotal time {time.time() - t0:.0f} s; runs stored in {store.root} (python -m kdlab runs)")
    return 0


def table(store: Store, rows, refs=None, name: str = "", width: int = 36) -> str:
    """One row per model (the reference rows ``refs`` and the published rows of dataset ``name`` first, else
    BM25 on the teacher's queries): test nDCG@10, MRR@10, Recall@100, parameters and CPU ms per query."""
    head = f"{'model':{width}s} {'nDCG@10':>8s} {'MRR@10':>7s} {'R@100':>6s} {'params':>8s} {'ms/query':>9s}"
    lines = [head, "-" * len(head)]
    bm25 = store.artifact(rows[0][1], "bm25") if rows and rows[0][1] else None
    if refs is not None:
        lines += reference_lines(refs, name, width)
    elif bm25:
        lines.append(f"{'BM25 (bm25s)':{width}s} {bm25['ndcg@10']:8.3f} {bm25['mrr@10']:7.3f} {bm25['recall@100']:6.3f} "
                     f"{'':>8s} {'':>9s}")
    for label, run_id in rows:
        ev = store.final_evals(run_id).get("test", {}) if run_id else {}
        size = (store.artifact(run_id, "size", {}) or {}) if run_id else {}
        f = (lambda k: float("nan") if ev.get(k) is None else ev[k])
        lines.append(f"{label:{width}s} {f('ndcg@10'):8.3f} {f('mrr@10'):7.3f} {f('recall@100'):6.3f} "
                     f"{size.get('params', 0) / 1e6:7.1f}M {size.get('latency_ms', float('nan')):9.1f}")
    hp = (store.run(rows[-1][1])["config"].get("ranking") or {}) if rows and rows[-1][1] else {}   # a student's
    n = (store.final_evals(rows[0][1]).get("test") or {}).get("n") if rows and rows[0][1] else None
    lines.append(f"(test split{f', {n:.0f} queries' if n else ''}; the teacher reranks BM25's top-"
                 f"{hp.get('rerank', 100)} per query, so its Recall@100 is BM25's Recall@{hp.get('rerank', 100)}; a "
                 "student searches the whole corpus by a dot product with the corpus encoded once; CPU ms per query "
                 "at batch 1)")
    return "\n".join(lines)
