"""Temperature lab: softened teacher and student distributions on real dev examples."""
import numpy as np
import streamlit as st

import common as C
from kdlab.analysis import viz
from kdlab.analysis.explain import example_logits, temperature_terms

st.title("Temperature lab")
C.sidebar()
st.caption("For a ranking run, the Ranking page shows T on a query's candidate list (listwise KL).")
LM_MODE = "causal LM: next token"
if st.radio("model", ["classifier: the Setup's task", LM_MODE], horizontal=True, key="temp_mode") == LM_MODE:
    import lm_views   # a typed prompt's next-token distribution (kdlab.lm.explain)
    lm_views.temperature_lab()
    st.stop()
s = C.setup()

zt = zs = None
with C.guard():
    b = C.bundle()
    dev = b.dev
    if b.task.kind != "classes":
        st.info(f"Temperature does not apply to this task: **{b.task.name}** predicts "
                + ("a real-valued score (one regression output, no softmax over classes to soften)"
                   if b.task.kind == "score" else "several labels at once (one sigmoid per label, no softmax)")
                + ". Its students learn from the teacher's outputs directly (e.g. mean squared error). "
                "Choose a classification task on the Setup page to explore T.")
        st.stop()
    pair = dev.texts_b is not None

    def show(i):
        head = f"{dev.texts[i][:70]} ‖ {dev.texts_b[i][:50]}" if pair else dev.texts[i][:90]
        return f"{i}: {head} (label {b.label_names[dev.labels[i]]})"
    idx = st.selectbox("dev example" + (" (text A ‖ text B)" if pair else ""), list(range(min(50, len(dev)))),
                       format_func=show, key="temp_example")
    # stored students of the same task and classes as the Setup data (their logits line up with the teacher's)
    runs = [r for r in C.student_runs() if (C.task_of(r).name, list(C.task_of(r).label_names or ())) ==
            (b.task.name, list(b.label_names))]
    src = st.selectbox("student", ["untrained student (copied by the Setup strategy)"] + runs,
                       format_func=lambda r: r if isinstance(r, str) else C.run_label(r), key="temp_student")
    if isinstance(src, str):
        t, tok, tuned = C.teacher()
        t_dir = str(C.prepared_teacher_dir()) if tuned else None
        stu = C.fresh_student(t, repr(sorted(s.items())) + str(tuned), tok)
        if not tuned:
            st.info("the teacher is not fine-tuned yet (Setup page): its distributions are those of an untrained head")
    else:
        stu, t, tok = C.run_models(src)
        if t is None:
            t, tok, tuned = C.teacher()
    if pair:
        st.caption(f"pair input: {b.task.text_cols[0]} = _{dev.texts[idx]}_ · {b.task.text_cols[1]} = "
                   f"_{dev.texts_b[idx]}_ (encoded together: [CLS] a [SEP] b [SEP])")
    z = example_logits({"teacher": t, "student": stu}, tok, dev.texts[idx],
                       dev.texts_b[idx] if pair else None, int(s["max_len"]))
    zt, zs = z["teacher"], z["student"]

if zt is not None:
    T = st.slider("temperature T", 0.5, 10.0, 2.0, 0.5, key="temp_T")
    c1, c2 = st.columns(2)
    C.show(viz.softened_distributions(zt, zs, T, b.label_names), "temp_dist", c1)
    Ts = np.round(np.arange(0.5, 10.01, 0.25), 2)
    C.show(viz.entropy_curve({"teacher": zt, "student": zs}, Ts, current_T=T), "temp_entropy", c2)

    terms = temperature_terms(zt, zs, T)
    kl_raw, loss = C.num(terms["kl"]), C.num(terms["kd_loss"])
    m = st.columns(4)
    m[0].metric("teacher entropy (nats)", C.num(terms["entropy_teacher"]))
    m[1].metric("student entropy (nats)", C.num(terms["entropy_student"]))
    m[2].metric(f"KL(p_T || q_S) at T={T:g}", kl_raw)
    m[3].metric("KD loss T² · KL", loss)
    st.markdown(
        f"""
**What the numbers say.** Teacher logits `{np.round(zt, 3).tolist()}`, student logits `{np.round(zs, 3).tolist()}`.
Dividing by T = {T:g} before the softmax flattens both distributions: the teacher's top probability is
**{terms["top_teacher"]:.4f}** here (it is {terms["top_teacher_T1"]:.4f} at T = 1), so the smaller classes carry
more of the teacher's "dark knowledge". The KL between the softened distributions is **{kl_raw}**.
Its gradient with respect to the student logits scales like 1/T², so Hinton et al. multiply by T² = {T*T:g}
to keep the soft-target term on the same scale as the hard-label loss when T changes:
T² · KL = {T*T:g} × {kl_raw} = **{loss}** (`kdlab.kd.losses.kd_kl`).
""")


