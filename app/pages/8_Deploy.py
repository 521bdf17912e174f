"""Deploy: a run's models side by side (teacher, student, every compressed model): size on disk, parameters, CPU
latency at batch 1 and 32, and the task's primary metric in and out of domain. Compress (``kdlab compress``),
measure (``kdlab eval --run RUN --model all``, stored as the run's ``deploy_eval``) and download a model folder."""
import re
from pathlib import Path

import pandas as pd
import streamlit as st

import common as C
from kdlab.analysis import viz
from kdlab.deploy.artifacts import compress_run, folder_mb, models_of
from kdlab.deploy.report import eval_models, teacher_dir

st.title("Deploy")
C.sidebar()
store = C.store()

runs = sorted((r for r in store.runs() if r["status"] == "finished"), key=lambda r: r["kind"] == "teacher")
if not runs:
    st.info("no finished runs yet: train one on the Train page")
    st.stop()
by_id = {r["id"]: r for r in runs}
if st.session_state.get("dep_run") not in by_id:
    st.session_state.pop("dep_run", None)
rid = st.selectbox("run", list(by_id), format_func=lambda i: C.run_label(by_id[i]), key="dep_run")
run = by_id[rid]
src = C.model_dir(rid)
if src is None or not (src / "config.json").exists():
    st.info(f"run '{run['name']}' has no saved model (status {run['status']}): nothing to compress, measure or "
            "download.")
    st.stop()
rec = C.record(run)
if rec.is_ranking or rec.task_kind == "lm":   # a bi-encoder or a causal LM: their own views (app/deploy_views.py)
    import deploy_views
    (deploy_views.ranking if rec.is_ranking else deploy_views.lm)(store, rid, run)
    st.stop()
task = C.task_of(run)

st.subheader("Compress and measure")
c = st.columns([1, 1, 1, 2, 1], vertical_alignment="bottom")
prune = c[0].checkbox("prune vocabulary", key="dep_prune",
                      help="keep only the tokens the run's training data produces (embedding rows and tokenizer)")
int8 = c[1].checkbox("int8", key="dep_int8", help="dynamic int8 quantization of the linear layers")
onnx = c[2].checkbox("ONNX", key="dep_onnx", help="export to ONNX, run with onnxruntime (with int8: the graph is "
                                                  "quantized by onnxruntime)")
name = c[3].text_input("name of the compressed model (optional)", "", key="dep_name",
                       placeholder="from the steps, e.g. pruned-int8")
p = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
heads = p[0].number_input("heads removed per layer", 0, 64, 0, key="dep_heads",
                          help="the least important attention heads (gradient importance on the run's training data)")
ffn = p[1].number_input("FFN neurons removed per layer", 0, 16384, 0, step=64, key="dep_ffn",
                        help="the least important FFN neurons (activation x gradient)")
recover = p[2].number_input("recovery steps (KD)", 0, 10000, 0, step=50, key="dep_recover",
                            help="after head/FFN pruning: logit KD from the unpruned model")
go = c[4].button("Compress", key="dep_compress", disabled=not (prune or int8 or onnx or heads or ffn),
                 help="kdlab compress: the new model is stored next to the run (models/<name>/)")
if task.pair and prune:
    st.caption("sentence pair: vocabulary pruning keeps the tokens of both texts of every training pair; words "
               "only the out-of-domain sets use may become [UNK]. Measure to see the effect on the metric.")
if go:
    with C.guard(), st.spinner("compressing (kdlab compress) ..."):
        info = compress_run(store, rid, prune_vocab=True if prune else None, quantize="int8" if int8 else None,
                            onnx=onnx, name=name.strip() or None, prune_heads=int(heads), prune_ffn=int(ffn),
                            recover_steps=int(recover), log=lambda m: None)
        st.success(f"made **{info['name']}** ({info['format']}, {folder_mb(info['folder']):.2f} MB): "
                   + " → ".join(s["step"] for s in info["steps"]) + ". Measure to compare it.")
