"""The measured reference rows of a BEIR folder (BM25, the pretrained bi-encoder, the fused teacher), computed
once and kept as ``baselines-<identity>.json`` in the ranking cache, for the demo, ``kdlab eval``, the Ranking
page and notebook 08.

``python -m kdlab.ranking.baselines BEIR_FOLDER [CACHE]`` measures and prints them (minutes the first time: the
corpus is encoded once, then cached).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from . import bm25 as bm25_mod
from . import fused
from .data import DEV_FRAC, DEV_SEED, RankingData, carve_dev, load_beir  # noqa: F401  (DEV_*: re-exported)
from .reference import bm25_row, pretrained_row, reference_lines


def path(cache, data: RankingData) -> Path:
    return Path(cache) / f"baselines-{data.identity}.json"


def load(cache, data: RankingData) -> dict | None:
    p = path(cache, data)
    return json.loads(p.read_text()) if p.exists() else None


def measure(data: RankingData, cache, *, log=print, split: str = "test") -> dict:
    """{"rows": [BM25, pretrained, fused teacher], "fused": {weight, norm, dev...}, "name", "n"}; saved."""
    t0 = time.time()
    qids = data.split_queries(split)
    cands = bm25_mod.candidates(data, bm25_mod.DEFAULT_K, cache=cache, log=log)
    rows = [bm25_row(data, cands, qids, split)]
    row, bi, doc_emb = pretrained_row(data, qids, cache=cache, log=log, split=split)
    rows.append(row)
    _, dev = carve_dev(data.split_queries("train"), DEV_FRAC, DEV_SEED)
    t1 = time.time()
    teacher, table = fused.build(data, dev, bi=bi, doc_emb=doc_emb, log=log)
    ev = teacher.evaluate(qids, split)
    rows.append({"label": f"fused teacher (BM25 w={teacher.weight:.2f}, {teacher.norm})", **ev,
                 "params": row["params"], "latency_ms": teacher.latency_ms(qids[:16])})
    out = {"name": data.name, "split": split, "n": len(qids), "rows": rows,
           "fused": {"weight": teacher.weight, "norm": teacher.norm, "dev_queries": len(dev), "dev_frac": DEV_FRAC,
                     "dev_seed": DEV_SEED, "choice": table, "seconds": round(time.time() - t1, 1)},
           "seconds": round(time.time() - t0, 1)}
    p = path(cache, data)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f"{p.stem}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, p)
    return out


def rows_for(data: RankingData, cache, *, measure_missing: bool = False, log=print) -> list[dict]:
    """The measured reference rows of ``data`` (BM25, pretrained bi-encoder, fused teacher): read from the cache,
    measured now when ``measure_missing`` (else [] when not measured yet)."""
    res = load(cache, data)
    if res is None and measure_missing:
        res = measure(data, cache, log=log)
    return res["rows"] if res else []


def run_table(store, runs) -> list[dict]:
    """Rows for a page or notebook: the reference rows of the runs' BEIR folder (measured when the store's ranking
    cache has them, and the published ones) then each run's test row, as {model, layers, nDCG@10, MRR@10, R@100,
    params (M), MB, ms/query, source}."""
    from .reference import published_rows
    runs = list(runs)
    refs = []
    if runs:
        folder = (runs[0].get("config") or {}).get("data")
        try:
            data = load_beir(folder)
            refs = [*rows_for(data, bm25_mod.cache_dir(store.root)), *published_rows(data.name)]
        except Exception:   # the folder moved or is not readable: the runs' own rows only
            refs = []
    own = []
    for r in runs:
        ev = store.final_evals(r["id"]).get("test") or {}
        size = store.artifact(r["id"], "size", {}) or {}
        own.append({"label": r.get("name") or f"{r['method']} {r['id']}", **ev, "params": size.get("params"),
                    "latency_ms": size.get("latency_ms"), "layers": size.get("layers"), "mb": size.get("mb"),
                    "source": "run " + r["id"]})

    def fmt(row, default_source):
        def num(k, nd=3):
            v = row.get(k)
            return round(float(v), nd) if isinstance(v, (int, float)) else None
        return {"model": row["label"], "layers": num("layers", 0) and int(row["layers"]), "nDCG@10": num("ndcg@10"),
                "MRR@10": num("mrr@10"), "R@100": num("recall@100"),
                "params (M)": num("params") and round(row["params"] / 1e6, 1), "MB": num("mb", 1),
                "ms/query": num("latency_ms", 1), "source": row.get("source", default_source)}
    return [fmt(r, "measured here") for r in refs] + [fmt(r, "") for r in own]


def table_lines(res: dict, width: int = 36) -> list[str]:
    head = f"{'model':{width}s} {'nDCG@10':>8s} {'MRR@10':>7s} {'R@100':>6s} {'params':>8s} {'ms/query':>9s}"
    return [head, "-" * len(head), *reference_lines(res["rows"], res["name"], width)]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    data = load_beir(argv[0])
    cache = Path(argv[1]) if len(argv) > 1 else bm25_mod.cache_dir()
    res = measure(data, cache)
    print("\n".join(table_lines(res)))
    print(f"({res['n']} {res['split']} queries; fused weight chosen on {res['fused']['dev_queries']} train queries; "
          f"{res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
