"""ONNX export of a BERT-family classifier and inference with onnxruntime.

Export: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript exporter that ships with torch; the dynamo exporter
needs the extra package onnxscript), opset 17, inputs ``input_ids`` and ``attention_mask`` [batch, length] with
both axes dynamic, output ``logits``. Attention runs in eager mode while tracing, so the graph holds plain
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
    if mt == "kdlab-bilstm":
        raise KdlabError("ONNX export of the BiLSTM/CNN student is not supported (kdlab exports BERT-family "
                         "transformers only): drop --onnx, or use --prune-vocab / --quantize int8 on it")
    if not hasattr(model, "base_model") or not hasattr(model.base_model, "encoder"):
        raise KdlabError(f"ONNX export supports BERT-family classifiers; {type(model).__name__} is not one: "
                         "drop --onnx")


def export(model, tokenizer, folder: Path, texts: list[str], *, max_len: int = 64) -> float:
    """Write ``folder/model.onnx`` and return the max |logits difference| to PyTorch on ``texts``."""
    from ..models import set_attention
    check_exportable(model)
    folder = Path(folder)
    model.eval()
    eager_before = getattr(model.config, "_attn_implementation", "sdpa") == "eager"
    set_attention(model, True)
    sample = list(texts)[:8] or ["a short example", "another one"]
    enc = tokenizer(sample, padding=True, truncation=True, max_length=max_len, return_tensors="pt",
                    return_token_type_ids=False)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (enc["input_ids"], enc["attention_mask"]), str(folder / GRAPH), dynamo=False,
                              input_names=["input_ids", "attention_mask"], output_names=["logits"],
                              dynamic_axes={"input_ids": {0: "batch", 1: "length"},
                                            "attention_mask": {0: "batch", 1: "length"}, "logits": {0: "batch"}},
                              opset_version=OPSET, do_constant_folding=True)
    finally:
        set_attention(model, eager_before)
    diff = max_diff(model, OnnxModel(folder), tokenizer, texts, max_len=max_len)
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
def max_diff(model, onnx_model, tokenizer, texts, *, max_len: int = 64, batch: int = 16) -> float:
    """Max |logits(PyTorch) - logits(ONNX)| over ``texts`` (at most 64, padded batches of ``batch``)."""
    texts = list(texts)[:64] or ["a short example"]
    worst = 0.0
    for i in range(0, len(texts), batch):
        enc = tokenizer(texts[i:i + batch], padding=True, truncation=True, max_length=max_len, return_tensors="pt",
                        return_token_type_ids=False)
        a = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float()
        b = onnx_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
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
        try:
            self.config = AutoConfig.from_pretrained(str(self.folder))
        except (OSError, ValueError):
            self.config = SimpleNamespace(num_hidden_layers=0, hidden_size=0)

    def __call__(self, input_ids=None, attention_mask=None, **_):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.session.run(["logits"], {"input_ids": np.asarray(input_ids.cpu(), dtype=np.int64),
                                            "attention_mask": np.asarray(attention_mask.cpu(), dtype=np.int64)})[0]
        return SimpleNamespace(logits=torch.from_numpy(out))

    def eval(self):
        return self
