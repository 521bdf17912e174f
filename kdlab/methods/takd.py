"""Teacher-assistant KD (docs/METHODS.md: takd): teacher -> assistant -> student, every hop plain Hinton KD (method ``kd``).

The assistant has ``assistant_layers`` layers (default: halfway between the teacher's and the student's layer
counts), is copied from the teacher like any student and distilled from it; the student is then copied from the
assistant and distilled from it. Each hop is its own stored run (``kdlab.engine.pipeline.distill_run``): the assistant
run (kind ``assistant``) has the teacher run as parent, the student run has the assistant run as parent and
records the artifact ``chain = [teacher_run, assistant_run, student_run]``. The KD options (temperature,
alpha_soft, ...) apply to both hops. Reduction: kdlab's canonical ``T²·batchmean KL``; the reference code's
``KLDivLoss()`` default divides additionally by C.
"""
from __future__ import annotations

from ..errors import KdlabError
from .base import Option, register
from .basic import LogitKD


@register
class TAKD(LogitKD):
    name = "takd"
    summary = "chain teacher -> assistant (assistant_layers) -> student, each hop Hinton KD; two stored runs"
    defaults = dict(assistant_layers=None)
    options = dict(assistant_layers=Option("int", "layers of the teacher assistant (empty = halfway)", lo=1,
                                              optional=True))

    chain = True   # run by kdlab.engine.chains: two stored runs

    @classmethod
    def hop_args(cls, method_args: dict) -> dict:
        """The options of each hop's ``kd`` run."""
        cls.resolve_options(method_args)
        return {k: v for k, v in method_args.items() if k != "assistant_layers"}

    @classmethod
    def assistant_layers(cls, method_args: dict, teacher_layers: int, student_layers: int) -> int:
        """The assistant's layer count: ``assistant_layers``, or halfway between the teacher and the student."""
        N, M = teacher_layers, student_layers
        A = cls.resolve_options(method_args)["assistant_layers"]
        if A is None:
            A = (N + M + 1) // 2
        if not isinstance(A, int) or isinstance(A, bool) or not M < A < N:
            raise KdlabError(f"the teacher assistant needs between the student's {M} and the teacher's {N} layers "
                             f"(got assistant_layers={A!r}): set assistant_layers to a value in {M + 1}..{N - 1}, "
                             "or use fewer student layers")
        return A
