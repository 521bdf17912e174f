"""Out of domain: the task's primary metric per domain with the drop, size and speed beside it; reliability and ECE
(classes), prediction vs gold (scores); disagreements between student and teacher, with both texts of a pair."""
import numpy as np
import pandas as pd
import streamlit as st

import common as C
from kdlab.analysis import viz
from kdlab.errors import KdlabError
from kdlab.analysis.evaluate import calibration_bins, metrics
from kdlab.analysis.explain import class_disagreements, label_set_disagreements, score_differences

st.title("Out of domain")
C.sidebar()
store = C.store()


def keep_valid(key: str, options: list):
    """Forget a widget's remembered value when it is no longer among its options (another run or task)."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


students = C.student_runs()
if not students:
    st.info("no finished student runs yet: train one on the Train page")
    st.stop()
tasks = {r["id"]: C.task_of(r) for r in students}
task_names = list(dict.fromkeys(t.name for t in tasks.values()))
if len(task_names) > 1:
    cur = C.resolved_task(C.setup()["data"]).name
    keep_valid("ood_task", task_names)
    tname = st.selectbox("task", task_names, index=task_names.index(cur) if cur in task_names else 0, key="ood_task",
                         help="the runs of one task are compared; each stored run records its task")
else:
    tname = task_names[0]
by_id = {r["id"]: r for r in students if tasks[r["id"]].name == tname}
task = tasks[next(iter(by_id))]
sel = st.multiselect("students", list(by_id), default=list(by_id)[:2], format_func=lambda i: C.run_label(by_id[i]),
                     key=f"ood_runs::{tname}")
if not sel:
    st.stop()
metric = st.selectbox("metric", list(task.metrics), index=0, key=f"ood_metric::{tname}",
                      help=f"the first is the task's primary metric ({task.primary})")

acc, shown, labels = {}, [], {}
teachers = sorted({C.teacher_run_of(by_id[i]) for i in sel} - {None})
for tid in teachers:
    try:
        trun, ev = store.run(tid), store.final_evals(tid)
    except KdlabError:
        continue
    if ev:
        name = "teacher" + (f" {tid[-4:]}" if len(teachers) > 1 else "")
        acc[name] = {k: v.get(metric) for k, v in ev.items()}
        shown.append(trun)
        labels[tid] = name
for i in sel:
    acc[by_id[i]["name"]] = {k: v.get(metric) for k, v in store.final_evals(i).items()}
    shown.append(by_id[i])
C.show(viz.domain_accuracy_bars(acc, "dev", metric), "ood_bars")
drops = viz.drop_table(acc, "dev")
C.show(pd.DataFrame(drops).T.drop(columns=["dev"], errors="ignore").add_prefix("drop ").round(4), "ood_drop_table")
st.markdown(f"**{metric} beside size and speed**")
C.show(pd.DataFrame(C.size_rows(shown, metric, labels)).set_index("model"), "ood_size_table")
st.caption("MB: the model folder on disk; params and ms per example (batch 1, CPU) as measured when the run "
           "finished. Compressed models: Deploy page.")

kind = task.kind
st.subheader("Calibration and disagreements" if kind == "classes" else "Predictions and disagreements")
with C.guard():
    keep_valid("ood_student", sel)
    run = by_id[st.selectbox("student", sel, format_func=lambda i: C.run_label(by_id[i]), key="ood_student")]
    b, _ = C.run_bundle(run)
    splits = list(b.eval_splits())
    keep_valid("ood_split", splits)
    split_name = st.selectbox("evaluation set", splits, index=min(1, len(splits) - 1), key="ood_split")
    sp = b.eval_splits()[split_name]
    max_len = C.run_max_len(run)
    s_dir = C.model_dir(run["id"])
    if s_dir is None:
        raise KdlabError(f"run '{run['name']}' has no saved model (status {run['status']}): pick a finished run")
    t_dir = C.model_dir(C.teacher_run_of(run))
    texts_b = None if sp.texts_b is None else tuple(sp.texts_b)
    logits = {"student": C.logits_for(str(s_dir), tuple(sp.texts), max_len, texts_b)}
    if t_dir:
        logits["teacher"] = C.logits_for(str(t_dir), tuple(sp.texts), max_len, texts_b)
    lm = sp.label_map
    ms = {k: metrics(v, sp.labels, b.num_labels(), b.task, lm) for k, v in logits.items()}
    table = pd.DataFrame({k: {m: round(float(v), 4) for m, v in d.items() if m != "n"} for k, d in ms.items()}).T
    text_cols = list(b.task.text_cols) if sp.texts_b is not None else ["text"]

    def texts_of(i):
        return dict(zip(text_cols, [sp.texts[i]] + ([sp.texts_b[i]] if sp.texts_b is not None else [])))

    if lm is not None:
        st.caption(f"'{split_name}' has its own labels ({', '.join(sp.label_names)}): the model's classes are mapped "
                   + ", ".join(f"{a} → {sp.label_names[j]}" for a, j in zip(b.label_names, lm))
                   + " (probabilities summed per mapped class for ECE)")
    if kind == "classes":
        cd = class_disagreements(logits, sp.labels, lm)   # probabilities summed per mapped class, predictions mapped
        labels_, probs, preds = cd["labels"], cd["probs"], cd["preds"]
        bins = {k: calibration_bins(p, labels_) for k, p in probs.items()}
        eces = {k: ms[k]["ece"] for k in probs}
        c1, c2 = st.columns([3, 2])
        C.show(viz.reliability_diagram(bins, eces), "ood_reliability", c1)
        C.show(table, "ood_ece", c2)
        if "teacher" in logits:
            names = list(sp.label_names) if lm is not None else list(b.label_names)
            sp_, tp_, dis = preds["student"], preds["teacher"], cd["disagree"]
            c2.metric("student-teacher agreement", C.num(cd["agreement"]))
            st.markdown(f"**{len(dis)} examples where student and teacher disagree** ({split_name})")
            C.show(pd.DataFrame([{**texts_of(i), "label": names[labels_[i]], "teacher": names[tp_[i]],
                                        "p_teacher": round(float(probs["teacher"][i].max()), 3),
                                        "student": names[sp_[i]],
                                        "p_student": round(float(probs["student"][i].max()), 3)}
                                       for i in dis[:200]]),
                   "ood_disagree")
    elif kind == "score":
        st.info("Calibration (reliability diagram, ECE) is about class probabilities; this task predicts a real-valued "
                "score, so none is shown: below, each model's predicted score against the gold score.")
        c1, c2 = st.columns([3, 2])
        C.show(viz.prediction_scatter(sp.labels, {k: v[:, 0] for k, v in logits.items()},
                                               f"Prediction vs gold score ({split_name})"), "ood_scatter", c1)
        C.show(table, "ood_ece", c2)
        if "teacher" in logits:
            gap = score_differences(logits)
            order = np.argsort(-gap)[:200]
            st.markdown(f"**Largest student-teacher differences** ({split_name}; mean |difference| "
                        f"{gap.mean():.3f})")
            C.show(pd.DataFrame([{**texts_of(i), "gold": round(float(sp.labels[i]), 3),
                                        "teacher": round(float(logits["teacher"][i, 0]), 3),
                                        "student": round(float(logits["student"][i, 0]), 3),
                                        "difference": round(float(gap[i]), 3)} for i in order]), "ood_disagree")
    else:
        st.info("Calibration is not shown for a multi-label task (one sigmoid per label, no single confidence).")
        C.show(table, "ood_ece")
        if "teacher" in logits:
            names = list(b.label_names)

            def as_set(row):
                return ", ".join(n for n, on in zip(names, row) if on) or "(none)"
            ps, pt = logits["student"] > 0, logits["teacher"] > 0
            dis = label_set_disagreements(logits)
            st.markdown(f"**{len(dis)} examples where the predicted label sets differ** ({split_name})")
            C.show(pd.DataFrame([{**texts_of(i), "labels": as_set(np.asarray(sp.labels[i]) > 0),
                                        "teacher": as_set(pt[i]), "student": as_set(ps[i])} for i in dis[:200]]),
                   "ood_disagree")
