"""Command line: ``python -m kdlab {demo,teacher,distill,eval,methods,runs,...}``.

Mistakes a user can fix end with one line ``kdlab: error: ...`` and exit code 2, never a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

from .errors import KdlabError

COMMANDS = {}


def command(name, help):
    def deco(f):
        COMMANDS[name] = (f, help)
        return f
    return deco


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"kdlab: error: {message} (see `python -m kdlab {self.prog.split()[-1]} --help`)\n"
                  if " " in self.prog else f"kdlab: error: {message}\n")


def _layers(s: str) -> list[int]:
    try:
        return [int(x) for x in s.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not a comma-separated list of layer numbers, e.g. 0,2,4")


def _kv(s: str):
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"'{s}' is not key=value (e.g. --set temperature=4)")
    k, v = s.split("=", 1)
    try:
        v = json.loads(v)
    except json.JSONDecodeError:
        pass
    return k.strip().replace("-", "_"), v


def add_run_args(p: argparse.ArgumentParser, method_default="kd"):
    g = p.add_argument_group("models")
    g.add_argument("--preset", choices=["tiny"], help="tiny: a tiny random teacher, runs in seconds")
    g.add_argument("--teacher", default="minilm-l6", help="built-in name (minilm-l6, tiny), model folder, or hub name")
    g.add_argument("--trust-remote-code", action="store_true", help="allow custom model code from the hub (off by default)")
    g.add_argument("--student-layers", type=int, help="number of student layers (default 3; 2 with --preset tiny)")
    g.add_argument("--student-init", default="skip", choices=["skip", "uniform", "first", "last", "explicit", "fresh"],
                   help="copy teacher layers by strategy, or 'fresh' random init")
    g.add_argument("--student-layer-list", type=_layers, help="explicit teacher layers to copy, 0-based, e.g. 0,2,4,7,9,11")
    g.add_argument("--student-hidden", type=int, help="a narrower fresh student (random init)")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="embedded (default), a TSV/CSV/JSONL file, a GLUE-style folder, or a hub dataset name")
    g.add_argument("--text-col", default="sentence")
    g.add_argument("--label-col", default="label")
    g.add_argument("--ood", nargs="*", default=[], help="labeled files evaluated as out-of-domain sets")
    g.add_argument("--max-train", type=int, help="use at most this many training examples")
    g.add_argument("--max-eval", type=int, help="use at most this many examples per evaluation set")
    g = p.add_argument_group("method")
    g.add_argument("--method", default=method_default, help="a registered method (python -m kdlab methods)")
    g.add_argument("--set", dest="method_args", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="method option, e.g. --set temperature=4 --set alpha_soft=0.7")
    g.add_argument("--temperature", type=float, help="shortcut for --set temperature=T")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--lr", type=float, default=1e-4)
    g.add_argument("--grad-accum", type=int, default=1)
    g.add_argument("--max-len", type=int, default=64)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    g.add_argument("--teacher-epochs", type=int, default=2, help="epochs to fine-tune the teacher")
    g.add_argument("--teacher-lr", type=float, default=5e-5)
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="also checkpoint every N steps for exact resume (default: each epoch)")
    g.add_argument("--teacher-cache", default="auto", choices=["auto", "on", "off"],
                   help="reuse teacher outputs per example after the first epoch (auto: only when exact)")
    g.add_argument("--cache-dtype", default="fp32", choices=["fp32", "fp16"], help="teacher-cache storage")
    g.add_argument("--length-buckets", default="auto", choices=["auto", "on", "off"],
                   help="skip padding: rows of similar length run together, trimmed (auto: on for CPU)")
    g.add_argument("--resume", metavar="RUN_ID", help="resume a killed/failed run from its last checkpoint "
                   "(its stored configuration is used; other flags are ignored)")
    g = p.add_argument_group("output")
    g.add_argument("--runs", "--out", dest="runs", help="run store folder (default ./runs or $KDLAB_RUNS)")
    g.add_argument("--name", help="a name for the run")
    g.add_argument("--config", help="a JSON file with a run configuration (command-line flags are ignored)")
    g.add_argument("--no-progress", action="store_true")


def config_from_args(a):
    from .config import RunConfig, TrainConfig, apply_preset
    if a.config:
        try:
            with open(a.config) as f:
                d = json.load(f)
        except OSError as e:
            raise KdlabError(f"cannot read the config file '{a.config}': {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise KdlabError(f"the config file '{a.config}' is not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(d, dict):
            raise KdlabError(f"the config file '{a.config}' must hold a JSON object")
        return apply_preset(RunConfig.from_dict(d))
    args = dict(a.method_args)
    if a.temperature is not None:
        args["temperature"] = a.temperature
    init = "skip" if a.student_init == "uniform" else a.student_init
    if a.student_layer_list and init == "skip":
        init = "explicit"
    tr = TrainConfig(epochs=a.epochs, max_steps=a.max_steps, batch_size=a.batch_size, lr=a.lr,
                     grad_accum=a.grad_accum, max_len=a.max_len, seed=a.seed, device=a.device,
                     precision=a.precision, progress=not a.no_progress)
    ttr = TrainConfig(epochs=a.teacher_epochs, lr=a.teacher_lr, batch_size=a.batch_size, max_len=a.max_len,
                      seed=a.seed, device=a.device, precision=a.precision, progress=not a.no_progress)
    cfg = RunConfig(teacher=a.teacher, data=a.data, text_col=a.text_col, label_col=a.label_col, ood=a.ood,
                    max_train=a.max_train, max_eval=a.max_eval, student_layers=a.student_layers or 3,
                    student_init=init, student_layer_list=a.student_layer_list,
                    student_hidden=a.student_hidden, method=a.method, method_args=args, train=tr,
                    teacher_train=ttr, trust_remote_code=a.trust_remote_code, name=a.name, preset=a.preset)
    tr.validate()   # before the preset, which raises a too-small lr and would hide a negative one
    cfg = apply_preset(cfg)
    if a.student_layers is not None:  # an explicit choice beats the preset's default
        cfg.student_layers = a.student_layers
    cfg.train.checkpoint_every = getattr(a, "checkpoint_every", 0) or 0
    cfg.train.teacher_cache = getattr(a, "teacher_cache", "auto")
    cfg.train.cache_dtype = getattr(a, "cache_dtype", "fp32")
    cfg.train.length_buckets = getattr(a, "length_buckets", "auto")
    if a.no_progress:
        cfg.train.progress = cfg.teacher_train.progress = False
    if a.preset and a.max_steps:
        cfg.train.max_steps = a.max_steps
    cfg.train.validate()
    cfg.teacher_train.validate()
    return cfg


def _store(a):
    from .store import Store
    return Store(a.runs) if getattr(a, "runs", None) else Store()


@command("distill", "distill a student from a teacher with one method")
def cmd_distill(a):
    from .speed.ddp import is_main, wrap_store
    from .pipeline import distill_run
    if getattr(a, "resume", None):
        from .checkpoint import resume_run
        store = _store(a)
        run_id = resume_run(store, a.resume, log=_log(a))
        _print_run(store, run_id)
        return 0 if store.run(run_id)["status"] == "finished" else 1
    cfg = config_from_args(a)
    store = wrap_store(_store(a))   # under torchrun: rank 0 writes, the other ranks read
    run_id = distill_run(cfg, store, log=_log(a))
    if is_main():
        _print_run(store, run_id)
    return 0 if store.run(run_id)["status"] == "finished" else 1


@command("teacher", "fine-tune (or reuse) the teacher on the training data")
def cmd_teacher(a):
    from .pipeline import load_bundle, prepare_teacher
    cfg = config_from_args(a)
    store = _store(a)
    _, _, run_id = prepare_teacher(cfg, store, load_bundle(cfg), log=_log(a))
    _print_run(store, run_id)
    return 0


@command("demo", "the whole path on the embedded default: teacher, no-KD student, KD student")
def cmd_demo(a):
    from .tools.demo import run_demo
    cfg = config_from_args(a)
    return run_demo(cfg, _store(a), log=_log(a))


@command("eval", "evaluate a stored run's model on a labeled file; prints JSON")
def cmd_eval(a):
    from .pipeline import eval_run
    res = eval_run(_store(a), a.run, a.data, text_col=a.text_col, label_col=a.label_col, max_len=a.max_len)
    print(json.dumps(res, indent=2))
    return 0


@command("methods", "list the registered methods, one per line")
def cmd_methods(a):
    from .methods import REGISTRY, names
    for n in names():
        print(f"{n}\t{REGISTRY[n].summary}" if a.verbose else n)
    return 0


@command("runs", "list the runs in the run store")
def cmd_runs(a):
    store = _store(a)
    rows = store.runs()
    if a.json:
        print(json.dumps([{k: r[k] for k in ("id", "kind", "method", "status", "summary")} for r in rows], indent=2))
        return 0
    if not rows:
        print(f"no runs in {store.root}")
    for r in rows:
        acc = " ".join(f"{k}={v:.3f}" for k, v in (r["summary"] or {}).items() if isinstance(v, (int, float)))
        print(f"{r['id']:40s} {r['kind']:8s} {r['status']:9s} {acc}")
    return 0


def _log(a):
    quiet = getattr(a, "quiet", False)
    return (lambda *x, **k: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _print_run(store, run_id):
    r = store.run(run_id)
    ev = store.final_evals(run_id)
    print(json.dumps({"run": run_id, "status": r["status"], "message": r["message"],
                      "evals": {k: {m: round(v, 4) for m, v in d.items()} for k, d in ev.items()}}, indent=2))


def build_parser():
    p = Parser(prog="kdlab", description="kdlab: knowledge distillation lab for transformer text classifiers")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)
    for name, (f, help) in COMMANDS.items():
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=f)
        if name in ("distill", "teacher", "demo"):
            add_run_args(sp)
            sp.add_argument("--quiet", action="store_true")
        elif name == "eval":
            sp.add_argument("--run", required=True, help="run id (or a unique part of it)")
            sp.add_argument("--data", required=True, help="a labeled TSV/CSV/JSONL file")
            sp.add_argument("--text-col", default="sentence")
            sp.add_argument("--label-col", default="label")
            sp.add_argument("--max-len", type=int, default=64)
            sp.add_argument("--runs", "--out", dest="runs")
        elif name == "methods":
            sp.add_argument("-v", "--verbose", action="store_true", help="also print each method's loss")
        elif name == "runs":
            sp.add_argument("--runs", "--out", dest="runs")
            sp.add_argument("--json", action="store_true")
        else:
            extra = getattr(f, "add_args", None)
            if extra:
                extra(sp)
    return p


def load_extensions():
    """Commands defined in other modules (cka, bench, ...) register themselves on import."""
    import importlib
    for mod in ("kdlab.cli_extra",):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def main(argv=None) -> int:
    load_extensions()
    p = build_parser()
    a = p.parse_args(argv)
    if not a.cmd:
        p.print_help()
        return 2
    try:
        return a.func(a) or 0
    except KdlabError as e:
        print(f"kdlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdlab: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("kdlab: error: out of memory: lower --batch-size or --max-len", file=sys.stderr)
        return 2
