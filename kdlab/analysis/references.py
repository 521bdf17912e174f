"""Published reference figures: what a backbone reaches on a GLUE task in the literature, with the source.

Data, not prose: ``ROWS`` holds one ``Ref`` per (backbone, task, source), in points (accuracy x 100 etc.).
A cell is left out when no source was found for it. ``metric`` is the metric the source reports; ``None`` where
the source's table does not say which of the task's metrics a cell is (MRPC, STS-B, QQP in the DistilBERT and
MiniLM tables). ``split`` is ``dev`` or ``test`` (the GLUE test server; only where no dev figure was found).

``lookup(task, backbones)`` gives the matching rows; ``weak_teacher`` the warning printed when a teacher is more
than ``WEAK_GAP`` points below the published figure of its own backbone on that task; ``block`` the lines that
``demo``, ``study``, ``eval --model``, the dashboard and the notebooks print (``for_run`` / ``for_study`` read
what they need from the run store).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

WEAK_GAP = 3.0   # points below the published figure of the teacher's backbone -> warning


@dataclass(frozen=True)
class Ref:
    backbone: str
    task: str
    value: float          # points
    metric: str | None    # accuracy, f1, pearson, mcc; None: the source does not say which
    split: str            # dev | test
    source: str


SOURCES = {
    "distilbert": "Sanh et al. 2019, DistilBERT (arXiv:1910.01108), Table 1: GLUE dev, median of 5 runs",
    "minilm": "Wang et al. 2020, MiniLM (arXiv:2002.10957): GLUE dev table in github.com/microsoft/unilm/"
              "blob/master/minilm/README.md",
    "turc": "Turc et al. 2019, Well-Read Students Learn Better (arXiv:1908.08962): GLUE test scores in "
            "github.com/google-research/bert/blob/master/README.md",
    "tinybert": "Jiao et al. 2020, TinyBERT (Findings of EMNLP 2020, arXiv:1909.10351), Table 1: GLUE test "
                "(as listed for the paper on paperswithcode.com)",
}

BACKBONES = {   # key -> label shown in tables
    "bert-base": "BERT-base (12L, 768)",
    "distilbert": "DistilBERT (6L, 768)",
    "minilm-l12": "MiniLM-L12xH384",
    "minilm-l6": "MiniLM-L6xH384",
    "tinybert4": "TinyBERT4 (4L, 312)",
    "bert-small": "BERT-Small (4L, 512)",
    "bert-mini": "BERT-Mini (4L, 256)",
    "bert-tiny": "BERT-Tiny (2L, 128)",
}

TASKS = ("sst2", "mrpc", "stsb", "rte", "cola", "qnli", "mnli", "qqp")
_METRIC = {"sst2": "accuracy", "rte": "accuracy", "qnli": "accuracy", "mnli": "accuracy", "cola": "mcc"}


def _rows(backbone: str, src: str, split: str, cells: dict, metrics: dict | None = None) -> list[Ref]:
    metrics = metrics or {}
    return [Ref(backbone, t, float(v), metrics.get(t, _METRIC.get(t)), split, SOURCES[src]) for t, v in cells.items()]


_TEST_METRICS = {"mrpc": "f1", "stsb": "pearson", "qqp": "f1"}   # GLUE test server: F1/acc, Pearson/Spearman
ROWS: tuple[Ref, ...] = tuple(
    _rows("bert-base", "distilbert", "dev", dict(cola=56.3, mnli=86.7, mrpc=88.6, qnli=91.8, qqp=89.6, rte=69.3,
                                                 sst2=92.7, stsb=89.0))
    + _rows("distilbert", "distilbert", "dev", dict(cola=51.3, mnli=82.2, mrpc=87.5, qnli=89.2, qqp=88.5, rte=59.9,
                                                    sst2=91.3, stsb=86.9))
    + _rows("bert-base", "minilm", "dev", dict(mnli=84.5, sst2=93.2, qnli=91.7, cola=58.9, rte=68.6, mrpc=87.3,
                                               qqp=91.3))
    + _rows("minilm-l12", "minilm", "dev", dict(mnli=85.7, sst2=93.0, qnli=91.5, cola=58.5, rte=73.3, mrpc=89.5,
                                                qqp=91.3))
    + _rows("minilm-l6", "minilm", "dev", dict(mnli=83.3, sst2=91.5, qnli=90.5, cola=47.5, rte=68.8, mrpc=88.9,
                                               qqp=90.6))
    + _rows("tinybert4", "tinybert", "test", dict(mnli=82.5, mrpc=86.4), _TEST_METRICS)
    + _rows("bert-small", "turc", "test", dict(cola=27.8, sst2=89.7, mrpc=83.4, stsb=78.8, qqp=68.1, mnli=77.6,
                                               qnli=86.4, rte=61.8), _TEST_METRICS)
    + _rows("bert-mini", "turc", "test", dict(cola=0.0, sst2=85.9, mrpc=81.1, stsb=75.4, qqp=66.4, mnli=74.8,
                                              qnli=84.1, rte=57.9), _TEST_METRICS)
    + _rows("bert-tiny", "turc", "test", dict(cola=0.0, sst2=83.2, mrpc=81.1, stsb=74.3, qqp=62.2, mnli=70.2,
                                              qnli=81.5, rte=57.2), _TEST_METRICS)
)

_TASK_ALIASES = {"sst-2": "sst2", "sst2": "sst2", "sts-b": "stsb", "stsb": "stsb", "sts_b": "stsb", "mnli-m": "mnli",
                 "mrpc": "mrpc", "rte": "rte", "cola": "cola", "qnli": "qnli", "mnli": "mnli", "qqp": "qqp"}


def task_key(task: str | None, data=None) -> str | None:
    """The reference-table task of a kdlab task name; ``sentiment`` (the default task) is SST-2 only when the
    data path names SST-2 (the embedded synthetic corpus has no published figure)."""
    name = str(task or "").strip().lower()
    if name in _TASK_ALIASES:
        return _TASK_ALIASES[name]
    if name == "sentiment" and data and re.search(r"sst-?2", str(data).lower()):
        return "sst2"
    return None


_NAME_PATTERNS = (   # checked in order on the lower-cased name or path
    (r"tinybert.*(4l|l-?4)", "tinybert4"),
    (r"minilm-l12|minilm_l12|l12-h384", "minilm-l12"),
    (r"minilm-l6|minilm_l6|l6-h384", "minilm-l6"),
    (r"distilbert", "distilbert"),
    (r"bert-tiny|l-2_h-128", "bert-tiny"),
    (r"bert-mini|l-4_h-256", "bert-mini"),
    (r"bert-small|l-4_h-512", "bert-small"),
    (r"bert-base|l-12_h-768", "bert-base"),
)
_SHAPES = {("bert", 12, 768): "bert-base", ("distilbert", 6, 768): "distilbert", ("bert", 12, 384): "minilm-l12",
           ("bert", 6, 384): "minilm-l6", ("bert", 4, 312): "tinybert4", ("bert", 4, 512): "bert-small",
           ("bert", 4, 256): "bert-mini", ("bert", 2, 128): "bert-tiny"}


def backbone_of(name=None, config: dict | None = None) -> str | None:
    """The reference backbone of a teacher: from its name (built-in ``minilm-l6``, a hub name, a folder), else
    from its ``config.json`` shape (model type, layers, hidden size); None when neither matches."""
    low = str(name or "").lower()
    for pattern, key in _NAME_PATTERNS:
        if re.search(pattern, low):
            return key
    if config:
        layers = config.get("num_hidden_layers", config.get("n_layers"))
        hidden = config.get("hidden_size", config.get("dim"))
        return _SHAPES.get((str(config.get("model_type", "")).lower(), layers, hidden))
    return None


def lookup(task: str | None, backbones=None) -> list[Ref]:
    """Rows for ``task`` (a kdlab or GLUE task name), for the given backbones in their order (all when None)."""
    key = task_key(task) or task
    rows = [r for r in ROWS if r.task == key]
    if backbones is None:
        return rows
    order = [b for b in dict.fromkeys(backbones) if b]
    return [r for b in order for r in rows if r.backbone == b]


def published(task: str | None, backbone: str | None) -> Ref | None:
    """The figure a teacher of ``backbone`` is held to: a dev row when there is one (else test), the highest."""
    rows = lookup(task, [backbone]) if backbone else []
    dev = [r for r in rows if r.split == "dev"] or rows
    return max(dev, key=lambda r: r.value) if dev else None


def weak_teacher(task: str | None, backbone: str | None, value, metric: str | None = None) -> str | None:
    """The warning line when ``value`` (the teacher's primary metric as kdlab stores it: a fraction, 0.83 for
    83 %) is more than ``WEAK_GAP`` points below the published figure of its backbone on ``task``; else None."""
    ref = published(task, backbone)
    if ref is None or value is None:
        return None
    pts = float(value) * 100
    gap = ref.value - pts
    if gap <= WEAK_GAP:
        return None
    caveat = ""
    if ref.metric is None:
        caveat = " (the source does not say which metric)"
    elif metric and ref.metric != metric:
        caveat = f" (published as {ref.metric}, the teacher's is {metric})"
    return (f"WARNING: weak teacher: {pts:.1f} on {ref.task} {ref.split}, {gap:.1f} points below the published "
            f"{ref.value:.1f} for {BACKBONES[ref.backbone]}{caveat}. Students have little to learn from it: train "
            "it longer or on more data (docs/RESULTS.md, 'Teachers worth distilling').")


def _fmt(r: Ref, n: int) -> str:
    return f"  {BACKBONES[r.backbone]:22s} {r.value:5.1f}  {r.split}, {r.metric or 'metric not stated'} [{n}]"


def block(task: str | None, backbone: str | None, value=None, metric: str | None = None, data=None) -> list[str]:
    """The lines to print under a result table: the teacher's backbone's rows, BERT-base and DistilBERT (the
    usual teacher and student of the literature), their sources, and the weak-teacher warning. [] when the
    task has no published row (the embedded corpus, a custom task)."""
    key = task_key(task, data)
    if key is None:
        return []
    rows = lookup(key, [backbone, "bert-base", "distilbert"])
    if not rows:
        return []
    sources = list(dict.fromkeys(r.source for r in rows))
    lines = [f"published reference rows ({key}, points):"]
    if value is not None:
        lines.append(f"  {'this teacher':22s} {float(value) * 100:5.1f}  dev, {metric or 'primary metric'} (measured)")
    lines += [_fmt(r, sources.index(r.source) + 1) for r in rows]
    if backbone is None:
        lines.append("  (the teacher's backbone has no published row here)")
    lines += [f"  [{i}] {src}" for i, src in enumerate(sources, 1)]
    warn = weak_teacher(key, backbone, value, metric)
    if warn:
        lines.append(warn)
    return lines


# ------------------------------------------------------------------------------------------- from the store
def _model_config(folder) -> dict | None:
    try:
        return json.loads((Path(str(folder)) / "config.json").read_text())
    except (OSError, ValueError, TypeError):
        return None


def teacher_facts(store, run_id: str) -> dict | None:
    """{task, data, backbone, value, metric} of the teacher of a stored run (the run itself when it is a teacher
    run); None when the run or its teacher is unknown."""
    try:
        run = store.run(run_id)
    except Exception:   # noqa: BLE001 - an unknown id: nothing to show
        return None
    if not run:
        return None
    conf = run.get("config") or {}
    if run.get("kind") != "teacher":
        tid = conf.get("teacher_run") or run.get("parent")
        if not tid:
            return None
        return teacher_facts(store, tid)
    spec = conf.get("task_spec") or {}
    metric = (spec.get("metrics") or ["accuracy"])[0]
    name = conf.get("teacher")
    backbone = backbone_of(name)
    if backbone is None:
        backbone = backbone_of(None, _model_config(store.artifact(run_id, "model_dir")))
    value = (store.final_evals(run_id).get("dev") or {}).get(metric)
    return {"task": spec.get("name"), "data": conf.get("data"), "backbone": backbone, "value": value,
            "metric": metric, "teacher": name}


def for_run(store, run_id: str) -> list[str]:
    """``block`` for the teacher of a stored run (the lines under demo / eval tables)."""
    f = teacher_facts(store, run_id)
    if not f:
        return []
    return block(f["task"], f["backbone"], f["value"], f["metric"], data=f["data"])


def for_study(store, name: str) -> list[str]:
    """``block`` for a study: the teacher of its first finished cell."""
    st = store.study(name)
    for rid in (st or {}).get("cells", {}).values():
        lines = for_run(store, rid)
        if lines:
            return lines
    return []


def split_warning(lines: list[str]) -> tuple[str, str | None]:
    """(the rows as one text block, the warning line or None): for a page that shows the warning apart."""
    warn = next((ln for ln in lines if ln.startswith("WARNING:")), None)
    return "\n".join(ln for ln in lines if ln is not warn), warn
