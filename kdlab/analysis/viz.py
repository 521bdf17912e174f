"""Plotly figure builders shared by the dashboard (app/) and the notebooks.

Each builder is a pure function of plain data (lists, numpy arrays, tensors, store rows) that returns a
``plotly.graph_objects.Figure``; no builder reads files, the store or models. The small numeric helpers
(``soften``, ``entropy``, ``smooth``, ``cosine_matrix``, ``per_layer_series``) are public so that the
numbers shown next to a figure are the numbers drawn in it.

Layer conventions follow docs/ARCHITECTURE.md: ``W`` is ``[M, N]`` (row = student layer s, column =
teacher layer j, both 1-based in labels); per-layer metric names look like ``"<term>/s<i>-t<j>"``.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .probs import entropy, softened  # noqa: F401  (entropy: re-exported for the pages and notebooks)

__all__ = [
    "as_array", "soften", "entropy", "smooth", "cosine_matrix", "per_layer_series", "drop_table",
    "mapping_heatmap", "cka_heatmap", "softened_distributions", "entropy_curve", "per_layer_multiples",
    "run_curves", "domain_accuracy_bars", "reliability_diagram", "attention_heatmaps",
    "hidden_similarity", "prediction_scatter", "size_metric_scatter", "metric_title", "PAIR_RE", "study_forest",
    "seed_deltas", "frontier_models", "deploy_frontier",
]

PAIR_RE = re.compile(r"^(?P<term>.+)/s(?P<s>\d+)-t(?P<t>\d+)$")
TEACHER_COLOR = "#1f77b4"
STUDENT_COLOR = "#ff7f0e"


# ----------------------------------------------------------------------------------------------- helpers
def as_array(x, dtype=np.float64) -> np.ndarray:
    """numpy array from a list, numpy array or (detached, CPU) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=dtype)


soften = softened   # ``softmax(z / T)`` along the last axis (float64): kdlab.analysis.probs.softened


def smooth(values: Sequence[float], weight: float = 0.6) -> list[float]:
    """Debiased exponential moving average (TensorBoard style): ``weight`` 0 = no smoothing."""
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing weight must be in [0, 1), got {weight}")
    out, acc, n = [], 0.0, 0
    for v in values:
        n += 1
        acc = weight * acc + (1 - weight) * float(v)
        out.append(acc / (1 - weight ** n))
    return out


def cosine_matrix(a, b) -> np.ndarray:
    """Cosine similarity between every row of ``a [La, d]`` and every row of ``b [Lb, d']`` -> ``[La, Lb]``.
    Widths must match (project first when they differ)."""
    a, b = as_array(a), as_array(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"cosine_matrix needs [La, d] and [Lb, d] arrays, got {a.shape} and {b.shape}")
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return an @ bn.T


NOT_TERMS = ("loss", "lr", "grad_scale", "skipped_steps")


def term_series(rows: Sequence[Mapping]) -> "OrderedDict[str, tuple[list, list]]":
    """Store metric rows (``step``, ``name``, ``value``) -> ``{term: (steps, values)}`` for the loss's named terms
    (``kd``, ``ce``, ``hidden``, ...): every logged name that is not the total loss, the learning rate or an fp16
    counter and not a per-layer part ``"<term>/s<i>-t<j>"`` (``per_layer_series``), in the order first logged."""
    acc: "OrderedDict[str, tuple[list, list]]" = OrderedDict()
    for r in rows:
        name = str(r["name"])
        if name in NOT_TERMS or "/" in name:
            continue
        steps, vals = acc.setdefault(name, ([], []))
        steps.append(int(r["step"]))
        vals.append(float(r["value"]))
    return acc


