"""``kdlab compress``: a stored run's model -> a compressed model stored next to the run, with its lineage.

Steps, each optional, applied in this order: vocabulary pruning (``kdlab.deploy.vocab``), then int8
(``kdlab.deploy.int8``: torch dynamic quantization; with ``onnx`` the exported graph is quantized by
onnxruntime instead), then ONNX export (``kdlab.deploy.onnx``). The result is a folder
``<run folder>/models/<name>/`` with the tokenizer, ``config.json``, the weights in the artifact's format and
``kdlab.json`` (format, source run and model, every step with its settings and its measured check). The run
gets (or extends) the artifact ``models`` = {name: folder}; nothing of the run is changed before every check
has passed, and a failure removes the partial folder.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from ..errors import KdlabError
from ..models.core import folder_mb  # noqa: F401  (re-exported: the size of an artifact's folder)
from ..runs.run_record import StoredRun

SCHEMES = ("int8",)
FORMATS = ("hf", "int8", "onnx")
RESERVED = ("teacher", "student", "model")
LINEAGE = "kdlab.json"


def run_model_dir(store, run: dict) -> Path:
    """The saved model of a run, or a KdlabError naming why there is none."""
    folder = store.artifact(run["id"], "model_dir")
    if folder and not Path(folder).exists():
        raise KdlabError(f"the model folder of run {run['id']} ({folder}) is gone: it was deleted or moved out of "
                         f"the run store {store.root}")
    if not folder or not (Path(folder) / "config.json").exists():
        raise KdlabError(f"run {run['id']} has no saved model (status {run['status']}): compress or evaluate a "
                         "finished run (`python -m kdlab runs` lists them)")
    return Path(folder)


def run_data(run: dict):
    """The run's own data (train, dev and out-of-domain splits) and its max length, from its stored config."""
    from ..data.loaders import load_data
    from ..engine.pipeline import load_bundle
    rec = StoredRun(run)
    if rec.kind == "teacher":   # a teacher run stores the data spec and its fine-tuning settings only
        bundle = load_data(None if rec.data in (None, "embedded") else rec.data, seed=rec.seed or 0,
                           ood=rec.stored.get("ood") or None, ood_map=rec.stored.get("ood_map"))
        return bundle, rec.max_len
    cfg = rec.config()
    return load_bundle(cfg), int(cfg.train.max_len)


def models_of(store, run_id: str) -> dict:
    return dict(store.artifact(run_id, "models", {}) or {})


def default_name(prune: bool, quantize: str | None, onnx: bool, heads: int = 0, ffn: int = 0) -> str:
    parts = (["pruned"] if prune else []) + ([f"h{heads}"] if heads else []) + ([f"f{ffn}"] if ffn else [])
    parts += ([quantize] if quantize else []) + (["onnx"] if onnx else [])
    return "-".join(parts)


def check_request(store, run_id: str, *, prune_vocab=None, quantize=None, onnx=False, name=None, prune_heads=0,
                  prune_ffn=0):
    """Every check that needs no model: returns (run, source folder, name)."""
    run = store.run(run_id)
    if quantize is not None and quantize not in SCHEMES:
        raise KdlabError(f"unknown quantization scheme '{quantize}': choose one of {', '.join(SCHEMES)}")
    if not (prune_vocab or quantize or onnx or prune_heads or prune_ffn):
        raise KdlabError("nothing to do: give --prune-vocab CORPUS, --prune-heads N, --prune-ffn M, --quantize int8 "
                         "and/or --onnx")
    if (prune_heads or 0) < 0 or (prune_ffn or 0) < 0:
        raise KdlabError("--prune-heads and --prune-ffn take a count >= 0 (removed from each layer)")
    src = run_model_dir(store, run)
    from ..ranking.models import model_kind
    if model_kind(src) == "bi-encoder" and (prune_vocab or prune_heads or prune_ffn):
        raise KdlabError(f"run {run['id']} is a ranking bi-encoder: kdlab compress gives it --quantize int8 and/or "
                         "--onnx; vocabulary and structured pruning are for classifiers (drop --prune-*)")
    name = name or default_name(bool(prune_vocab), quantize, onnx, prune_heads or 0, prune_ffn or 0)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name) or name in RESERVED:
        raise KdlabError(f"'{name}' is not a usable model name: use letters, digits, '.', '_' or '-' "
                         f"(not {', '.join(RESERVED)})")
    if name in models_of(store, run["id"]):
        raise KdlabError(f"run {run['id']} already has a model named '{name}': choose another --name")
    return run, src, name


def compress_run(store, run_id: str, **kw) -> dict:
    """``_compress_run`` under the run's writers' lock (a second compress of the run fails at once, naming this
    process). The model is written under a unique temporary name, its name claimed in the run's ``models`` list in
    one transaction, then the folder moved to its final name."""
    from ..runs import prep_lock
    store.check_writable("compress")
    run_id = store.run(run_id)["id"]
    with prep_lock.run_held(store, run_id):
        return _compress_run(store, run_id, **kw)


