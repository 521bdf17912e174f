"""A ranking run: a cross-encoder teacher distilled into a bi-encoder student (``kdlab distill --task ranking``).

1. Read the BEIR folder (``data.load_beir``) and the BM25 top-k of every query (``bm25.candidates``, cached).
2. Dev queries: ``DEV_FRAC`` of the training queries (fixed seed), never trained on (``--select dev:ndcg@10``).
   Training groups: for each other (train query, positive) one group ``[positive, negative_1..K]``, the negatives
   drawn (seeded) from the query's BM25 top-``depth`` without its judged positives.
3. Teacher: a cross-encoder (one output) fine-tuned on the groups with a softmax cross-entropy of the positive by the
   one loop (``fine_tune_cross``; cached under the teacher cache like a classification teacher), or a ready
   cross-encoder folder used as is. Evaluated by reranking each test query's BM25 top-``rerank``.
4. Student: a bi-encoder copied from the teacher's layers (``student_from=teacher``, the default: the
   ``--student-layers`` / ``--student-init`` choice) or a pretrained encoder (``--set student_from=minilm-l6``).
   Trained by the one loop (``kdlab.engine.distill.train`` with ``kdlab.ranking.adaptor``: resume, cancel, select,
   precision, tensorboard) with ``margin-mse``, ``listwise-kl`` (teacher scores of each group, kept by the loop's
   teacher cache) or ``contrastive`` (in-batch negatives, no teacher): ``kdlab.methods.ranking``. Evaluated over
   the whole corpus on the dev and test queries: the corpus is encoded once, then one matrix product.

Options (``--set key=value``, declared and checked in ``kdlab.methods.ranking``): ``doc_len`` (128), ``query_len`` (32), ``negatives`` (3), ``depth`` (30),
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
from pathlib import Path

import numpy as np
import torch

from ..config import RunConfig, apply_preset
from ..errors import KdlabError
from ..runs.prep_lock import open_student_run
from ..runs.run_record import record_models, recording
from ..runs.store import Store, teacher_cache_root
from ..tasks import get_task
from . import bm25 as bm25_mod
from .adaptor import GroupTeacher, RankingBundle, eval_bi, eval_cross, rank_bi  # noqa: F401  (re-exported)
from .data import DEV_FRAC, DEV_SEED, RankingData, carve_dev, is_beir, load_beir, take_train_queries
from .metrics import ranking_metrics, run_from_scores
from .models import (BiEncoder, CrossEncoder, base_encoder, clamp_len, keep_layers, model_kind, query_latency,
                     sentence_encoder)

from ..methods.ranking import RANKING_DEFAULTS as DEFAULTS
from ..methods.ranking import RANKING_METHODS as METHODS   # the ranking objectives: margin-mse, listwise-kl, contrastive
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
    if cfg.train.select:
        from ..engine.selection import parse_select
        split, metric = parse_select(cfg.train.select)
        if split != "dev":
            raise KdlabError(f"--select {cfg.train.select}: a ranking run selects on its dev queries (carved from the "
                             "training queries); the test qrels are never used for selection: use --select "
                             f"dev:{metric if metric in get_task('ranking').metrics else 'ndcg@10'}")


def data_seed(cfg: RunConfig) -> int:
    """The seed of the training queries drawn (``--max-train``), their negatives and the evaluated test queries:
    ``data_seed`` when set (a study: every seed on the same data and teacher), else the run's seed."""
    return cfg.train.seed if cfg.data_seed is None else cfg.data_seed


# run settings that do not apply to a ranking run: refused when set, never silently ignored
NOT_FOR_RANKING = {
    "length_buckets": ("--length-buckets", "the bi-encoder pads each batch of queries and documents itself"),
}
RUN_NOT_FOR_RANKING = {
    "teachers": ("--teachers", "a ranking run has one teacher (--teacher, or --set teacher_kind=fused)"),
    "teacher_logits": ("--teacher-logits", "the teacher scores (query, document) pairs"),
    "ood": ("--ood", "a ranking run is evaluated on the folder's dev and test queries"),
    "ood_map": ("--ood-map", "a ranking run has no labels to map"),
    "text_col": ("--text-col", "a BEIR folder names its fields itself"),
    "label_col": ("--label-col", "a BEIR folder's labels are its qrels"),
    "label_kind": ("--label-kind", "a BEIR folder's labels are its qrels"),
    "max_eval": ("--max-eval", "use --set eval_queries=N"),
    "transfer": ("--transfer", "a ranking run learns from its training queries' groups"),
    "augment": ("--augment", "a ranking run learns from its training queries' groups"),
    "student": ("--student", "use --set student_from=NAME"),
    "student_narrow_init": ("--student-narrow-init", "the bi-encoder is copied from the teacher's layers"),
}


