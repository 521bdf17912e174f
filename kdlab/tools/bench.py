"""``python -m kdlab bench``: throughput of kdlab's training steps against TextBrewer, in one process.

Measured on the same teacher, student, batches (fixed ``batch`` x ``seq`` tokens) and losses (logit KD +
hidden-state MSE on the uniformly mapped layers, the ``hidden`` method):

* ``plain``: a student step with hard-label CE only (the floor);
* ``kd_live``: kdlab's KD step with the teacher run live (inference mode, hidden states only);
* ``kd_cached``: kdlab's KD step with the teacher's outputs served by the teacher cache (warm);
* ``kd_live_shares``: ``kd_live`` measuring each loss term's gradient share (``kdlab.analysis.grad_share``) at every step;
  ``grad_shares_every_50/kd_live`` is the cost at the loop's default (one measured step in 50);
* ``textbrewer``: the same KD work through ``textbrewer.GeneralDistiller.train_on_batch``;
* ``plain_padded`` / ``kd_live_padded`` / ``kd_cached_padded``: the same kdlab steps with length buckets off
  (every padded position computed, as TextBrewer does), so the figures show what skipping padding is worth
  and how kdlab compares with TextBrewer when both compute the same positions (the ``*_padded`` ratios);
* epochs: ``steps`` batches per epoch; kdlab's first epoch runs live and fills the cache, later epochs
  read it; TextBrewer runs its teacher every epoch. Ratios over 1 and 3 epochs.

Mixed precision (``--precision``; ``auto``: on CUDA bf16 where the GPU computes it, else fp16 with the loop's
gradient scaler; none on CPU) adds ``plain_bf16`` / ``kd_live_bf16`` / ``kd_fill_bf16`` / ``kd_cached_bf16`` (or
``_fp16``), the loop's own autocast steps, and their ratios to the plain step at the same precision. On CUDA
every variant gets a model-FLOPs utilisation (``model_flops``) over the device's peak (``--peak-tflops``, or
the datasheet figure of a known GPU, ``PEAK_TFLOPS``). ``--teacher-config 12x768`` times a random BERT of that
size (built in code, no download) instead of a named teacher; ``--compile`` adds the student compiled with
``torch.compile``.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ..errors import KdlabError


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    d = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
         "python": platform.python_version()}
    try:
        d["load_avg"] = round(os.getloadavg()[0], 1)
    except OSError:
        pass
    if torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
    return d


def _batches(tokenizer, n: int, batch: int, seq: int):
    """``n`` batches of the embedded corpus padded to ``seq`` (as TextBrewer's pipelines pad to max_seq_length),
    and the matching one-split bundle the loop's setup plans its steps from."""
    from ..data.loaders import DataBundle, Split
    from ..data.synth import generate
    texts = [t for rows in generate().values() for t, _ in rows]
    out, used, labels = [], [], []
    for i in range(n):
        chunk = [texts[(i * batch + j) % len(texts)] for j in range(batch)]
        y = [(i + j) % 2 for j in range(batch)]
        enc = tokenizer(chunk, truncation=True, max_length=seq, padding="max_length", return_tensors="pt")
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "labels": torch.tensor(y), "idx": torch.arange(i * batch, (i + 1) * batch)})
        used += chunk
        labels += y
    train = Split("train", used, labels, "in-domain")
    return out, DataBundle("bench", "bench", ["0", "1"], train, Split("dev", used[:batch], labels[:batch], "in-domain"))


def _timeit(fn, batches, warmup: int = 1, sync: bool = False) -> float:
    """Seconds per step over ``batches`` (after ``warmup`` untimed steps)."""
    for b in batches[:warmup]:
        fn(b)
    if sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for b in batches:
        fn(b)
    if sync:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / len(batches)


def forward_flops(model, batch: int, seq: int) -> float:
    """Model FLOPs of one forward pass over ``batch`` x ``seq`` positions (every padded position counted), as in
    PaLM's MFU (Chowdhery et al. 2022, appendix B): 2 x the non-embedding parameters per token (a lookup is no
    multiply) plus the attention scores and their weighted sum, 4 x layers x hidden x seq per token. A training
    step is 3 forwards (the backward costs two)."""
    emb = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    n = sum(p.numel() for p in model.parameters()) - emb
    c = model.config
    return (2.0 * n + 4.0 * c.num_hidden_layers * c.hidden_size * seq) * batch * seq


