"""Inspect one example of a run's data: attention maps and hidden-state similarity, teacher vs student; a sentence
pair is encoded as the model sees it ([CLS] a [SEP] b [SEP]), so the separator shows in the maps."""
import streamlit as st

import common as C
from kdlab.analysis import viz
from kdlab.errors import KdlabError
from kdlab.analysis.explain import inspect_example, output_probs

st.title("Inspect")
C.sidebar()

students = C.student_runs()
if not students:
    st.info("no finished student runs yet: train one on the Train page")
    st.stop()
by_id = {r["id"]: r for r in students}
with C.guard():
    run = by_id[st.selectbox("student run", list(by_id), format_func=lambda i: C.run_label(by_id[i]), key="insp_run")]
    stu, t, tok = C.run_models(run, attentions=True)
    if t is None:
        raise KdlabError(f"the teacher of run '{run['name']}' is not stored: attention maps need both models")
    b, _ = C.run_bundle(run)
    task = b.task
    splits = b.eval_splits()
    if st.session_state.get("insp_split") not in splits:
        st.session_state.pop("insp_split", None)
    split_name = st.selectbox("examples from", list(splits), key="insp_split",
                              help="the run's own evaluation sets (in domain and out of domain)")
    sp = splits[split_name]
    i = int(st.number_input(f"{split_name} example (0..{len(sp) - 1})", 0, max(0, len(sp) - 1), 0, key="insp_idx"))
    i = min(i, len(sp) - 1)
    pair = sp.texts_b is not None
    label = sp.labels[i]
    names = sp.label_names or b.label_names
    gold = f"{float(label):.3f}" if task.kind == "score" else \
        ", ".join(n for n, on in zip(names, label) if on) if task.kind == "multi" else names[int(label)]
    st.caption(f"gold label: **{gold}**" + (f" ({split_name}'s own labels)" if sp.label_map is not None else ""))
    key = f"{run['id']}_{split_name}_{i}"
    if pair:
        ca, cb = st.columns(2)
        text = ca.text_area(f"text A ({task.text_cols[0]}; edit to try your own)", sp.texts[i], key=f"insp_text_{key}")
        text_b = cb.text_area(f"text B ({task.text_cols[1]})", sp.texts_b[i], key=f"insp_text_b_{key}")
    else:
        text = st.text_input("text (edit to try your own)", sp.texts[i], key=f"insp_text_{key}")
        text_b = None
    ex = inspect_example(t, stu, tok, text, text_b, C.run_max_len(run))
    ft, fs, tokens, seps = ex.teacher, ex.student, ex.tokens, ex.separators
    if pair:
        st.caption(f"{len(tokens)} tokens of the pair encoding; separator `{tok.sep_token}` at position(s) "
                   f"{', '.join(map(str, seps))} (text A before the first, text B after it)")
    N, M = len(ft.attentions), len(fs.attentions)
    c1, c2, c3 = st.columns(3)
    tl = c1.selectbox("teacher layer", list(range(1, N + 1)), index=N - 1, key="insp_tl")
    sl = c2.selectbox("student layer", list(range(1, M + 1)), index=M - 1, key="insp_sl")
    heads = min(ft.attentions[0].shape[1], fs.attentions[0].shape[1])
    h = c3.selectbox("head", list(range(heads)), key="insp_head")
    pt, ps = output_probs(ft.logits[0], task.kind), output_probs(fs.logits[0], task.kind)
    if task.kind == "score":
        st.caption(f"teacher score = {float(pt):.3f} · student score = {float(ps):.3f}")
    elif task.kind == "multi":
        st.caption(f"teacher p = {[round(float(x), 3) for x in pt]} · student p = {[round(float(x), 3) for x in ps]}")
    else:
        st.caption(f"classes {list(b.label_names)} · teacher p = {[round(float(x), 3) for x in pt]} · "
                   f"student p = {[round(float(x), 3) for x in ps]}")
    C.show(viz.attention_heatmaps(ft.attentions[tl - 1][0, h], fs.attentions[sl - 1][0, h], tokens,
                                           f"teacher layer {tl}, head {h}", f"student layer {sl}, head {h}"),
           "insp_attention")
    th, sh = ft.hidden[tl][0], fs.hidden[sl][0]
    if th.shape[-1] == sh.shape[-1]:
        C.show(viz.hidden_similarity(th, sh, tokens, f"cosine: teacher layer {tl} x student layer {sl}"), "insp_hidden")
    else:
        st.info(f"teacher width {th.shape[-1]} and student width {sh.shape[-1]} differ: the cosine between "
                "token states needs a projection; pick a student copied from the teacher")