def refuse_unsupported(cfg: RunConfig) -> None:
    """One line for a run setting that does not apply to a ranking run."""
    from ..config import TrainConfig
    default, run_default = TrainConfig(), RunConfig()
    for field, (flag, why) in NOT_FOR_RANKING.items():
        if getattr(cfg.train, field) != getattr(default, field):
            raise KdlabError(f"{flag} does not apply to a ranking run ({why}): drop it")
    for field, (flag, why) in RUN_NOT_FOR_RANKING.items():
        if getattr(cfg, field) not in (getattr(run_default, field), None, [], (), {}, False):
            raise KdlabError(f"{flag} does not apply to a ranking run ({why}): drop it")


def options(cfg: RunConfig) -> dict:
    """The run's ranking options: the method's defaults overridden by ``--set`` (checked by the method)."""
    from ..methods import get
    return get(cfg.method).resolve_options(cfg.method_args)


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
                          dev=(), log=print):
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
                        "seed": data_seed(cfg), "dev": [DEV_FRAC, DEV_SEED]}, sort_keys=True, default=str)
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
        conf = {**base, "train": tt, "key": key}
        run_id = store.create_run("teacher", TEACHER_METHOD, conf, name=f"teacher {cfg.teacher} (cross-encoder)")
        announce(store.root, run_id)
        try:
            log(f"teacher: fine-tuning the cross-encoder {cfg.teacher} on {len(groups)} groups of "
                f"1 + {hp['negatives']} documents ({run_id})")
            res = fine_tune_cross(model, tok, data, cands, groups, dev, hp, cfg.teacher_train, store, run_id)
            if res.status != "finished":
                store.finish(run_id, res.status, res.message)
                raise KdlabError(f"the cross-encoder teacher's fine-tuning was {res.status}")
            save_model(model, tok, folder, extra={"run_id": run_id, **conf})
        except BaseException as e:
            if store.run(run_id)["status"] == "running":
                store.finish(run_id, "failed", message=f"{type(e).__name__}: {e}"[:500])
            raise
        return _finish_teacher(store, run_id, folder, cfg, data, cands, hp, model, tok, device, log)


def fine_tune_cross(model, tok, data: RankingData, cands: dict, groups, dev, hp: dict, tc, store, run_id):
    """The cross-encoder's fine-tuning on the groups (softmax cross-entropy of the positive) by the one loop, its
    dev queries reranked after each epoch (``kdlab.ranking.adaptor``); no resume checkpoints (a teacher is made
    again by `kdlab teacher`). Returns the loop's ``Result``."""
    from ..engine.distill import train
    from ..methods.ranking import GroupCE
    ce = CrossEncoder(model, tok, hp["doc_len"])
    bundle = RankingBundle(data, groups, {"dev": dev}, json.dumps({"data": data.identity, "teacher": "fine-tuning"}),
                           cands=cands, rerank=hp["rerank"])
    tc = dataclasses.replace(tc, checkpoint_each_epoch=False, checkpoint_every=0, select=None, patience=0)
    return train(ce, tok, bundle, GroupCE, cfg=tc, store=store, run_id=run_id)


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
            store.set_artifact(run_id, "bm25", bm25_metrics(data, cands, qids=_eval_qids(data, hp, data_seed(cfg),
                                                                                         "teacher_eval")))
        teacher_eval(store, run_id, model, tok, data, cands, hp, data_seed(cfg), device, log)
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
            teacher_eval(store, r["id"], model, tok, data, cands, hp, data_seed(cfg), device, log)
            return model, tok, r["id"]
    conf = {**{k: v for k, v in info.items() if k not in ("evals", "run_id")}, "ranking": hp}   # this run's options
    run_id = store.create_run("teacher", TEACHER_METHOD, conf, name=f"teacher {cfg.teacher} (cached)")
    return _finish_teacher(store, run_id, folder, cfg, data, cands, hp, model, tok, device, log)


