"""Teacher-assistant KD (METHODS §15): teacher -> assistant -> student, every hop plain Hinton KD (method ``kd``).

The assistant has ``assistant_layers`` layers (default: halfway between the teacher's and the student's layer
counts), is copied from the teacher like any student and distilled from it; the student is then copied from the
assistant and distilled from it. Each hop is its own stored run (``kdlab.pipeline.distill_run``): the assistant
run (kind ``assistant``) has the teacher run as parent, the student run has the assistant run as parent and
records the artifact ``chain = [teacher_run, assistant_run, student_run]``. The KD options (temperature,
alpha_soft, ...) apply to both hops. Reduction: kdlab's canonical ``T²·batchmean KL``; the reference code's
``KLDivLoss()`` default divides additionally by C.
"""
from __future__ import annotations

import copy

from ..errors import KdlabError
from .base import register
from .basic import LogitKD


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


def load_hop_model(store, run_id: str):
    from ..models import load_saved
    return load_saved(store.artifact(run_id, "model_dir"))


def finished(store, run_id: str) -> bool:
    return store.run(run_id)["status"] == "finished"


@register
class TAKD(LogitKD):
    name = "takd"
    summary = "chain teacher -> assistant (assistant_layers) -> student, each hop Hinton KD; two stored runs"
    defaults = dict(assistant_layers=None)

    @classmethod
    def run_chain(cls, cfg, store, *, teacher, tokenizer, bundle, teacher_run, log):
        from ..pipeline import distill_run
        hp = cls.resolve_options(cfg.method_args)
        kd_args = {k: v for k, v in cfg.method_args.items() if k != "assistant_layers"}
        N, M = teacher.config.num_hidden_layers, cfg.student_layers
        A = hp["assistant_layers"]
        if A is None:
            A = (N + M + 1) // 2
        if not isinstance(A, int) or isinstance(A, bool) or not M < A < N:
            raise KdlabError(f"the teacher assistant needs between the student's {M} and the teacher's {N} layers "
                             f"(got assistant_layers={A!r}): set assistant_layers to a value in {M + 1}..{N - 1}, "
                             "or use fewer student layers")
        base = cfg.name or "takd"
        c1 = hop_config(cfg, "kd", kd_args, f"{base} hop 1/2: teacher -> assistant ({A} layers)",
                        student_layers=A, student_hidden=None)
        log(f"takd: hop 1/2, teacher ({N} layers) -> assistant ({A} layers)")
        a_run = distill_run(c1, store, teacher=teacher, tokenizer=tokenizer, bundle=bundle,
                            teacher_run=teacher_run, kind="assistant", log=log)
        store.set_artifact(a_run, "regime", {"method": cls.name, "hop": 1, "hops": 2})
        if not finished(store, a_run):
            return a_run
        assistant, a_tok = load_hop_model(store, a_run)
        c2 = hop_config(cfg, "kd", kd_args, f"{base} hop 2/2: assistant ({A} layers) -> student ({M} layers)")
        log(f"takd: hop 2/2, assistant ({A} layers) -> student ({M} layers)")
        s_run = distill_run(c2, store, teacher=assistant, tokenizer=a_tok, bundle=bundle,
                            teacher_run=a_run, kind="student", log=log)
        store.set_artifact(s_run, "chain", [teacher_run, a_run, s_run])
        store.set_artifact(s_run, "regime", {"method": cls.name, "hop": 2, "hops": 2, "assistant_layers": A})
        return s_run
