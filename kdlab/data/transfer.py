"""Transfer sets: more texts for the student to learn the teacher's outputs on (Distilled BiLSTM, TinyBERT).

``--transfer FILE`` adds the rows of FILE to the training split: a ``.txt`` file (one text per line, unlabeled;
a tab separates the two texts of a pair) or a ``.tsv`` / ``.csv`` / ``.jsonl`` file with the task's text
column(s) and, optionally, its label column (an empty cell or a missing column = unlabeled). ``--augment`` adds
augmented copies of the training texts (``kdlab.data.augment``: masking, nearest-neighbour replacement, n-grams),
unlabeled. Distillation methods learn from the teacher's outputs on every row; the hard-label term sees only
rows with a gold label (an unlabeled row carries ``UNLABELED``, masked in ``Method.hard_loss``). A method without
a teacher (``ce``) gets only the labeled rows. ``--max-train N`` with a larger transfer set is the "few labels"
setting. The teacher is fine-tuned on the labeled training split only.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
from pathlib import Path

import torch

from ..errors import KdlabError

UNLABELED = -100   # a class id no class has (also torch's ignore_index); a score / multi-label row: NaN


def unlabeled(kind: str, num_labels: int):
    if kind == "score":
        return float("nan")
    if kind == "multi":
        return [float("nan")] * num_labels
    return UNLABELED


def is_labeled(y) -> bool:
    if isinstance(y, (list, tuple)):
        return all(isinstance(v, (int, float)) and not math.isnan(v) for v in y)
    if isinstance(y, float):
        return not math.isnan(y)
    return y != UNLABELED


def labeled_mask(labels: torch.Tensor) -> torch.Tensor | None:
    """Rows of a batch's ``labels`` that have a gold label, or None when all have one."""
    if labels.is_floating_point():
        mask = torch.isfinite(labels) if labels.dim() == 1 else torch.isfinite(labels).all(dim=1)
    else:
        mask = labels != UNLABELED
    return None if bool(mask.all()) else mask