def per_layer_series(rows: Sequence[Mapping]) -> "OrderedDict[tuple[int, int], dict[str, tuple[list, list]]]":
    """Store metric rows (``step``, ``name``, ``value``) -> ``{(s, t): {term: (steps, values)}}`` for the
    per-layer names ``"<term>/s<i>-t<j>"``, pairs sorted by (student, teacher) layer."""
    acc: dict = {}
    for r in rows:
        m = PAIR_RE.match(str(r["name"]))
        if not m:
            continue
        key = (int(m["s"]), int(m["t"]))
        steps, vals = acc.setdefault(key, {}).setdefault(m["term"], ([], []))
        steps.append(int(r["step"]))
        vals.append(float(r["value"]))
    return OrderedDict(sorted(acc.items()))


def drop_table(acc: Mapping[str, Mapping[str, float]], in_domain: str = "dev") -> dict:
    """``{model: {domain: accuracy}}`` -> ``{model: {domain: accuracy - accuracy[in_domain]}}`` (any metric; a
    missing value gives NaN)."""
    out = {}
    for model, d in acc.items():
        base = d.get(in_domain)
        out[model] = {k: (float(v) - float(base)) if base is not None and v is not None else float("nan")
                      for k, v in d.items()}
    return out


def _fmt(v: float, digits: int) -> str:
    return "" if v is None or not math.isfinite(float(v)) else f"{v:.{digits}f}"


# ----------------------------------------------------------------------------------------------- mapping / CKA
def mapping_heatmap(W, title: str = "Layer mapping W", digits: int = 2, show_zeros: bool = False) -> go.Figure:
    """Annotated heatmap of the mapping matrix ``W [M, N]``: rows = student layers S1..SM (S1 at the
    bottom), columns = teacher layers T1..TN; every non-zero cell is labelled with its weight."""
    W = as_array(W)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D [M, N], got shape {W.shape}")
    M, N = W.shape
    text = [[_fmt(v, digits) if (v != 0 or show_zeros) else "" for v in row] for row in W]
    fig = go.Figure(go.Heatmap(
        z=W.tolist(), x=[f"T{j}" for j in range(1, N + 1)], y=[f"S{i}" for i in range(1, M + 1)],
        text=text, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=max(1.0, float(W.max(initial=0))),
        hovertemplate="student %{y} <- teacher %{x}: %{z:.3f}<extra></extra>", colorbar=dict(title="weight")))
    fig.update_layout(title=title, xaxis_title="teacher layer", yaxis_title="student layer",
                      height=140 + 45 * M, margin=dict(l=60, r=20, t=50, b=50))
    fig.update_xaxes(side="bottom", type="category")
    fig.update_yaxes(type="category")
    return fig


def cka_heatmap(C, title: str = "CKA: teacher vs student layers", digits: int = 2,
                with_embeddings: bool = True) -> go.Figure:
    """Heatmap of a CKA matrix ``C [N(+1), M(+1)]`` (teacher rows, student columns, as returned by
    ``kdlab.analysis.cka.cka_matrix``); drawn with student layers on x and teacher layers on y, values annotated.
    ``with_embeddings``: index 0 is the embedding output (labelled T0/S0)."""
    C = as_array(C)
    if C.ndim != 2:
        raise ValueError(f"C must be 2-D [teacher layers, student layers], got shape {C.shape}")
    start = 0 if with_embeddings else 1
    ty = [f"T{j}" for j in range(start, start + C.shape[0])]
    sx = [f"S{i}" for i in range(start, start + C.shape[1])]
    z = [[None if not math.isfinite(v) else float(v) for v in r] for r in C]  # NaN (undefined) -> gap
    fig = go.Figure(go.Heatmap(z=z, x=sx, y=ty, text=[[_fmt(v, digits) for v in r] for r in C],
                               texttemplate="%{text}", colorscale="Viridis", zmin=0, zmax=1,
                               hovertemplate="teacher %{y} / student %{x}: %{z:.3f}<extra></extra>",
                               colorbar=dict(title="CKA")))
    fig.update_layout(title=title, xaxis_title="student layer", yaxis_title="teacher layer",
                      height=160 + 30 * C.shape[0], margin=dict(l=60, r=20, t=50, b=50))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


