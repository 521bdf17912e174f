"""Studies: a grid of cells (methods x option values x seeds) over one data and model setup.

Every cell is a normal stored run (``kdlab.engine.pipeline.distill_run``) named ``<study>/<cell>``; the study (its
name, its setup and grid, and cell -> run id) lives in the run store's ``studies`` / ``study_cells`` tables, so
the dashboard reads it like any run. Running a study again skips its finished cells and resumes interrupted ones
from their last checkpoint (``kdlab.engine.pipeline.resume_run``), so a long study survives a stop. The teacher is
fine-tuned (or reused) once, before the cells, and every cell reuses it from the teacher cache; with
``workers > 1`` the cells run in parallel processes. The data's subsampling and dev split are fixed by one
``data_seed`` so that every seed trains on the same data with the same teacher; the seed of a cell is the
student's (initialisation of new parts, data order, dropout).

After the cells, ``aggregate`` reads each cell's final evaluation and per-example predictions and builds the
table of ``kdlab.analysis.stats.summarize`` (mean ± std over seeds, paired difference to the baseline with a bootstrap
CI and a verdict per domain), written as ``results.csv`` / ``results.json`` into ``<runs>/studies/<name>/`` and
stored with the study.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import time
from pathlib import Path

from ..config import RunConfig, apply_preset
from ..errors import KdlabError
from ..runs.store import Store

BASELINE = "ce"
RANKING_BASELINE = "contrastive"   # a ranking study's baseline: the bi-encoder trained on the qrels alone
DIAGNOSE = ("inconclusive", "worse")   # verdicts that name the doctor command (kdlab.doctor)
FIELDS = ["method", "options", "domain", "metric", "n", "mean", "std", "delta", "ci_low", "ci_high", "verdict", "model"]


# ----------------------------------------------------------------------------------------------- the grid
def parse_seeds(s) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``1,5,9`` -> those seeds."""
    text = str(s).strip()
    try:
        if "," in text:
            seeds = [int(x) for x in text.split(",") if x.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise KdlabError(f"--seeds takes a count (e.g. 3) or a list of seeds (e.g. 0,1,2), got {s!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise KdlabError(f"--seeds needs at least one seed, no repeats, none negative (got {s!r})")
    return seeds


def parse_vary(items) -> dict:
    """``["temperature=2,4", "alpha_soft=0.5"]`` -> {"temperature": [2, 4], "alpha_soft": [0.5]}."""
    out: dict = {}
    for item in items or ():
        if "=" not in item or not item.split("=", 1)[1].strip():
            raise KdlabError(f"--vary takes KEY=V1,V2,... (a method option and its values), got {item!r}")
        k, v = item.split("=", 1)
        vals = []
        for x in v.split(","):
            try:
                vals.append(json.loads(x))
            except json.JSONDecodeError:
                vals.append(x.strip())
        out[k.strip().replace("-", "_")] = vals
    return out


def cell_key(method: str, options: dict, seed: int) -> str:
    opts = " ".join(f"{k}={options[k]}" for k in sorted(options))
    return f"{method}{' ' + opts if opts else ''} seed={seed}"


def group_label(method: str, options: dict) -> str:
    return cell_key(method, options, 0).rsplit(" seed=", 1)[0]


def method_class(name: str):
    """What the study needs of a method (``option_names``, ``check_options``, ``uses_teacher``): its registered class
    (``kdlab.methods``; the ranking and causal-LM objectives included)."""
    from ..methods import get
    return get(name)


def plan_cells(methods, seeds, vary: dict | None = None, baseline: str = BASELINE) -> list[dict]:
    """The cells: the baseline first, then every method x the values of the varied options it has x seeds.
    A varied option applies to the methods that have it (the baseline keeps its defaults)."""
    get = method_class
    vary = vary or {}
    methods = [baseline] + [m for m in dict.fromkeys(methods) if m != baseline]
    used = set()
    cells = []
    for m in methods:
        cls = get(m)
        keys = [k for k in vary if m != baseline and k in cls.option_names()]
        used |= set(keys)
        for combo in itertools.product(*(vary[k] for k in keys)):
            opts = dict(zip(keys, combo))
            cls.check_options(opts)
            for s in seeds:
                cells.append({"key": cell_key(m, opts, s), "method": m, "options": opts, "seed": s,
                              "group": group_label(m, opts)})
    unused = sorted(set(vary) - used)
    if unused:
        raise KdlabError(f"--vary {', '.join(unused)}: no method of the study has this option "
                         f"(methods: {', '.join(methods[1:]) or 'none'})")
    return cells


def shared_options(cfg: RunConfig, method: str) -> dict:
    """The study's ``--set`` options (``cfg.method_args``) that ``method`` has: every cell of that method gets them,
    the baseline's included (e.g. the ranking students' ``score=cosine`` and ``student_from=teacher``, one start)."""
    names = set(method_class(method).option_names())
    return {k: v for k, v in (cfg.method_args or {}).items() if k in names}


def check_shared_options(cfg: RunConfig, methods) -> None:
    have = set().union(*(method_class(m).option_names() for m in methods))
    unused = sorted(set(cfg.method_args or {}) - have)
    if unused:
        raise KdlabError(f"--set {', '.join(unused)}: no method of the study has this option "
                         f"(methods: {', '.join(methods)})")


def base_setup(cfg: RunConfig) -> dict:
    """What every cell shares (compared when a study is run again): the configuration without the method, its
    options, the seed, the name and display settings; with the options every cell shares (``--set``)."""
    d = cfg.to_dict()
    if d.get("method_args"):
        d["shared_options"] = d["method_args"]
    for k in ("method", "method_args", "name"):
        d.pop(k, None)
    d["train"] = {k: v for k, v in d["train"].items() if k not in ("seed", "progress", "grad_share_every")}
    d["teacher_train"] = {k: v for k, v in d["teacher_train"].items() if k not in ("progress", "grad_share_every")}
    return d


def cell_config(cfg: RunConfig, study: str, cell: dict) -> RunConfig:
    args = {**shared_options(cfg, cell["method"]), **cell["options"]}   # a varied value wins over a shared one
    return dataclasses.replace(cfg, method=cell["method"], method_args=args,
                               name=f"{study}/{cell['key']}", train=dataclasses.replace(cfg.train, seed=cell["seed"]))


def folder(store: Store, name: str) -> Path:
    return store.root / "studies" / name


# ----------------------------------------------------------------------------------------------- running
def _check_name(name: str):
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        raise KdlabError(f"a study name is a plain folder name (no '/' or leading '.'), got {name!r}")


def _cell_state(store: Store, run_id: str | None) -> str:
    """new | finished | running | resume (a stopped run with a checkpoint) | restart (stopped, nothing to resume)."""
    from ..runs.checkpoint import find_checkpoint
    if not run_id:
        return "new"
    try:
        run = store.run(run_id)
    except KdlabError:
        return "new"
    if run["status"] in ("finished", "running"):
        return run["status"]
    return "resume" if find_checkpoint(store.folder(run_id) / "checkpoint") is not None else "restart"


def _share_cores(workers: int, threads: int = 0) -> None:
    """A worker process's CPU threads (kdlab.threads): its share of the cores among at least the study's N workers
    (not N x cores threads fighting over the same cores); ``--threads`` / $KDLAB_THREADS / $OMP_NUM_THREADS win."""
    from ..threads import use
    use(threads or None, peers=workers)


def run_cell(root: str, study: str, cfg_dict: dict, cell: dict, state: str, run_id: str | None) -> dict:
    """One cell, in this process or a worker: a new run, or the resumed one. Returns {key, run_id, status}."""
    from .pipeline import distill_run, resume_run
    store = Store(root)
    quiet = lambda *a, **k: None
    record = lambda rid: store.set_study_cell(study, cell["key"], rid)
    try:
        if state == "resume":
            rid = resume_run(store, run_id, log=quiet)
        else:
            cfg = cell_config(RunConfig.from_dict(cfg_dict), study, cell)
            cfg.train.progress = False
            rid = distill_run(cfg, store, log=quiet, on_create=record)
        record(rid)
        return {"key": cell["key"], "run_id": rid, "status": store.run(rid)["status"], "message": ""}
    except KdlabError as e:
        return {"key": cell["key"], "run_id": None, "status": "failed", "message": str(e)}
    except Exception as e:   # one broken cell does not stop the others; its run is marked failed with error.txt
        return {"key": cell["key"], "run_id": None, "status": "failed", "message": f"{type(e).__name__}: {e}"}


def check_bootstrap(n_boot) -> None:
    if not isinstance(n_boot, int) or n_boot < 1:
        raise KdlabError(f"--bootstrap must be a positive number of resamples (got {n_boot}); the default is 2000")


def run_study(cfg: RunConfig, store: Store, name: str, methods, seeds, **kw) -> dict:
    """Run (or continue) the study ``name`` and aggregate it; returns {"study", "cells", "ran", "rows", ...}.
    One process at a time runs a study: a second one started beside it fails at once, naming the first."""
    from ..runs import prep_lock
    _check_name(name)
    check_bootstrap(kw.get("n_boot", 2000))   # before the first cell trains
    if kw.get("workers", 1) < 1:
        raise KdlabError(f"--workers must be at least 1 (got {kw['workers']})")
    with prep_lock.exclusive(folder(store, name).with_name(f"{name}.lock"), f"study '{name}'"):
        return _run_study(cfg, store, name, methods, seeds, **kw)


def _run_study(cfg: RunConfig, store: Store, name: str, methods, seeds, *, vary: dict | None = None,
               baseline: str = BASELINE, workers: int = 1, log=print, progress: bool = True,
               n_boot: int = 2000) -> dict:
    from ..lm.study import baseline_for, is_lm
    from ..lm.study import prepare_teacher as prepare_lm_teacher
    from .pipeline import check_ranking_run, is_ranking, load_bundle, prepare_ranking_teacher, prepare_teacher
    get = method_class
    cfg = apply_preset(cfg)
    if cfg.data_seed is None:   # one data sample and one teacher for every seed
        cfg = dataclasses.replace(cfg, data_seed=cfg.train.seed)
    baseline = baseline_for(cfg, methods, baseline)   # LM objectives: lm-ce, the student trained without KD
    lm = is_lm(baseline)
    ranking = not lm and is_ranking(cfg, methods)
    if ranking and baseline == BASELINE:   # the ranking student without a teacher: in-batch contrastive
        baseline = RANKING_BASELINE
    cells = plan_cells(methods, seeds, vary, baseline)
    check_shared_options(cfg, list(dict.fromkeys(c["method"] for c in cells)))
    for c in cells:   # an option a method does not have, a method for another task: before the teacher is prepared
        args = {**shared_options(cfg, c["method"]), **c["options"]}
        get(c["method"]).check_options(args)
        if ranking:
            check_ranking_run(dataclasses.replace(cfg, method=c["method"], method_args=args))
    setup = base_setup(cfg)
    old = store.study(name)
    if old is not None and old["spec"].get("setup") != json.loads(json.dumps(setup, default=str)):
        raise KdlabError(f"a study named '{name}' already exists with another data/model setup: give this one "
                         "another --name (or run the same setup to continue it)")
    grid = {"methods": list(dict.fromkeys(c["method"] for c in cells)), "seeds": list(seeds), "vary": vary or {}, "baseline": baseline}
    prev_cells = (old or {}).get("spec", {}).get("cells", [])
    all_cells = list({c["key"]: c for c in [*prev_cells, *cells]}.values())   # a study can grow
    store.save_study(name, {"setup": setup, "grid": grid, "cells": all_cells, "config": cfg.to_dict()})
    known = (old or {}).get("cells", {})
    plan = [(c, _cell_state(store, known.get(c["key"]))) for c in cells]
    todo = [(c, st) for c, st in plan if st not in ("finished", "running")]
    busy = [c["key"] for c, st in plan if st == "running"]
    log(f"study {name}: {len(cells)} cells, {len(cells) - len(todo) - len(busy)} finished, {len(todo)} to run"
        + (f", {len(busy)} running elsewhere" if busy else ""))
    if ranking and todo:   # the cross-encoder (or fused) teacher, once: every cell reuses it
        last = cells[-1]
        prepare_ranking_teacher(dataclasses.replace(cfg, method=last["method"], method_args={
            **shared_options(cfg, last["method"]), **last["options"]}), store, log=log)
    elif todo and lm:   # an LM student copies the teacher's layers: the teacher first, once
        prepare_lm_teacher(cfg, store, log=log)
    elif todo and any(get(c["method"]).uses_teacher for c, _ in todo) or (todo and cfg.student_init != "fresh"):
        prepare_teacher(cfg, store, load_bundle(cfg), log=log)   # once, before the cells (shared by all)
    results = _execute(store, name, cfg, todo, known, workers, progress, total=len(cells),
                       done=len(cells) - len(todo))
    failed = [r for r in results if r["status"] != "finished"]
    for r in failed:
        log(f"study {name}: cell '{r['key']}' {r['status']}" + (f": {r['message']}" if r["message"] else ""))
    rows = aggregate(store, name, n_boot=n_boot)
    return {"study": name, "cells": len(cells), "ran": len(results), "failed": len(failed), "busy": busy,
            "rows": rows, "folder": str(folder(store, name))}


def _execute(store, name, cfg, todo, known, workers, progress, total, done) -> list[dict]:
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, initial=done, desc=f"study {name}", unit="cell")
    out = []
    args = [(str(store.root), name, cfg.to_dict(), c, st, known.get(c["key"])) for c, st in todo]
    try:
        if workers == 1 or len(todo) <= 1:
            for a in args:
                out.append(run_cell(*a))
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed
            with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_share_cores,
                                     initargs=(workers, cfg.train.threads)) as ex:
                for fut in as_completed([ex.submit(run_cell, *a) for a in args]):
                    out.append(fut.result())
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out


