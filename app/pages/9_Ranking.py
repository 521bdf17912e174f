"""Ranking: one query of a ranking run, the cross-encoder teacher's ranking beside the bi-encoder student's, and
both models' softmax over the query's candidates at a temperature (what listwise KL distils)."""
import numpy as np
import streamlit as st
import torch

import common as C
from kdlab.analysis import viz
from kdlab.kd.ranking import listwise_kl
from kdlab.ranking.view import load_run_models, query_view, side_by_side

st.title("Ranking")
C.sidebar()


@st.cache_resource(show_spinner="loading the run's models")
def _models(root: str, run_id: str):
    """The run's bi-encoder, its cross-encoder teacher and tokenizer, the test data and the BM25 candidates."""
    from kdlab.runs.store import Store
    return load_run_models(Store(root), run_id)


runs = C.ranking_runs()
if not runs:
    st.info("no finished ranking runs yet: run e.g. `python -m kdlab distill --task ranking --method margin-mse "
            "--data ../shared/data/retrieval/scifact` (or `python -m kdlab demo --task ranking --data ...`)")
    st.stop()
by_id = {r["id"]: r for r in runs}
st.subheader("Reference rows and the finished runs")
with C.guard():
    from kdlab.ranking.baselines import run_table
    C.show(run_table(C.store(), runs), "rank_refs", hide_index=True, width="stretch")
st.caption("BM25 and the pretrained all-MiniLM-L6-v2 (no training) are measured on every test query once "
           "(`python -m kdlab.ranking.baselines BEIR_FOLDER RUNS/ranking-cache`, or the ranking demo); the published "
           "rows come from the BEIR paper (Table 2).")
with C.guard():
    run = by_id[st.selectbox("ranking student run", list(by_id), format_func=lambda i: C.run_label(by_id[i]),
                             key="rank_run")]
    bi, teacher, tok, data, cands = _models(str(C.runs_root()), run["id"])
    qids = data.split_queries("test")
    qid = st.selectbox("test query", qids[:200], format_func=lambda q: f"{q}: {data.queries[q][:90]}", key="rank_q")
    k = int(st.slider("candidates (BM25 top-k)", 5, 100, 30, 5, key="rank_k"))
    doc_len = int((run["config"].get("ranking") or {}).get("doc_len") or 128)
    v = query_view(bi, teacher, tok, data, cands, qid, k=k, doc_len=doc_len)

st.markdown(f"**query {qid}:** {v.query}  \nrelevant (test qrels): "
            + (", ".join(data.doc_ids[i] for i in sorted(v.relevant)) or "none") + " · `*` marks a relevant document")
st.caption("Both models score the same candidates (the query's BM25 top-k): the teacher reads query and document "
           "together, the student compares their embeddings.")
C.show(side_by_side(v, data, top=10), "rank_side_by_side", hide_index=True, width="stretch")

st.subheader("Temperature over the candidate list")
T = st.slider("temperature T", 0.5, 10.0, 1.0, 0.5, key="rank_T")
names = [f"{r + 1}·{data.doc_ids[i]}" for r, i in enumerate(v.candidates)]
C.show(viz.softened_distributions(v.teacher, v.student, T, names), "rank_dist")
loss = float(listwise_kl(torch.tensor(v.student)[None], torch.tensor(v.teacher)[None], T))
pt = viz.soften(v.teacher, T)
m = st.columns(3)
m[0].metric("teacher top probability", f"{pt.max():.3f}")
m[1].metric("teacher entropy (nats)", f"{viz.entropy(pt):.3f}")
m[2].metric(f"listwise KL loss T²·KL at T={T:g}", C.num(loss))
st.caption(f"Candidates in BM25 order (rank·doc id). The listwise-kl method distils these softmaxes "
           f"(`kdlab.kd.ranking.listwise_kl`); Margin-MSE fits score differences instead, so the scale of the "
           f"student's scores ({np.ptp(v.student):.2f} range here vs the teacher's {np.ptp(v.teacher):.2f}) is free.")
