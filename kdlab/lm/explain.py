"""Next-token distributions of causal LMs for a typed prompt, at a temperature: what the Temperature lab's LM mode
and the forward-vs-reverse-KL notebook show (the page only draws; ``kdlab.analysis.probs`` softens and takes entropies).

* ``prompt_ids``: a prompt's token ids (with the bos token the tokenizer adds), refused in one line when empty or
  longer than the model's context.
* ``position_probs``: the next-token distribution after every prefix of a token sequence, at T.
* ``compare_next_token``: several models' next-token distributions at one position of a prompt, on the top-k
  tokens of the first model (the teacher), with each model's entropy, the mass outside those tokens and
  KL(first || model) at T.
* ``run_models`` / ``lm_runs``: the teacher and student of a stored LM run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..errors import KdlabError
from ..analysis.probs import entropy, softened


def context_of(model) -> int | None:
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def prompt_ids(tok, prompt: str, model=None) -> list[int]:
    """The token ids of ``prompt`` as the model reads it (the tokenizer's bos first when it adds one, as in
    ``kdlab.lm.data.encode``)."""
    from .data import text_ids
    ids = text_ids(tok, str(prompt or ""))
    if not ids:
        raise KdlabError("type a prompt: the next-token distribution is conditioned on at least one token")
    n = context_of(model) if model is not None else None
    if n and len(ids) > n:
        raise KdlabError(f"the prompt has {len(ids)} tokens but the model's context is {n} positions: shorten it")
    return ids


def token_labels(tok, ids) -> list[str]:
    """Readable, distinct labels of token ids (the decoded text, with the id when two decode alike)."""
    texts = [tok.decode([int(i)]) for i in ids]
    texts = [t if t.strip() else repr(t) for t in texts]
    seen: dict = {}
    for t, i in zip(texts, ids):
        seen.setdefault(t, set()).add(int(i))
    return [f"{t} #{int(i)}" if len(seen[t]) > 1 else t for t, i in zip(texts, ids)]


@torch.no_grad()
def position_logits(model, ids) -> np.ndarray:
    """[L, V] logits: row i is the model's next-token logits after the first i + 1 tokens of ``ids``."""
    model.eval()
    device = next(model.parameters()).device
    x = torch.tensor([list(ids)], dtype=torch.long, device=device)
    return model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0].float().cpu().numpy()


def position_probs(model, ids, temperature: float = 1.0) -> np.ndarray:
    """[L, V] next-token distributions softmax(logits / T) after each prefix of ``ids``."""
    check_temperature(temperature)
    return softened(position_logits(model, ids), float(temperature))


def check_temperature(T) -> None:
    if isinstance(T, bool) or not isinstance(T, (int, float)) or not T > 0:
        raise KdlabError(f"the temperature must be a positive number (got {T!r})")


