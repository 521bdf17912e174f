"""Ranking as a task of the one training loop (``kdlab.engine.distill.train``): its batches, its models' outputs and its
metrics. The losses are methods (``kdlab.methods.ranking``).

* ``RankingBundle`` is what the loop reads as its data: ``train`` the training groups (one per (query, positive):
  ``[positive, negative_1..K]``), the evaluation splits ``dev`` (training queries carved off with a fixed seed,
  never trained on: ``--select dev:ndcg@10``) and ``test`` (the test qrels: reported, never selected on), and
  ``adaptor``, the loop's task hooks.
* ``RankingAdaptor``: a batch is ``B`` groups tokenised for the bi-encoder (``q_*`` [B, Lq], ``d_*`` [B, 1 + K, Ld],
  ``idx`` the group ids, ``attention_mask`` the queries' mask, ``labels`` zeros: the positive is column 0), ``B`` =
  ``--batch-size`` // (1 + K) (``--batch-size`` counts documents, as before); its evaluation ranks the whole corpus
  for every dev and test query (the corpus encoded once per evaluation) and keeps the per-query metrics in
  ``predictions.npz`` for a study's paired bootstrap over queries.
* ``GroupTeacher``: a teacher (a cross-encoder, or the fused BM25 + dense scorer) as a module whose features are its
  scores of each group's documents, looked up by ``idx`` (so the loop's per-example teacher cache keeps them);
  with ``EmbedTargets`` also a bigger bi-encoder's embeddings of the group's query and documents (``extra['q']``,
  ``extra['d']``) for the embedding-matching term (``embed_weight``).
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from ..records import Features
from ..tasks import get_task
from .data import RankingData
from .metrics import per_query_metrics, ranking_metrics, run_from_scores
from .models import BiEncoder, CrossEncoder, clamp_len, cross_scores


# ---------------------------------------------------------------------------------------------- data
class GroupSplit:
    """The training groups [(qid, [doc indices])]; ``texts`` / ``labels`` describe each group for the teacher
    cache's identity (the query's text, the group's document indices)."""

    def __init__(self, data: RankingData, groups: list):
        self.groups = groups
        self.texts = [data.queries[q] for q, _ in groups]
        self.labels = [",".join(map(str, ids)) for _, ids in groups]
        self.texts_b = None

    def __len__(self):
        return len(self.groups)


class RankingBundle:
    """The loop's data for a ranking run (see the module docstring). ``splits``: {split: query ids}; ``dev``
    queries are judged by the train qrels; ``cands`` (BM25's candidates) and ``rerank``: what a cross-encoder
    reranks when it is evaluated."""

    def __init__(self, data: RankingData, groups: list, splits: dict, identity: str, *, cands=None,
                 rerank: int = 100):
        self.data, self.groups = data, groups
        self.train = GroupSplit(data, groups)
        self.splits = {k: v for k, v in splits.items() if v}
        self.task = get_task("ranking")
        self.identity = identity
        self.cands, self.rerank = cands, rerank
        self.adaptor = RankingAdaptor(self)
        first = next(iter(self.splits.values()), [])
        self.dev = SimpleNamespace(texts=[data.queries[q] for q in first], texts_b=None)

    def num_labels(self) -> int:
        return 1

    def eval_splits(self) -> dict:
        return dict(self.splits)


# ---------------------------------------------------------------------------------------------- evaluation
def rank_bi(bi: BiEncoder, data: RankingData, qids, *, device="cpu", k: int = 100, doc_emb=None):
    """{qid: {did: score}} of the bi-encoder's top-``k`` over the whole corpus, and the corpus matrix."""
    bi.eval()
    if doc_emb is None:
        doc_emb = bi.encode(data.docs, kind="doc", device=device)
    q_emb = bi.encode([data.queries[q] for q in qids], kind="query", device=device)
    scores = BiEncoder.scores(q_emb, doc_emb).float().cpu().numpy()
    return run_from_scores(qids, data.doc_ids, scores, k=k), doc_emb


