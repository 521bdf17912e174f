"""Transfer-set augmentation for logit distillation (Distilled BiLSTM, Tang et al. 2019; docs/METHODS.md: bilstm).

Per example and per sample, word by word (words = ``\\w+`` runs and single punctuation marks): draw
``u ~ U(0, 1)``; ``u < p_mask`` -> the tokenizer's mask token; ``p_mask <= u < p_mask + p_replace`` -> the word's
nearest neighbour; otherwise the word is kept. Then, with probability ``p_ng``, the sample is cut down to a
random n-gram (n uniform in ``1..ng_max``, capped at the length). ``n_samples`` samples per example (the
paper: 20; here 4 by default); duplicates of the original or of each other are dropped.

Stand-in for POS-guided replacement: the paper swaps a word for another word with the same part-of-speech
tag; without a tagger we swap it for its nearest neighbour by cosine similarity in the *teacher's input
word-embedding matrix*, among whole-word vocabulary entries (no special tokens, no ``##`` pieces,
alphabetic). Words that are not a single vocabulary entry are never replaced.

The augmented examples need no gold label: the distiller regresses the teacher's logits on them. Their
``labels`` field holds the teacher's predicted class, so a hard-label term (alpha > 0) still sees sensible
targets. Everything is deterministic given the seed.
"""
from __future__ import annotations

import random
import re

import torch
import torch.nn.functional as F

from ..errors import KdlabError

WORD = re.compile(r"\w+|[^\w\s]")


def words_of(text: str) -> list[str]:
    return WORD.findall(text)


def ngram_sample(words: list[str], rng: random.Random, ng_max: int = 5) -> list[str]:
    """A random contiguous n-gram, n uniform in 1..ng_max (capped at the length)."""
    if not words:
        return words
    n = rng.randint(1, max(1, min(ng_max, len(words))))
    start = rng.randint(0, len(words) - n)
    return words[start:start + n]


def augment_words(words: list[str], rng: random.Random, *, p_mask: float = 0.1, p_replace: float = 0.1,
                  p_ng: float = 0.25, ng_max: int = 5, neighbours: dict[str, str] | None = None,
                  mask_token: str = "[MASK]") -> list[str]:
    """One augmented sample: per-word mask / replace / keep (one uniform draw per word), then maybe an n-gram."""
    neighbours = neighbours or {}
    out = []
    for w in words:
        u = rng.random()
        if u < p_mask:
            out.append(mask_token)
        elif u < p_mask + p_replace and w in neighbours:
            out.append(neighbours[w])
        else:
            out.append(w)
    if rng.random() < p_ng:
        out = ngram_sample(out, rng, ng_max)
    return out


def nearest_neighbours(embedding: torch.Tensor, query_ids: list[int], candidate_ids: list[int],
                       chunk: int = 1024) -> dict[int, int]:
    """For each query id, the candidate id (other than itself) with the highest cosine similarity of rows of
    ``embedding [V, d]``; ties go to the lower id."""
    if not candidate_ids or not query_ids:
        return {}
    E = F.normalize(embedding.detach().float(), dim=-1)
    cand = torch.tensor(candidate_ids, dtype=torch.long)
    C = E[cand]                                                   # [n_c, d]
    out = {}
    for start in range(0, len(query_ids), chunk):
        q = torch.tensor(query_ids[start:start + chunk], dtype=torch.long)
        sim = E[q] @ C.T                                          # [n_q, n_c]
        sim[q.unsqueeze(1) == cand.unsqueeze(0)] = float("-inf")  # never the word itself
        best = sim.argmax(dim=1)
        for qi, b, row in zip(q.tolist(), best.tolist(), sim):
            if torch.isfinite(row[b]):
                out[qi] = cand[b].item()
    return out


def whole_word_ids(tokenizer) -> dict[str, int]:
    """Vocabulary entries that are whole alphabetic words (no special tokens, no ``##`` pieces)."""
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    return {w: i for w, i in tokenizer.get_vocab().items()
            if w not in special and not w.startswith("##") and w.isalpha()}


def word_neighbours(texts: list[str], tokenizer, embedding: torch.Tensor) -> dict[str, str]:
    """word -> its cosine-nearest whole word in the teacher's embedding space, for the words of ``texts``."""
    vocab = whole_word_ids(tokenizer)
    seen = {}
    for t in texts:
        for w in words_of(t):
            key = w if w in vocab else w.lower()
            if key in vocab:
                seen.setdefault(w, vocab[key])
    if not seen:
        return {}
    ids = sorted(set(seen.values()))
    nn_ids = nearest_neighbours(embedding, ids, sorted(vocab.values()))
    inv = {i: w for w, i in vocab.items()}
    return {w: inv[nn_ids[i]] for w, i in seen.items() if i in nn_ids}


