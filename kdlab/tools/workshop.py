"""``python -m kdlab workshop prepare``: the class pack. The teacher and a set of runs chosen to teach, made before
the class so that every dashboard page has something real to show from the first click.

The runs (``PLAN``): the student without KD (``ce``), Hinton KD at two temperatures, BERT-PKD with its two
mappings (skip vs last), all internal layers at once (``internal-all``), RAIL-KD (random layers, redrawn per
epoch) and TinyBERT. Each is a stored run named ``workshop <profile>: <label>`` in the store the dashboard reads,
so it shows there as soon as it finishes. A second call skips the finished runs, resumes an interrupted one from
its last checkpoint (``checkpoint_every``) and starts the others again. ``PROFILES``: ``quick`` is the
dashboard's default budget (the first result in about two minutes on a 2-core CPU), ``full`` the whole embedded
training set and more epochs.
"""
from __future__ import annotations

import time

from ..runs.checkpoint import find_checkpoint
from ..config import BUDGETS, build_config
from ..errors import KdlabError
from ..methods import get
from ..engine.pipeline import distill_run, load_bundle, prepare_teacher, resume_run
from ..runs.store import Store

PLAN = (
    ("no KD (ce)", "ce", {}),
    ("kd T=2", "kd", {"temperature": 2.0}),
    ("kd T=8", "kd", {"temperature": 8.0}),
    ("pkd-skip", "pkd-skip", {}),
    ("pkd-last", "pkd-last", {}),
    ("internal-all", "internal-all", {}),
    ("rail-kd-l", "rail-kd-l", {}),
    ("tinybert", "tinybert", {}),
)
PROFILES = BUDGETS   # the budget of each profile (kdlab.config.BUDGETS); quick = the dashboard's defaults
CHECKPOINT_EVERY = 10   # steps: an interrupted run resumes from at most this many steps back


def run_name(profile: str, label: str) -> str:
    return f"workshop {profile}: {label}"


def _latest(store: Store, name: str) -> dict | None:
    return next((r for r in store.runs() if r["name"] == name), None)   # newest first


def prepare(store: Store, profile: str = "quick", log=print, progress: bool = True, **overrides) -> list[dict]:
    """Prepare the teacher and every run of ``PLAN`` for ``profile`` (``overrides``: other ``build_config``
    choices, e.g. ``preset='tiny', max_steps=2``); returns one ``{"label", "run", "status", "action", "seconds"}``
    per run, ``action`` being skipped (already finished), resumed or trained. One process at a time prepares a
    store: a second one fails at once, naming the first."""
    from ..runs import prep_lock
    with prep_lock.exclusive(store.root / "workshop.lock", f"the workshop pack in {store.root}"):
        return _prepare(store, profile, log, progress, **overrides)


def _prepare(store: Store, profile: str, log, progress: bool, **overrides) -> list[dict]:
    if profile not in PROFILES:
        raise KdlabError(f"unknown workshop profile '{profile}': use quick or full")
    choices = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
    cfg = build_config(checkpoint_every=CHECKPOINT_EVERY, no_progress=True, **choices)
    bundle = load_bundle(cfg)
    todo = [(label, m, args) for label, m, args in PLAN
            if (_latest(store, run_name(profile, label)) or {}).get("status") != "finished"]
    out = [{"label": e[0], "run": _latest(store, run_name(profile, e[0]))["id"], "status": "finished",
            "action": "skipped", "seconds": 0.0} for e in PLAN if e not in todo]
    for r in out:
        log(f"workshop: {r['label']}: already finished ({r['run']}), skipped")
    if not todo:
        return out
    t0 = time.time()
    teacher, tok, teacher_run = prepare_teacher(cfg, store, bundle, log=log)   # once; waits if another prepares it
    log(f"workshop: teacher ready ({teacher_run}, {time.time() - t0:.0f} s)")
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(PLAN), initial=len(PLAN) - len(todo), desc=f"workshop {profile}", unit="run")
    try:
        for label, method, args in todo:
            name = run_name(profile, label)
            if bar is not None:
                bar.set_postfix_str(label)
            t1, prev = time.time(), _latest(store, name)
            if prev and prev["status"] in ("died", "failed", "cancelled") and \
                    find_checkpoint(store.folder(prev["id"]) / "checkpoint") is not None:
                log(f"workshop: {label}: resuming {prev['id']} from its last checkpoint")
                rid, action = resume_run(store, prev["id"], log=log), "resumed"
            else:
                c = build_config(checkpoint_every=CHECKPOINT_EVERY, no_progress=True, method=method,
                                 method_args=args, name=name, **choices)
                # a method that reads attention maps loads its teacher with eager attention (from the cache)
                given = {} if get(method).needs_attentions else dict(teacher=teacher, tokenizer=tok,
                                                                      teacher_run=teacher_run)
                rid, action = distill_run(c, store, bundle=bundle, log=log, **given), "trained"
            run = store.run(rid)
            out.append({"label": label, "run": rid, "status": run["status"], "action": action,
                        "seconds": round(time.time() - t1, 1)})
            log(f"workshop: {label}: {run['status']} ({rid}, {time.time() - t1:.0f} s)")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    order = [label for label, _, _ in PLAN]
    return sorted(out, key=lambda r: order.index(r["label"]))
