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

from .config import (CHOICES, DEFAULT_TEACHER_LR, PRECISIONS, PRESETS, TEACHER_LR, RunConfig, apply_preset,
                     build_config)
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
    from .mapping import parse_layers
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


def run_options(p, *, student: bool = True, name: bool = True, resume: bool = False):
    """The options ``build_config`` takes (None = its default, or the preset's). ``student``: the student, the
    method and the student's training; ``name``: the run's name; ``resume``: ``--resume RUN``."""
    D = CHOICES
    g = p.add_argument_group("models")
    g.add_argument("--preset", choices=sorted(PRESETS), help="tiny: a tiny random teacher, runs in seconds")
    g.add_argument("--teacher", action="append",
                   help=f"built-in name (minilm-l6, mpnet-base, tiny, tiny-FAMILY), model folder, or hub name (default "
                        f"{D['teacher']}); given several times: a teacher ensemble for logit KD (each prepared as "
                        "usual; a name given twice is prepared again with the next seed)")
    if student:
        g.add_argument("--ensemble", choices=["mean-probs", "mean-kl"],
                       help="several teachers: KD to the mean of their softened distributions (mean-probs, the "
                            "default) or the mean of the per-teacher KD losses (mean-kl)")
        g.add_argument("--teacher-logits", metavar="FILE",
                       help="a teacher given only as soft labels: a .npy array [N, C] with one row of logits (or "
                            "probabilities) per training example in kdlab's order, or a .csv/.tsv with a 'text' "
                            "column (and 'text_b' for pairs) and one column per class, matched by text; drives "
                            "logit-level methods (kd, kd-mse, ...); --teacher then names the student's base model")
    g.add_argument("--arch", metavar="FAMILY",
                   help="model family of the tiny random teacher (with --preset tiny): bert (default), roberta, "
                        "electra, distilbert, deberta-v2, modernbert, mpnet")
    g.add_argument("--teacher-finetuned", action="store_true", default=None,
                   help="the teacher is already a fine-tuned classifier for this task: use it as is (evaluated, "
                        "never fine-tuned); a folder kdlab saved is recognised without this flag")
    g.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="allow custom model code from the hub (off by default)")
    if student:
        g.add_argument("--student", metavar="NAME_OR_FOLDER",
                       help="a pretrained student from another checkpoint (built-in name, model folder or hub name) "
                            "instead of layers copied from the teacher; its layers map to the teacher's through the "
                            "method's mapping, with learned projections where widths differ; a student that "
                            "tokenizes differently works with logit-level methods only; 'static': a token table "
                            "read from the teacher (Model2Vec recipe), mean-pooled, with a linear head")
        g.add_argument("--student-layers", type=int, help=f"number of student layers (default {D['student_layers']}; "
                                                          f"{PRESETS['tiny']['student_layers']} with --preset tiny)")
        g.add_argument("--student-init", choices=["skip", "uniform", "first", "last", "explicit", "fresh"],
                       help="copy teacher layers by strategy (default skip), or 'fresh' random init")
        g.add_argument("--student-layer-list", type=_layers,
                       help="explicit teacher layers to copy, 0-based, e.g. 0,2,4,7,9,11")
        g.add_argument("--student-hidden", type=int, help="a narrower student (hidden size; random init unless "
                                                          "--student-narrow-init)")
        g.add_argument("--student-narrow-init", choices=["random", "pca", "select"],
                       help="a narrower student: random (default), or projected from the teacher's layers: pca "
                            "(principal directions of its hidden states) or select (its strongest channels)")
    g = p.add_argument_group("data")
    g.add_argument("--data", help="embedded (default), a TSV/CSV/JSONL file, a GLUE-style folder, or a hub dataset name")
    g.add_argument("--task", help="a built-in task: sentiment (the default), cola, sst2, mrpc, qqp, sts-b, mnli, qnli, "
                                  "rte, wnli (a GLUE folder names its task itself), or ranking (a BEIR folder: "
                                  "--method margin-mse, listwise-kl or contrastive; options via --set, see "
                                  "kdlab.ranking.train)")
    g.add_argument("--text-col", help="text column, or two for a sentence pair: a,b (default: the task's; sentence)")
    g.add_argument("--label-col", help="label column (default: the task's; label)")
    g.add_argument("--label-kind", choices=["classes", "score", "multi"],
                   help="classes (default), score (regression) or multi (several labels per row, comma-separated)")
    g.add_argument("--ood", nargs="*", help="labeled files evaluated as out-of-domain sets")
    g.add_argument("--ood-map", help="score OOD sets with other labels: model_label=ood_label,... (default: the task's "
                                     "built-in mapping, e.g. entailment=entails,not_entailment=neutral for SciTail)")
    g.add_argument("--max-train", type=int, help="use at most this many training examples (0: all, the default)")
    g.add_argument("--max-eval", type=int, help="use at most this many examples per evaluation set (0: all, the "
                                                "default)")
    if student:
        g.add_argument("--transfer", metavar="FILE",
                       help="a transfer set: more texts the student learns the teacher's outputs on (.txt one per "
                            "line, or .tsv/.csv/.jsonl with the text column and an optional label column); hard "
                            "labels only where a row has one. With --max-train N: the few-labels setting")
        g.add_argument("--augment", action="store_true", default=None,
                       help="add augmented copies of the training texts (masking, nearest-neighbour word "
                            "replacement, n-grams; kdlab.augment), learned from the teacher's outputs only")
    if student:
        g = p.add_argument_group("method")
        g.add_argument("--method", help=f"a registered method (python -m kdlab methods; default {D['method']})")
        g.add_argument("--set", dest="method_args", type=_kv, action="append", metavar="KEY=VALUE",
                       help="method option, e.g. --set temperature=4 --set alpha_soft=0.7")
        g.add_argument("--temperature", type=float, help="shortcut for --set temperature=T")
        g = p.add_argument_group("student training")
        g.add_argument("--epochs", type=int, help=f"default {D['epochs']} ({PRESETS['tiny']['epochs']} with --preset tiny)")
        g.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
        g.add_argument("--lr", type=float, help=f"default {D['lr']} ({PRESETS['tiny']['lr']} with --preset tiny)")
        g.add_argument("--grad-accum", type=int, help=f"default {D['grad_accum']}")
        g.add_argument("--checkpoint-every", type=int, metavar="N",
                       help="also checkpoint every N steps for exact resume (default: each epoch)")
        g.add_argument("--teacher-cache", choices=["auto", "on", "off"],
                       help="reuse teacher outputs per example after the first epoch (auto, the default: only "
                            "when exact)")
        g.add_argument("--cache-dtype", choices=["fp32", "fp16"], help="teacher-cache storage (default fp32)")
        g.add_argument("--select", metavar="SPLIT:METRIC",
                       help="keep the model of the best epoch by this metric on this split (e.g. dev:accuracy, "
                            "scitail_test:macro_f1); the run reports both the last and the selected model")
        g.add_argument("--patience", type=int, help="with --select: stop after this many epochs without improvement")
        g.add_argument("--length-buckets", choices=["auto", "on", "off"],
                       help="skip padding: rows of similar length run together, trimmed (auto, the default: on "
                            "for CPU)")
        g.add_argument("--grad-share-every", type=int, metavar="N",
                       help=f"every N steps, log the gradient norm each loss term puts on the student (read by "
                            f"`kdlab doctor`; default {D['grad_share_every']}, 0 = off)")
    g = p.add_argument_group("teacher fine-tuning")
    g.add_argument("--teacher-epochs", type=int, help=f"epochs to fine-tune the teacher (default "
                                                      f"{D['teacher_epochs']}; {PRESETS['tiny']['teacher_epochs']} "
                                                      "with --preset tiny)")
    g.add_argument("--teacher-lr", type=float, help=f"default {DEFAULT_TEACHER_LR} ({TEACHER_LR['tiny']} for the tiny "
                                                    "teacher)")
    g = p.add_argument_group("training (teacher and student)" if student else "training")
    g.add_argument("--batch-size", type=int, help=f"default {D['batch_size']}")
    g.add_argument("--max-len", type=int, help=f"tokens per example (default {D['max_len']}; "
                                               f"{PRESETS['tiny']['max_len']} with --preset tiny)")
    g.add_argument("--seed", type=int, help=f"default {D['seed']}")
    g.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads (default 0: this process's share of the cores among the kdlab runs computing on "
                        "this machine, adjusted as runs start and end; also $KDLAB_THREADS)")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:1")
    g.add_argument("--precision", choices=list(PRECISIONS),
                   help="default auto: fp32 on CPU; on CUDA bf16 autocast, or fp16 autocast with a gradient scaler "
                        "where the GPU has no bf16 (T4-class)")
    g = p.add_argument_group("output")
    _store_option(g)
    if name:
        g.add_argument("--name", help="a name for the run")
    g.add_argument("--config", help="a JSON file with a whole run configuration (instead of the options above)")
    g.add_argument("--no-progress", action="store_true", default=None, help="no progress bars")
    if student:
        g.add_argument("--tensorboard", action="store_true", default=None,
                       help="also write TensorBoard event files into the run's folder (tensorboard --logdir RUNS)")
    _quiet_option(g)
    if resume:
        g.add_argument("--resume", metavar="RUN_ID", help="resume a killed/failed run from its last checkpoint "
                       "with its stored configuration")


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
    from .store import Store
    return Store(a.runs) if a.runs else Store()