# ----------------------------------------------------------------------------------------------- temperature
def softened_distributions(teacher_logits, student_logits=None, T: float = 1.0,
                           label_names: Sequence[str] | None = None) -> go.Figure:
    """Grouped bars of ``softmax(z/T)`` per class for the teacher (and the student), one example."""
    pt = soften(teacher_logits, T).ravel()
    names = list(label_names) if label_names else [str(c) for c in range(len(pt))]
    fig = go.Figure(go.Bar(name="teacher", x=names, y=pt.tolist(), marker_color=TEACHER_COLOR,
                           text=[f"{v:.3f}" for v in pt], textposition="outside"))
    if student_logits is not None:
        ps = soften(student_logits, T).ravel()
        fig.add_bar(name="student", x=names, y=ps.tolist(), marker_color=STUDENT_COLOR,
                    text=[f"{v:.3f}" for v in ps], textposition="outside")
    fig.update_layout(title=f"Softened distributions at T = {T:g}", barmode="group",
                      yaxis=dict(title="probability", range=[0, 1.12]), xaxis_title="class",
                      height=360, margin=dict(l=50, r=20, t=50, b=40))
    return fig


def entropy_curve(logits: Mapping[str, object], temperatures: Sequence[float], current_T: float | None = None
                  ) -> go.Figure:
    """Entropy (nats) of ``softmax(z/T)`` against T, one line per named logit vector; the maximum
    ``log C`` as a dashed line and the current T as a vertical marker."""
    Ts = [float(t) for t in temperatures]
    fig = go.Figure()
    C = None
    for name, z in logits.items():
        z = as_array(z).ravel()
        C = len(z)
        fig.add_scatter(x=Ts, y=[entropy(soften(z, t)) for t in Ts], mode="lines", name=name,
                        line=dict(color=TEACHER_COLOR if name == "teacher" else
                                  STUDENT_COLOR if name == "student" else None))
    if C:
        fig.add_hline(y=math.log(C), line_dash="dash", line_color="gray",
                      annotation_text=f"log {C} = {math.log(C):.3f}")
    if current_T is not None:
        fig.add_vline(x=float(current_T), line_dash="dot", line_color="black")
    fig.update_layout(title="Entropy of the softened distribution vs temperature", xaxis_title="T",
                      yaxis_title="entropy (nats)", height=360, margin=dict(l=50, r=20, t=50, b=40))
    return fig


