"""A small study: a narrower student (hidden 192 of the teacher's 384) initialised at random, by PCA projection of
the teacher's layers, or by selecting its strongest channels/heads/neurons (kdlab.models.narrow); the full-width
3-layer copy as a reference. Same teacher, data, method (kd) and budget for every cell; seeds 0 and 1.

    python scripts/narrow_study.py --runs /tmp/narrow-study            # SST-2 -> IMDB / Yelp from ../shared/data

Prints one line per cell and a table of accuracy per domain (mean over seeds, and each seed's value).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kdlab.config import build_config
from kdlab.engine.pipeline import distill_run, load_bundle, prepare_teacher
from kdlab.runs.store import Store

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CELLS = [("random", dict(student_hidden=192, student_narrow_init="random")),
         ("pca", dict(student_hidden=192, student_narrow_init="pca")),
         ("select", dict(student_hidden=192, student_narrow_init="select")),
         ("full width (384)", dict())]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", required=True)
    ap.add_argument("--data", default=str(SHARED / "sst2"))
    ap.add_argument("--ood", nargs="*", default=[str(SHARED / "ood" / "imdb.tsv"), str(SHARED / "ood" / "yelp.tsv")])
    ap.add_argument("--max-train", type=int, default=5000)
    ap.add_argument("--max-eval", type=int, default=500)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a = ap.parse_args()
    store = Store(a.runs)
    common = dict(data=a.data, ood=a.ood, max_train=a.max_train, max_eval=a.max_eval, max_len=a.max_len,
                  teacher_epochs=1, epochs=a.epochs, method="kd", no_progress=True)
    cfg0 = build_config(**common)
    bundle = load_bundle(cfg0)
    teacher, tok, trun = prepare_teacher(cfg0, store, bundle, log=print)
    results = {}
    for label, kw in CELLS:
        for seed in a.seeds:
            t0 = time.time()
            cfg = build_config(**common, **kw, seed=seed, name=f"narrow {label} seed {seed}")
            run = distill_run(cfg, store, teacher=teacher, tokenizer=tok, bundle=bundle, teacher_run=trun,
                              log=lambda *x: None)
            ev = store.final_evals(run)
            results[(label, seed)] = {s: ev.get(s, {}).get("accuracy", float("nan")) for s in bundle.eval_splits()}
            size = store.artifact(run, "size", {})
            print(f"{label:18s} seed {seed}: {results[(label, seed)]}  params {size.get('params', 0) / 1e6:.1f}M  "
                  f"{time.time() - t0:.0f} s", flush=True)
    splits = list(bundle.eval_splits())
    print(f"\n{'student init':18s} " + " ".join(f"{s:>26s}" for s in splits))
    for label, _ in CELLS:
        cells = []
        for s in splits:
            v = [results[(label, seed)][s] for seed in a.seeds]
            cells.append(f"{np.mean(v):.3f} ({' / '.join(f'{x:.3f}' for x in v)})")
        print(f"{label:18s} " + " ".join(f"{c:>26s}" for c in cells))
    print(f"(accuracy, mean over seeds {a.seeds} and each seed's value; teacher run {trun})")


if __name__ == "__main__":
    main()