def _log(a):
    return (lambda *x, **k: None) if a.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))


def _print_lines(lines):
    if lines:
        print("\n" + "\n".join(lines))


def _print_references(store, run_id):
    """The published reference rows and the weak-teacher warning for the teacher of ``run_id``
    (kdlab.references)."""
    from .references import for_run
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
    from .pipeline import distill_run, resume_run
    from .speed.ddp import is_main, wrap_store
    if a.resume:
        _refuse(a, [*CHOICES, "config"], "--resume continues the run with its stored configuration")
        store = _store(a)
        run_id = resume_run(store, a.resume, log=_log(a), keep_checkpoints=a.keep_checkpoints)
        _print_run(store, run_id)
        return 0 if store.run(run_id)["status"] == "finished" else 1
    cfg = config_from_args(a)
    store = wrap_store(_store(a))   # under torchrun: rank 0 writes, the other ranks read
    run_id = distill_run(cfg, store, log=_log(a), keep_checkpoints=a.keep_checkpoints)
    if is_main():
        _print_run(store, run_id)
    return 0 if store.run(run_id)["status"] == "finished" else 1


@command("teacher", "fine-tune (or reuse) the teacher on the training data",
         lambda p: run_options(p, student=False, name=False))
def cmd_teacher(a):
    from .pipeline import load_bundle, prepare_teachers
    cfg = config_from_args(a)
    store = _store(a)
    from .ranking.train import ranking_teacher, wants_ranking
    from .lm.train import lm_teacher, wants_lm
    if wants_lm(cfg):   # a causal LM teacher: the tiny one trained on the corpus, or a named/folder one checked
        _print_run(store, lm_teacher(cfg, store, log=_log(a)))
        return 0
    if wants_ranking(cfg):   # a BEIR folder: the cross-encoder teacher
        _print_run(store, ranking_teacher(cfg, store, log=_log(a)))
        return 0
    from .references import for_run
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
    _quiet_option(p)
    p.add_argument("--text-col", help="text column(s) a or a,b (default: those of the run's task)")
    p.add_argument("--label-col", help="label column (default: the run's task's)")
    p.add_argument("--ood-map", help="model_label=file_label,... for a file with other classes (default: the task's "
                                     "built-in mapping)")
    p.add_argument("--max-len", type=int, default=CHOICES["max_len"])
    _store_option(p)