def dark_knowledge_curves(dk: Mapping, current_T: float | None = None) -> go.Figure:
    """Two panels against T from ``kdlab.analysis.dark_knowledge.dark_knowledge``: left, the mean entropy of the soft
    targets and of their non-target part (nats, with log C dashed); right, the mean non-target probability mass
    and the share of examples whose second choice is informative."""
    Ts, C = list(dk["T"]), int(dk["classes"])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("entropy (nats)", "share / probability"))
    fig.add_scatter(x=Ts, y=list(dk["entropy"]), name="entropy of the soft targets", mode="lines",
                    line=dict(color=TEACHER_COLOR), row=1, col=1)
    fig.add_scatter(x=Ts, y=list(dk["non_target_entropy"]), name="entropy among the non-target classes",
                    mode="lines", line=dict(color=TEACHER_COLOR, dash="dot"), row=1, col=1)
    fig.add_hline(y=math.log(C), line_dash="dash", line_color="gray", row=1, col=1,
                  annotation_text=f"log {C} = {math.log(C):.3f}")
    fig.add_scatter(x=Ts, y=list(dk["non_target_mass"]), name="non-target probability mass", mode="lines",
                    line=dict(color=STUDENT_COLOR), row=1, col=2)
    fig.add_scatter(x=Ts, y=list(dk["second_informative"]),
                    name=f"second choice informative (p2 >= {dk['threshold']:g}, > 2 classes)", mode="lines",
                    line=dict(color="#2ca02c"), row=1, col=2)
    if current_T is not None:
        for c in (1, 2):
            fig.add_vline(x=float(current_T), line_dash="dot", line_color="black", row=1, col=c)
    fig.update_xaxes(title_text="T")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(title=f"Dark knowledge of the teacher's soft targets vs temperature ({C} classes)",
                      height=380, margin=dict(l=50, r=20, t=70, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


# ----------------------------------------------------------------------------------------------- curves
def per_layer_multiples(rows: Sequence[Mapping], smoothing: float = 0.6, cols: int = 3,
                        terms: Sequence[str] | None = None) -> go.Figure:
    """Small multiples of the per-layer losses from store metric rows: one subplot per mapped pair
    ``s<i>-t<j>`` (titled "S i <- T j"), one smoothed line per term (e.g. ``hidden_mse``, ``kl``)."""
    series = per_layer_series(rows)
    if terms is not None:
        series = OrderedDict((k, {t: v for t, v in d.items() if t in terms}) for k, d in series.items())
    if not series:
        fig = go.Figure()
        fig.add_annotation(text="no per-layer losses logged (yet)", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_layout(height=200, xaxis_visible=False, yaxis_visible=False)
        return fig
    n = len(series)
    cols = max(1, min(cols, n))
    nrows = math.ceil(n / cols)
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[f"S{s} <- T{t}" for s, t in series],
                        shared_xaxes=False)
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    all_terms = sorted({t for d in series.values() for t in d})
    for k, ((s, t), d) in enumerate(series.items()):
        r, c = divmod(k, cols)
        for term, (steps, vals) in sorted(d.items()):
            fig.add_scatter(x=steps, y=smooth(vals, smoothing), mode="lines", name=term,
                            legendgroup=term, showlegend=k == 0 or term not in _terms_before(series, k),
                            line=dict(color=palette[all_terms.index(term) % len(palette)]),
                            meta=f"s{s}-t{t}", row=r + 1, col=c + 1)
    fig.update_layout(title=f"Per-layer losses (smoothing {smoothing:g})", height=60 + 220 * nrows,
                      margin=dict(l=40, r=20, t=70, b=30))
    return fig


def _terms_before(series, k) -> set:
    return {t for d in list(series.values())[:k] for t in d}


def run_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], metric: str = "loss",
               smoothing: float = 0.0) -> go.Figure:
    """Overlaid curves ``{run label: (steps, values)}`` of one metric, optionally smoothed."""
    fig = go.Figure()
    for label, (steps, vals) in curves.items():
        fig.add_scatter(x=list(steps), y=smooth(vals, smoothing) if smoothing else [float(v) for v in vals],
                        mode="lines", name=label)
    fig.update_layout(title=f"{metric} by step" + (f" (smoothing {smoothing:g})" if smoothing else ""),
                      xaxis_title="step", yaxis_title=metric, height=380, margin=dict(l=50, r=20, t=50, b=40))
    return fig


# ----------------------------------------------------------------------------------------------- domains / calibration
METRIC_TITLES = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "f1": "F1", "mcc": "MCC", "pearson": "Pearson r",
                 "spearman": "Spearman rho", "mse": "MSE", "micro_f1": "Micro-F1",
                 "subset_accuracy": "Subset accuracy"}


def metric_title(metric: str) -> str:
    """The display name of a metric of ``kdlab.analysis.evaluate.metrics`` (``'mcc'`` -> ``'MCC'``)."""
    return METRIC_TITLES.get(metric, metric.replace("_", " ").capitalize())


def _metric_range(metric: str, values: Sequence) -> list | None:
    """y range of a metric axis: [0, 1.15] for shares, down to -1 for correlations, automatic for MSE."""
    if metric == "mse":
        return None
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    lo = min([0.0] + vals)
    return [0 if lo >= 0 else max(-1.05, lo - 0.1), 1.15]


