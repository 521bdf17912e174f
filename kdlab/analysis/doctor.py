"""``kdlab doctor --run RUN``: why distillation did (not) help a stored classification run, as ranked findings.

Each finding is ``{"key", "level", "title", "figure", "next", "data"}``: ``level`` is ``problem`` (likely why KD
did not help), ``warning`` (worth a look) or ``ok``; findings are ranked problems first, then warnings, then the
rest, each group in the order of ``KEYS``. Everything is read from the run store, nothing is trained:

* ``teacher``: the teacher's in-domain metric against the students trained alone (finished ``ce`` runs on the same
  data) and, when ``kdlab.analysis.references`` is installed, the published reference rows;
* ``dark_knowledge``: at the run's T, the mean entropy of the teacher's softened outputs and the mass off its top
  class (``kdlab.analysis.dark_knowledge``), per evaluation split (in and out of domain);
* ``agreement``: student-teacher top-1 agreement and KL(teacher || student) at T = 1, per split;
* ``grad_share``: each loss term's share of the student's gradient (``kdlab.analysis.grad_share``), flagged under 5 % or
  over 95 %;
* ``capacity``: student / teacher parameters and layers; ``budget``: steps and epochs; ``labels``: labeled rows
  against transfer rows.

The teacher's outputs are its run's stored evaluation outputs (``predictions.npz``); a teacher adopted from
another store has none, so they are computed once from its saved model and the run's data.
"""
from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax

from ..errors import KdlabError
from ..number_format import num, plain
from ..runs.store import Store

KEYS = ("teacher", "dark_knowledge", "agreement", "grad_share", "capacity", "budget", "labels")
LEVELS = ("problem", "warning", "ok")
TEACHER_MARGIN = 0.01     # a teacher less than this above the student trained alone has little to teach
REFERENCE_GAP = 0.03      # a teacher this far under its published level is weak (kdlab.analysis.references.WEAK_GAP)
ONE_HOT = 0.05            # mass off the top class below this at T: the soft targets are nearly hard labels
NEAR_UNIFORM = 0.40       # with two classes, mass off the top class above this: outputs near 50/50
AGREE_LOW = 0.85          # in-domain top-1 agreement below this: the student does not follow the teacher
OOD_DROP = 0.10           # agreement this much lower out of domain than in domain
SHARE_LOW, SHARE_HIGH = 0.05, 0.95
PARAMS_GAP = 0.25         # student / teacher parameters below this: a large capacity gap
LAYERS_GAP = 1 / 3        # student / teacher layers below this
BUDGET_EPOCHS = 3         # fewer epochs: KD often needs more than fine-tuning (TextBrewer's FAQ)
FEW_LABELS = 2000         # labeled rows at most this many and no transfer rows: the few-labels setting


def finding(key, level, title, figure, next_step, **data) -> dict:
    return {"key": key, "level": level, "title": title, "figure": figure, "next": next_step, "data": data}


def rank(findings: list[dict]) -> list[dict]:
    return sorted(findings, key=lambda f: (LEVELS.index(f["level"]), KEYS.index(f["key"])))


# ----------------------------------------------------------------------------------------------- reading the run
def check_run(store: Store, run_id: str) -> dict:
    """The stored run, or one clear line why the doctor cannot diagnose it."""
    run = store.run(run_id)
    spec = (run.get("config") or {}).get("task_spec") or {}
    kind = spec.get("kind", "classes")
    if run["kind"] == "teacher":
        raise KdlabError(f"run {run['id']} is a teacher run: give the student run the teacher taught "
                         "(`python -m kdlab runs` lists them)")
    if spec.get("name") == "ranking" or "ranking" in (run.get("config") or {}):
        raise KdlabError(f"run {run['id']} is a ranking run: the doctor diagnoses classification runs only")
    if kind != "classes":
        raise KdlabError(f"run {run['id']} has {kind} labels: the doctor diagnoses classification runs only")
    from ..methods import get
    try:
        taught = get(run["method"]).uses_teacher
    except KdlabError:
        taught = True
    if not taught or (not (run.get("config") or {}).get("teacher_run") and not run.get("parent")):
        raise KdlabError(f"run {run['id']} (method {run['method']}) was trained without a teacher: the doctor "
                         "diagnoses distillation runs; give a run of a method with a teacher (e.g. kd)")
    if run["status"] != "finished":
        raise KdlabError(f"run {run['id']} is {run['status']}: the doctor reads a finished run")
    return run


