"""A ranking run: a cross-encoder teacher distilled into a bi-encoder student (``kdlab distill --task ranking``).

1. Read the BEIR folder (``data.load_beir``) and the BM25 top-k of every query (``bm25.candidates``, cached).
2. Training groups: for each (train query, positive) one group ``[positive, negative_1..K]``, the negatives drawn
   (seeded) from the query's BM25 top-``depth`` without its judged positives.
3. Teacher: a cross-encoder (one output) fine-tuned on the groups with a softmax cross-entropy of the positive
   (cached under the teacher cache like a classification teacher), or a ready cross-encoder folder used as is.
   Evaluated by reranking each test query's BM25 top-``rerank``.
4. Student: a bi-encoder copied from the teacher's layers (``student_from=teacher``, the default: the
   ``--student-layers`` / ``--student-init`` choice) or a pretrained encoder (``--set student_from=minilm-l6``).
   Trained with ``margin-mse``, ``listwise-kl`` (teacher scores of each group, computed once) or ``contrastive``
   (in-batch negatives, no teacher). Evaluated over the whole corpus: the corpus is encoded once, then one
   matrix product per query batch.

Options (``--set key=value``): ``doc_len`` (128), ``query_len`` (32), ``negatives`` (3), ``depth`` (30),
``rerank`` (100), ``pooling`` (mean|cls), ``score`` (dot|cosine), ``temperature`` (listwise, 1),
``tau`` (1 for dot, 0.05 for cosine: the contrastive temperature, and a cosine student's scores are divided by it
in margin-mse and listwise-kl so that its margins can reach the teacher's), ``student_from`` (teacher|a model), ``eval_queries`` (all: the
test queries a student is evaluated on), ``teacher_eval`` (50: the test queries, drawn with the seed, on which the
teacher's reranking is evaluated when it is prepared; ``all``, or 0 for none: 300 queries x 100 candidates is
30,000 cross-encoder passes, minutes on a CPU; the demo uses all), ``teacher_kind`` (cross-encoder | fused: BM25 +
the pretrained bi-encoder ``fused_dense``, default minilm-l6, each normalised per query, the weight chosen on a dev
split carved from the training queries; ``kdlab.ranking.fused``; a student ``student_from=teacher`` then starts
from that pretrained bi-encoder).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig, apply_preset
from ..errors import KdlabError
from ..runs.store import Store, teacher_cache_root
from ..tasks import get_task
from . import bm25 as bm25_mod
from .data import RankingData, is_beir, load_beir, take_train_queries
from .losses import group_ce, in_batch_contrastive, listwise_kl, margin_mse_groups
from .metrics import ranking_metrics, run_from_scores
from .models import BiEncoder, base_encoder, clamp_len, cross_scores, model_kind, query_latency, sentence_encoder

from .names import METHODS   # the ranking objectives: margin-mse, listwise-kl, contrastive
DEFAULTS = dict(doc_len=128, query_len=32, negatives=3, depth=30, rerank=100, pooling="mean", score="dot",
                temperature=1.0, tau=None, student_from="teacher", eval_queries=None, teacher_eval=50,
                teacher_kind="cross-encoder", fused_dense="minilm-l6")
TEACHER_KINDS = ("cross-encoder", "fused")
TEACHER_METHOD = "cross-encoder"


def wants_ranking(cfg: RunConfig) -> bool:
    """A ranking run: a ranking method, ``--task ranking``, or a BEIR folder as data."""
    return cfg.method in METHODS or str(cfg.task or "").lower() == "ranking" or is_beir(cfg.data)


def check_ranking(cfg: RunConfig) -> None:
    """One clear line for a classification method on ranking data or a ranking method on other data."""
    if not is_beir(cfg.data):
        who = f"method '{cfg.method}'" if cfg.method in METHODS else "--task ranking"
        what = f"'{cfg.data}' is not one" if cfg.data else "the embedded data is a classification dataset"
        raise KdlabError(f"{who} ranks documents and needs --data a BEIR folder (corpus.jsonl, queries.jsonl, "
                         f"qrels/train.tsv, qrels/test.tsv), but {what}: use a classification method such as kd "
                         "for classification data")
    if cfg.method not in METHODS:
        from ..methods import get
        from ..methods.base import LayerKD
        cls = get(cfg.method)
        if issubclass(cls, LayerKD) or cls.needs_attentions:
            raise KdlabError(f"method '{cfg.method}' compares teacher and student layers position by position, but a "
                             "cross-encoder reads query and document together and a bi-encoder one text at a time, "
                             "so their positions do not correspond: for ranking use --method "
                             f"{', '.join(METHODS)}")
        raise KdlabError(f"method '{cfg.method}' is a classification method but '{cfg.data}' is a ranking dataset "
                         f"(queries, corpus, qrels): use --method {', '.join(METHODS)}")
    if cfg.task and str(cfg.task).lower() != "ranking":
        raise KdlabError(f"method '{cfg.method}' is a ranking method but --task is '{cfg.task}': drop --task or use "
                         "--task ranking")
    refuse_unsupported(cfg)


# training settings the ranking loop does not apply yet (it has no dev evaluation, checkpoints or autocast):
# refused when set, never silently ignored
UNSUPPORTED = {"select": "--select", "patience": "--patience", "tensorboard": "--tensorboard",
               "grad_accum": "--grad-accum", "checkpoint_every": "--checkpoint-every", "teacher_cache": "--teacher-cache",
               "cache_dtype": "--cache-dtype", "length_buckets": "--length-buckets"}


def refuse_unsupported(cfg: RunConfig) -> None:
    """One line for a training flag a ranking run would ignore (``precision`` other than auto/fp32 included)."""
    from ..config import TrainConfig
    default = TrainConfig()
    for field, flag in UNSUPPORTED.items():
        if getattr(cfg.train, field) != getattr(default, field):
            raise KdlabError(f"{flag} does not apply to a ranking run yet (the ranking loop has no dev evaluation, "
                             "checkpoints, autocast or teacher cache): drop it")
    if cfg.train.precision not in ("auto", "fp32"):
        raise KdlabError(f"--precision {cfg.train.precision} does not apply to a ranking run yet (it trains in "
                         "fp32): drop it")


def options(cfg: RunConfig) -> dict:
    unknown = sorted(set(cfg.method_args) - set(DEFAULTS))
    if unknown:
        raise KdlabError(f"unknown ranking option(s) {unknown}: the options are {', '.join(DEFAULTS)}")
    hp = {**DEFAULTS, **cfg.method_args}
    for k in ("doc_len", "query_len", "negatives", "depth", "rerank"):
        v = hp[k]
        if isinstance(v, bool) or not (isinstance(v, int) or isinstance(v, float) and v == int(v)) or v < 1:
            raise KdlabError(f"--set {k} must be a whole number of at least 1 (got {v!r})")
        hp[k] = int(v)
    for k in ("temperature", "tau"):
        if hp[k] is not None and (isinstance(hp[k], bool) or not isinstance(hp[k], (int, float)) or not hp[k] > 0):
            raise KdlabError(f"--set {k} must be a positive number (got {hp[k]!r})")
    if hp["teacher_kind"] not in TEACHER_KINDS:
        raise KdlabError(f"--set teacher_kind must be {' or '.join(TEACHER_KINDS)} (got {hp['teacher_kind']!r})")
    if hp["tau"] is None:
        hp["tau"] = 0.05 if hp["score"] == "cosine" else 1.0
    return hp


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else
                        ("cpu" if name in ("auto", "cpu") else name))


# ---------------------------------------------------------------------------------------------- training data
def make_groups(data: RankingData, cands: dict, qids, negatives: int, depth: int, seed: int) -> list:
    """[(qid, [positive doc index, negative indices...])], one group per (query, positive); negatives drawn from the
    query's BM25 top-``depth`` without its judged positives (with replacement when too few)."""
    rng = np.random.default_rng(seed)
    groups = []
    for qid in qids:
        pos = [data.doc_index[d] for d in data.positives("train", qid)]
        pool = [int(i) for i in cands[qid][0][:depth] if int(i) not in set(pos)]
        if not pool:   # BM25 found only positives: any other document
            pool = [i for i in range(len(data.docs)) if i not in set(pos)] or pos
        for p in pos:
            negs = rng.choice(pool, size=negatives, replace=len(pool) < negatives).tolist()
            groups.append((qid, [p, *map(int, negs)]))
    return groups


