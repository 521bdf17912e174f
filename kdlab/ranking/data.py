"""A BEIR-format retrieval folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/{train,test}.tsv``.

Only ``_id``, ``title`` and ``text`` are read: a query's ``metadata`` (SciFact's gold evidence) never reaches a
model. A document's text is ``title + " " + text``. Train queries whose text equals a test query's are dropped
from training (SciFact has two), so the test set stays leak-free. Every qrels file is checked: every id it names
must exist, and every query it names must have a positive (score > 0) document.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import KdlabError

FILES = ("corpus.jsonl", "queries.jsonl", "qrels")


def is_beir(path) -> bool:
    """True when ``path`` is a folder laid out like a BEIR dataset (corpus.jsonl, queries.jsonl, qrels/)."""
    if path is None:
        return False
    p = Path(str(path)).expanduser()
    return p.is_dir() and (p / "corpus.jsonl").exists() and (p / "queries.jsonl").exists()


@dataclass
class RankingData:
    """Queries, a corpus and relevance judgements. ``doc_ids[i]`` / ``docs[i]``: the corpus in file order;
    ``qrels[split]``: {query id: {doc id: grade}} with grade > 0 = relevant."""
    name: str
    doc_ids: list
    docs: list
    queries: dict                       # query id -> text (train and test)
    qrels: dict                         # split -> {qid: {did: grade}}
    identity: str                       # sha256 of the files: a cache key
    dropped: list = field(default_factory=list)   # train query ids dropped as duplicates of test queries
    doc_index: dict = field(default_factory=dict)

    def __post_init__(self):
        self.doc_index = {d: i for i, d in enumerate(self.doc_ids)}

    def split_queries(self, split: str) -> list:
        return list(self.qrels.get(split, {}))

    def positives(self, split: str, qid: str) -> list:
        return [d for d, g in self.qrels[split][qid].items() if g > 0]


def _read_jsonl(path: Path, what: str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise KdlabError(f"{path} line {n} is not JSON ({e.msg}): {what} must be one JSON object per line") \
                    from None
            if not isinstance(d, dict) or "_id" not in d:
                raise KdlabError(f"{path} line {n} has no \"_id\": each {what} line is {{\"_id\", ...}}")
            rows.append(d)
    return rows


def read_qrels(path: Path) -> dict:
    """{qid: {did: grade}} from a BEIR qrels TSV (header ``query-id corpus-id score``; CRLF line ends read fine)."""
    out: dict = {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t")
        head = next(rows, None)
        if head is None:
            raise KdlabError(f"{path} is empty: a qrels file has a header line and rows query-id, corpus-id, score")
        for n, r in enumerate(rows, 2):
            if not r or not "".join(r).strip():
                continue
            if len(r) < 3:
                raise KdlabError(f"{path} line {n} has {len(r)} fields: qrels rows are query-id<TAB>corpus-id<TAB>score")
            try:
                grade = int(float(r[2]))
            except ValueError:
                raise KdlabError(f"{path} line {n}: the score {r[2]!r} is not a number") from None
            out.setdefault(r[0].strip(), {})[r[1].strip()] = grade
    return out


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def load_beir(folder, *, splits=("train", "test")) -> RankingData:
    """Read and check a BEIR folder. Raises one ``KdlabError`` line for an empty corpus, qrels naming unknown
    ids, or a judged query without a positive document."""
    root = Path(str(folder)).expanduser()
    if not is_beir(root):
        raise KdlabError(f"'{folder}' is not a BEIR retrieval folder: a ranking run needs corpus.jsonl, "
                         "queries.jsonl and qrels/train.tsv, qrels/test.tsv")
    corpus = _read_jsonl(root / "corpus.jsonl", "corpus")
    if not corpus:
        raise KdlabError(f"the corpus {root / 'corpus.jsonl'} is empty: a ranking run needs documents to rank")
    doc_ids = [str(d["_id"]) for d in corpus]
    docs = [(str(d.get("title") or "") + " " + str(d.get("text") or "")).strip() for d in corpus]
    queries = {str(q["_id"]): str(q.get("text") or "") for q in _read_jsonl(root / "queries.jsonl", "query")}
    known_docs = set(doc_ids)
    qrels, files = {}, [root / "corpus.jsonl", root / "queries.jsonl"]
    for split in splits:
        path = root / "qrels" / f"{split}.tsv"
        if not path.exists():
            raise KdlabError(f"{path} is missing: a ranking run needs qrels/train.tsv and qrels/test.tsv")
        q = read_qrels(path)
        bad_q = sorted(set(q) - set(queries))
        bad_d = sorted({d for row in q.values() for d in row} - known_docs)
        if bad_q or bad_d:
            what = (f"query id(s) {', '.join(bad_q[:3])} not in queries.jsonl" if bad_q else
                    f"document id(s) {', '.join(bad_d[:3])} not in corpus.jsonl")
            raise KdlabError(f"{path} names unknown ids ({what}): fix the qrels or the corpus/queries files")
        empty = [qid for qid, row in q.items() if not any(g > 0 for g in row.values())]
        if empty:
            raise KdlabError(f"{path}: query {empty[0]} has no positive document (every score is 0): each judged "
                             "query needs a relevant document (score > 0); drop the query from the qrels")
        if not q:
            raise KdlabError(f"{path} has no rows: a ranking run needs judged queries")
        qrels[split] = q
        files.append(path)
    dropped = []
    if "train" in qrels and "test" in qrels:   # leak-free test: no train query repeats a test query's text
        test_texts = {_norm(queries[t]) for t in qrels["test"]}
        dropped = [qid for qid in qrels["train"] if _norm(queries[qid]) in test_texts]
        for qid in dropped:
            del qrels["train"][qid]
    return RankingData(name=root.name, doc_ids=doc_ids, docs=docs, queries=queries, qrels=qrels,
                       identity=_digest(files), dropped=dropped)


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def take_train_queries(qids, max_train: int | None, seed: int = 0) -> list:
    """The training query ids used: all of ``qids``, or ``max_train`` of them drawn with ``seed``, in order."""
    qids = list(qids)
    if max_train is not None and max_train < len(qids):
        keep = set(np.random.default_rng(seed).choice(len(qids), size=max_train, replace=False).tolist())
        qids = [q for i, q in enumerate(qids) if i in keep]
    return qids


# the dev split of a ranking run (student selection, the fused teacher's weight): this fraction of the training
# queries, drawn with this seed (fixed: every run and seed of a folder selects on the same queries)
DEV_FRAC, DEV_SEED = 0.2, 0


def carve_dev(qids, frac: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """(train, dev): ``frac`` of the TRAINING query ids drawn with ``seed`` as a dev split (model selection and
    the fused teacher's weight), the rest kept for training; both in the given order. The test qrels stay unseen."""
    qids = list(qids)
    n = int(round(len(qids) * float(frac)))
    if not 0 < n < len(qids):
        raise KdlabError(f"a dev split of {frac:g} of {len(qids)} training queries is empty or takes them all: "
                         "use a fraction between 0 and 1 that leaves queries on both sides")
    dev = set(np.random.default_rng(seed).choice(len(qids), size=n, replace=False).tolist())
    return [q for i, q in enumerate(qids) if i not in dev], [q for i, q in enumerate(qids) if i in dev]


def write_beir(folder, docs: dict, queries: dict, qrels: dict) -> Path:
    """Write a small BEIR folder (tests, notebooks): ``docs`` {id: (title, text)}, ``queries`` {id: text},
    ``qrels`` {split: {qid: {did: grade}}}."""
    root = Path(folder)
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as f:
        for did, (title, text) in docs.items():
            f.write(json.dumps({"_id": did, "title": title, "text": text, "metadata": {}}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text, "metadata": {}}) + "\n")
    for split, rows in qrels.items():
        with open(root / "qrels" / f"{split}.tsv", "w", newline="") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\r\n")
            w.writerow(["query-id", "corpus-id", "score"])
            for qid, row in rows.items():
                for did, g in row.items():
                    w.writerow([qid, did, g])
    return root
