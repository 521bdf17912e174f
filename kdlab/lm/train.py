"""An LM run (``kdlab distill --task lm``): a causal LM teacher distilled into a student copied from its layers,
through the one training loop (``kdlab.engine.distill.train``) with the LM task hooks (``kdlab.lm.adaptor``) and
the LM objectives as registered methods (``kdlab.methods.lm``).

1. Read the corpus (``kdlab.lm.data``): the training examples, the in-domain dev split and the other domains.
2. Teacher: ``tiny`` (``--preset tiny``) is a tiny random Llama-style model trained here with lm-ce on the corpus
   by the same loop (``prepare_lm_teacher``: at least ``TINY_TEACHER_EPOCHS`` epochs, no checkpoints or selection;
   cached under the teacher cache, with its own teacher run); ``smollm2-135m`` (``kdlab.lm.smollm``) or a causal LM
   folder is used as it is.
3. Student: the teacher's layers (``--student-layers`` / ``--student-init`` / ``--student-layer-list``) or a causal
   LM folder (``--student``); both models wrapped as ``CausalLM`` modules of the loop.
4. Training: ``train(...)`` with the method ``--method`` (lm-ce, lm-fkl, lm-rkl, lm-jsd, lm-tvd, seq-kd, gkd), so
   resume (``kdlab distill --resume RUN``: ``kdlab.engine.pipeline`` routes LM runs here), cancel, ``--precision``,
   ``--tensorboard``, ``--select dev:perplexity`` (lower is better) and progress with ETA are the loop's. With
   ``--set topk=K`` the teacher is the file of its top-K log-probabilities (``kdlab.lm.topk``), written once under
   the teacher cache.
5. The student saved as a causal LM folder, its size (parameters, MB, tokens per second) and perplexity per domain.

Options (``--set key=value``) are the methods' (``kdlab.methods.lm``): temperature, beta, chunk, ce_weight,
hidden_weight, lmbda, gen_len, prompt_tokens, eval_batch, topk, topk_tail. Only completion tokens are scored; a
plain-text example is all completion.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from ..config import RunConfig, apply_preset
from ..errors import KdlabError
from ..methods.lm import LM_METHODS as METHODS   # the LM objectives, in the order the docs list them
from ..runs.store import Store, teacher_cache_root
from .adaptor import TASK, CausalLM, LMBundle, evaluate_splits, save_predictions, split_name
from .data import encode, load_corpus
from .metrics import evaluate_lm

TEACHER_METHOD = "lm-ce"
TINY_TEACHER_EPOCHS = 10   # the tiny teacher trains at least this long (cached): a teacher worth distilling


def task_spec() -> dict:
    from ..tasks import get_task
    return get_task(TASK).to_dict()


def data_seed(cfg: RunConfig) -> int:
    """The seed of the corpus (the embedded one's sampling, a file's dev split): ``--data-seed``, else the run's
    seed (a study fixes it, so that every seed of a study is evaluated on the same examples)."""
    return cfg.train.seed if getattr(cfg, "data_seed", None) is None else int(cfg.data_seed)


def is_lm_method(name) -> bool:
    """A registered causal-LM objective (``kdlab.methods.lm``)."""
    return name in METHODS


def wants_lm(cfg: RunConfig) -> bool:
    """An LM run: an LM method or ``--task lm``."""
    return is_lm_method(cfg.method) or str(cfg.task or "").strip().lower() == TASK


def check_lm(cfg: RunConfig) -> None:
    """One line for a classification method on an LM task, an LM method on another task, a table as corpus, or a
    run setting an LM run does not take."""
    task = str(cfg.task or "").strip().lower()
    names = ", ".join(METHODS)
    if not is_lm_method(cfg.method):
        raise KdlabError(f"method '{cfg.method}' is a classification method but --task lm trains a causal language "
                         f"model: use --method {names}")
    if task and task != TASK:
        raise KdlabError(f"method '{cfg.method}' distils a causal language model but --task is '{cfg.task}': use "
                         f"--task lm with a .txt or .jsonl corpus, or a classification method such as kd")
    if cfg.data and Path(str(cfg.data)).suffix.lower() in (".tsv", ".csv") or cfg.data and Path(str(cfg.data)).is_dir():
        raise KdlabError(f"method '{cfg.method}' trains a causal language model on a .txt or .jsonl corpus, but "
                         f"'{cfg.data}' is a classification dataset: use a classification method such as kd for it")
    if cfg.teacher_logits or cfg.teachers:
        raise KdlabError("--task lm takes one live teacher: --teacher-logits and several --teacher are not supported "
                         "(a top-k teacher file: --set topk=K)")
    unused = [flag for flag, given in (("--transfer", cfg.transfer), ("--augment", cfg.augment),
                                       ("--text-col", cfg.text_col), ("--label-col", cfg.label_col),
                                       ("--label-kind", cfg.label_kind), ("--ood-map", cfg.ood_map)) if given]
    if unused:
        raise KdlabError(f"--task lm does not use {', '.join(unused)} (classification options): drop "
                         f"{'it' if len(unused) == 1 else 'them'}")


def check_select(cfg: RunConfig, corpus) -> None:
    """``--select split:metric`` names an evaluation split of the corpus and an LM metric (perplexity, token_kl:
    lower is better; top1_agreement), before the teacher trains."""
    if not cfg.train.select:
        return
    from ..engine.selection import Selector
    from ..tasks import get_task
    metrics = get_task(TASK).metrics
    Selector.of(cfg.train.select, cfg.train.patience, None).check_splits(
        {split_name(d): dict.fromkeys(metrics) for d in corpus.eval_splits()})


def _device(name: str) -> torch.device:
    from ..engine.distill import pick_device
    return pick_device(name)


def _check_context(model, max_len: int, name: str):
    n = getattr(model.config, "max_position_embeddings", None)
    if n and max_len > n:
        raise KdlabError(f"--max-len {max_len} is past the {n} positions of {name}: use --max-len {n} or less")


def checkpoint_dir(store: Store, run_id: str) -> Path:
    return store.folder(run_id) / "checkpoint"


# ---------------------------------------------------------------------------------------------- teacher
def prepare_lm_teacher(cfg: RunConfig, store: Store, corpus, *, log=print):
    """(teacher, tokenizer, teacher run id or None, teacher folder): the tiny teacher trained on the corpus once
    (by the one loop with lm-ce) and cached; a named or folder teacher loaded as it is."""
    from ..runs import prep_lock
    from ..models.core import is_tiny
    from .models import load_lm, load_lm_folder, tiny_lm
    if not is_tiny(cfg.teacher):
        model, tok = load_lm(cfg.teacher, log=log)
        return model, tok, None, cfg.teacher
    tc = cfg.teacher_train
    from .models import TINY_LM
    key_src = json.dumps({"teacher": "tiny-lm", "config": TINY_LM, "data": corpus.identity, "n": len(corpus.train),
                          "epochs": max(tc.epochs, TINY_TEACHER_EPOCHS), "lr": tc.lr, "seed": tc.seed,
                          "max_len": cfg.train.max_len},
                         sort_keys=True)
    key = "lm-tiny-" + hashlib.sha256(key_src.encode()).hexdigest()[:12]
    folder = teacher_cache_root(store) / key
    if (folder / "kdlab.json").exists():
        return _reuse(store, folder, log)
    with prep_lock.held(folder, log=log) as announce:
        if (folder / "kdlab.json").exists():
            return _reuse(store, folder, log)
        model, tok = tiny_lm(seed=tc.seed)
        bundle = LMBundle(corpus, tok, cfg.train.max_len, identity=corpus.identity)   # bad input: before the run
        conf = {"teacher": "tiny", "data": cfg.data or "embedded", "data_identity": corpus.identity, "key": key,
                "train": dataclasses.asdict(tc), "task_spec": task_spec()}
        run_id = store.create_run("teacher", TEACHER_METHOD, conf, name="teacher tiny (causal LM)")
        announce(store.root, run_id)
        try:
            log(f"teacher: training the tiny causal LM on {len(bundle.train)} examples ({run_id})")
            res = train_tiny_teacher(model, tok, bundle, tc, store, run_id, cfg.train.max_len)
            if res.status != "finished":
                store.finish(run_id, res.status, res.message)
                raise KdlabError(f"the tiny LM teacher's training was {res.status}")
            model.cpu()
            from ..models.core import save_model
            save_model(model, tok, folder, extra={"run_id": run_id, "key": key, "kind": "lm"})
            store.set_artifact(run_id, "model_dir", str(folder))
            store.set_artifact(run_id, "size", _size(model, folder, res.evals))
            store.finish(run_id, "finished", summary={s: m["perplexity"] for s, m in res.evals.items()})
        except BaseException as e:
            if store.run(run_id)["status"] == "running":
                store.finish(run_id, "failed", message=f"{type(e).__name__}: {e}"[:500])
            raise
    model, tok = load_lm_folder(folder)
    return model, tok, run_id, str(folder)


def train_tiny_teacher(model, tok, bundle: LMBundle, tc, store: Store, run_id: str, max_len: int):
    """The tiny teacher's training: lm-ce by the one loop for at least ``TINY_TEACHER_EPOCHS`` epochs, evaluated
    after each; no resume checkpoints and no selection (a teacher is made again by `kdlab teacher`). Returns the
    loop's ``Result``."""
    from ..engine.distill import train
    from ..methods import get
    tc = dataclasses.replace(tc, max_steps=None, epochs=max(tc.epochs, TINY_TEACHER_EPOCHS),
                             checkpoint_each_epoch=False, checkpoint_every=0, select=None, patience=0)
    return train(CausalLM(model, tok, max_len), tok, bundle, get(TEACHER_METHOD), cfg=tc, store=store, run_id=run_id)


