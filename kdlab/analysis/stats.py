"""Statistics of a study: mean ± std over seeds and the paired difference to a baseline with a bootstrap CI.

The difference of a method to the baseline (``ce``: the student trained alone, same seeds, same student init,
same evaluation examples) is estimated by a **two-level paired bootstrap**: each resample draws the seeds
(pairs of method and baseline runs with the same seed) with replacement and, independently, the evaluation
examples with replacement (the same examples for both runs of a pair); the statistic is the mean over the drawn
seeds of ``metric(method) - metric(baseline)`` on the drawn examples. The 95 % interval is the 2.5 and 97.5
percentiles of the resampled differences (percentile bootstrap). So the interval covers both sources of noise a
reader cares about: another seed, and another sample of test sentences.

Verdict per domain: ``better`` when the whole interval lies on the improving side of 0, ``worse`` when it lies on
the other side, else ``inconclusive``. For metrics where lower is better (``mse``, ``perplexity``) the sides swap.

Causal LM runs (``kdlab.lm.study``): the examples are the held-out texts, each with its summed next-token NLL and
its number of scored tokens; a resample's perplexity is exp(sum NLL / sum tokens) over the drawn examples.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import KdlabError

LOWER_IS_BETTER = {"mse", "ece", "perplexity", "token_kl"}
RANKING_METRICS = ("ndcg@10", "mrr@10", "recall@100")
LEVEL = 0.95


# ----------------------------------------------------------------------------------------------- per-example outputs
def load_predictions(path) -> dict:
    """{split: {"logits", "labels", ["label_map"]}} from a run's ``predictions.npz`` (``kdlab.engine.distill``)."""
    path = Path(path)
    if not path.exists():
        return {}
    out: dict = {}
    with np.load(path) as z:
        for key in z.files:
            split, what = key.rsplit("/", 1)
            out.setdefault(split, {})[what] = z[key]
    return out


def example_outputs(arrays: dict, kind: str = "classes", metric: str | None = None) -> np.ndarray:
    """Per-example predictions the metric is computed from: the predicted class (mapped through the set's label
    map, as ``kdlab.analysis.evaluate.metrics`` does), the predicted score, or the multi-hot prediction; for ranking, each
    query's value of ``metric`` (``kdlab.ranking.adaptor``: the metric is their mean); for a causal LM run
    (``kdlab.lm.study``), each example's summed NLL and its scored tokens."""
    if kind == "lm":
        return np.stack([np.asarray(arrays["nll"], float), np.asarray(arrays["labels"], float)], axis=1)
    if kind == "ranking":
        if metric not in arrays:
            raise KdlabError(f"the ranking run's per-query outputs have no '{metric}' (they have "
                             f"{', '.join(k for k in arrays if k != 'labels')})")
        return np.asarray(arrays[metric], dtype=np.float64)
    logits = np.asarray(arrays["logits"])
    if kind == "score":
        return logits[:, 0]
    if kind == "multi":
        return (logits > 0).astype(np.int64)
    pred = logits.argmax(axis=1)
    lm = arrays.get("label_map")
    return np.asarray(lm)[pred] if lm is not None else pred


def metric_value(metric: str, pred: np.ndarray, labels: np.ndarray, num_labels: int | None = None) -> float:
    """One metric of per-example predictions (the same definitions as ``kdlab.analysis.evaluate``)."""
    from . import evaluate as ev
    labels = np.asarray(labels)
    if metric == "accuracy":
        return ev.accuracy(pred, labels)
    if metric == "macro_f1" and labels.ndim == 1:
        C = num_labels or int(max(pred.max(initial=0), labels.max(initial=0))) + 1
        return ev.macro_f1(pred, labels, C)
    if metric == "f1":
        return ev.f1_positive(pred, labels)
    if metric == "mcc":
        return ev.mcc(pred, labels)
    if metric in ("pearson", "spearman"):
        return ev._corr(metric, np.asarray(pred, float), np.asarray(labels, float))
    if metric == "mse":
        return float(np.mean((np.asarray(pred, float) - np.asarray(labels, float)) ** 2))
    if metric in ("micro_f1", "macro_f1"):
        from sklearn.metrics import f1_score
        return float(f1_score(labels, pred, average=metric.split("_")[0], zero_division=0.0))
    if metric == "perplexity":   # pred [n, 2]: summed NLL and scored tokens per example; token-weighted
        pred = np.asarray(pred, float)
        return float(np.exp(pred[:, 0].sum() / max(pred[:, 1].sum(), 1.0)))
    if metric == "subset_accuracy":
        return float((pred == labels).all(axis=1).mean())
    if metric in RANKING_METRICS:   # per-query values (kdlab.ranking.adaptor): the metric is their mean
        return float(np.mean(pred)) if len(pred) else float("nan")
    raise KdlabError(f"the study statistics cannot compute the metric '{metric}' from per-example predictions")