@command("eval", "evaluate a stored run's model on a labeled file (JSON); with --model: a run's models beside the "
                 "teacher (accuracy, MB, latency)", _eval_args)
def cmd_eval(a):
    from .pipeline import eval_run
    if a.max_len < 1:
        raise KdlabError(f"--max-len is the number of tokens per example: at least 1 (got {a.max_len})")
    if a.threads < 1:
        raise KdlabError(f"--threads is the number of CPU threads for the latency: at least 1 (got {a.threads})")
    from .run_record import StoredRun
    rec = StoredRun.load(_store(a), a.run)
    if rec.task_kind == "lm":   # perplexity per domain, token KL, top-1 agreement
        from .lm.train import eval_lm_run
        _refuse(a, ["model", "ood_map"], "an LM run is evaluated by perplexity: `kdlab eval --run RUN [--data FILE]`")
        print(json.dumps(eval_lm_run(_store(a), rec.row, a.data), indent=2))
        return 0
    if not a.model and not a.data and rec.is_ranking:   # a ranking run without --data: its own BEIR folder
        a.data = rec.data
    if a.model or not a.data:   # the run's models side by side with the teacher (kdlab.deploy.report)
        from .deploy.report import eval_models, format_table
        _refuse(a, ["ood_map"], "--ood-map applies to `eval --data FILE` without --model")
        res = eval_models(_store(a), a.run, a.model or ["student"], data=a.data, text_col=a.text_col or "sentence",
                          label_col=a.label_col or "label", max_len=a.max_len, threads=a.threads,
                          log=_log(a))
        print(json.dumps(res, indent=2) if a.json else format_table(res))
        if not a.json:
            _print_references(_store(a), res.get("run"))
        return 0
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
    from .ranking.train import METHODS as RANKING
    for n in names():
        print(f"{n}\t{REGISTRY[n].summary}" if a.verbose else n)
    for n, summary in RANKING.items():   # the ranking task's objectives (--task ranking)
        print(f"{n}\tranking: {summary}" if a.verbose else n)
    from .lm.train import METHODS as LM
    for n, summary in LM.items():   # the causal LM objectives (--task lm)
        print(f"{n}\tlm: {summary}" if a.verbose else n)
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

    from .run_record import StoredRun
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
    from .disk import human, run_bytes
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
    from .disk import gc, human
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
    from .study import aggregate, check_bootstrap, format_table, json_rows, parse_seeds, parse_vary, run_study, to_csv
    check_bootstrap(a.bootstrap)   # before any cell trains
    store = _store(a)
    if a.list:
        for st in store.studies():
            n = len(st["spec"].get("cells", []))
            done = len(st["cells"])
            print(f"{st['name']:24s} {done}/{n} cells  methods {','.join(st['spec'].get('grid', {}).get('methods', []))}")
        return 0
    _refuse(a, ["method", "method_args", "temperature", "seed"], "a study takes its methods from --methods, their "
            "options from --vary and its seeds from --seeds")
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
        from .references import for_study
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
    from .doctor import diagnose, format_report
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
    g.add_argument("--teacher", help="teacher name or folder (default minilm-l6)")
    g.add_argument("--preset", choices=sorted(PRESETS), help="tiny: the tiny random teacher")
    g.add_argument("--student-layers", type=int, help="default 3 (2 with --preset tiny)")
    g.add_argument("--student-init", choices=["skip", "first", "last"], help="default skip")
    g.add_argument("--data", help="embedded (default), a file, a folder or a hub dataset name")


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
    from .models import build_student, load_teacher
    from .pipeline import load_bundle
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
    p.add_argument("--teacher", help="teacher name or folder (default minilm-l6)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="tiny: the tiny random teacher (seconds)")
    p.add_argument("--teacher-config", metavar="LAYERSxHIDDEN",
                   help="a random BERT teacher of this size built in code, for speed only (e.g. 12x768)")
    p.add_argument("--student-layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="batches per epoch (default 10)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved timing rounds; the median round is reported (default 3)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="also time the loop's mixed-precision steps (auto: on CUDA bf16, or fp16 with a gradient "
                        "scaler where the GPU has no bf16; none on CPU)")
    p.add_argument("--peak-tflops", type=float,
                   help="the device's dense bf16/fp16 peak TFLOP/s for model-FLOPs utilisation on CUDA (default: "
                        "the datasheet figure of a known GPU, e.g. 989 for H100 SXM)")
    p.add_argument("--compile", action="store_true", help="also measure the student under torch.compile")
    p.add_argument("--no-textbrewer", action="store_true")
    p.add_argument("--length-buckets", default="auto", choices=["auto", "on", "off"],
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
    p.add_argument("--profile", choices=["quick", "full"], default="quick",
                   help="quick (default): the dashboard's default budget; full: all embedded examples, more epochs")
    p.add_argument("--preset", choices=sorted(PRESETS), help="tiny: the tiny random teacher (seconds)")
    p.add_argument("--teacher", help="built-in name (minilm-l6, tiny), model folder, or hub name")
    p.add_argument("--data", help="embedded (default), a file, a GLUE-style folder, or a hub dataset name")
    p.add_argument("--max-train", type=int, help="at most this many training examples (default: the profile's)")
    p.add_argument("--max-eval", type=int, help="at most this many examples per evaluation set")
    p.add_argument("--max-steps", type=int, help="stop every student run after this many steps")
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
    from .checkpoint import find_checkpoint
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
        return   # a study's workers (kdlab.study._share_cores) and the benchmark's runs each take their share
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
