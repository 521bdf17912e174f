"""``load_data(spec, ...) -> DataBundle``: embedded corpus, TSV/CSV/JSONL files, GLUE folders, hub.

Every user mistake raises ``KdlabError`` with one message naming the problem and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from kdlab.errors import KdlabError
from kdlab.safety import looks_like_path
from kdlab.tasks import BUILTIN, LABEL_ALIASES, PAIR_ALIASES, Task, ood_map_dicts, parse_ood_map
from kdlab.tasks import resolve as resolve_task

EXTENSIONS = (".tsv", ".csv", ".jsonl")
REPO_ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_DIR = REPO_ROOT / "data" / "embedded"
EMBEDDED_OOD = ("ood_restaurant", "ood_electronics")
EMBEDDED_NLI_DIR = REPO_ROOT / "data" / "embedded-nli"   # kdlab.data.synth_nli: MNLI-shaped, SciTail-shaped OOD

csv.field_size_limit(1 << 30)


@dataclass
class Split:
    name: str  # "train", "dev", "ood_restaurant", or a file stem
    texts: list[str]
    labels: list  # class ids (classes), floats (score) or multi-hot lists (multi)
    domain: str  # "in-domain" for train/dev, otherwise the OOD set name
    texts_b: list[str] | None = None  # the second text of each pair (pair tasks)
    label_names: list[str] | None = None  # an evaluation set's own classes when they differ from the model's
    label_map: list[int] | None = None    # model class -> this set's class (scored through a label mapping)

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class DataBundle:
    name: str
    identity: str  # sha256 over label names and the contents of all splits: a cache key
    label_names: list[str]
    train: Split
    dev: Split
    ood: dict[str, Split] = field(default_factory=dict)
    task: Task = field(default_factory=lambda: BUILTIN["sentiment"])

    def num_labels(self) -> int:
        return 1 if self.task.kind == "score" else len(self.label_names)

    def eval_splits(self) -> dict[str, Split]:
        return {"dev": self.dev, **self.ood}


# ------------------------------------------------------------------------------------------------
# raw reading: a file -> (texts, raw labels as str/int)

def _read_text(path: Path) -> str:
    if not path.exists():
        raise KdlabError(f"data file not found: {path}. Check the path, or pass a folder "
                         f"with train.tsv and dev.tsv.")
    if path.is_dir():
        raise KdlabError(f"expected a data file but {path} is a folder; pass the folder itself "
                         f"as the data spec, or a .tsv/.csv/.jsonl file.")
    try:
        raw = path.read_bytes()
    except PermissionError:
        raise KdlabError(f"cannot read data file {path}: permission denied. Fix the file's "
                         f"permissions or copy it somewhere readable.") from None
    except OSError as e:
        raise KdlabError(f"cannot read data file {path}: {e.strerror or e}. "
                         f"Pass a readable .tsv/.csv/.jsonl file.") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KdlabError(f"cannot read data file {path}: it is not UTF-8 text (bad byte at "
                         f"offset {e.start}; is it a binary or compressed file?). Pass a UTF-8 "
                         f".tsv/.csv/.jsonl file.") from None
    if "\x00" in text:
        raise KdlabError(f"cannot read data file {path}: it contains NUL bytes, so it looks like "
                         f"a binary file, not text. Pass a UTF-8 .tsv/.csv/.jsonl file.")
    return text


def _columns_error(path: Path, found, text_col, label_col: str) -> KdlabError:
    cols = tuple(text_col) if isinstance(text_col, (tuple, list)) else (text_col,)
    missing = [c for c in (*cols, label_col) if c not in found]
    return KdlabError(
        f"{path}: column(s) {', '.join(repr(c) for c in missing)} not found; the columns found are "
        f"{list(found)}. Use --text-col/--label-col (text_col=/label_col=) to name the text and "
        f"label columns.")


def _empty_error(path: Path) -> KdlabError:
    return KdlabError(f"{path} has no data rows (empty data). Pass a file with a header line and "
                      f"at least one row.")


def _read_file(path: Path, text_col: str, label_col: str) -> tuple[list[str], list]:
    texts, labels, _ = _read_rows(path, (text_col,), label_col)
    return texts, labels


def _pick_columns(path, header, text_cols, label_col, aliases: bool):
    """Indices of the text column(s) and the label column in ``header``; an evaluation file (``aliases``) may
    name the same fields differently (premise/hypothesis for sentence1/sentence2)."""
    text_cols = tuple(text_cols)
    if aliases and not all(c in header for c in text_cols):
        if len(text_cols) == 2:
            text_cols = next((p for p in PAIR_ALIASES if all(c in header for c in p)), text_cols)
    if aliases and label_col not in header:
        label_col = next((c for c in LABEL_ALIASES if c in header), label_col)
    missing = [c for c in text_cols if c not in header]
    if len(text_cols) == 2 and missing and label_col in header:
        raise KdlabError(f"{path}: the task pairs two texts, columns {text_cols[0]!r} and {text_cols[1]!r}, but "
                         f"column(s) {', '.join(repr(c) for c in missing)} are not in the file (columns found: "
                         f"{list(header)}). Name the file's two text columns with --text-col a,b.")
    if missing or label_col not in header:
        raise _columns_error(path, header, text_cols, label_col)
    return [header.index(c) for c in text_cols], header.index(label_col), text_cols


def _read_rows(path: Path, text_cols, label_col: str, *, columns=None, aliases: bool = False
               ) -> tuple[list[str], list, list[str] | None]:
    """(first texts, raw labels, second texts or None) of one file; ``columns``: the column names of a file
    without a header line (used when the first row is not a header)."""
    text_cols = tuple(text_cols)
    text_col = text_cols[0]
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise KdlabError(f"unsupported data file type {path.name!r}: use a .tsv, .csv or .jsonl "
                         f"file.")
    content = _read_text(path)
    texts: list[str] = []
    texts_b: list[str] = []
    labels: list = []
    if ext == ".jsonl":
        lines = content.splitlines()
        first_keys = None
        row = 0
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise KdlabError(f"{path}: line {lineno} is not valid JSON ({e.msg}). Each line "
                                 f"must be one JSON object.") from None
            if not isinstance(obj, dict):
                raise KdlabError(f"{path}: line {lineno} is not a JSON object. Each line must be "
                                 f"one object like {{\"{text_col}\": ..., \"{label_col}\": ...}}.")
            if first_keys is None:
                first_keys = list(obj)
                _, _, text_cols = _pick_columns(path, first_keys, text_cols, label_col, aliases)
                text_col = text_cols[0]
                if label_col not in obj:
                    label_col = next((c for c in LABEL_ALIASES if c in obj), label_col)
            for c in text_cols:
                _check_row(path, row, f"line {lineno}", obj.get(c), obj.get(label_col), c, label_col)
            texts.append(str(obj[text_col]))
            if len(text_cols) == 2:
                texts_b.append(str(obj[text_cols[1]]))
            labels.append(obj[label_col])
        if not texts:
            raise _empty_error(path)
        return texts, labels, (texts_b if len(text_cols) == 2 else None)

    if ext == ".tsv":
        reader = csv.reader(content.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        import io
        reader = csv.reader(io.StringIO(content, newline=""))
    spans = []   # (first line, last line, fields) of each record: a quoted field may run over several lines
    try:
        for r in reader:
            first = spans[-1][1] + 1 if spans else 1
            spans.append((first, reader.line_num, r))
    except csv.Error as e:
        raise KdlabError(f"{path}: cannot parse the file ({e}). Check the quoting and the "
                         f"delimiter (.tsv = tab, .csv = comma).") from None
    # skip fully blank lines
    rows = [(i, r) for i, end, r in spans if r and any(c.strip() for c in r)]
    for i, end, r in spans:
        if end > i and r and any(c.strip() for c in r):
            raise KdlabError(f"{path}: the row starting on line {i} runs on to line {end}: a quote opened on line {i} "
                             "is not closed (or a quoted text holds a line break), which would merge rows. Close the "
                             "quote, double a quote inside a text (\"\"), or remove the line break.")
    if not rows:
        raise _empty_error(path)
    _, header = rows[0]
    header = [h.strip() for h in header]
    data_rows = rows[1:]
    if columns and not (label_col in header and all(c in header for c in text_cols)):
        header, data_rows = list(columns), rows   # a file without a header line (CoLA)
    tis, li, text_cols = _pick_columns(path, header, text_cols, label_col, aliases)
    if not data_rows:
        raise _empty_error(path)
    for row, (lineno, r) in enumerate(data_rows, 1):
        if len(r) > len(header):
            raise KdlabError(f"{path}: row {row} (line {lineno}) has {len(r)} fields but the "
                             f"header has {len(header)}; the text probably contains the "
                             f"delimiter. Remove stray tabs/commas or quote the field (.csv).")
        if len(r) < len(header) and max(*tis, li) >= len(r):
            raise KdlabError(f"{path}: row {row} (line {lineno}) has {len(r)} field(s) but the header has "
                             f"{len(header)}; its text or label is missing (a line break inside the text splits a "
                             "row in two). Put each example on one line with every field.")
        ts = [r[ti] if ti < len(r) else None for ti in tis]
        lab = r[li] if li < len(r) else None
        for t, c in zip(ts, text_cols):
            _check_row(path, row, f"line {lineno}", t, lab, c, header[li])
        texts.append(ts[0])
        if len(ts) == 2:
            texts_b.append(ts[1])
        labels.append(lab.strip())
    return texts, labels, (texts_b if len(text_cols) == 2 else None)


def _check_row(path, row, where, text, label, text_col, label_col):
    if text is None or (isinstance(text, str) and not text.strip()):
        raise KdlabError(f"{path}: row {row} ({where}) has a missing or empty text "
                         f"({text_col!r}). Fill it in or remove the row.")
    if label is None or (isinstance(label, str) and not label.strip()):
        raise KdlabError(f"{path}: row {row} ({where}) has a missing or empty label "
                         f"({label_col!r}). Fill it in or remove the row.")


# ------------------------------------------------------------------------------------------------
# labels

def _as_int(v):
    """int for ints / integral floats / digit strings, else None."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        if s.lstrip("-").isdigit():
            return int(s)
    return None


