"""Shared state and cached heavy objects for the dashboard pages.

The run store is the single source of truth; models, tokenizers and data bundles sit behind
``st.cache_resource``. Every page calls ``guard`` so that a ``KdlabError`` becomes one ``st.error``.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from kdlab.errors import KdlabError
from kdlab.number_format import num  # noqa: F401  (pages write C.num: one formatter for every number shown)
from kdlab.runs.store import Store

if TYPE_CHECKING:   # numpy loads with the first page that needs it, not with the first page
    import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "data"
EMBEDDED = ("", "embedded")
# out-of-domain pair sets offered by default for a task: SciTail for entailment tasks (scored through the task's
# built-in mapping, e.g. entailment -> entails), PAWS-QQP for the paraphrase tasks
OOD_DEFAULTS = {"scitail_test": lambda t: any("entails" in dict(m).values() for m in t.ood_maps),
                "paws_qqp_dev_and_test": lambda t: t.name in ("mrpc", "qqp")}


def preset() -> str | None:
    p = os.environ.get("KDLAB_APP_PRESET", "").strip().lower()
    return p or None


# The dashboard's own small budget under KDLAB_APP_PRESET=tiny (its tests and a quick look), beside the tiny preset
TINY_BUDGET = dict(max_train=96, max_eval=48, teacher_epochs=1, max_steps=4, batch_size=16, max_len=32, epochs=1)


def defaults() -> dict:
    """Setup defaults, derived from the run choices' table (``kdlab.choices``: its defaults, the tiny ``PRESETS``,
    the quick ``BUDGETS``): the packaged teacher on the embedded data, or the tiny ones (KDLAB_APP_PRESET=tiny)."""
    from kdlab.choices import DEFAULTS, PRESETS
    base = dict(teacher=DEFAULTS["teacher"], data="embedded", ood=[], student_layers=DEFAULTS["student_layers"],
                student_init=DEFAULTS["student_init"], student_hidden=DEFAULTS["student_hidden"] or 0)
    if preset() == "tiny":
        tiny = PRESETS["tiny"]
        return dict(base, teacher=tiny["teacher"], student_layers=tiny["student_layers"], **TINY_BUDGET,
                    **teacher_defaults())
    return dict(base, max_steps=1000, **budget("quick"), **teacher_defaults())


def teacher_defaults() -> dict:
    """The Setup choices beyond one teacher fine-tuned by kdlab (the names of kdlab.config.build_config, except
    teachers_extra: the teachers of an ensemble besides the first): a tiny teacher's family, a ready teacher used as
    is, an ensemble and its loss, soft labels from a file, a pretrained student."""
    from kdlab.choices import DEFAULTS
    return dict({k: DEFAULTS[k] for k in ("arch", "teacher_finetuned", "ensemble", "teacher_logits", "student")},
                teachers_extra=[])


def budget(name: str) -> dict:
    """The Setup values of a budget (``kdlab.choices.BUDGETS``: quick, the default, or full); 0 = all examples."""
    from kdlab.choices import BUDGETS
    b = BUDGETS[name]
    return dict(budget=name, max_train=b["max_train"] or 0, max_eval=b["max_eval"] or 0, max_len=b["max_len"],
                teacher_epochs=b["teacher_epochs"], teacher_lr=b["teacher_lr"], epochs=b["epochs"], lr=b["lr"],
                batch_size=b["batch_size"])


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
    """The run-store folder setting shown on every page, and a line with the Setup choices (returned: a placeholder
    that ``setup_caption`` refills after a page changed them)."""
    with st.sidebar:
        cur = str(runs_root())
        val = st.text_input("Run store folder", value=cur, key="kd_runs_input",
                            help="where runs are stored (env KDLAB_RUNS sets the default)")
        if val and val != cur:
            st.session_state["kd_runs_root"] = val
        try:
            if not store().writable:   # read-only: every page shows its runs; training needs a writable folder
                st.warning("This run store is read-only: its runs can be viewed and evaluated; new runs need a "
                           "writable run store folder.")
        except Exception:   # an unreadable store is reported by the page itself
            pass
        ph = st.empty()
        running_status()
    setup_caption(ph)
    return ph


@st.fragment(run_every=2.0)
def running_status():
    """A line per run in progress (phase, step of total, ETA), shown in the sidebar of every page and refreshed
    every 2 s on its own (a fragment), so it appears when a run starts and goes when it ends."""
    from kdlab.runs.progress import progress_line
    try:
        running = [r for r in store().runs() if r["status"] == "running"]
    except Exception:   # an unreadable store is reported by the page itself
        return
    for r in running[:5]:
        st.caption("⏳ " + progress_line(store(), r) + " · cancel on the Train page")


def setup_caption(ph):
    s = setup()
    data = s["data"] if s["data"] in EMBEDDED else Path(s["data"]).name
    ood = ", ".join(Path(o).stem for o in s.get("ood") or [])
    try:
        names = teacher_names(s)
    except KdlabError:   # an unknown family: the Setup page says so
        names = [str(s["teacher"])]
    who = (f"teachers **{' + '.join(names)}** ({s.get('ensemble') or teacher_defaults()['ensemble']})" if len(names) > 1 else
           f"teacher **{names[0]}**" + (" (as is)" if s.get("teacher_finetuned") else ""))
    if s.get("teacher_logits"):
        who = f"teacher **soft labels {Path(s['teacher_logits']).name}** (base {names[0]})"
    student = f"student **{s['student']}**" if s.get("student") else f"student **{s['student_layers']}** layers"
    ph.caption(f"{who} · data **{data}**" + (f" (OOD {ood})" if ood else "") + f" · {student}")


# ----------------------------------------------------------------------------------------------- shared data
def shared_data_root() -> Path | None:
    """The shared data folder: $KDLAB_SHARED_DATA, else ``../shared/data`` beside the repository (None if absent)."""
    env = os.environ.get("KDLAB_SHARED_DATA", "").strip()
    p = Path(env).expanduser() if env else ROOT.parent / "shared" / "data"
    return p.resolve() if p.is_dir() else None


def _has(folder: Path, stem: str) -> bool:
    from kdlab.data.loaders import EXTENSIONS
    return any((folder / f"{stem}{e}").is_file() for e in EXTENSIONS)


def glue_folders() -> tuple[dict[str, Path], list[str]]:
    """({task folder name: path} of the GLUE folders with a train file under <shared>/glue, [names without one])."""
    root = shared_data_root()
    glue = root / "glue" if root else None
    if glue is None or not glue.is_dir():
        return {}, []
    ok, no_train = {}, []
    for d in sorted(p for p in glue.iterdir() if p.is_dir()):
        if _has(d, "train"):
            ok[d.name] = d
        else:
            no_train.append(d.name)
    return ok, no_train


def ood_files() -> dict[str, Path]:
    """{stem: path} of the out-of-domain files under <shared>/ood_pairs."""
    from kdlab.data.loaders import EXTENSIONS
    root = shared_data_root()
    folder = root / "ood_pairs" if root else None
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in EXTENSIONS}


def default_ood(task) -> list[str]:
    """The OOD files chosen by default for ``task`` (a ``kdlab.tasks.Task``) when they are present."""
    files = ood_files()
    return [str(files[k]) for k, fits in OOD_DEFAULTS.items() if k in files and fits(task)]


def resolved_task(data: str):
    """The task a data choice names (``kdlab.tasks.resolve``: a GLUE folder's task, else sentiment); a path outside
    the allowed folders is refused first (``check_data``)."""
    from kdlab.tasks import resolve
    check_data(data)
    return resolve(None if data in EMBEDDED else data)


def primary_metric(run: dict) -> str:
    """A stored run's task's primary metric (accuracy for runs stored before tasks)."""
    from kdlab.tasks import run_primary_metric
    return run_primary_metric(run)


def task_line(task) -> str:
    """One markdown line: text fields, label kind, primary metric and OOD mappings of a task."""
    cols = " + ".join(f"`{c}`" for c in task.text_cols)
    kind = {"classes": "classes", "score": "a real-valued score", "multi": "several labels at once"}[task.kind]
    names = f" ({', '.join(task.label_names)})" if task.kind != "score" and task.label_names else ""
    maps = "; ".join(", ".join(f"{a} → {b}" for a, b in m) for m in task.ood_maps)
    return (f"task **{task.name}** · {'sentence pair' if task.pair else 'single text'}: {cols} · label "
            f"`{task.label_col}`: {kind}{names} · primary metric **{task.primary}**"
            + (f" · OOD label mapping {maps}" if maps else ""))


def allowed_dirs() -> list[Path]:
    dirs = [DATA_DIR, runs_root()] + ([shared_data_root()] if shared_data_root() else [])
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
    from kdlab.safety import looks_like_path as _is_path
    return _is_path(s)


def check_data(value: str):
    """A data value of the Setup: a path (``looks_like_path``, the loader's own rule) is confined
    (``check_path``); the embedded corpora and hub names pass."""
    if value not in EMBEDDED and looks_like_path(value):
        check_path(value)


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
    if s.get("lr") is not None:
        choices.setdefault("lr", s["lr"])   # the budget's student learning rate
    names = teacher_names(s)
    for name in names + [s.get("student") or ""]:
        if name and not is_tiny(name) and looks_like_path(name):
            check_path(name)
    logits = (s.get("teacher_logits") or "").strip()
    if logits:
        logits = str(soft_labels_path(logits))
    return build_config(teacher=names if len(names) > 1 else names[0], data=s["data"], ood=list(s.get("ood") or []),
                        teacher_finetuned=bool(s.get("teacher_finetuned")), ensemble=s.get("ensemble") or None,
                        teacher_logits=logits or None, student=(s.get("student") or "").strip() or None,
                        max_train=int(s["max_train"]),
                        max_eval=int(s["max_eval"]), student_layers=int(s["student_layers"]),
                        student_init=s["student_init"], student_hidden=int(s.get("student_hidden") or 0),
                        teacher_epochs=int(s["teacher_epochs"]), teacher_lr=s.get("teacher_lr"),
                        batch_size=int(s["batch_size"]),
                        max_len=int(s["max_len"]), no_progress=True, **choices)


def is_tiny(name: str) -> bool:
    from kdlab.models.families import is_tiny as _tiny
    return _tiny(name)


def teacher_names(s: dict | None = None) -> list[str]:
    """The teachers of the Setup choices: the teacher (``tiny-FAMILY`` when a family is picked for the tiny one,
    ``kdlab.config.tiny_teacher_of``) and the extra teachers of an ensemble."""
    from kdlab.config import tiny_teacher_of
    s = s or setup()
    first = str(s["teacher"]).strip()
    if s.get("arch") and first == "tiny":
        first = tiny_teacher_of(s["arch"], first)
    return [first] + [str(x).strip() for x in s.get("teachers_extra") or [] if str(x).strip()]


SOFT_LABEL_SUFFIXES = (".npy", ".csv", ".tsv")


def soft_labels_path(p: str) -> Path:
    """A soft-labels file typed on the Setup page: an existing .npy/.csv/.tsv file inside the allowed folders."""
    path = check_path(p)
    if not path.is_file() or path.suffix.lower() not in SOFT_LABEL_SUFFIXES:
        raise KdlabError(f"the soft labels file '{p}' is not a .npy, .csv or .tsv file: give one row of logits or "
                         "probabilities per training example (kdlab.models.teachers)")
    return path


def is_ready(cfg, name: str | None = None) -> bool:
    """A teacher used as is (``teacher_finetuned``, or a folder kdlab saved): nothing to fine-tune."""
    from kdlab.models.packaged import is_kdlab_model
    return bool(cfg.teacher_finetuned) or is_kdlab_model(name or cfg.teacher)


def teacher_members(cfg) -> list:
    """One single-teacher RunConfig per teacher of ``cfg``, as the pipeline prepares them."""
    from kdlab.config import teacher_members as members
    return members(cfg)


def check_ensemble(cfg) -> None:
    """An ensemble's teachers must share a tokenizer (the batch is tokenized once): checked on the Setup page from
    the tokenizers alone, before a run loads the models."""
    if not cfg.teachers:
        return
    from kdlab.models.teachers import check_same_tokenizer
    check_same_tokenizer([_tokenizer(n) for n in cfg.teachers], cfg.teachers)


@st.cache_resource(show_spinner=False, max_entries=8)
def _tokenizer(name: str):
    from kdlab.models.core import load_tokenizer
    return load_tokenizer(name)


# ----------------------------------------------------------------------------------------------- cached heavy objects
@st.cache_resource(show_spinner="loading data ...", max_entries=8)
def bundle_for(data: str, max_train: int, max_eval: int, ood: tuple = ()):
    """The data of a Setup choice, read as ``kdlab.engine.pipeline.load_bundle`` reads a run's (same seed, same OOD
    files: the same identity, so the prepared teacher is found)."""
    from kdlab.data.loaders import load_data
    return load_data(None if data in EMBEDDED else data, ood=list(ood) or None, max_train=max_train or None,
                     max_eval=max_eval or None, seed=0)


def bundle():
    s = setup()
    check_data(s["data"])
    for o in s.get("ood") or []:
        check_path(o)
    return bundle_for(s["data"], int(s["max_train"]), int(s["max_eval"]), tuple(s.get("ood") or ()))


def teacher_folder(cfg=None, b=None) -> Path:
    """Where the fine-tuned teacher of a run configuration and its data bundle (default: the Setup's) is (or will
    be) cached: its preparation lock's key."""
    from kdlab.runs.store import teacher_cache_root
    cfg, b = cfg or run_config(), b or bundle()
    return teacher_cache_root(store()) / cfg.teacher_key(b.identity)


def prepared_teacher_dir(cfg=None) -> Path | None:
    """Folder of the fine-tuned teacher for the Setup choices (of an ensemble: its first teacher), if it was
    prepared; a ready teacher's own folder (used as is); None for soft labels (no teacher model)."""
    cfg = cfg or run_config()
    if cfg.teacher_logits:
        return None
    return prepared_teacher_dirs(cfg)[0][1]


def prepared_teacher_dirs(cfg=None) -> list[tuple[str, Path | None]]:
    """(name, folder of the prepared teacher or None) for every teacher of the Setup choices (an ensemble: each).
    A ready teacher (used as is) counts as prepared: its own folder (None for a hub name)."""
    cfg = cfg or run_config()
    out = []
    for one in teacher_members(cfg):
        if is_ready(one):
            from kdlab.models.core import resolve
            path = resolve(one.teacher)
            out.append((one.teacher, path if isinstance(path, Path) else None))
            continue
        folder = teacher_folder(one)
        out.append((one.teacher, folder if (folder / "kdlab.json").exists() else None))
    return out


@st.cache_resource(show_spinner="loading model ...", max_entries=6)
def saved_model(folder: str, attentions: bool = False):
    from kdlab.models.core import load_saved
    m, tok = load_saved(folder, attentions=attentions)
    m.eval()
    return m, tok


@st.cache_resource(show_spinner="loading teacher ...", max_entries=4)
def base_teacher(name: str, num_labels: int, attentions: bool = False):
    from kdlab.models.core import load_teacher
    m, tok = load_teacher(name, num_labels, attentions=attentions)
    m.eval()
    return m, tok


@st.cache_resource(show_spinner="loading the fine-tuned teacher ...", max_entries=4)
def ready_model(name: str, attentions: bool = False, trust_remote_code: bool = False):
    from kdlab.models.ready_teacher import load_ready
    m, tok = load_ready(name, attentions=attentions, trust_remote_code=trust_remote_code)
    m.eval()
    return m, tok


def teacher(attentions: bool = False):
    """(model, tokenizer, fine_tuned: bool): the prepared teacher when there is one (a ready teacher as is), else
    the base model. An ensemble: its first teacher; soft labels: the base model the student is built from."""
    cfg = run_config()   # checks the typed paths
    if is_ready(cfg) and not cfg.teacher_logits:
        m, tok = ready_model(cfg.teacher, attentions, cfg.trust_remote_code)
        check_against_task(m, cfg.teacher)
        return m, tok, True
    folder = prepared_teacher_dir(cfg)
    if folder is not None:
        m, tok = saved_model(str(folder), attentions)
        return m, tok, True
    m, tok = base_teacher(cfg.teacher, bundle().num_labels(), attentions)
    return m, tok, False


def check_against_task(model, name: str) -> None:
    from kdlab.models.ready_teacher import check_against_task as _check
    _check(model, bundle(), name)


@st.cache_resource(show_spinner="building student ...", max_entries=4)
def _student_from(_teacher, key: str, layers: int, init: str, hidden: int):
    from kdlab.models.core import build_student
    st_ = build_student(_teacher, layers=layers, init=init, hidden=hidden or None)
    st_.eval()
    return st_


def fresh_student(t, key: str, tok=None):
    """The untrained student of the Setup choices: copied from ``t`` by the Setup strategy, or the pretrained
    student (with a new head) when one is chosen; that one must tokenize like the teacher, since the pages feed
    both the same tokens."""
    s = setup()
    if s.get("student"):
        name = s["student"].strip()
        m, stok = base_teacher(name, bundle().num_labels())
        ttok = tok if tok is not None else teacher()[1]
        from kdlab.models.core import same_tokenizer
        if not same_tokenizer(stok, ttok):
            raise KdlabError(f"the pretrained student '{name}' tokenizes differently from the teacher: this view "
                             "feeds both the same tokens; train it (logit-level methods) and compare the runs")
        return m
    return _student_from(t, key, int(s["student_layers"]), s["student_init"], int(s.get("student_hidden") or 0))


def _ranking(r: dict) -> bool:
    from kdlab.runs.run_record import StoredRun
    return StoredRun(r).is_ranking


def _lm(r: dict) -> bool:
    from kdlab.runs.run_record import StoredRun
    return StoredRun(r).task_kind == "lm"


def student_runs(status: str | None = "finished") -> list[dict]:
    """Classification / regression student runs (ranking runs have their own page, ``ranking_runs``; causal LM runs
    their own views, ``lm_views``)."""
    rows = [r for r in store().runs() if r["kind"] != "teacher" and not _ranking(r) and not _lm(r)]
    return [r for r in rows if status is None or r["status"] == status]


def ranking_runs(status: str | None = "finished") -> list[dict]:
    """Bi-encoder student runs of the ranking task (kdlab.ranking)."""
    rows = [r for r in store().runs() if r["kind"] != "teacher" and _ranking(r)]
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
    tdir = record(run).teacher_dir()
    teacher_m = saved_model(str(tdir), attentions)[0] if tdir else None
    return student, teacher_m, tok


@st.cache_data(show_spinner="predicting ...", max_entries=32)
def logits_for(folder: str, texts: tuple, max_len: int = 64, texts_b: tuple | None = None) -> np.ndarray:
    """Logits of the saved model in ``folder``; ``texts_b``: the second texts of a pair task."""
    from kdlab.data.loaders import Split
    from kdlab.analysis.evaluate import predict
    m, tok = saved_model(folder)
    return predict(m, Split("x", list(texts), [0] * len(texts), "x", None if texts_b is None else list(texts_b)),
                   tok, max_len=max_len)


# ----------------------------------------------------------------------------------------------- stored runs
def record(run: dict):
    """The stored run as a ``kdlab.runs.run_record.StoredRun`` of this store."""
    from kdlab.runs.run_record import StoredRun
    return StoredRun(run, store())


def task_of(run: dict):
    """The task a stored run was trained on (sentiment for runs from before tasks)."""
    from kdlab.tasks import BUILTIN
    rec = record(run)
    return rec.task(rec.model_dir()) or BUILTIN["sentiment"]


@st.cache_resource(show_spinner="loading the run's data ...", max_entries=6)
def _run_data(root: str, run_id: str):
    from kdlab.deploy.artifacts import run_data
    from kdlab.runs.store import Store
    return run_data(Store(root).run(run_id))


def run_bundle(run: dict):
    """(the run's own data bundle: train, dev and its OOD sets, read from its stored config; its max length)."""
    return _run_data(str(runs_root()), run["id"])


def run_max_len(run: dict) -> int:
    return record(run).max_len


def model_dir(run_id: str | None) -> Path | None:
    folder = store().artifact(run_id, "model_dir") if run_id else None
    return Path(folder) if folder and Path(folder).exists() else None


def teacher_run_of(run: dict) -> str | None:
    return record(run).teacher_run


def size_rows(runs: list[dict], metric: str, labels: dict | None = None) -> list[dict]:
    """One row per stored run: the metric per evaluation split (in domain first), and beside it the size on disk
    (MB of the model folder), parameters and CPU ms per example (batch 1) stored with the run (artifact ``size``)."""
    from kdlab.deploy.artifacts import folder_mb
    st_ = store()
    out = []
    for r in runs:
        ev = st_.final_evals(r["id"])
        size = st_.artifact(r["id"], "size") or {}
        folder = model_dir(r["id"])
        row = {"model": (labels or {}).get(r["id"], r["name"]), "kind": r["kind"], "method": r["method"]}
        for split in sorted(ev, key=lambda k: k != "dev"):
            v = ev[split].get(metric)
            row[f"{metric} {split}"] = None if v is None else round(float(v), 4)
        row.update({"MB": round(folder_mb(folder), 2) if folder else None,
                    "params": int(size["params"]) if size.get("params") else None,
                    "ms/example": round(float(size["latency_ms"]), 3) if size.get("latency_ms") else None})
        out.append(row)
    return out


def zip_folder(folder) -> bytes:
    """A model folder as a zip archive (paths relative to the folder's parent: ``<name>/config.json`` ...)."""
    import io
    import zipfile
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def split_texts(name: str, b=None):
    b = b or bundle()
    sp = b.eval_splits().get(name)
    if sp is None:
        raise KdlabError(f"the data has no split '{name}' (it has {', '.join(b.eval_splits())})")
    return sp


# ----------------------------------------------------------------------------------------------- downloads
@st.cache_resource(show_spinner=False)
def _png_export() -> bool:
    """True when plotly can write PNG here: kaleido installed and a Chrome/Chromium it can drive (offline)."""
    import importlib.util
    import shutil
    if importlib.util.find_spec("kaleido") is None:
        return False
    return bool(os.environ.get("BROWSER_PATH") or any(shutil.which(b) for b in (
        "chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")))


def readable(df):
    """The table as shown: its float columns written by ``num`` (0.0018, not 1.7763e-03); the values (and the CSV
    download) stay the numbers themselves."""
    floats = [c for c in df.columns if df[c].dtype.kind == "f"]
    if not floats or not (df.index.is_unique and df.columns.is_unique) or df.size > 100_000:
        return df
    return df.style.format(num, subset=floats, na_rep="")


def show(obj, key: str, where=None, name: str | None = None, **kw):
    """Draw a table (DataFrame, or a list of row dicts) or a plotly figure in ``where`` (default the page) with
    its downloads below it: the table as CSV, the figure as HTML (plotly.js inlined: opens offline) and as PNG
    when kaleido can render here. The files are made only when a button is clicked."""
    import pandas as pd
    where = where or st
    name = name or key
    if isinstance(obj, (pd.DataFrame, list)):
        df = obj if isinstance(obj, pd.DataFrame) else pd.DataFrame(obj)
        where.dataframe(readable(df), key=key, **kw)
        where.download_button("CSV", lambda: df.to_csv().encode(), f"{name}.csv", "text/csv", key=f"{key}_csv",
                              icon=":material/download:", type="tertiary", on_click="ignore")
        return
    where.plotly_chart(obj, key=key, **kw)
    c1, c2 = where.columns(2)
    c1.download_button("HTML", lambda: obj.to_html(include_plotlyjs=True, full_html=True).encode(), f"{name}.html",
                       "text/html", key=f"{key}_html", icon=":material/download:", type="tertiary", on_click="ignore")
    if _png_export():
        c2.download_button("PNG", lambda: obj.to_image(format="png", scale=2), f"{name}.png", "image/png",
                           key=f"{key}_png", icon=":material/download:", type="tertiary", on_click="ignore")