def _compress_run(store, run_id: str, *, prune_vocab=None, quantize: str | None = None, onnx: bool = False,
                 name: str | None = None, text_col: str | None = None, prune_heads: int = 0, prune_ffn: int = 0,
                 recover_steps: int = 0, prune_sample: int = 256, log=print) -> dict:
    """Compress a stored run's model; returns the lineage record (also in ``<folder>/kdlab.json``).

    ``prune_vocab``: ``True`` (the run's training data only) or an extra corpus file (the training data plus its
    texts). ``prune_heads`` / ``prune_ffn``: attention heads / FFN neurons removed from each layer
    (``kdlab.deploy.prune``, importance on ``prune_sample`` training examples), then ``recover_steps`` steps of
    logit KD from the unpruned model."""
    from ..models.core import count_params, load_saved, quiet_hf
    from . import int8 as int8_mod
    from . import onnx as onnx_mod
    from . import vocab
    run, src, name = check_request(store, run_id, prune_vocab=prune_vocab, quantize=quantize, onnx=onnx, name=name,
                                   prune_heads=prune_heads, prune_ffn=prune_ffn)
    quiet_hf()
    from ..ranking.models import model_kind
    if model_kind(src) == "bi-encoder":   # a ranking student: its encoder compressed (kdlab.ranking.compress)
        return _compress_bi(store, run, src, name, quantize=quantize, onnx=onnx, log=log)
    extra = None
    if prune_vocab and prune_vocab is not True:
        extra = vocab.read_corpus(prune_vocab, text_col or StoredRun(run).config().text_col or "sentence")
    model, tok = load_saved(src)
    model.eval()
    if onnx:
        onnx_mod.check_exportable(model)
    if quantize and not onnx and getattr(model.config, "model_type", "") == "kdlab-static":
        raise KdlabError("int8 quantizes linear layers; the static student is a token table and one small linear "
                         "head, so int8 leaves its size as it is and makes it slower: use --onnx (or --prune-vocab)")
    if prune_vocab:
        vocab.check_prunable(tok)
    if prune_heads or prune_ffn:
        from . import prune as structure
        structure.check(model, prune_heads, prune_ffn)
    bundle, max_len = run_data(run)
    check_texts = list(bundle.dev.texts)[:64]
    check_b = None if bundle.dev.texts_b is None else list(bundle.dev.texts_b)[:64]   # a pair task's second texts

    def build(tmp):
        nonlocal model, tok
        steps: list[dict] = []
        if prune_vocab:
            texts = list(bundle.train.texts) + list(bundle.train.texts_b or []) + (extra or [])   # both texts of a pair
            before = len(tok)
            ref, ref_tok = model, tok
            model, _ = load_saved(src)
            model.eval()
            model, tok, keep = vocab.prune(model, tok, texts)
            checked = vocab.check_same_ids(ref_tok, tok, keep, texts)
            diff = _logit_diff(ref, ref_tok, model, tok, [t for t in texts[:256]], keep, max_len)
            if diff != 0.0:
                raise KdlabError(f"the pruned model's logits differ by {diff:.2e} on in-vocabulary text: "
                                 "pruning refused")
            del ref
            steps.append({"step": "prune-vocab", "corpus": None if extra is None else str(prune_vocab),
                          "texts": len(texts), "vocab_before": before, "vocab_after": len(keep),
                          "same_ids_checked_texts": checked, "max_logit_diff_in_vocab": diff})
            log(f"compress: vocabulary {before} -> {len(keep)} tokens")
        if prune_heads or prune_ffn:
            steps.append(_prune_structure(model, tok, bundle, max_len, prune_heads, prune_ffn, recover_steps,
                                          prune_sample, log))
        params = count_params(model)
        if onnx:
            diff = onnx_mod.export(model, tok, tmp, check_texts, max_len=max_len, texts_b=check_b)
            step = {"step": "onnx", "exporter": "torch.onnx.export(dynamo=False)", "opset": onnx_mod.OPSET,
                    "max_abs_diff_vs_pytorch": diff, "atol": onnx_mod.ATOL}
            if quantize:
                onnx_mod.quantize_graph(tmp)
                qdiff = onnx_mod.max_diff(model, onnx_mod.OnnxModel(tmp), tok, check_texts, max_len=max_len,
                                          texts_b=check_b)
                steps.append({"step": "int8", "library": "onnxruntime.quantization.quantize_dynamic",
                              "weights": "int8 per channel", "max_abs_diff_vs_fp32": qdiff})
            steps.append(step)
            fmt = "onnx"
            model.config.save_pretrained(tmp)
        elif quantize:
            qmodel = int8_mod.quantize(model)
            int8_mod.save(qmodel, tmp)
            steps.append({"step": "int8", "library": "torch.ao.quantization.quantize_dynamic",
                          "engine": int8_mod._engine(), "weights": "int8 per channel (nn.Linear)",
                          "activations": "int8, dynamic per batch"})
            fmt = "int8"
        else:
            model.save_pretrained(tmp, safe_serialization=True)
            fmt = "hf"
        tok.save_pretrained(tmp)
        return steps, fmt, params, {"max_len": max_len}

    return _publish(store, run, name, src, build)


