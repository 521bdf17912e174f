"""Deep mutual learning (docs/METHODS.md: dml): K peers learn together from the labels and from each other.

``L_k = CE(y, z_k) + (1/(K-1)) Σ_{l≠k} KL(p_l ‖ p_k)`` with the other peers' predictions detached
(``kdlab.kd.losses.dml_losses``). Update: simultaneous, i.e. one optimiser step over ``Σ_k L_k`` (the cheap
variant and the kit default; the paper updates the peers in turn, recomputing predictions after each update).

Peers: peer 0 is the student the loop trains and stores. Peers 1..K-1 are submodules of the method (optimised
with the method's parameters, saved in the checkpoint's ``method.safetensors``); each is a copy of peer 0's
architecture initialised differently: ``peer_init='noise'`` (default) copies peer 0's starting weights (e.g. the
teacher-layer copy) and adds Gaussian noise of ``noise`` × each tensor's standard deviation, seeded with
``seed + k``; ``peer_init='fresh'`` re-initialises the peer at random with seed ``seed + k``. No teacher is used.
Metrics: per-peer loss, cross-entropy and training-batch accuracy (``peer<k>/loss``, ``peer<k>/ce``,
``peer<k>/acc``).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..kd import losses
from ..errors import KdlabError
from ..models.features import Need, features
from .base import Method, Option, register


@register
class DML(Method):
    name = "dml"
    accepts_unlabeled = False   # uses every row's gold label
    label_kinds = ("classes",)   # peers learn from each other's class distributions
    summary = "peers k: L_k = CE(y, z_k) + 1/(K-1) sum_l KL(p_l || p_k) (peers detached), simultaneous update"
    uses_teacher = False
    defaults = dict(peers=2, peer_init="noise", noise=0.05, temperature=1.0)
    options = dict(
        peers=Option("int", "number of peers learning together (peer 0 is the stored student)", lo=2),
        peer_init=Option("choice", "other peers: a noisy copy of peer 0 or a fresh random model"),
        noise=Option("float", "with peer_init=noise: noise size, in standard deviations of each tensor", lo=0))
    choices = dict(peer_init=("noise", "fresh"))

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        k = self.hp["peers"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise KdlabError(f"dml needs peers to be an integer of at least 2, got {k!r}: e.g. --set peers=2")
        self.others = nn.ModuleList()

    def bind(self, student, teacher):
        """Create peers 1..K-1 from peer 0 (the student) before the optimiser is built."""
        if len(self.others):
            return
        for k in range(1, self.hp["peers"]):
            self.others.append(make_peer(student, self.hp["peer_init"], float(self.hp["noise"]),
                                         self.ctx.seed + k))

    def loss(self, s, t, batch, state):
        if len(self.others) != self.hp["peers"] - 1:
            raise KdlabError("dml peers are created when training starts (kdlab.engine.distill.train binds them)")
        for p in self.others:
            p.train(self.training)
        logits = [s.logits] + [features(p, batch, Need()).logits for p in self.others]
        per_peer = losses.dml_losses(logits, batch["labels"], self.temperature(state))
        parts = {}
        for k, (z, lk) in enumerate(zip(logits, per_peer)):
            parts[f"peer{k}/loss"] = lk.detach()
            parts[f"peer{k}/ce"] = losses.hard_ce(z.detach(), batch["labels"])
            parts[f"peer{k}/acc"] = (z.detach().argmax(-1) == batch["labels"]).float().mean()
        parts["ce"] = parts["peer0/ce"]
        return sum(per_peer), parts


def make_peer(student, init: str, noise: float, seed: int):
    """A copy of ``student``'s architecture, initialised differently (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    if init == "fresh":
        torch.manual_seed(seed)
        peer = type(student)(copy.deepcopy(student.config))
        attn = getattr(student.config, "_attn_implementation", None)
        if attn and hasattr(peer, "set_attn_implementation"):
            peer.set_attn_implementation(attn)
        return peer.to(next(student.parameters()).device)
    peer = copy.deepcopy(student)
    with torch.no_grad():
        for p in peer.parameters():
            if p.numel() > 1 and noise > 0:
                sd = float(p.float().std())
                p.add_(torch.randn(p.shape, generator=gen).to(p.device, p.dtype) * (noise * sd))
    return peer
