"""Shared state and cached heavy objects for the dashboard pages.

The run store is the single source of truth; models, tokenizers and data bundles sit behind
``st.cache_resource``. Every page calls ``guard`` so that a ``KdlabError`` becomes one ``st.error``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import streamlit as st

from kdlab.errors import KdlabError
from kdlab.store import Store

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "data"


def preset() -> str | None:
    p = os.environ.get("KDLAB_APP_PRESET", "").strip().lower()
    return p or None


def defaults() -> dict:
    """Setup defaults: the packaged teacher on the embedded data, or tiny ones (KDLAB_APP_PRESET=tiny)."""
    if preset() == "tiny":
        return dict(teacher="tiny", data="embedded", student_layers=2, student_init="skip", student_hidden=0,
                    max_train=96, max_eval=48, teacher_epochs=1, max_steps=4, batch_size=16, max_len=32)
    return dict(teacher="minilm-l6", data="embedded", student_layers=3, student_init="skip", student_hidden=0,
                max_train=2000, max_eval=300, teacher_epochs=2, max_steps=200, batch_size=32, max_len=64)


def setup() -> dict:
    """The current Setup choices (session state, seeded with the defaults)."""
    if "kd_setup" not in st.session_state:
        st.session_state["kd_setup"] = defaults()
    return st.session_state["kd_setup"]


def runs_root() -> Path:
    return Path(st.session_state.get("kd_runs_root") or os.environ.get("KDLAB_RUNS") or "runs").resolve()


def store() -> Store:
    return Store(runs_root())


def sidebar():
    """The run-store folder setting shown on every page."""
    with st.sidebar:
        cur = str(runs_root())
        val = st.text_input("Run store folder", value=cur, key="kd_runs_input",
                            help="where runs are stored (env KDLAB_RUNS sets the default)")
        if val and val != cur:
            st.session_state["kd_runs_root"] = val
        s = setup()
        st.caption(f"teacher **{s['teacher']}** · data **{s['data']}** · student **{s['student_layers']}** layers")


def allowed_dirs() -> list[Path]:
    dirs = [DATA_DIR, runs_root()]
    for p in os.environ.get("KDLAB_ALLOWED_DIRS", "").split(os.pathsep):
        if p.strip():
            dirs.append(Path(p).expanduser())
    return [d.resolve() for d in dirs]


def check_path(p: str, must_exist: bool = True, extra: list | None = None) -> Path:
    """A path typed in the UI must lie inside the data folder, the run store or KDLAB_ALLOWED_DIRS."""
    from kdlab.safety import confine
    path = Path(p).expanduser()
    if not path.is_absolute():
        path = ROOT / path
    path = confine(path, allowed_dirs() + [Path(x) for x in (extra or [])])
    if must_exist and not path.exists():
        raise KdlabError(f"'{p}' does not exist: check the path")
    return path


def looks_like_path(s: str) -> bool:
    return s.startswith((".", "/", "~")) or s.endswith((".tsv", ".csv", ".jsonl")) or os.sep in s and \
        Path(s).suffix != ""


@contextmanager
def guard():
    """Show user mistakes as one message, never a traceback."""
    try:
        yield
    except KdlabError as e:
        st.error(f"{e}")
    except (FileNotFoundError, PermissionError, ValueError) as e:
        st.error(f"{type(e).__name__}: {e}")
    except Exception as e:   # not a user mistake: one line in the page, the traceback in the terminal
        import traceback
        traceback.print_exc()
        first = (str(e).strip().splitlines() or [""])[0][:300]
        st.error(f"unexpected error ({type(e).__name__}: {first}); nothing in the run store was changed. "
                 "The details are in the terminal that runs `streamlit run`.")


def run_config(s: dict | None = None, **choices):
    """The RunConfig of the Setup choices, plus ``choices`` of a page (method, epochs, ...: the names of
    ``kdlab.config.build_config``, which applies the defaults and validates)."""
    from kdlab.config import build_config
    s = dict(s or setup())
    return build_config(teacher=s["teacher"], data=s["data"], max_train=int(s["max_train"]),
                        max_eval=int(s["max_eval"]), student_layers=int(s["student_layers"]),
                        student_init=s["student_init"], student_hidden=int(s.get("student_hidden") or 0),
                        teacher_epochs=int(s["teacher_epochs"]), batch_size=int(s["batch_size"]),
                        max_len=int(s["max_len"]), no_progress=True, **choices)


# ----------------------------------------------------------------------------------------------- cached heavy objects
@st.cache_resource(show_spinner="loading data ...")
def bundle_for(data: str, max_train: int, max_eval: int):
    from kdlab.data.loaders import load_data
    return load_data(None if data in ("", "embedded") else data, max_train=max_train or None,
                     max_eval=max_eval or None, seed=0)


def bundle():
    s = setup()
    if s["data"] not in ("", "embedded") and looks_like_path(s["data"]):
        check_path(s["data"])
    return bundle_for(s["data"], int(s["max_train"]), int(s["max_eval"]))


def prepared_teacher_dir(cfg=None) -> Path | None:
    """Folder of the fine-tuned teacher for the Setup choices, if it was prepared."""
    cfg = cfg or run_config()
    b = bundle()
    from kdlab.pipeline import teacher_cache_root
    folder = teacher_cache_root(store()) / cfg.teacher_key(b.identity)
    return folder if (folder / "kdlab.json").exists() else None


@st.cache_resource(show_spinner="loading model ...", max_entries=6)
def saved_model(folder: str, attentions: bool = False):
    from kdlab.models import load_saved
    m, tok = load_saved(folder, attentions=attentions)
    m.eval()
    return m, tok


@st.cache_resource(show_spinner="loading teacher ...", max_entries=4)
def base_teacher(name: str, num_labels: int, attentions: bool = False):
    from kdlab.models import load_teacher
    m, tok = load_teacher(name, num_labels, attentions=attentions)
    m.eval()
    return m, tok


def teacher(attentions: bool = False):
    """(model, tokenizer, fine_tuned: bool): the prepared teacher when there is one, else the base model."""
    s = setup()
    if s["teacher"] not in ("tiny", "minilm-l6") and looks_like_path(s["teacher"]):
        check_path(s["teacher"])
    folder = prepared_teacher_dir()
    if folder is not None:
        m, tok = saved_model(str(folder), attentions)
        return m, tok, True
    m, tok = base_teacher(s["teacher"], bundle().num_labels(), attentions)
    return m, tok, False


@st.cache_resource(show_spinner="building student ...", max_entries=4)
def _student_from(_teacher, key: str, layers: int, init: str, hidden: int):
    from kdlab.models import build_student
    st_ = build_student(_teacher, layers=layers, init=init, hidden=hidden or None)
    st_.eval()
    return st_


def fresh_student(t, key: str):
    s = setup()
    return _student_from(t, key, int(s["student_layers"]), s["student_init"], int(s.get("student_hidden") or 0))


def student_runs(status: str | None = "finished") -> list[dict]:
    rows = [r for r in store().runs() if r["kind"] != "teacher"]
    return [r for r in rows if status is None or r["status"] == status]


def run_label(r: dict) -> str:
    return f"{r['name']} · {r['method']} · {r['status']}" if r["name"] != r["id"] else \
        f"{r['id']} · {r['status']}"


def run_models(run: dict, attentions: bool = False):
    """(student, teacher, tokenizer) of a finished run, from the folders recorded in the store."""
    st_dir = store().artifact(run["id"], "model_dir")
    if not st_dir or not Path(st_dir).exists():
        raise KdlabError(f"run {run['id']} has no saved student (status {run['status']}): pick a finished run")
    student, tok = saved_model(st_dir, attentions)
    teacher_m = None
    trun = run["config"].get("teacher_run") or run.get("parent")
    if trun:
        tdir = store().artifact(trun, "model_dir")
        if tdir and Path(tdir).exists():
            teacher_m, _ = saved_model(tdir, attentions)
    return student, teacher_m, tok


@st.cache_data(show_spinner="predicting ...", max_entries=32)
def logits_for(folder: str, texts: tuple, max_len: int = 64) -> np.ndarray:
    from kdlab.data.loaders import Split
    from kdlab.evaluate import predict
    m, tok = saved_model(folder)
    return predict(m, Split("x", list(texts), [0] * len(texts), "x"), tok, max_len=max_len)


def split_texts(name: str):
    b = bundle()
    sp = b.eval_splits().get(name)
    if sp is None:
        raise KdlabError(f"the data has no split '{name}' (it has {', '.join(b.eval_splits())})")
    return sp