def temperature_of(run: dict) -> float:
    """The run's KD temperature (its last value when scheduled); 1 for a method without one."""
    from ..methods import get
    conf = run.get("config") or {}
    args = conf.get("method_args") or {}
    try:
        defaults = get(run["method"]).all_defaults()
    except KdlabError:
        defaults = {}
    T = args.get("temperature_end", args.get("temperature", defaults.get("temperature")))
    return float(T) if T else 1.0


def _dev_metric(evals: dict, metric: str):
    v = (evals.get("dev") or {}).get(metric)
    return None if v is None else float(v)


def _students_alone(store: Store, run: dict, metric: str) -> list[float]:
    ident = (run.get("config") or {}).get("data_identity")
    out = []
    for r in store.runs(kind="student"):
        if r["method"] == "ce" and r["status"] == "finished" and ident and \
                (r.get("config") or {}).get("data_identity") == ident:
            v = _dev_metric(store.final_evals(r["id"]), metric)
            if v is not None:
                out.append(v)
    return out


def _reference(store: Store, run: dict):
    """(published value as a fraction, source, the weak-teacher line or None) for the run's teacher from
    ``kdlab.analysis.references``; None when that module is missing or has no row for the task and backbone."""
    try:
        from . import references
    except ImportError:   # the reference table is optional: the student trained alone is the other yardstick
        return None
    facts = references.teacher_facts(store, run["id"])
    if not facts:
        return None
    key = references.task_key(facts["task"], facts["data"])
    ref = references.published(key, facts["backbone"]) if key else None
    if ref is None:
        return None
    warn = references.weak_teacher(key, facts["backbone"], facts["value"], facts["metric"])
    return ref.value / 100.0, f"{references.BACKBONES[ref.backbone]}, {ref.task} {ref.split}", warn


def teacher_outputs(store: Store, run: dict, trun: dict, student: dict) -> dict:
    """{split: teacher logits [n, C]} aligned with the student's stored outputs: the teacher run's own
    ``predictions.npz`` when its splits match, else computed from its saved model on the run's data."""
    from ..engine.distill import PREDICTIONS
    from .stats import load_predictions
    tpred = load_predictions(store.folder(trun["id"]) / PREDICTIONS)
    out = {}
    for split, arr in student.items():
        t = tpred.get(split)
        if t is not None and len(t["labels"]) == len(arr["labels"]) and np.array_equal(t["labels"], arr["labels"]):
            out[split] = np.asarray(t["logits"], dtype=np.float64)
    if len(out) == len(student):
        return out
    return _compute_teacher(store, run, trun, student)


def _compute_teacher(store: Store, run: dict, trun: dict, student: dict) -> dict:
    from ..config import RunConfig
    from .evaluate import predict
    from ..models.core import load_saved
    from ..engine.pipeline import load_bundle
    folder = store.artifact(trun["id"], "model_dir")
    if not folder:
        raise KdlabError(f"the teacher run {trun['id']} kept no model and no evaluation outputs: the doctor needs "
                         "one of them")
    conf = {k: v for k, v in (run.get("config") or {}).items()
            if k not in ("teacher_run", "teacher_runs", "data_identity", "task_spec")}
    cfg = RunConfig.from_dict(conf)
    bundle = load_bundle(cfg)
    model, tok = load_saved(folder)
    return {name: predict(model, split, tok, max_len=cfg.train.max_len).astype(np.float64)
            for name, split in bundle.eval_splits().items() if name in student}


# ----------------------------------------------------------------------------------------------- the findings
def teacher_finding(t_value, alone: list[float], metric: str, reference=None, student_value=None,
                    chance=None) -> dict:
    """``reference``: (value, source, ...) or None; ``chance``: the majority-class rate of the dev split (accuracy
    only), the yardstick when no student was trained alone."""
    alone_mean = float(np.mean(alone)) if alone else None
    parts = [f"teacher {t_value:.3f} dev {metric}"]
    if chance is not None:
        parts.append(f"majority class {chance:.3f}")
    if alone_mean is not None:
        parts.append(f"student trained alone {alone_mean:.3f} ({len(alone)} run{'s' * (len(alone) != 1)}, "
                     f"teacher {t_value - alone_mean:+.3f})")
    if reference is not None:
        parts.append(f"published {reference[0]:.3f} ({reference[1]}; teacher {t_value - reference[0]:+.3f})")
    if student_value is not None:
        parts.append(f"this student {student_value:.3f}")
    figure = "; ".join(parts)
    data = dict(teacher=t_value, alone=alone_mean, reference=reference[0] if reference else None,
                student=student_value, chance=chance)
    if chance is not None and t_value - chance < TEACHER_MARGIN:
        return finding("teacher", "problem", "the teacher is no better than predicting the majority class", figure,
                       "fine-tune the teacher longer (--teacher-epochs) or with another learning rate (--teacher-lr) "
                       "before distilling", **data)
    if alone_mean is not None and t_value - alone_mean < TEACHER_MARGIN:
        return finding("teacher", "problem", "the teacher is no better than the student trained alone", figure,
                       "fine-tune the teacher longer (--teacher-epochs) or choose a stronger teacher: KD cannot pass "
                       "on what the teacher does not know", **data)
    if reference is not None and t_value < reference[0] - REFERENCE_GAP:   # kdlab.analysis.references.WEAK_GAP points
        return finding("teacher", "warning", "the teacher is below its published level", figure,
                       "fine-tune the teacher with more epochs or on more data before distilling", **data)
    nxt = "none" if alone_mean is not None else \
        "train the student alone (method ce, same data: a study's baseline) to compare the teacher with it"
    return finding("teacher", "ok", "teacher quality", figure, nxt, **data)


