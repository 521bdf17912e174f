"""``kdlab compress`` and ``kdlab eval --model`` for a ranking bi-encoder.

The bi-encoder's transformer is what is compressed; its pooling (mean or [CLS]) and normalisation stay outside the
artifact, as in sentence-transformers' own ONNX backend:

* ``--onnx``: the encoder exported with ``torch.onnx.export`` (``kdlab.deploy.onnx``'s exporter settings: opset 17,
  dynamic batch and length), inputs ``input_ids``, ``attention_mask`` (and ``token_type_ids`` when the model has
  segment embeddings), output ``last_hidden_state``; refused unless the pooled embeddings match PyTorch within
  ``kdlab.deploy.onnx.ATOL`` on the check texts. With ``--quantize int8`` the graph is quantized by onnxruntime.
* ``--quantize int8`` alone: torch's dynamic int8 of every linear layer (``kdlab.deploy.int8``), stored in
  safetensors.

Each artifact's ``kdlab.json`` (its lineage) keeps the bi-encoder's pooling, score and lengths under ``bi``, and
the embeddings' agreement with the fp32 model on the check texts (max |difference| and the least cosine).
``load`` rebuilds a ``BiEncoder`` of any of these formats, so ``eval_models`` ranks the corpus with each model of a
run: nDCG@10, MRR@10, Recall@100, MB and CPU ms per query side by side (kept as the run's ``ranking_deploy_eval``
for the Deploy page).
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..errors import KdlabError
from .models import BiEncoder

BI_KEYS = ("pooling", "score", "query_len", "doc_len")


class OnnxEncoder:
    """An onnxruntime session called like a transformers base model: ``m(input_ids=, attention_mask=)
    .last_hidden_state`` (a torch tensor)."""

    def __init__(self, folder, threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoConfig
        from ..deploy.onnx import GRAPH
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(Path(folder) / GRAPH), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.config = AutoConfig.from_pretrained(str(folder))

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, **_):
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:
            feed["token_type_ids"] = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        out = self.session.run(["last_hidden_state"], {k: np.asarray(v.cpu(), dtype=np.int64) for k, v in feed.items()})
        return SimpleNamespace(last_hidden_state=torch.from_numpy(out[0]))

    def eval(self):
        return self


def _segments(enc) -> bool:
    return getattr(getattr(enc, "embeddings", None), "token_type_embeddings", None) is not None


def agreement(ref: BiEncoder, other: BiEncoder, texts) -> dict:
    """Max |embedding difference| and the least cosine between two bi-encoders' embeddings of ``texts``."""
    a, b = ref.encode(list(texts), kind="doc").float(), other.encode(list(texts), kind="doc").float()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return {"max_abs_diff_vs_fp32": float((a - b).abs().max()), "min_cosine_vs_fp32": float(cos.min())}


def export_onnx(bi: BiEncoder, folder: Path, texts) -> float:
    """Write the encoder's graph to ``folder`` and return the max |pooled embedding difference| to PyTorch."""
    from ..deploy import onnx as onnx_mod
    from ..models.core import set_attention
    enc = bi.encoder
    enc.eval()
    eager_before = getattr(enc.config, "_attn_implementation", "sdpa") == "eager"
    set_attention(enc, True)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if _segments(enc) else [])
    sample = bi.tokenizer(list(texts)[:8], padding=True, truncation=True, max_length=bi.doc_len, return_tensors="pt",
                          return_token_type_ids=False)
    args = tuple(sample[n] if n in sample else torch.zeros_like(sample["input_ids"]) for n in names)

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = enc

        def forward(self, *xs):
            return self.enc(**dict(zip(names, xs))).last_hidden_state

    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(Graph().eval(), args, str(Path(folder) / onnx_mod.GRAPH), dynamo=False, input_names=names,
                              output_names=["last_hidden_state"],
                              dynamic_axes={**{n: {0: "batch", 1: "length"} for n in names},
                                            "last_hidden_state": {0: "batch", 1: "length"}},
                              opset_version=onnx_mod.OPSET, do_constant_folding=True)
    finally:
        set_attention(enc, eager_before)
        enc.eval()   # (torch.onnx.export puts the module back in the mode it found it in)
    enc.config.save_pretrained(folder)
    diff = agreement(bi, with_encoder(bi, OnnxEncoder(folder)), texts)["max_abs_diff_vs_fp32"]
    if not diff <= onnx_mod.ATOL:
        raise KdlabError(f"the ONNX graph's embeddings differ from PyTorch by {diff:.2e} (> {onnx_mod.ATOL}): "
                         "export refused")
    return diff


def with_encoder(bi: BiEncoder, enc) -> BiEncoder:
    return BiEncoder(enc, bi.tokenizer, pooling=bi.pooling, score=bi.score_fn, query_len=bi.query_len,
                     doc_len=bi.doc_len)


