"""CRD: contrastive representation distillation (Tian et al., ICLR 2020; docs/METHODS.md: crd).

Features are the last layer's [CLS] vectors ``f_S = H^S_M[:, 0]`` and ``f_T = H^T_N[:, 0]`` (before the
pooler). Heads ``g_S(x) = norm(W_S x)`` and ``g_T(x) = norm(W_T x)`` map them to ``dim`` (128) and
L2-normalise. Two memory banks ``Mem_S, Mem_T [n, dim]`` (n = training-set size, registered buffers so they
are checkpointed) hold one slowly updated embedding per training example.

For a batch with example ids ``i_b``: 1 positive (``i_b`` itself) and K negatives per example,
``P = exp(<Mem[k], g(x)>/τ) / Z`` with Z = n · mean(exp(·/τ)) estimated on the first batch and then frozen
(one Z per bank), loss ``crd_nce_loss`` (critic ``h(P) = P/(P + K/n)``) for the student anchor against
``Mem_T`` (L_S) and the teacher anchor against ``Mem_S`` (L_T), then the banks are updated at the positive
ids: ``v <- norm(m·v + (1−m)·g(x))`` (m = 0.5, no gradient).

Negatives come from *other classes* (RepDistiller's "exact" CIFAR mode). The loop does not hand the
training labels to methods, so the method keeps a label bank (a buffer of n labels, −1 = not seen yet)
filled from ``batch["labels"]`` at ``batch["idx"]`` before sampling: an example's negatives are drawn
uniformly with replacement from the ids whose stored label differs from its own. After the first epoch
every label is known, so this is exactly the reference sampler; during the first epoch negatives come
from the examples seen so far (all of which are genuinely other-class). Only when no other-class example
has been seen yet (a first batch of one class) are negatives drawn from the unseen ids (never the positive).

Total: ``L = γ·CE + α·KD(T) + β·(L_S + L_T)`` with γ = 1, α = 0, β = 0.8, T = 4 (CRD+KD: α = 1).
K = 16384 by default, capped at n − 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..kd import losses
from ..errors import KdlabError
from ..models.features import Need
from .base import Method, Option, register, weight


def memory_update(mem: torch.Tensor, idx: torch.Tensor, v: torch.Tensor, momentum: float) -> None:
    """In place, no gradient: ``mem[idx] <- norm(momentum·mem[idx] + (1−momentum)·v)``."""
    with torch.no_grad():
        new = mem.index_select(0, idx) * momentum + v.detach().to(mem.dtype) * (1.0 - momentum)
        mem.index_copy_(0, idx, F.normalize(new, dim=-1))


def sample_negatives(label_bank: torch.Tensor, idx: torch.Tensor, labels: torch.Tensor, K: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, K]`` negative ids: drawn with replacement from the ids whose stored label differs from the
    example's label; when none is known yet, from the unseen ids other than the example itself."""
    n = label_bank.shape[0]
    out = torch.empty(idx.shape[0], K, dtype=torch.long)
    bank = label_bank.cpu()
    for b, (i, y) in enumerate(zip(idx.tolist(), labels.tolist())):
        pool = torch.nonzero((bank != y) & (bank >= 0)).flatten()
        if pool.numel() == 0:
            cand = (bank < 0)
            cand[i] = False
            pool = torch.nonzero(cand).flatten()
        if pool.numel() == 0:
            pool = torch.tensor([j for j in range(n) if j != i], dtype=torch.long)
        pick = torch.randint(0, pool.numel(), (K,), generator=generator)
        out[b] = pool[pick]
    return out.to(idx.device)