def dark_knowledge_finding(teacher: dict, T: float) -> dict:
    from .dark_knowledge import dark_knowledge
    per = {}
    for split, z in teacher.items():
        d = dark_knowledge(z, [T])
        per[split] = {"entropy": d["entropy"][0], "off_top": d["non_target_mass"][0], "classes": d["classes"]}
    dev = per.get("dev") or next(iter(per.values()))
    C = dev["classes"]
    figure = f"at T={T:g}: " + "; ".join(
        f"{s} ({'in domain' if s == 'dev' else 'out of domain'}) entropy {v['entropy']:.3f} nats "
        f"(max {np.log(C):.3f}), mass off the top class {v['off_top']:.3f}" for s, v in per.items())
    if C == 2:
        figure += "; two classes: the soft targets carry only a confidence per example"
    if C == 2 and dev["off_top"] > NEAR_UNIFORM:
        return finding("dark_knowledge", "problem", "the teacher's softened outputs are near 50/50", figure,
                       f"lower the temperature (--temperature {max(1.0, T / 2):g}) or fine-tune the teacher longer: "
                       "near-uniform targets teach the student little", T=T, splits=per)
    if dev["off_top"] < ONE_HOT:
        return finding("dark_knowledge", "warning", "the soft targets are nearly one-hot at the run's T", figure,
                       f"raise the temperature (--temperature {T * 2:g}) so the soft targets say more than the "
                       "label", T=T, splits=per)
    return finding("dark_knowledge", "ok", "dark knowledge at the run's T", figure, "none", T=T, splits=per)


def agreement_finding(student: dict, teacher: dict) -> dict:
    per = {}
    for split, z_t in teacher.items():
        z_s = np.asarray(student[split], dtype=np.float64)
        agree = float((z_s.argmax(1) == z_t.argmax(1)).mean())
        lp_t, lp_s = log_softmax(z_t, axis=1), log_softmax(z_s, axis=1)
        kl = float((softmax(z_t, axis=1) * (lp_t - lp_s)).sum(1).mean())
        per[split] = {"agreement": agree, "kl": kl}
    figure = "; ".join(f"{s} top-1 agreement {num(v['agreement'])}, KL(teacher||student) {num(v['kl'])}"
                       for s, v in per.items())
    dev = per.get("dev")
    if dev is not None and dev["agreement"] < AGREE_LOW:
        return finding("agreement", "warning", "the student does not follow the teacher in domain", figure,
                       "train longer or give the soft targets more weight (--set alpha_soft=0.9)", splits=per)
    ood = {s: v for s, v in per.items() if s != "dev"}
    if dev is not None and ood and min(v["agreement"] for v in ood.values()) < dev["agreement"] - OOD_DROP:
        worst = min(ood, key=lambda s: ood[s]["agreement"])
        return finding("agreement", "warning", "the student follows the teacher less out of domain", figure,
                       f"add unlabeled text like {worst} as a transfer set (--transfer FILE) so the student learns "
                       "the teacher there", splits=per)
    return finding("agreement", "ok", "student-teacher agreement", figure, "none", splits=per)


WEIGHTS = {"kd": ("alpha_soft", "alpha"), "ce": ("alpha_hard", "alpha"), "mse": ("alpha_hard",),
           "bce": ("alpha_hard",)}


def _weight_option(term: str, options) -> str | None:
    for name in WEIGHTS.get(term, ("beta",)):
        if name in options:
            return name
    return None


