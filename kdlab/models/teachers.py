"""Teachers that are not one model: soft labels from a file, and an ensemble of several teachers.

Both are small ``nn.Module`` s that give the distillation loop what a teacher gives it, through the
``kd_features(batch, need)`` hook of ``kdlab.models.features``: logits only, so they drive the logit-level methods
(``kd``, ``kd-mse``, ...) and a method that needs the teacher's layers or attention refuses them with one line
(``check_method``).

* ``SoftLabelTeacher`` (``--teacher-logits FILE``): one row of logits (or probabilities) per training example,
  e.g. produced offline by a large model. Formats (``load_soft_labels``):

  - ``.npy``: a float array [N, C], row i for the i-th training example as kdlab loads it (after
    ``--max-train`` and the dev carve-out; ``python -m kdlab`` uses the same seeded order every time);
  - ``.csv`` / ``.tsv``: a header row, a text column (``text`` or the data's text column name; for sentence
    pairs also the second text column) and C numeric columns; rows are matched to training examples by their
    text, so the file may hold more rows than the training split, in any order.

  Rows of non-negative values that sum to 1 are probabilities (classes tasks): they are turned into
  logits ``log p`` (the same softmax at T = 1; ``kd-mse`` then regresses log-probabilities). A score task has
  C = 1. The teacher is recorded as a teacher run "soft labels only" (nothing to evaluate).
* ``EnsembleTeacher`` (``--teacher A --teacher B ...``): the teachers (each prepared through the usual path:
  fine-tuned or reused) run on the same batch; the loss is either ``mean-probs`` (the KD loss to the mean of the
  teachers' softened distributions) or ``mean-kl`` (the mean of the per-teacher KD losses), chosen with
  ``--ensemble`` (``kdlab.methods.base.Method.teacher_soft_loss``, used by ``LogitKD.logit_terms`` and
  ``Method.kd_term``). The ensemble's own prediction (agreement metrics, and ``t.logits`` for a loss that reads it
  directly) is the log of the mean of the teachers' probabilities.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import KdlabError
from ..kd.objectives import ENSEMBLE_FORMS, ensemble_target
from ..records import Features, Need


def _logits_only(method_cls) -> str | None:
    """Why ``method_cls`` needs more of a teacher than its logits (None when logits are enough)."""
    need = method_cls.teacher_need
    if need.hidden or need.attentions or need.qkv or method_cls.needs_attentions or method_cls.defines("need"):
        return "it matches the teacher's layers or attention"
    if method_cls.trains_teacher:
        return "it trains the teacher"
    if method_cls.chain:
        return "it is a chain of runs that each need a teacher model"
    if method_cls.defines("make_student") or method_cls.defines("augment_train"):
        return "it builds its student or transfer set from the teacher model"
    return None


def check_method(method_cls, what: str) -> None:
    """Refuse, with one line, a method that cannot learn from ``what`` (soft labels, a teacher ensemble)."""
    if not method_cls.uses_teacher:
        raise KdlabError(f"method '{method_cls.name}' uses no teacher: drop {what}")
    why = _logits_only(method_cls)
    if why:
        raise KdlabError(f"method '{method_cls.name}' cannot learn from {what}, which give only logits: {why}; "
                         "use a logit-level method such as kd or kd-mse")


# ---------------------------------------------------------------------------------------------- soft labels
def _is_probs(a: np.ndarray) -> bool:
    return bool(a.size) and a.shape[1] > 1 and (a >= 0).all() and np.allclose(a.sum(1), 1.0, atol=1e-4)


def load_soft_labels(path, bundle) -> torch.Tensor:
    """The logits [N, C] of ``bundle.train``'s examples, in order, from ``path`` (see the module docstring)."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise KdlabError(f"the teacher-logits file '{path}' does not exist: give a .npy, .csv or .tsv file with one "
                         "row of logits per training example")
    train = bundle.train
    n, want = len(train), bundle.num_labels()
    if p.suffix.lower() == ".npy":
        try:
            a = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise KdlabError(f"cannot read the teacher-logits file '{path}' as a numpy array ({e})") from None
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2 or a.shape[0] != n:
            raise KdlabError(f"the teacher-logits file '{path}' has {a.shape[0] if a.ndim else 0} rows but the "
                             f"training split has {n} examples: give one row per training example, in order")
    elif p.suffix.lower() in (".csv", ".tsv"):
        a = _read_keyed(p, train, path)
    else:
        raise KdlabError(f"the teacher-logits file '{path}' must be .npy (one row per training example, in order) "
                         "or .csv/.tsv (a text column and one column per class)")
    if a.shape[1] != want:
        raise KdlabError(f"the teacher-logits file '{path}' has {a.shape[1]} values per row but the task "
                         f"'{bundle.task.name}' has {want} output(s): give one value per class (one for a score)")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise KdlabError(f"the teacher-logits file '{path}' holds non-finite values (nan or inf)")
    if bundle.task.kind == "classes" and _is_probs(a):
        a = np.log(np.clip(a, 1e-12, None))   # probabilities -> logits with the same softmax
    return torch.tensor(a, dtype=torch.float32)