def eval_bi(bi: BiEncoder, data: RankingData, *, split="test", device="cpu", qids=None, doc_emb=None):
    qids = qids or data.split_queries(split)
    run, doc_emb = rank_bi(bi, data, qids, device=device, doc_emb=doc_emb)
    return ranking_metrics({q: data.qrels[split][q] for q in qids}, run), doc_emb


def eval_cross(model, tok, data: RankingData, cands: dict, *, split="test", rerank=100, max_len=128, device="cpu",
               qids=None) -> dict:
    """The cross-encoder reranking each query's BM25 top-``rerank``."""
    return ranking_metrics(*_cross_run(model, tok, data, cands, split=split, rerank=rerank, max_len=max_len,
                                       device=device, qids=qids))


def _cross_run(model, tok, data, cands, *, split, rerank, max_len, device, qids=None):
    model.eval()
    qids = qids or data.split_queries(split)
    run = {}
    for q in qids:
        idx = cands[q][0][:rerank]
        s = cross_scores(model, tok, [data.queries[q]] * len(idx), [data.docs[i] for i in idx], max_len=max_len,
                         batch_size=100, device=device).cpu().numpy()
        run.update(run_from_scores([q], data.doc_ids, s[None], k=rerank, candidates=[idx]))
    return {q: data.qrels[split][q] for q in qids}, run