def _compress_bi(store, run: dict, src: Path, name: str, *, quantize, onnx: bool, log=print) -> dict:
    """A ranking bi-encoder's artifact (``kdlab.ranking.compress``), checked on queries and documents of its data."""
    from ..ranking import compress as bi_compress
    from ..ranking.data import load_beir
    data = load_beir(StoredRun(run).data)
    texts = [data.queries[q] for q in list(data.queries)[:32]] + list(data.docs[:32])

    def build(tmp):
        steps, fmt, params, bi = bi_compress.compress(src, tmp, quantize=quantize, onnx=onnx, texts=texts, log=log)
        return steps, fmt, params, {"bi": bi}
    return _publish(store, run, name, src, build)


def _publish(store, run: dict, name: str, src: Path, build) -> dict:
    """``build(tmp) -> (steps, format, params, extra lineage)`` writes an artifact into a temporary folder; its
    lineage is added, the name claimed in the run's ``models`` in one transaction, then the folder moved to its final
    name (a failure removes the partial folder)."""
    final = store.folder(run["id"]) / "models" / name
    tmp = final.with_name(f".{name}.partial-{time.time_ns()}")
    tmp.mkdir(parents=True)
    try:
        steps, fmt, params, extra = build(tmp)
        info = {"format": fmt, "name": name, "source_run": run["id"], "source_kind": run["kind"],
                "source_model_dir": str(src), "params": int(params), **extra, "steps": steps,
                "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        (tmp / LINEAGE).write_text(json.dumps(info, indent=2))
        if final.exists():
            stale = final.with_name(f".{name}.stale-{time.time_ns()}")
            final.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        if not store.add_entry(run["id"], "models", name, str(final)):
            raise KdlabError(f"run {run['id']} already has a model named '{name}': choose another --name")
        try:
            os.rename(tmp, final)
        except OSError:
            _unclaim(store, run["id"], name)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info["folder"] = str(final)
    return info


def _unclaim(store, run_id: str, name: str):
    models = models_of(store, run_id)
    models.pop(name, None)
    store.set_artifact(run_id, "models", models)


def _prune_structure(model, tok, bundle, max_len, heads, ffn, recover_steps, sample, log) -> dict:
    """Heads / FFN neurons pruned in place on a sample of the training data (``kdlab.deploy.prune``)."""
    import copy
    import random
    from . import prune as structure
    tr = bundle.train
    idx = sorted(random.Random(0).sample(range(len(tr.texts)), min(int(sample), len(tr.texts))))
    data = {"texts": [tr.texts[i] for i in idx], "labels": [tr.labels[i] for i in idx],
            "texts_b": None if tr.texts_b is None else [tr.texts_b[i] for i in idx]}
    teacher = copy.deepcopy(model).eval() if recover_steps else None
    step = structure.prune(model, tok, data, heads=heads, ffn=ffn, max_len=max_len, recover_steps=recover_steps,
                           teacher=teacher, log=log)
    model.eval()
    return step


def _logit_diff(ref, ref_tok, model, tok, texts, keep, max_len) -> float:
    """Max |logits| difference between the model before and after pruning on the in-vocabulary texts."""
    import torch
    kept = set(keep)
    texts = [t for t in texts if set(ref_tok(t)["input_ids"]) <= kept][:64]
    worst = 0.0
    with torch.no_grad():
        for i in range(0, len(texts), 16):
            a = ref_tok(texts[i:i + 16], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            b = tok(texts[i:i + 16], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            la = ref(input_ids=a["input_ids"], attention_mask=a["attention_mask"]).logits
            lb = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            worst = max(worst, float((la - lb).abs().max()))
    return worst


def load_artifact(folder):
    """(model, tokenizer, lineage) of a compressed model folder (or of any model saved by kdlab)."""
    from ..models.core import load_saved, load_tokenizer
    folder = Path(folder)
    meta = folder / LINEAGE
    info = json.loads(meta.read_text()) if meta.exists() else {}
    fmt = info.get("format", "hf") if "steps" in info else "hf"
    if fmt == "onnx":
        from .onnx import OnnxModel
        return OnnxModel(folder), load_tokenizer(str(folder)), info
    if fmt == "int8":
        from . import int8
        return int8.load(folder), load_tokenizer(str(folder)), info
    model, tok = load_saved(folder)
    return model, tok, info