def augment_texts(texts: list[str], *, n_samples: int = 4, p_mask: float = 0.1, p_replace: float = 0.1,
                  p_ng: float = 0.25, ng_max: int = 5, neighbours: dict[str, str] | None = None,
                  mask_token: str = "[MASK]", seed: int = 0) -> tuple[list[str], list[int]]:
    """Augmented texts and, for each, the index of its source text (originals not included)."""
    check_probs(p_mask, p_replace, p_ng)
    if n_samples < 0 or ng_max < 1:
        raise KdlabError(f"augmentation needs n_samples >= 0 and ng_max >= 1 (got {n_samples}, {ng_max})")
    rng = random.Random(seed)
    out, src = [], []
    for i, text in enumerate(texts):
        words = words_of(text)
        have = {" ".join(words)}
        for _ in range(n_samples):
            new = " ".join(augment_words(words, rng, p_mask=p_mask, p_replace=p_replace, p_ng=p_ng, ng_max=ng_max,
                                         neighbours=neighbours, mask_token=mask_token))
            if new and new not in have:
                have.add(new)
                out.append(new)
                src.append(i)
    return out, src


def check_probs(p_mask: float, p_replace: float, p_ng: float):
    for name, p in (("p_mask", p_mask), ("p_replace", p_replace), ("p_ng", p_ng)):
        if not 0.0 <= float(p) <= 1.0:
            raise KdlabError(f"augmentation probability {name} must be in [0, 1] (got {p})")
    if p_mask + p_replace > 1.0:
        raise KdlabError(f"p_mask + p_replace must be at most 1 (got {p_mask} + {p_replace})")


def teacher_embedding(teacher) -> torch.Tensor:
    emb = teacher.get_input_embeddings() if hasattr(teacher, "get_input_embeddings") else None
    if emb is None:
        raise KdlabError(f"{type(teacher).__name__} has no input word embeddings for neighbour replacement: "
                         "set p_replace=0")
    return emb.weight


def augment_split(split, tokenizer, teacher, *, n_samples: int = 4, p_mask: float = 0.1, p_replace: float = 0.1,
                  p_ng: float = 0.25, ng_max: int = 5, seed: int = 0, max_len: int = 64, label: bool = True):
    """``split`` plus its augmented samples, labelled with the teacher's predicted class (``label=False``: with a
    placeholder label, for callers that mark them unlabeled, ``kdlab.data.transfer``)."""
    from .loaders import Split
    from ..analysis.evaluate import predict
    mask_token = getattr(tokenizer, "mask_token", None)
    if p_mask > 0 and not mask_token:
        raise KdlabError("the tokenizer has no mask token, so token masking is impossible: set p_mask=0")
    neighbours = word_neighbours(split.texts, tokenizer, teacher_embedding(teacher)) if p_replace > 0 else {}
    texts, src = augment_texts(split.texts, n_samples=n_samples, p_mask=p_mask, p_replace=p_replace, p_ng=p_ng,
                               ng_max=ng_max, neighbours=neighbours, mask_token=mask_token or "[MASK]", seed=seed)
    if not texts:
        return split
    pairs = getattr(split, "texts_b", None)   # a pair: the first text is augmented, the second kept
    texts_b = None if pairs is None else [pairs[i] for i in src]
    aug = Split(name="augmented", texts=texts, labels=[0] * len(texts), domain=split.domain, texts_b=texts_b)
    if not label:
        return Split(name=split.name, texts=list(split.texts) + texts, labels=list(split.labels) + aug.labels,
                     domain=split.domain, texts_b=None if pairs is None else list(pairs) + texts_b)
    device = next(teacher.parameters()).device
    logits = predict(teacher, aug, tokenizer, max_len=max_len, device=device)
    kind = getattr(teacher.config, "problem_type", None)
    if kind == "regression":            # a score task: the teacher's predicted score
        labels = [float(y) for y in logits[:, 0]]
    elif kind == "multi_label_classification":
        labels = [[float(v > 0) for v in row] for row in logits]
    else:
        labels = [int(y) for y in logits.argmax(axis=1)]
    return Split(name=split.name, texts=list(split.texts) + texts, labels=list(split.labels) + labels,
                 domain=split.domain, texts_b=None if pairs is None else list(pairs) + texts_b)
