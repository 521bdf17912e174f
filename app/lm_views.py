"""The causal LM (``--task lm``) views of the dashboard's pages: widgets only. The next-token distributions, their
entropies and KLs come from ``kdlab.lm.explain``; the models are those of a stored LM run or a causal LM folder."""
import numpy as np
import streamlit as st

import common as C
from kdlab.analysis import viz

FOLDER = "a causal LM folder ..."
DEFAULT_PROMPT = "to make soup you need"


@st.cache_resource(show_spinner="loading the causal LM ...", max_entries=4)
def _run_models(root: str, run_id: str) -> dict:
    from kdlab.lm.explain import run_models
    from kdlab.runs.store import Store
    return run_models(Store(root), run_id)


@st.cache_resource(show_spinner="loading the causal LM ...", max_entries=4)
def _folder_models(folder: str) -> dict:
    from kdlab.lm.models import load_lm_folder
    return {"teacher": load_lm_folder(folder)}


def _label(r) -> str:
    return r if isinstance(r, str) else f"{r['kind']} · {C.run_label(r)}"


def pick_lm(key: str) -> dict | None:
    """{"teacher" and/or "student": (model, tokenizer)} of the chosen LM run or folder; None until one is given."""
    from kdlab.lm.explain import lm_runs
    runs = lm_runs(C.store())
    if not runs:
        st.caption("no finished causal LM run in the run store yet: `python -m kdlab distill --task lm --preset tiny "
                   "--method lm-fkl` makes one (the tiny Llama-style teacher and a 2-layer student)")
    src = st.selectbox("causal LM", runs + [FOLDER], format_func=_label, key=key)
    if isinstance(src, str):
        folder = st.text_input("folder of a causal LM (saved with save_pretrained; inside the data folder, the run "
                               "store or KDLAB_ALLOWED_DIRS)", key=f"{key}_folder").strip()
        if not folder:
            st.info("type the folder of a causal LM")
            return None
        return _folder_models(str(C.check_path(folder)))
    return _run_models(str(C.store().root), src["id"])


def temperature_lab():
    """A typed prompt: the teacher's next-token distribution (its top-k tokens) at temperature T, beside the
    student's on the same tokens when the run has one."""
    from kdlab.lm.explain import as_bars, compare_next_token, prompt_logits
    st.caption("For a causal LM: the next-token distribution after a typed prompt, softened at T (the token-level "
               "objectives lm-fkl, lm-rkl, lm-jsd divide both models' logits by T).")
    with C.guard():
        models = pick_lm("temp_lm_run")
        if models is None:
            return
        prompt = st.text_input("prompt", value=DEFAULT_PROMPT, key="temp_lm_prompt")
        c1, c2 = st.columns(2)
        T = c1.slider("temperature T", 0.25, 5.0, 1.0, 0.25, key="temp_lm_T")
        k = c2.slider("tokens shown (the reference's top k)", 3, 30, 10, 1, key="temp_lm_k")
        tok = next(iter(models.values()))[1]
        lms = {label: m for label, (m, _) in models.items()}
        res = compare_next_token(lms, tok, prompt, temperature=T, k=int(k))
        ref = next(iter(lms))
        st.caption("read: " + " · ".join(f"`{t}`" for t in res["prompt_tokens"]))
        left, right = st.columns(2)
        C.show(viz.metric_bars(as_bars(res), title=f"Next-token distribution at T = {T:g}", yaxis="probability"),
               "temp_lm_dist", left)
        Ts = np.round(np.arange(0.25, 5.01, 0.25), 2)
        C.show(viz.entropy_curve(prompt_logits(lms, tok, prompt), Ts, current_T=T), "temp_lm_entropy", right)
        m = st.columns(4)
        m[0].metric(f"{ref} entropy (nats)", C.num(res["entropy"][ref]))
        m[1].metric(f"{ref} top-{res['k']} mass", C.num(1 - res["other"][ref]))
        if len(lms) > 1:
            other = [x for x in lms if x != ref][0]
            m[2].metric(f"{other} entropy (nats)", C.num(res["entropy"][other]))
            m[3].metric(f"KL({ref} || {other}) at T={T:g}", C.num(res["kl"][other]))
        C.show([{"token": t, **{label: p[i] for label, p in res["probs"].items()}}
                for i, t in enumerate(res["tokens"])], "temp_lm_table", hide_index=True)
        st.markdown(
            f"The {ref}'s **{res['k']}** most likely next tokens hold **{1 - res['other'][ref]:.1%}** of its "
            f"probability at T = {T:g}; raising T spreads the mass over the rest of the vocabulary (the entropy "
            "rises towards log V), lowering it concentrates the mass on the top token. Forward KL (`lm-fkl`) asks "
            "the student to put mass wherever the teacher does, reverse KL (`lm-rkl`) to put none where the teacher "
            "has little (notebook 10).")


def layer_mapping():
    """An LM student run's decoder-layer mapping (which teacher layer each student layer was copied from, the W of
    its hidden-state term) and the CKA between the teacher's and the student's decoder layers."""
    from kdlab.lm.explain import lm_runs
    from kdlab.lm.layers import run_layer_cka, run_mapping
    st.caption("For a causal LM student run: each student decoder layer and the teacher layer it was copied from "
               "(`--student-layers N --student-init skip|first|last` or `--student-layer-list`).")
    with C.guard():
        runs = [r for r in lm_runs(C.store()) if r["kind"] == "student"]
        if not runs:
            st.info("no finished causal LM student run in the run store yet: `python -m kdlab distill --task lm "
                    "--preset tiny --method lm-fkl` makes one")
            return
        run = st.selectbox("LM student run", runs, format_func=C.run_label, key="map_lm_run")
        m = run_mapping(C.store(), run["id"])
        left, right = st.columns(2)
        C.show(viz.mapping_heatmap(m["W"], title=f"W, {m['M']} student x {m['N']} teacher decoder layers"),
               "map_lm_heatmap", left)
        if m["copied"]:
            left.caption("copied: " + ", ".join(f"S{i + 1} <- T{t}" for i, t in enumerate(m["copied"])) +
                         ". The same student again:")
            left.code(f"--student-layer-list {','.join(str(t - 1) for t in m['copied'])}", language="bash")
        else:
            left.caption("this student was not copied from the teacher's layers (`--student FOLDER`): W is the "
                         "uniform mapping its hidden-state term would use")
        left.caption(f"hidden-state term of this run: weight {m['hidden_weight']:g}"
                     + (" (`--set hidden_weight=W` adds it: the MSE between each student layer's output and its "
                        "teacher layer's, through W)" if not m["hidden_weight"] else ""))
        n = right.slider("dev examples", 4, 64, 32, 4, key="map_lm_cka_n")
        if right.button("Compute CKA", key="map_lm_cka_go"):
            st.session_state["map_lm_cka"] = (run["id"], run_layer_cka(C.store(), run["id"], int(n)).tolist())
        got = st.session_state.get("map_lm_cka")
        if got and got[0] == run["id"]:
            C.show(viz.cka_heatmap(got[1], title="CKA: teacher vs student decoder layers", with_embeddings=False),
                   "map_lm_cka_heatmap", right)
            right.caption("linear CKA of each decoder layer's outputs (mean over an example's tokens) on the run's "
                          "in-domain dev texts (`kdlab.lm.layers`): a copied layer starts at 1 with its teacher "
                          "layer; training moves it.")