# ----------------------------------------------------------------------------------------------- the bootstrap
def paired_bootstrap(a, b, labels, metric: str = "accuracy", *, n_boot: int = 2000, seed: int = 0,
                     level: float = LEVEL, num_labels: int | None = None) -> dict:
    """Two-level paired bootstrap of ``metric(a) - metric(b)``.

    ``a``, ``b``: per-example predictions [S, n, ...] of the method and the baseline, row s of both from the same
    seed; ``labels`` [n, ...] the gold labels of the n examples. Returns ``delta`` (the observed mean over seeds of
    the per-seed difference), ``ci_low``, ``ci_high`` (percentile interval at ``level``) and ``n_boot``."""
    a, b, labels = np.asarray(a), np.asarray(b), np.asarray(labels)
    if a.shape != b.shape or a.shape[1] != len(labels):
        raise KdlabError(f"paired bootstrap: method {a.shape}, baseline {b.shape} and labels {labels.shape} "
                         "must describe the same examples")
    S, n = a.shape[0], a.shape[1]
    if S == 0 or n == 0:
        return {"delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_boot": 0}
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, S, size=(n_boot, S))
    alpha = (1 - level) / 2
    if (metric == "accuracy" and labels.ndim == 1) or metric in RANKING_METRICS:
        # vectorised: the mean of per-example differences (of correctness; of a ranking metric's per-query values)
        d = a.astype(np.float64) - b.astype(np.float64) if metric in RANKING_METRICS else \
            (a == labels).astype(np.float64) - (b == labels).astype(np.float64)   # [S, n]
        delta = float(d.mean())
        per = np.empty((S, n_boot))
        for start in range(0, n_boot, 256):   # chunks keep the [S, chunk, n] gather small
            idx = rng.integers(0, n, size=(min(256, n_boot - start), n))
            per[:, start:start + len(idx)] = d[:, idx].mean(axis=2)
        boots = per[seeds, np.arange(n_boot)[:, None]].mean(axis=1)
    else:
        f = lambda p, y: metric_value(metric, p, y, num_labels)
        delta = float(np.mean([f(a[s], labels) - f(b[s], labels) for s in range(S)]))
        boots = np.empty(n_boot)
        for i in range(n_boot):
            idx = rng.integers(0, n, size=n)
            boots[i] = np.mean([f(a[s][idx], labels[idx]) - f(b[s][idx], labels[idx]) for s in seeds[i]])
    boots = boots[np.isfinite(boots)]
    lo, hi = (np.quantile(boots, [alpha, 1 - alpha]) if len(boots) else (float("nan"), float("nan")))
    return {"delta": delta, "ci_low": float(lo), "ci_high": float(hi), "n_boot": int(n_boot)}


def verdict(ci_low: float, ci_high: float, metric: str = "accuracy") -> str:
    """``better`` / ``worse`` when the interval excludes 0 on one side, else ``inconclusive``."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "inconclusive"
    up, down = ci_low > 0, ci_high < 0
    if metric in LOWER_IS_BETTER:
        up, down = down, up
    return "better" if up else "worse" if down else "inconclusive"


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value) of finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if not len(v):
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


# ----------------------------------------------------------------------------------------------- a study's table
def summarize(groups: dict, baseline: str, metric: str, kind: str = "classes", *, n_boot: int = 2000,
              seed: int = 0, num_labels: int | None = None) -> list[dict]:
    """The study table. ``groups``: {label: {"method", "options", "seeds": {seed: {split: {"value": float,
    "pred": array or None, "labels": array or None}}}}}; ``baseline``: the label of the baseline group.

    One row per group and split: method, options, domain, metric, n (seeds), mean, std, delta, ci_low, ci_high,
    verdict (``baseline`` for the baseline's own rows; ``inconclusive`` with no per-example predictions)."""
    if baseline not in groups:
        raise KdlabError(f"the study has no finished baseline runs ('{baseline}'): the differences need them")
    base = groups[baseline]["seeds"]
    splits = []
    for g in groups.values():
        for per in g["seeds"].values():
            splits += [s for s in per if s not in splits]
    rows = []
    for label, g in groups.items():
        for split in splits:
            vals = {s: per[split]["value"] for s, per in g["seeds"].items() if split in per}
            mean, std = mean_std(vals.values())
            row = {"group": label, "method": g["method"], "options": g.get("options") or {},
                   "domain": split, "metric": metric, "n": len(vals), "mean": mean, "std": std,
                   "seeds": {str(k): v for k, v in sorted(vals.items())}}
            if label == baseline:
                rows.append({**row, "delta": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n_pairs": len(vals),
                             "verdict": "baseline"})
                continue
            paired = [s for s in sorted(vals) if split in base.get(s, {})]
            row["n_pairs"] = len(paired)
            have = [s for s in paired if g["seeds"][s][split].get("pred") is not None
                    and base[s][split].get("pred") is not None]
            if not paired:
                rows.append({**row, "delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                             "verdict": "inconclusive"})
                continue
            if len(have) == len(paired):
                labels = base[paired[0]][split]["labels"]
                for s in paired:
                    if not np.array_equal(g["seeds"][s][split]["labels"], labels) or \
                            not np.array_equal(base[s][split]["labels"], labels):
                        raise KdlabError(f"split '{split}': seed {s} of '{label}' was evaluated on other examples "
                                         "than the baseline: a study compares runs on the same data")
                res = paired_bootstrap(np.stack([g["seeds"][s][split]["pred"] for s in paired]),
                                       np.stack([base[s][split]["pred"] for s in paired]), labels, metric,
                                       n_boot=n_boot, seed=seed, num_labels=num_labels)
            else:   # no per-example outputs stored (older runs): the observed difference, no interval
                d = float(np.mean([vals[s] - base[s][split]["value"] for s in paired]))
                res = {"delta": d, "ci_low": float("nan"), "ci_high": float("nan")}
            rows.append({**row, "delta": res["delta"], "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                         "verdict": verdict(res["ci_low"], res["ci_high"], metric)})
    return rows
