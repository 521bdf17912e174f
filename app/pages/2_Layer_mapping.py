"""Layer mapping: the matrix W for any strategy, editable by pairs, beside a CKA heatmap."""
import numpy as np
import streamlit as st

import common as C
from kdlab.kd import mapping
from kdlab.analysis import viz
from kdlab.tools import cka_run

st.title("Layer mapping")
C.sidebar()
LM_MODE = "causal LM run: decoder layers"
if st.radio("model", ["classifier: the Setup's teacher", LM_MODE], horizontal=True, key="map_mode") == LM_MODE:
    import lm_views   # an LM student run's copied layers and decoder-layer CKA (kdlab.lm.layers)
    lm_views.layer_mapping()
    st.stop()
s = C.setup()

N = M = None
with C.guard():
    t, tok, tuned = C.teacher()
    N = int(t.config.num_hidden_layers)
    M = int(s["student_layers"])
if N is None:
    st.stop()

SUGGESTED = "cka (suggested)"


def suggest_from_cka():
    """One click: the linear CKA of the untrained student against the teacher on the training rows a run with
    --set mapping=cka reads (kdlab.analysis.cka_mapping), and the strategy switched to the mapping it gives."""
    with C.guard():
        from kdlab.analysis.cka_mapping import cka_scores
        stu0 = C.fresh_student(t, repr(sorted(s.items())) + str(tuned), tok)
        st.session_state["map_cka_scores"] = cka_scores(t, stu0, tok, C.bundle().train, max_len=int(s["max_len"]))
        st.session_state["map_strategy"] = SUGGESTED


left, right = st.columns(2)
with left:
    strategies = ["uniform", "first", "last", "explicit", "random (RAIL-KD)", "grouped (CKD)", "ALP weights (ALP-KD)",
                  SUGGESTED]
    st.button("Suggest from CKA", key="map_cka_suggest", on_click=suggest_from_cka,
              help="each student layer <- the teacher layer of highest linear CKA with it before training, on the "
                   "training rows a run with --set mapping=cka uses")
    strat = st.selectbox("strategy", strategies, key="map_strategy")
    W = None
    with C.guard():
        if strat == SUGGESTED:
            scores = st.session_state.get("map_cka_scores")
            if scores is None:
                st.info("click 'Suggest from CKA' to compute it")
            else:
                W = mapping.build("cka", M, N, matrix=scores)
                st.caption("linear CKA of each student layer (rows) with each teacher layer: " + "; ".join(
                    f"S{i + 1}: " + ", ".join(f"{v:.2f}" for v in row) for i, row in enumerate(scores))
                    + ". A run picks the same layers with:")
                st.code("--set mapping=cka", language="bash")
        elif strat == "explicit":
            default = ",".join(map(str, mapping.one_hot_layers(mapping.uniform(M, N))))
            txt = st.text_input(f"teacher layer (1..{N}) for each of the {M} student layers", default, key="map_explicit")
            W = mapping.build("explicit", M, N, layers=mapping.parse_layers(txt, example=default))
        elif strat.startswith("random"):
            epoch = st.slider("epoch (a new draw each epoch)", 0, 9, 0, key="map_epoch")
            seed = st.number_input("seed", 0, 10**6, 0, key="map_seed")
            W = mapping.build("rail", M, N, seed=int(seed), epoch=int(epoch))
        elif strat.startswith("grouped"):
            W = mapping.build("grouped", M, N)
        elif strat.startswith("ALP"):
            runs = [r for r in C.store().runs() if "alp" in str(r["method"]).lower()]
            alp_src = st.radio("ALP weights of", ["the untrained student on dev examples", "a stored alp-kd run"],
                               key="map_alp_src", horizontal=True)
            if alp_src.startswith("the untrained"):
                from kdlab.data.batching import make_loader
                n_alp = st.slider("dev examples", 4, 64, 32, 4, key="map_alp_n")
                stu0 = C.fresh_student(t, repr(sorted(s.items())) + str(tuned), tok)
                batch = next(iter(make_loader(C.bundle().dev, tok, batch_size=n_alp, max_len=int(s["max_len"]))))
                W = cka_run.alp_weights_of(t, stu0, batch)
                st.caption(f"ALP-KD attention over all teacher layers, mean over {len(batch['input_ids'])} dev "
                           "examples (rows sum to 1); training moves it, see a stored alp-kd run")
            elif not runs:
                st.info("no ALP-KD run in the run store yet: train one on the Train page (method alp-kd)")
            else:
                r = st.selectbox("ALP-KD run", runs, format_func=C.run_label, key="map_alp_run")
                maps = C.store().mappings(r["id"])
                if not maps:
                    st.info("this run has not logged its mapping yet")
                else:
                    k = st.slider("logged mapping", 0, len(maps) - 1, len(maps) - 1, key="map_alp_step")
                    W = np.asarray(maps[k]["matrix"], dtype=float)
                    st.caption(f"step {maps[k]['step']}, epoch {maps[k]['epoch']} ({maps[k]['label']})")
        else:
            W = mapping.build(strat, M, N)
    if W is not None:
        edits = st.session_state.setdefault("map_edits", [])
        with st.expander("Edit W by pairs", expanded=False):
            c1, c2, c3 = st.columns(3)
            si = c1.selectbox("student layer", list(range(1, len(W) + 1)), key="map_edit_s")
            tj = c2.selectbox("teacher layer", list(range(1, len(W[0]) + 1)), key="map_edit_t")
            wv = c3.number_input("weight", 0.0, 10.0, 1.0, 0.1, key="map_edit_w")
            b1, b2, b3 = st.columns(3)
            if b1.button("set pair (only pair in its row)", key="map_edit_set"):
                edits.append(("row", si, tj, wv))
            if b2.button("add pair", key="map_edit_add"):
                edits.append(("add", si, tj, wv))
            if b3.button("reset edits", key="map_edit_reset"):
                edits.clear()
        with C.guard():
            W = mapping.edit(W, edits).numpy()
            C.show(viz.mapping_heatmap(W, title=f"W ({strat}), {W.shape[0]} student x {W.shape[1]} teacher layers"),
                   "map_heatmap")
            pairs = mapping.pairs(W)
            st.caption("pairs (student <- teacher: weight): " +
                       ", ".join(f"S{a}<-T{b}: {w:.2f}" for a, b, w in pairs))
            st.code(mapping.method_flags(W), language="bash")

