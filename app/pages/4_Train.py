"""Train: start a run as a separate process and follow it live through the run store."""
import json
from pathlib import Path

import numpy as np
import streamlit as st

import common as C
import method_form
from kdlab.analysis import references, viz
from kdlab.choices import DEFAULTS
from kdlab.tools import launch
from kdlab.errors import KdlabError
from kdlab.methods import get, names
from kdlab.runs import prep_lock
from kdlab.runs.progress import progress_line, run_progress
from kdlab.runs.store import Store

st.title("Train")
C.sidebar()
s = C.setup()
store = C.store()

methods = names()
default_method = DEFAULTS["method"]
method = st.selectbox("method", methods, index=methods.index(default_method) if default_method in methods else 0,
                      key="train_method")
st.caption(get(method).summary)
with st.form("train_form"):
    c1, c2, c3 = st.columns(3)
    max_steps = c1.number_input("max steps", 1, 10**6, int(s["max_steps"]), key="train_max_steps")
    epochs = c2.number_input("epochs", 1, 100, int(s.get("epochs", 1 if C.preset() == "tiny" else
                                                          DEFAULTS["epochs"])), key="train_epochs")
    name = c3.text_input("run name (optional)", "", key="train_name", placeholder="the method's name")
    st.markdown(f"**options of `{method}`** (hover a name for what it does; the method checks the values)")
    form_args = method_form.render(get(method))
    with st.expander("Advanced: options as JSON (layer lists, matrices, schedules such as temperature_end)"):
        opts = st.text_area("method options (JSON; these override the form)", "{}", key="train_opts", height=80)
        st.json(get(method).all_defaults())
    go = st.form_submit_button("Start run")

if go:
    with C.guard():
        try:
            extra = json.loads(opts or "{}")
        except json.JSONDecodeError as e:
            raise KdlabError(f"method options are not valid JSON ({e.msg}): write e.g. {{\"temperature\": 4}}")
        if not isinstance(extra, dict):
            raise KdlabError("method options must be a JSON object, e.g. {\"temperature\": 4}")
        args = {**form_args, **extra}
        get(method).check_options(args)  # the method's declared types and ranges, its choices, X_end / X_schedule
        cfg = C.run_config(method=method, max_steps=int(max_steps), epochs=int(epochs), method_args=args)
        if cfg.teacher_logits or cfg.teachers:   # logits only: a layer method is refused here, not minutes later
            from kdlab.models.teachers import check_method
            check_method(get(method), "soft labels (Setup: soft labels file)" if cfg.teacher_logits else
                         "several teachers (Setup: teacher ensemble)")
        job = launch.launch(cfg, store.root, launch.unique_name(name or method))
        st.session_state["train_job"] = job.__dict__
        st.session_state.pop("train_run_id", None)
        st.success(f"started `{job.name}` (pid {job.pid}); it keeps running if you leave this page")


def _job():
    d = st.session_state.get("train_job")
    return launch.Launch(**d) if d else None


