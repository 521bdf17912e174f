"""Tasks as data: what a dataset's rows mean.

A ``Task`` names its text fields (one, or two for a sentence pair), its label column and label kind
(``classes`` with their names, a real-valued ``score``, or ``multi``: several labels at once), its metrics
(the first is the primary metric, shown first everywhere) and the label mappings under which an out-of-domain
set with other labels is scored (e.g. SciTail's entails/neutral for an entailment model).

``ranking`` (kind ``ranking``) is a BEIR retrieval folder: queries, a corpus and relevance judgements, run by
``kdlab.ranking`` (a cross-encoder teacher distilled into a bi-encoder student).

Built in: the GLUE tasks (recognised by folder name, e.g. ``--data ../shared/data/glue/RTE``, or chosen with
``--task rte`` for any file) and ``sentiment`` (the default: one ``sentence`` column, classes read from the
training labels). Anything else: ``--text-col a,b --label-col y --label-kind classes|score|multi``.
A resolved task (``resolve``) is stored with every run (``Task.to_dict``), so evaluating a stored run reads
its files the same way.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .errors import KdlabError

KINDS = ("classes", "score", "multi")
METRICS = {"classes": ("accuracy", "macro_f1", "f1", "mcc"), "score": ("pearson", "spearman", "mse"),
           "multi": ("micro_f1", "macro_f1", "subset_accuracy")}
ENTAILMENT_TO_SCITAIL = {"entailment": "entails", "not_entailment": "neutral"}
NLI3_TO_SCITAIL = {"entailment": "entails", "neutral": "neutral", "contradiction": "neutral"}


@dataclass(frozen=True)
class Task:
    name: str
    text_cols: tuple = ("sentence",)          # one column, or two for a sentence pair
    label_col: str = "label"
    kind: str = "classes"                      # classes | score | multi
    label_names: tuple | None = None           # classes (index = class id); None = read from the training labels
    metrics: tuple = ("accuracy", "macro_f1")  # the first is the primary metric
    columns: tuple | None = None               # the column names of a file without a header line (CoLA)
    ood_maps: tuple = ()                       # built-in {model label: OOD label} mappings, tried in order
    multi_sep: str = ","                       # multi-label: labels of one row separated by this

    @property
    def pair(self) -> bool:
        return len(self.text_cols) == 2

    @property
    def primary(self) -> str:
        return self.metrics[0]

    def num_labels(self) -> int:
        return 1 if self.kind == "score" else len(self.label_names or ())

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ood_maps"] = [dict(m) for m in self.ood_maps]
        return d

    @staticmethod
    def from_dict(d: dict) -> "Task":
        d = dict(d)
        for k in ("text_cols", "label_names", "metrics", "columns"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        d["ood_maps"] = tuple(_frozen(m) for m in d.get("ood_maps") or ())
        known = {f.name for f in dataclasses.fields(Task)}
        return Task(**{k: v for k, v in d.items() if k in known})

    def with_(self, **kw) -> "Task":
        return dataclasses.replace(self, **kw)


def _frozen(m: dict):
    return tuple(sorted(dict(m).items()))


def run_primary_metric(run: dict) -> str:
    """The primary metric of a stored run (its recorded task); accuracy for runs stored before tasks."""
    return (((run.get("config") or {}).get("task_spec") or {}).get("metrics") or ["accuracy"])[0]


def ood_map_dicts(task: Task) -> list[dict]:
    return [dict(m) for m in task.ood_maps]


_ENT = ("entailment", "not_entailment")
BUILTIN: dict[str, Task] = {t.name: t for t in (
    Task("sentiment"),
    Task("cola", ("sentence",), "label", "classes", ("unacceptable", "acceptable"), ("mcc", "accuracy", "macro_f1"),
         columns=("source", "label", "orig", "sentence")),
    Task("sst2", ("sentence",), "label", "classes", ("negative", "positive"), ("accuracy", "macro_f1")),
    Task("mrpc", ("#1 String", "#2 String"), "Quality", "classes", ("not_paraphrase", "paraphrase"),
         ("f1", "accuracy", "macro_f1")),
    Task("qqp", ("question1", "question2"), "is_duplicate", "classes", ("not_duplicate", "duplicate"),
         ("f1", "accuracy", "macro_f1")),
    Task("sts-b", ("sentence1", "sentence2"), "score", "score", None, ("pearson", "spearman", "mse")),
    Task("mnli", ("sentence1", "sentence2"), "gold_label", "classes", ("entailment", "neutral", "contradiction"),
         ("accuracy", "macro_f1"), ood_maps=(_frozen(NLI3_TO_SCITAIL),)),
    Task("qnli", ("question", "sentence"), "label", "classes", _ENT, ("accuracy", "macro_f1"),
         ood_maps=(_frozen(ENTAILMENT_TO_SCITAIL),)),
    Task("rte", ("sentence1", "sentence2"), "label", "classes", _ENT, ("accuracy", "macro_f1"),
         ood_maps=(_frozen(ENTAILMENT_TO_SCITAIL),)),
    Task("wnli", ("sentence1", "sentence2"), "label", "classes", ("not_entailment", "entailment"),
         ("accuracy", "macro_f1")),
    # queries, a corpus and qrels (a BEIR folder): a cross-encoder teacher, a bi-encoder student (kdlab.ranking)
    Task("ranking", ("query", "document"), "qrels", "ranking", None, ("ndcg@10", "mrr@10", "recall@100")),
    # a prompt/completion or plain-text corpus: a causal LM teacher, a causal LM student (kdlab.lm)
    Task("lm", ("prompt", "completion"), "completion", "lm", None, ("perplexity", "token_kl", "top1_agreement")),
)}
ALIASES = {"embedded-nli": "mnli", "stsb": "sts-b", "sts_b": "sts-b", "sst-2": "sst2", "mnli-m": "mnli", "mnli_matched": "mnli"}
# other names the same two fields go by in evaluation files (an OOD set need not use the task's column names)
PAIR_ALIASES = (("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"),
                ("question", "sentence"), ("#1 String", "#2 String"), ("text_a", "text_b"), ("text1", "text2"))
LABEL_ALIASES = ("label", "gold_label", "score", "Quality", "is_duplicate", "labels")


def get_task(name: str) -> Task:
    key = ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in BUILTIN:
        raise KdlabError(f"unknown task '{name}': the built-in tasks are {', '.join(sorted(BUILTIN))}; for other "
                         "data use --text-col a,b --label-col y --label-kind classes|score|multi")
    return BUILTIN[key]


def task_of_path(spec) -> Task | None:
    """The built-in GLUE task a data path names by its folder (``.../glue/RTE`` or ``.../glue/RTE/dev.tsv``)."""
    if spec is None:
        return None
    p = Path(str(spec)).expanduser()
    for part in ([p.name] if p.is_dir() or not p.suffix else []) + [p.parent.name]:
        key = ALIASES.get(part.lower(), part.lower())
        if key in BUILTIN and key not in ("sentiment", "sst2"):
            return BUILTIN[key]
    return None


def split_cols(text_col) -> tuple:
    if text_col is None:
        return ()
    cols = tuple(c.strip() for c in (text_col.split(",") if isinstance(text_col, str) else text_col))
    if not cols or any(not c for c in cols) or len(cols) > 2:
        raise KdlabError(f"--text-col takes one column or two separated by a comma (e.g. --text-col "
                         f"sentence1,sentence2), got {text_col!r}")
    return cols


def resolve(data=None, *, task=None, text_col=None, label_col=None, label_kind=None) -> Task:
    """The task a run uses: ``task`` (a name) or the GLUE folder ``data`` names, else sentiment; explicit
    ``text_col`` ('a' or 'a,b'), ``label_col`` and ``label_kind`` override it."""
    if isinstance(task, Task):
        base = task
    elif task:
        base = get_task(task)
    else:
        base = task_of_path(data) or BUILTIN["sentiment"]
    kw = {}
    cols = split_cols(text_col)
    if cols and cols != base.text_cols:
        if base.pair and len(cols) == 1 and base.name != "custom":
            raise KdlabError(f"task '{base.name}' pairs two texts ({', '.join(base.text_cols)}) but --text-col names "
                             f"one column ({cols[0]!r}): name two, e.g. --text-col {','.join(base.text_cols)}")
        kw["text_cols"] = cols
        kw["columns"] = None if base.columns is None or not all(c in base.columns for c in cols) else base.columns
    if label_col and label_col != base.label_col:
        kw["label_col"] = label_col
    if label_kind and label_kind != base.kind:
        if label_kind not in KINDS:
            raise KdlabError(f"--label-kind must be classes, score or multi (got {label_kind!r})")
        kw.update(kind=label_kind, label_names=None, metrics=METRICS[label_kind][:2] if label_kind != "classes"
                  else ("accuracy", "macro_f1"), ood_maps=())
        if label_kind == "score":
            kw["metrics"] = ("pearson", "spearman", "mse")
    if kw:
        custom = base.name == "sentiment" and ("kind" in kw or len(kw.get("text_cols", ())) == 2)
        base = base.with_(name="custom" if custom else base.name, **kw)
    return base


def parse_ood_map(s) -> dict | None:
    """``'entailment=entails,neutral=neutral'`` (model label = OOD label) -> dict; a dict passes through."""
    if s in (None, "", {}):
        return None
    if isinstance(s, dict):
        return {str(k): str(v) for k, v in s.items()}
    out = {}
    for part in str(s).split(","):
        if "=" not in part or not part.split("=", 1)[0].strip() or not part.split("=", 1)[1].strip():
            raise KdlabError(f"--ood-map takes model_label=ood_label pairs separated by commas (e.g. --ood-map "
                             f"entailment=entails,neutral=neutral,contradiction=neutral), got {s!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out