def _reuse(store: Store, folder: Path, log):
    from .models import load_lm_folder
    info = json.loads((folder / "kdlab.json").read_text())
    model, tok = load_lm_folder(folder)
    log(f"teacher: reusing the trained tiny causal LM ({folder})")
    run_id = info.get("run_id")
    known = {r["id"] for r in store.runs(kind="teacher")}
    return model, tok, run_id if run_id in known else None, str(folder)


def lm_teacher(cfg: RunConfig, store: Store, *, log=print) -> str:
    """``kdlab teacher --task lm``: the tiny teacher trained on the corpus (or reused), or a named/folder teacher
    evaluated as it is; returns its teacher run (made for a teacher this store has no run of)."""
    from ..engine.distill import PREDICTIONS
    from ..methods.lm import LMMethod
    cfg = apply_preset(cfg)
    if not is_lm_method(cfg.method):   # `kdlab teacher` has no --method: the teacher is the same for every method
        cfg = dataclasses.replace(cfg, method="lm-fkl")
    check_lm(cfg)
    corpus = load_corpus(cfg.data, ood=cfg.ood, max_train=cfg.max_train, max_eval=cfg.max_eval, seed=data_seed(cfg))
    teacher, tok, run_id, tdir = prepare_lm_teacher(cfg, store, corpus, log=log)
    if run_id is not None:
        return run_id
    conf = {"teacher": cfg.teacher, "teacher_dir": tdir, "data": cfg.data or "embedded", "ood": list(cfg.ood),
            "max_eval": cfg.max_eval, "data_identity": corpus.identity, "task_spec": task_spec(),
            "train": dataclasses.asdict(cfg.train)}
    run_id = store.create_run("teacher", "lm-as-is", conf, name=f"teacher {cfg.teacher} (as is)")
    try:
        device = _device(cfg.train.device)
        teacher.to(device)
        bundle = LMBundle(corpus, tok, cfg.train.max_len, identity=corpus.identity)
        evals, outputs = evaluate_splits(teacher, bundle.splits, bundle.pad_id,
                                         batch_size=LMMethod.defaults["eval_batch"], device=device)
        for split, m in evals.items():
            store.log_eval(run_id, 0, 0, split, "in-domain" if split == "dev" else split, m)
        save_predictions(store.folder(run_id) / PREDICTIONS, outputs)
        store.set_artifact(run_id, "model_dir", str(tdir) if Path(str(tdir)).is_dir() else None)
        store.finish(run_id, "finished", "used as it is", summary={s: m["perplexity"] for s, m in evals.items()})
    except BaseException as e:
        store.finish(run_id, "failed", message=f"{type(e).__name__}: {e}"[:500])
        raise
    return run_id


