"""Evaluation: accuracy, macro-F1, expected calibration error, agreement, latency, parameter counts."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..speed import buckets
from ..data.batching import encode_texts, make_loader, model_inputs
from ..models.features import Need, features
from ..models.core import count_params
from .probs import mapped_probs, predicted, softened


@torch.inference_mode()
def predict(model, split, tokenizer, *, batch_size: int = 64, max_len: int = 64, device="cpu",
            progress: bool = False, length_buckets: str = "auto") -> np.ndarray:
    """Logits [n, C] for every example of ``split`` in order (rows of similar length batched together on CPU,
    ``kdlab.speed.buckets``)."""
    bk = buckets.enabled(length_buckets, device)
    model.eval()
    out = []
    loader = make_loader(split, tokenizer, batch_size=batch_size, max_len=max_len, shuffle=False)
    it = loader
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(loader, desc=f"eval {split.name}", leave=False)
    for batch in it:
        batch = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        logits = features(model, batch, Need(), bucketed=bk).logits
        out.append(logits.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 2), dtype=np.float32)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities at T = 1 (``kdlab.analysis.probs.softened``)."""
    return softened(logits)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float((pred == labels).mean()) if len(labels) else float("nan")


def macro_f1(pred: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    f1s = []
    for c in range(num_labels):
        tp = np.sum((pred == c) & (labels == c))
        fp = np.sum((pred == c) & (labels != c))
        fn = np.sum((pred != c) & (labels == c))
        denom = 2 * tp + fp + fn
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def calibration_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 10):
    """Per confidence bin: (lower edge, upper edge, count, mean confidence, accuracy)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        n = int(sel.sum())
        rows.append((float(lo), float(hi), n, float(conf[sel].mean()) if n else float("nan"),
                     float(correct[sel].mean()) if n else float("nan")))
    return rows


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over bins of (n_bin / n) * |accuracy - confidence|."""
    n = len(labels)
    if not n:
        return float("nan")
    return float(sum(c / n * abs(a - m) for _, _, c, m, a in calibration_bins(probs, labels, bins) if c))


def f1_positive(pred: np.ndarray, labels: np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (MRPC, QQP: class 1)."""
    from sklearn.metrics import f1_score
    return float(f1_score(labels, pred, pos_label=positive, average="binary", zero_division=0.0)) \
        if len(labels) else float("nan")


def mcc(pred: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation coefficient (CoLA); 0 when a prediction or the labels are constant."""
    from sklearn.metrics import matthews_corrcoef
    return float(matthews_corrcoef(labels, pred)) if len(labels) else float("nan")


def _corr(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    f = stats.pearsonr if kind == "pearson" else stats.spearmanr
    return float(f(x, y)[0])


def _ordered(values: dict, task) -> dict:
    """The task's metrics in its order (primary first), then the rest."""
    order = list(getattr(task, "metrics", ()) or ())
    head = {k: values[k] for k in order if k in values}
    return {**head, **{k: v for k, v in values.items() if k not in head}}


def metrics(logits: np.ndarray, labels, num_labels: int, task=None, label_map=None) -> dict:
    """The metrics of ``task`` (a ``kdlab.tasks.Task``; None = classes, accuracy and macro-F1), its primary metric
    first, plus ``ece`` (classes only) and ``n``. Classes: accuracy, macro_f1, f1 (positive class 1, binary), mcc;
    score: pearson, spearman, mse of the prediction (``logits[:, 0]``); multi: micro_f1, macro_f1,
    subset_accuracy (sigmoid > 0.5). ``label_map``: model class -> the labels' class (an evaluation set with other
    classes, e.g. SciTail for a 3-way NLI model): the predicted class is mapped, the probabilities are summed per
    mapped class for ECE."""
    kind = getattr(task, "kind", "classes")
    if kind == "score":
        pred = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)[:, 0]
        y = np.asarray(labels, dtype=np.float64)
        vals = {"pearson": _corr("pearson", pred, y), "spearman": _corr("spearman", pred, y),
                "mse": float(np.mean((pred - y) ** 2)) if len(y) else float("nan")}
        return {**_ordered(vals, task), "n": float(len(y))}
    if kind == "multi":
        from sklearn.metrics import f1_score
        y = np.asarray(labels, dtype=np.int64).reshape(len(logits), -1)
        pred = (np.asarray(logits) > 0).astype(np.int64)
        vals = {"micro_f1": float(f1_score(y, pred, average="micro", zero_division=0.0)),
                "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0.0)),
                "subset_accuracy": float((pred == y).all(axis=1).mean()) if len(y) else float("nan")}
        return {**_ordered(vals, task), "n": float(len(y))}
    labels = np.asarray(labels)
    probs = mapped_probs(softmax(logits), label_map)   # summed per mapped class for ECE
    pred = predicted(logits, label_map)                  # the model's class, mapped (the usual protocol)
    if label_map is not None:
        num_labels = int(np.max(label_map)) + 1
    vals = {"accuracy": accuracy(pred, labels), "macro_f1": macro_f1(pred, labels, num_labels)}
    if task is not None:
        if "f1" in task.metrics and num_labels == 2:
            vals["f1"] = f1_positive(pred, labels)
        if "mcc" in task.metrics:
            vals["mcc"] = mcc(pred, labels)
    return {**_ordered(vals, task), "ece": ece(probs, labels), "n": float(len(labels))}


def primary_metric(task=None) -> str:
    """The metric shown first for ``task`` (accuracy when none)."""
    return (getattr(task, "metrics", None) or ("accuracy",))[0]


def summary(evals: dict, task=None) -> dict:
    """A run's summary: the task's primary metric per evaluation split."""
    primary = primary_metric(task)
    return {k: v.get(primary) for k, v in evals.items()}


def agreement(a_logits: np.ndarray, b_logits: np.ndarray) -> float:
    return float((a_logits.argmax(1) == b_logits.argmax(1)).mean()) if len(a_logits) else float("nan")


def evaluate(model, tokenizer, bundle, *, max_len: int = 64, device="cpu", teacher_logits: dict | None = None,
             batch_size: int = 64) -> tuple[dict, dict]:
    """Metrics per eval split ({split: {metric: value}}) and the logits per split."""
    results, all_logits = {}, {}
    for name, split in bundle.eval_splits().items():
        logits = predict(model, split, tokenizer, batch_size=batch_size, max_len=max_len, device=device)
        m = metrics(logits, split.labels, bundle.num_labels(), getattr(bundle, "task", None),
                    getattr(split, "label_map", None))
        if teacher_logits and name in teacher_logits and getattr(getattr(bundle, "task", None), "kind",
                                                                 "classes") == "classes":
            m["agreement"] = agreement(logits, teacher_logits[name])
        results[name] = m
        all_logits[name] = logits
    return results, all_logits


def latency_ms(model, tokenizer, texts: list[str], *, max_len: int = 64, repeats: int = 3, texts_b=None) -> float:
    """Median CPU milliseconds per example at batch size 1 (single thread as set); pairs with ``texts_b``. One
    model through ``latency_side_by_side``, the one latency measurement."""
    return latency_side_by_side({"m": (model, tokenizer)}, list(texts), batch_sizes=(1,), max_len=max_len,
                                rounds=repeats, texts_b=texts_b)["m"]["ms_b1"]


def size_report(model, tokenizer, texts, max_len: int = 64, texts_b=None) -> dict:
    return {"params": float(count_params(model)), "layers": float(model.config.num_hidden_layers),
            "hidden": float(model.config.hidden_size),
            "latency_ms": latency_ms(model, tokenizer, texts, max_len=max_len, texts_b=texts_b)}


@torch.inference_mode()
def predict_plain(model, split, tokenizer, *, batch_size: int = 64, max_len: int = 64) -> np.ndarray:
    """Logits [n, C] of any classifier called like a transformers one (a torch module, an int8 module or an
    onnxruntime session wrapper): padded batches in order, no feature capture, no buckets; a pair split goes
    through the pair encoding, with segment ids where the tokenizer makes them."""
    if hasattr(model, "eval"):
        model.eval()
    out = []
    for batch in make_loader(split, tokenizer, batch_size=batch_size, max_len=max_len, shuffle=False):
        out.append(model(**model_inputs(batch)).logits.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 2), dtype=np.float32)