def read_transfer(path, task, label_names) -> tuple[list[str], list[str] | None, list]:
    """(texts, second texts or None, labels with ``UNLABELED`` where a row has none) of a transfer file."""
    from .loaders import _read_text
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".txt", ".tsv", ".csv", ".jsonl"):
        raise KdlabError(f"--transfer: unsupported file type {path.name!r}: use a .txt file (one text per line) "
                         "or a .tsv/.csv/.jsonl file with the task's text column(s)")
    content = _read_text(path)
    cols, lab = tuple(task.text_cols), task.label_col
    if ext == ".txt":
        rows = [line.split("\t") if task.pair else [line] for line in content.splitlines() if line.strip()]
        if task.pair and any(len(r) != 2 for r in rows):
            raise KdlabError(f"--transfer {path}: the task pairs two texts: write them on one line separated by a tab")
        records = [dict(zip(cols, r)) for r in rows]
    elif ext == ".jsonl":
        try:
            records = [json.loads(line) for line in content.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise KdlabError(f"--transfer {path}: a line is not valid JSON ({e.msg})") from None
    else:
        reader = csv.DictReader(io.StringIO(content, newline=""), delimiter="\t" if ext == ".tsv" else ",",
                                quoting=csv.QUOTE_NONE if ext == ".tsv" else csv.QUOTE_MINIMAL)
        records = [{(k or "").strip(): v for k, v in r.items()} for r in reader]
    if not records:
        raise KdlabError(f"--transfer {path} has no rows")
    missing = [c for c in cols if c not in records[0]]
    if missing:
        raise KdlabError(f"--transfer {path}: column(s) {missing} not found (columns: {list(records[0])}); the "
                         f"transfer set needs the task's text column(s) {list(cols)}")
    kind, C = task.kind, len(label_names or ())
    texts, texts_b, labels = [], [], []
    for i, r in enumerate(records, 1):
        t = r.get(cols[0])
        if not isinstance(t, str) or not t.strip():
            raise KdlabError(f"--transfer {path}: row {i} has an empty text in column {cols[0]!r}")
        texts.append(t)
        if task.pair:
            texts_b.append(str(r.get(cols[1]) or ""))
        labels.append(_label(r.get(lab), kind, label_names, C, path, i))
    return texts, (texts_b if task.pair else None), labels


def _label(v, kind, names, C, path, i):
    if v is None or (isinstance(v, str) and not v.strip()):
        return unlabeled(kind, C)
    if kind == "score":
        try:
            return float(v)
        except (TypeError, ValueError):
            raise KdlabError(f"--transfer {path}: row {i}: the score {v!r} is not a number") from None
    if kind == "multi":
        raise KdlabError(f"--transfer {path}: labeled rows of a multi-label task are not supported: leave the label "
                         "column out (the rows are then learned from the teacher only)")
    s = str(v).strip()
    if names and s in names:
        return names.index(s)
    try:
        k = int(float(s))
    except ValueError:
        k = -1
    if 0 <= k < C:
        return k
    raise KdlabError(f"--transfer {path}: row {i}: unknown label {v!r} (the task's labels: {list(names or [])})")


def extend_train(bundle, cfg, tokenizer, teacher, method_cls, log=print):
    """``bundle`` with the transfer set (``cfg.transfer``) and augmented copies (``cfg.augment``) added to its
    training split. A method without a teacher gets only labeled rows."""
    transfer, augment = getattr(cfg, "transfer", None), bool(getattr(cfg, "augment", False))
    if not transfer and not augment:
        return bundle
    task, train = bundle.task, bundle.train
    uses_teacher = method_cls.uses_teacher
    if augment and method_cls.name == "bilstm":
        raise KdlabError("the bilstm method augments its transfer set itself (--set n_samples=N): drop --augment")
    texts, texts_b, labels = [], [] if train.texts_b is not None else None, []
    h = hashlib.sha256(bundle.identity.encode())
    if transfer:
        t, tb, y = read_transfer(transfer, task, bundle.label_names)
        texts += t
        labels += y
        if texts_b is not None:
            texts_b += tb or [""] * len(t)
        h.update(json.dumps([t, tb, [str(v) for v in y]]).encode())
    if augment and uses_teacher:
        from .augment import augment_split
        args = dict(getattr(cfg, "augment_args", None) or {})
        aug = augment_split(train, tokenizer, teacher, seed=cfg.train.seed, max_len=cfg.train.max_len,
                            label=False, **args)
        n0 = len(train)
        texts += aug.texts[n0:]
        labels += [unlabeled(task.kind, bundle.num_labels())] * (len(aug) - n0)
        if texts_b is not None:
            texts_b += aug.texts_b[n0:]
        h.update(json.dumps(["augment", args, cfg.train.seed]).encode())
    keep = [i for i, y in enumerate(labels) if uses_teacher or is_labeled(y)]
    if len(keep) < len(labels):
        log(f"{method_cls.name}: no teacher, so the {len(labels) - len(keep)} unlabeled transfer rows are left out")
    if uses_teacher and not method_cls.accepts_unlabeled and any(not is_labeled(y) for y in labels):
        raise KdlabError(f"method '{method_cls.name}' uses every row's gold label: give it a labeled transfer set "
                         "(no --augment)")
    if not keep:
        return bundle
    new = dataclasses.replace(train, texts=list(train.texts) + [texts[i] for i in keep],
                              labels=list(train.labels) + [labels[i] for i in keep],
                              texts_b=None if texts_b is None else list(train.texts_b) + [texts_b[i] for i in keep])
    n_lab = sum(is_labeled(labels[i]) for i in keep)
    log(f"{method_cls.name}: transfer set of {len(keep)} rows ({n_lab} labeled) added to {len(train)} training rows")
    return dataclasses.replace(bundle, train=new, identity=h.hexdigest()[:32])
