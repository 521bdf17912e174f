"""More commands for ``python -m kdlab``; each registers itself with ``kdlab.cli.command`` and carries its
arguments as ``add_args(parser)``. One command per block, in a flat list."""
from __future__ import annotations

import json

from .cli import _log, _store, command
from .errors import KdlabError


# ------------------------------------------------------------------------------------------------ cka
@command("cka", "teacher x student CKA (linear and debiased) per layer; stored with the run")
def cmd_cka(a):
    from .tools.cka_run import cka_between, cka_for_run, format_matrix
    if a.run:
        res = cka_for_run(_store(a), a.run, pool=a.pool, max_examples=a.max_examples, split=a.split,
                          device=a.device, log=_log(a))
        head = f"run {res['run']} vs teacher {res['teacher_run']}"
    else:
        res = _cka_without_run(a)
        head = f"teacher {a.teacher} vs a {a.student_layers}-layer student copied from it ({a.student_init})"
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
    from .tools.cka_run import cka_between
    from .config import RunConfig, apply_preset
    from .models import build_student, load_teacher
    from .pipeline import load_bundle
    cfg = apply_preset(RunConfig(teacher=a.teacher, data=a.data, student_layers=a.student_layers,
                                 preset=a.preset, max_eval=a.max_examples))
    bundle = load_bundle(cfg)
    splits = {"train": bundle.train, **bundle.eval_splits()}
    if a.split not in splits:
        raise KdlabError(f"the data has no split '{a.split}': choose one of {', '.join(splits)}")
    teacher, tok = load_teacher(cfg.teacher, bundle.num_labels())
    init = "uniform" if a.student_init == "skip" else a.student_init
    student = build_student(teacher, layers=cfg.student_layers, init=init)
    return cka_between(teacher, student, tok, splits[a.split], pool=a.pool, max_examples=a.max_examples,
                       max_len=cfg.train.max_len, device=a.device)


def _cka_args(p):
    p.add_argument("--run", help="a stored student run (id or a unique part of it)")
    p.add_argument("--pool", default="mean", choices=["mean", "cls"],
                   help="per-layer example features: masked token mean (default) or [CLS]")
    p.add_argument("--max-examples", type=int, default=512, help="examples of the split to use (default 512)")
    p.add_argument("--split", default="dev", help="dev (default), train, or an out-of-domain split name")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved timing rounds; the median round is reported (default 3)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--peak-tflops", type=float,
                   help="the device's peak bf16 TFLOP/s, for model-FLOPs utilisation on CUDA (e.g. 989 for H100 SXM)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--runs", "--out", dest="runs", help="run store folder (default ./runs or $KDLAB_RUNS)")
    p.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("without --run")
    g.add_argument("--teacher", default="minilm-l6", help="teacher name or folder (compared with a copied student)")
    g.add_argument("--preset", choices=["tiny"], help="tiny: the tiny random teacher")
    g.add_argument("--student-layers", type=int, default=3)
    g.add_argument("--student-init", default="skip", choices=["skip", "first", "last"])
    g.add_argument("--data", help="embedded (default), a file, a folder or a hub dataset name")


cmd_cka.add_args = _cka_args


# ---------------------------------------------------------------------------------------------- bench
@command("bench", "steps/s of plain, live-teacher KD, cached-teacher KD and TextBrewer steps; --write BENCHMARKS.md")
def cmd_bench(a):
    import sys
    from .tools.bench import run_bench, write_markdown
    teacher = "tiny" if a.preset == "tiny" else a.teacher
    res = run_bench(teacher=teacher, student_layers=a.student_layers, batch=a.batch, seq=a.seq, steps=a.steps,
                    epochs=a.epochs, device=a.device, compile=a.compile, textbrewer=not a.no_textbrewer,
                    rounds=a.rounds, peak_tflops=a.peak_tflops,
                    length_buckets=a.length_buckets, log=_log(a))
    if a.write:
        cmd = "python -m kdlab bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else ""
        write_markdown(res, a.write, command=cmd)
    print(json.dumps(res, indent=2, default=str))
    return 0


def _bench_args(p):
    p.add_argument("--teacher", default="minilm-l6", help="teacher name or folder (default minilm-l6)")
    p.add_argument("--preset", choices=["tiny"], help="tiny: the tiny random teacher (seconds)")
    p.add_argument("--student-layers", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="batches per epoch (default 10)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved timing rounds; the median round is reported (default 3)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--peak-tflops", type=float,
                   help="the device's peak bf16 TFLOP/s, for model-FLOPs utilisation on CUDA (e.g. 989 for H100 SXM)")
    p.add_argument("--compile", action="store_true", help="also measure the student under torch.compile")
    p.add_argument("--no-textbrewer", action="store_true")
    p.add_argument("--length-buckets", default="auto", choices=["auto", "on", "off"],
                   help="kdlab's steps skip padding (auto: on for CPU); on also adds the padded steps")
    p.add_argument("--write", nargs="?", const="BENCHMARKS.md", help="write the figures into BENCHMARKS.md")
    p.add_argument("--quiet", action="store_true")


cmd_bench.add_args = _bench_args