def _read_keyed(p: Path, train, path) -> np.ndarray:
    delim = "\t" if p.suffix.lower() == ".tsv" else ","
    with p.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter=delim))
    if len(rows) < 2:
        raise KdlabError(f"the teacher-logits file '{path}' needs a header row and one row per training example")
    header = [h.strip() for h in rows[0]]
    pair = getattr(train, "texts_b", None) is not None
    text_cols = [i for i, h in enumerate(header) if h.lower() in ("text", "sentence", "text_a", "sentence1",
                                                                 "question", "premise")]
    b_cols = [i for i, h in enumerate(header) if h.lower() in ("text_b", "sentence2", "hypothesis")]
    if not text_cols or (pair and not b_cols):
        raise KdlabError(f"the teacher-logits file '{path}' has no text column{' pair' if pair else ''} (found "
                         f"{header}): name it 'text'{' and the second one text_b' if pair else ''}; the other "
                         "columns are the logits")
    keys = [text_cols[0]] + ([b_cols[0]] if pair else [])
    value_cols = [i for i in range(len(header)) if i not in keys]
    table = {}
    for r, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            vals = [float(row[i]) for i in value_cols]
        except (ValueError, IndexError):
            raise KdlabError(f"the teacher-logits file '{path}' line {r}: every column besides the text must be a "
                             f"number ({len(value_cols)} per row)") from None
        table[tuple(row[i] for i in keys)] = vals
    texts_b = train.texts_b if pair else [None] * len(train)
    out, missing = [], 0
    for t, b in zip(train.texts, texts_b):
        v = table.get((t,) if b is None else (t, b))
        missing += v is None
        out.append(v)
    if missing:
        raise KdlabError(f"the teacher-logits file '{path}' has no row for {missing} of the {len(train)} training "
                         "examples (rows are matched by their text): give one row per training example")
    return np.asarray(out, dtype=np.float64).reshape(len(out), len(value_cols))


def file_digest(path) -> str:
    return hashlib.sha256(Path(str(path)).expanduser().read_bytes()).hexdigest()[:16]


class SoftLabelTeacher(nn.Module):
    """A teacher given as a table of logits, one row per training example (looked up by ``batch['idx']``)."""
    soft_labels = True
    uncached = True   # already a table: the teacher cache has nothing to add

    def __init__(self, logits: torch.Tensor, config):
        super().__init__()
        self.register_buffer("table", logits.float())
        self.config = config   # the student's base model's: ModelInfo and the methods read shapes from it

    def kd_features(self, batch: dict, need: Need) -> Features:
        if need.hidden or need.attentions or need.qkv:
            raise KdlabError("a soft-label teacher (--teacher-logits) has only logits: this method needs its "
                             "layers or attention; use a logit-level method such as kd or kd-mse")
        if "idx" not in batch:
            raise KdlabError("a soft-label teacher (--teacher-logits) gives logits for training examples only")
        idx = batch["idx"].to(self.table.device)
        return Features(logits=self.table[idx], mask=batch["attention_mask"], heads=0)


# ---------------------------------------------------------------------------------------------- ensembles
class EnsembleTeacher(nn.Module):
    """Several teachers (same tokenizer) on the same batch; ``form`` in ``ENSEMBLE_FORMS``."""
    uncached = True   # the cache keeps one teacher's logits

    def __init__(self, teachers: list, form: str = "mean-probs", label_kind: str = "classes"):
        super().__init__()
        if form not in ENSEMBLE_FORMS:
            raise KdlabError(f"unknown ensemble form '{form}': use {' or '.join(ENSEMBLE_FORMS)}")
        self.teachers = nn.ModuleList(teachers)
        self.form, self.label_kind = form, label_kind
        self.config = teachers[0].config

    def kd_features(self, batch: dict, need: Need) -> Features:
        from .features import features
        if need.hidden or need.attentions or need.qkv:
            raise KdlabError("a teacher ensemble gives only logits: this method needs the teacher's layers or "
                             "attention; use a logit-level method such as kd or kd-mse")
        zs = [features(t, batch, Need()).logits for t in self.teachers]
        mean = ensemble_target(zs, 1.0, self.label_kind)   # the ensemble's prediction (mean probabilities)
        return Features(logits=mean, mask=batch["attention_mask"], heads=0,
                        extra={"ensemble": {"logits": zs, "form": self.form}})


def check_same_tokenizer(tokenizers: list, names: list) -> None:
    """An ensemble's teachers must tokenize alike (the batch is tokenized once)."""
    from .core import same_tokenizer
    for tok, name in zip(tokenizers[1:], names[1:]):
        if not same_tokenizer(tokenizers[0], tok):
            raise KdlabError(f"the teachers '{names[0]}' and '{name}' tokenize differently: an ensemble's teachers "
                             "must share a tokenizer")
