"""The internal-representation check of a study: attention KL and [CLS] cosine distance between each student and its
teacher at the matched layers (uniform mapping), mean over seeds, for the studies' methods, beside the student as it
was before training (its initialisation). Used for docs/RESULTS.md.

    python scripts/internal_check.py --runs DIR --study NAME [--study NAME ...] [--methods kd,internal-all] [--n 256]

Prints one table per study and writes them as JSON with --out FILE.
"""
import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdlab.analysis.internal_check import matched_gaps  # noqa: E402
from kdlab.models.core import build_student, load_saved  # noqa: E402
from kdlab.engine.pipeline import load_bundle  # noqa: E402
from kdlab.runs.run_record import StoredRun  # noqa: E402
from kdlab.runs.store import Store  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--runs", required=True)
p.add_argument("--study", action="append", required=True)
p.add_argument("--methods", default="kd,internal-all")
p.add_argument("--n", type=int, default=256, help="dev texts measured (default 256)")
p.add_argument("--out")
a = p.parse_args()
store = Store(a.runs)
methods = a.methods.split(",")
report = {}
for name in a.study:
    st = store.study(name)
    if st is None:
        sys.exit(f"no study {name!r} in {a.runs}")
    runs = [StoredRun.load(store, rid) for rid in st["cells"].values() if rid]
    runs = [r for r in runs if r.row["status"] == "finished" and r.row["method"] in methods]
    if not runs:
        sys.exit(f"study {name!r} has no finished cells of {methods}")
    cfg = runs[0].config()
    dev = load_bundle(cfg).dev
    teacher, tok = load_saved(runs[0].teacher_dir(), attentions=True)
    rows = {}
    seeds = sorted({r.seed for r in runs})
    for seed in seeds:   # the student before training: its initialisation for that seed
        init = build_student(teacher, layers=cfg.student_layers, init=cfg.student_init,
                             layer_list=cfg.student_layer_list, seed=seed)
        rows.setdefault("before training", []).append(matched_gaps(teacher, init, tok, dev, max_examples=a.n,
                                                                    max_len=cfg.train.max_len))
    for r in runs:
        student, _ = load_saved(r.model_dir(), attentions=True)
        rows.setdefault(r.row["method"], []).append(matched_gaps(teacher, student, tok, dev, max_examples=a.n,
                                                             max_len=cfg.train.max_len))
    table = {}
    for label, gaps in rows.items():
        table[label] = {pair: {k: statistics.mean(g[pair][k] for g in gaps) for k in ("attention_kl", "cls_cosine")}
                        for pair in gaps[0]}
        table[label]["n"] = len(gaps)
    report[name] = table
    pairs = [k for k in table["before training"] if k not in ("mean", "n")]
    print(f"\n{name}: student init {cfg.student_init}, {cfg.student_layers} layers, epochs {cfg.train.epochs}, "
          f"{a.n} dev texts; mean over seeds {seeds}")
    head = "  ".join(f"{p:>13}" for p in pairs + ["mean"])
    for key, what in (("attention_kl", "attention KL"), ("cls_cosine", "[CLS] cosine distance")):
        print(f"  {what:<24} n  {head}")
        for label in ["before training"] + [m for m in methods if m in table]:
            vals = "  ".join(f"{table[label][p][key]:>13.3f}" for p in pairs + ["mean"])
            print(f"  {label:<24}{table[label]['n']:>2}  {vals}")
    base = [m for m in methods if m in table and not m.startswith("internal")]
    for m in [m for m in methods if m in table and m.startswith("internal")]:
        for b in base:
            ratio = {k: table[b]["mean"][k] / max(table[m]["mean"][k], 1e-12) for k in ("attention_kl", "cls_cosine")}
            print(f"  {b} / {m}: attention KL {ratio['attention_kl']:.1f}x, [CLS] cosine {ratio['cls_cosine']:.1f}x")
if a.out:
    Path(a.out).write_text(json.dumps(report, indent=2))