# ----------------------------------------------------------------------------------------------- aggregation
def _task(store: Store, run: dict):
    from ..runs.run_record import StoredRun
    return StoredRun(run, store).task()


REPORTS = ("auto", "last", "selected")


def report_of(spec: dict, report: str = "auto") -> tuple[str, str | None]:
    """("last" | "selected", the selection 'split:metric' or None): which model of each cell the table reads. A
    study run with ``--select`` reports the selected models unless ``report='last'``."""
    if report not in REPORTS:
        raise KdlabError(f"--report must be one of {', '.join(REPORTS)} (got {report!r})")
    select = ((spec.get("config") or {}).get("train") or {}).get("select")
    if report == "selected" and not select:
        raise KdlabError("--report selected: the study's runs keep no selected model; run the study with "
                         "--select split:metric (e.g. dev:accuracy)")
    return ("selected" if select and report != "last" else "last"), select


def cell_outputs(store: Store, rid: str, model: str) -> tuple[dict, "Path"]:
    """(final evaluations per split, predictions file) of a cell's run: its last epoch's, or its selected epoch's
    (``--select``; a run that never evaluated a better epoch than none has the last one)."""
    from .distill import PREDICTIONS
    sel = store.artifact(rid, "selection") if model == "selected" else None
    if sel and (Path(sel.get("model_dir", "")) / PREDICTIONS).exists():
        return sel["selected"]["evals"], Path(sel["model_dir"]) / PREDICTIONS
    return store.final_evals(rid), store.folder(rid) / PREDICTIONS


