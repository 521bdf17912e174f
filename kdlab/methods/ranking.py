"""The ranking objectives as methods of the one training loop (``kdlab distill --task ranking``; docs/ranking.md).

A ranking batch is a set of groups ``[positive, negative_1..K]`` of one training query each
(``kdlab.ranking.adaptor``); the bi-encoder student's features are its scores of the group's documents
(``logits`` [B, 1 + K]) and its query and document embeddings (``extra['q']`` [B, H], ``extra['d']`` [B, 1 + K, H]);
the teacher's are its scores of the same documents.

* ``margin-mse``: Margin-MSE on the teacher's score differences (``kdlab.kd.ranking.margin_mse_groups``);
* ``listwise-kl``: KL between the teacher's and the student's softmax over a query's candidates, with T (with
  ``inbatch``: over every document of the batch, which the fused teacher can score);
* ``contrastive``: in-batch negatives on the qrels, no teacher (the no-KD row).

The two KD methods take two more terms, both off by default: ``alpha_hard`` adds the in-batch contrastive loss on
the qrels (KD on top of the no-KD row's loss: ``alpha_soft * KD + alpha_hard * contrastive``), and ``embed_weight``
adds embedding matching to a bigger bi-encoder ``embed_from`` (``kdlab.kd.ranking.embedding_mse`` on the group's
query and documents: the sentence-transformers layer-reduction recipe for the 3- and 2-layer students that
``keep_layers`` takes from the pretrained bi-encoder); ``transfer_docs`` adds that many corpus documents to each
batch for that term only (an unlabeled transfer set).

The options of a ranking run (lengths, negatives, the BM25 depth, the teacher's kind, ...) are declared here once
as ``Option``s, so ``check_options`` refuses a bad one before any work, as for every method.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import KdlabError
from ..kd.ranking import embedding_mse, group_ce, in_batch_contrastive, listwise_kl, margin_mse_groups
from .base import Method, Option, register, weight


@dataclass(frozen=True)
class CountOrAll(Option):
    """A number of queries, or ``all`` (every query of the split); 0 = none where the help says so."""

    def check(self, key: str, v) -> str | None:
        if v is None or v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            return None
        return f"{key} must be a whole number of queries or 'all', got {v!r} ({self.help})"


def _count(help: str) -> Option:
    return Option("int", help, lo=1)


RANKING_OPTIONS = dict(
    doc_len=_count("tokens of a document (title + text) read by both models"),
    query_len=_count("tokens of a query read by the bi-encoder"),
    negatives=_count("hard negatives per (query, positive) group, drawn from BM25's top-depth"),
    depth=_count("BM25 candidates the hard negatives are drawn from"),
    rerank=_count("BM25 candidates the cross-encoder teacher reranks when it is evaluated"),
    pooling=Option("choice", "the bi-encoder's pooling of token states", values=("mean", "cls")),
    score=Option("choice", "the bi-encoder's score: dot product, or cosine of L2-normalised embeddings",
                 values=("dot", "cosine")),
    tau=Option("float", "contrastive temperature; a cosine student's scores are divided by it in margin-mse and "
               "listwise-kl (empty: 1 for dot, 0.05 for cosine)", lo=0.0, lo_open=True, optional=True),
    student_from=Option("text", "where the bi-encoder starts: 'teacher' (copied teacher layers, --student-layers) or "
                        "a model name/folder (e.g. minilm-l6)"),
    eval_queries=CountOrAll("text", "test queries a student is evaluated on (drawn with the seed; empty = all)",
                            optional=True),
    teacher_eval=CountOrAll("text", "test queries the teacher's reranking is evaluated on when it is prepared "
                            "(all, or 0 for none)"),
    teacher_kind=Option("choice", "cross-encoder (fine-tuned on the groups) or fused (BM25 + a pretrained "
                        "bi-encoder, normalised per query)", values=("cross-encoder", "fused")),
    fused_dense=Option("text", "the fused teacher's pretrained bi-encoder"),
    keep_layers=Option("int", "layers the student keeps of the encoder it starts from, chosen by the skip mapping "
                       "(e.g. 3 of 6: layers 2, 4, 6); empty: all", lo=1, optional=True),
)
RANKING_DEFAULTS = dict(doc_len=128, query_len=32, negatives=3, depth=30, rerank=100, pooling="mean", score="dot",
                        tau=None, student_from="teacher", eval_queries=None, teacher_eval=50,
                        teacher_kind="cross-encoder", fused_dense="minilm-l6", keep_layers=None)


class RankingMethod(Method):
    """A ranking objective on groups of one query's documents (column 0 the positive)."""
    label_kinds = ("ranking",)
    defaults = RANKING_DEFAULTS
    options = RANKING_OPTIONS
    choices = {k: o.values for k, o in RANKING_OPTIONS.items() if o.kind == "choice"}
    accepts_unlabeled = False

    @classmethod
    def resolve_options(cls, args: dict) -> dict:
        hp = super().resolve_options(args)
        if hp["tau"] is None:
            hp["tau"] = 0.05 if hp["score"] == "cosine" else 1.0
        return hp

    def __init__(self, ctx, **overrides):
        super().__init__(ctx, **overrides)
        if self.hp["tau"] is None:
            self.hp["tau"] = 0.05 if self.hp["score"] == "cosine" else 1.0

    def student_scores(self, s) -> torch.Tensor:
        """The student's group scores; a cosine lies in [-1, 1], so divided by tau (as in the contrastive loss) its
        margins can reach the teacher's (SciFact's fused teacher: mean 3.5, the cosine's 0.27)."""
        return s.logits.float() / float(self.hp["tau"]) if self.hp["score"] == "cosine" else s.logits.float()

    @staticmethod
    def batch_docs(s) -> torch.Tensor:
        """Every document of the batch [B (1 + K), H]: the positives first (row i = query i's), then the negatives."""
        d = s.extra["d"].float()
        return torch.cat([d[:, 0], d[:, 1:].reshape(-1, d.shape[-1])])

    def contrastive(self, s) -> torch.Tensor:
        """The in-batch contrastive loss of the batch's queries against every document of the batch."""
        return in_batch_contrastive(s.extra["q"].float(), self.batch_docs(s), float(self.hp["tau"]))

    def inbatch_scores(self, s) -> torch.Tensor:
        """The student's scores of every query against every document of the batch [B, B (1 + K)] (a cosine
        divided by tau, as ``student_scores``)."""
        sc = s.extra["q"].float() @ self.batch_docs(s).T
        return sc / float(self.hp["tau"]) if self.hp["score"] == "cosine" else sc


