"""``kdlab study`` over LM objectives (``--task lm``): the LM side of ``kdlab.engine.study``.

A study of LM methods compares objectives (lm-fkl, lm-rkl, lm-jsd, lm-tvd, seq-kd, gkd: registered methods,
``kdlab.methods.lm``, so their options are checked and varied like any method's) with seeds against the no-KD
baseline ``lm-ce`` (the default baseline of an LM study), like a classification study: every cell is a stored LM
run, the tiny teacher is trained (or reused) once before the cells, and every seed sees the same corpus sample and
dev split (the study's data seed, ``kdlab.lm.train.data_seed``).

The metric is perplexity per domain (lower is better: a negative delta is an improvement). Its paired bootstrap
resamples the held-out examples: each LM run keeps, per evaluation split, every example's summed next-token NLL
and its number of scored tokens (``predictions.npz``, ``kdlab.lm.adaptor.save_predictions``); the perplexity of a
resample is exp(sum NLL / sum tokens) over the drawn examples, i.e. token-weighted, the same definition as the
run's reported perplexity (``kdlab.analysis.stats.metric_value``).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import KdlabError
from .train import METHODS

BASELINE = "lm-ce"
METRIC = "perplexity"
LEGACY_EXAMPLES = "lm_examples.npz"   # where LM runs kept their per-example NLLs before they went through the loop


def is_lm(method: str) -> bool:
    return method in METHODS


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
    import dataclasses
    from .data import load_corpus
    from .train import check_lm, data_seed, prepare_lm_teacher
    check_lm(cfg if is_lm(cfg.method) else dataclasses.replace(cfg, method=BASELINE))
    corpus = load_corpus(cfg.data, ood=cfg.ood, max_train=cfg.max_train, max_eval=cfg.max_eval, seed=data_seed(cfg))
    prepare_lm_teacher(cfg, store, corpus, log=log)


def examples_file(path) -> Path:
    """A cell's per-example NLLs: its ``predictions.npz`` (``path``), or the ``lm_examples.npz`` beside it of a run
    stored before LM runs went through the one loop (the same arrays)."""
    path = Path(path)
    legacy = path.with_name(LEGACY_EXAMPLES)
    return legacy if not path.exists() and legacy.exists() else path