def _label_scheme(train_labels: list, source: str, names_hint=None):
    """Decide the mapping raw label -> id from the train labels. Returns (to_id, label_names)."""
    ints = [_as_int(v) for v in train_labels]
    words = [v for v, i in zip(train_labels, ints) if i is None]
    if words and len(words) < len(ints):   # numbers and words in one label column: a typo, not a label set
        number = next(v for v, i in zip(train_labels, ints) if i is not None)
        raise KdlabError(f"{source}: the labels mix numbers (e.g. {number!r}) with other values "
                         f"(e.g. {words[0]!r}). Fix those labels, or use label names throughout.")
    if all(i is not None for i in ints):
        classes = sorted(set(ints))
        if len(classes) < 2:
            raise KdlabError(f"{source}: the training data has only one label class "
                             f"({classes[0]!r}); a classifier needs at least two. Use a train "
                             f"file with examples of every class.")
        if classes != list(range(len(classes))):
            raise KdlabError(f"{source}: numeric labels must be the contiguous set "
                             f"0..{len(classes) - 1}, found {classes}. Renumber the labels "
                             f"(e.g. 0 = negative, 1 = positive).")
        if names_hint and len(names_hint) == len(classes):
            names = [str(n) for n in names_hint]
        elif len(classes) == 2:
            names = ["negative", "positive"]
        else:
            names = [str(c) for c in classes]
        return (lambda v: _as_int(v)), names
    classes = sorted({str(v).strip() for v in train_labels})
    if len(classes) < 2:
        raise KdlabError(f"{source}: the training data has only one label class "
                         f"({classes[0]!r}); a classifier needs at least two. Use a train file "
                         f"with examples of every class.")
    index = {c: i for i, c in enumerate(classes)}

    def to_id(v):
        return index.get(str(v).strip())

    to_id.named = True
    return to_id, classes


