"""``kdlab demo --task lm``: the teacher, a student without KD (lm-ce: next-token training on the same text) and
students distilled with forward and reverse KL (and ``--also`` methods), each from the same copied layers with the
same budget; one table of perplexity in and out of domain, teacher-student token KL, top-1 agreement, size and
tokens per second."""
from __future__ import annotations

import dataclasses
import math
import time

from ..config import RunConfig
from ..errors import KdlabError
from ..runs.store import Store
from .train import METHODS, distill_lm

ROWS = (("student, no KD (lm-ce)", "lm-ce"), ("student, forward KL", "lm-fkl"), ("student, reverse KL", "lm-rkl"))


def run_lm_demo(cfg: RunConfig, store: Store, *, also=(), log=print) -> int:
    bad = [m for m in also if m not in METHODS]
    if bad:
        raise KdlabError(f"demo --task lm: --also takes LM methods ({', '.join(METHODS)}), not {', '.join(bad)}")
    t0 = time.time()
    rows = []
    for label, method in [*ROWS, *((f"student, {m}", m) for m in also)]:
        run_id = distill_lm(dataclasses.replace(cfg, method=method, name=f"demo {label}"), store, log=log)
        rows.append((label, run_id))
    print(table(store, rows))
    print(f"\ntotal time {time.time() - t0:.0f} s; runs stored in {store.root} (python -m kdlab runs)")
    return 0


def _f(v, spec: str, width: int) -> str:
    return f"{'-':>{width}s}" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:{width}{spec}}"


def table(store: Store, rows, width: int = 28) -> str:
    """One row per student (and the teacher's perplexities from the first): perplexity per domain, token KL and
    top-1 agreement in domain, parameters (M), MB and tokens per second."""
    evals = [(label, run_id, store.final_evals(run_id)) for label, run_id in rows]
    domains = list(evals[0][2]) if evals else []
    head = (f"{'model':{width}s} " + " ".join(f"{'ppl ' + d:>14s}" for d in domains)
            + f" {'token KL':>9s} {'top-1':>6s} {'params M':>8s} {'MB':>7s} {'tok/s':>8s}")
    lines = [head, "-" * len(head)]
    if evals:
        first = evals[0][2]
        size = store.artifact(rows[0][1], "size", {}) or {}
        lines.append(f"{'teacher':{width}s} " + " ".join(_f(first[d].get("teacher_perplexity"), ".2f", 14)
                                                         for d in domains)
                     + f" {'':>9s} {'':>6s} {_f(size.get('teacher_params', 0) / 1e6, '.2f', 8)} {'':>7s} "
                       f"{_f(first[domains[0]].get('teacher_tokens_per_s'), '.0f', 8)}")
    for label, run_id, ev in evals:
        size = store.artifact(run_id, "size", {}) or {}
        dev = ev.get(domains[0], {}) if domains else {}
        lines.append(f"{label:{width}s} " + " ".join(_f(ev.get(d, {}).get("perplexity"), ".2f", 14) for d in domains)
                     + f" {_f(dev.get('token_kl'), '.4f', 9)} {_f(dev.get('top1_agreement'), '.3f', 6)} "
                       f"{_f(size.get('params', 0) / 1e6, '.2f', 8)} {_f(size.get('mb'), '.2f', 7)} "
                       f"{_f(size.get('tokens_per_s'), '.0f', 8)}")
    lines.append("(perplexity of the completion tokens; token KL = forward KL(teacher || student) per token in nats "
                 "and top-1 agreement, on the in-domain dev split; tokens per second of a forward pass on this CPU)")
    return "\n".join(lines)
