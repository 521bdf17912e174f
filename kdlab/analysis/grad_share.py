"""Each loss term's share of the student's gradient.

Every ``TrainConfig.grad_share_every`` optimiser steps (and at the last step) the loop asks the method to name the weighted terms whose
sum is its loss (``Method.record_terms``: ``kd``, ``ce``, a layer term ...) and measures, for each term ``k``,
``||d term_k / d theta_S||_2`` over the student's trainable parameters (``torch.autograd.grad`` with the graph
kept, before the normal backward pass). The norms go to the run store (``Store.log_grad_norms``); a term's share
at a step is its norm over the sum of the norms. ``kdlab doctor`` flags a term whose mean share is under 5 % or
over 95 %: it either does nothing or drowns the others.

A method that names no terms, or whose named terms do not add up to its loss (a subclass that adds a term of its
own), is not measured: the shares would be wrong.
"""
from __future__ import annotations

import torch

LOW, HIGH = 0.05, 0.95


def wants(every: int, step: int, last: int, total: int = 0) -> bool:
    """Measure at this optimiser step: every ``every`` steps from the first, and at the last step (``total - 1``)
    so that a short run has its end too; once per step, also with gradient accumulation."""
    return bool(every) and (step % every == 0 or step == total - 1) and step != last


def term_norms(terms: dict, loss: torch.Tensor, params) -> dict | None:
    """{term: gradient norm on ``params``}, or None when fewer than two terms are named or they do not sum to
    ``loss`` (relative tolerance 1e-3)."""
    if len(terms) < 2:
        return None
    total = sum(t.detach().float() for t in terms.values())
    if not torch.allclose(total, loss.detach().float(), rtol=1e-3, atol=1e-6):
        return None
    params = [p for p in params if p.requires_grad]
    out = {}
    for name, t in terms.items():
        if not t.requires_grad:
            out[name] = 0.0
            continue
        grads = torch.autograd.grad(t, params, retain_graph=True, allow_unused=True)
        sq = sum(float(g.detach().float().pow(2).sum()) for g in grads if g is not None)
        out[name] = sq ** 0.5
    return out


def shares(rows: list[dict]) -> dict:
    """Per term, from ``Store.grad_norms`` rows: ``{"mean_share", "last_share", "mean_norm", "steps"}``; the share
    at a step is the term's norm over the sum of the norms at that step (steps whose norms are all 0 left out)."""
    by_step: dict = {}
    for r in rows:
        by_step.setdefault(r["step"], {})[r["term"]] = float(r["norm"])
    per: dict = {}
    for step in sorted(by_step):
        norms = by_step[step]
        tot = sum(norms.values())
        if not tot > 0:
            continue
        for k, v in norms.items():
            per.setdefault(k, {"shares": [], "norms": []})
            per[k]["shares"].append(v / tot)
            per[k]["norms"].append(v)
    return {k: {"mean_share": sum(d["shares"]) / len(d["shares"]), "last_share": d["shares"][-1],
                "mean_norm": sum(d["norms"]) / len(d["norms"]), "steps": len(d["shares"])} for k, d in per.items()}