def _declared_scheme(names, train_labels=()):
    """Classes declared by the task (index = class id): a label is a class name or its id."""
    names = [str(n) for n in names]
    index = {n: i for i, n in enumerate(names)}

    def to_id(v):
        i = _as_int(v)
        if i is not None:
            return i
        return index.get(str(v).strip())

    to_id.named = any(_as_int(v) is None for v in train_labels) if train_labels else True
    return to_id, names


def _as_float(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        x = float(str(v).strip())
    except ValueError:
        return None
    return x if x == x and abs(x) != float("inf") else None


def _multi_names(raw, sep: str) -> list[str]:
    return sorted({x.strip() for v in raw for x in _multi_items(v, sep)})


def _multi_items(v, sep: str) -> list[str]:
    if isinstance(v, (list, tuple)):
        return [str(x).strip() for x in v if str(x).strip()]
    return [x.strip() for x in str(v).split(sep) if x.strip()]


def _scheme(task: Task, train_raw: list, source: str, names_hint=None):
    """(to_id, label names) of a task's labels, read from the training labels where the task declares none."""
    if task.kind == "score":
        return _as_float, ["score"]
    if task.kind == "multi":
        names = list(task.label_names) if task.label_names else _multi_names(train_raw, task.multi_sep)
        if len(names) < 2:
            raise KdlabError(f"{source}: the training data has only {len(names)} distinct label(s); a multi-label "
                             "task needs at least two. Use a train file with examples of every label.")
        return None, names
    if task.label_names:
        return _declared_scheme(task.label_names, train_raw)
    return _label_scheme(train_raw, source, names_hint)


def _task_labels(raw: list, to_id, names: list[str], source: str, task: Task) -> list:
    """Raw labels -> class ids (classes), floats (score) or multi-hot lists (multi); a bad row raises."""
    if task.kind == "score":
        out = []
        for row, v in enumerate(raw, 1):
            x = _as_float(v)
            if x is None:
                raise KdlabError(f"{source}: row {row} (data row after the header) has score {v!r}, which is not "
                                 f"a number; the task '{task.name}' has real-valued scores ({task.label_col!r}). Fix "
                                 "the value, or pass --label-kind classes if the labels are classes.")
            out.append(x)
        return out
    if task.kind == "multi":
        index = {n: i for i, n in enumerate(names)}
        out = []
        for row, v in enumerate(raw, 1):
            hot = [0.0] * len(names)
            for x in _multi_items(v, task.multi_sep):
                if x not in index:
                    raise KdlabError(f"{source}: row {row} (data row after the header) has label {x!r}, which is not "
                                     f"one of the task's labels {names}. Fix the label, or add examples of it to "
                                     "the training file.")
                hot[index[x]] = 1.0
            out.append(hot)
        return out
    return _map_labels(raw, to_id, names, source)


def _eval_labels(raw: list, to_id, names: list[str], source: str, task: Task, ood_map=None):
    """(labels, own label names or None, model class -> own class or None) of an evaluation file: the model's
    own labels, or (classes only) another label set scored through ``ood_map`` or the task's built-in mapping."""
    explicit = parse_ood_map(ood_map) if task.kind == "classes" else None
    candidates = [explicit] if explicit else ood_map_dicts(task)
    if task.kind != "classes" or not candidates or all(
            (i := to_id(v)) is not None and 0 <= i < len(names) for v in raw):
        return _task_labels(raw, to_id, names, source, task), None, None   # (a bad label raises there)
    found = {str(v).strip() for v in raw}
    chosen = None
    for m in candidates:
        if explicit:
            unknown = sorted(set(m) - set(names))
            missing = [n for n in names if n not in m]
            if unknown or missing:
                raise KdlabError(f"--ood-map must map each class of the model {names} to a label of {source}: "
                                 + (f"{unknown} are not classes of the model" if unknown else
                                    f"{missing} not mapped") + " (e.g. --ood-map "
                                 + ",".join(f"{n}=LABEL" for n in names) + ").")
        if found <= set(m.values()) or explicit:
            chosen = m
            break
    if chosen is None:
        bad = next(v for v in raw if (i := to_id(v)) is None or not 0 <= i < len(names))
        row = raw.index(bad) + 1
        raise KdlabError(f"{source}: row {row} has label {bad!r}, which is not one of the model's classes {names}, and "
                         f"no label mapping covers this file's labels {sorted(found)}: pass --ood-map "
                         + ",".join(f"{n}=LABEL" for n in names) + " (model class = label in this file).")
    own = list(dict.fromkeys(chosen[n] for n in names))
    index = {n: i for i, n in enumerate(own)}
    labels = []
    for row, v in enumerate(raw, 1):
        k = str(v).strip()
        if k not in index:
            raise KdlabError(f"{source}: row {row} has label {v!r}, which the label mapping "
                             f"{', '.join(f'{a}={b}' for a, b in chosen.items())} does not reach (its labels: {own}). "
                             "Fix the label or pass a mapping that covers it with --ood-map.")
        labels.append(index[k])
    return labels, own, [index[chosen[n]] for n in names]


def _map_labels(raw: list, to_id, names: list[str], source: str) -> list[int]:
    out = []
    n = len(names)
    for row, v in enumerate(raw, 1):
        i = to_id(v)
        if i is None or not (0 <= i < n):
            if getattr(to_id, "named", False):
                allowed = "{" + ", ".join(repr(x) for x in names) + "}"
            else:
                allowed = ("{" + ", ".join(str(k) for k in range(n)) + "} ("
                           + ", ".join(f"{k}={x}" for k, x in enumerate(names)) + ")")
            raise KdlabError(f"{source}: row {row} (data row after the header) has label {v!r}, "
                             f"which is not in the allowed train label set {allowed}. Fix the "
                             f"label, or use files that share one label set.")
        out.append(i)
    return out


# ------------------------------------------------------------------------------------------------
# helpers

def _subsample(split: Split, n, seed: int) -> Split:
    if n is None or n >= len(split):
        return split
    if n <= 0:
        raise KdlabError(f"max_train/max_eval must be a positive number, got {n}.")
    keep = sorted(random.Random(f"{seed}:{split.name}").sample(range(len(split)), n))
    return Split(split.name, [split.texts[i] for i in keep], [split.labels[i] for i in keep],
                 split.domain, None if split.texts_b is None else [split.texts_b[i] for i in keep],
                 split.label_names, split.label_map)


def _carve_dev(texts, labels, dev_fraction: float, seed: int, source):
    n = len(texts)
    if not 0 < dev_fraction < 1:
        raise KdlabError(f"dev_fraction must be between 0 and 1, got {dev_fraction}.")
    if n < 2:
        raise KdlabError(f"{source}: only {n} row(s); need at least 2 to carve out a dev split. "
                         f"Add rows or pass a dev file.")
    n_dev = min(n - 1, max(1, round(n * dev_fraction)))
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    dev_idx, train_idx = sorted(perm[:n_dev]), sorted(perm[n_dev:])
    return ([texts[i] for i in train_idx], [labels[i] for i in train_idx],
            [texts[i] for i in dev_idx], [labels[i] for i in dev_idx])


def _identity(label_names, splits: list[Split], task: Task | None = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(label_names).encode())
    if task is not None and task.name != "sentiment":   # (the sentiment identity is unchanged)
        h.update(json.dumps([task.name, task.kind, list(task.text_cols)]).encode())
    for s in splits:
        h.update(f"\x00split:{s.name}:{s.domain}:{len(s)}\x00".encode())
        for t, y in zip(s.texts, s.labels):
            h.update(f"{y}\t{t}\n".encode("utf-8"))
        if s.texts_b is not None:
            h.update("\x00b".join(s.texts_b).encode("utf-8"))
        if s.label_map is not None:
            h.update(json.dumps([s.label_names, s.label_map]).encode())
    return h.hexdigest()


def _find(folder: Path, stem: str):
    for ext in EXTENSIONS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


# ------------------------------------------------------------------------------------------------

def load_data(spec=None, *, text_col=None, label_col=None, ood=None,
              dev_fraction: float = 0.1, max_train=None, max_eval=None, seed: int = 0, task=None,
              label_kind=None, ood_map=None) -> DataBundle:
    """Load a dataset as a ``DataBundle``.

    spec: None / "embedded" (the committed synthetic corpus, with its two OOD sets), "embedded-nli" (the synthetic
    NLI corpus, task mnli, with its SciTail-shaped OOD set ``ood_science``),
    a .tsv/.csv/.jsonl file (dev carved out with ``dev_fraction`` unless the file is ``train.*``
    with a sibling ``dev.*``), a folder with ``train.*`` (+ ``dev.*``), or a hub dataset name
    (``name`` or ``name/config``). ``ood``: list of files, each an OOD split named by its stem
    (None = none, except for the embedded corpus, whose two OOD sets come by default).
    The task (``kdlab.tasks``): ``task`` (a name or a ``Task``), else the GLUE task the folder names, else
    sentiment; ``text_col`` ('a' or 'a,b'), ``label_col`` and ``label_kind`` override it. ``ood_map``
    ('model_label=ood_label,...') scores OOD sets with other labels (default: the task's built-in mapping).
    """
    if isinstance(spec, str) and spec.strip().lower() == "embedded-nli":   # the synthetic NLI corpus (MNLI task)
        if not (EMBEDDED_NLI_DIR / "train.tsv").is_file():
            from kdlab.data import synth_nli
            synth_nli.write(EMBEDDED_NLI_DIR)
        spec, task = EMBEDDED_NLI_DIR, task or "mnli"
        ood = [EMBEDDED_NLI_DIR / "ood_science.tsv"] if ood is None else ood
    the_task = resolve_task(spec if isinstance(spec, (str, Path)) else None, task=task, text_col=text_col,
                            label_col=label_col, label_kind=label_kind)
    text_col, label_col = the_task.text_cols[0], the_task.label_col
    ood_specs = list(ood) if ood is not None else None
    if isinstance(ood, (str, Path)):
        ood_specs = [ood]

    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "embedded"):
        name = "kdlab synthetic sentiment (embedded)"
        files = {s: EMBEDDED_DIR / f"{s}.tsv" for s in ("train", "dev") + EMBEDDED_OOD}
        if all(p.is_file() for p in files.values()):
            raw = {s: _read_file(p, "sentence", "label") for s, p in files.items()}
            sources = {s: str(p) for s, p in files.items()}
        else:
            from kdlab.data import synth
            gen = synth.generate()
            raw = {s: ([t for t, _ in rows], [y for _, y in rows]) for s, rows in gen.items()}
            sources = {s: f"embedded:{s}" for s in raw}
        train_t, train_y = raw["train"]
        dev_t, dev_y = raw["dev"]
        to_id, names = _label_scheme(train_y, sources["train"])
        train = Split("train", train_t, _map_labels(train_y, to_id, names, sources["train"]),
                      "in-domain")
        dev = Split("dev", dev_t, _map_labels(dev_y, to_id, names, sources["dev"]), "in-domain")
        oods = {}
        if ood_specs is None:
            for s in EMBEDDED_OOD:
                t, y = raw[s]
                oods[s] = Split(s, t, _map_labels(y, to_id, names, sources[s]), s)
        return _finish(name, names, to_id, train, dev, oods, ood_specs or [], the_task, ood_map,
                       max_train, max_eval, seed)

    p = Path(os.path.expanduser(str(spec)))
    if p.exists():
        if p.is_dir():
            train_p = _find(p, "train")
            if train_p is None:
                found = sorted(x.name for x in p.iterdir())[:20]
                raise KdlabError(f"data folder {p} has no train.tsv/train.csv/train.jsonl "
                                 f"(found: {found}). Add a train file or pass a file directly.")
            dev_p = _find(p, "dev") or _find(p, "validation")
            name = p.resolve().name
        else:
            train_p = p
            dev_p = _find(p.parent, "dev") if p.stem.lower() == "train" else None
            name = p.stem if p.stem.lower() != "train" else f"{p.resolve().parent.name}"
        cols, lab, hdr = the_task.text_cols, the_task.label_col, the_task.columns
        texts, ys, texts_b = _read_rows(train_p, cols, lab, columns=hdr)
        if dev_p is not None:
            dev_t, dev_raw, dev_b = _read_rows(dev_p, cols, lab, columns=hdr)
            dev_src = str(dev_p)
        else:
            both = list(zip(texts, texts_b)) if texts_b is not None else texts
            both, ys, dev_both, dev_raw = _carve_dev(both, ys, dev_fraction, seed, train_p)
            if texts_b is not None:
                texts, texts_b = [a for a, _ in both], [b for _, b in both]
                dev_t, dev_b = [a for a, _ in dev_both], [b for _, b in dev_both]
            else:
                texts, dev_t, dev_b = both, dev_both, None
            dev_src = f"{train_p} (dev carved out)"
        to_id, names = _scheme(the_task, ys, str(train_p))
        if the_task.kind != "score":
            the_task = the_task.with_(label_names=tuple(names))
        train = Split("train", texts, _task_labels(ys, to_id, names, str(train_p), the_task), "in-domain", texts_b)
        dev = Split("dev", dev_t, _task_labels(dev_raw, to_id, names, dev_src, the_task), "in-domain", dev_b)
        return _finish(name, names, to_id, train, dev, {}, ood_specs or [], the_task, ood_map,
                       max_train, max_eval, seed)

    spec = str(spec)
    if looks_like_path(spec):
        raise KdlabError(f"data file or folder not found: {spec}. Check the path (a .tsv/.csv/"
                         f".jsonl file or a folder with train.tsv and dev.tsv).")
    return _load_hub(spec, text_col, label_col, ood_specs or [], dev_fraction, max_train,
                     max_eval, seed, the_task, ood_map)


