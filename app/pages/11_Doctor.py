"""Doctor: why distillation did (not) help a stored run: the ranked findings of ``python -m kdlab doctor``, each with
its figure and one next step, and each loss term's share of the student's gradient."""
import pandas as pd
import streamlit as st

import common as C
from kdlab.analysis.doctor import command_line, diagnose

st.title("Doctor")
C.sidebar()
store = C.store()

with C.guard():
    runs = [r for r in store.runs(kind="student") if r["status"] == "finished"]
    if not runs:
        st.info("no finished student runs yet: distill one on the Train page")
        st.stop()
    by_id = {r["id"]: r for r in runs}
    rid = st.selectbox("run", list(by_id), format_func=lambda i: C.run_label(by_id[i]), key="doctor_run")
    st.caption(f"the same findings on the command line: `{command_line(rid)}`")
    d = diagnose(store, rid)
    st.caption(f"method {d['method']} · T={d['temperature']:g} · teacher run {d['teacher_run']}")
    icons = {"problem": "🔴", "warning": "🟠", "ok": "🟢"}
    table = pd.DataFrame([{"rank": i, "level": f"{icons[f['level']]} {f['level']}", "finding": f["title"],
                           "figure": f["figure"], "next step": f["next"]}
                          for i, f in enumerate(d["findings"], 1)])
    C.show(table, "doctor_findings", hide_index=True)
    for n in d["notes"]:
        st.info(n)
    share = next((f for f in d["findings"] if f["key"] == "grad_share"), None)
    if share is not None:
        st.subheader("Each loss term's share of the student's gradient")
        C.show(pd.DataFrame([{"term": k, "mean share": v["mean_share"], "last share": v["last_share"],
                              "mean norm": v["mean_norm"], "measured steps": v["steps"]}
                             for k, v in share["data"]["shares"].items()]).round(4), "doctor_shares",
               hide_index=True)
