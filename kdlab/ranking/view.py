"""One query seen by a teacher and a student: both score the query's BM25 candidates; their rankings side by side
(dashboard page *Ranking*, notebook ``09_ranking``) and their softmax over the candidates at a temperature (the
listwise-KL view of the Temperature lab)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import KdlabError
from ..runs.store import Store
from . import bm25 as bm25_mod
from .data import RankingData, load_beir
from .models import BiEncoder, clamp_len, cross_scores


@dataclass
class QueryView:
    qid: str
    query: str
    candidates: np.ndarray     # doc indices: the query's BM25 top-k
    teacher: np.ndarray        # the cross-encoder's score of each candidate
    student: np.ndarray        # the bi-encoder's score of each candidate
    relevant: set              # relevant doc indices (test qrels)


def load_run_models(store: Store, student_run: str):
    """(bi-encoder, cross-encoder, its tokenizer, data, BM25 candidates) of a stored ranking student run."""
    from ..models.core import load_saved
    from ..runs.run_record import StoredRun
    rec = StoredRun.load(store, student_run)
    run = rec.row
    if not rec.is_ranking:
        raise KdlabError(f"run {run['id']} is not a ranking run")
    teacher_run = rec.teacher_run
    if not teacher_run:
        raise KdlabError(f"run {run['id']} has no teacher run (a contrastive student from a pretrained encoder): "
                         "choose a run distilled from a cross-encoder")
    if store.run(teacher_run)["method"] == "fused":
        raise KdlabError(f"run {run['id']} was distilled from the fused teacher (BM25 + a dense score), which has no "
                         "cross-encoder to show beside the student: choose a run distilled from a cross-encoder")
    t_dir, s_dir = store.artifact(teacher_run, "model_dir"), store.artifact(run["id"], "model_dir")
    if not (t_dir and Path(t_dir).exists() and s_dir and Path(s_dir).exists()):
        raise KdlabError(f"run {run['id']} or its teacher has no saved model: choose a finished run")
    teacher, tok = load_saved(t_dir)
    data = load_beir(rec.data, splits=("test",))
    k = int(((run["config"].get("ranking") or {}).get("rerank")) or 100)
    cands = bm25_mod.candidates(data, k, cache=bm25_mod.cache_dir(store.root))
    return BiEncoder.load(s_dir).eval(), teacher.eval(), tok, data, cands


def query_view(bi: BiEncoder, teacher, tok, data: RankingData, cands: dict, qid: str, *, k: int = 30,
               doc_len: int = 128) -> QueryView:
    idx = np.asarray(cands[qid][0][:k])
    q, docs = data.queries[qid], [data.docs[i] for i in idx]
    t = cross_scores(teacher, tok, [q] * len(docs), docs, max_len=clamp_len(teacher, doc_len)).numpy()
    s = BiEncoder.scores(bi.encode([q], kind="query"), bi.encode(docs, kind="doc"))[0].numpy()
    rel = {data.doc_index[d] for d, g in data.qrels["test"].get(qid, {}).items() if g > 0}
    return QueryView(qid, q, idx, t.astype(np.float64), s.astype(np.float64), rel)


def side_by_side(v: QueryView, data: RankingData, top: int = 10) -> list[dict]:
    """Rows rank 1..top: the teacher's document, the student's document (title, * = relevant) and scores."""
    ot, os_ = np.argsort(-v.teacher, kind="stable"), np.argsort(-v.student, kind="stable")

    def name(j):
        i = int(v.candidates[j])
        return ("* " if i in v.relevant else "") + f"{data.doc_ids[i]}: {data.docs[i][:70]}"
    return [{"rank": r + 1, "teacher": name(ot[r]), "teacher score": round(float(v.teacher[ot[r]]), 3),
             "student": name(os_[r]), "student score": round(float(v.student[os_[r]]), 3)}
            for r in range(min(top, len(v.candidates)))]
