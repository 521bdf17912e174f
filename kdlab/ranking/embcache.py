"""Corpus embeddings of a bi-encoder, computed once and kept as safetensors.

The file name holds both halves of the key: the model (a digest of its weights file and its pooling, score and
document length) and the corpus (``RankingData.identity``, a digest of the BEIR files), so a changed model or
corpus never reads stale vectors. Encoding SciFact's 5,183 abstracts at 256 tokens on one CPU thread takes
about 5 minutes; a cached matrix loads in milliseconds.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import torch

from .models import BiEncoder


def weights_digest(folder) -> str:
    """sha256 (16 hex) of a model folder's weights file(s): the model half of the cache key."""
    h = hashlib.sha256()
    files = sorted(Path(folder).glob("*.safetensors")) or sorted(Path(folder).glob("*.bin"))
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def model_key(folder, bi: BiEncoder) -> str | None:
    """The model half of the cache key; None (no caching) for a model built in code (no folder)."""
    if not Path(str(folder)).is_dir():
        return None
    return f"{weights_digest(folder)}-{bi.pooling}-{bi.score_fn}-d{bi.doc_len}"


def cache_path(cache, key: str, identity: str) -> Path:
    return Path(cache) / f"emb-{key}-{identity}.safetensors"


def corpus_embeddings(bi: BiEncoder, docs, *, key: str | None, identity: str, cache=None, log=None,
                      batch_size: int = 32, device="cpu") -> torch.Tensor:
    """[n_docs, H] embeddings of ``docs``: read from ``cache`` when present (same key, same corpus, same row
    count), else encoded now (with progress lines) and saved there atomically."""
    from safetensors.torch import load_file, save_file
    path = cache_path(cache, key, identity) if (cache is not None and key) else None
    if path is not None and path.exists():
        emb = load_file(str(path))["embeddings"]
        if emb.shape[0] == len(docs):
            return emb
    bi.eval()
    t0, parts, step = time.time(), [], max(batch_size, 512)
    for i in range(0, len(docs), step):
        parts.append(bi.encode(docs[i:i + step], kind="doc", batch_size=batch_size, device=device).cpu())
        if log:
            done = min(i + step, len(docs))
            rate = (time.time() - t0) / done
            log(f"encoding the corpus: {done}/{len(docs)} documents, {time.time() - t0:.0f} s, "
                f"about {rate * (len(docs) - done):.0f} s left")
    emb = torch.cat(parts) if parts else torch.zeros(0, bi.config.hidden_size)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.safetensors")
        save_file({"embeddings": emb.contiguous()}, str(tmp))
        os.replace(tmp, path)
    return emb