# ---------------------------------------------------------------------------------------------- the run
def distill_lm(cfg: RunConfig, store: Store | None = None, *, log=print, on_create=None, resume: str | None = None,
               keep_checkpoints: bool = False) -> str:
    """Distil a causal LM with ``cfg.method`` (``kdlab.methods.lm``) through the one training loop and store the
    run; returns the student run id. ``on_create(run_id)``: called as soon as the run exists in the store (a study
    records its cell then). ``resume``: the id of a stopped run of this configuration, continued from its last
    checkpoint. A finished run drops its checkpoint unless ``keep_checkpoints``."""
    from ..engine.distill import train
    from ..methods import get
    from ..models.core import count_params, save_model
    from ..runs.checkpoint import checkpoint_position
    from ..runs.disk import drop_checkpoint
    from ..runs.prep_lock import open_student_run
    from ..runs.run_record import record_models, recording
    cfg = apply_preset(cfg)
    store = store or Store()
    store.check_writable()
    check_lm(cfg)
    method_cls = get(cfg.method)
    hp = method_cls.resolve_options(cfg.method_args)   # a bad option: one line before any work
    tc = cfg.train
    corpus = load_corpus(cfg.data, ood=cfg.ood, max_train=cfg.max_train, max_eval=cfg.max_eval, seed=data_seed(cfg))
    if not corpus.train:
        raise KdlabError("the corpus has no training example left after the dev split: give more lines")
    check_select(cfg, corpus)
    teacher, tok, teacher_run, teacher_dir = prepare_lm_teacher(cfg, store, corpus, log=log)
    _check_context(teacher, tc.max_len, f"the teacher {cfg.teacher}")
    s_tok = tok
    if cfg.student:   # a causal LM folder of the user's own
        from .models import check_same_vocab, load_lm_folder
        student, s_tok = load_lm_folder(cfg.student)
        if method_cls.uses_teacher:   # token by token: one vocabulary
            check_same_vocab(teacher, tok, student, s_tok, cfg.method)
        layers = None
    else:
        from .models import build_lm_student
        student, layers = build_lm_student(teacher, cfg)
    _check_context(student, tc.max_len, "the student")
    device = _device(tc.device)
    teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    same_vocab = s_tok is tok or s_tok.get_vocab() == tok.get_vocab()
    bundle = LMBundle(corpus, s_tok, tc.max_len, identity=corpus.identity, eval_batch=hp["eval_batch"],
                      eval_teacher=teacher if same_vocab else None, log=log)   # a prompt too long: now, not later
    conf = cfg.to_dict()
    conf.update(teacher_run=teacher_run, teacher_dir=teacher_dir, data_identity=corpus.identity,
                task_spec=task_spec(), lm=hp, student_layers_from=layers)
    run_id, checkpoint, lock = open_student_run(store, method=cfg.method, conf=conf, name=cfg.name, parent=teacher_run,
                                                resume=resume, on_create=on_create)
    if checkpoint is not None:
        log(f"{cfg.method}: resuming {run_id} from step {checkpoint_position(checkpoint)[0]}")
    with recording(store, run_id, lock):   # a kill or error is recorded on the run; the lock released
        store.set_artifact(run_id, "teacher_dir", teacher_dir)
        t_module = CausalLM(teacher, tok, tc.max_len)
        bundle = method_cls.augment_train(bundle, s_tok, t_module, cfg)   # seq-kd: the teacher's continuations
        if hp.get("topk"):
            t_module = _topk_teacher(store, run_id, teacher, teacher_dir, bundle.train, hp, tc, log)
        s_module = CausalLM(student, s_tok, tc.max_len, copied_from=layers)
        log(f"{cfg.method}: distilling a {student.config.num_hidden_layers}-layer student of the "
            f"{teacher.config.num_hidden_layers}-layer teacher on {len(bundle.train)} examples ({run_id})")
        res = train(s_module, s_tok, bundle, method_cls, teacher=t_module, cfg=tc, method_args=cfg.method_args,
                    store=store, run_id=run_id, resume=checkpoint)
        out = store.folder(run_id) / "student"
        save_model(s_module.cpu(), s_tok, out, extra={"run_id": run_id, "method": cfg.method, "kind": "lm",
                                                      "task_spec": task_spec()})
        record_models(store, run_id, res, out)
        store.set_artifact(run_id, "size", {**_size(student, out, res.evals),
                                            "teacher_params": float(count_params(teacher))})
        store.finish(run_id, res.status, res.message,
                     summary={s: m["perplexity"] for s, m in res.evals.items() if "perplexity" in m})
        if res.evals:
            log(f"{cfg.method}: " + ", ".join(f"{s} perplexity {m['perplexity']:.2f}" for s, m in res.evals.items()))
        if res.status == "finished" and not keep_checkpoints:   # a finished run is never resumed
            drop_checkpoint(checkpoint_dir(store, run_id))
    return run_id