# Datasheet dense (no sparsity) bf16 tensor-core peaks in TFLOP/s (fp16 for GPUs without bf16), matched as
# substrings of torch.cuda.get_device_name, most specific first (None: not published clearly, give
# --peak-tflops). --peak-tflops overrides.
PEAK_TFLOPS = [("A10G", None), ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
               ("L4", 121.0), ("A10", 125.0), ("V100", 125.0), ("T4", 65.0)]


def peak_tflops_of(name: str) -> float | None:
    return next((v for key, v in PEAK_TFLOPS if key in name), None)


def synthetic_teacher(spec: str, num_labels: int = 2, seed: int = 0):
    """``LxH`` (e.g. ``12x768``): a random BERT classifier with L layers of width H (H/64 heads, 4H
    intermediate, BERT's 30,522-word vocabulary and 512 positions), built in code, with kdlab's tiny tokenizer
    (its ids are a subset of the vocabulary). For speed only: its predictions mean nothing."""
    from transformers import BertConfig, BertForSequenceClassification

    from ..models.core import load_tokenizer, set_attention
    try:
        layers, hidden = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        layers = hidden = 0
    if layers < 1 or hidden < 64 or hidden % 64:
        raise KdlabError(f"--teacher-config takes LAYERSxHIDDEN with a width that is a multiple of 64, e.g. "
                         f"12x768 (got '{spec}')")
    tok = load_tokenizer("tiny")
    cfg = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=hidden // 64, intermediate_size=4 * hidden, max_position_embeddings=512,
                     num_labels=num_labels, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(cfg)
    set_attention(model, False)
    return model, tok


