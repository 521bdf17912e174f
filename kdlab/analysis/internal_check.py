"""How close a student's internals are to its teacher's at matched layers: the two terms of KD from internal
representations (attention KL ``losses.attention_kl`` and [CLS] cosine distance ``losses.cls_cosine``, docs/METHODS.md:
internal-all), measured on evaluation texts for any pair of models. Notebook 4 and ``scripts/internal_check.py`` (the
published study's check in docs/RESULTS.md) use it.

Pairs are (student layer, teacher layer), 1-based; by default the uniform mapping ``g(i) = round(i*N/M)`` that
``internal-*`` distils. Attention maps are the models' own pre-dropout maps (eval mode).
"""
from __future__ import annotations

import torch

from ..kd import losses, mapping
from ..data.batching import make_loader
from ..models.features import Need, features


def uniform_pairs(student_layers: int, teacher_layers: int) -> list[tuple[int, int]]:
    return [(s, t) for s, t, _ in mapping.pairs(mapping.uniform(student_layers, teacher_layers))]


def matched_gaps(teacher, student, tokenizer, split, pairs=None, *, max_examples: int = 256, batch_size: int = 32,
                 max_len: int = 64) -> dict:
    """{"s{i}-t{j}": {"attention_kl", "cls_cosine"}} averaged over the first ``max_examples`` texts of ``split``
    (weighted by each batch's real query rows for the KL, by its rows for the cosine), plus "mean" over the pairs.
    Both models must tokenize alike and run eager attention (``load_saved(..., attentions=True)``)."""
    import dataclasses
    pairs = pairs or uniform_pairs(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    n = min(max_examples, len(split))
    sub = dataclasses.replace(split, texts=list(split.texts[:n]), labels=list(split.labels[:n]),
                              texts_b=None if split.texts_b is None else list(split.texts_b[:n]))
    need = Need(hidden=True, attentions=True)
    sums = {f"s{s}-t{t}": [0.0, 0.0, 0.0, 0] for s, t in pairs}   # kl*rows, rows, cos*B, B
    teacher.eval(), student.eval()
    with torch.no_grad():
        for batch in make_loader(sub, tokenizer, batch_size=batch_size, max_len=max_len):
            ft, fs = features(teacher, batch, need), features(student, batch, need)
            m = batch["attention_mask"]
            rows, B = float(m.sum()), m.shape[0]
            for s, t in pairs:
                acc = sums[f"s{s}-t{t}"]
                acc[0] += float(losses.attention_kl(fs.attentions[s - 1], ft.attentions[t - 1], m)) * rows
                acc[1] += rows
                acc[2] += float(losses.cls_cosine(fs.cls(s), ft.cls(t))) * B
                acc[3] += B
    out = {k: {"attention_kl": a[0] / a[1], "cls_cosine": a[2] / a[3]} for k, a in sums.items()}
    out["mean"] = {key: sum(v[key] for v in out.values()) / len(pairs) for key in ("attention_kl", "cls_cosine")}
    return out