def _finish(name, names, to_id, train, dev, oods, ood_specs, task, ood_map, max_train,
            max_eval, seed) -> DataBundle:
    if task.kind == "classes" and tuple(names) != task.label_names:
        task = task.with_(label_names=tuple(names))
    for o in ood_specs:
        op = Path(os.path.expanduser(str(o)))
        if not op.exists():
            raise KdlabError(f"OOD data file not found: {op}. Check the path passed to --ood.")
        t, y, tb = _read_rows(op, task.text_cols, task.label_col, columns=task.columns, aliases=True)
        stem = op.stem
        if stem in oods or stem in ("train", "dev"):
            stem = f"ood_{stem}"
        labels, own, lmap = _eval_labels(y, to_id, names, str(op), task, ood_map)
        oods[stem] = Split(stem, t, labels, stem, tb, own, lmap)
    train = _subsample(train, max_train, seed)
    dev = _subsample(dev, max_eval, seed)
    oods = {k: _subsample(v, max_eval, seed) for k, v in oods.items()}
    ident = _identity(names, [train, dev, *oods.values()], task)
    return DataBundle(name=name, identity=ident, label_names=list(names), train=train, dev=dev,
                      ood=oods, task=task)


def _load_hub(spec, text_col, label_col, ood_specs, dev_fraction, max_train, max_eval, seed,
              task=None, ood_map=None):
    task = task or BUILTIN["sentiment"]
    fix = (f"The machine may be offline. Pass a local file or folder instead (e.g. a folder "
           f"with train.tsv and dev.tsv); no local file or folder named {spec!r} exists.")
    try:
        import datasets
    except ImportError:
        raise KdlabError(f"dataset {spec!r} could not be fetched from the hub: the 'datasets' "
                         f"package is not installed (pip install datasets). {fix}") from None
    parts = spec.split("/")
    attempts = []
    if len(parts) == 2:
        attempts = [(parts[0], parts[1]), (spec, None)]
    elif len(parts) == 3:
        attempts = [("/".join(parts[:2]), parts[2])]
    else:
        attempts = [(spec, None)]
    ds, last = None, None
    for path, config in attempts:
        try:
            ds = (datasets.load_dataset(path, config) if config
                  else datasets.load_dataset(path))
            break
        except Exception as e:  # offline, unknown name, bad config ...
            last = e
    if ds is None:
        why = f"{type(last).__name__}: {str(last).splitlines()[0][:200] if str(last) else ''}"
        raise KdlabError(f"dataset {spec!r} could not be fetched from the hub ({why}). {fix}")
    if "train" not in ds:
        raise KdlabError(f"hub dataset {spec!r} has no 'train' split (splits: {list(ds)}). "
                         f"Pass a local file or folder instead.")
    tr = ds["train"]
    cols = list(tr.column_names)
    pick = _hub_columns(spec, cols, task, text_col, label_col)
    text_cols, label_col = pick[:-1], pick[-1]
    names_hint = None
    feat = tr.features.get(label_col) if hasattr(tr, "features") else None
    if feat is not None and getattr(feat, "names", None):
        names_hint = list(feat.names)

    def read(part):
        a = [str(t) for t in part[text_cols[0]]]
        b = [str(t) for t in part[text_cols[1]]] if len(text_cols) == 2 else None
        return a, b, list(part[label_col])

    texts, texts_b, ys = read(tr)
    eval_name = next((n for n in ("validation", "validation_matched", "dev", "test") if n in ds), None)
    if eval_name is not None:
        dev_t, dev_b, dev_raw = read(ds[eval_name])
        dev_src = f"{spec}[{eval_name}]"
    else:
        both = list(zip(texts, texts_b)) if texts_b is not None else texts
        both, ys, dev_both, dev_raw = _carve_dev(both, ys, dev_fraction, seed, spec)
        texts, texts_b = ([a for a, _ in both], [b for _, b in both]) if texts_b is not None else (both, None)
        dev_t, dev_b = ([a for a, _ in dev_both], [b for _, b in dev_both]) if texts_b is not None else (dev_both, None)
        dev_src = f"{spec}[train, dev carved out]"
    for i, (t, y) in enumerate(zip(texts, ys), 1):
        _check_row(f"{spec}[train]", i, "hub row", t, y, text_cols[0], label_col)
    task = task.with_(text_cols=tuple(text_cols), label_col=label_col, columns=None)
    to_id, names = _scheme(task, ys, f"{spec}[train]", names_hint)
    if task.kind != "score":
        task = task.with_(label_names=tuple(names))
    train = Split("train", texts, _task_labels(ys, to_id, names, f"{spec}[train]", task), "in-domain", texts_b)
    dev = Split("dev", dev_t, _task_labels(dev_raw, to_id, names, dev_src, task), "in-domain", dev_b)
    return _finish(spec, names, to_id, train, dev, {}, ood_specs, task, ood_map, max_train, max_eval, seed)


