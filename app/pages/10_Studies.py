"""Studies: a grid of methods x option values x seeds (``python -m kdlab study``), its table with verdicts, a forest
plot of the differences to the baseline with their intervals per domain, and the per-seed values."""
import json

import pandas as pd
import streamlit as st

import common as C
from kdlab.analysis import references, viz
from kdlab.analysis.stats import LOWER_IS_BETTER
from kdlab.engine.study import format_table, to_csv

st.title("Studies")
C.sidebar()
store = C.store()

with C.guard():
    studies = store.studies()
    if not studies:
        st.info("no studies in the run store yet: run one with `python -m kdlab study --methods ce,kd --seeds 3 "
                "--name NAME` (see the notebook 09_studies)")
        st.stop()
    names = [s["name"] for s in studies]
    name = st.selectbox("study", names, key="studies_pick")
    study = next(s for s in studies if s["name"] == name)
    spec = study["spec"]
    grid = spec.get("grid", {})
    n_cells = len(spec.get("cells", []))
    st.caption(f"methods {', '.join(grid.get('methods', []))} · seeds {grid.get('seeds')} · "
               f"{len(study['cells'])}/{n_cells} cells with a run · baseline {grid.get('baseline', 'ce')}"
               + (f" · varied {json.dumps(grid['vary'])}" if grid.get("vary") else ""))
    rows = (study.get("result") or {}).get("rows") or []
    if not rows:
        st.info("this study has no aggregated results yet: its cells are still running, or run "
                f"`python -m kdlab study --name {name}` to aggregate")
        st.stop()

    st.subheader("Table")
    model = (study.get("result") or {}).get("model")
    if model and model != "last epoch":
        st.caption(f"each run's model {model} (`python -m kdlab study --name {name} --report last` compares the "
                   "last epochs)")
    table = pd.DataFrame([{"domain": r["domain"], "method": r["group"], "n": r["n"], "mean": r["mean"],
                           "std": r["std"], "delta": None if r["verdict"] == "baseline" else r["delta"],
                           "ci_low": None if r["verdict"] == "baseline" else r["ci_low"],
                           "ci_high": None if r["verdict"] == "baseline" else r["ci_high"],
                           "verdict": r["verdict"]} for r in rows])
    C.show(table.round(4), "studies_table", hide_index=True)
    verdicts = [r for r in rows if r["verdict"] != "baseline"]
    for v, fn in (("better", st.success), ("worse", st.error)):
        hits = [f"{r['group']} on {r['domain']}" for r in verdicts if r["verdict"] == v]
        if hits:
            fn(f"{v} than {grid.get('baseline', 'ce')}: " + "; ".join(hits))
    undecided = [f"{r['group']} on {r['domain']}" for r in verdicts if r["verdict"] == "inconclusive"]
    if undecided:
        st.caption("inconclusive (the 95% interval contains 0): " + "; ".join(undecided))
    why = sorted({r["doctor"] for r in verdicts if r.get("doctor")})   # inconclusive / worse (kdlab.engine.study)
    if why:
        st.caption("why did distillation not help? the doctor's findings for a run of each such row (also on the "
                   "Doctor page):")
        st.code("\n".join(why), language="bash")
    text, warn = references.split_warning(references.for_study(store, name))   # published rows, the teacher's
    if text:
        st.code(text)
    if warn:
        st.warning(warn)
    st.download_button("results.csv (every row)", to_csv(rows), file_name=f"{name}.csv", key="studies_results_csv")

    st.subheader("Differences to the baseline")
    C.show(viz.study_forest(rows), "studies_forest")
    st.caption("markers: mean over seeds of (method - baseline) with the 95% paired-bootstrap interval over seeds "
               "and examples; open points: each seed's difference"
               + (f" ({rows[0]['metric']}: lower is better, so a negative difference is an improvement)"
                  if rows[0]["metric"] in LOWER_IS_BETTER else ""))

    st.subheader("Per seed")
    seeds = pd.DataFrame([{"domain": r["domain"], "method": r["group"], "seed": s, r["metric"]: v}
                          for r in rows for s, v in (r.get("seeds") or {}).items()])
    if not seeds.empty:
        C.show(seeds.pivot_table(index=["domain", "method"], columns="seed", values=rows[0]["metric"]),
               "studies_seeds")
    with st.expander("as text (python -m kdlab study)"):
        st.code(format_table(rows))