@register
class CRD(Method):
    """Contrastive representation distillation on the last-layer [CLS] with memory banks (RepDistiller)."""
    name = "crd"
    accepts_unlabeled = False   # uses every row's gold label
    label_kinds = ("classes",)   # negatives are drawn from other classes
    summary = "L = g*CE + a*KD + b*(L_S + L_T), NCE with K negatives from memory banks of g(CLS) (tau 0.07)"
    defaults = dict(gamma=1.0, alpha=0.0, beta=0.8, temperature=4.0, nce_k=16384, nce_t=0.07, feat_dim=128,
                    momentum=0.5)
    options = dict(
        gamma=weight("weight of CE to the gold label"),
        alpha=weight("weight of logit KD (0 = CRD alone, 1 = CRD+KD)"),
        beta=weight("weight of the contrastive term"),
        nce_k=Option("int", "negatives per example (capped at the training-set size - 1)", lo=1),
        nce_t=Option("float", "temperature of the contrastive softmax", lo=0, lo_open=True),
        feat_dim=Option("int", "size of the contrastive embedding", lo=1),
        momentum=Option("float", "momentum of the memory-bank update", lo=0, hi=0.999))
    weights = ("gamma", "alpha", "beta")
    student_need = teacher_need = Need(hidden=True)

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        n = int(ctx.num_train)
        if n < 2:
            raise KdlabError(f"crd needs at least 2 training examples for its memory banks (got {n}): "
                             "use more training data")
        if not 0.0 <= float(self.hp["momentum"]) < 1.0:
            raise KdlabError(f"crd momentum must be in [0, 1) (got {self.hp['momentum']})")
        if float(self.hp["nce_t"]) <= 0:
            raise KdlabError(f"crd nce_t (the temperature tau) must be > 0 (got {self.hp['nce_t']})")
        if int(self.hp["nce_k"]) < 1:
            raise KdlabError(f"crd nce_k (number of negatives) must be >= 1 (got {self.hp['nce_k']})")
        self.n = n
        self.K = min(int(self.hp["nce_k"]), n - 1)
        dim = int(self.hp["feat_dim"])
        self.embed_s = nn.Linear(ctx.student.hidden, dim)
        self.embed_t = nn.Linear(ctx.teacher.hidden, dim)
        g = torch.Generator().manual_seed(int(ctx.seed))
        stdv = 1.0 / (dim / 3) ** 0.5  # RepDistiller's init, then normalised
        self.register_buffer("mem_s", F.normalize(torch.rand(n, dim, generator=g) * 2 * stdv - stdv, dim=-1))
        self.register_buffer("mem_t", F.normalize(torch.rand(n, dim, generator=g) * 2 * stdv - stdv, dim=-1))
        self.register_buffer("label_bank", torch.full((n,), -1, dtype=torch.long))
        self.register_buffer("z", torch.full((2,), -1.0))   # [Z for scores against Mem_T, against Mem_S]
        self._gen = torch.Generator().manual_seed(int(ctx.seed) + 1)

    def contrast(self, v_s, v_t, idx, neg):
        """Normalised scores ``(P_S [B,1+K] student anchor vs Mem_T, P_T teacher anchor vs Mem_S)``;
        sets Z on the first call."""
        ids = torch.cat([idx.unsqueeze(1), neg], dim=1)                      # [B, 1+K], column 0 positive
        tau = float(self.hp["nce_t"])
        w_t = self.mem_t[ids].detach().float()                                # [B, 1+K, dim]
        w_s = self.mem_s[ids].detach().float()
        with torch.autocast(v_s.device.type, enabled=False):                 # exp(./0.07) needs fp32
            out_s = torch.exp(torch.einsum("bkd,bd->bk", w_t, v_s.float()) / tau)
            out_t = torch.exp(torch.einsum("bkd,bd->bk", w_s, v_t.float()) / tau)
        if self.z[0] < 0:
            with torch.no_grad():
                self.z[0] = out_s.mean() * self.n
                self.z[1] = out_t.mean() * self.n
        return out_s / self.z[0], out_t / self.z[1]

    def loss(self, s, t, batch, state):
        if "idx" not in batch:
            raise KdlabError("crd needs example ids in the batch ('idx'): use kdlab.data.batching.make_loader")
        idx = batch["idx"].long()
        if int(idx.max()) >= self.n:
            raise KdlabError(f"crd got example id {int(idx.max())} but its memory banks hold {self.n} examples: "
                             "build the method with num_train = the training-set size")
        labels = batch["labels"].long()
        self.label_bank[idx] = labels
        neg = sample_negatives(self.label_bank, idx, labels, self.K, self._gen)
        v_s = F.normalize(self.embed_s(s.hidden[-1][:, 0].float()), dim=-1)
        v_t = F.normalize(self.embed_t(t.hidden[-1][:, 0].float()), dim=-1)
        p_s, p_t = self.contrast(v_s, v_t, idx, neg)
        l_s = losses.crd_nce_loss(p_s, self.n)
        l_t = losses.crd_nce_loss(p_t, self.n)
        memory_update(self.mem_s, idx, v_s, float(self.hp["momentum"]))
        memory_update(self.mem_t, idx, v_t, float(self.hp["momentum"]))
        crd = l_s + l_t
        ce = losses.hard_ce(s.logits, labels)
        total = self.w("gamma", state) * ce + self.w("beta", state) * crd
        parts = {"ce": ce.detach(), "crd": crd.detach(), "crd_s": l_s.detach(), "crd_t": l_t.detach()}
        alpha = self.w("alpha", state)
        if alpha:
            total = total + alpha * self.kd_term(s, t, state, parts)
        return total, parts