def _topk_teacher(store, run_id, teacher, teacher_dir, train, hp, tc, log):
    """The run's top-k file (written once per teacher, corpus, context and k under the teacher cache), as the
    teacher module the token-level objective reads; its size is the run's ``topk`` artifact."""
    from .topk import TopKTeacher, key_of, summary, write_topk
    key = key_of(teacher_dir, _identity(train), teacher.config.vocab_size, tc.max_len, len(train))
    name = f"{hashlib.sha256(key.encode()).hexdigest()[:16]}-k{hp['topk']}.safetensors"
    path = teacher_cache_root(store) / "lm-topk" / name
    if path.is_file():
        info = summary(path)
        log(f"topk: reusing {path.name} ({info['tokens']} tokens)")
    else:
        log(f"topk: writing the teacher's top-{hp['topk']} log-probabilities over {len(train)} examples ({path})")
        info = write_topk(teacher, train, hp["topk"], path, pad_id=teacher.config.pad_token_id or 0, key=key)
    info["tail"] = hp["topk_tail"]
    store.set_artifact(run_id, "topk", info)
    log(f"topk: {info['bytes_per_token']:.0f} bytes per token against {info['dense_bytes_per_token']} dense (fp32); "
        f"the top-{info['k']} hold {info['topk_mass']:.3f} of the teacher's probability on average")
    return TopKTeacher(path, hp["topk_tail"], key, config=teacher.config)