def grad_share_finding(shares: dict, method: str, method_args: dict | None = None) -> dict:
    from ..methods import get
    try:
        cls = get(method)
        options, current = cls.option_names(), {**cls.all_defaults(), **(method_args or {})}
    except KdlabError:
        options, current = [], {}
    figure = "mean share of the student's gradient: " + ", ".join(
        f"{k} {v['mean_share']:.1%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]["mean_share"]))
    steps = max(v["steps"] for v in shares.values())
    figure += f" ({steps} measured step{'s' * (steps != 1)})"
    high = [k for k, v in shares.items() if v["mean_share"] > SHARE_HIGH]
    low = [k for k, v in shares.items() if v["mean_share"] < SHARE_LOW]
    if high or low:
        k = high[0] if high else low[0]
        s = shares[k]["mean_share"]
        factor = (1 - s) / s if s > 0 else float("inf")   # scales the term's norm so it gives half the gradient
        opt = _weight_option(k, options)
        how = f"multiply {opt} by about {plain(factor, 2)}" if opt and np.isfinite(factor) else \
            f"change the weight of {k}"
        v = current.get(opt) if opt else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(factor) and opt != "alpha":
            how += f" (--set {opt}={plain(v * factor)})"
        which = "drowns the other terms" if high else "contributes almost nothing"
        return finding("grad_share", "warning", f"the {k} term {which}", figure,
                       f"{how} to bring it near half the gradient", shares=shares, high=high, low=low)
    return finding("grad_share", "ok", "each loss term's share of the gradient", figure, "none", shares=shares,
                   high=[], low=[])


def capacity_finding(s_params, t_params, s_layers, t_layers) -> dict:
    pr, lr = s_params / t_params, s_layers / t_layers
    figure = (f"student {s_params / 1e6:.2f}M parameters, {s_layers:g} layers; teacher {t_params / 1e6:.2f}M, "
              f"{t_layers:g} layers ({pr:.0%} of the parameters, {lr:.0%} of the layers)")
    data = dict(params_ratio=pr, layers_ratio=lr)
    if pr < PARAMS_GAP or lr < LAYERS_GAP:
        return finding("capacity", "warning", "a large capacity gap between student and teacher", figure,
                       "distill through a teacher assistant (--method takd) or give the student more layers "
                       "(--student-layers)", **data)
    return finding("capacity", "ok", "capacity gap", figure, "none", **data)


def budget_finding(steps: int, epochs: float, teacher_epochs) -> dict:
    figure = f"{steps} steps, {epochs:.2g} epoch{'s' * (epochs != 1)}" + (
        f" (the teacher was fine-tuned {teacher_epochs:g} epoch{'s' * (teacher_epochs != 1)})" if teacher_epochs else "")
    if epochs < BUDGET_EPOCHS:
        return finding("budget", "warning", "a short training budget", figure,
                       f"train for more epochs (--epochs {max(BUDGET_EPOCHS, int(np.ceil(epochs * 2)))}): KD "
                       "often needs more epochs than fine-tuning (TextBrewer FAQ)", steps=steps, epochs=epochs)
    return finding("budget", "ok", "training budget", figure, "none", steps=steps, epochs=epochs)


def labels_finding(labeled: int | None, transfer: int, augmented: bool) -> dict:
    lab = "unknown" if labeled is None else f"{labeled:,}"
    figure = f"{lab} labeled rows, {transfer:,} transfer rows" + (" (+ augmented copies)" if augmented else "")
    data = dict(labeled=labeled, transfer=transfer, augmented=augmented)
    if labeled is not None and labeled <= FEW_LABELS and not transfer and not augmented:
        return finding("labels", "warning", "few labels and no transfer set", figure,
                       "add unlabeled in-domain text with --transfer FILE (the student learns the teacher's outputs "
                       "on it) or --augment", **data)
    return finding("labels", "ok", "labels and transfer rows", figure, "none", **data)


# ----------------------------------------------------------------------------------------------- the diagnosis
def _majority(store: Store, rid: str):
    from ..engine.distill import PREDICTIONS
    from .stats import load_predictions
    dev = load_predictions(store.folder(rid) / PREDICTIONS).get("dev")
    if dev is None or "label_map" in dev or not len(dev["labels"]):
        return None
    return float(np.bincount(np.asarray(dev["labels"], dtype=np.int64)).max() / len(dev["labels"]))


def _labeled_rows(store: Store, run: dict, trun: dict) -> int | None:
    conf = run.get("config") or {}
    plan = store.artifact(trun["id"], "plan") or {}
    tconf = (trun.get("config") or {}).get("train") or {}
    if plan.get("steps_per_epoch") and tconf.get("batch_size"):   # the teacher saw every labeled row once an epoch
        est = int(plan["steps_per_epoch"]) * int(tconf.get("grad_accum", 1)) * int(tconf["batch_size"])
        return min(est, int(conf["max_train"])) if conf.get("max_train") else est
    return int(conf["max_train"]) if conf.get("max_train") else None


def _transfer_rows(run: dict) -> int:
    conf = run.get("config") or {}
    if not conf.get("transfer"):
        return 0
    from ..data.transfer import read_transfer
    from ..tasks import Task
    try:
        task = Task.from_dict(conf.get("task_spec") or {})
        return len(read_transfer(conf["transfer"], task, list(task.label_names or ()))[0])
    except (KdlabError, OSError, TypeError):
        return 0


def diagnose(store: Store, run_id: str) -> dict:
    """``{"run", "method", "temperature", "findings": ranked findings, "notes": one-line problems}``."""
    from ..engine.distill import PREDICTIONS
    from .grad_share import shares
    from .stats import load_predictions
    from ..tasks import run_primary_metric
    run = check_run(store, run_id)
    rid, conf = run["id"], run.get("config") or {}
    metric = run_primary_metric(run)
    T = temperature_of(run)
    notes, findings = [], []
    trun = store.run(conf.get("teacher_run") or run["parent"])
    t_evals = store.final_evals(trun["id"])
    t_value = _dev_metric(t_evals, metric)
    if t_value is not None:
        findings.append(teacher_finding(t_value, _students_alone(store, run, metric), metric,
                                        _reference(store, run), _dev_metric(store.final_evals(rid), metric),
                                        chance=_majority(store, rid) if metric == "accuracy" else None))
    else:
        notes.append(f"the teacher run {trun['id']} has no dev evaluation: no teacher-quality finding")
    preds = load_predictions(store.folder(rid) / PREDICTIONS)
    if preds:
        try:
            teacher = teacher_outputs(store, run, trun, preds)
        except KdlabError as e:   # e.g. a teacher given as soft labels: no model to run on the evaluation sets
            teacher = None
            notes.append(f"no teacher outputs on the evaluation sets ({e}): no dark-knowledge or agreement finding")
        if teacher:
            findings.append(dark_knowledge_finding(teacher, T))
            findings.append(agreement_finding({s: preds[s]["logits"] for s in teacher}, teacher))
    else:
        notes.append(f"run {rid} kept no evaluation outputs ({PREDICTIONS}): no dark-knowledge or agreement finding")
    rows = store.grad_norms(rid)
    if rows:
        findings.append(grad_share_finding(shares(rows), run["method"], conf.get("method_args")))
    else:
        notes.append(f"run {rid} has no gradient shares (made before they were logged, with --grad-share-every 0, "
                     f"or method {run['method']} names no loss terms): the other findings stand; rerun with "
                     "--grad-share-every 50 to see them")
    s_size, t_size = store.artifact(rid, "size") or {}, store.artifact(trun["id"], "size") or {}
    if s_size.get("params") and t_size.get("params") and s_size.get("layers") and t_size.get("layers"):
        findings.append(capacity_finding(s_size["params"], t_size["params"], s_size["layers"], t_size["layers"]))
    plan = store.artifact(rid, "plan") or {}
    steps = max([m["step"] for m in store.metrics(rid)] or [0])
    if steps and plan.get("steps_per_epoch"):
        t_epochs = ((trun.get("config") or {}).get("train") or {}).get("epochs")
        findings.append(budget_finding(steps, steps / plan["steps_per_epoch"], t_epochs))
    findings.append(labels_finding(_labeled_rows(store, run, trun), _transfer_rows(run), bool(conf.get("augment"))))
    return {"run": rid, "method": run["method"], "metric": metric, "temperature": T, "teacher_run": trun["id"],
            "findings": rank(findings), "notes": notes}


def format_report(d: dict) -> str:
    lines = [f"kdlab doctor: run {d['run']} (method {d['method']}, T={d['temperature']:g}, teacher run "
             f"{d['teacher_run']})"]
    for i, f in enumerate(d["findings"], 1):
        lines.append(f"{i:2d}. [{f['level']}] {f['title']}: {f['figure']}")
        if f["next"] != "none":
            lines.append(f"    next: {f['next']}")
    for n in d["notes"]:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def command_line(run_id: str) -> str:
    """The command that diagnoses ``run_id`` (named by study verdicts that are inconclusive or worse)."""
    return f"python -m kdlab doctor --run {run_id}"
