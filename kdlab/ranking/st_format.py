"""The files that make a saved bi-encoder folder a sentence-transformers model as well.

``sentence_transformers.SentenceTransformer(folder)`` reads ``modules.json`` (the module chain: the transformer
at the folder's root, then pooling, then L2 normalisation for a cosine model), ``sentence_bert_config.json``
(the length limit) and ``1_Pooling/config.json``. The classic module names (``sentence_transformers.models.*``)
are written, which every release from 2.x to 6.x loads. kdlab's own ``kdlab.json`` stays beside them.

sentence-transformers truncates every text at ``max_seq_length`` (here the bi-encoder's document length); kdlab
cuts queries at ``query_len``, so the two agree on any query shorter than that (SciFact's: 12 words on average).
"""
from __future__ import annotations

import json
from pathlib import Path


def write(folder, *, pooling: str, score: str, hidden: int, max_len: int) -> Path:
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if score == "cosine":
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(parents=True, exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": int(max_len),
                                                                  "do_lower_case": False}, indent=2))
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": int(hidden), "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "similarity_fn_name": "cosine" if score == "cosine" else "dot", "prompts": {}, "default_prompt_name": None},
        indent=2))
    return folder