with right:
    st.markdown("**CKA between teacher and student layers** (pooled states on dev examples; `kdlab.tools.cka_run`)")
    n_ex = st.slider("examples", 8, 128, 32, 8, key="map_cka_n")
    pool = st.selectbox("pooling", ["mean", "cls"], key="map_cka_pool")
    debiased = st.checkbox("debiased CKA", False, key="map_cka_debiased")
    runs = C.student_runs()
    src = st.selectbox("student", ["untrained student (copied by the Setup strategy)"] + runs,
                       format_func=lambda r: r if isinstance(r, str) else C.run_label(r), key="map_cka_student")
    if st.button("Compute CKA", key="map_cka_go"):
        with C.guard():
            if isinstance(src, str):
                stu, tt = C.fresh_student(t, repr(sorted(s.items())) + str(tuned), tok), t
            else:
                stu, tt, tok = C.run_models(src)
                tt = tt or t
            split = C.bundle().dev
            from kdlab.data.loaders import Split
            sub = Split("dev", split.texts[:n_ex], split.labels[:n_ex], split.domain)
            res = cka_run.cka_between(tt, stu, tok, sub, pool, n_ex, max_len=int(s["max_len"]))
            C_ = res["debiased" if debiased else "linear"]
            st.session_state["map_cka"] = np.asarray(C_).tolist()
    if "map_cka" in st.session_state:
        C.show(viz.cka_heatmap(st.session_state["map_cka"]), "map_cka_heatmap")
        st.caption("high CKA (bright) marks teacher layers whose representations the student layer already "
                   "resembles: a natural choice for the mapping.")
