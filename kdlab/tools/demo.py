"""``python -m kdlab demo``: teacher fine-tuning, a student without KD, a KD student, one table."""
from __future__ import annotations

import dataclasses
import time

from ..config import RunConfig
from ..engine.pipeline import distill_run, load_bundle, prepare_teacher
from ..runs.store import Store


def run_demo(cfg: RunConfig, store: Store, log=print, also=()) -> int:
    """Fine-tune (or reuse) the teacher, then the student alone (``ce``), ``cfg.method`` and each of ``also``
    (default options), and print one table."""
    t0 = time.time()
    bundle = load_bundle(cfg)
    teacher, tok, teacher_run = prepare_teacher(cfg, store, bundle, log=log)
    rows = [("teacher", teacher_run)]
    methods = [("student, no KD", "ce"), (f"student, {cfg.method}", cfg.method)]
    methods += [(f"student, {m}", m) for m in also if m not in (cfg.method, "ce")]
    for label, method in methods:
        c = dataclasses.replace(cfg, method=method, name=f"demo {label}",
                                method_args=cfg.method_args if method == cfg.method else {})
        run_id = distill_run(c, store, teacher=teacher, tokenizer=tok, bundle=bundle, teacher_run=teacher_run,
                             log=log)
        rows.append((label, run_id))
    print(table(store, rows, bundle))
    from ..analysis.references import for_run
    refs = for_run(store, teacher_run)
    if refs:
        print("\n" + "\n".join(refs))
    print(f"\ntotal time {time.time() - t0:.0f} s; runs stored in {store.root} (python -m kdlab runs)")
    return 0


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def table(store: Store, rows, bundle) -> str:
    """One row per model: parameters, CPU ms/example and, per evaluation split, the task's primary metric (and
    macro-F1 beside accuracy for classes, since a majority class can score high accuracy)."""
    splits = list(bundle.eval_splits())
    task = getattr(bundle, "task", None)
    metrics = list(getattr(task, "metrics", None) or ("accuracy",))
    shown = metrics[:1] + (["macro_f1"] if metrics[0] == "accuracy" and "macro_f1" in metrics else [])
    cols = [(s, m) for s in splits for m in shown]
    name = (lambda s, m: s if len(shown) == 1 else f"{s} {'mF1' if m == 'macro_f1' else m[:3]}")
    width = max(10, *(len(name(s, m)) + 1 for s, m in cols))
    head = f"{'model':22s} {'MB':>6s} {'params':>8s} {'ms/ex':>6s} " + " ".join(f"{name(s, m):>{width}s}"
                                                                             for s, m in cols)
    lines = [head, "-" * len(head)]
    for label, run_id in rows:
        ev = store.final_evals(run_id)
        size = store.artifact(run_id, "size", {}) or {}
        cells = " ".join(f"{_num(ev.get(s, {}).get(m)):{width}.3f}" for s, m in cols)
        lines.append(f"{label:22s} {_num(size.get('mb')):6.1f} {size.get('params', 0) / 1e6:7.1f}M "
                     f"{size.get('latency_ms', 0):6.1f} {cells}")
    lines.append(f"({', '.join(shown)}; 'dev' is in domain, the others are out of domain; MB on disk, CPU ms per "
                 "example at batch 1)")
    return "\n".join(lines)
