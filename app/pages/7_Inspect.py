"""Inspect one example: attention maps and hidden-state similarity, teacher vs student."""
import streamlit as st
import torch

import common as C
from kdlab import viz
from kdlab.features import Need, features

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
        t, _, _ = C.teacher(attentions=True)
    dev = C.bundle().dev
    i = st.number_input(f"dev example (0..{len(dev) - 1})", 0, len(dev) - 1, 0, key="insp_idx")
    text = st.text_input("text (edit to try your own)", dev.texts[int(i)], key=f"insp_text_{int(i)}")
    enc = tok([text], truncation=True, max_length=48, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    with torch.inference_mode():
        ft = features(t, batch, Need(hidden=True, attentions=True))
        fs = features(stu, batch, Need(hidden=True, attentions=True))
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    N, M = len(ft.attentions), len(fs.attentions)
    c1, c2, c3 = st.columns(3)
    tl = c1.selectbox("teacher layer", list(range(1, N + 1)), index=N - 1, key="insp_tl")
    sl = c2.selectbox("student layer", list(range(1, M + 1)), index=M - 1, key="insp_sl")
    heads = min(ft.attentions[0].shape[1], fs.attentions[0].shape[1])
    h = c3.selectbox("head", list(range(heads)), key="insp_head")
    pt, ps = torch.softmax(ft.logits[0], -1), torch.softmax(fs.logits[0], -1)
    st.caption(f"teacher p = {[round(float(x), 3) for x in pt]} · student p = {[round(float(x), 3) for x in ps]}")
    st.plotly_chart(viz.attention_heatmaps(ft.attentions[tl - 1][0, h], fs.attentions[sl - 1][0, h], tokens,
                                           f"teacher layer {tl}, head {h}", f"student layer {sl}, head {h}"),
                    key="insp_attention")
    th, sh = ft.hidden[tl][0], fs.hidden[sl][0]
    if th.shape[-1] == sh.shape[-1]:
        st.plotly_chart(viz.hidden_similarity(th, sh, tokens, f"cosine: teacher layer {tl} x student layer {sl}"),
                        key="insp_hidden")
    else:
        st.info(f"teacher width {th.shape[-1]} and student width {sh.shape[-1]} differ: the cosine between "
                "token states needs a projection; pick a student copied from the teacher")
