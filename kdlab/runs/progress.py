"""Where a stored run is: its phase, step of total, and an ETA, read from the run store alone.

The training loop records its plan (``total_steps``, ``steps_per_epoch`` and the wall-clock start) as the run's
``plan`` artifact when it starts; the logged metrics give the step reached. The dashboard's sidebar (every page)
and its Train page show this line for every run in progress; a process can read it for another's run, since it
needs nothing but the store.
"""
from __future__ import annotations

import time

PHASES = {"teacher": "teacher fine-tuning", "student": "student training"}


def run_progress(store, run: dict, now: float | None = None) -> dict:
    """{"phase", "step", "total", "fraction", "eta_s" (None when unknown), "status"} of a stored run."""
    now = time.time() if now is None else now
    plan = store.artifact(run["id"], "plan", {}) or {}
    rows = store.metrics(run["id"])
    step = max((r["step"] for r in rows), default=0)
    from .run_record import StoredRun
    total = int(plan.get("total_steps") or StoredRun(run).train.get("max_steps") or 0) or None
    phase = PHASES.get(run["kind"], run["kind"])
    if run["status"] == "running" and total and step >= total:
        phase = "evaluation"
    eta = None
    start, first = plan.get("started"), plan.get("start_step", 0)
    if run["status"] == "running" and total and start and step > first and now > start:
        eta = max(0.0, (total - step) * (now - start) / (step - first))
    return {"phase": phase, "step": step, "total": total, "fraction": min(1.0, step / total) if total else 0.0,
            "eta_s": eta, "status": run["status"]}


def eta_text(seconds) -> str:
    if seconds is None:
        return "ETA unknown"
    if seconds < 60:
        return f"ETA {seconds:.0f} s"
    return f"ETA {seconds / 60:.0f} min" if seconds < 5400 else f"ETA {seconds / 3600:.1f} h"


def progress_line(store, run: dict, now: float | None = None) -> str:
    """'kd: student training, step 40 / 120, ETA 2 min' (one line for a sidebar or a log)."""
    p = run_progress(store, run, now)
    of = f" / {p['total']}" if p["total"] else ""
    eta = f", {eta_text(p['eta_s'])}" if p["status"] == "running" and p["phase"] != "evaluation" else ""
    return f"{run['method']}: {p['phase']}, step {p['step']}{of}{eta}"