# ----------------------------------------------------------------------------------------------- dark knowledge
@st.cache_data(show_spinner="teacher predictions on the dev set ...", max_entries=8)
def _dev_logits(key: str, _model, _tok, _split, max_len: int) -> np.ndarray:
    from kdlab.analysis.evaluate import predict
    return predict(_model, _split, _tok, max_len=max_len)


if zt is not None:
    st.subheader("Dark knowledge: what the soft targets say beyond the label")
    with C.guard():
        from kdlab.analysis.dark_knowledge import dark_knowledge
        from kdlab.data.loaders import Split
        tm, ttok, ttuned = C.teacher()
        n = min(len(dev), 200)
        sub = Split(dev.name, list(dev.texts[:n]), list(dev.labels[:n]), dev.domain,
                    None if dev.texts_b is None else list(dev.texts_b[:n]))
        key = f"{C.prepared_teacher_dir() if ttuned else s['teacher']}|{b.identity}|{n}|{s['max_len']}"
        z_dev = _dev_logits(key, tm, ttok, sub, int(s["max_len"]))
        thr = st.slider("a second choice is informative from probability", 0.01, 0.3, 0.05, 0.01, key="temp_dk_thr")
        dk = dark_knowledge(z_dev, Ts, labels=np.asarray(sub.labels), threshold=thr)
        C.show(viz.dark_knowledge_curves(dk, current_T=T), "temp_dark")
        i = int(np.argmin(np.abs(np.asarray(dk["T"]) - T)))
        m = st.columns(4)
        m[0].metric(f"mean entropy at T={T:g}", f"{dk['entropy'][i]:.3f}")
        m[1].metric("non-target mass", f"{dk['non_target_mass'][i]:.3f}")
        m[2].metric("second choice informative", f"{dk['second_informative'][i]:.0%}")
        m[3].metric("entropy among non-targets", f"{dk['non_target_entropy'][i]:.3f}")
        C_ = dk["classes"]
        if C_ == 2:
            what = ("that mass can only go to the one other class: it tells the student *how sure* the teacher is, "
                    "never *which other class the example resembles*, so the entropy among the non-target classes "
                    "is 0 and no second choice is informative. Binary sentiment gives KD little to transfer beyond a "
                    "per-example confidence, and KD's gain over plain cross-entropy is small there.")
        else:
            what = (f"the wrong classes are ranked: for **{dk['second_informative'][i]:.0%}** of the examples the "
                    f"second choice holds at least {thr:g} of the probability and names the class the example "
                    "resembles: the information (Hinton's dark knowledge) that a many-class task's soft targets "
                    "transfer and hard labels do not.")
        st.markdown(
            f"On **{n} dev examples**, the {'fine-tuned' if ttuned else '(not yet fine-tuned)'} teacher's soft "
            f"targets at T = {T:g} leave on average **{dk['non_target_mass'][i]:.1%}** of the probability off the "
            f"gold label. With **{C_} classes** {what} Raising T spreads the mass (the entropy rises towards "
            f"log {C_} = {dk['max_entropy']:.2f}). A second choice counts as informative when its softened probability is "
            "at least the threshold and the task has more than two classes (`kdlab.analysis.dark_knowledge`).")