def _identity(examples) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.ids, e.n_prompt]).encode())
    return h.hexdigest()[:16]


def _size(model, folder, evals: dict) -> dict:
    """Parameters, MB on disk, layers and the measured tokens per second (in-domain evaluation, forward only)."""
    from ..models.core import count_params, folder_mb
    return {"params": float(count_params(model)), "mb": round(folder_mb(folder), 2),
            "layers": float(model.config.num_hidden_layers),
            "tokens_per_s": float((evals.get("dev") or {}).get("tokens_per_s", float("nan")))}


# ---------------------------------------------------------------------------------------------- evaluation
def eval_lm_run(store: Store, run: dict, data_file=None) -> dict:
    """A stored LM run's model, per domain (the run's own, or ``data_file`` alone, named by its stem): perplexity,
    and against its teacher token KL and top-1 agreement."""
    from .models import load_lm_folder
    from ..runs.run_record import StoredRun
    folder = store.artifact(run["id"], "model_dir")
    if not folder or not Path(folder).exists():
        raise KdlabError(f"run {run['id']} has no saved model (status {run['status']}): evaluate a finished run")
    cfg = StoredRun(run).config()
    model, tok = load_lm_folder(folder)
    if data_file:
        from .data import read_rows
        domains = {Path(str(data_file)).stem: read_rows(data_file)}
    else:
        domains = load_corpus(cfg.data, ood=cfg.ood, max_eval=cfg.max_eval, seed=data_seed(cfg)).eval_splits()
    teacher = None
    tdir = store.artifact(run["id"], "teacher_dir")
    if run["kind"] == "student" and tdir:
        from .models import load_lm
        teacher, t_tok = (load_lm_folder(tdir) if Path(str(tdir)).is_dir() else load_lm(tdir))
        if t_tok.get_vocab() != tok.get_vocab():
            teacher = None
    res = {"run": run["id"], "task": TASK, "method": run["method"], "data": str(data_file or cfg.data or "embedded"),
           "perplexity": {}, "token_kl": {},
           "top1_agreement": {}, "teacher_perplexity": {}}
    for domain, rows in domains.items():
        ex = encode(rows, tok, cfg.train.max_len, what=f"the {domain} evaluation set")
        m = evaluate_lm(model, ex, tok.pad_token_id, teacher=teacher)
        res["perplexity"][domain] = m["perplexity"]
        for k in ("token_kl", "top1_agreement", "teacher_perplexity"):
            if k in m:
                res[k][domain] = m[k]
    return {k: v for k, v in res.items() if v != {}}
