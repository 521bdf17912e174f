"""Runs side by side: the wall time of N kdlab runs started together against one run alone.

``python -m kdlab bench --concurrent 2 [--write]``. Each run is a separate ``python -m kdlab distill --preset tiny
--method kd --max-steps 3`` process with its own fresh run store and teacher folder (so each fine-tunes its own
tiny teacher, as a new user's first run does). After an uncounted warm-up run, measured: one run alone, then N together, with the default thread
choice (kdlab.threads: each process's share of the cores); with ``every_core=True`` also N together with every
process on every core (``KDLAB_THREADS=<cores>``: torch's own default, what kdlab did before it shared).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import KdlabError
from ..threads import cores

RUN = ["distill", "--preset", "tiny", "--method", "kd", "--max-steps", "3", "--no-progress", "--quiet"]
TAG = "bench-concurrent"


def _start(root: Path, i: int, env: dict) -> subprocess.Popen:
    d = root / f"run{i}"
    d.mkdir(parents=True)
    penv = dict(env, KDLAB_TEACHERS=str(d / "teachers"), KDLAB_CPU_DIR=str(root / "cpu"))
    return subprocess.Popen([sys.executable, "-m", "kdlab", *RUN, "--runs", str(d / "runs")], env=penv,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def timed(n: int, env: dict) -> float:
    """Seconds until all of ``n`` runs started together have finished."""
    with tempfile.TemporaryDirectory(prefix="kdlab-concurrent-") as tmp:
        t0 = time.perf_counter()
        procs = [_start(Path(tmp), i, env) for i in range(n)]
        errs = [p.communicate()[1] for p in procs]
        seconds = time.perf_counter() - t0
        for p, err in zip(procs, errs):
            if p.returncode != 0:
                raise KdlabError(f"a benchmark run failed (exit {p.returncode}): {err.strip()[-400:]}")
    return seconds


def run_concurrent(n: int = 2, every_core: bool = False, log=print) -> dict:
    if n < 2:
        raise KdlabError(f"--concurrent needs at least 2 runs to compare with one (got {n})")
    env = {k: v for k, v in os.environ.items() if k not in ("KDLAB_THREADS", "OMP_NUM_THREADS")}
    c = cores()
    log("bench: a warm-up run (one-time caches and the page cache; not counted)")
    timed(1, env)
    log(f"bench: one run alone ({' '.join(RUN)})")
    alone = timed(1, env)
    log(f"bench: {alone:.1f} s; {n} runs together, each its share of {c} core(s)")
    shared = timed(n, env)
    res = {"runs": n, "cores": c, "command": "python -m kdlab " + " ".join(RUN), "alone_s": alone,
           "together_s": shared, "ratio": shared / alone}
    if every_core:
        log(f"bench: {shared:.1f} s; {n} runs together, each on every core (KDLAB_THREADS={c})")
        res["every_core_s"] = timed(n, dict(env, KDLAB_THREADS=str(c)))
        res["every_core_ratio"] = res["every_core_s"] / alone
    return res


def write_markdown(res: dict, path: str | os.PathLike = "BENCHMARKS.md", command: str = "") -> Path:
    from .bench import replace_block
    n = res["runs"]
    lines = [f"<!-- {TAG}:start -->", f"Command: `{command or f'python -m kdlab bench --concurrent {n} --write'}`",
             "", f"Each run: `{res['command']}` (its own store and tiny teacher), {res['cores']} core(s), measured "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| what | wall s | x one run alone |", "|---|---:|---:|",
             f"| one run alone | {res['alone_s']:.1f} | 1.00 |",
             f"| {n} runs together, each its share of the cores (default) | {res['together_s']:.1f} | "
             f"{res['ratio']:.2f} |"]
    if "every_core_s" in res:
        lines.append(f"| {n} runs together, each on every core (torch's default; kdlab before kdlab.threads) | "
                     f"{res['every_core_s']:.1f} | {res['every_core_ratio']:.2f} |")
    lines += ["", f"Goal: {n} runs together take at most about {n}x one run's wall time (the cores are shared); "
              f"met: {'yes' if res['ratio'] <= n * 1.5 else 'no'} ({res['ratio']:.2f}x).", f"<!-- {TAG}:end -->"]
    return replace_block(path, TAG, "\n".join(lines))