def waiting(job):
    """A launched run without a stored run yet: its teacher is being prepared (by this run or by another process:
    then it waits for that preparation and reuses the teacher), or it is loading its data."""
    prep = None
    with C.guard():
        cfg = b = None
        if job.config and Path(job.config).is_file():   # the launched run's own configuration and data
            from kdlab.config import RunConfig
            cfg = RunConfig.from_dict(json.loads(Path(job.config).read_text()))
            b = C.bundle_for(cfg.data or "embedded", int(cfg.max_train or 0), int(cfg.max_eval or 0),
                             tuple(cfg.ood or ()))
        cfg = cfg or C.run_config()
        for one in C.teacher_members(cfg):   # an ensemble's teachers are prepared one after the other
            prep = prep_lock.preparation(C.teacher_folder(one, b))
            if prep is not None:
                break
    if prep is None:
        st.info(f"`{job.name}`: starting (loading data and models) ...")
    else:
        own = prep["pid"] == job.pid
        if own:
            what, phase = "fine-tuning its teacher first (the next runs on this teacher reuse it)", "teacher fine-tuning"
        else:
            what = (f"waiting for the teacher being prepared by another process (pid {prep['pid']}, since "
                    f"{prep['since']}); it will reuse that teacher, never fine-tune it a second time")
            phase = "waiting for teacher"
        st.info(f"`{job.name}`: {what} · phase: {phase} · {prep['line']}")
        st.progress(prep["fraction"], text=prep["line"])
    c1, c2 = st.columns(2)
    if c1.button("Cancel this run", key="train_cancel_waiting", help="stops the launched process; a teacher "
                 "preparation started by another process goes on"):
        launch.stop(job)
        st.warning(f"`{job.name}` stopped before its run started")
    if prep and prep.get("run") and prep.get("store") and c2.button(
            "Cancel the teacher preparation", key="train_cancel_prep",
            help="asks the fine-tuning to stop after its current step; runs waiting for it then fail"):
        launch.cancel(Store(prep["store"]), prep["run"])
        st.warning("cancel requested: the teacher fine-tuning stops after its current step")


@st.fragment(run_every=1.5)
def live():
    job = _job()
    rid = st.session_state.get("train_run_id")
    if job and not rid:
        rid = launch.run_named(store, job.name)
        if rid:
            st.session_state["train_run_id"] = rid
        elif job.alive():
            waiting(job)
            return
        else:
            st.error(f"`{job.name}` stopped before its run started:\n\n```\n{job.log_tail()}\n```")
            return
    runs = [r for r in store.runs() if r["kind"] != "teacher"]
    if not runs:
        st.info("no runs yet: start one above")
        return
    ids = [r["id"] for r in runs]
    sel = st.selectbox("follow run", ids, index=ids.index(rid) if rid in ids else 0,
                       format_func=lambda i: C.run_label(next(r for r in runs if r["id"] == i)), key="train_follow")
    run = store.run(sel)
    rows = store.metrics(sel)
    prog = run_progress(store, run)
    c1, c2, c3 = st.columns([2, 3, 1])
    c1.markdown(f"status: **{run['status']}** · {progress_line(store, run)}")
    c2.progress(prog["fraction"] if prog["total"] else (1.0 if run["status"] == "finished" else 0.0))
    if run["status"] == "running":
        if c3.button("Cancel", key="train_cancel"):
            launch.cancel(store, sel)
            st.warning("cancel requested: the run stops after its current step")
    if run["message"]:
        st.caption(run["message"])
    ev = store.final_evals(sel)
    if ev:
        primary = C.primary_metric(run)
        st.markdown(" · ".join(f"{k}: {primary} **{v.get(primary, float('nan')):.3f}**" for k, v in ev.items()))
        text, warn = references.split_warning(references.for_run(store, sel))   # published rows, the teacher's
        if text:
            st.code(text)
        if warn:
            st.warning(warn)
    loss = [(r["step"], r["value"]) for r in rows if r["name"] == "loss"]
    col1, col2 = st.columns([3, 2])
    if loss:
        C.show(viz.run_curves({run["name"]: tuple(zip(*loss))}, "loss", smoothing=0.3), "train_loss_curve", col1)
    terms = viz.term_series(rows)
    if terms:   # each named term of the loss (kd, ce, hidden, ...) on its own curve
        C.show(viz.run_curves(terms, "loss terms", smoothing=0.3), "train_term_curves", col1)
    maps = store.mappings(sel)
    if maps:
        k = col2.slider("mapping at log entry", 0, len(maps) - 1, len(maps) - 1, key="train_map_k") \
            if len(maps) > 1 else 0
        m = maps[k]
        C.show(viz.mapping_heatmap(np.asarray(m["matrix"]), title=f"W at step {m['step']} (epoch {m['epoch']})"),
               "train_mapping", col2)
    if viz.per_layer_series(rows):
        C.show(viz.per_layer_multiples(rows, smoothing=0.6), "train_multiples")


live()
