"""The distiller loop: one loop for fine-tuning (method ``ce``) and every distillation method.

CPU or CUDA (bf16 autocast on CUDA; fp16 autocast with a gradient scaler where the GPU has no bf16), teacher
frozen in eval mode under ``torch.inference_mode``, AdamW with linear warmup and decay, gradient accumulation
and clipping, seeded, a progress bar, evaluation each epoch, checkpoints in safetensors, everything logged to
the run store.

``train`` is a short sequence of named steps, each a function of a ``Loop`` (what one run shares):

    setup -> per batch: teacher_features -> forward_backward -> optimizer_step -> log_step
          -> per epoch: evaluate_epoch -> save_state

``kdlab.tools.bench`` times these same functions.

What depends on the task (its batches, its evaluation, its per-example outputs) is asked of the bundle's
``adaptor`` (``Adaptor`` here for classification, score and multi-label tasks; ``kdlab.ranking.adaptor`` for
ranking; ``kdlab.lm.adaptor`` for causal LMs); the models' outputs come through ``kdlab.models.features`` and
the losses through the method.
"""
from __future__ import annotations

import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..runs.checkpoint import load_checkpoint, restore_rng
from ..runs.checkpoint import save_checkpoint  # noqa: F401  (atomic: see kdlab.runs.checkpoint)
from ..config import TrainConfig
from ..data.batching import make_loader
from ..errors import KdlabError
from ..analysis.evaluate import evaluate
from ..models.features import features
from ..analysis import grad_share
from ..methods import get
from ..methods.base import Context, Method, State
from ..models.core import freeze, save_model
from ..records import Features, ModelInfo, map_tensors
from .selection import Selector
from ..speed import buckets, ddp
from ..speed.alloc import keep_freed_memory
from ..speed.cache import shared_cache, should_cache, teacher_identity
from ..threads import rebalance as rebalance_threads
from ..threads import use as use_threads


class Cancelled(Exception):
    pass


class NonFiniteLoss(KdlabError):
    pass


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KdlabError("device 'cuda' was asked for but no GPU is available: use --device cpu")
    return torch.device(name)


def cuda_has_bf16(device: torch.device) -> bool:
    """The GPU computes bf16 natively (Ampere and later). Emulated bf16 (T4-class GPUs: it runs, slowly) does
    not count, so that ``auto`` picks fp16 there."""
    if device.index is None:   # the current GPU
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    with torch.cuda.device(device.index):
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def autocast_dtype(cfg: TrainConfig, device: torch.device):
    """The autocast dtype for ``cfg.precision`` on ``device`` (None: fp32, no autocast). ``auto``: none on CPU; on
    CUDA bf16 where the GPU has it, else fp16 (which trains with a gradient scaler, ``make_scaler``)."""
    if cfg.precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if cuda_has_bf16(device) else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)


def precision_name(amp: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(amp, "fp32")


def make_scaler(amp: torch.dtype | None, device: torch.device):
    """fp16 autocast needs loss scaling (small gradients underflow in fp16): a ``torch.amp.GradScaler``;
    bf16 and fp32 have fp32's range and train without one (None)."""
    if amp != torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def _normal(f: Features | None) -> Features | None:
    """Inference tensors cannot be saved for backward: clone them into normal tensors."""
    if f is None:
        return None
    c = lambda xs: None if xs is None else [x.clone() for x in xs]
    qkv = None if f.qkv is None else [tuple(x.clone() for x in t) for t in f.qkv]
    return Features(f.logits.clone(), f.mask, c(f.hidden), c(f.attentions), qkv, f.heads, _clone_all(f.extra),
                    map_tensors(f.maps, lambda x: x.clone()))


def _clone_all(x):
    """Every tensor in nested dicts / lists cloned (e.g. a teacher ensemble's per-teacher logits in ``extra``)."""
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, dict):
        return {k: _clone_all(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_clone_all(v) for v in x)
    return x


def param_groups(modules, weight_decay: float):
    decay, no_decay, seen = [], [], set()
    scaled: dict[float, tuple[list, list]] = {}   # a module with ``lr_scale`` (the static student) learns at a multiple
    for mod in modules:
        scale = float(getattr(mod, "lr_scale", 1.0))
        d, nd = (decay, no_decay) if scale == 1.0 else scaled.setdefault(scale, ([], []))
        for n, p in mod.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (nd if p.ndim < 2 or "LayerNorm" in n or "norm" in n.lower() else d).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}] + [
        {"params": ps, "weight_decay": wd, "lr_scale": k} for k, (d, nd) in scaled.items()
        for ps, wd in ((d, weight_decay), (nd, 0.0)) if ps]