def aggregate(store: Store, name: str, *, n_boot: int = 2000, seed: int = 0, report: str = "auto") -> list[dict]:
    """The study's table from its finished cells (``kdlab.analysis.stats.summarize``), written as CSV and JSON into the
    study's folder and stored with the study. Cells not finished are left out. ``report``: which model of each
    cell (``report_of``): a study with ``--select`` compares the selected models, ``last`` the last epochs'."""
    from ..analysis.stats import example_outputs, load_predictions, summarize
    from ..lm.study import examples_file
    st = store.study(name)
    if st is None:
        raise KdlabError(f"no study '{name}' in the run store {store.root}: `python -m kdlab study --list` lists them")
    spec = st["spec"]
    model, select = report_of(spec, report)
    baseline = spec.get("grid", {}).get("baseline", BASELINE)
    groups: dict = {}
    metric, kind, num_labels = None, "classes", None
    for cell in spec.get("cells", []):
        rid = st["cells"].get(cell["key"])
        if not rid:
            continue
        run = store.run(rid)
        if run["status"] != "finished":
            continue
        task = _task(store, run)
        if metric is None:
            from ..tasks import run_primary_metric
            metric = run_primary_metric(run)
            kind = getattr(task, "kind", "classes")
            num_labels = task.num_labels() if task is not None and task.label_names else None
        final, pred_file = cell_outputs(store, rid, model)
        if kind == "lm":   # per-example NLLs and scored tokens (kdlab.lm.study)
            pred_file = examples_file(pred_file)
        preds = load_predictions(pred_file)
        per = {}
        for split, m in final.items():
            p = preds.get(split)
            per[split] = {"value": m.get(metric), "pred": example_outputs(p, kind, metric) if p else None,
                          "labels": p["labels"] if p else None, "run": rid}
        g = groups.setdefault(cell["group"], {"method": cell["method"], "options": cell["options"], "seeds": {}})
        g["seeds"][cell["seed"]] = per
    if not groups:
        rows = []
    else:
        rows = summarize(groups, group_label(baseline, {}), metric or "accuracy", kind, n_boot=n_boot, seed=seed,
                         num_labels=num_labels)
    label = f"selected by {select}" if model == "selected" else "last epoch"
    for r in rows:
        r["model"] = label
        runs = {s: per[r["domain"]]["run"] for s, per in sorted(groups[r["group"]]["seeds"].items())
                if r["domain"] in per}
        if r["verdict"] in DIAGNOSE and runs and kind not in ("lm", "ranking"):   # why KD did not help: the doctor
            # (kdlab.analysis.doctor) on the first seed's run; it diagnoses classification runs, not LM or ranking runs
            r["doctor"] = doctor_command(next(iter(runs.values())))
    if not store.writable:   # a read-only store: the table is shown, not kept
        return rows
    out = folder(store, name)
    out.mkdir(parents=True, exist_ok=True)
    stem = "results" if report == "auto" else f"results-{model}"
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2, default=float))
    (out / f"{stem}.csv").write_text(to_csv(rows))
    if report == "auto":
        store.set_study_result(name, {"rows": rows, "aggregated": time.time(), "n_boot": n_boot, "model": label})
    return rows


