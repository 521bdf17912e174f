"""Evaluation of a run's models through one path (``kdlab eval --run RUN --model NAME``): the teacher, the run's
own model and its compressed models, each on the run's in-domain and out-of-domain splits (or on one labeled
file), with size on disk, parameters, and CPU latency per example at batch 1 and batch 32 measured in one process,
side by side (``kdlab.analysis.evaluate.latency_side_by_side``). The rows are also stored on the run (artifact
``deploy_eval``) for the dashboard."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..errors import KdlabError
from .artifacts import folder_mb, load_artifact, models_of, run_data, run_model_dir


def teacher_dir(store, run: dict) -> Path | None:
    """The model folder of the teacher the run was distilled from (None when unknown or gone)."""
    from ..runs.run_record import StoredRun
    return StoredRun(run, store).teacher_dir()


def model_folders(store, run: dict, names=None, *, with_teacher: bool = True) -> dict[str, Path]:
    """{name: folder} for ``names`` (None: the run's own model and every compressed model), the teacher first."""
    own = "teacher" if run["kind"] == "teacher" else "student"
    compressed = {k: Path(v) for k, v in models_of(store, run["id"]).items()}
    out: dict[str, Path] = {}
    t = teacher_dir(store, run)
    if with_teacher and t is not None:
        out["teacher"] = t
    out[own] = run_model_dir(store, run)
    wanted = list(compressed) if names is None or "all" in names else list(names)
    for n in wanted:
        if n in (own, "student", "model"):
            continue
        if n == "teacher":
            if t is None and own != "teacher":
                raise KdlabError(f"run {run['id']} has no stored teacher model to evaluate")
            continue
        if n not in compressed:
            have = ", ".join([own, *compressed]) or own
            raise KdlabError(f"run {run['id']} has no model named '{n}' (it has: {have}); "
                             f"make one with `python -m kdlab compress --run {run['id']} ...`")
        if not compressed[n].exists():
            raise KdlabError(f"the model '{n}' of run {run['id']} is gone from {compressed[n]}: compress again")
        out[n] = compressed[n]
    return out


def eval_models(store, run_id: str, names=None, *, data: str | None = None, text_col: str = "sentence",
                label_col: str = "label", max_len: int | None = None, threads: int = 1, rounds: int = 5,
                with_teacher: bool = True, save: bool = True, compare=None, n_boot: int = 2000, log=print) -> dict:
    """{"run", "metric", "splits", "threads", "models": {name: {split: value, ..., "agreement", "mb", "params",
    "ms_b1", "ms_b32", "format", "steps"}}}. The value of a split is the task's primary metric (accuracy unless the
    run's task names another that ``kdlab.analysis.evaluate.metrics`` computes); "dev" is in domain, the rest out of domain;
    "agreement" is the share of predictions on the first split equal to the teacher's. ``compare``: pairs of model
    names (A, B); each adds ``res["compare"]["A vs B"][split]`` = the paired bootstrap over the split's examples of
    metric(A) - metric(B) with its 95% interval and verdict (``compare_models``)."""
    from ..data.loaders import load_eval_file
    from ..analysis.evaluate import agreement, latency_side_by_side, metrics, predict_plain
    from ..models.limits import check_max_len
    from ..models.core import count_params, quiet_hf
    from ..tasks import run_primary_metric
    quiet_hf()
    run = store.run(run_id)
    folders = model_folders(store, run, names, with_teacher=with_teacher)
    bundle, run_len = run_data(run)
    task = getattr(bundle, "task", None)
    primary = run_primary_metric(run)
    max_len = int(max_len or run_len)
    if data:
        # 'sentence' / 'label' are the CLI's defaults: for a task with other columns (a pair) they mean "the task's"
        tc = None if text_col in (None, "sentence") and task is not None else text_col
        lc = None if label_col in (None, "label") and task is not None else label_col
        splits = {Path(data).stem: load_eval_file(data, bundle.label_names, text_col=tc, label_col=lc, task=task)}
    else:
        splits = bundle.eval_splits()
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        loaded = {}
        for name, folder in folders.items():
            model, tok, info = load_artifact(folder)
            check_max_len(max_len, model=model)
            if info.get("format") == "onnx":
                from .onnx import OnnxModel
                model = OnnxModel(folder, threads=threads)
            loaded[name] = (model, tok, info)
        rows: dict = {}
        logits: dict = {}
        for name, (model, tok, info) in loaded.items():
            log(f"eval: {name} on {', '.join(f'{k} ({len(s)})' for k, s in splits.items())}")
            row = {}
            for sname, split in splits.items():
                lg = predict_plain(model, split, tok, max_len=max_len)
                logits[(name, sname)] = lg
                # the run's task (score, multi) and the split's label mapping (SciTail for an entailment model)
                m = metrics(lg, split.labels, bundle.num_labels(), task, getattr(split, "label_map", None))
                if primary not in m:
                    primary = "accuracy"
                row[sname] = m[primary]
            fmt = info.get("format", "hf") if "steps" in info else "hf"
            row.update({"format": fmt, "steps": [s["step"] for s in info.get("steps", [])],
                        "mb": round(folder_mb(folders[name]), 2),
                        "params": int(info["params"]) if info.get("params") else int(count_params(model)),
                        "folder": str(folders[name])})
            rows[name] = row
        first = next(iter(splits))
        pairs = list(compare or [])
        for a_name, b_name in pairs:
            for n in (a_name, b_name):
                if n not in rows:
                    raise KdlabError(f"--compare names the model '{n}', which is not among the evaluated models "
                                     f"({', '.join(rows)}): add it to --model")
        compared = {f"{a_name} vs {b_name}": compare_models(logits, splits, a_name, b_name, primary,
                                                             getattr(task, "kind", "classes"),
                                                             bundle.num_labels(), n_boot=n_boot)
                    for a_name, b_name in pairs}
        if "teacher" in rows and getattr(task, "kind", "classes") == "classes":   # argmax agreement: classes only
            for name in rows:
                rows[name]["agreement"] = agreement(logits[(name, first)], logits[("teacher", first)])
        log(f"eval: latency of {len(loaded)} models side by side, {threads} thread(s), {rounds} rounds")
        lat = latency_side_by_side({n: (m, t) for n, (m, t, _) in loaded.items()}, list(splits[first].texts),
                                   texts_b=getattr(splits[first], "texts_b", None),
                                   max_len=max_len, rounds=rounds)
        for name in rows:
            rows[name].update(lat[name])
    finally:
        torch.set_num_threads(before)
    res = {"run": run["id"], "metric": primary, "splits": list(splits), "in_domain": first if not data else None,
           "threads": threads, "max_len": max_len, "measured": time.strftime("%Y-%m-%d %H:%M:%S"), "models": rows}
    if pairs:
        res["compare"] = compared
    if save and store.writable:   # a read-only store is evaluated without keeping the figures
        stored = store.artifact(run["id"], "deploy_eval", {}) or {}
        key = "data:" + str(data) if data else "run"
        stored[key] = res
        store.set_artifact(run["id"], "deploy_eval", stored)
    return res


def compare_models(logits: dict, splits: dict, a: str, b: str, metric: str, kind: str = "classes",
                   num_labels: int | None = None, *, n_boot: int = 2000) -> dict:
    """{split: {"delta", "ci_low", "ci_high", "verdict"}}: model ``a`` against model ``b`` on the same examples, by
    the paired bootstrap over examples (``kdlab.analysis.stats.paired_bootstrap`` with one seed each: a deterministic model,
    e.g. a pruned one, has no seeds to resample)."""
    from ..analysis.stats import example_outputs, paired_bootstrap, verdict
    out = {}
    for sname, split in splits.items():
        lm = getattr(split, "label_map", None)
        outs = [example_outputs({"logits": np.asarray(logits[(n, sname)], dtype=np.float64), "label_map": lm}, kind)
                for n in (a, b)]
        labels = np.asarray(split.labels)
        r = paired_bootstrap(outs[0][None], outs[1][None], labels, metric, n_boot=n_boot, num_labels=num_labels)
        r["verdict"] = verdict(r["ci_low"], r["ci_high"], metric)
        out[sname] = r
    return out


def format_table(res: dict) -> str:
    """The rows as a fixed-width text table (accuracy per split beside MB, parameters and latency)."""
    splits = res["splits"]
    head = f"{'model':<22}{'MB':>8}{'params':>9}{'ms b1':>8}{'ms b32':>8}" + "".join(f"{s[:16]:>17}" for s in splits)
    lines = [head, "-" * len(head)]
    for name, r in res["models"].items():
        lines.append(f"{name[:21]:<22}{r['mb']:>8.1f}{r['params'] / 1e6:>8.2f}M{r['ms_b1']:>8.2f}{r['ms_b32']:>8.2f}"
                     + "".join(f"{r[s]:>17.3f}" for s in splits))
    metric = res.get("metric", "accuracy")
    for label, per in (res.get("compare") or {}).items():
        lines.append(f"{label}: " + "; ".join(f"{sp} {r['delta']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] "
                                              f"{r['verdict']}" for sp, r in per.items()))
    lines.append(f"({metric}; '{splits[0]}' is in domain, the others out of domain; ms per example on "
                 f"{res['threads']} CPU thread(s), median of interleaved rounds)" if res.get("in_domain") else
                 f"({metric}; ms per example on {res['threads']} CPU thread(s))")
    return "\n".join(lines)


def model_lines(store, run_id: str) -> list[str]:
    """One line per compressed model of a run for ``kdlab runs``: its size, and the accuracy and latency of its
    latest ``eval --model`` on the run's own splits when there is one."""
    measured = ((store.artifact(run_id, "deploy_eval", {}) or {}).get("run") or {})
    rows = measured.get("models", {})
    splits = measured.get("splits", [])
    lines = []
    for name, folder in models_of(store, run_id).items():
        line = f"  + {name:<20s} {folder_mb(folder):7.1f} MB" if Path(folder).exists() else f"  + {name} (gone)"
        r = rows.get(name)
        if r:
            line += f" {r['ms_b1']:7.2f} ms/ex (b1) " + " ".join(f"{s}={r[s]:.3f}" for s in splits if s in r)
        lines.append(line)
    return lines
