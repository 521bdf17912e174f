"""ONNX export of a BERT-family classifier and inference with onnxruntime.

Export: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter that ships with torch; the dynamo exporter
needs the extra package onnxscript), opset 17, inputs ``input_ids`` and ``attention_mask`` [batch, length] with
both axes dynamic, and ``token_type_ids`` when the model has segment embeddings (a sentence pair's second text),
output ``logits``. Attention runs in eager mode while tracing, so the graph holds plain
MatMul/Softmax ops. ``--quantize int8`` together with ``--onnx`` quantizes the exported graph with onnxruntime's
own dynamic quantization (``onnxruntime.quantization.quantize_dynamic``, int8 per-channel weights): a torch int8
module cannot be exported to ONNX.

Tolerance: the fp32 graph must match PyTorch within ``ATOL`` (max absolute difference of the logits) on the
check batch; ``export`` measures it and refuses an export that does not.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..errors import KdlabError

GRAPH = "model.onnx"
ATOL = 1e-4
OPSET = 17


def check_exportable(model):
    mt = getattr(model.config, "model_type", "")
    if mt == "kdlab-static":   # a token table, a mean and a linear head (kdlab.models.static): Gather, ReduceSum, Gemm
        return
    if mt == "kdlab-bilstm":
        raise KdlabError("ONNX export of the BiLSTM/CNN student is not supported (kdlab exports BERT-family "
                         "transformers only): drop --onnx, or use --prune-vocab / --quantize int8 on it")
    if not hasattr(model, "base_model") or not hasattr(model.base_model, "encoder"):
        raise KdlabError(f"ONNX export supports BERT-family classifiers; {type(model).__name__} is not one: "
                         "drop --onnx")


def _segments(model) -> bool:
    emb = getattr(getattr(model, "base_model", None), "embeddings", None)
    return getattr(emb, "token_type_embeddings", None) is not None


def export(model, tokenizer, folder: Path, texts: list[str], *, max_len: int = 64, texts_b=None) -> float:
    """Write ``folder/model.onnx`` and return the max |logits difference| to PyTorch on ``texts`` (pairs with
    ``texts_b``)."""
    from ..models.core import set_attention
    check_exportable(model)
    folder = Path(folder)
    model.eval()
    eager_before = getattr(model.config, "_attn_implementation", "sdpa") == "eager"
    set_attention(model, True)
    sample = list(texts)[:8] or ["a short example", "another one"]
    enc = tokenizer(sample, padding=True, truncation=True, max_length=max_len, return_tensors="pt",
                    return_token_type_ids=False)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if _segments(model) else [])
    args = tuple(enc[n] if n in enc else torch.zeros_like(enc["input_ids"]) for n in names)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, args, str(folder / GRAPH), dynamo=False,
                              input_names=names, output_names=["logits"],
                              dynamic_axes={**{n: {0: "batch", 1: "length"} for n in names}, "logits": {0: "batch"}},
                              opset_version=OPSET, do_constant_folding=True)
    finally:
        set_attention(model, eager_before)
    diff = max_diff(model, OnnxModel(folder), tokenizer, texts, max_len=max_len, texts_b=texts_b)
    if not diff <= ATOL:
        raise KdlabError(f"the ONNX graph differs from PyTorch by {diff:.2e} (> {ATOL}): export refused")
    return diff


def quantize_graph(folder: Path):
    """int8 dynamic quantization of the exported graph's MatMul/Gemm weights with onnxruntime (in place)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    folder = Path(folder)
    src = folder / GRAPH
    tmp = folder / "model.fp32.onnx"
    src.rename(tmp)
    import logging
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)   # onnxruntime logs a pre-processing hint through the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(tmp), str(src), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    tmp.unlink()


@torch.no_grad()
def max_diff(model, onnx_model, tokenizer, texts, *, max_len: int = 64, batch: int = 16, texts_b=None) -> float:
    """Max |logits(PyTorch) - logits(ONNX)| over ``texts`` (pairs with ``texts_b``; at most 64, padded batches of
    ``batch``)."""
    from ..data.batching import encode_texts, model_inputs
    texts = list(texts)[:64] or ["a short example"]
    worst = 0.0
    for i in range(0, len(texts), batch):
        enc = model_inputs(encode_texts(tokenizer, texts[i:i + batch], None if texts_b is None else
                                        list(texts_b)[i:i + batch], max_len=max_len))
        a = model(**enc).logits.float()
        b = onnx_model(**enc).logits
        worst = max(worst, float((a - b).abs().max()))
    return worst


class OnnxModel:
    """An onnxruntime session that is called like a transformers classifier: ``m(input_ids=, attention_mask=)
    .logits`` (a torch tensor). ``threads`` sets onnxruntime's intra-op threads (default: torch's)."""

    def __init__(self, folder: Path, threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoConfig
        self.folder = Path(folder)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.folder / GRAPH), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        try:
            self.config = AutoConfig.from_pretrained(str(self.folder))
        except (OSError, ValueError):
            self.config = SimpleNamespace(num_hidden_layers=0, hidden_size=0)

    def __call__(self, input_ids=None, attention_mask=None, token_type_ids=None, **_):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.inputs:   # a graph with segment embeddings: zeros for a single text
            feed["token_type_ids"] = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        out = self.session.run(["logits"], {k: np.asarray(v.cpu(), dtype=np.int64) for k, v in feed.items()})[0]
        return SimpleNamespace(logits=torch.from_numpy(out))

    def eval(self):
        return self