def domain_accuracy_bars(acc: Mapping[str, Mapping[str, float]], in_domain: str = "dev",
                         metric: str = "accuracy") -> go.Figure:
    """Grouped bars: a metric (accuracy unless ``metric`` names the task's primary metric, e.g. ``f1``, ``mcc``,
    ``pearson``) per domain (x) for each model (one trace per model); each bar is labelled with its value and,
    for out-of-domain sets, the drop vs the model's in-domain value."""
    drops = drop_table(acc, in_domain)
    domains: list[str] = []
    for d in acc.values():
        for k in d:
            if k not in domains:
                domains.append(k)
    domains.sort(key=lambda k: (k != in_domain, k))
    fig = go.Figure()
    for model, d in acc.items():
        ys = [d.get(k) for k in domains]
        text = []
        for k, y in zip(domains, ys):
            if y is None:
                text.append("")
            elif k == in_domain:
                text.append(f"{y:.3f}")
            else:
                text.append(f"{y:.3f} ({drops[model][k]:+.3f})")
        fig.add_bar(name=model, x=domains, y=ys, text=text, textposition="outside")
    rng = _metric_range(metric, [v for d in acc.values() for v in d.values()])
    fig.update_layout(title=f"{metric_title(metric)} per domain (drop vs {in_domain} in brackets)", barmode="group",
                      yaxis=dict(title=metric, range=rng) if rng else dict(title=metric), height=400,
                      margin=dict(l=50, r=20, t=50, b=40))
    return fig


def reliability_diagram(bins: Mapping[str, Sequence[tuple]], eces: Mapping[str, float] | None = None
                        ) -> go.Figure:
    """Reliability diagram from ``kdlab.analysis.evaluate.calibration_bins`` rows ``(lo, hi, n, conf, acc)`` per
    model: accuracy per confidence bin as bars at the bin centres, mean confidence as markers, and the
    diagonal of perfect calibration. ECE per model goes into the legend."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                    line=dict(dash="dash", color="gray"))
    for model, rows in bins.items():
        rows = [r for r in rows if r[2]]
        label = model + (f" (ECE {eces[model]:.3f})" if eces and model in eces else "")
        fig.add_bar(x=[(r[0] + r[1]) / 2 for r in rows], y=[r[4] for r in rows],
                    width=[(r[1] - r[0]) * 0.9 for r in rows], name=label, opacity=0.6,
                    customdata=[[r[2], r[3]] for r in rows],
                    hovertemplate="bin %{x:.2f}: accuracy %{y:.3f}, n=%{customdata[0]}, "
                                  "confidence %{customdata[1]:.3f}<extra></extra>")
    fig.update_layout(title="Reliability diagram", barmode="overlay", xaxis=dict(title="confidence", range=[0, 1]),
                      yaxis=dict(title="accuracy", range=[0, 1.02]), height=400, margin=dict(l=50, r=20, t=50, b=40))
    return fig


def prediction_scatter(gold, predictions: Mapping[str, object], title: str = "Prediction vs gold score"
                       ) -> go.Figure:
    """Score tasks (e.g. STS-B): the predicted score (y) against the gold score (x) of every example, one marker
    trace per model ``{name: predictions [n]}``, and the diagonal y = x."""
    g = as_array(gold).ravel()
    fig = go.Figure()
    lo, hi = (float(g.min()), float(g.max())) if len(g) else (0.0, 1.0)
    for name, p in predictions.items():
        p = as_array(p).reshape(len(g), -1)[:, 0] if len(g) else as_array(p).ravel()
        if len(p):
            lo, hi = min(lo, float(p.min())), max(hi, float(p.max()))
        fig.add_scatter(x=g.tolist(), y=p.tolist(), mode="markers", name=name, opacity=0.6,
                        marker=dict(size=6, color=TEACHER_COLOR if name == "teacher" else
                                    STUDENT_COLOR if name == "student" else None),
                        hovertemplate="gold %{x:.3f}, predicted %{y:.3f}<extra></extra>")
    fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line=dict(dash="dash", color="gray"))
    fig.update_layout(title=title, xaxis_title="gold score", yaxis_title="predicted score", height=400,
                      margin=dict(l=50, r=20, t=50, b=40))
    return fig


def size_metric_scatter(rows: Mapping[str, Mapping], splits: Sequence[str], metric: str = "accuracy",
                        in_domain: str | None = None) -> go.Figure:
    """A metric against size on disk: ``rows`` = ``{model: {"mb": .., split: value, ...}}`` (the rows of
    ``kdlab.deploy.report.eval_models``); one marker trace per split (the in-domain split first, drawn filled,
    out-of-domain sets hollow), each marker labelled with its model's name."""
    order = sorted(splits, key=lambda s: (s != in_domain,)) if in_domain else list(splits)
    names = list(rows)
    fig = go.Figure()
    for sp in order:
        xs = [float(rows[n]["mb"]) for n in names]
        ys = [None if rows[n].get(sp) is None else float(rows[n][sp]) for n in names]
        first = sp == order[0]   # names written beside the markers of the first split only (hover: all)
        fig.add_scatter(x=xs, y=ys, mode="markers+text" if first else "markers",
                        name=sp + (" (in domain)" if sp == in_domain else ""), text=names, textposition="top center",
                        marker=dict(size=11, symbol="circle" if sp == in_domain else "circle-open"),
                        customdata=[[rows[n].get("params", 0), rows[n].get("ms_b1")] for n in names],
                        hovertemplate="%{text}: %{y:.3f} at %{x:.2f} MB, %{customdata[0]:,} parameters, "
                                      "%{customdata[1]:.2f} ms/example (batch 1)<extra></extra>")
    fig.update_layout(title=f"{metric_title(metric)} vs size on disk", xaxis_title="size (MB)", yaxis_title=metric,
                      height=420, margin=dict(l=50, r=20, t=50, b=40))
    fig.update_xaxes(rangemode="tozero")
    return fig


