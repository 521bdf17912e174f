"""Settings shared by the kdlab notebooks: fast mode for CI, normal mode for workshops.

``KDLAB_FAST=1``: the tiny random BERT teacher (``--preset tiny``) on a small slice of the embedded
corpus, a few optimisation steps per run and a temporary run store (``KDLAB_RUNS`` when set), so every
notebook runs top to bottom in well under a minute on 2 CPU cores.

Normal mode: the packaged teacher ``minilm-l6``; the real data in ``../shared/data`` (SST-2 in domain,
IMDB and Yelp out of domain) when present, otherwise the embedded corpus; the run store ``KDLAB_RUNS``
or ``<repo>/runs`` (the one the dashboard reads).

Every notebook starts with ``import _setup as S`` and then calls ``S.run("kd")`` and friends: they call
``kdlab.engine.pipeline`` exactly like the CLI does, reuse the fine-tuned teacher (cached in the store) and
reuse an identical finished run instead of training it again.
"""
from __future__ import annotations

import copy
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from kdlab.config import RunConfig, build_config  # noqa: E402
from kdlab.errors import KdlabError  # noqa: E402
from kdlab.methods import names  # noqa: E402
from kdlab.engine.pipeline import distill_run, load_bundle, prepare_teacher  # noqa: E402
from kdlab.runs.store import Store  # noqa: E402
from kdlab.tasks import run_primary_metric  # noqa: E402
from kdlab.threads import use as use_threads  # noqa: E402

use_threads()   # this kernel's share of the cores beside the runs and other notebooks computing (kdlab.threads)

ROOT = Path(__file__).resolve().parents[1]
FAST = os.environ.get("KDLAB_FAST", "").strip().lower() not in ("", "0", "false", "no", "off")
SHARED_DATA = ROOT.parent / "shared" / "data"

# The choices of every notebook run (kdlab.config.build_config, the CLI's option names); the others, the learning
# rates among them, are the run choices' defaults (kdlab.choices), the same as the CLI's and the dashboard's.
# fast mode: tiny everything; normal mode: a workshop-sized run on a laptop CPU
CHOICES = (dict(preset="tiny", max_train=64, max_eval=24, max_steps=3, epochs=1, batch_size=16, teacher_epochs=1)
           if FAST else
           dict(max_train=2000, max_eval=400, max_steps=None, epochs=2))
MAX_TRAIN, MAX_EVAL = CHOICES["max_train"], CHOICES["max_eval"]
STEPS = CHOICES["max_steps"]          # optimisation steps per student run (None = full epochs)
EPOCHS = CHOICES["epochs"]

if FAST:
    try:
        import plotly.io as pio
        pio.renderers.default = "plotly_mimetype"   # small outputs, no plotly.js embedded
    except ImportError:  # pragma: no cover
        pass


SUITES = ("sentiment", "nli")


def data_spec(suite: str = "sentiment") -> tuple[str | None, list[str] | None, str]:
    """(data, ood files, description) of a suite: ``sentiment`` (the real SST-2/IMDB/Yelp data when present, normal
    mode only; else the embedded corpus) or ``nli`` (the MNLI file with SciTail out of domain when present, normal
    mode only; else the embedded synthetic NLI corpus with its science-facts OOD set)."""
    if suite not in SUITES:
        raise KdlabError(f"unknown suite {suite!r}: choose one of {', '.join(SUITES)}")
    if suite == "nli":
        mnli, scitail = SHARED_DATA / "glue" / "MNLI" / "dev_matched.reduced.tsv", SHARED_DATA / "ood_pairs" / \
            "scitail_test.tsv"
        if not FAST and mnli.exists() and scitail.exists():
            return str(mnli), [str(scitail)], ("MNLI (3-way, split with a fixed seed) in domain, SciTail out of domain "
                                               "(entailment -> entails, neutral/contradiction -> neutral)")
        return "embedded-nli", None, ("the embedded synthetic NLI corpus (3-way, everyday scenes) with science facts "
                                      "out of domain (2-way, scored through the entailment mapping)")
    sst2, ood = SHARED_DATA / "sst2", SHARED_DATA / "ood"
    if not FAST and (sst2 / "train.tsv").exists():
        oods = [str(ood / f) for f in ("imdb.tsv", "yelp.tsv") if (ood / f).exists()]
        return str(sst2), oods, "SST-2 (in domain) with IMDB and Yelp out of domain, from ../shared/data"
    return None, None, "the embedded synthetic sentiment corpus (two out-of-domain sets)"


def config(method: str = "kd", suite: str = "sentiment", **changes) -> RunConfig:
    """The notebooks' run configuration for ``method`` on a suite's data (``data_spec``); ``changes`` are further
    choices of ``kdlab.config.build_config`` (``method_args``, ``student_layers``, ``name``, ...); ``steps`` sets
    the number of optimisation steps."""
    if "steps" in changes:
        changes["max_steps"] = changes.pop("steps")
    data, ood, _ = data_spec(suite)
    task = {"task": "mnli"} if suite == "nli" and data != "embedded-nli" else {}
    cfg = build_config(**{**CHOICES, "data": data, "ood": ood or (), "no_progress": True, "method": method,
                          **task, **changes})
    for t in (cfg.train, cfg.teacher_train):   # no per-epoch checkpoints: notebook runs are not resumed
        t.checkpoint_each_epoch = False
    return cfg


_cache: dict = {}


