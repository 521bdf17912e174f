"""Command line: ``kdlab COMMAND`` (or ``python -m kdlab COMMAND``).

Every command is registered the same way: ``@command(name, help, add_args)`` on a handler ``f(args) -> exit
code``, where ``add_args(parser)`` declares exactly the options the handler uses. The run-building commands
(distill, teacher, demo) turn their options into a ``RunConfig`` with ``kdlab.config.build_config``, the one
builder the dashboard and the notebooks use too.

Mistakes a user can fix end with one line ``kdlab: error: ...`` and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from .choices import BY_NAME, GROUPS, TABLE, help_text
from .config import BUDGETS, CHOICES, PRESETS, RunConfig, apply_preset, build_config
from .errors import KdlabError

COMMANDS: dict = {}


def command(name: str, help: str, add_args=None):
    """Register ``f(args) -> int`` as ``kdlab NAME``; ``add_args(parser)`` declares the options it reads."""
    def deco(f):
        COMMANDS[name] = (f, help, add_args)
        return f
    return deco


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"kdlab: error: {message} (see `python -m kdlab {self.prog.split()[-1]} --help`)\n"
                  if " " in self.prog else f"kdlab: error: {message}\n")


def _layers(s: str) -> list[int]:
    from .kd.mapping import parse_layers
    try:
        return parse_layers(s, example="0,2,4")
    except KdlabError as e:
        raise argparse.ArgumentTypeError(str(e))


def _kv(s: str):
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"'{s}' is not key=value (e.g. --set temperature=4)")
    k, v = s.split("=", 1)
    try:
        v = json.loads(v)
    except json.JSONDecodeError:
        try:   # a comma-separated list of numbers, e.g. mapping_layers=2,4,6
            v = [json.loads(x) for x in v.split(",")] if "," in v else v
            v = v if isinstance(v, str) or all(isinstance(x, (int, float)) for x in v) else s.split("=", 1)[1]
        except json.JSONDecodeError:
            pass
    return k.strip().replace("-", "_"), v


# ----------------------------------------------------------------------------------------------- shared options
def _store_option(p):
    p.add_argument("--runs", "--out", dest="runs", help="run store folder (default ./runs or $KDLAB_RUNS)")


def _quiet_option(p):
    p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def _flag(dest: str) -> str:
    return "--set" if dest == "method_args" else "--" + dest.replace("_", "-")


def _refuse(a, dests, why: str):
    """A KdlabError naming the options of ``dests`` that were given although ``why`` makes them do nothing."""
    given = [_flag(d) for d in dests if getattr(a, d, None) not in (None, False, [])]
    if given:
        raise KdlabError(f"{why}: drop {', '.join(given)}")


PARSERS = {"layers": _layers, "key=value": _kv}   # the table's named parsers (kdlab.choices.Choice.type)
GROUP_TITLES = {"training": lambda student: "training (teacher and student)" if student else "training"}


def add_choice(g, name: str, **override):
    """The option of the run choice ``name`` as the table declares it (kdlab.choices.TABLE), its default None (so
    that ``build_config`` applies the default, or a preset's); ``override``: argparse settings of a command that
    takes the choice differently (e.g. a narrower ``choices``)."""
    c = BY_NAME[name]
    kw = dict(help=help_text(c), dest=c.name)
    if c.action:
        kw["action"] = c.action
        if c.action == "store_true":
            kw["default"] = None
    if c.type is not None:
        kw["type"] = PARSERS.get(c.type, c.type)
    for k in ("choices", "metavar", "nargs"):
        if getattr(c, k) is not None:
            kw[k] = list(getattr(c, k)) if k == "choices" else getattr(c, k)
    kw.update(override)
    return g.add_argument(c.option, **kw)


def run_options(p, *, student: bool = True, name: bool = True, resume: bool = False):
    """The options ``build_config`` takes, one per declared run choice (kdlab.choices.TABLE; None = its default, or
    the preset's). ``student``: the student, the method and the student's training; ``name``: the run's name;
    ``resume``: ``--resume RUN``."""
    scopes = {"run"} | ({"student"} if student else set()) | ({"named"} if name else set())
    for group in GROUPS:
        mine = [c for c in TABLE if c.group == group and c.scope in scopes]
        if not mine and group != "output":
            continue
        title = GROUP_TITLES.get(group, lambda _: group)(student)
        g = p.add_argument_group(title)
        if group == "output":
            _store_option(g)
        for c in mine:
            add_choice(g, c.name)
        if group == "output":
            g.add_argument("--config", help="a JSON file with a whole run configuration (instead of the options "
                                            "above)")
            _quiet_option(g)
            if resume:
                g.add_argument("--resume", metavar="RUN_ID", help="resume a killed/failed run from its last "
                               "checkpoint with its stored configuration")


def _read_config(path: str) -> RunConfig:
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError as e:
        raise KdlabError(f"cannot read the config file '{path}': {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise KdlabError(f"the config file '{path}' is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(d, dict):
        raise KdlabError(f"the config file '{path}' must hold a JSON object")
    from .config_check import check_types, check_values
    check_types(d, path)
    cfg = RunConfig.from_dict(d)
    check_values(cfg, path)   # before a preset fills in its values, and before any work
    return apply_preset(cfg)


def config_from_args(a) -> RunConfig:
    """The run configuration of a distill / teacher / demo command line: ``--config FILE`` or the options
    (those a command does not declare take their defaults)."""
    if a.config:
        _refuse(a, CHOICES, "--config holds the whole run configuration")
        return _read_config(a.config)
    if getattr(a, "student_hidden", None) == 0:
        raise KdlabError("--student-hidden 0 is no hidden size: give the narrower student's width (e.g. 192), or "
                         "leave it out for the teacher's")
    return build_config(**{k: getattr(a, k) for k in CHOICES if getattr(a, k, None) is not None})


def _store(a):
    from .runs.store import Store
    return Store(a.runs) if a.runs else Store()


def _log(a):
    return (lambda *x, **k: None) if a.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _print_lines(lines):
    if lines:
        print("\n" + "\n".join(lines))


def _print_references(store, run_id):
    """The published reference rows and the weak-teacher warning for the teacher of ``run_id``
    (kdlab.analysis.references)."""
    from .analysis.references import for_run
    if run_id:
        _print_lines(for_run(store, run_id))


def _print_run(store, run_id):
    r = store.run(run_id)
    ev = store.final_evals(run_id)
    print(json.dumps({"run": run_id, "status": r["status"], "message": r["message"],
                      "evals": {k: {m: round(v, 4) for m, v in d.items()} for k, d in ev.items()}}, indent=2))


# ----------------------------------------------------------------------------------------------- commands
def _distill_args(p):
    run_options(p, resume=True)
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the resume checkpoint of a finished run (by default it is dropped: about 4x the "
                        "model's size, and a finished run is never resumed)")


@command("distill", "distill a student from a teacher with one method", _distill_args)
def cmd_distill(a):
    from .engine.pipeline import distill_run, resume_run
    from .speed.ddp import is_main, wrap_store
    if a.resume:
        _refuse(a, [*CHOICES, "config"], "--resume continues the run with its stored configuration")
        store = _store(a)
        run_id = resume_run(store, a.resume, log=_log(a), keep_checkpoints=a.keep_checkpoints)
        _print_run(store, run_id)
        return _run_status(store, run_id)
    cfg = config_from_args(a)
    store = wrap_store(_store(a))   # under torchrun: rank 0 writes, the other ranks read
    run_id = distill_run(cfg, store, log=_log(a), keep_checkpoints=a.keep_checkpoints)
    if is_main():
        _print_run(store, run_id)
    return _run_status(store, run_id)


def _run_status(store, run_id) -> int:
    """0 for a finished run, else 1; a run cancelled by request (the dashboard's Cancel) that left a checkpoint
    names the command that continues it."""
    status = store.run(run_id)["status"]
    if status == "cancelled":
        from .runs.checkpoint import find_checkpoint
        if find_checkpoint(store.folder(run_id) / "checkpoint") is not None:
            print(f"kdlab: cancelled: continue it with `python -m kdlab distill --resume {run_id} --runs "
                  f"{store.root}`", file=sys.stderr)
    return 0 if status == "finished" else 1


@command("teacher", "fine-tune (or reuse) the teacher on the training data",
         lambda p: run_options(p, student=False, name=False))
def cmd_teacher(a):
    from .engine.pipeline import is_ranking, load_bundle, prepare_ranking_teacher, prepare_teachers
    cfg = config_from_args(a)
    store = _store(a)
    from .lm.train import lm_teacher, wants_lm
    if wants_lm(cfg):   # a causal LM teacher: the tiny one trained on the corpus, or a named/folder one checked
        _print_run(store, lm_teacher(cfg, store, log=_log(a)))
        return 0
    if is_ranking(cfg):   # a BEIR folder: the cross-encoder (or fused) teacher, as distill and study prepare it
        _print_run(store, prepare_ranking_teacher(cfg, store, log=_log(a)))
        return 0
    from .analysis.references import for_run
    for _, _, run_id in prepare_teachers(cfg, store, load_bundle(cfg), log=_log(a)):
        _print_run(store, run_id)
        for line in ([] if a.quiet else for_run(store, run_id)):   # stderr: stdout stays one JSON per teacher
            print(line, file=sys.stderr)
    return 0


def _demo_args(p):
    run_options(p, name=False)
    p.add_argument("--also", nargs="+", metavar="METHOD", default=[],
                   help="more methods to run after --method, each a row of the table (e.g. --also pkd-skip)")


@command("demo", "the whole path on the embedded default: teacher, no-KD student, KD student", _demo_args)
def cmd_demo(a):
    from .methods import get
    from .tools.demo import run_demo
    from .ranking.train import wants_ranking
    cfg = config_from_args(a)
    from .lm.train import wants_lm
    if wants_lm(cfg):   # causal LMs: no KD, forward KL, reverse KL (and --also) from the same copied layers
        from .lm.demo import run_lm_demo
        return run_lm_demo(cfg, _store(a), also=a.also, log=_log(a))
    if wants_ranking(cfg):   # BM25, the cross-encoder, the bi-encoder without KD, with margin-mse and listwise-kl
        from .ranking.demo import run_ranking_demo
        _refuse(a, ["also"], "demo --task ranking runs contrastive, margin-mse and listwise-kl")
        return run_ranking_demo(cfg, _store(a), log=_log(a))
    for m in a.also:
        get(m)   # an unknown name fails before the teacher is fine-tuned
    return run_demo(cfg, _store(a), log=_log(a), also=a.also)


def _eval_args(p):
    p.add_argument("--run", required=True, help="run id, its unique --name, a unique part of the id, or a method name (its latest "
                                                   "run)")
    p.add_argument("--data", help="a labeled TSV/CSV/JSONL file, or a BEIR folder for a ranking run (with --model, default: the run's own in-domain and "
                                  "out-of-domain splits)")
    p.add_argument("--model", action="append", metavar="NAME",
                   help="a model of the run: 'student' (its own), a name made by `kdlab compress`, or 'all'; "
                        "reports accuracy, MB, parameters and ms/example at batch 1 and 32 beside the teacher's")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the --model latency (default 1)")
    p.add_argument("--json", action="store_true", help="with --model: print JSON instead of the table")
    p.add_argument("--compare", action="append", metavar="A:B",
                   help="with --model: model A against model B (names of the table, e.g. h6-f768-kd:h6-f768), the "
                        "paired bootstrap over each split's examples: the difference, its 95%% interval, a verdict")
    _quiet_option(p)
    p.add_argument("--text-col", help="text column(s) a or a,b (default: those of the run's task)")
    p.add_argument("--label-col", help="label column (default: the run's task's)")
    p.add_argument("--ood-map", help="model_label=file_label,... for a file with other classes (default: the task's "
                                     "built-in mapping)")
    p.add_argument("--max-len", type=int, default=CHOICES["max_len"])
    _store_option(p)


def _compare_pairs(values) -> list[tuple[str, str]]:
    pairs = []
    for v in values or []:
        a, sep, b = v.partition(":")
        if not sep or not a or not b:
            raise KdlabError(f"--compare takes two model names as A:B (e.g. h6-f768-kd:h6-f768), got {v!r}")
        pairs.append((a, b))
    return pairs


@command("eval", "evaluate a stored run's model on a labeled file (JSON); with --model: a run's models beside the "
                 "teacher (accuracy, MB, latency)", _eval_args)
def cmd_eval(a):
    from .engine.pipeline import eval_run
    if a.max_len < 1:
        raise KdlabError(f"--max-len is the number of tokens per example: at least 1 (got {a.max_len})")
    if a.threads < 1:
        raise KdlabError(f"--threads is the number of CPU threads for the latency: at least 1 (got {a.threads})")
    from .runs.run_record import StoredRun
    rec = StoredRun.load(_store(a), a.run)
    if rec.task_kind == "lm":   # perplexity per domain, token KL, top-1 agreement
        from .lm.train import eval_lm_run
        _refuse(a, ["model", "ood_map", "compare"], "an LM run is evaluated by perplexity: `kdlab eval --run RUN [--data FILE]`")
        print(json.dumps(eval_lm_run(_store(a), rec.row, a.data), indent=2))
        return 0
    if rec.is_ranking and a.model:   # a ranking run's bi-encoder and its compressed artifacts (kdlab.ranking.compress)
        from .ranking.compress import eval_models as eval_bi_models, format_table as bi_table
        _refuse(a, ["ood_map", "compare"], "a ranking run's models are compared by nDCG@10 over its queries")
        res = eval_bi_models(_store(a), rec.row, a.data or rec.data, a.model, threads=a.threads)
        print(json.dumps(res, indent=2) if a.json else bi_table(res))
        return 0
    if not a.model and not a.data and rec.is_ranking:   # a ranking run without --data: its own BEIR folder
        a.data = rec.data
    if a.model or not a.data:   # the run's models side by side with the teacher (kdlab.deploy.report)
        from .deploy.report import eval_models, format_table
        _refuse(a, ["ood_map"], "--ood-map applies to `eval --data FILE` without --model")
        res = eval_models(_store(a), a.run, a.model or ["student"], data=a.data, text_col=a.text_col or "sentence",
                          label_col=a.label_col or "label", max_len=a.max_len, threads=a.threads,
                          compare=_compare_pairs(a.compare), log=_log(a))
        print(json.dumps(res, indent=2) if a.json else format_table(res))
        if not a.json:
            _print_references(_store(a), res.get("run"))
        return 0
    _refuse(a, ["compare"], "--compare compares models of the run's table: give them with --model (e.g. --model all)")
    res = eval_run(_store(a), a.run, a.data, text_col=a.text_col, label_col=a.label_col, max_len=a.max_len,
                   ood_map=a.ood_map)
    print(json.dumps(res, indent=2))
    return 0


def _compress_args(p):
    p.add_argument("--run", required=True, help="run id (its unique --name, or a unique part of the id) with a saved model")
    p.add_argument("--prune-vocab", nargs="?", const=True, metavar="CORPUS",
                   help="keep only the tokens the run's training data (and CORPUS, a text file or a "
                        ".tsv/.csv/.jsonl file, when given) produce, plus the special tokens")
    p.add_argument("--quantize", metavar="SCHEME", help="int8: dynamic int8 quantization of the linear layers")
    p.add_argument("--onnx", action="store_true", help="export to ONNX, run with onnxruntime")
    p.add_argument("--prune-heads", type=int, default=0, metavar="N",
                   help="remove the N least important attention heads from each layer (gradient importance on the "
                        "run's training data)")
    p.add_argument("--prune-ffn", type=int, default=0, metavar="M",
                   help="remove the M least important FFN neurons from each layer (activation x gradient)")
    p.add_argument("--recover-steps", type=int, default=0, metavar="K",
                   help="after head/FFN pruning: K steps of logit KD from the unpruned model")
    p.add_argument("--prune-sample", type=int, default=256, metavar="N",
                   help="training examples that measure head/FFN importance (default 256)")
    p.add_argument("--name", help="name of the new model (default from the steps, e.g. pruned-int8)")
    p.add_argument("--text-col", help="text column of a .tsv/.csv/.jsonl CORPUS (default: the run's)")
    _store_option(p)
    _quiet_option(p)


@command("compress", "vocabulary, head and FFN pruning, int8 and/or ONNX of a run's model, stored next to the run",
         _compress_args)
def cmd_compress(a):
    from .deploy.artifacts import compress_run
    info = compress_run(_store(a), a.run, prune_vocab=a.prune_vocab, quantize=a.quantize, onnx=a.onnx,
                        name=a.name, text_col=a.text_col, prune_heads=a.prune_heads, prune_ffn=a.prune_ffn,
                        recover_steps=a.recover_steps, prune_sample=a.prune_sample, log=_log(a))
    print(json.dumps(info, indent=2))
    return 0


@command("methods", "list the registered methods, one per line",
         lambda p: p.add_argument("-v", "--verbose", action="store_true", help="also print each method's loss"))
def cmd_methods(a):
    from .methods import REGISTRY, names
    for n in names():
        print(f"{n}\t{REGISTRY[n].summary}" if a.verbose else n)
    for n in names("ranking"):   # the ranking task's objectives (--task ranking): methods of the same loop
        print(f"{n}\tranking: {REGISTRY[n].summary}" if a.verbose else n)
    from .methods.lm import LM_METHODS
    for n in LM_METHODS:   # the causal LM objectives (--task lm): methods of the same loop
        print(f"{n}\tlm: {REGISTRY[n].summary}" if a.verbose else n)
    return 0


def _runs_args(p):
    _store_option(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="print the runs as JSON")
    g.add_argument("--csv", action="store_true", help="print the runs as CSV: one row per run and evaluation split "
                                                     "with every metric, MB and latency")
    p.add_argument("--prune", action="store_true", help="free what finished runs left (same as `kdlab gc`)")


def _runs_csv(store, rows):
    """One row per run and evaluation split: id, name, kind, method, status, seed, split, every metric, MB, ms."""
    import csv

    from .runs.run_record import StoredRun
    out, metrics = [], []
    for r in rows:
        size = store.artifact(r["id"], "size", {}) or {}
        for split, m in store.final_evals(r["id"]).items():
            metrics += [k for k in m if k not in metrics]
            out.append({"run": r["id"], "name": r["name"], "kind": r["kind"], "method": r["method"],
                        "status": r["status"], "seed": StoredRun(r).seed,
                        "split": split, **m, "mb": size.get("mb"), "latency_ms": size.get("latency_ms")})
    w = csv.DictWriter(sys.stdout, fieldnames=["run", "name", "kind", "method", "status", "seed", "split", *metrics,
                                               "mb", "latency_ms"], lineterminator="\n")
    w.writeheader()
    w.writerows(out)


@command("runs", "list the runs in the run store (with each run's name and disk use)", _runs_args)
def cmd_runs(a):
    from .deploy.report import model_lines
    from .runs.disk import human, run_bytes
    from .tasks import run_primary_metric
    if a.prune:
        _refuse(a, ["json", "csv"], "--prune frees disk space and lists nothing")
        a.failed, a.dry_run = False, False
        return cmd_gc(a)
    store = _store(a)
    rows = store.runs()
    if a.csv:
        _runs_csv(store, rows)
        return 0
    if a.json:
        print(json.dumps([{**{k: r[k] for k in ("id", "kind", "method", "status", "summary")},
                           "size": store.artifact(r["id"], "size", {}) or {},
                           "precision": (store.artifact(r["id"], "plan", {}) or {}).get("precision"),
                           "name": r["name"], "disk_bytes": run_bytes(store, r)}
                          for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no runs in {store.root}")
    for r in rows:
        acc = " ".join(f"{k}={v:.3f}" for k, v in (r["summary"] or {}).items() if isinstance(v, (int, float)))
        primary = run_primary_metric(r)
        if acc and primary != "accuracy":   # the summary holds the task's primary metric
            acc = f"{primary}: {acc}"
        size = store.artifact(r["id"], "size", {}) or {}
        mb = f"{size['mb']:6.1f} MB" if size.get("mb") is not None else " " * 9
        ms = f"{size['latency_ms']:5.1f} ms" if size.get("latency_ms") is not None else " " * 8
        print(f"{r['id']:40s} {r['kind']:8s} {r['status']:9s} {human(run_bytes(store, r)):>8s} disk {mb} {ms}  {acc}")
        if r.get("name") and r["name"] != r["id"]:
            print(f"  name: {r['name']}")
        plan = store.artifact(r["id"], "plan", {}) or {}
        if plan.get("precision") not in (None, "fp32"):   # mixed precision (the loop's plan records it)
            print(f"  precision: {plan['precision']} autocast on {plan.get('device', '?')}")
        conf = r.get("config") or {}
        if conf.get("teachers"):   # a teacher ensemble
            print(f"  teachers: {', '.join(map(str, conf['teachers']))} ({conf.get('ensemble', 'mean-probs')})")
        elif conf.get("teacher_logits"):
            print(f"  teacher: soft labels {conf['teacher_logits']}")
        sel = store.artifact(r["id"], "selection")
        if sel:   # --select: the kept model's epoch beside the last one
            s_, last = sel["selected"], sel["last"]
            print(f"  selected: epoch {s_['epoch']} by {s_['split']}:{s_['metric']} = {s_['value']:.3f} (last epoch "
                  f"{last['epoch']}: {(last['evals'].get(s_['split']) or {}).get(s_['metric'], float('nan')):.3f}"
                  + (", stopped early" if sel.get("stopped_early") else "") + ")")
        for line in model_lines(store, r["id"]):   # models made by `kdlab compress`
            print(line)
    return 0


def _gc_args(p):
    _store_option(p)
    p.add_argument("--failed", action="store_true", help="also the checkpoints of failed, cancelled and died runs "
                                                         "(they can then not be resumed)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be freed")


@command("gc", "free the disk space finished runs left: their resume checkpoints and half-written folders",
         _gc_args)
def cmd_gc(a):
    from .runs.disk import gc, human
    store = _store(a)
    store.check_writable("gc")
    rows = gc(store, failed=a.failed, dry_run=a.dry_run)
    for r in rows:
        print(f"{r['run']:40s} {r['status']:9s} {human(r['bytes']):>9s}  {r['what']}")
    total = sum(r["bytes"] for r in rows)
    print(f"{'would free' if a.dry_run else 'freed'} {human(total)} in {len(rows)} folders of {store.root}")
    return 0


def _study_args(p):
    run_options(p, name=False)
    g = p.add_argument_group("study")
    g.add_argument("--name", default="study", help="the study's name (default 'study'); running the same name "
                                                   "again continues it")
    g.add_argument("--methods", help="methods to compare, comma-separated (e.g. ce,kd,pkd-skip); the baseline is "
                                     "always added; without --methods: show the stored study")
    g.add_argument("--seeds", default="3", help="a number of seeds (3: seeds 0,1,2) or a list (0,5,9); default 3")
    g.add_argument("--vary", action="append", metavar="KEY=V1,V2",
                   help="a method option and its values, crossed with the methods that have it (e.g. "
                        "--vary temperature=2,4)")
    g.add_argument("--baseline", default="ce", help="the method every other is compared with (default ce: the "
                                                    "student trained alone; lm-ce for LM objectives, --task lm)")
    g.add_argument("--workers", type=int, default=1, help="cells run in parallel processes (default 1)")
    g.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals (default 2000)")
    g.add_argument("--report", choices=["auto", "last", "selected"], default="auto",
                   help="which model of each run the table compares: auto (default: the selected one when the study "
                        "runs with --select, else the last epoch's), last, or selected")
    g.add_argument("--list", action="store_true", help="list the studies in the run store")
    out = g.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the table as JSON rows")
    out.add_argument("--csv", action="store_true", help="print the table as CSV")


@command("study", "a grid of methods x option values x seeds, each a stored run; mean ± std, the paired difference "
                  "to the baseline with a 95% bootstrap CI and a verdict per domain", _study_args)
def cmd_study(a):
    from .engine.study import aggregate, check_bootstrap, format_table, json_rows, parse_seeds, parse_vary, run_study, to_csv
    check_bootstrap(a.bootstrap)   # before any cell trains
    store = _store(a)
    if a.list:
        for st in store.studies():
            n = len(st["spec"].get("cells", []))
            done = len(st["cells"])
            print(f"{st['name']:24s} {done}/{n} cells  methods {','.join(st['spec'].get('grid', {}).get('methods', []))}")
        return 0
    _refuse(a, ["method", "temperature", "seed"], "a study takes its methods from --methods, the options it "
            "compares from --vary (--set: options every cell shares) and its seeds from --seeds")
    if not a.methods:
        if store.study(a.name) is None:
            raise KdlabError(f"no study '{a.name}' in {store.root}: give --methods to run one (study --list lists them)")
        rows = aggregate(store, a.name, n_boot=a.bootstrap, report=a.report)
        res = {"rows": rows, "failed": 0, "busy": []}
    else:
        methods = [m.strip() for m in a.methods.split(",") if m.strip()]
        cfg = config_from_args(a)
        res = run_study(cfg, store, a.name, methods, parse_seeds(a.seeds), vary=parse_vary(a.vary),
                        baseline=a.baseline, workers=a.workers, log=_log(a),
                        progress=not (a.quiet or a.no_progress), n_boot=a.bootstrap)
    rows = res["rows"] if a.report == "auto" else aggregate(store, a.name, n_boot=a.bootstrap, report=a.report)
    if a.json:
        print(json.dumps(json_rows(rows), indent=2))
    elif a.csv:
        sys.stdout.write(to_csv(rows))
    else:
        print(format_table(rows))
        from .analysis.references import for_study
        _print_lines(for_study(store, a.name))
    return 1 if res["failed"] else 0


def _doctor_args(p):
    p.add_argument("--run", required=True, help="a stored classification student run (id, a unique part of it, or "
                                                "a method name: its latest run)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    _store_option(p)


@command("doctor", "why distillation did (not) help a run: ranked findings, each with its figure and a next step",
         _doctor_args)
def cmd_doctor(a):
    from .analysis.doctor import diagnose, format_report
    d = diagnose(_store(a), a.run)
    print(json.dumps(d, indent=2, default=float) if a.json else format_report(d))
    return 0


CKA_WITHOUT_RUN = ("teacher", "preset", "student_layers", "student_init", "data")


def _cka_args(p):
    p.add_argument("--run", help="a stored student run (id, its unique --name, or a unique part of the id)")
    p.add_argument("--pool", default="mean", choices=["mean", "cls"],
                   help="per-layer example features: masked token mean (default) or [CLS]")
    p.add_argument("--max-examples", type=int, default=512, help="examples of the split to use (default 512)")
    p.add_argument("--split", default="dev", help="dev (default), train, or an out-of-domain split name")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _store_option(p)
    _quiet_option(p)
    g = p.add_argument_group("without --run: the teacher against a student copied from its layers")
    g.add_argument("--teacher", help=f"teacher name or folder (default {CHOICES['teacher']})")
    add_choice(g, "preset", help="tiny: the tiny random teacher")
    add_choice(g, "student_layers", help=f"default {CHOICES['student_layers']} "
                                         f"({PRESETS['tiny']['student_layers']} with --preset tiny)")
    add_choice(g, "student_init", choices=["skip", "first", "last"], help=f"default {CHOICES['student_init']}")
    add_choice(g, "data", help="embedded (default), a file, a folder or a hub dataset name")


@command("cka", "teacher x student CKA (linear and debiased) per layer; stored with the run", _cka_args)
def cmd_cka(a):
    from .tools.cka_run import cka_for_run, format_matrix
    if a.run:
        _refuse(a, CKA_WITHOUT_RUN, "--run compares the run's own student and teacher")
        res = cka_for_run(_store(a), a.run, pool=a.pool, max_examples=a.max_examples, split=a.split,
                          device=a.device, log=_log(a))
        head = f"run {res['run']} vs teacher {res['teacher_run']}"
    else:
        _refuse(a, ["runs"], "without --run nothing is read from or stored in the run store")
        res, head = _cka_without_run(a)
    if a.json:
        print(json.dumps({k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in res.items()}))
        return 0
    print(f"{head}: {res['n']} examples of {a.split}, {res['pool']} pooling (rows teacher layers, "
          "columns student layers, 0 = embeddings)")
    print(format_matrix(res["linear"], "linear CKA"))
    print(format_matrix(res["debiased"], "debiased CKA"))
    return 0


def _cka_without_run(a):
    """No run: the (not fine-tuned) teacher against a student copied from its layers."""
    from .models.core import build_student, load_teacher
    from .engine.pipeline import load_bundle
    from .tools.cka_run import cka_between
    cfg = build_config(teacher=a.teacher, data=a.data, student_layers=a.student_layers, preset=a.preset,
                       max_eval=a.max_examples)
    init = a.student_init or "skip"
    head = f"teacher {cfg.teacher} vs a {cfg.student_layers}-layer student copied from it ({init})"
    _log(a)(f"cka: {head}")
    bundle = load_bundle(cfg)
    splits = {"train": bundle.train, **bundle.eval_splits()}
    if a.split not in splits:
        raise KdlabError(f"the data has no split '{a.split}': choose one of {', '.join(splits)}")
    teacher, tok = load_teacher(cfg.teacher, bundle.num_labels())
    student = build_student(teacher, layers=cfg.student_layers, init="uniform" if init == "skip" else init)
    res = cka_between(teacher, student, tok, splits[a.split], pool=a.pool, max_examples=a.max_examples,
                      max_len=cfg.train.max_len, device=a.device)
    return res, head


def _bench_args(p):
    p.add_argument("--teacher", help=f"teacher name or folder (default {CHOICES['teacher']})")
    add_choice(p, "preset", help="tiny: the tiny random teacher (seconds)")
    p.add_argument("--teacher-config", metavar="LAYERSxHIDDEN",
                   help="a random BERT teacher of this size built in code, for speed only (e.g. 12x768)")
    add_choice(p, "student_layers", default=CHOICES["student_layers"], help=f"default {CHOICES['student_layers']}")
    p.add_argument("--batch", type=int, default=CHOICES["batch_size"], help=f"default {CHOICES['batch_size']}")
    p.add_argument("--seq", type=int, default=CHOICES["max_len"], help=f"tokens per example (default "
                                                                         f"{CHOICES['max_len']})")
    p.add_argument("--steps", type=int, default=10, help="batches per epoch (default 10)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved timing rounds; the median round is reported (default 3)")
    p.add_argument("--device", default="cpu")
    add_choice(p, "precision", default=CHOICES["precision"],
               help="also time the loop's mixed-precision steps (auto: on CUDA bf16, or fp16 with a gradient "
                        "scaler where the GPU has no bf16; none on CPU)")
    p.add_argument("--peak-tflops", type=float,
                   help="the device's dense bf16/fp16 peak TFLOP/s for model-FLOPs utilisation on CUDA (default: "
                        "the datasheet figure of a known GPU, e.g. 989 for H100 SXM)")
    p.add_argument("--compile", action="store_true", help="also measure the student under torch.compile")
    p.add_argument("--no-textbrewer", action="store_true")
    add_choice(p, "length_buckets", default=CHOICES["length_buckets"],
               help="kdlab's steps skip padding (auto: on for CPU); on also adds the padded steps")
    p.add_argument("--concurrent", type=int, metavar="N",
                   help="instead: the wall time of N tiny runs started together against one alone (each process "
                        "takes its share of the cores, kdlab.threads)")
    p.add_argument("--every-core", action="store_true",
                   help="with --concurrent: also N runs together each on every core (torch's default)")
    p.add_argument("--write", nargs="?", const="BENCHMARKS.md", help="write the figures into BENCHMARKS.md")
    _quiet_option(p)


@command("bench", "steps/s of plain, live-teacher KD, cached-teacher KD and TextBrewer steps; --write BENCHMARKS.md",
         _bench_args)
def cmd_bench(a):
    if a.concurrent is not None:
        from .tools import bench_concurrent
        res = bench_concurrent.run_concurrent(a.concurrent, every_core=a.every_core, log=_log(a))
        if a.write:
            bench_concurrent.write_markdown(res, a.write, command="python -m kdlab bench " + " ".join(sys.argv[2:]))
        print(json.dumps(res, indent=2))
        return 0
    from .tools.bench import run_bench, write_markdown
    teacher = a.teacher or (PRESETS[a.preset]["teacher"] if a.preset else CHOICES["teacher"])
    res = run_bench(teacher=teacher, student_layers=a.student_layers, batch=a.batch, seq=a.seq, steps=a.steps,
                    epochs=a.epochs, device=a.device, compile=a.compile, textbrewer=not a.no_textbrewer,
                    rounds=a.rounds, peak_tflops=a.peak_tflops, length_buckets=a.length_buckets,
                    teacher_config=a.teacher_config, precision=a.precision, log=_log(a))
    if a.write:
        cmd = "python -m kdlab bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else ""
        write_markdown(res, a.write, command=cmd)
    print(json.dumps(res, indent=2, default=str))
    return 0


def _workshop_args(p):
    p.add_argument("action", choices=["prepare"], help="prepare: the teacher and the teaching runs (resumable)")
    p.add_argument("--profile", choices=list(BUDGETS), default="quick",
                   help="quick (default): the dashboard's default budget; full: all embedded examples, more epochs")
    add_choice(p, "preset", help="tiny: the tiny random teacher (seconds)")
    p.add_argument("--teacher", help=f"built-in name ({CHOICES['teacher']}, tiny), model folder, or hub name")
    add_choice(p, "data", help="embedded (default), a file, a GLUE-style folder, or a hub dataset name")
    add_choice(p, "max_train", help="at most this many training examples (default: the profile's)")
    add_choice(p, "max_eval", help="at most this many examples per evaluation set (default: the profile's)")
    add_choice(p, "max_steps", help="stop every student run after this many steps")
    _store_option(p)
    _quiet_option(p)


@command("workshop", "the class pack: prepare the teacher and the teaching runs before a class (resumable)",
         _workshop_args)
def cmd_workshop(a):
    from .tools.workshop import prepare
    assert a.action == "prepare"   # the only action (argparse refuses any other)
    store = _store(a)
    t0 = time.time()
    rows = prepare(store, a.profile, log=_log(a), progress=not a.quiet, preset=a.preset, teacher=a.teacher,
                   data=a.data, max_train=a.max_train, max_eval=a.max_eval, max_steps=a.max_steps)
    for r in rows:
        print(f"{r['label']:14s} {r['status']:9s} {r['action']:8s} {r['seconds']:7.1f} s  {r['run']}")
    print(f"workshop {a.profile}: {len(rows)} runs ready in {store.root} ({time.time() - t0:.0f} s); open the "
          "dashboard on this store: KDLAB_RUNS=" + str(store.root) + " streamlit run app/main.py")
    return 0 if all(r["status"] == "finished" for r in rows) else 1


# ----------------------------------------------------------------------------------------------- entry point
def _how_to_continue(a, e: KeyboardInterrupt) -> str:
    """What continues an interrupted command: the same command for a study or a workshop pack (they resume their
    runs), ``distill --resume RUN`` for a run with a checkpoint."""
    if a.cmd in ("study", "workshop"):
        return ": run the same command again to continue where it stopped"
    root, rid = getattr(e, "kdlab_run", (None, None))
    if not rid:
        return ""
    from .runs.checkpoint import find_checkpoint
    from pathlib import Path
    if find_checkpoint(Path(root) / rid / "checkpoint") is None:
        return f" (run {rid} had no checkpoint yet: start it again; --checkpoint-every N checkpoints within an epoch)"
    return f": continue it with `python -m kdlab distill --resume {rid} --runs {root}`"


def build_parser() -> Parser:
    p = Parser(prog="kdlab", description="kdlab: knowledge distillation lab for transformer text classifiers")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)
    for name, (f, help, add_args) in COMMANDS.items():
        sp = sub.add_parser(name, help=help.replace("%", "%%"), description=help)   # help is %-formatted
        sp.set_defaults(func=f)
        if add_args:
            add_args(sp)
    return p


# commands that only read the store or print: they take no share of the cores (and import no torch)
LIGHT_COMMANDS = {"runs", "methods"}


def _claim_threads(a):
    """A computing command's CPU threads (kdlab.threads): --threads where the command's runs take it, else the
    share of the cores. ``eval --threads`` is the latency measurement's own setting, not this."""
    if a.cmd in LIGHT_COMMANDS or (a.cmd == "study" and (getattr(a, "workers", 1) or 1) > 1) or (
            a.cmd == "bench" and getattr(a, "concurrent", None)):
        return   # a study's workers (kdlab.engine.study._share_cores) and the benchmark's runs each take their share
    from .threads import use
    use(getattr(a, "threads", None) if a.cmd != "eval" else None)


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if not a.cmd:
        p.print_help()
        return 2
    try:
        _claim_threads(a)
        return a.func(a) or 0
    except KdlabError as e:
        print(f"kdlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"kdlab: interrupted{_how_to_continue(a, e)}", file=sys.stderr)
        return 130
    except MemoryError:
        print("kdlab: error: out of memory: lower --batch-size or --max-len", file=sys.stderr)
        return 2