def frontier_models(rows: Mapping[str, Mapping], split: str, latency: str = "ms_b1") -> list[str]:
    """The models no other model beats on both counts (at most as slow and at least as accurate, one of them
    strictly), fastest first: the size/latency/accuracy frontier of ``deploy_frontier``."""
    pts = {n: (float(r[latency]), float(r[split])) for n, r in rows.items()
           if r.get(split) is not None and r.get(latency) is not None}
    keep = [n for n, (t, a) in pts.items()
            if not any(t2 <= t and a2 >= a and (t2 < t or a2 > a) for m, (t2, a2) in pts.items() if m != n)]
    return sorted(keep, key=lambda n: (pts[n][0], -pts[n][1]))


def deploy_frontier(rows: Mapping[str, Mapping], split: str, metric: str = "accuracy", latency: str = "ms_b1",
                    teacher: str = "teacher") -> go.Figure:
    """Accuracy (``split``'s metric) against CPU latency (``latency``: ``ms_b1`` or ``ms_b32``, log axis), one point
    per model of ``rows`` (``kdlab.deploy.report.eval_models``' rows), marker area proportional to its size on
    disk, the teacher drawn as a star, and the frontier (``frontier_models``) joined by a line."""
    names = [n for n in rows if rows[n].get(split) is not None and rows[n].get(latency) is not None]
    fig = go.Figure()
    front = frontier_models({n: rows[n] for n in names}, split, latency)
    if len(front) > 1:
        fig.add_scatter(x=[float(rows[n][latency]) for n in front], y=[float(rows[n][split]) for n in front],
                        mode="lines", name="frontier", line=dict(dash="dot", color="gray"), hoverinfo="skip")
    biggest = max([float(rows[n].get("mb") or 0) for n in names] + [1e-9])
    for group, symbol in (([n for n in names if n != teacher], "circle"), ([n for n in names if n == teacher], "star")):
        if not group:
            continue
        fig.add_scatter(
            x=[float(rows[n][latency]) for n in group], y=[float(rows[n][split]) for n in group],
            mode="markers+text", text=group, textposition="top center",
            name="teacher" if symbol == "star" else "models",
            marker=dict(symbol=symbol, size=[10 + 30 * math.sqrt(float(rows[n].get("mb") or 0) / biggest)
                                             for n in group],
                        color="crimson" if symbol == "star" else "steelblue", line=dict(width=1, color="black")),
            customdata=[[float(rows[n].get("mb") or 0), int(rows[n].get("params") or 0)] for n in group],
            hovertemplate="%{text}: %{y:.3f} at %{x:.3f} ms/example, %{customdata[0]:.2f} MB, "
                          "%{customdata[1]:,} parameters<extra></extra>")
    batch = "batch 32" if latency == "ms_b32" else "batch 1"
    fig.update_layout(title=f"{metric_title(metric)} ({split}) vs CPU latency ({batch}); marker area: MB on disk",
                      xaxis_title=f"ms per example ({batch}, log)", yaxis_title=metric, height=440,
                      margin=dict(l=50, r=20, t=50, b=40))
    fig.update_xaxes(type="log")
    return fig


