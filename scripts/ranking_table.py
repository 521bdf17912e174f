"""The SciFact-style ranking table of one or more ranking studies, in Markdown: the reference rows (BM25 and the
pretrained bi-encoder measured, the fused teacher, BEIR's published rows), then one row per study cell group with
the test nDCG@10, MRR@10 and Recall@100 (mean ± std over seeds), parameters, MB, CPU ms per query (median over
seeds), and the KD rows' delta against their study's no-KD row with the 95% interval and the verdict (the paired
bootstrap over seeds and queries of ``kdlab study``).

    python scripts/ranking_table.py RUNS STUDY [STUDY ...] [--data BEIR_FOLDER]

Each study is read from the run store RUNS (``kdlab study --runs RUNS``); nothing is trained.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from kdlab.engine.study import aggregate
from kdlab.errors import KdlabError
from kdlab.runs.store import Store


def _mean_std(values) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def study_rows(store: Store, name: str, split: str = "test") -> list[dict]:
    """One dict per cell group of study ``name``: metrics over its finished seeds, size, and the verdict row."""
    st = store.study(name)
    if st is None:
        raise KdlabError(f"no study '{name}' in {store.root}: `python -m kdlab study --list --runs {store.root}`")
    verdicts = {r["group"]: r for r in aggregate(store, name) if r["domain"] == split}
    groups: dict = {}
    for cell in st["spec"].get("cells", []):
        rid = st["cells"].get(cell["key"])
        if not rid or store.run(rid)["status"] != "finished":
            continue
        g = groups.setdefault(cell["group"], {"runs": [], "method": cell["method"]})
        g["runs"].append(rid)
    out = []
    for group, g in groups.items():
        evs = [store.final_evals(r).get(split) or {} for r in g["runs"]]
        sizes = [store.artifact(r, "size", {}) or {} for r in g["runs"]]
        hp = store.run(g["runs"][0])["config"].get("ranking") or {}
        v = verdicts.get(group, {})
        out.append({"study": name, "group": group, "method": g["method"], "seeds": len(g["runs"]),
                    "layers": int(sizes[0].get("layers", 0)) if sizes else None, "hp": hp,
                    **{k: _mean_std([e[k] for e in evs if k in e]) for k in ("ndcg@10", "mrr@10", "recall@100")},
                    "params": statistics.median(s["params"] for s in sizes) / 1e6 if sizes else None,
                    "mb": statistics.median(s.get("mb", 0) for s in sizes) if sizes else None,
                    "ms": statistics.median(s["latency_ms"] for s in sizes) if sizes else None,
                    "delta": v.get("delta"), "lo": v.get("ci_low"), "hi": v.get("ci_high"),
                    "verdict": v.get("verdict", "")})
    return out


def reference_rows(data_folder, store: Store) -> list[str]:
    from kdlab.ranking import baselines
    from kdlab.ranking import bm25 as bm25_mod
    from kdlab.ranking.data import load_beir
    from kdlab.ranking.reference import published_rows
    data = load_beir(data_folder)
    lines = []
    for r in [*baselines.rows_for(data, bm25_mod.cache_dir(store.root)), *published_rows(data.name)]:
        p = f"{r['params'] / 1e6:.1f}M" if r.get("params") else ""
        ms = f"{r['latency_ms']:.1f}" if r.get("latency_ms") else ""
        f = (lambda k: f"{r[k]:.3f}" if isinstance(r.get(k), (int, float)) else "")
        lines.append(f"| {r['label']} | | {f('ndcg@10')} | {f('mrr@10')} | {f('recall@100')} | {p} | | {ms} | | |")
    return lines


def markdown(rows: list[dict], refs: list[str]) -> str:
    head = ["| model | layers | nDCG@10 | MRR@10 | R@100 | params | MB | ms/query | Δ nDCG@10 vs no KD [95% CI] "
            "| verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    body = []
    for r in rows:
        label = f"{r['group']} ({r['seeds']} seeds; {r['study']})"
        delta = "" if r["delta"] is None else f"{r['delta'] * 100:+.1f} [{r['lo'] * 100:+.1f}, {r['hi'] * 100:+.1f}]"
        body.append(f"| {label} | {r['layers']} | {r['ndcg@10']} | {r['mrr@10']} | {r['recall@100']} | "
                    f"{r['params']:.1f}M | {r['mb']:.1f} | {r['ms']:.1f} | {delta} | {r['verdict']} |")
    return "\n".join(head + refs + body)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="the run store (kdlab --runs)")
    ap.add_argument("studies", nargs="+", help="ranking study names")
    ap.add_argument("--data", help="the BEIR folder: adds the measured and published reference rows")
    ap.add_argument("--split", default="test", help="the evaluation split of the table (default test)")
    a = ap.parse_args(argv)
    try:
        store = Store(a.runs)
        rows = [r for name in a.studies for r in study_rows(store, name, a.split)]
        refs = reference_rows(a.data, store) if a.data else []
    except KdlabError as e:
        print(f"ranking_table: error: {e}", file=sys.stderr)
        return 2
    print(markdown(rows, refs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
