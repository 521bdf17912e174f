"""``kdlab study`` over LM objectives (``--task lm``): the LM side of ``kdlab.engine.study``.

A study of LM methods compares objectives (lm-fkl, lm-rkl, lm-jsd, lm-tvd, seq-kd, gkd) with seeds against the
no-KD baseline ``lm-ce`` (the default baseline of an LM study), like a classification study: every cell is a stored
LM run, the tiny teacher is trained (or reused) once before the cells, and every seed sees the same corpus sample
and dev split (the study's data seed, ``kdlab.lm.train.data_seed``).

The metric is perplexity per domain (lower is better: a negative delta is an improvement). Its paired bootstrap
resamples the held-out examples: each LM run keeps, per evaluation split, every example's summed next-token NLL
and its number of scored tokens (``kdlab.lm.train.EXAMPLES``); the perplexity of a resample is
exp(sum NLL / sum tokens) over the drawn examples, i.e. token-weighted, the same definition as the run's reported
perplexity (``kdlab.stats.metric_value``).
"""
from __future__ import annotations

from types import SimpleNamespace

from ..errors import KdlabError
from .train import EXAMPLES, METHODS

BASELINE = "lm-ce"
METRIC = "perplexity"
_TOKEN = ("temperature", "chunk", "ce_weight", "hidden_weight", "topk", "topk_tail", "eval_batch")
OPTIONS = {   # the options (kdlab.lm.train.DEFAULTS) each method reads
    "lm-ce": ("eval_batch",),
    "lm-fkl": _TOKEN, "lm-rkl": _TOKEN, "lm-tvd": _TOKEN, "lm-jsd": (*_TOKEN, "beta"),
    "seq-kd": ("gen_len", "prompt_tokens", "eval_batch"),
    "gkd": ("temperature", "chunk", "ce_weight", "beta", "lmbda", "gen_len", "prompt_tokens", "eval_batch"),
}


class LMMethod:
    """What ``kdlab.engine.study`` asks of a method (its option names, a check of option values, whether it needs the
    teacher), for an LM method."""

    def __init__(self, name: str):
        self.name = name
        self.uses_teacher = name != BASELINE

    def option_names(self) -> list[str]:
        """The options this method reads (``--vary`` crosses an option with the methods that have it)."""
        return list(OPTIONS[self.name])

    def check_options(self, opts: dict) -> None:
        from .train import options
        options(SimpleNamespace(method=self.name, method_args=dict(opts or {})))


def is_lm(method: str) -> bool:
    return method in METHODS


def method(name: str) -> LMMethod:
    return LMMethod(name)


def baseline_for(cfg, methods, baseline: str) -> str:
    """The baseline of a study of ``methods``: ``lm-ce`` for LM methods when the classification default (``ce``)
    was left; one line for a grid that mixes LM and classification methods (or a classification method with
    ``--task lm``)."""
    lm_task = str(getattr(cfg, "task", "") or "").strip().lower() == "lm"
    methods = list(methods)
    if not (lm_task or any(is_lm(m) for m in [*methods, baseline])):
        return baseline
    if baseline == "ce":
        baseline = BASELINE
    other = [m for m in dict.fromkeys([baseline, *methods]) if not is_lm(m)]
    if other:
        raise KdlabError(f"a study of causal LM objectives compares LM methods ({', '.join(METHODS)}); "
                         f"{', '.join(other)} {'is a classification method' if len(other) == 1 else 'are classification methods'}"
                         ": run them in a study of their own (baseline ce)")
    return baseline


def prepare_teacher(cfg, store, *, log=print) -> None:
    """The LM teacher, once before the cells (the tiny one is trained on the study's corpus and cached)."""
    from .data import load_corpus
    from .train import check_lm, data_seed, prepare_lm_teacher
    check_lm(cfg if is_lm(cfg.method) else _with_method(cfg, BASELINE))
    corpus = load_corpus(cfg.data, ood=cfg.ood, max_train=cfg.max_train, max_eval=cfg.max_eval, seed=data_seed(cfg))
    prepare_lm_teacher(cfg, store, corpus, log=log)


def _with_method(cfg, name: str):
    import dataclasses
    return dataclasses.replace(cfg, method=name)


def examples_file(store, run_id: str):
    """A stored LM run's per-example NLLs (``load_predictions`` reads it: ``{split: {"nll", "labels"}}``)."""
    return store.folder(run_id) / EXAMPLES