def _group_pairs(data: RankingData, groups) -> tuple[list, list]:
    qs = [data.queries[q] for q, ids in groups for _ in ids]
    ds = [data.docs[i] for _, ids in groups for i in ids]
    return qs, ds


def _batches(n: int, size: int, epochs: int, max_steps, seed: int):
    """Shuffled index batches over ``epochs`` (stopping after ``max_steps``): yields (step, epoch, indices)."""
    rng = np.random.default_rng(seed)
    step = 0
    for epoch in range(epochs if max_steps is None else 10 ** 9):
        order = rng.permutation(n)
        for i in range(0, n, size):
            if max_steps is not None and step >= max_steps:
                return
            step += 1
            yield step, epoch, order[i:i + size]


def _optimiser(params, tc, total: int):
    from transformers import get_linear_schedule_with_warmup
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=tc.lr, weight_decay=tc.weight_decay)
    return opt, get_linear_schedule_with_warmup(opt, int(tc.warmup * total), max(1, total))


def _total_steps(n: int, size: int, tc) -> int:
    per_epoch = -(-n // size)
    return min(tc.max_steps, per_epoch * tc.epochs) if tc.max_steps else per_epoch * tc.epochs


# ---------------------------------------------------------------------------------------------- evaluation
def eval_cross(model, tok, data: RankingData, cands: dict, *, split="test", rerank=100, max_len=128, device="cpu",
               qids=None) -> dict:
    """The cross-encoder reranking each query's BM25 top-``rerank``."""
    model.eval()
    qids = qids or data.split_queries(split)
    run = {}
    for q in qids:
        idx = cands[q][0][:rerank]
        s = cross_scores(model, tok, [data.queries[q]] * len(idx), [data.docs[i] for i in idx], max_len=max_len,
                         batch_size=100, device=device).cpu().numpy()
        run.update(run_from_scores([q], data.doc_ids, s[None], k=rerank, candidates=[idx]))
    return ranking_metrics({q: data.qrels[split][q] for q in qids}, run)


def rank_bi(bi: BiEncoder, data: RankingData, qids, *, device="cpu", k: int = 100, doc_emb=None):
    """{qid: {did: score}} of the bi-encoder's top-``k`` over the whole corpus, and the corpus matrix."""
    bi.eval()
    if doc_emb is None:
        doc_emb = bi.encode(data.docs, kind="doc", device=device)
    q_emb = bi.encode([data.queries[q] for q in qids], kind="query", device=device)
    scores = BiEncoder.scores(q_emb, doc_emb).cpu().numpy()
    return run_from_scores(qids, data.doc_ids, scores, k=k), doc_emb


def eval_bi(bi: BiEncoder, data: RankingData, *, split="test", device="cpu", qids=None, doc_emb=None):
    qids = qids or data.split_queries(split)
    run, doc_emb = rank_bi(bi, data, qids, device=device, doc_emb=doc_emb)
    return ranking_metrics({q: data.qrels[split][q] for q in qids}, run), doc_emb


def _eval_qids(data: RankingData, hp: dict, seed: int, key: str = "eval_queries"):
    qids = data.split_queries("test")
    n = hp.get(key)
    n = None if n in (None, "all") else int(n)
    if n is not None and n < len(qids):
        keep = set(np.random.default_rng(seed).choice(len(qids), size=int(n), replace=False).tolist())
        qids = [q for i, q in enumerate(qids) if i in keep]
    return qids


# ---------------------------------------------------------------------------------------------- teacher
def prepare_cross_teacher(cfg: RunConfig, store: Store, data: RankingData, cands: dict, groups, hp: dict, *,
                          log=print):
    """A cross-encoder teacher: a ready folder used as is, the cached fine-tuned one, or fine-tuned now; its
    reranking evaluated on ``teacher_eval`` test queries (again when a cached one was evaluated on fewer).
    Returns (model, tokenizer, teacher run id)."""
    from ..models.core import load_saved, load_teacher, save_model
    from ..runs import prep_lock
    device = _device(cfg.teacher_train.device)
    base = {"teacher": cfg.teacher, "data": cfg.data, "data_identity": data.identity,
            "task_spec": get_task("ranking").to_dict(), "ranking": hp, "model": "cross-encoder"}
    if cfg.teacher_finetuned or model_kind(cfg.teacher) == "cross-encoder":
        model, tok = load_saved(cfg.teacher)
        if model.config.num_labels != 1:
            raise KdlabError(f"the teacher '{cfg.teacher}' has {model.config.num_labels} outputs: a ready "
                             "cross-encoder scores a (query, document) pair with one output")
        run_id = store.create_run("teacher", TEACHER_METHOD, {**base, "ready": True},
                                  name=f"teacher {cfg.teacher} (ready cross-encoder)")
        return _finish_teacher(store, run_id, cfg.teacher, cfg, data, cands, hp, model, tok, device, log)
    tt = dataclasses.asdict(cfg.teacher_train)
    tt.pop("grad_share_every", None)   # logging only: not part of the teacher's identity
    tt.pop("threads", None)            # CPU threads: how fast, not what is trained
    ident = json.dumps({"teacher": cfg.teacher, "data": data.identity, "train": tt, "doc_len": hp["doc_len"],
                        "negatives": hp["negatives"], "depth": hp["depth"], "max_train": cfg.max_train,
                        "seed": cfg.train.seed}, sort_keys=True, default=str)
    key = "ranking-" + hashlib.sha256(ident.encode()).hexdigest()[:16]
    folder = teacher_cache_root(store) / key
    if (folder / "kdlab.json").exists():
        log(f"teacher: reusing the fine-tuned cross-encoder {cfg.teacher} ({folder})")
        return _adopt(store, folder, cfg, data, cands, hp, device, log)
    with prep_lock.held(folder, log=log) as announce:
        if (folder / "kdlab.json").exists():
            return _adopt(store, folder, cfg, data, cands, hp, device, log)
        model, tok = load_teacher(cfg.teacher, 1, trust_remote_code=cfg.trust_remote_code,
                                  seed=cfg.teacher_train.seed)
        model.config.problem_type = "regression"
        model.to(device)
        length = clamp_len(model, hp["doc_len"])
        conf = {**base, "train": tt, "key": key}
        run_id = store.create_run("teacher", TEACHER_METHOD, conf, name=f"teacher {cfg.teacher} (cross-encoder)")
        announce(store.root, run_id)
        try:
            log(f"teacher: fine-tuning the cross-encoder {cfg.teacher} on {len(groups)} groups of "
                f"1 + {hp['negatives']} documents ({run_id})")
            tc = cfg.teacher_train
            size = max(1, tc.batch_size // (1 + hp["negatives"]))
            opt, sched = _optimiser(model.parameters(), tc, _total_steps(len(groups), size, tc))
            torch.manual_seed(tc.seed)
            model.train()
            for step, epoch, b in _batches(len(groups), size, tc.epochs, tc.max_steps, tc.seed):
                qs, ds = _group_pairs(data, [groups[i] for i in b])
                s = cross_scores(model, tok, qs, ds, max_len=length, batch_size=len(qs), device=device, grad=True)
                loss = group_ce(s.view(len(b), -1))
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
                opt.step()
                sched.step()
                store.log_metrics(run_id, step, epoch, {"loss": loss.item()})
            save_model(model, tok, folder, extra={"run_id": run_id, **conf})
        except BaseException as e:
            store.finish(run_id, "failed", message=f"{type(e).__name__}: {e}"[:500])
            raise
        return _finish_teacher(store, run_id, folder, cfg, data, cands, hp, model, tok, device, log)


def _finish_teacher(store, run_id, folder, cfg, data, cands, hp, model, tok, device, log):
    """Size, CPU query latency (reranking BM25's top-``rerank``), the BM25 baseline and the teacher's test
    evaluation of a teacher run; marks it finished. Returns (model, tokenizer, run id)."""
    from ..models.core import count_params, folder_mb
    try:
        model.eval()
        qids = data.split_queries("test")[:3]
        length = clamp_len(model, hp["doc_len"])
        ms = query_latency(cross=model.cpu(), tok=tok, queries=[data.queries[q] for q in qids], rounds=1,
                           cand_docs=[[data.docs[i] for i in cands[q][0][:hp["rerank"]]] for q in qids],
                           cross_len=length)
        model.to(device)
        size = {"params": float(count_params(model)), "layers": float(model.config.num_hidden_layers),
                "hidden": float(model.config.hidden_size), "latency_ms": ms,
                "latency": f"ms/query: rerank top-{hp['rerank']}"}
        if folder is not None and Path(folder).is_dir():
            store.set_artifact(run_id, "model_dir", str(folder))
            size["mb"] = round(folder_mb(folder), 2)
        store.set_artifact(run_id, "size", size)
        if hp.get("teacher_eval") not in (0, "0", "none"):   # BM25 on the queries the teacher is evaluated on
            store.set_artifact(run_id, "bm25", bm25_metrics(data, cands, qids=_eval_qids(data, hp, cfg.train.seed,
                                                                                         "teacher_eval")))
        teacher_eval(store, run_id, model, tok, data, cands, hp, cfg.train.seed, device, log)
    except BaseException as e:
        store.finish(run_id, "failed", message=f"{type(e).__name__}: {e}"[:500])
        raise
    ev = store.final_evals(run_id).get("test") or {}
    store.finish(run_id, "finished", summary={"test": ev.get("ndcg@10")} if ev else {})
    return model, tok, run_id


def teacher_eval(store, run_id, model, tok, data, cands, hp, seed, device="cpu", log=print) -> dict | None:
    """The teacher's test evaluation (reranking BM25's top-``rerank``) on ``hp['teacher_eval']`` queries, logged
    to its run, unless the run already holds one on at least as many queries; 0 = none."""
    if hp.get("teacher_eval") in (0, "0", "none"):
        return None
    qids = _eval_qids(data, hp, seed, "teacher_eval")
    have = store.final_evals(run_id).get("test") or {}
    if have.get("n", 0) >= len(qids):
        return have
    ev = eval_cross(model, tok, data, cands, rerank=hp["rerank"], max_len=clamp_len(model, hp["doc_len"]),
                    device=device, qids=qids)
    store.log_eval(run_id, 0, 0, "test", "in-domain", ev)
    if store.run(run_id)["status"] == "finished":
        store.finish(run_id, "finished", summary={"test": ev["ndcg@10"]})
    log(f"teacher: test nDCG@10 {ev['ndcg@10']:.3f} MRR@10 {ev['mrr@10']:.3f} on {len(qids)} queries "
        f"(reranking BM25 top-{hp['rerank']})")
    return ev


def _adopt(store, folder, cfg, data, cands, hp, device, log):
    """The cached cross-encoder and its finished teacher run in this store (made when missing)."""
    from ..models.core import load_saved
    model, tok = load_saved(folder)
    model.to(device)
    info = json.loads((Path(folder) / "kdlab.json").read_text())
    for r in store.runs(kind="teacher"):
        if r["status"] == "finished" and (r["id"] == info.get("run_id") or r["config"].get("key") == info.get("key")):
            teacher_eval(store, r["id"], model, tok, data, cands, hp, cfg.train.seed, device, log)
            return model, tok, r["id"]
    conf = {**{k: v for k, v in info.items() if k not in ("evals", "run_id")}, "ranking": hp}   # this run's options
    run_id = store.create_run("teacher", TEACHER_METHOD, conf, name=f"teacher {cfg.teacher} (cached)")
    return _finish_teacher(store, run_id, folder, cfg, data, cands, hp, model, tok, device, log)


def prepare_fused_teacher(cfg: RunConfig, store: Store, data: RankingData, cands: dict, hp: dict, *, log=print):
    """The fused teacher (BM25 + the pretrained bi-encoder ``fused_dense``; its weight chosen on a dev split of
    the training queries) and its teacher run, reused when this store has a finished one for the same data and
    dense model; evaluated on every test query (cheap: no cross-encoder). Returns (teacher, run id)."""
    from ..models.core import count_params
    from . import baselines, fused
    from .data import carve_dev
    _, dev = carve_dev(data.split_queries("train"), baselines.DEV_FRAC, baselines.DEV_SEED)
    teacher, table = fused.build(data, dev, cache=bm25_mod.cache_dir(store.root), log=log, dense=hp["fused_dense"])
    key = f"fused-{data.identity}-{hp['fused_dense']}-{baselines.DEV_FRAC}-{baselines.DEV_SEED}"
    for r in store.runs(kind="teacher"):
        if r["status"] == "finished" and r["config"].get("key") == key:
            return teacher, r["id"]
    conf = {"teacher": f"fused:{hp['fused_dense']}", "data": cfg.data, "data_identity": data.identity,
            "task_spec": get_task("ranking").to_dict(), "ranking": hp, "model": "fused", "key": key,
            "weight": teacher.weight, "norm": teacher.norm, "dev_queries": len(dev)}
    run_id = store.create_run("teacher", "fused", conf, name=f"teacher fused BM25 + {hp['fused_dense']} "
                                                            f"(w={teacher.weight:.2f}, {teacher.norm})")
    try:
        qids = data.split_queries("test")
        ev = teacher.evaluate(qids)
        store.set_artifact(run_id, "size", {"params": float(count_params(teacher.bi)),
                                            "latency_ms": teacher.latency_ms(qids[:16]),
                                            "layers": float(teacher.bi.config.num_hidden_layers),
                                            "hidden": float(teacher.bi.config.hidden_size),
                                            "latency": "ms/query: BM25 + encode + dot product over the corpus"})
        store.set_artifact(run_id, "bm25", bm25_metrics(data, cands, qids=qids))
        store.set_artifact(run_id, "fused", {"weight": teacher.weight, "norm": teacher.norm, "dev_queries": len(dev),
                                             "choice": table})
        store.log_eval(run_id, 0, 0, "test", "in-domain", ev)
    except BaseException as e:
        store.finish(run_id, "failed", message=f"{type(e).__name__}: {e}"[:500])
        raise
    store.finish(run_id, "finished", summary={"test": ev["ndcg@10"]})
    log(f"teacher: fused test nDCG@10 {ev['ndcg@10']:.3f} MRR@10 {ev['mrr@10']:.3f} on {len(qids)} queries")
    return teacher, run_id


def bm25_metrics(data: RankingData, cands: dict, split: str = "test", qids=None) -> dict:
    qids = qids or data.split_queries(split)
    run = {q: {data.doc_ids[i]: float(s) for i, s in zip(*cands[q])} for q in qids}
    return ranking_metrics({q: data.qrels[split][q] for q in qids}, run)


# ---------------------------------------------------------------------------------------------- student
def build_bi_encoder(cfg: RunConfig, hp: dict, teacher, ttok) -> BiEncoder:
    from ..models.core import build_student
    if hp["student_from"] == "teacher" and hp["teacher_kind"] == "fused":   # the fused teacher's own encoder
        enc, tok = sentence_encoder(hp["fused_dense"])
    elif hp["student_from"] == "teacher":
        seq = build_student(teacher, layers=cfg.student_layers, init=cfg.student_init,
                            layer_list=cfg.student_layer_list, hidden=cfg.student_hidden, seed=cfg.train.seed)
        enc, tok = base_encoder(seq), ttok
    else:
        enc, tok = sentence_encoder(hp["student_from"])
    return BiEncoder(enc, tok, pooling=hp["pooling"], score=hp["score"], query_len=clamp_len(enc, hp["query_len"]),
                     doc_len=clamp_len(enc, hp["doc_len"]))


def student_loss(method: str, bi: BiEncoder, data: RankingData, groups, t_scores, hp: dict, device):
    qs = [data.queries[q] for q, _ in groups]
    k1 = len(groups[0][1])
    q = bi.encode(qs, kind="query", device=device, grad=True, batch_size=len(qs))
    d = bi.encode([data.docs[i] for _, ids in groups for i in ids], kind="doc", device=device, grad=True,
                  batch_size=len(qs) * k1).view(len(qs), k1, -1)
    if method == "contrastive":   # positives first (row i = query i), then every hard negative of the batch
        return in_batch_contrastive(q, torch.cat([d[:, 0], d[:, 1:].reshape(-1, d.shape[-1])]), hp["tau"])
    s = (q.unsqueeze(1) * d).sum(-1)
    if hp["score"] == "cosine":   # a cosine lies in [-1, 1]: divided by tau (as in the contrastive loss) its margins
        s = s / float(hp["tau"])  # can reach the teacher's (SciFact's fused teacher: mean 3.5, the cosine's 0.27)
    t = t_scores.to(s.device)
    if method == "margin-mse":
        return margin_mse_groups(s, t)
    return listwise_kl(s, t, float(hp["temperature"]))


def distill_ranking(cfg: RunConfig, store: Store | None = None, *, log=print) -> str:
    """Run a ranking distillation (``cfg.method`` in METHODS) and store it; returns the student run id."""
    cfg = apply_preset(cfg)
    store = store or Store()
    hp, data, cands, groups = _setup(cfg, store, log)
    fused_teacher = hp["teacher_kind"] == "fused"
    needs_teacher = cfg.method != "contrastive" or (hp["student_from"] == "teacher" and not fused_teacher)
    teacher = tok = teacher_run = None
    if needs_teacher and fused_teacher:
        teacher, teacher_run = prepare_fused_teacher(cfg, store, data, cands, hp, log=log)
    elif needs_teacher:
        teacher, tok, teacher_run = prepare_cross_teacher(cfg, store, data, cands, groups, hp, log=log)
    device = _device(cfg.train.device)
    conf = cfg.to_dict()
    conf.update(teacher_run=teacher_run, data_identity=data.identity, task_spec=get_task("ranking").to_dict(),
                ranking=hp, dropped_train_queries=data.dropped)
    run_id = store.create_run("student", cfg.method, conf, name=cfg.name, parent=teacher_run)
    try:
        t_scores: dict = {}   # group index -> the teacher's scores of its documents, computed once when first used

        def teacher_scores(b):
            if cfg.method == "contrastive":
                return None
            new = [int(i) for i in b if int(i) not in t_scores]
            if new and fused_teacher:
                s = torch.tensor(teacher.pair_scores([groups[i] for i in new]), dtype=torch.float32)
                t_scores.update(zip(new, s))
            elif new:
                teacher.eval()
                qs, ds = _group_pairs(data, [groups[i] for i in new])
                s = cross_scores(teacher, tok, qs, ds, max_len=clamp_len(teacher, hp["doc_len"]),
                                 device=next(teacher.parameters()).device).cpu().view(len(new), -1)
                t_scores.update(zip(new, s))
            return torch.stack([t_scores[int(i)] for i in b])
        bi = build_bi_encoder(cfg, hp, None if fused_teacher else teacher, tok).to(device)
        tc = cfg.train
        size = max(1, tc.batch_size // (1 + hp["negatives"]))
        total = _total_steps(len(groups), size, tc)
        log(f"{cfg.method}: training a {bi.config.num_hidden_layers}-layer bi-encoder on {len(groups)} groups, "
            f"{total} steps ({run_id})")
        opt, sched = _optimiser(bi.parameters(), tc, total)
        torch.manual_seed(tc.seed)
        store.set_artifact(run_id, "plan", {"total_steps": total, "start": time.time()})
        bi.train()
        t0, step, epoch = time.time(), 0, 0
        for step, epoch, b in _batches(len(groups), size, tc.epochs, tc.max_steps, tc.seed):
            loss = student_loss(cfg.method, bi, data, [groups[i] for i in b], teacher_scores(b), hp, device)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(bi.parameters(), tc.clip)
            opt.step()
            sched.step()
            store.log_metrics(run_id, step, epoch, {"loss": loss.item(), "lr": sched.get_last_lr()[0]})
            if step % 50 == 0:
                log(f"{cfg.method}: step {step}/{total} loss {float(loss):.4f} ({time.time() - t0:.0f} s)")
        ev, doc_emb = eval_bi(bi, data, device=device, qids=_eval_qids(data, hp, tc.seed))
        store.log_eval(run_id, step, epoch + 1, "test", "in-domain", ev)
        out = bi.save(store.folder(run_id) / "student", extra={"run_id": run_id, "method": cfg.method,
                                                               "task_spec": get_task("ranking").to_dict()})
        store.set_artifact(run_id, "model_dir", str(out))
        from ..models.core import count_params, folder_mb
        bi.cpu()
        qids = data.split_queries("test")[:16]
        ms = query_latency(bi=bi, doc_emb=doc_emb.cpu(), queries=[data.queries[q] for q in qids])
        store.set_artifact(run_id, "size", {"params": float(count_params(bi)), "layers": float(bi.config.num_hidden_layers),
                                            "hidden": float(bi.config.hidden_size), "latency_ms": ms,
                                            "latency": "ms/query: encode + dot product over the corpus",
                                            "mb": round(folder_mb(out), 2)})
        store.finish(run_id, "finished", summary={"test": ev["ndcg@10"]})
        log(f"{cfg.method}: test nDCG@10 {ev['ndcg@10']:.3f} MRR@10 {ev['mrr@10']:.3f} R@100 {ev['recall@100']:.3f}, "
            f"{ms:.1f} ms/query")
    except BaseException as e:
        store.record_stop(run_id, e, resumable=False)   # this loop keeps no checkpoint to resume from
        raise
    return run_id


def eval_ranking_run(store: Store, run: dict, data_folder, *, split: str = "test") -> dict:
    """A stored ranking run's model on a BEIR folder's ``split``: a bi-encoder over the whole corpus, a
    cross-encoder reranking BM25's top-``rerank``. Returns {run, data, task, primary, ndcg@10, mrr@10, recall@100, n}."""
    from ..models.core import load_saved
    folder = store.artifact(run["id"], "model_dir")
    if not folder or not Path(folder).exists():
        raise KdlabError(f"run {run['id']} has no saved model (status {run['status']}): evaluate a finished run")
    data = load_beir(data_folder, splits=(split,))
    hp = {**DEFAULTS, **((run.get("config") or {}).get("ranking") or {})}
    if model_kind(folder) == "bi-encoder":
        ev, _ = eval_bi(BiEncoder.load(folder), data, split=split)
    else:
        model, tok = load_saved(folder)
        cands = bm25_mod.candidates(data, hp["rerank"], cache=bm25_mod.cache_dir(store.root))
        ev = eval_cross(model, tok, data, cands, split=split, rerank=hp["rerank"],
                        max_len=clamp_len(model, hp["doc_len"]))
    return {"run": run["id"], "data": str(data_folder), "task": "ranking", "primary": "ndcg@10", **ev,
            "references": _references(store, data_folder, data.name) if split == "test" else []}


def _references(store: Store, data_folder, name: str) -> list:
    """The reference rows beside a test evaluation: measured ones when this store's cache has them (the demo or
    ``python -m kdlab.ranking.baselines`` measures them), and the published rows of the dataset."""
    from . import baselines
    from .reference import published_rows
    try:
        rows = baselines.rows_for(load_beir(data_folder), bm25_mod.cache_dir(store.root))
    except KdlabError:   # a folder without train qrels: no measured rows
        rows = []
    keys = ("label", "ndcg@10", "mrr@10", "recall@100", "source")
    return [{k: r[k] for k in keys if k in r} for r in [*rows, *published_rows(name)]]


def _setup(cfg: RunConfig, store: Store, log):
    check_ranking(cfg)
    hp = options(cfg)
    data = load_beir(cfg.data)
    k = max(hp["rerank"], hp["depth"], bm25_mod.DEFAULT_K)   # at least 100: BM25's own Recall@100
    cands = bm25_mod.candidates(data, k, cache=bm25_mod.cache_dir(store.root), log=log)
    groups = make_groups(data, cands, take_train_queries(data, cfg.max_train, cfg.train.seed), hp["negatives"],
                         hp["depth"], cfg.train.seed)
    return hp, data, cands, groups


def ranking_teacher(cfg: RunConfig, store: Store, *, log=print) -> str:
    """``kdlab teacher`` on a BEIR folder: fine-tune (or reuse) the cross-encoder; returns its run id."""
    cfg = apply_preset(cfg)
    if cfg.method not in METHODS:   # `kdlab teacher` has no --method: the teacher is the same for every method
        cfg = dataclasses.replace(cfg, method="margin-mse")
    hp, data, cands, groups = _setup(cfg, store, log)
    if hp["teacher_kind"] == "fused":
        return prepare_fused_teacher(cfg, store, data, cands, hp, log=log)[1]
    return prepare_cross_teacher(cfg, store, data, cands, groups, hp, log=log)[2]