def run_bench(teacher: str = "minilm-l6", student_layers: int = 3, batch: int = 32, seq: int = 64,
              steps: int = 10, epochs: int = 3, device: str = "cpu", compile: bool = False,
              textbrewer: bool = True, rounds: int = 3, peak_tflops: float | None = None,
              length_buckets: str = "auto", teacher_config: str | None = None, precision: str = "auto",
              log=print) -> dict:
    from ..config import TrainConfig
    from ..engine.distill import (autocast_dtype, forward_backward, make_scaler, optimizer_step, pick_device,
                           precision_name, setup)
    from ..models.core import build_student, freeze, load_teacher
    from ..speed.cache import TeacherCache
    if steps < 1 or batch < 1 or seq < 2 or epochs < 1 or rounds < 1:
        raise KdlabError("bench needs --steps, --batch, --epochs, --rounds >= 1 and --seq >= 2")
    dev = pick_device(device)
    torch.manual_seed(0)
    if teacher_config:
        t_model, tok = synthetic_teacher(teacher_config)
        teacher = f"random BERT {teacher_config}"
    else:
        t_model, tok = load_teacher(teacher, 2)
    freeze(t_model).to(dev)
    student = build_student(t_model, layers=student_layers, init="skip").to(dev).train()
    data, bundle = _batches(tok, steps, batch, seq)
    data = [{k: v.to(dev) for k, v in b.items()} for b in data]
    # the loop's own setup (kdlab.engine.distill.setup): the same optimizer, schedule, clipping, buckets; fp32 here,
    # bf16 autocast is its own variant on CUDA. TextBrewer runs in this process and gets kdlab.speed.alloc too.
    cfg = TrainConfig(epochs=epochs, batch_size=batch, max_len=seq, lr=1e-5, warmup=0.0, device=str(dev),
                      precision="fp32", teacher_cache="off", length_buckets=length_buckets, progress=False,
                      eval_each_epoch=False, seed=0)
    kd_live = setup(student, tok, bundle, "hidden", teacher=t_model, cfg=cfg)
    plain = setup(student, tok, bundle, "ce", cfg=cfg)
    method, opt, bk = kd_live.method, kd_live.opt, kd_live.bucketed
    cache = TeacherCache("bench")
    kd_cache = dataclasses.replace(kd_live, cache=cache)   # the same loop, its teacher outputs cached
    real = sum(int(b["attention_mask"].sum()) for b in data) / (steps * batch * seq)
    log(f"bench: teacher {teacher} ({t_model.config.num_hidden_layers} layers), student {student_layers} layers, "
        f"batch {batch}, seq {seq}, {steps} steps/epoch on {dev}")

    def step(loop):   # one optimisation step of kdlab's loop
        def run(b):
            forward_backward(loop, b)
            optimizer_step(loop)
        return run

    def padded(loop):
        return dataclasses.replace(loop, bucketed=False)

    res: dict = {"settings": dict(teacher=teacher, student_layers=student_layers, batch=batch, seq=seq,
                                  steps=steps, epochs=epochs, rounds=rounds, device=str(dev),
                                  length_buckets=f"{length_buckets} ({'on' if bk else 'off'})",
                                  real_tokens=f"{real:.0%}"),
                 "machine": machine()}

    # kd_fill is kdlab's first epoch: teacher live, its outputs stored in the cache (emptied before each round)
    variants = {"plain": step(plain), "kd_live": step(kd_live), "kd_fill": step(kd_cache),
                "kd_cached": step(kd_cache)}
    # the live KD step measuring every term's gradient share at every step (kdlab.analysis.grad_share; the loop's
    # default measures every grad_share_every = 50 steps), its norms written to a throwaway run store
    import tempfile
    from ..runs.store import Store
    share_store = Store(tempfile.mkdtemp(prefix="kdlab-bench-"))
    variants["kd_live_shares"] = step(dataclasses.replace(
        kd_live, cfg=dataclasses.replace(cfg, grad_share_every=1), store=share_store, writes=True,
        run_id=share_store.create_run("student", "hidden", {})))
    if bk:   # the same kdlab steps computing every padded position, to show what the buckets are worth
        variants["plain_padded"] = step(padded(plain))
        variants["kd_live_padded"] = step(padded(kd_live))
        variants["kd_cached_padded"] = step(padded(kd_cache))
    if textbrewer:
        try:
            variants["textbrewer"] = _textbrewer_step(t_model, student, method, opt, dev)
        except Exception as e:  # recorded, not hidden
            res["textbrewer_error"] = f"{type(e).__name__}: {e}"[:300]
            log(f"  textbrewer could not run: {res['textbrewer_error']}")
    if compile:
        try:
            variants["plain_compiled"] = step(dataclasses.replace(padded(plain), student=torch.compile(student)))
        except Exception as e:
            res["compile_error"] = f"{type(e).__name__}: {e}"[:300]
    amp = autocast_dtype(TrainConfig(precision=precision), dev)
    if amp is not None:   # the loop's mixed-precision steps (fp16: each with its own gradient scaler)
        p = precision_name(amp)
        for name, lp in (("plain", plain), ("kd_live", kd_live), ("kd_fill", kd_cache), ("kd_cached", kd_cache)):
            variants[f"{name}_{p}"] = step(dataclasses.replace(lp, amp=amp, scaler=make_scaler(amp, dev)))
    for name, fn in list(variants.items()):   # one untimed step each: allocations, lazy init, compilation
        try:
            fn(data[0])
        except Exception as e:
            if name in ("plain", "kd_live", "kd_fill", "kd_cached"):
                raise
            res[f"{name}_error"] = f"{type(e).__name__}: {e}"[:300]
            log(f"  {name} could not run: {res[f'{name}_error']}")
            variants.pop(name)
    for b in data:   # so that kd_cached finds every batch
        variants["kd_fill"](b)
    fills = [k for k in variants if k.startswith("kd_fill")]   # each empties the cache before its round
    # Interleaved rounds: every variant runs one epoch per round, in an order rotated each round, so that
    # a change of machine load hits all variants alike; the median round is reported.
    per_round: dict = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name in fills:
                cache.clear()
            per_round[name].append(_timeit(variants[name], data, warmup=0, sync=dev.type == "cuda"))
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in per_round.items()))
    t = {k: statistics.median(v) for k, v in per_round.items()}
    res["rounds_seconds_per_step"] = per_round
    for k, v in t.items():
        log(f"  {k:16s} {v * 1000:8.1f} ms/step")
    log(f"  teacher cache: {cache.stats()['mb']} MB")
    # kdlab's epochs: the first fills the cache with the teacher live, the later ones read it
    res["kdlab_epochs_s"] = [t["kd_fill"] * steps] + [t["kd_cached"] * steps] * (epochs - 1)
    if "textbrewer" in t:   # TextBrewer runs its teacher in every epoch
        res["textbrewer_epochs_s"] = [t["textbrewer"] * steps] * epochs
    if amp is not None:
        res["settings"]["precision"] = f"{precision} ({precision_name(amp)} autocast" + \
            (", gradient scaler)" if amp == torch.float16 else ")")
    # model FLOPs per step: the student's training step (3 forwards), plus a teacher forward where it runs live
    s_flops, t_flops = 3 * forward_flops(student, batch, seq), forward_flops(t_model, batch, seq)
    res["model_flops"] = {k: s_flops + (t_flops if k.startswith(("kd_live", "kd_fill", "textbrewer")) else 0.0)
                          for k in t}
    if dev.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(dev)
        source = "--peak-tflops"
        if not peak_tflops:
            peak_tflops, source = peak_tflops_of(res["gpu"]), f"datasheet figure for {res['gpu']}"
        if peak_tflops:
            res["mfu"] = {k: res["model_flops"][k] / t[k] / (peak_tflops * 1e12) for k in t}
            res["mfu_note"] = (f"model FLOPs per second (kdlab.tools.bench.forward_flops: the student's training "
                               f"step, plus the teacher's forward where it runs live; every padded position "
                               f"counted) over a {peak_tflops:g} TFLOP/s dense peak ({source}); fp32 variants "
                               "are measured against the same mixed-precision peak")
        else:
            res["mfu_note"] = f"no model-FLOPs utilisation: give --peak-tflops for {res['gpu']}"
    res["seconds_per_step"] = t
    res["steps_per_s"] = {k: 1.0 / v for k, v in t.items()}
    res["examples_per_s"] = {k: batch / v for k, v in t.items()}
    # ratios are paired: computed within each round (same machine state), then the median over rounds
    pr = per_round
    by_round = {"kd_cached/plain": [c / p for c, p in zip(pr["kd_cached"], pr["plain"])],
                "kd_live/plain": [lv / p for lv, p in zip(pr["kd_live"], pr["plain"])],
                "kd_live_shares/kd_live": [s / lv for s, lv in zip(pr["kd_live_shares"], pr["kd_live"])]}
    # with the default every 50 steps, one step in 50 pays the measured step's extra cost
    every = TrainConfig().grad_share_every
    by_round[f"grad_shares_every_{every}/kd_live"] = [1 + (x - 1) / every for x in by_round["kd_live_shares/kd_live"]]
    if amp is not None:   # the same ratios with both steps in mixed precision
        p = precision_name(amp)
        for kd in ("kd_cached", "kd_live"):
            if f"{kd}_{p}" in pr and f"plain_{p}" in pr:
                by_round[f"{kd}_{p}/plain_{p}"] = [a / b for a, b in zip(pr[f"{kd}_{p}"], pr[f"plain_{p}"])]
    if "textbrewer" in pr:
        by_round["speedup_vs_textbrewer_1_epoch"] = [tb / f for tb, f in zip(pr["textbrewer"], pr["kd_fill"])]
        by_round[f"speedup_vs_textbrewer_{epochs}_epochs"] = [
            epochs * tb / (f + (epochs - 1) * c) for tb, f, c in zip(pr["textbrewer"], pr["kd_fill"], pr["kd_cached"])]
    if "kd_live_padded" in pr:   # both sides computing every padded position
        by_round["kd_live_padded/plain_padded"] = [lv / p for lv, p in zip(pr["kd_live_padded"], pr["plain_padded"])]
        if "textbrewer" in pr:
            by_round["speedup_vs_textbrewer_1_epoch_padded"] = [
                tb / f for tb, f in zip(pr["textbrewer"], pr["kd_live_padded"])]
            by_round[f"speedup_vs_textbrewer_{epochs}_epochs_padded"] = [
                epochs * tb / (f + (epochs - 1) * c)
                for tb, f, c in zip(pr["textbrewer"], pr["kd_live_padded"], pr["kd_cached_padded"])]
    r = res["ratios"] = {k: statistics.median(v) for k, v in by_round.items()}
    res["ratio_ranges"] = {k: (min(v), max(v)) for k, v in by_round.items()}   # over the rounds
    for k, v in r.items():
        log(f"  {k:34s} {v:6.2f}")
    return res


