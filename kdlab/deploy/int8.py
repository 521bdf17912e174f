"""int8 dynamic quantization of the linear layers for CPU inference, stored in safetensors (no pickle).

Library: PyTorch's own eager dynamic quantization, ``torch.ao.quantization.quantize_dynamic`` with per-channel
int8 weights, which runs on the fbgemm / x86 int8 kernels. It still ships with torch 2.13 (with a deprecation
notice pointing to torchao). torchao 0.18's replacement (``quantize_`` with ``Int8DynamicActivationInt8WeightConfig``)
was measured here and rejected for now: on this CPU, without ``torch.compile``, a 384x1536 MLP at batch 32 x 64 tokens
took 2.3 s against 87 ms in fp32 and 58 ms with ``quantize_dynamic``; it also serialises through pickle. When
torch drops ``torch.ao.quantization``, ``quantize()`` is the one place to change.

On disk: ``model.int8.safetensors`` holds every linear weight as int8 with its per-output-channel scales and zero
points and everything else (embeddings, LayerNorm, biases) in fp32; ``load()`` rebuilds the fp32 architecture from
``config.json``, quantizes it and puts the stored int8 weights back, bit for bit.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

WEIGHTS = "model.int8.safetensors"


def _engine():
    eng = torch.backends.quantized.supported_engines
    for e in ("x86", "fbgemm", "qnnpack"):
        if e in eng:
            if torch.backends.quantized.engine != e:
                torch.backends.quantized.engine = e
            return e
    return torch.backends.quantized.engine


def quantize(model):
    """Dynamic int8 quantization of every ``nn.Linear`` (per-channel weights, activations quantized per batch at
    run time). Returns a new module; ``model`` is unchanged."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    _engine()
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.ao.quantization's deprecation notice (see the module docstring)
        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=False)


def _is_qlinear(m) -> bool:
    return type(m).__name__ == "Linear" and type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")


def state(qmodel) -> dict[str, torch.Tensor]:
    """Flat tensors of a quantized model: ``<linear>.qweight`` (int8), ``.qscale``, ``.qzero``, ``.bias`` for each
    quantized linear, the model's own state for everything else."""
    out: dict[str, torch.Tensor] = {}
    qnames = set()
    for name, m in qmodel.named_modules():
        if _is_qlinear(m):
            qnames.add(name)
            w = m.weight()
            out[f"{name}.qweight"] = w.int_repr().contiguous()
            if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                out[f"{name}.qscale"] = w.q_per_channel_scales().float().contiguous()
                out[f"{name}.qzero"] = w.q_per_channel_zero_points().to(torch.int64).contiguous()
            else:
                out[f"{name}.qscale"] = torch.tensor([w.q_scale()], dtype=torch.float32)
                out[f"{name}.qzero"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
            b = m.bias()
            if b is not None:
                out[f"{name}.bias"] = b.detach().float().contiguous()
    for k, v in qmodel.state_dict().items():
        if not isinstance(v, torch.Tensor) or v.is_quantized or any(k.startswith(q + ".") for q in qnames):
            continue
        out[k] = v.detach().contiguous()
    return out


def save(qmodel, folder: Path):
    from safetensors.torch import save_file
    tensors = state(qmodel)
    # tied / shared tensors are saved once each (safetensors refuses shared storage)
    save_file({k: v.clone() for k, v in tensors.items()}, str(Path(folder) / WEIGHTS), metadata={"format": "pt"})
    qmodel.config.save_pretrained(folder)


def load(folder: Path, model_class=None):
    """The quantized model saved by ``save`` (config.json + model.int8.safetensors); ``model_class``: the transformers
    Auto class it was built with (default ``AutoModelForSequenceClassification``; ``AutoModel`` for a bi-encoder's
    encoder)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from ..models import bilstm, static  # noqa: F401  (register the BiLSTM and static students with the Auto classes)
    folder = Path(folder)
    config = AutoConfig.from_pretrained(str(folder))
    model = (model_class or AutoModelForSequenceClassification).from_config(config)
    from .prune import restore
    restore(model)   # a model whose heads / FFN neurons were pruned: its recorded structure
    tensors = load_file(str(folder / WEIGHTS))
    qmodel = quantize(model)
    for name, m in qmodel.named_modules():
        if _is_qlinear(m):
            q, s, z = tensors.pop(f"{name}.qweight"), tensors.pop(f"{name}.qscale"), tensors.pop(f"{name}.qzero")
            if s.numel() == 1 and q.shape[0] != 1:
                w = torch._make_per_tensor_quantized_tensor(q, float(s), int(z))
            else:
                w = torch._make_per_channel_quantized_tensor(q, s.double(), z, 0)
            m.set_weight_bias(w, tensors.pop(f"{name}.bias", None))
    own = dict(qmodel.named_parameters())
    persistent = set(qmodel.state_dict())
    own.update({k: b for k, b in qmodel.named_buffers() if k in persistent})
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if unexpected or missing:
        raise RuntimeError(f"{folder}: unexpected tensors {unexpected[:5]}, missing {missing[:5]}")
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(tensors[k])
    qmodel.eval()
    return qmodel