def prepare_fused_teacher(cfg: RunConfig, store: Store, data: RankingData, cands: dict, hp: dict, *, log=print):
    """The fused teacher (BM25 + the pretrained bi-encoder ``fused_dense``; its weight chosen on a dev split of
    the training queries) and its teacher run, reused when this store has a finished one for the same data and
    dense model; evaluated on every test query (cheap: no cross-encoder). Returns (teacher, run id)."""
    from ..models.core import count_params
    from . import fused
    _, dev = carve_dev(data.split_queries("train"), DEV_FRAC, DEV_SEED)
    teacher, table = fused.build(data, dev, cache=bm25_mod.cache_dir(store.root), log=log, dense=hp["fused_dense"])
    key = f"fused-{data.identity}-{hp['fused_dense']}-{DEV_FRAC}-{DEV_SEED}"
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
    if hp.get("keep_layers"):
        enc = keep_layers(enc, int(hp["keep_layers"]))
    return BiEncoder(enc, tok, pooling=hp["pooling"], score=hp["score"], query_len=clamp_len(enc, hp["query_len"]),
                     doc_len=clamp_len(enc, hp["doc_len"]))


def embed_targets(store: Store, data: RankingData, hp: dict, fused, *, log=print):
    """The embedding-matching targets when the method's ``embed_weight`` > 0: the bi-encoder ``embed_from`` (the
    fused teacher's own when it is the same model) and its corpus matrix, cached on disk; else None."""
    if not float(hp.get("embed_weight") or 0):
        return None
    from .adaptor import EmbedTargets
    if fused is not None and hp["embed_from"] == hp["fused_dense"]:
        return EmbedTargets(fused.bi, fused.doc_emb, data)
    from .embcache import corpus_embeddings
    from .reference import pretrained_encoder
    bi, key = pretrained_encoder(hp["embed_from"])
    doc_emb = corpus_embeddings(bi, data.docs, key=key, identity=data.identity, cache=bm25_mod.cache_dir(store.root),
                                log=log)
    return EmbedTargets(bi, doc_emb, data)


def distill_ranking(cfg: RunConfig, store: Store | None = None, *, log=print, resume: str | None = None,
                    on_create=None, keep_checkpoints: bool = False) -> str:
    """Run a ranking distillation (``cfg.method`` a ranking method) through the one training loop
    (``kdlab.engine.distill.train`` with ``kdlab.ranking.adaptor``) and store it; returns the student run id.
    ``resume``: a stopped run's id, continued from its last checkpoint (``kdlab.engine.pipeline.resume_run``)."""
    from ..runs.disk import drop_checkpoint
    from ..engine.distill import train
    from ..methods import get
    cfg = apply_preset(cfg)
    store = store or Store()
    store.check_writable()
    hp, data, cands, groups, dev = _setup(cfg, store, log)
    method_cls = get(cfg.method)
    fused_teacher = hp["teacher_kind"] == "fused"
    needs_teacher = method_cls.uses_teacher or (hp["student_from"] == "teacher" and not fused_teacher)
    teacher = tok = teacher_run = group_teacher = None
    if needs_teacher and fused_teacher:
        teacher, teacher_run = prepare_fused_teacher(cfg, store, data, cands, hp, log=log)
    elif needs_teacher:
        teacher, tok, teacher_run = prepare_cross_teacher(cfg, store, data, cands, groups, hp, dev=dev, log=log)
    if method_cls.uses_teacher:
        targets = embed_targets(store, data, hp, teacher if fused_teacher else None, log=log)
        group_teacher = GroupTeacher(groups, data, fused=teacher, doc_len=hp["doc_len"], targets=targets) \
            if fused_teacher else GroupTeacher(groups, data, model=teacher, tok=tok, doc_len=hp["doc_len"],
                                               targets=targets)
    bi = build_bi_encoder(cfg, hp, None if fused_teacher else teacher, tok)
    ident = json.dumps({"data": data.identity, "teacher": teacher_run, "hp": hp, "dev": len(dev)}, sort_keys=True,
                       default=str)
    bundle = RankingBundle(data, groups, {"dev": dev, "test": _eval_qids(data, hp, data_seed(cfg))}, ident)
    conf = cfg.to_dict()
    conf.update(teacher_run=teacher_run, data_identity=data.identity, task_spec=get_task("ranking").to_dict(),
                ranking=hp, dropped_train_queries=data.dropped, dev_queries=len(dev))
    run_id, checkpoint, lock = open_student_run(store, method=cfg.method, conf=conf, name=cfg.name, parent=teacher_run,
                                                resume=resume, on_create=on_create)
    with recording(store, run_id, lock):   # a kill or error is recorded on the run; the lock released
        log(f"{cfg.method}: training a {bi.config.num_hidden_layers}-layer bi-encoder on {len(groups)} groups "
            f"({len(dev)} dev queries kept for selection; {run_id})")
        res = train(bi, bi.tokenizer, bundle, method_cls, teacher=group_teacher, cfg=cfg.train,
                    method_args=cfg.method_args, store=store, run_id=run_id, resume=checkpoint)
        out = bi.save(store.folder(run_id) / "student", extra={"run_id": run_id, "method": cfg.method,
                                                               "task_spec": get_task("ranking").to_dict()})
        record_models(store, run_id, res, out)
        _size(store, run_id, bi, bundle, data, out)
        ev = res.evals.get("test") or {}
        store.finish(run_id, res.status, res.message,
                     summary={s: m["ndcg@10"] for s, m in res.evals.items() if "ndcg@10" in m})
        if ev:
            log(f"{cfg.method}: test nDCG@10 {ev['ndcg@10']:.3f} MRR@10 {ev['mrr@10']:.3f} "
                f"R@100 {ev['recall@100']:.3f}")
        if res.status == "finished" and not keep_checkpoints:
            drop_checkpoint(store.folder(run_id) / "checkpoint")
    return run_id


