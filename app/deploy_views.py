"""The Deploy page's views of runs that are not classifiers: a ranking bi-encoder (int8 / ONNX artifacts of its
encoder, measured by ranking the corpus: ``kdlab.ranking.compress``) and a causal LM (its stored size, speed and
perplexities; kdlab compresses encoders, not decoders)."""
import pandas as pd
import streamlit as st

import common as C


def ranking(store, rid: str, run: dict):
    from kdlab.deploy.artifacts import compress_run, folder_mb, models_of
    from kdlab.ranking.compress import eval_models
    st.subheader("Compress and measure the bi-encoder")
    c = st.columns([1, 1, 2, 1], vertical_alignment="bottom")
    int8 = c[0].checkbox("int8", key="dep_int8", help="dynamic int8 quantization of the encoder's linear layers")
    onnx = c[1].checkbox("ONNX", key="dep_onnx", help="the encoder as an ONNX graph (pooling outside the graph, as "
                                                     "sentence-transformers' ONNX backend); with int8: quantized by "
                                                     "onnxruntime")
    name = c[2].text_input("name of the compressed model (optional)", "", key="dep_name", placeholder="int8-onnx")
    if c[3].button("Compress", key="dep_compress", disabled=not (int8 or onnx)):
        with C.guard(), st.spinner("compressing (kdlab compress) ..."):
            info = compress_run(store, rid, quantize="int8" if int8 else None, onnx=onnx, name=name.strip() or None,
                                log=lambda m: None)
            st.success(f"made **{info['name']}** ({info['format']}, {folder_mb(info['folder']):.2f} MB)")
    m = st.columns([1, 3], vertical_alignment="bottom")
    threads = m[0].number_input("CPU threads", 1, 64, 1, key="dep_threads")
    if m[1].button("Measure all models (kdlab eval --model all)", key="dep_measure",
                   help="the student and every compressed model rank the whole corpus for the test queries"):
        with C.guard(), st.spinner("ranking the corpus with every model of the run ..."):
            eval_models(store, run, C.record(run).data, ["all"], threads=int(threads))
    st.subheader("Models of the run")
    res = store.artifact(rid, "ranking_deploy_eval", {}) or {}
    if res:
        C.show(pd.DataFrame([{"model": n, "nDCG@10": round(r["ndcg@10"], 4), "MRR@10": round(r["mrr@10"], 4),
                              "R@100": round(r["recall@100"], 4), "MB": r["mb"],
                              "ms/query": round(r["latency_ms"], 2)} for n, r in res["models"].items()]
                            ).set_index("model"), "dep_table")
        st.caption(f"measured {res['measured']} on the {res['split']} queries; CPU ms per query at batch 1 on "
                   f"{res['threads']} thread(s): encode the query, dot product with the corpus matrix, top 100")
        new = [n for n in models_of(store, rid) if n not in res["models"]]
        if new:
            st.warning(f"not measured yet: {', '.join(new)}: press Measure")
    else:
        st.info("not measured yet: press **Measure**")


def lm(store, rid: str, run: dict):
    st.info("kdlab compresses encoders (int8, ONNX, pruning); a causal LM student is deployed as its saved folder. "
            "Its size, speed and perplexities as measured when it was trained:")
    size = store.artifact(rid, "size", {}) or {}
    evals = store.final_evals(rid)
    rows = [{"domain": d, "perplexity": round(e.get("perplexity", float("nan")), 3),
             "teacher perplexity": round(e.get("teacher_perplexity", float("nan")), 3),
             "token KL": round(e.get("token_kl", float("nan")), 4),
             "top-1 agreement": round(e.get("top1_agreement", float("nan")), 4),
             "student tokens/s": round(e.get("tokens_per_s", float("nan")), 1),
             "teacher tokens/s": round(e.get("teacher_tokens_per_s", float("nan")), 1)} for d, e in evals.items()]
    if rows:
        C.show(pd.DataFrame(rows).set_index("domain"), "dep_lm_table")
    if size:
        C.show(pd.DataFrame([{k: v for k, v in size.items() if isinstance(v, (int, float))}]), "dep_lm_size",
               hide_index=True)