def store() -> Store:
    """The run store: ``KDLAB_RUNS`` when set; a temporary folder in fast mode; else ``<repo>/runs``."""
    if "store" not in _cache:
        root = os.environ.get("KDLAB_RUNS")
        if not root:
            root = tempfile.mkdtemp(prefix="kdlab-notebook-runs-") if FAST else str(ROOT / "runs")
        _cache["store"] = Store(root)
    return _cache["store"]


def bundle(suite: str = "sentiment"):
    """The data bundle of a suite (train, dev and the out-of-domain splits)."""
    if ("bundle", suite) not in _cache:
        _cache[("bundle", suite)] = load_bundle(config(suite=suite))
    return _cache[("bundle", suite)]


def teacher(suite: str = "sentiment"):
    """(fine-tuned teacher, tokenizer, teacher run id) of a suite: fine-tuned once, then reused from the store."""
    if ("teacher", suite) not in _cache:
        _cache[("teacher", suite)] = prepare_teacher(config(suite=suite), store(), bundle(suite), log=_log)
    return _cache[("teacher", suite)]


def _log(msg: str):
    print(msg, flush=True)


def _same(stored: dict, cfg: RunConfig) -> bool:
    want = cfg.to_dict()
    for k in ("name",):
        want.pop(k, None)
    return all(stored.get(k) == v for k, v in want.items())


def reusable_run(cfg: RunConfig) -> str | None:
    """A finished run of the store with exactly this configuration (same data, teacher and seed)."""
    for r in store().runs(kind="student"):
        if r["status"] == "finished" and r["method"] == cfg.method and _same(r["config"], cfg):
            return r["id"]
    return None


def run(method: str, reuse: bool = True, suite: str = "sentiment", **changes) -> str:
    """Distill a student with ``method`` on a suite's data (through ``kdlab.engine.pipeline.distill_run``) and return its
    run id. An identical finished run in the store is reused unless ``reuse=False``."""
    from kdlab.methods import get
    if method not in names():
        raise KdlabError(f"method '{method}' is not registered: `python -m kdlab methods` lists the methods")
    changes.setdefault("name", f"notebook {method}" + ("" if suite == "sentiment" else f" ({suite})"))
    cfg = config(method, suite=suite, **changes)
    found = _reusable(cfg, method, reuse)
    if found:
        return found
    t, tok, t_run = teacher(suite)
    if getattr(get(method), "trains_teacher", False):   # the teacher learns too: never touch the shared one
        t = copy.deepcopy(t)
        for p in t.parameters():
            p.requires_grad_(True)
    return distill_run(cfg, store(), teacher=t, tokenizer=tok, bundle=bundle(suite), teacher_run=t_run, log=_log)


def run_own_teacher(method: str = "kd", reuse: bool = True, suite: str = "sentiment", **changes) -> str:
    """Like ``run``, but the run prepares its own teacher(s) from its configuration, as the CLI does: a tiny teacher
    of another family (``teacher="tiny", arch="roberta"``), an ensemble (``teacher=["tiny", "tiny-roberta"],
    ensemble="mean-kl"``), a ready teacher (``teacher_finetuned=True``), soft labels (``teacher_logits``). Each
    teacher is fine-tuned once and cached in the store; an identical finished run is reused unless ``reuse=False``."""
    changes.setdefault("name", f"notebook {method}")
    cfg = config(method, suite=suite, **changes)
    return _reusable(cfg, method, reuse) or distill_run(cfg, store(), log=_log)


def _reusable(cfg, method: str, reuse: bool) -> str | None:
    """An identical finished run of the store (None when there is none or ``reuse`` is off)."""
    found = reusable_run(cfg) if reuse else None
    if found:
        _log(f"{method}: reusing finished run {found}")
    return found


def load_model(run_id: str, attentions: bool = False):
    """(model, tokenizer) saved by a finished run (student or teacher)."""
    from kdlab.models.core import load_saved
    folder = store().artifact(run_id, "model_dir")
    if not folder:
        raise KdlabError(f"run {run_id} has no saved model: run it to the end first")
    return load_saved(folder, attentions=attentions)


def primary_table(runs: dict) -> dict:
    """``{label: run id}`` -> ``{label: {split: primary metric}}``: each run's task's primary metric."""
    out = {}
    for label, rid in runs.items():
        metric = run_primary_metric(store().run(rid))
        out[label] = {split: m.get(metric) for split, m in store().final_evals(rid).items()}
    return out


def accuracy_table(runs: dict, metric: str = "accuracy") -> dict:
    """``{label: run id}`` -> ``{label: {split: metric}}`` from the store's final evaluations."""
    return {label: {split: m.get(metric) for split, m in store().final_evals(rid).items()}
            for label, rid in runs.items()}


def describe() -> str:
    _, _, what = data_spec()
    mode = "FAST (tiny teacher, a few steps)" if FAST else "normal (packaged teacher minilm-l6)"
    return (f"mode: {mode}\ndata: {what}\nrun store: {store().root}\n"
            f"max_train={MAX_TRAIN}, max_eval={MAX_EVAL}, steps per run={STEPS or 'full epochs'}")


def references(run_id: str) -> None:
    """Print the published reference rows for the teacher of ``run_id`` (itself when a teacher run) and the
    weak-teacher warning (``kdlab.analysis.references``), or one line saying why there is none."""
    from kdlab.analysis.references import for_run
    lines = for_run(store(), run_id)
    print("\n".join(lines) if lines else "published reference rows: none for this data (the embedded synthetic corpus "
          "and custom tasks have no published figure)")


def study_references(name: str) -> None:
    """``references`` for a study (the teacher of its first finished cell)."""
    from kdlab.analysis.references import for_study
    lines = for_study(store(), name)
    print("\n".join(lines) if lines else "published reference rows: none for this data")