# ----------------------------------------------------------------------------------------------- inspection
def attention_heatmaps(teacher_attn, student_attn, tokens: Sequence[str], teacher_label: str = "teacher",
                       student_label: str = "student") -> go.Figure:
    """Side-by-side heatmaps of one head's attention map ``[L, L]`` (query rows, key columns) for the
    teacher and the student on the same tokens."""
    ta, sa = as_array(teacher_attn), as_array(student_attn)
    L = len(tokens)
    for name, a in (("teacher", ta), ("student", sa)):
        if a.shape != (L, L):
            raise ValueError(f"{name} attention map must be [{L}, {L}] for {L} tokens, got {a.shape}")
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=[teacher_label, student_label], horizontal_spacing=0.12)
    for c, a in ((1, ta), (2, sa)):
        fig.add_trace(go.Heatmap(z=a.tolist(), x=labels, y=labels, zmin=0, zmax=1, colorscale="Greys",
                                 showscale=c == 2, coloraxis=None,
                                 hovertemplate="query %{y} -> key %{x}: %{z:.3f}<extra></extra>"), row=1, col=c)
        fig.update_yaxes(autorange="reversed", row=1, col=c)
    fig.update_layout(title="Attention maps (rows: query token, columns: key token)", height=420 + 6 * L,
                      margin=dict(l=80, r=20, t=70, b=80))
    return fig


def hidden_similarity(teacher_states, student_states, tokens: Sequence[str], title: str | None = None
                      ) -> go.Figure:
    """Cosine similarity between every token's teacher state (rows) and every token's student state
    (columns) for one layer pair; ``[L, d]`` each (same width)."""
    S = cosine_matrix(teacher_states, student_states)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    if S.shape != (len(tokens), len(tokens)):
        raise ValueError(f"expected {len(tokens)} token states on each side, got {S.shape}")
    fig = go.Figure(go.Heatmap(z=S.tolist(), x=labels, y=labels, zmin=-1, zmax=1, colorscale="RdBu",
                               hovertemplate="teacher %{y} / student %{x}: %{z:.3f}<extra></extra>",
                               colorbar=dict(title="cosine")))
    fig.update_layout(title=title or "Hidden-state cosine similarity (teacher tokens x student tokens)",
                      xaxis_title="student token", yaxis_title="teacher token", height=420 + 6 * len(tokens),
                      margin=dict(l=80, r=20, t=50, b=80))
    fig.update_yaxes(autorange="reversed")
    return fig


# ----------------------------------------------------------------------------------------------- notebooks
def series_lines(x: Sequence[float], series: Mapping[str, Sequence[float]], title: str = "",
                 xaxis: str = "x", yaxis: str = "value", log_x: bool = False, log_y: bool = False
                 ) -> go.Figure:
    """One line with markers per named series over a shared x (e.g. gradient norm vs temperature T)."""
    xs = [float(v) for v in x]
    fig = go.Figure()
    for name, ys in series.items():
        ys = [float(v) for v in ys]
        if len(ys) != len(xs):
            raise ValueError(f"series '{name}' has {len(ys)} values for {len(xs)} x positions")
        fig.add_scatter(x=xs, y=ys, mode="lines+markers", name=name)
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, height=380,
                      margin=dict(l=50, r=20, t=50, b=40))
    if log_x:
        fig.update_xaxes(type="log")
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def metric_bars(values: Mapping[str, Mapping[str, float]], title: str = "", yaxis: str = "value",
                digits: int = 3) -> go.Figure:
    """Grouped bars ``{model: {category: value}}``: categories on x (first-seen order), one labelled
    trace per model (e.g. attention KL per layer pair, ECE per domain)."""
    cats: list[str] = []
    for d in values.values():
        for k in d:
            if k not in cats:
                cats.append(k)
    fig = go.Figure()
    for model, d in values.items():
        ys = [None if d.get(k) is None else float(d[k]) for k in cats]
        fig.add_bar(name=model, x=cats, y=ys, text=["" if y is None else _fmt(y, digits) for y in ys],
                    textposition="outside")
    fig.update_layout(title=title, barmode="group", yaxis_title=yaxis, height=400,
                      margin=dict(l=50, r=20, t=50, b=40))
    fig.update_xaxes(type="category")
    return fig


