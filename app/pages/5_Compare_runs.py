"""Compare runs: config differences, overlaid curves, final metrics per domain."""
import pandas as pd
import streamlit as st

import common as C
from kdlab.analysis.explain import config_diff
from kdlab.analysis import references, viz

st.title("Compare runs")
C.sidebar()
store = C.store()


runs = store.runs()
if not runs:
    st.info("no runs in the run store yet: start one on the Train page")
    st.stop()
by_id = {r["id"]: r for r in runs}
default = [r["id"] for r in runs if r["kind"] != "teacher"][:3]
sel = st.multiselect("runs", list(by_id), default=default, format_func=lambda i: C.run_label(by_id[i]),
                     key="cmp_runs")
if not sel:
    st.info("pick one or more runs")
    st.stop()

diff = config_diff([by_id[i] for i in sel])
st.subheader("Config values that differ")
if diff:
    C.show(pd.DataFrame(diff, index=[by_id[i]["name"] for i in sel]).T, "cmp_diff")
else:
    st.caption("the selected runs share every config value")

st.subheader("Curves")
names_ = sorted({m["name"] for i in sel for m in store.metrics(i)})
if names_:
    metric = st.selectbox("metric", names_, index=names_.index("loss") if "loss" in names_ else 0, key="cmp_metric")
    sm = st.slider("smoothing", 0.0, 0.95, 0.0, 0.05, key="cmp_smooth")
    curves = {}
    for i in sel:
        pts = [(m["step"], m["value"]) for m in store.metrics(i) if m["name"] == metric]
        if pts:
            curves[by_id[i]["name"]] = tuple(zip(*pts))
    C.show(viz.run_curves(curves, metric, sm), "cmp_curves")

st.subheader("Final metrics per domain")
rows, acc = [], {}
primaries = {C.primary_metric(by_id[i]) for i in sel}
primary = primaries.pop() if len(primaries) == 1 else "accuracy"
if len(primaries):
    st.caption("the selected runs are of tasks with different primary metrics: the chart shows accuracy")
for i in sel:
    for split, m in store.final_evals(i).items():
        rows.append({"run": by_id[i]["name"], "method": by_id[i]["method"], "split": split,
                     **{k: round(v, 4) for k, v in m.items()}})
        acc.setdefault(by_id[i]["name"], {})[split] = m.get(primary)
if rows:
    C.show(pd.DataFrame(rows), "cmp_final")
    C.show(viz.domain_accuracy_bars(acc, metric=primary), "cmp_domains")
    text, warn = references.split_warning(references.for_run(store, sel[0]))   # published rows, the teacher's
    if text:
        st.code(text)
    if warn:
        st.warning(warn)
else:
    st.caption("no evaluations stored for these runs yet")
