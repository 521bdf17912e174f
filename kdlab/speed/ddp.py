"""Data-parallel training through an existing launcher (torchrun; ``accelerate launch`` sets the same
environment): ``torchrun --nproc_per_node N -m kdlab distill ...``.

* The process group starts from the launcher's environment (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``...):
  gloo on CPU, nccl on CUDA (each rank on ``cuda:LOCAL_RANK``).
* Every rank builds the same global batch (same seed, same order) and keeps its own shard (rows
  ``rank::world``, like DistributedSampler); the student's and the method's gradients are all-reduced,
  weighted by shard size, so a step equals a single-process step on the global batch.
* The frozen teacher is not wrapped: each rank runs it on its own shard.
* Only rank 0 writes the run store (``DistStore``); other ranks get the run id broadcast from rank 0.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str = "auto") -> bool:
    """Start the process group when launched by torchrun with more than one process."""
    if active():
        return True
    if env_world() <= 1 or not dist.is_available():
        return False
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return True


def local_device(device: torch.device) -> torch.device:
    if active() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(batch: dict) -> tuple[dict, float]:
    """This rank's rows of the global batch and its share of the rows."""
    if not active():
        return batch, 1.0
    n = batch["labels"].shape[0]
    r, w = rank(), world()
    out = {k: v[r::w] for k, v in batch.items()}
    return out, out["labels"].shape[0] / max(1, n)


def allreduce_grads(params, share: float):
    """Sum over ranks of ``share * grad`` (share = this rank's fraction of the global batch)."""
    if not active():
        return
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads]) * share
    dist.all_reduce(flat)
    off = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[off:off + n].view_as(g).to(g.dtype).clone()
        off += n


def allreduce_mean(value: float, share: float) -> float:
    if not active():
        return value
    t = torch.tensor([value * share], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0])


def any_rank(flag: bool) -> bool:
    if not active():
        return flag
    t = torch.tensor([1 if flag else 0])
    dist.all_reduce(t)
    return bool(t[0])


class DistStore:
    """The run store seen from one rank: rank 0 writes, the others only read."""

    _WRITES = ("log_metrics", "log_mapping", "log_eval", "set_artifact", "request_cancel", "reopen", "truncate",
               "drop_evals")

    def __init__(self, store):
        self._s = store

    def __getattr__(self, name):
        attr = getattr(self._s, name)
        if name in self._WRITES and not is_main():
            return lambda *a, **k: None
        return attr

    def create_run(self, *a, **k):
        rid = [self._s.create_run(*a, **k) if is_main() else None]
        if active():
            dist.broadcast_object_list(rid, src=0)
        return rid[0]

    def finish(self, *a, **k):
        if is_main():
            self._s.finish(*a, **k)
        if active():
            dist.barrier()


def wrap_store(store):
    """The store, or a DistStore when this process is one of several ranks."""
    if store is None or not init_from_env():
        return store
    return DistStore(store)