def _hub_columns(spec, cols, task, text_col, label_col) -> tuple:
    """(text column(s) ..., label column) of a hub dataset: the task's, else the usual other names of the same
    fields (``PAIR_ALIASES``: premise/hypothesis for the hub's MNLI; ``text`` for one text; ``LABEL_ALIASES``)."""
    if task.pair:
        found = next((c for c in (task.text_cols, *PAIR_ALIASES) if all(x in cols for x in c)), None)
        if found is None:
            raise KdlabError(f"hub dataset {spec!r}: task '{task.name}' pairs two texts but none of the column "
                             f"pairs {', '.join('/'.join(c) for c in (task.text_cols, *PAIR_ALIASES))} is among its "
                             f"columns {cols}: name them with --text-col a,b")
        texts = tuple(found)
    else:
        t = text_col if text_col in cols else ("text" if "text" in cols else text_col)
        texts = (t,)
    lab = label_col if label_col in cols else next((c for c in LABEL_ALIASES if c in cols), label_col)
    if any(c not in cols for c in texts) or lab not in cols:
        raise _columns_error(Path(spec), cols, texts[0], lab)
    return (*texts, lab)


def load_eval_file(path, label_names, *, text_col=None, label_col=None, task=None, ood_map=None) -> Split:
    """One labeled file as a single evaluation split, labels checked against a model's label set. ``task``
    (a ``Task`` or its dict, e.g. the one stored with a run) says how to read it; a file whose classes differ
    from the model's is scored through ``ood_map`` or the task's built-in mapping."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise KdlabError(f"data file not found: {p}. Check the path (a labeled .tsv/.csv/.jsonl file).")
    if isinstance(task, dict):
        task = Task.from_dict(task)
    if task is None:
        task = resolve_task(None, text_col=text_col or "sentence", label_col=label_col or "label")
    elif text_col or label_col:
        task = resolve_task(None, task=task, text_col=text_col, label_col=label_col)
    texts, raw, texts_b = _read_rows(p, task.text_cols, task.label_col, columns=task.columns, aliases=True)
    names = [str(n) for n in label_names]
    if task.kind == "score":
        to_id = _as_float
    elif task.kind == "multi":
        to_id = None
    elif all(_as_int(v) is not None for v in raw):
        to_id = _as_int
    else:
        to_id, _ = _declared_scheme(names, raw)
    labels, own, lmap = _eval_labels(raw, to_id, names, str(p), task, ood_map)
    return Split(p.stem, texts, labels, p.stem, texts_b, own, lmap)