@torch.inference_mode()
def latency_side_by_side(models: dict, texts: list[str], *, batch_sizes=(1, 32), max_len: int = 64,
                         rounds: int = 5, n_single: int = 16, texts_b=None) -> dict:
    """CPU milliseconds per example of several models measured in one process, in interleaved rounds (every
    round times each model once, so a slower or busier moment of the machine hits all of them alike); the median
    round is reported. ``models``: {name: (model, tokenizer)}. Batch 1: ``n_single`` texts one at a time; batch B:
    B texts (the texts repeated when fewer) padded to their longest; pairs (``texts_b``) through the pair
    encoding. Returns {name: {"ms_b1": .., "ms_b32": ..}}."""
    rows = [(a, None if texts_b is None else b) for a, b in zip(texts, texts_b or [None] * len(texts))
            if a.strip()] or [("a short example", None if texts_b is None else "another one")]
    inputs: dict = {}
    for name, (model, tok) in models.items():
        if hasattr(model, "eval"):
            model.eval()
        per_bs = {}
        for bs in batch_sizes:
            chunk_rows = [[r] for r in rows[:n_single]] if bs == 1 else [(rows * (bs // len(rows) + 1))[:bs]]
            per_bs[bs] = [model_inputs(encode_texts(tok, [a for a, _ in c], None if texts_b is None else
                                                    [b for _, b in c], max_len=max_len)) for c in chunk_rows]
        inputs[name] = per_bs
        for bs in batch_sizes:   # warm-up
            model(**per_bs[bs][0])
    times: dict = {name: {bs: [] for bs in batch_sizes} for name in models}
    for _ in range(rounds):
        for name, (model, _tok) in models.items():
            for bs in batch_sizes:
                chunk = inputs[name][bs]
                t0 = time.perf_counter()
                for e in chunk:
                    model(**e)
                n = sum(int(e["input_ids"].shape[0]) for e in chunk)
                times[name][bs].append((time.perf_counter() - t0) / n * 1000)
    return {name: {f"ms_b{bs}": float(np.median(v)) for bs, v in per.items()} for name, per in times.items()}