def _size(store, run_id, bi: BiEncoder, bundle: RankingBundle, data: RankingData, out) -> None:
    """Parameters, MB and CPU ms per query (encode + dot product over the last evaluation's corpus matrix)."""
    from ..models.core import count_params, folder_mb
    doc_emb = bundle.adaptor.doc_emb
    bi.cpu()
    if doc_emb is None:
        doc_emb = bi.encode(data.docs, kind="doc")
    qids = data.split_queries("test")[:16]
    ms = query_latency(bi=bi, doc_emb=doc_emb.float().cpu(), queries=[data.queries[q] for q in qids])
    store.set_artifact(run_id, "size", {"params": float(count_params(bi)), "layers": float(bi.config.num_hidden_layers),
                                        "hidden": float(bi.config.hidden_size), "latency_ms": ms,
                                        "latency": "ms/query: encode + dot product over the corpus",
                                        "mb": round(folder_mb(out), 2)})


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
    """Checks, options, the data, BM25's candidates, the dev queries (carved from the training queries with a
    fixed seed: never trained on, by the teacher or the student) and the training groups of the other ones."""
    check_ranking(cfg)
    hp = options(cfg)
    data = load_beir(cfg.data)
    k = max(hp["rerank"], hp["depth"], bm25_mod.DEFAULT_K)   # at least 100: BM25's own Recall@100
    cands = bm25_mod.candidates(data, k, cache=bm25_mod.cache_dir(store.root), log=log)
    train_q, dev = carve_dev(data.split_queries("train"), DEV_FRAC, DEV_SEED)
    train_q = take_train_queries(train_q, cfg.max_train, data_seed(cfg))
    groups = make_groups(data, cands, train_q, hp["negatives"], hp["depth"], data_seed(cfg))
    return hp, data, cands, groups, dev


def ranking_teacher(cfg: RunConfig, store: Store, *, log=print) -> str:
    """``kdlab teacher`` on a BEIR folder: fine-tune (or reuse) the cross-encoder; returns its run id."""
    cfg = apply_preset(cfg)
    if cfg.method not in METHODS:   # `kdlab teacher` has no --method: the teacher is the same for every method
        cfg = dataclasses.replace(cfg, method="margin-mse")
    hp, data, cands, groups, dev = _setup(cfg, store, log)
    if hp["teacher_kind"] == "fused":
        return prepare_fused_teacher(cfg, store, data, cands, hp, log=log)[1]
    return prepare_cross_teacher(cfg, store, data, cands, groups, hp, dev=dev, log=log)[2]
