"""Chains of runs (pipeline layer): a regime that is several stored runs, each hop a normal run of
``kdlab.engine.pipeline.distill_run``. The method class says what each hop is (its options, its sizes); this module
runs the hops in order and links them (parent runs, the ``chain`` and ``regime`` artifacts).

* ``takd``: teacher -> assistant -> student, each hop Hinton KD.
* ``tf-kd-self``: hop 1 trains the student with CE; hop 2 distils it into a fresh copy of the same initial
  student.

``run`` is ``distill_run`` itself, passed in by the pipeline so that this module does not import it.
"""
from __future__ import annotations

import copy

from ..models.core import build_student, load_saved, load_teacher


def hop_config(cfg, method: str, method_args: dict, name: str, **changes):
    """A copy of the (already preset-applied) run configuration for one hop of a chain."""
    c = copy.deepcopy(cfg)
    c.preset = None            # the preset was applied once to the whole chain
    c.method = method
    c.method_args = dict(method_args)
    c.name = name
    if c.student_init == "explicit":   # explicit layer lists index the original teacher: copy by skip instead
        c.student_init, c.student_layer_list = "skip", None
    for k, v in changes.items():
        setattr(c, k, v)
    return c


def _first_hop(method_cls, c1, store, run, **kw):
    """Hop 1 of 2 (kind ``assistant``): (run id, its saved model and tokenizer, or None when it did not finish)."""
    r1 = run(c1, store, kind="assistant", **kw)
    store.set_artifact(r1, "regime", {"method": method_cls.name, "hop": 1, "hops": 2})
    if store.run(r1)["status"] != "finished":
        return r1, None
    return r1, load_saved(store.artifact(r1, "model_dir"))


def run_takd(method_cls, cfg, store, *, run, teacher, tokenizer, bundle, teacher_run, log) -> str:
    kd_args = method_cls.hop_args(cfg.method_args)
    N, M = teacher.config.num_hidden_layers, cfg.student_layers
    A = method_cls.assistant_layers(cfg.method_args, N, M)
    base = cfg.name or method_cls.name
    c1 = hop_config(cfg, "kd", kd_args, f"{base} hop 1/2: teacher -> assistant ({A} layers)",
                    student_layers=A, student_hidden=None)
    log(f"takd: hop 1/2, teacher ({N} layers) -> assistant ({A} layers)")
    a_run, hop = _first_hop(method_cls, c1, store, run, teacher=teacher, tokenizer=tokenizer, bundle=bundle,
                            teacher_run=teacher_run, log=log)
    if hop is None:
        return a_run
    assistant, a_tok = hop
    c2 = hop_config(cfg, "kd", kd_args, f"{base} hop 2/2: assistant ({A} layers) -> student ({M} layers)")
    log(f"takd: hop 2/2, assistant ({A} layers) -> student ({M} layers)")
    s_run = run(c2, store, teacher=assistant, tokenizer=a_tok, bundle=bundle, teacher_run=a_run, kind="student",
                log=log)
    store.set_artifact(s_run, "chain", [teacher_run, a_run, s_run])
    store.set_artifact(s_run, "regime", {"method": method_cls.name, "hop": 2, "hops": 2, "assistant_layers": A})
    return s_run


def run_self(method_cls, cfg, store, *, run, teacher, tokenizer, bundle, teacher_run, log) -> str:
    kd_args = method_cls.hop_args(cfg.method_args)
    base = cfg.name or method_cls.name
    if teacher is None:   # fresh student: the base model only provides the architecture and tokenizer
        teacher, tokenizer = load_teacher(cfg.teacher, bundle.num_labels(), seed=cfg.train.seed,
                                          trust_remote_code=cfg.trust_remote_code)
        teacher.config.problem_type = {"score": "regression", "multi": "multi_label_classification"}.get(
            getattr(getattr(bundle, "task", None), "kind", "classes"), "single_label_classification")
        teacher_run = None
    c1 = hop_config(cfg, "ce", {}, f"{base} hop 1/2: student trained with CE")
    init = c1.student_init
    student0 = build_student(teacher, layers=c1.student_layers, init=init, layer_list=c1.student_layer_list,
                             hidden=c1.student_hidden, seed=c1.train.seed)
    fresh_copy = copy.deepcopy(student0)
    log(f"{method_cls.name}: hop 1/2, training the student with CE")
    r1, hop = _first_hop(method_cls, c1, store, run, teacher=teacher, tokenizer=tokenizer, bundle=bundle,
                         teacher_run=teacher_run if init != "fresh" else None, log=log, student=student0)
    if hop is None:
        return r1
    self_teacher, tok = hop
    c2 = hop_config(cfg, "kd", kd_args, f"{base} hop 2/2: fresh copy distilled from the hop-1 student")
    log(f"{method_cls.name}: hop 2/2, distilling the hop-1 student into a fresh copy of the initial student")
    r2 = run(c2, store, teacher=self_teacher, tokenizer=tok, bundle=bundle, teacher_run=r1, kind="student", log=log,
             student=fresh_copy)
    store.set_artifact(r2, "chain", [r1, r2])
    store.set_artifact(r2, "regime", {"method": method_cls.name, "hop": 2, "hops": 2})
    return r2


RUNNERS = {"takd": run_takd, "tf-kd-self": run_self}


def run_chain(method_cls, cfg, store, **kw) -> str:
    return RUNNERS[method_cls.name](method_cls, cfg, store, **kw)