def compare_next_token(models: Mapping[str, object], tok, prompt: str | None = None, *, ids=None,
                       temperature: float = 1.0, k: int = 10, position: int = -1) -> dict:
    """Next-token distributions of ``models`` ({label: causal LM}, the first one the reference, e.g. the teacher)
    after the prompt (or the first ``position + 1`` tokens of ``ids``) at temperature T.

    Returns ``prompt_tokens`` (labels of the tokens read), ``ids`` and ``tokens`` (the reference's top-k next
    tokens), ``probs`` ({label: [k probabilities]}), ``other`` ({label: mass outside those k}), ``entropy``
    ({label: nats, the whole vocabulary}), ``kl`` ({label: KL(reference || model), nats}; 0 for the reference),
    ``temperature`` and ``k``."""
    if not models:
        raise KdlabError("compare_next_token needs at least one model")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise KdlabError(f"k is the number of tokens shown, at least 1 (got {k!r})")
    check_temperature(temperature)
    first = next(iter(models.values()))
    ids = list(ids) if ids is not None else prompt_ids(tok, prompt, first)
    n = context_of(first)
    if n and len(ids) > n:
        raise KdlabError(f"the text has {len(ids)} tokens but the model's context is {n} positions: shorten it")
    pos = position if position >= 0 else len(ids) + position
    if not 0 <= pos < len(ids):
        raise KdlabError(f"position {position} is outside the {len(ids)} tokens of the text")
    dists = {}
    for label, m in models.items():
        vocab = m.config.vocab_size
        if vocab != first.config.vocab_size:
            raise KdlabError(f"'{label}' has a vocabulary of {vocab} tokens, the reference "
                             f"{first.config.vocab_size}: next-token distributions compare models of one vocabulary")
        dists[label] = position_probs(m, ids[:pos + 1], temperature)[-1]
    ref = dists[next(iter(models))]
    top = np.argsort(-ref, kind="stable")[:min(k, len(ref))]
    out = {"prompt_tokens": token_labels(tok, ids[:pos + 1]), "ids": [int(i) for i in top],
           "tokens": token_labels(tok, top), "probs": {}, "other": {}, "entropy": {}, "kl": {},
           "temperature": float(temperature), "k": len(top)}
    for label, p in dists.items():
        out["probs"][label] = [float(v) for v in p[top]]
        out["other"][label] = float(max(0.0, 1.0 - p[top].sum()))
        out["entropy"][label] = float(entropy(p))
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(ref > 0, ref * (np.log(ref) - np.log(np.maximum(p, 1e-300))), 0.0).sum()
        out["kl"][label] = float(max(kl, 0.0))
    return out


def prompt_logits(models: Mapping[str, object], tok, prompt: str) -> dict:
    """{label: [V] next-token logits after the prompt} (``kdlab.viz.entropy_curve`` softens them at each T)."""
    first = next(iter(models.values()))
    ids = prompt_ids(tok, prompt, first)
    return {label: position_logits(m, ids)[-1] for label, m in models.items()}


def as_bars(res: dict) -> dict:
    """``{label: {token: probability}}`` of a ``compare_next_token`` result (``kdlab.viz.metric_bars``), with
    the mass outside the shown tokens as a last bar."""
    return {label: {**dict(zip(res["tokens"], p)), "(all other tokens)": res["other"][label]}
            for label, p in res["probs"].items()}


# ---------------------------------------------------------------------------------------------- stored runs
def lm_runs(store, status: str = "finished") -> list[dict]:
    """The store's causal LM runs (students and teachers) with a saved model, newest first."""
    from ..runs.run_record import StoredRun
    out = []
    for r in store.runs():
        if r["status"] != status or StoredRun(r, store).task_kind != "lm":
            continue
        folder = store.artifact(r["id"], "model_dir")
        if folder and Path(str(folder)).is_dir():
            out.append(r)
    return out


def run_models(store, run_id: str) -> dict:
    """{"teacher": (model, tokenizer), "student": (model, tokenizer)} of a stored LM run (a teacher run: its
    model as the teacher alone; a student whose teacher is gone or has another vocabulary: the student alone)."""
    from .models import load_lm, load_lm_folder
    run = store.run(run_id)
    folder = store.artifact(run_id, "model_dir")
    if not folder or not Path(str(folder)).is_dir():
        raise KdlabError(f"run {run_id} has no saved model (status {run['status']}): pick a finished LM run")
    own = load_lm_folder(folder)
    if run["kind"] == "teacher":
        return {"teacher": own}
    out = {}
    tdir = store.artifact(run_id, "teacher_dir")
    if tdir:
        try:   # a folder, or a built-in name (smollm2-135m: its cached conversion)
            t = load_lm(str(tdir), log=lambda *a, **k: None)
            if t[0].config.vocab_size == own[0].config.vocab_size and t[1].get_vocab() == own[1].get_vocab():
                out["teacher"] = t
        except KdlabError:
            pass
    out["student"] = own
    return out