def make_optimizer(groups: list[dict], lr: float) -> torch.optim.AdamW:
    """AdamW, fused (one kernel over all tensors) when every parameter is a float tensor on the CPU or a
    GPU: the same update as the per-tensor loop, about 4x faster on a 17M-parameter student on CPU."""
    params = [p for g in groups for p in g["params"]]
    groups = [{k: v for k, v in g.items() if k != "lr_scale"} | ({"lr": lr * g["lr_scale"]} if "lr_scale" in g else {})
              for g in groups]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) \
        and len({p.device for p in params}) == 1
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def linear_schedule(opt, warmup_steps: int, total_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


@dataclass
class Result:
    steps: int
    status: str
    evals: dict
    seconds: float
    message: str = ""
    selection: dict | None = None   # with cfg.select: the selected epoch (kdlab.engine.selection) and the last one


def build_method(name: str | type[Method], teacher, student, num_labels: int, total_steps: int, steps_per_epoch: int,
                 seed: int, num_train: int, label_kind: str = "classes", **overrides) -> Method:
    """The method ``name`` (a registered name, or the class the caller resolved already) built for this run."""
    cls, name = (name, name.name) if isinstance(name, type) else (get(name), name)
    ctx = Context(teacher=ModelInfo.of(teacher) if teacher is not None else None, student=ModelInfo.of(student),
                  num_labels=num_labels, total_steps=total_steps, steps_per_epoch=steps_per_epoch, seed=seed,
                  num_train=num_train, teacher_model=teacher, label_kind=label_kind)
    if cls.uses_teacher and teacher is None:
        raise KdlabError(f"method '{name}' needs a teacher")
    return cls(ctx, **overrides)


def _label_kind(bundle) -> str:
    task = getattr(bundle, "task", None)
    return getattr(task, "kind", "classes")


def plan_steps(n_train: int, cfg: TrainConfig, rows: int | None = None) -> tuple[int, int]:
    """(steps per epoch, total steps) for ``n_train`` training rows taken ``rows`` (default the batch size) at a
    time."""
    batches = math.ceil(n_train / (rows or cfg.batch_size))
    steps_per_epoch = max(1, math.ceil(batches / cfg.grad_accum))
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    return steps_per_epoch, total


class Adaptor:
    """The loop's task hooks for classification, score and multi-label tasks (a bundle's ``adaptor`` replaces
    them: ``kdlab.ranking.adaptor.RankingAdaptor``, ``kdlab.lm.adaptor.LMAdaptor``)."""

    def batch_rows(self, cfg: TrainConfig) -> int:
        """Training rows per batch."""
        return cfg.batch_size

    def loader(self, loop: "Loop", seed: int):
        """The epoch's batches (dicts of tensors with ``idx``), shuffled with ``seed``."""
        cfg = loop.cfg
        return make_loader(loop.bundle.train, loop.tokenizer, batch_size=cfg.batch_size, max_len=cfg.max_len,
                           shuffle=True, seed=seed)

    def teacher_outputs(self, loop: "Loop"):
        """The teacher's evaluation outputs (agreement metrics), or None."""
        teacher = loop.teacher
        if teacher is None or not loop.cfg.eval_each_epoch or getattr(teacher, "soft_labels", False):
            return None   # a soft-label teacher has no predictions on the evaluation splits
        return evaluate(teacher, loop.tokenizer, loop.bundle, max_len=loop.cfg.max_len, device=loop.device)[1]

    def evaluate(self, loop: "Loop") -> tuple[dict, dict]:
        """({split: {metric: value}}, per-example outputs for ``save_predictions``)."""
        return evaluate(loop.student, loop.tokenizer, loop.bundle, max_len=loop.cfg.max_len, device=loop.device,
                        teacher_logits=loop.teacher_logits)

    def save_predictions(self, path, loop: "Loop", outputs: dict):
        save_predictions(path, loop.bundle, outputs)


CLASSIFICATION = Adaptor()


def adaptor_of(bundle) -> Adaptor:
    return getattr(bundle, "adaptor", None) or CLASSIFICATION


@dataclass
class Loop:
    """What the steps of one training run share (built by ``setup``)."""
    student: torch.nn.Module
    tokenizer: object
    bundle: object
    cfg: TrainConfig
    method: Method
    teacher: torch.nn.Module | None
    device: torch.device
    amp: torch.dtype | None             # autocast dtype (bf16 on CUDA) or None
    opt: torch.optim.Optimizer
    sched: object
    state: State
    scaler: object = None               # torch.amp.GradScaler with fp16 autocast (make_scaler), else None
    trains_teacher: bool = False
    cache: object = None                # the teacher-output cache, when exact for this method
    bucketed: bool = False              # length buckets (kdlab.speed.buckets)
    store: object = None
    run_id: str | None = None
    writes: bool = False                # this process writes to the store (rank 0)
    position: dict = field(default_factory=dict)   # where a resumed run continues
    teacher_logits: dict | None = None  # the teacher's evaluation logits (agreement metrics)
    tb: object = None                   # TensorBoard events (kdlab.engine.tensorboard), with cfg.tensorboard
    skipped_steps: int = 0              # fp16: optimizer steps the gradient scaler skipped (inf/NaN gradients)
    last_W: torch.Tensor | None = None
    grad_share_step: int = -1           # the last step whose terms' gradient norms were logged (kdlab.analysis.grad_share)
    pending: list = field(default_factory=list)    # metric rows not yet written
    adaptor: Adaptor = CLASSIFICATION   # the task's batches and evaluation


def setup(student, tokenizer, bundle, method_name: str | type[Method] = "kd", *, teacher=None,
          cfg: TrainConfig | None = None,
          method_args: dict | None = None, store=None, run_id: str | None = None, method: Method | None = None,
          resume=None) -> Loop:
    """Setup: seed, device (and the DDP process group), the method, which models train, the optimizer and
    schedule, a checkpoint's state when resuming, the teacher cache and length buckets."""
    cfg = (cfg or TrainConfig()).validate()
    seed_everything(cfg.seed)
    ddp.init_from_env(cfg.device)
    device = ddp.local_device(pick_device(cfg.device))
    if device.type == "cpu":
        keep_freed_memory()   # reuse large freed blocks instead of page-faulting fresh ones every step
    adaptor = adaptor_of(bundle)
    steps_per_epoch, total = plan_steps(len(bundle.train), cfg, adaptor.batch_rows(cfg))
    if method is None:
        method = build_method(method_name, teacher, student, bundle.num_labels(), total, steps_per_epoch,
                              cfg.seed, len(bundle.train), label_kind=_label_kind(bundle), **(method_args or {}))
    if not method.uses_teacher:
        teacher = None
    student.to(device)
    method.bind(student, teacher)   # methods that need the models themselves (shared modules, peer models)
    method.to(device)
    trains_teacher = teacher is not None and method.trains_teacher
    if teacher is not None:
        if trains_teacher:
            teacher.to(device).train()
        else:
            freeze(teacher).to(device)
    modules = [student, method] + ([teacher] if trains_teacher else [])
    opt = make_optimizer(param_groups(modules, cfg.weight_decay), cfg.lr)
    sched = linear_schedule(opt, int(cfg.warmup * total), total)
    state = State(step=0, epoch=0, total_steps=total, steps_per_epoch=steps_per_epoch)
    amp = autocast_dtype(cfg, device)
    scaler = make_scaler(amp, device)
    position = load_checkpoint(resume, student, method, opt, sched, state, scaler=scaler) if resume is not None \
        else {}
    cache = None
    if teacher is not None and not trains_teacher:
        use, _why = should_cache(cfg.teacher_cache, teacher=teacher, method=method, need=method.need(state)[1],
                                 dtype=cfg.cache_dtype)
        if use:
            key = teacher_identity(teacher, tokenizer, bundle.train, bundle.identity, cfg.max_len)
            cache = shared_cache(key, cfg.cache_dtype, cfg.cache_max_mb)
    return Loop(student=student, tokenizer=tokenizer, bundle=bundle, cfg=cfg, method=method, teacher=teacher,
                device=device, amp=amp, scaler=scaler, opt=opt, sched=sched, state=state,
                trains_teacher=trains_teacher, cache=cache,
                bucketed=buckets.enabled(cfg.length_buckets, device) and not method.uses_padding,
                store=store, run_id=run_id, writes=store is not None and ddp.is_main(), position=position,
                adaptor=adaptor)


def teacher_features(loop: Loop, batch: dict, need) -> Features | None:
    """Teacher features: computed with gradients when the teacher learns too; else read from the teacher cache,
    or computed under inference mode (and stored in the cache)."""
    if loop.teacher is None:
        return None
    if loop.trains_teacher:
        return features(loop.teacher, batch, need, loop.bucketed)
    cached = loop.cache is not None and not need.qkv
    t_feats = loop.cache.get(batch, need) if cached else None
    if t_feats is None:
        with torch.inference_mode():
            t_feats = features(loop.teacher, batch, need, loop.bucketed)
        t_feats = _normal(t_feats)   # clones outside inference mode: normal tensors a loss can save
        if cached:
            loop.cache.put(batch, t_feats, need)
    return t_feats


def forward_backward(loop: Loop, batch: dict):
    """Student step, first half: the mapping in use (logged when it changes), both models' features, the
    method's loss (refused when non-finite) and its backward pass (scaled for gradient accumulation, and by the
    gradient scaler with fp16). Returns (loss, parts)."""
    method, state = loop.method, loop.state
    batch = method.prepare_batch(batch, state)   # e.g. gkd: some sequences re-generated by the student
    W = method.mapping(state)
    if W is not None and (loop.last_W is None or not torch.equal(W.cpu(), loop.last_W)):
        loop.last_W = W.detach().cpu().clone()
        if loop.writes:
            loop.store.log_mapping(loop.run_id, state.step, state.epoch, loop.last_W)
    s_need, t_need = method.need(state)
    measure = loop.writes and grad_share.wants(loop.cfg.grad_share_every, state.step, loop.grad_share_step,
                                               state.total_steps)
    method.terms = {} if measure else None
    with torch.autocast(loop.device.type, dtype=loop.amp, enabled=loop.amp is not None):
        t_feats = teacher_features(loop, batch, t_need)
        s_feats = features(loop.student, batch, s_need, loop.bucketed)
        loss, parts = method.loss(s_feats, t_feats, batch, state)
        parts = {**method.schedule_parts(state), **parts}
    terms, method.terms = method.terms, None
    if not torch.isfinite(loss):
        bad = [k for k, v in parts.items() if not torch.isfinite(torch.as_tensor(v)).all()]
        raise NonFiniteLoss(f"the loss became non-finite at step {state.step} (objective/layer: "
                            f"{', '.join(bad) or 'total'}): lower the learning rate or the loss "
                            "weights; the last good checkpoint is kept")
    if measure:   # each term's gradient norm on the student (kdlab.analysis.grad_share), before the backward pass
        loop.grad_share_step = state.step
        norms = grad_share.term_norms(terms, loss, loop.student.parameters())
        if norms:
            loop.store.log_grad_norms(loop.run_id, state.step, state.epoch, norms)
    loss_part = loss / loop.cfg.grad_accum
    if loop.scaler is not None:
        loss_part = loop.scaler.scale(loss_part)
    loss_part.backward()
    return loss, parts


def optimizer_step(loop: Loop, share: float = 1.0) -> bool:
    """Student step, second half: gradients averaged over processes, the method's ``after_backward`` hook,
    clipping, AdamW and the schedule. Returns whether the optimizer stepped.

    With fp16 (``loop.scaler``) the standard GradScaler recipe: gradients unscaled before the hook and the
    clipping, the step taken through the scaler, which skips it when a gradient is inf/NaN (the loss scale
    was too large) and lowers the scale. A skipped step leaves the weights, AdamW's state and the learning-rate
    schedule where they were; ``state.step`` (batches consumed: the data position, logging, checkpoints, the
    methods' schedules) still advances, as in transformers' Trainer. An inf in another process's gradients
    reaches every process through the all-reduce, so all skip together."""
    params = [p for g in loop.opt.param_groups for p in g["params"]]
    ddp.allreduce_grads(params, share)
    scaler = loop.scaler
    if scaler is not None:
        scaler.unscale_(loop.opt)
    loop.method.after_backward(loop.student, loop.teacher, loop.state)
    if loop.cfg.clip:
        torch.nn.utils.clip_grad_norm_(params, loop.cfg.clip)
    stepped = True
    if scaler is None:
        loop.opt.step()
    else:
        scale = scaler.get_scale()
        scaler.step(loop.opt)
        scaler.update()
        stepped = scaler.get_scale() >= scale   # the scale drops only when the step was skipped
        if not stepped:
            loop.skipped_steps += 1
    if stepped:
        loop.sched.step()
    loop.opt.zero_grad(set_to_none=True)
    loop.state.step += 1
    return stepped


def log_step(loop: Loop, loss, parts: dict, share: float = 1.0, force: bool = False) -> dict:
    """Logging: the step's loss, learning rate and named parts, written to the store every ``log_every``
    steps (and when ``force``). Returns the row."""
    state = loop.state
    row = {"loss": ddp.allreduce_mean(float(loss.detach()), share), "lr": loop.sched.get_last_lr()[0]}
    if loop.scaler is not None:   # fp16: the loss scale and the steps skipped so far (inf/NaN gradients)
        row.update(grad_scale=float(loop.scaler.get_scale()), skipped_steps=float(loop.skipped_steps))
    row.update({k: float(v) for k, v in parts.items()})
    loop.pending.append((state.step, state.epoch, row))
    if force or state.step % loop.cfg.log_every == 0 or state.step >= state.total_steps:
        flush_logs(loop)
    return row


def flush_logs(loop: Loop):
    if loop.writes:
        for st, ep, r in loop.pending:
            loop.store.log_metrics(loop.run_id, st, ep, r)
            if loop.tb is not None:
                loop.tb.train_row(st, r)
    loop.pending.clear()


def evaluate_epoch(loop: Loop) -> dict:
    """Evaluation: every evaluation split (in domain and out of domain), agreement with the teacher's
    predictions; stored per split."""
    evals, logits = loop.adaptor.evaluate(loop)
    if loop.writes:
        for split, m in evals.items():
            domain = "in-domain" if split == "dev" else split
            loop.store.log_eval(loop.run_id, loop.state.step, loop.state.epoch, split, domain, m)
        loop.adaptor.save_predictions(loop.store.folder(loop.run_id) / PREDICTIONS, loop, logits)
        if loop.tb is not None:
            loop.tb.evals(loop.state.step, evals)
    loop.student.train()
    return evals


PREDICTIONS = "predictions.npz"


def save_predictions(path, bundle, logits: dict):
    """The latest evaluation's per-example outputs, for paired statistics (``kdlab.analysis.stats``): per split
    ``<split>/logits`` [n, C], ``<split>/labels`` and, for a set scored through a label mapping,
    ``<split>/label_map``. Written atomically (a reader never sees half a file)."""
    import os
    arrays = {}
    for name, split in bundle.eval_splits().items():
        if name not in logits:
            continue
        arrays[f"{name}/logits"] = np.asarray(logits[name], dtype=np.float32)
        arrays[f"{name}/labels"] = np.asarray(split.labels)
        if getattr(split, "label_map", None) is not None:
            arrays[f"{name}/label_map"] = np.asarray(split.label_map)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def save_state(loop: Loop, batch: int):
    """Checkpoint: everything needed to continue exactly here (``batch`` batches of this epoch done)."""
    if loop.writes:
        save_checkpoint(loop.store.folder(loop.run_id) / "checkpoint", loop.student, loop.tokenizer, loop.method,
                        loop.state, opt=loop.opt, sched=loop.sched, position={"batch": batch}, scaler=loop.scaler)


def epoch_batches(loop: Loop):
    """The epoch's batches in their seeded order; a resumed run skips those its checkpoint had used.
    Yields (number of batches used so far, batch)."""
    cfg, state = loop.cfg, loop.state
    batches = iter(loop.adaptor.loader(loop, cfg.seed * 1000 + state.epoch))
    skip = int(loop.position.pop("batch", 0))
    for _ in range(skip):
        next(batches, None)
    if "_rng" in loop.position:   # resuming: the RNG continues where the checkpoint left it
        restore_rng(loop.position)
        loop.position.clear()
    yield from enumerate(batches, start=skip + 1)


def train(student, tokenizer, bundle, method_name: str | type[Method] = "kd", *, teacher=None,
          cfg: TrainConfig | None = None,
          method_args: dict | None = None, store=None, run_id: str | None = None, method: Method | None = None,
          on_step=None, resume=None) -> Result:
    """Train ``student`` on ``bundle.train`` with the method ``method_name``; evaluate on every eval split.

    ``method_name``: the method class the caller resolved already (the pipeline resolves ``cfg.method`` once and
    passes the class down), or a registered name; ``method``: a method built already.

    ``resume``: a checkpoint folder written by this loop; training continues exactly where it stopped
    (weights, optimizer, scheduler, RNG, data position). Under torchrun the student is data-parallel
    (``kdlab.speed.ddp``); teacher outputs are cached per example when ``cfg.teacher_cache`` allows
    (``kdlab.speed.cache``)."""
    threads = use_threads(cfg.threads or None if cfg is not None else None)   # this process's share of the cores
    loop = setup(student, tokenizer, bundle, method_name, teacher=teacher, cfg=cfg, method_args=method_args,
                 store=store, run_id=run_id, method=method, resume=resume)
    cfg, state, method = loop.cfg, loop.state, loop.method
    total, every = state.total_steps, cfg.checkpoint_every
    if cfg.tensorboard and loop.writes:
        from .tensorboard import FOLDER, EventWriter
        loop.tb = EventWriter(store.folder(run_id) / FOLDER, start_step=state.step)
    if loop.writes:   # the plan, for progress and ETA (kdlab.runs.progress)
        store.set_artifact(run_id, "plan", {"total_steps": total, "steps_per_epoch": state.steps_per_epoch,
                                            "started": time.time(), "start_step": state.step,
                                            "precision": precision_name(loop.amp), "device": str(loop.device),
                                            "threads": threads})
    selector = Selector.of(cfg.select, cfg.patience, store.folder(run_id) / "selected"
                           if store is not None and run_id and loop.writes else None)

    stopped_early = False
    if selector is not None:
        selector.check_plan(bundle)   # a bad split or metric fails now, not after an epoch

    def save_selected(folder):
        save_model(student, tokenizer, folder, extra={"run_id": run_id, "selected": True})
        preds = store.folder(run_id) / PREDICTIONS   # this epoch's per-example outputs: a study's paired statistics
        if preds.exists():
            shutil.copyfile(preds, Path(folder) / PREDICTIONS)
    loop.teacher_logits = loop.adaptor.teacher_outputs(loop)   # the teacher's predictions, for agreement
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=f"{method.name}", unit="step", leave=False)
    t0 = time.time()
    status, message, evals = "finished", "", {}
    try:
        while state.step < total:
            method.on_epoch_start(state)
            student.train()
            if loop.trains_teacher:
                loop.teacher.train()
            loop.opt.zero_grad(set_to_none=True)
            for done, batch in epoch_batches(loop):
                batch, share = ddp.shard(batch)
                batch = {k: v.to(loop.device) for k, v in batch.items()}
                loss, parts = forward_backward(loop, batch)
                if done % cfg.grad_accum:
                    continue
                optimizer_step(loop, share)
                rebalance_threads()   # a core given back or taken again as other kdlab runs start and end
                checkpoint_now = bool(every) and state.step % every == 0
                row = log_step(loop, loss, parts, share, force=checkpoint_now)
                if checkpoint_now and state.step < total:
                    save_state(loop, done)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", epoch=state.epoch)
                if on_step is not None:
                    on_step(state, row)
                if store is not None and ddp.any_rank(store.cancel_requested(run_id)):
                    raise Cancelled()
                if state.step >= total:
                    break
            state.epoch += 1
            if cfg.eval_each_epoch or state.step >= total:
                evals = evaluate_epoch(loop)
                if selector is not None and selector.update(evals, state.epoch, state.step, save_selected):
                    message = (f"stopped early after epoch {state.epoch}: {selector.split}:{selector.metric} did "
                               f"not improve for {selector.patience} epoch(s) (best {selector.best:.4f} after epoch "
                               f"{selector.best_epoch})")
                    stopped_early = True
                    save_state(loop, 0)
                    break
            if cfg.checkpoint_each_epoch or every:
                save_state(loop, 0)
        if not evals:
            if resume is not None and loop.writes:   # resumed from the final checkpoint: its last evaluation
                store.drop_evals(run_id, state.step)       # is made again here, and stored once
            evals = evaluate_epoch(loop)
    except Cancelled:
        status, message = "cancelled", "cancelled by the user"
    finally:
        if bar is not None:
            bar.close()
        flush_logs(loop)
        if loop.tb is not None:
            loop.tb.close()
    selection = None
    if selector is not None and selector.record:
        selection = {"selected": selector.record, "last": {"epoch": state.epoch, "step": state.step, "evals": evals},
                     "patience": selector.patience, "stopped_early": stopped_early}
    return Result(steps=state.step, status=status, evals=evals, seconds=time.time() - t0, message=message,
                  selection=selection)
