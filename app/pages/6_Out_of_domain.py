"""Out of domain: accuracy per domain with the drop, reliability and ECE, disagreements."""
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import common as C
from kdlab import viz
from kdlab.errors import KdlabError
from kdlab.evaluate import calibration_bins, ece, softmax

st.title("Out of domain")
C.sidebar()
store = C.store()

students = C.student_runs()
if not students:
    st.info("no finished student runs yet: train one on the Train page")
    st.stop()
by_id = {r["id"]: r for r in students}
sel = st.multiselect("students", list(by_id), default=list(by_id)[:2], format_func=lambda i: C.run_label(by_id[i]),
                     key="ood_runs")
if not sel:
    st.stop()

acc = {}
teachers = {by_id[i]["config"].get("teacher_run") for i in sel} - {None}
for tid in sorted(teachers):
    try:
        ev = store.final_evals(tid)
    except Exception:
        ev = {}
    if ev:
        acc["teacher" + (f" {tid[-4:]}" if len(teachers) > 1 else "")] = {k: v["accuracy"] for k, v in ev.items()}
for i in sel:
    ev = store.final_evals(i)
    acc[by_id[i]["name"]] = {k: v["accuracy"] for k, v in ev.items()}
st.plotly_chart(viz.domain_accuracy_bars(acc, "dev"), key="ood_bars")
drops = viz.drop_table(acc, "dev")
st.dataframe(pd.DataFrame(drops).T.drop(columns=["dev"], errors="ignore").add_prefix("drop ").round(4),
             key="ood_drop_table")

st.subheader("Calibration and disagreements")
with C.guard():
    splits = list(C.bundle().eval_splits())
    split_name = st.selectbox("evaluation set", splits, index=min(1, len(splits) - 1), key="ood_split")
    run = by_id[st.selectbox("student", sel, format_func=lambda i: C.run_label(by_id[i]), key="ood_student")]
    sp = C.split_texts(split_name)
    max_len = int(run["config"].get("train", {}).get("max_len", 64))
    s_dir = store.artifact(run["id"], "model_dir")
    if not s_dir or not Path(s_dir).exists():
        raise KdlabError(f"run '{run['name']}' has no saved model (status {run['status']}): pick a finished run")
    t_dir = store.artifact(run["config"].get("teacher_run"), "model_dir") if run["config"].get("teacher_run") else None
    texts = tuple(sp.texts)
    labels = np.asarray(sp.labels)
    probs = {"student": softmax(C.logits_for(s_dir, texts, max_len))}
    if t_dir:
        probs["teacher"] = softmax(C.logits_for(t_dir, texts, max_len))
    bins = {k: calibration_bins(p, labels) for k, p in probs.items()}
    eces = {k: ece(p, labels) for k, p in probs.items()}
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(viz.reliability_diagram(bins, eces), key="ood_reliability")
    c2.dataframe(pd.DataFrame({k: {"ECE": round(v, 4),
                                   "accuracy": round(float((probs[k].argmax(1) == labels).mean()), 4)}
                               for k, v in eces.items()}).T, key="ood_ece")
    if "teacher" in probs:
        sp_, tp_ = probs["student"].argmax(1), probs["teacher"].argmax(1)
        dis = np.nonzero(sp_ != tp_)[0]
        names = C.bundle().label_names
        c2.metric("student-teacher agreement", f"{1 - len(dis) / max(1, len(labels)):.3f}")
        st.markdown(f"**{len(dis)} examples where student and teacher disagree** ({split_name})")
        st.dataframe(pd.DataFrame([{"text": sp.texts[i], "label": names[labels[i]], "teacher": names[tp_[i]],
                                    "p_teacher": round(float(probs['teacher'][i].max()), 3),
                                    "student": names[sp_[i]], "p_student": round(float(probs['student'][i].max()), 3)}
                                   for i in dis[:200]]), key="ood_disagree")
