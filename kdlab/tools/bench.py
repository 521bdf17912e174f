"""``python -m kdlab bench``: throughput of kdlab's training steps against TextBrewer, in one process.

Measured on the same teacher, student, batches (fixed ``batch`` x ``seq`` tokens) and losses (logit KD +
hidden-state MSE on the uniformly mapped layers, the ``hidden`` method):

* ``plain``: a student step with hard-label CE only (the floor);
* ``kd_live``: kdlab's KD step with the teacher run live (inference mode, hidden states only);
* ``kd_cached``: kdlab's KD step with the teacher's outputs served by the teacher cache (warm);
* ``textbrewer``: the same KD work through ``textbrewer.GeneralDistiller.train_on_batch``;
* ``plain_padded`` / ``kd_live_padded`` / ``kd_cached_padded``: the same kdlab steps with length buckets off
  (every padded position computed, as TextBrewer does), so the figures show what skipping padding is worth
  and how kdlab compares with TextBrewer when both compute the same positions (the ``*_padded`` ratios);
* epochs: ``steps`` batches per epoch; kdlab's first epoch runs live and fills the cache, later epochs
  read it; TextBrewer runs its teacher every epoch. Ratios over 1 and 3 epochs.

On CUDA it also measures bf16 autocast and reports model-FLOPs utilisation; ``--compile`` adds the
student compiled with ``torch.compile``.
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


def _flops_per_step(model, batch: int, seq: int) -> float:
    n = sum(p.numel() for p in model.parameters())
    return 6.0 * n * batch * seq


def run_bench(teacher: str = "minilm-l6", student_layers: int = 3, batch: int = 32, seq: int = 64,
              steps: int = 10, epochs: int = 3, device: str = "cpu", compile: bool = False,
              textbrewer: bool = True, rounds: int = 3, peak_tflops: float | None = None,
              length_buckets: str = "auto", log=print) -> dict:
    from ..config import TrainConfig
    from ..distill import forward_backward, optimizer_step, pick_device, setup
    from ..models import build_student, freeze, load_teacher
    from ..speed.cache import TeacherCache
    if steps < 1 or batch < 1 or seq < 2 or epochs < 1 or rounds < 1:
        raise KdlabError("bench needs --steps, --batch, --epochs, --rounds >= 1 and --seq >= 2")
    dev = pick_device(device)
    torch.manual_seed(0)
    t_model, tok = load_teacher(teacher, 2)
    freeze(t_model).to(dev)
    student = build_student(t_model, layers=student_layers, init="skip").to(dev).train()
    data, bundle = _batches(tok, steps, batch, seq)
    data = [{k: v.to(dev) for k, v in b.items()} for b in data]
    # the loop's own setup (kdlab.distill.setup): the same optimizer, schedule, clipping, buckets; fp32 here,
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
    if dev.type == "cuda":
        variants["kd_cached_bf16"] = step(dataclasses.replace(kd_cache, amp=torch.bfloat16))
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
    # Interleaved rounds: every variant runs one epoch per round, in an order rotated each round, so that
    # a change of machine load hits all variants alike; the median round is reported.
    per_round: dict = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if name == "kd_fill":
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
    if dev.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(0)
        flops = _flops_per_step(student, batch, seq)
        res["student_flops_per_step"] = flops
        if peak_tflops:
            res["mfu"] = {k: flops / t[k] / (peak_tflops * 1e12) for k in ("plain", "kd_cached_bf16") if k in t}
            res["mfu_note"] = (f"student training FLOPs (6 x params x tokens) per second over a {peak_tflops} "
                               "TFLOP/s peak; the teacher's forward is not counted")
    res["seconds_per_step"] = t
    res["steps_per_s"] = {k: 1.0 / v for k, v in t.items()}
    res["examples_per_s"] = {k: batch / v for k, v in t.items()}
    # ratios are paired: computed within each round (same machine state), then the median over rounds
    pr = per_round
    by_round = {"kd_cached/plain": [c / p for c, p in zip(pr["kd_cached"], pr["plain"])],
                "kd_live/plain": [lv / p for lv, p in zip(pr["kd_live"], pr["plain"])]}
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
    N, M = t_model.config.num_hidden_layers, student.config.num_hidden_layers
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
    "speedup_vs_textbrewer_1_epoch": (">= 1.0", lambda v: v >= 1.0),
    "speedup_vs_textbrewer_3_epochs": (">= 1.8", lambda v: v >= 1.8),
}


def write_markdown(res: dict, path: str | os.PathLike = "BENCHMARKS.md", command: str = "") -> Path:
    """Replace the measured block of BENCHMARKS.md (between markers) with ``res``."""
    s, m, t = res["settings"], res["machine"], res["seconds_per_step"]
    lines = ["<!-- bench:start -->", f"Command: `{command or 'python -m kdlab bench --write'}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in m.items()),
             "Settings: " + ", ".join(f"{k} {v}" for k, v in s.items()), "",
             "| step | ms/step | steps/s | examples/s |", "|---|---:|---:|---:|"]
    for k, v in t.items():
        lines.append(f"| {k} | {v * 1000:.1f} | {1 / v:.2f} | {s['batch'] / v:.1f} |")
    lines += ["", "| ratio (median of the rounds' ratios) | value | rounds' range | target | met |",
              "|---|---:|---|---|---|"]
    for k, v in res["ratios"].items():
        tgt = TARGETS.get(k)
        lo, hi = res.get("ratio_ranges", {}).get(k, (v, v))
        lines.append(f"| {k} | {v:.2f} | {lo:.2f}-{hi:.2f} | {tgt[0] if tgt else ''} | "
                     f"{('yes' if tgt[1](v) else 'no') if tgt else ''} |")
    if res.get("mfu"):
        lines += ["", "Model-FLOPs utilisation: " + ", ".join(f"{k} {v:.1%}" for k, v in res["mfu"].items())
                  + f" ({res['mfu_note']})"]
    lines += ["", "Epoch seconds, kdlab (epoch 1 live + cache fill, then cached): "
              + ", ".join(f"{x:.1f}" for x in res["kdlab_epochs_s"])]
    if "textbrewer_epochs_s" in res:
        lines.append("Epoch seconds, TextBrewer: " + ", ".join(f"{x:.1f}" for x in res["textbrewer_epochs_s"]))
    if "textbrewer_error" in res:
        lines.append(f"TextBrewer could not run: {res['textbrewer_error']}")
    lines.append("<!-- bench:end -->")
    block = "\n".join(lines)
    p = Path(path)
    old = p.read_text() if p.exists() else "# Benchmarks\n\n"
    if "<!-- bench:start -->" in old and "<!-- bench:end -->" in old:
        a, rest = old.split("<!-- bench:start -->", 1)
        _, b = rest.split("<!-- bench:end -->", 1)
        new = a + block + b
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    p.write_text(new)
    return p