m = st.columns([1, 1, 3], vertical_alignment="bottom")
threads = m[0].number_input("CPU threads", 1, 64, 1, key="dep_threads")
rounds = m[1].number_input("latency rounds", 1, 50, 5, key="dep_rounds")
if m[2].button("Measure all models (kdlab eval --model all)", key="dep_measure",
               help="every model of the run on its evaluation sets: metric, MB, parameters, ms at batch 1 and 32"):
    with C.guard(), st.spinner("measuring every model of the run on its evaluation sets ..."):
        res = eval_models(store, rid, ["all"], threads=int(threads), rounds=int(rounds), log=lambda m: None)
        st.success(f"measured {len(res['models'])} models on {', '.join(res['splits'])}")

st.subheader("Models of the run")
made = models_of(store, rid)
measured = (store.artifact(rid, "deploy_eval", {}) or {}).get("run")
if measured:
    splits, metric = measured["splits"], measured["metric"]
    ind = measured.get("in_domain") or splits[0]
    rows = measured["models"]
    table = []
    for n, r in rows.items():
        table.append({"model": n, "format": r.get("format", "hf"), "steps": " → ".join(r.get("steps") or []) or "-",
                      "MB": r["mb"], "params": int(r["params"]), "ms b1": round(r["ms_b1"], 3),
                      "ms b32": round(r["ms_b32"], 3),
                      **{f"{metric} {s}" + (" (in domain)" if s == ind else ""): round(r[s], 4) for s in splits},
                      **({"agreement": round(r["agreement"], 4)} if "agreement" in r else {})})
    C.show(pd.DataFrame(table).set_index("model"), "dep_table")
    st.caption(f"measured {measured['measured']}: {metric} (the task's primary metric) per evaluation set, "
               f"'{ind}' in domain and the others out of domain; ms per example on {measured['threads']} CPU "
               f"thread(s) at batch 1 and 32, models timed side by side in interleaved rounds; MB on disk.")
    C.show(viz.size_metric_scatter(rows, splits, metric, ind), "dep_scatter")
    lat = st.radio("latency", ["ms_b1", "ms_b32"], horizontal=True, key="dep_frontier_batch",
                   format_func=lambda k: "batch 1" if k == "ms_b1" else "batch 32")
    C.show(viz.deploy_frontier(rows, ind, metric, latency=lat), "dep_frontier")
    st.caption("the frontier: models that no other model beats on both latency and "
               f"{metric} ({ind}); the teacher is the star")
    new = [n for n in made if n not in rows]
    if new:
        st.warning(f"not measured yet: {', '.join(new)}: press Measure")
else:
    st.info("not measured yet: press **Measure** (teacher, student and every compressed model)")
    if made:
        C.show(pd.DataFrame([{"model": n, "MB": round(folder_mb(f), 2)} for n, f in made.items()]
                                  ).set_index("model"), "dep_made")

st.subheader("Download a model folder")
own = "teacher" if run["kind"] == "teacher" else "student"
folders = {own: src, **{n: Path(f) for n, f in made.items() if Path(f).exists()}}
t = teacher_dir(store, run)
if t is not None and own != "teacher":
    folders["teacher"] = t
if st.session_state.get("dep_dl_model") not in folders:
    st.session_state.pop("dep_dl_model", None)
pick = st.selectbox("model", list(folders), key="dep_dl_model")
folder = folders[pick]
safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{run['name']}-{pick}")
st.download_button(f"Download {pick} as zip ({folder_mb(folder):.1f} MB on disk)",
                   data=lambda f=folder: C.zip_folder(f), file_name=f"{safe}.zip", mime="application/zip",
                   key="dep_download")
st.caption(f"`{folder}`: weights, config, tokenizer and (for compressed models) `kdlab.json` with the lineage")
