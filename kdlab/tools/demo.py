"""``python -m kdlab demo``: teacher fine-tuning, a student without KD, a KD student, one table."""
from __future__ import annotations

import dataclasses
import time

from ..config import RunConfig
from ..pipeline import distill_run, load_bundle, prepare_teacher
from ..store import Store


def run_demo(cfg: RunConfig, store: Store, log=print) -> int:
    t0 = time.time()
    bundle = load_bundle(cfg)
    teacher, tok, teacher_run = prepare_teacher(cfg, store, bundle, log=log)
    rows = [("teacher", teacher_run)]
    for label, method in (("student, no KD", "ce"), (f"student, {cfg.method}", cfg.method)):
        c = dataclasses.replace(cfg, method=method, name=f"demo {label}",
                                method_args=cfg.method_args if method == cfg.method else {})
        run_id = distill_run(c, store, teacher=teacher, tokenizer=tok, bundle=bundle, teacher_run=teacher_run,
                             log=log)
        rows.append((label, run_id))
    print(table(store, rows, bundle))
    print(f"\ntotal time {time.time() - t0:.0f} s; runs stored in {store.root} (python -m kdlab runs)")
    return 0


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def table(store: Store, rows, bundle) -> str:
    splits = list(bundle.eval_splits())
    head = f"{'model':22s} {'params':>8s} {'ms/ex':>6s} " + " ".join(f"{s:>16s}" for s in splits)
    lines = [head, "-" * len(head)]
    metric = (getattr(getattr(bundle, "task", None), "metrics", None) or ("accuracy",))[0]   # the primary metric
    for label, run_id in rows:
        ev = store.final_evals(run_id)
        size = store.artifact(run_id, "size", {}) or {}
        cells = " ".join(f"{_num(ev.get(s, {}).get(metric)):16.3f}" for s in splits)
        lines.append(f"{label:22s} {size.get('params', 0) / 1e6:7.1f}M {size.get('latency_ms', 0):6.1f} {cells}")
    lines.append(f"({metric}; 'dev' is in domain, the others are out of domain)")
    return "\n".join(lines)