KD_OPTIONS = dict(
    alpha_soft=weight("weight of the teacher's (KD) term"),
    alpha_hard=weight("weight of the in-batch contrastive loss on the qrels added to KD (the no-KD row's loss); "
                      "0 = KD alone"),
    embed_weight=weight("weight of matching embed_from's embeddings of the group's query and documents "
                        "(2 (1 - cosine) per text); 0 = off"),
    embed_from=Option("text", "the bigger bi-encoder whose embeddings the student matches when embed_weight > 0 "
                      "(its hidden size must be the student's)"),
    transfer_docs=Option("int", "corpus documents drawn into each batch for the embedding-matching term only (an "
                         "unlabeled transfer set: no query, no label); 0 = none", lo=0),
)


class RankingKD(RankingMethod):
    """A ranking KD objective: ``alpha_soft * KD + alpha_hard * contrastive + embed_weight * embedding_mse``."""
    defaults = dict(alpha_soft=1.0, alpha_hard=0.0, embed_weight=0.0, embed_from="minilm-l6", transfer_docs=0)
    options = KD_OPTIONS
    weights = ("alpha_soft", "alpha_hard", "embed_weight")
    term = "kd"

    def kd_term(self, s, t, state) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, s, t, batch, state):
        kd = self.kd_term(s, t, state)
        parts = {self.term: self.w("alpha_soft", state) * kd}
        if self.w("alpha_hard", state) > 0:
            parts["contrastive"] = self.w("alpha_hard", state) * self.contrastive(s)
        if self.w("embed_weight", state) > 0:
            if "q" not in t.extra:
                raise KdlabError(f"embed_weight > 0 needs the target bi-encoder's embeddings ({self.hp['embed_from']}), "
                                 "which this teacher did not give: run through kdlab distill --task ranking")
            pairs = [(s.extra[k], t.extra[k]) for k in ("q", "d", "x") if k in s.extra and k in t.extra]
            parts["embed"] = self.w("embed_weight", state) * sum(embedding_mse(a, b) for a, b in pairs) / len(pairs)
        total = sum(parts.values())
        if len(parts) > 1:
            self.record_terms(**parts)
        return total, {k: v.detach() for k, v in parts.items()}


@register
class MarginMSE(RankingKD):
    name = "margin-mse"
    summary = "Margin-MSE on the teacher's score differences (positive - negative)"
    term = "margin_mse"

    def kd_term(self, s, t, state):
        return margin_mse_groups(self.student_scores(s), t.logits.float())


@register
class ListwiseKL(RankingKD):
    name = "listwise-kl"
    summary = "KL between the teacher's and the student's softmax over a query's candidates, with T"
    defaults = {"temperature": 1.0, "inbatch": False}
    options = dict(inbatch=Option("bool", "the softmax over every document of the batch (each query's group and the "
                                  "other queries' documents: in-batch negatives) instead of the query's own group; "
                                  "needs the fused teacher, which scores any pair"))
    term = "listwise_kl"

    def kd_term(self, s, t, state):
        if self.hp["inbatch"]:
            if "inbatch" not in t.extra:
                raise KdlabError("listwise-kl inbatch=true needs a teacher that scores every query against every "
                                 "document of the batch: use --set teacher_kind=fused (a cross-encoder scores its "
                                 "groups only)")
            return listwise_kl(self.inbatch_scores(s), t.extra["inbatch"].float(), self.w("temperature", state))
        return listwise_kl(self.student_scores(s), t.logits.float(), self.w("temperature", state))


@register
class Contrastive(RankingMethod):
    name = "contrastive"
    summary = "in-batch negatives contrastive loss on the qrels: the no-teacher baseline"
    uses_teacher = False

    def loss(self, s, t, batch, state):
        loss = self.contrastive(s)
        return loss, {"contrastive": loss.detach()}


RANKING_METHODS = (MarginMSE.name, ListwiseKL.name, Contrastive.name)   # the student objectives of a ranking run


class GroupCE(RankingMethod):
    """The cross-encoder teacher's fine-tuning (not a student method, so not registered): the softmax cross-entropy
    of each group's positive among its documents (``kdlab.kd.ranking.group_ce``)."""
    name = "cross-encoder"
    summary = "the cross-encoder teacher: cross-entropy of the positive among its group's documents"
    uses_teacher = False

    def loss(self, s, t, batch, state):
        loss = group_ce(s.logits)
        return loss, {"group_ce": loss.detach()}