def _textbrewer_step(t_model, student, method, opt, dev):
    """A callable running one TextBrewer GeneralDistiller step (same models, losses, optimizer)."""
    import textbrewer
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
    M = student.config.num_hidden_layers
    W = method.W
    matches = []
    for i in range(M):
        j = int(torch.argmax(W[i])) + 1
        matches.append({"layer_T": j, "layer_S": i + 1, "feature": "hidden", "loss": "hidden_mse", "weight": 1})
    T = float(method.hp["temperature"])

    def adaptor(batch, out):
        return {"logits": out.logits, "hidden": list(out.hidden_states), "inputs_mask": batch["attention_mask"],
                "losses": [out.loss]}

    dcfg = DistillationConfig(temperature=T, hard_label_weight=float(method.hp["alpha_hard"]),
                              kd_loss_weight=float(method.hp["alpha_soft"]), kd_loss_type="ce",
                              intermediate_matches=matches)
    tcfg = TrainingConfig(device=str(dev), log_dir=None, output_dir="/tmp/kdlab-textbrewer-unused")
    d = GeneralDistiller(train_config=tcfg, distill_config=dcfg, model_T=t_model, model_S=student,
                         adaptor_T=adaptor, adaptor_S=adaptor)
    d.model_S.train()

    args = {"output_hidden_states": True}

    def step(b):
        inputs = {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"], "labels": b["labels"]}
        loss, _ = d.train_on_batch(inputs, args)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    _ = textbrewer
    return step


# the targets for the CPU setting (MiniLM-L6 teacher, 3-layer student, batch 32, seq 64)
TARGETS = {
    "kd_cached/plain": ("<= 1.10", lambda v: v <= 1.10),
    "kd_live/plain": ("<= 1.55", lambda v: v <= 1.55),
    "grad_shares_every_50/kd_live": ("<= 1.05", lambda v: v <= 1.05),
    "speedup_vs_textbrewer_1_epoch": (">= 1.0", lambda v: v >= 1.0),
    "speedup_vs_textbrewer_3_epochs": (">= 1.8", lambda v: v >= 1.8),
}


def write_markdown(res: dict, path: str | os.PathLike = "BENCHMARKS.md", command: str = "") -> Path:
    """Replace the measured block of BENCHMARKS.md (between markers) with ``res``: a CPU run writes the
    ``bench`` block, a CUDA run its own ``bench-gpu`` block (the CPU record stays), with model-FLOPs
    utilisation and no CPU targets."""
    s, m, t = res["settings"], res["machine"], res["seconds_per_step"]
    gpu = str(s.get("device", "")).startswith("cuda")
    tag = "bench-gpu" if gpu else "bench"
    mfu = res.get("mfu") or {}
    lines = [f"<!-- {tag}:start -->", f"Command: `{command or 'python -m kdlab bench --write'}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()),
             "Settings: " + ", ".join(f"{k} {v}" for k, v in s.items()), "",
             "| step | ms/step | steps/s | examples/s |" + (" MFU |" if mfu else ""),
             "|---|---:|---:|---:|" + ("---:|" if mfu else "")]
    for k, v in t.items():
        lines.append(f"| {k} | {v * 1000:.1f} | {1 / v:.2f} | {s['batch'] / v:.1f} |"
                     + (f" {mfu[k]:.1%} |" if k in mfu else " |" if mfu else ""))
    lines += ["", "| ratio (median of the rounds' ratios) | value | rounds' range | target | met |",
              "|---|---:|---|---|---|"]
    for k, v in res["ratios"].items():
        tgt = None if gpu else TARGETS.get(k)   # the targets are the CPU setting's
        lo, hi = res.get("ratio_ranges", {}).get(k, (v, v))
        lines.append(f"| {k} | {v:.2f} | {lo:.2f}-{hi:.2f} | {tgt[0] if tgt else ''} | "
                     f"{('yes' if tgt[1](v) else 'no') if tgt else ''} |")
    if res.get("mfu_note"):
        lines += ["", f"MFU: {res['mfu_note']}."]
    lines += ["", "Epoch seconds, kdlab (epoch 1 live + cache fill, then cached): "
              + ", ".join(f"{x:.1f}" for x in res["kdlab_epochs_s"])]
    if "textbrewer_epochs_s" in res:
        lines.append("Epoch seconds, TextBrewer: " + ", ".join(f"{x:.1f}" for x in res["textbrewer_epochs_s"]))
    if "textbrewer_error" in res:
        lines.append(f"TextBrewer could not run: {res['textbrewer_error']}")
    lines.append(f"<!-- {tag}:end -->")
    return replace_block(path, tag, "\n".join(lines))


def replace_block(path: str | os.PathLike, tag: str, block: str) -> Path:
    """Put ``block`` (which starts with ``<!-- TAG:start -->`` and ends with ``<!-- TAG:end -->``) in place of
    the file's block of that tag, or at its end when it has none."""
    p = Path(path)
    old = p.read_text() if p.exists() else "# Benchmarks\n\n"
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    if start in old and end in old:
        a, rest = old.split(start, 1)
        _, b = rest.split(end, 1)
        new = a + block + b
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    p.write_text(new)
    return p