def compress(src: Path, tmp: Path, *, quantize: str | None, onnx: bool, texts, log=print) -> tuple[list, str, int, dict]:
    """Compress the bi-encoder saved in ``src`` into ``tmp``: returns (steps, format, params, bi settings)."""
    from ..deploy import int8 as int8_mod
    from ..deploy import onnx as onnx_mod
    from ..models.core import count_params
    bi = BiEncoder.load(src)
    bi.eval()
    params = count_params(bi.encoder)
    steps = []
    if onnx:
        diff = export_onnx(bi, tmp, texts)
        step = {"step": "onnx", "exporter": "torch.onnx.export(dynamo=False)", "opset": onnx_mod.OPSET,
                "output": "last_hidden_state (pooling and normalisation applied outside the graph)",
                "max_abs_diff_vs_pytorch": diff, "atol": onnx_mod.ATOL}
        if quantize:
            onnx_mod.quantize_graph(tmp)
            steps.append({"step": "int8", "library": "onnxruntime.quantization.quantize_dynamic",
                          "weights": "int8 per channel", **agreement(bi, with_encoder(bi, OnnxEncoder(tmp)), texts)})
        steps.append(step)
        fmt = "onnx"
    else:
        qenc = int8_mod.quantize(bi.encoder)
        int8_mod.save(qenc, tmp)
        steps.append({"step": "int8", "library": "torch.ao.quantization.quantize_dynamic", "engine": int8_mod._engine(),
                      "weights": "int8 per channel (nn.Linear)", "activations": "int8, dynamic per batch",
                      **agreement(bi, with_encoder(bi, qenc), texts)})
        fmt = "int8"
    bi.tokenizer.save_pretrained(tmp)
    log(f"compress: bi-encoder -> {fmt}" + (" (int8)" if quantize and onnx else ""))
    return steps, fmt, params, {k: getattr(bi, "score_fn" if k == "score" else k) for k in BI_KEYS}


def load(folder) -> BiEncoder:
    """A bi-encoder from its saved folder (``BiEncoder.save``) or a compressed artifact of it (``compress``)."""
    from ..models.core import load_tokenizer
    folder = Path(folder)
    info = json.loads((folder / "kdlab.json").read_text())
    if info.get("model") == "bi-encoder":
        return BiEncoder.load(folder)
    bi = info.get("bi")
    if not bi:
        raise KdlabError(f"{folder} is not a bi-encoder or a compressed bi-encoder (its kdlab.json has no 'bi')")
    if info["format"] == "onnx":
        enc = OnnxEncoder(folder)
    elif info["format"] == "int8":
        from transformers import AutoModel
        from ..deploy import int8 as int8_mod
        enc = int8_mod.load(folder, model_class=AutoModel)
    else:
        raise KdlabError(f"{folder}: unknown bi-encoder artifact format '{info['format']}'")
    return BiEncoder(enc, load_tokenizer(str(folder)), **bi)


def eval_models(store, run: dict, data_folder, names, *, split: str = "test", threads: int = 1) -> dict:
    """Each named model of a ranking run (``student`` = its saved bi-encoder, else a ``kdlab compress`` artifact;
    ``all`` = every one) over ``split``: nDCG@10, MRR@10, Recall@100, MB and CPU ms per query at batch 1."""
    from ..models.core import folder_mb
    from .adaptor import eval_bi
    from .data import load_beir
    from .models import query_latency
    folders = {"student": store.artifact(run["id"], "model_dir"), **(store.artifact(run["id"], "models", {}) or {})}
    names = list(folders) if "all" in names else list(names)
    unknown = [n for n in names if n not in folders or not folders[n]]
    if unknown:
        raise KdlabError(f"run {run['id']} has no model named {', '.join(map(repr, unknown))}: it has "
                         f"{', '.join(k for k, v in folders.items() if v)} (add one with kdlab compress)")
    data = load_beir(data_folder, splits=(split,))
    torch.set_num_threads(int(threads))
    rows = {}
    for n in names:
        bi = load(folders[n])
        ev, doc_emb = eval_bi(bi, data, split=split)
        qs = [data.queries[q] for q in data.split_queries(split)[:16]]
        rows[n] = {**ev, "mb": round(folder_mb(folders[n]), 2),
                   "latency_ms": query_latency(bi=bi, doc_emb=doc_emb.float(), queries=qs, rounds=1)}
    res = {"run": run["id"], "data": str(data_folder), "split": split, "task": "ranking", "threads": int(threads),
           "models": rows, "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
    if store.writable:   # kept with the run, for the Deploy page
        store.set_artifact(run["id"], "ranking_deploy_eval", res)
    return res


def format_table(res: dict) -> str:
    head = f"{'model':24s} {'nDCG@10':>8s} {'MRR@10':>7s} {'R@100':>6s} {'MB':>7s} {'ms/query':>9s}"
    lines = [head, "-" * len(head)]
    for n, r in res["models"].items():
        lines.append(f"{n:24s} {r['ndcg@10']:8.3f} {r['mrr@10']:7.3f} {r['recall@100']:6.3f} {r['mb']:7.1f} "
                     f"{r['latency_ms']:9.1f}")
    lines.append(f"({res['split']} split of {res['data']}; CPU ms per query at batch 1 on {res['threads']} thread(s): "
                 "encode the query, dot product with the corpus matrix, top 100)")
    return "\n".join(lines)
