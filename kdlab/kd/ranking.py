"""The ranking objectives (scores: higher = more relevant).

* ``margin_mse`` (Hofstätter et al. 2020): the student fits the teacher's score *differences* between a positive
  and a negative document of the same query, so the two models' score scales need not match:
  ``L = mean_i ((s_pos,i - s_neg,i) - (t_pos,i - t_neg,i))²``.
* ``listwise_kl``: Hinton's KD over a query's candidate list, ``T² · KL(softmax(t/T) ‖ softmax(s/T))`` averaged over
  queries (``kdlab.kd.losses.kd_kl`` with the candidates as the classes).
* ``in_batch_contrastive``: the no-teacher baseline; each query's positive against every other document of the
  batch (the other queries' positives and all hard negatives), cross-entropy of ``scores / tau``.
* ``embedding_mse``: the student's embeddings to a bigger bi-encoder's embeddings of the same texts (the
  sentence-transformers layer-reduction recipe), on unit vectors: ``mean_i ||s_i/|s_i| - t_i/|t_i| ||²`` =
  ``mean_i 2 (1 - cos(s_i, t_i))``, so the two models' norms need not match.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import KdlabError
from .losses import kd_kl


def margin_mse(s_pos: torch.Tensor, s_neg: torch.Tensor, t_pos: torch.Tensor, t_neg: torch.Tensor) -> torch.Tensor:
    """Margin-MSE; every argument has one entry per (query, positive, negative) triple."""
    if not (s_pos.shape == s_neg.shape == t_pos.shape == t_neg.shape):
        raise KdlabError(f"margin_mse needs four tensors of one shape, got {tuple(s_pos.shape)}, {tuple(s_neg.shape)}, "
                         f"{tuple(t_pos.shape)}, {tuple(t_neg.shape)}")
    return F.mse_loss((s_pos - s_neg).float(), (t_pos - t_neg).float())


def margin_mse_groups(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Margin-MSE over groups [B, 1 + K] (column 0 the positive): every (positive, negative k) pair of a row."""
    k = s.shape[1] - 1
    return margin_mse(s[:, :1].expand(-1, k), s[:, 1:], t[:, :1].expand(-1, k), t[:, 1:])


def listwise_kl(s: torch.Tensor, t: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """Listwise KD over each query's candidates: ``s``, ``t`` [B, K] scores of the same candidates."""
    return kd_kl(s, t, T)


def in_batch_contrastive(q: torch.Tensor, d: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """In-batch negatives: ``q`` [B, H] query embeddings, ``d`` [N >= B, H] documents whose first B rows are the
    queries' positives (row i for query i); the rest are extra (hard) negatives. CE of ``q @ d.T / tau``."""
    if d.shape[0] < q.shape[0]:
        raise KdlabError("in_batch_contrastive needs one positive per query as the first rows of the documents")
    if tau <= 0:
        raise KdlabError(f"the contrastive temperature tau must be > 0, got {tau}")
    logits = (q @ d.T).float() / tau
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))


def group_ce(s: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each group's positive (column 0) among its candidates: the cross-encoder teacher's loss."""
    return F.cross_entropy(s.float(), torch.zeros(s.shape[0], dtype=torch.long, device=s.device))


def embedding_mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Embedding matching: ``s``, ``t`` [..., H] (same shape) embeddings of the same texts by the student and a
    bigger bi-encoder; the mean over texts of the squared distance of their unit vectors (= 2 (1 - cosine))."""
    if s.shape != t.shape:
        raise KdlabError(f"embedding_mse needs the student's and the target's embeddings in one shape, got "
                         f"{tuple(s.shape)} and {tuple(t.shape)} (the bi-encoders' hidden sizes must match)")
    d = F.normalize(s.float(), dim=-1) - F.normalize(t.float(), dim=-1)
    return d.pow(2).sum(-1).mean()