# ----------------------------------------------------------------------------------------------- output
def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS + ["n_pairs", "seeds"], lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "options": json.dumps(r.get("options") or {}, sort_keys=True),
                    "seeds": json.dumps(r.get("seeds") or {})})
    return buf.getvalue()


def json_rows(rows: list[dict]) -> list[dict]:
    """The rows as ``--json`` prints them: method, options, domain, metric, n, mean, std, delta, ci_low, ci_high,
    verdict (and the per-seed values; for an inconclusive or worse verdict, the doctor command)."""
    return [{k: r.get(k) for k in FIELDS + ["seeds"] + (["doctor"] if r.get("doctor") else [])} for r in rows]


def doctor_command(run_id: str) -> str:
    from ..analysis.doctor import command_line
    return command_line(run_id)


def _f(v, spec: str = ".3f") -> str:
    try:
        return format(float(v), spec) if v == v else "nan"
    except (TypeError, ValueError):
        return "-"


def format_table(rows: list[dict]) -> str:
    """One table per domain, one row per method (and option values): n seeds, mean ± std, the difference to the
    baseline with its 95 % CI, and the verdict."""
    if not rows:
        return "no finished cells yet"
    lines = []
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    width = max(12, *(len(r["group"]) for r in rows)) + 1
    for d in domains:
        sub = [r for r in rows if r["domain"] == d]
        kind = "in domain" if d == "dev" else "test queries" if d == "test" else "out of domain"
        lines.append(f"{d} ({kind}), {sub[0]['metric']}:")
        head = f"  {'method':{width}s} {'n':>2s} {'mean ± std':>15s} {'delta':>8s} {'95% CI':>19s}  verdict"
        lines += [head, "  " + "-" * (len(head) - 2)]
        for r in sub:
            ci = "" if r["verdict"] == "baseline" else f"[{_f(r['ci_low'], '+.3f')}, {_f(r['ci_high'], '+.3f')}]"
            delta = "" if r["verdict"] == "baseline" else _f(r["delta"], "+.3f")
            lines.append(f"  {r['group']:{width}s} {r['n']:>2d} {_f(r['mean']) + ' ± ' + _f(r['std']):>15s} "
                         f"{delta:>8s} {ci:>19s}  {r['verdict']}")
            if r.get("doctor"):
                lines.append(f"  {'':{width}s} why? {r['doctor']}")
        lines.append("")
    lines.append("delta: mean over seeds of (method - baseline), same seeds and student init; 95% CI: paired "
                 "bootstrap over seeds and examples (queries, for ranking)")
    from ..analysis.stats import LOWER_IS_BETTER
    lower = sorted({r["metric"] for r in rows} & LOWER_IS_BETTER)
    if lower:   # perplexity, mse: "better" is a negative delta
        lines.append(f"{', '.join(lower)}: lower is better (a negative delta is an improvement)")
    model = rows[0].get("model")
    if model and model != "last epoch":   # --select: the selected models (--report last: the last epochs')
        lines.append(f"models: each run's {model} (--report last compares the last epochs)")
    return "\n".join(lines)