# ----------------------------------------------------------------------------------------------- studies
VERDICT_COLORS = {"better": "#2ca02c", "worse": "#d62728", "inconclusive": "#7f7f7f"}


def seed_deltas(rows: Sequence[Mapping], row: Mapping) -> dict:
    """{seed: method value - baseline value} of one study row (``kdlab.engine.study`` rows carry per-seed values)."""
    base = next((r for r in rows if r.get("verdict") == "baseline" and r["domain"] == row["domain"]), None)
    if base is None:
        return {}
    b = base.get("seeds") or {}
    return {s: v - b[s] for s, v in (row.get("seeds") or {}).items() if s in b and v is not None
            and b[s] is not None}


def study_forest(rows: Sequence[Mapping]) -> go.Figure:
    """Forest plot of a study (``kdlab.engine.study`` rows): one panel per domain; per method (and option values) the
    paired difference to the baseline as a marker with its 95 % interval, coloured by verdict, the per-seed
    differences as small open points, and the line of no difference at 0."""
    others = [r for r in rows if r.get("verdict") != "baseline"]
    domains = list(OrderedDict.fromkeys(r["domain"] for r in others)) or ["dev"]
    fig = make_subplots(rows=1, cols=len(domains), shared_yaxes=True, subplot_titles=[
        f"{d} ({'in domain' if d == 'dev' else 'out of domain'})" for d in domains])
    shown = set()
    for col, d in enumerate(domains, 1):
        sub = [r for r in others if r["domain"] == d]
        for r in sub:
            v = r["verdict"]
            lo, hi, x = r.get("ci_low"), r.get("ci_high"), r.get("delta")
            finite = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
            fig.add_scatter(x=[x], y=[r["group"]], mode="markers", row=1, col=col, name=v, legendgroup=v,
                            showlegend=v not in shown, marker=dict(size=11, color=VERDICT_COLORS.get(v, "black")),
                            error_x=dict(type="data", symmetric=False, array=[hi - x], arrayminus=[x - lo])
                            if finite else None,
                            hovertemplate=f"{r['group']}<br>delta %{{x:+.4f}}" + (
                                f"<br>95% CI [{lo:+.4f}, {hi:+.4f}]" if finite else "") + f"<br>{v}<extra></extra>")
            shown.add(v)
            pts = seed_deltas(rows, r)
            if pts:
                fig.add_scatter(x=list(pts.values()), y=[r["group"]] * len(pts), mode="markers", row=1, col=col,
                                name="per seed", legendgroup="seed", showlegend="seed" not in shown,
                                marker=dict(size=6, symbol="circle-open", color="#555"),
                                text=[f"seed {s}" for s in pts], hovertemplate="%{text}: %{x:+.4f}<extra></extra>")
                shown.add("seed")
        fig.add_vline(x=0, line=dict(dash="dash", color="gray"), row=1, col=col)
    metric = rows[0]["metric"] if rows else "accuracy"
    base = next((r["group"] for r in rows if r.get("verdict") == "baseline"), "baseline")
    fig.update_xaxes(title_text=f"{metric} - {base}")
    fig.update_layout(title=f"Difference to {base} ({metric}) with 95% paired-bootstrap intervals",
                      height=160 + 40 * len({r['group'] for r in others}), margin=dict(l=60, r=20, t=70, b=40))
    return fig