class RankingAdaptor:
    """The loop's task hooks for ranking (``kdlab.engine.distill.Adaptor`` is the classification one)."""

    def __init__(self, bundle: RankingBundle):
        self.bundle = bundle
        self.doc_emb = None          # the last evaluation's corpus matrix (the run's latency is measured on it)

    def batch_rows(self, cfg) -> int:
        k1 = len(self.bundle.groups[0][1]) if self.bundle.groups else 1
        return max(1, cfg.batch_size // k1)

    def loader(self, loop, seed: int):
        """The epoch's batches of groups, in an order seeded by ``seed``, tokenised by the model
        (``group_batch``: a bi-encoder's queries and documents apart, a cross-encoder's pairs together)."""
        b = self.bundle
        rows = self.batch_rows(loop.cfg)
        order = np.random.default_rng(seed).permutation(len(b.groups))
        extra = int((getattr(loop.method, "hp", None) or {}).get("transfer_docs") or 0)
        for i in range(0, len(order), rows):
            idx = order[i:i + rows]
            batch = loop.student.group_batch(b.data, [b.groups[j] for j in idx])
            batch.update(labels=torch.zeros(len(idx), dtype=torch.long), idx=torch.as_tensor(idx, dtype=torch.long))
            if extra:   # corpus documents for the embedding term, drawn from (seed, batch): a resumed run sees the same
                pick = np.random.default_rng([seed, i]).choice(len(b.data.docs), size=min(extra, len(b.data.docs)),
                                                                replace=False)
                batch.update(loop.student.transfer_batch(b.data, pick))
            yield batch

    def teacher_outputs(self, loop):
        return None   # no per-example agreement metric for ranking

    def evaluate(self, loop):
        """nDCG@10, MRR@10, Recall@100 on every evaluation split (the corpus encoded once); per-query values."""
        b, model = self.bundle, loop.student
        evals, per = {}, {}
        self.doc_emb = None
        for split, qids in b.splits.items():
            qrel_split = "train" if split == "dev" else "test"
            if isinstance(model, CrossEncoder):   # reranking BM25's top-rerank
                qrels, run = _cross_run(model.model, model.tokenizer, b.data, b.cands, split=qrel_split,
                                        rerank=b.rerank, max_len=model.max_len, device=loop.device, qids=qids)
            else:   # the whole corpus, encoded once
                run, self.doc_emb = rank_bi(model, b.data, qids, device=loop.device, doc_emb=self.doc_emb)
                qrels = {q: b.data.qrels[qrel_split][q] for q in qids}
            evals[split] = ranking_metrics(qrels, run)
            per[split] = (qids, per_query_metrics(qrels, run))
        return evals, per

    def save_predictions(self, path, loop, outputs):
        """Per split ``<split>/<metric>`` [n queries] and ``<split>/labels`` (the query ids), written atomically."""
        arrays = {}
        for split, (qids, per) in outputs.items():
            arrays[f"{split}/labels"] = np.asarray(qids, dtype=str)
            for metric, values in per.items():
                arrays[f"{split}/{metric}"] = np.asarray([values.get(q, 0.0) for q in qids], dtype=np.float64)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- the teacher
class EmbedTargets:
    """A bigger bi-encoder's embeddings, the targets of the embedding-matching term: its corpus matrix ``doc_emb``
    [n_docs, H] (cached on disk, ``kdlab.ranking.embcache``) and its query embeddings, encoded once per query."""

    def __init__(self, bi: BiEncoder, doc_emb: torch.Tensor, data: RankingData):
        self.bi, self.doc_emb, self.data = bi, doc_emb, data
        self.q = {}

    def queries(self, qids) -> torch.Tensor:
        new = [q for q in dict.fromkeys(qids) if q not in self.q]
        if new:
            self.q.update(zip(new, self.bi.encode([self.data.queries[q] for q in new], kind="query")))
        return torch.stack([self.q[q] for q in qids]).float()

    def docs(self, groups) -> torch.Tensor:
        return torch.stack([torch.as_tensor(self.doc_emb[list(ids)]) for _, ids in groups]).float()


class GroupTeacher(nn.Module):
    """A teacher whose features are its scores [B, 1 + K] of the batch's groups (``batch['idx']``): a cross-encoder
    (``model``, ``tok``: each (query, document) pair read together) or the fused teacher (``fused``); with
    ``targets`` (``EmbedTargets``) also the target embeddings ``extra['q']`` [B, H], ``extra['d']`` [B, 1 + K, H]; the
    fused teacher also scores every query against every document of the batch, ``extra['inbatch']`` [B, B (1 + K)]
    (the positives first, then the negatives, as ``RankingMethod.inbatch_scores`` orders them)."""

    def __init__(self, groups: list, data: RankingData, *, model=None, tok=None, doc_len: int = 128, fused=None,
                 targets: EmbedTargets | None = None):
        super().__init__()
        self.groups, self.data, self.tok, self.fused = groups, data, tok, fused
        self.model = model
        self.max_len = clamp_len(model, doc_len) if model is not None else doc_len
        self.targets = targets
        # the per-example cache keeps each group's scores only, not the target embeddings nor the fused teacher's
        # in-batch scores (which are cheap: its full rows are kept per query)
        self.uncached = targets is not None or fused is not None

    @property
    def config(self):
        return (self.model if self.model is not None else self.fused.bi).config

    def kd_features(self, batch: dict, need) -> Features:
        groups = [self.groups[int(i)] for i in batch["idx"].tolist()]
        if self.fused is not None:
            s = torch.tensor(self.fused.pair_scores(groups), dtype=torch.float32)
        else:
            qs = [self.data.queries[q] for q, ids in groups for _ in ids]
            ds = [self.data.docs[i] for _, ids in groups for i in ids]
            s = cross_scores(self.model, self.tok, qs, ds, max_len=self.max_len,
                             device=next(self.model.parameters()).device).view(len(groups), -1)
        mask = batch["attention_mask"]
        extra = {}
        if self.fused is not None:   # every query against every document of the batch (in-batch KD)
            docs = [ids[0] for _, ids in groups] + [j for _, ids in groups for j in ids[1:]]
            extra["inbatch"] = torch.tensor(self.fused.full([q for q, _ in groups])[:, docs],
                                            dtype=torch.float32).to(mask.device)
        if self.targets is not None:
            extra.update(q=self.targets.queries([q for q, _ in groups]).to(mask.device),
                         d=self.targets.docs(groups).to(mask.device))
            if "x_idx" in batch:   # the batch's transfer documents (``transfer_docs``)
                x = torch.as_tensor(self.targets.doc_emb[batch["x_idx"].cpu().numpy()])
                extra["x"] = x.float().to(mask.device)
        return Features(logits=s.float().to(mask.device), mask=mask, extra=extra)
