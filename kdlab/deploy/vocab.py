"""Vocabulary pruning: keep the tokens a corpus actually produces (plus the special tokens), slice the input
embedding matrix to those rows and rewrite the WordPiece tokenizer with the kept tokens in their old order.

Why the pruned tokenizer gives the same ids (after remapping) on any text inside the kept vocabulary: WordPiece
splits a word greedily, longest match first. Every piece of the old split is kept, and the pruned vocabulary is a
subset of the old one, so at every position the longest match is the same piece; a word that was [UNK] stays
[UNK]. The embedding rows of the kept tokens are copied unchanged, so the logits are identical. Text that needs a
dropped token is split into smaller kept pieces, or becomes [UNK].
"""
from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..errors import KdlabError


def read_corpus(path, text_col: str = "sentence") -> list[str]:
    """Texts of an extra corpus: a plain text file (one text per line), or a .tsv/.csv/.jsonl file (its text
    column). Refuses a missing or empty corpus."""
    p = Path(str(path)).expanduser()
    if not p.exists():
        raise KdlabError(f"corpus file not found: {p}. Give a text file (one text per line) or a .tsv/.csv/.jsonl "
                         "file with a text column")
    if p.is_dir():
        raise KdlabError(f"'{p}' is a folder: --prune-vocab takes one corpus file")
    try:
        raw = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise KdlabError(f"cannot read the corpus file '{p}': {e.strerror}") from None
    suffix = p.suffix.lower()
    texts: list[str] = []
    if suffix in (".tsv", ".csv"):
        rows = csv.DictReader(raw.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        if rows.fieldnames and text_col not in rows.fieldnames and raw.strip():
            raise KdlabError(f"the corpus file '{p}' has no '{text_col}' column (found {rows.fieldnames}): "
                             "give --text-col or a plain text file")
        texts = [r.get(text_col) or "" for r in rows]
    elif suffix == ".jsonl":
        for i, line in enumerate(raw.splitlines(), 1):
            if line.strip():
                try:
                    texts.append(str(json.loads(line).get(text_col, "")))
                except (json.JSONDecodeError, AttributeError):
                    raise KdlabError(f"line {i} of the corpus file '{p}' is not a JSON object") from None
    else:
        texts = raw.splitlines()
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise KdlabError(f"the corpus file '{p}' holds no text: give a file with at least one non-empty line "
                         "(pruning to an empty corpus would keep only the special tokens)")
    return texts


def check_prunable(tokenizer):
    """Only WordPiece fast tokenizers are rewritten (the argument above holds for WordPiece)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = json.loads(backend.to_str())["model"]["type"] if backend is not None else None
    if kind != "WordPiece":
        raise KdlabError(f"vocabulary pruning supports WordPiece tokenizers (BERT family); this model's tokenizer is "
                         f"{kind or type(tokenizer).__name__}: drop --prune-vocab")


def used_ids(tokenizer, texts, batch: int = 2048) -> set[int]:
    """Token ids that ``texts`` produce (whole texts, no truncation, special tokens added)."""
    ids: set[int] = set()
    texts = list(texts)
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], add_special_tokens=True, truncation=False, padding=False,
                        return_attention_mask=False, return_token_type_ids=False)
        for row in enc["input_ids"]:
            ids.update(row)
    return ids


def kept_ids(tokenizer, texts) -> list[int]:
    """The old ids to keep, sorted: those the texts produce, the special tokens and the added tokens."""
    keep = used_ids(tokenizer, texts)
    keep.update(int(i) for i in tokenizer.all_special_ids)
    keep.update(int(i) for i in getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return sorted(i for i in keep if 0 <= i < len(tokenizer))


def _input_embedding(model) -> nn.Embedding:
    emb = None
    try:
        emb = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        pass
    if emb is None:
        emb = getattr(model, "embeddings", None)
    if not isinstance(emb, nn.Embedding):
        raise KdlabError(f"{type(model).__name__} has no input embedding table that kdlab can prune: "
                         "drop --prune-vocab")
    return emb


def prune_model(model, keep: list[int]):
    """Slice the input embedding rows in place (``keep`` = old ids in their new order); fix the config ids."""
    old_to_new = {o: n for n, o in enumerate(keep)}
    emb = _input_embedding(model)
    pad = emb.padding_idx
    new = nn.Embedding(len(keep), emb.embedding_dim, padding_idx=old_to_new.get(pad) if pad is not None else None,
                       dtype=emb.weight.dtype, device=emb.weight.device)
    with torch.no_grad():
        new.weight.copy_(emb.weight[torch.tensor(keep, dtype=torch.long, device=emb.weight.device)])
    if hasattr(model, "set_input_embeddings"):
        try:
            model.set_input_embeddings(new)
        except NotImplementedError:
            model.embeddings = new
    else:
        model.embeddings = new
    if _input_embedding(model) is not new:   # e.g. a model whose setter is not wired to its table
        raise KdlabError(f"could not replace the embedding table of {type(model).__name__}: drop --prune-vocab")
    model.config.vocab_size = len(keep)
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        v = getattr(model.config, attr, None)
        if isinstance(v, int) and v in old_to_new:
            setattr(model.config, attr, old_to_new[v])
    return model


def prune_tokenizer(tokenizer, keep: list[int]):
    """A new tokenizer whose vocabulary is the kept tokens, in their old order (new id = position in ``keep``)."""
    from transformers import AutoTokenizer
    check_prunable(tokenizer)
    inv = {i: t for t, i in tokenizer.get_vocab().items()}
    old_to_new = {o: n for n, o in enumerate(keep)}
    tokens = [inv[i] for i in keep]
    with tempfile.TemporaryDirectory(prefix="kdlab-prune-") as tmp:
        tokenizer.save_pretrained(tmp)
        tj = Path(tmp) / "tokenizer.json"
        j = json.loads(tj.read_text())
        j["model"]["vocab"] = {t: n for n, t in enumerate(tokens)}
        for a in j.get("added_tokens", []):
            a["id"] = old_to_new[a["id"]]
        pp = j.get("post_processor") or {}
        for proc in pp.get("processors", [pp]):
            for st in (proc.get("special_tokens") or {}).values():
                st["ids"] = [old_to_new[i] for i in st["ids"]]
            for key in ("sep", "cls"):   # BertProcessing / RobertaProcessing: [token, id]
                if isinstance(proc.get(key), list):
                    proc[key][1] = old_to_new[proc[key][1]]
        tj.write_text(json.dumps(j, ensure_ascii=False))
        vt = Path(tmp) / "vocab.txt"
        if vt.exists():
            vt.write_text("\n".join(tokens) + "\n")
        new = AutoTokenizer.from_pretrained(tmp)
        # load fully before the folder goes away
        _ = new.get_vocab()
    return new


def remap(ids, keep: list[int], unk_new: int | None = None) -> list[int]:
    """Old ids -> new ids (a dropped id becomes ``unk_new``, or raises KeyError when None)."""
    old_to_new = {o: n for n, o in enumerate(keep)}
    return [old_to_new[i] if unk_new is None else old_to_new.get(i, unk_new) for i in ids]


def check_same_ids(old_tok, new_tok, keep: list[int], texts, limit: int = 2000) -> int:
    """Asserts that the pruned tokenizer gives the remapped ids on every in-vocabulary text of ``texts`` (at most
    ``limit``); returns how many texts were checked."""
    kept = set(keep)
    texts = list(texts)[:limit]
    old = old_tok(texts, add_special_tokens=True, truncation=False)["input_ids"]
    new = new_tok(texts, add_special_tokens=True, truncation=False)["input_ids"]
    n = 0
    for t, a, b in zip(texts, old, new):
        if set(a) <= kept:
            if remap(a, keep) != list(b):
                raise RuntimeError(f"the pruned tokenizer splits {t!r} differently: {a} -> {b}")
            n += 1
    return n


def prune(model, tokenizer, texts):
    """Prune ``model`` (in place) and ``tokenizer`` to the vocabulary of ``texts``; returns
    (model, new tokenizer, kept old ids)."""
    check_prunable(tokenizer)
    keep = kept_ids(tokenizer, texts)
    new_tok = prune_tokenizer(tokenizer, keep)
    prune_model(model, keep)
    return model, new_tok, keep

