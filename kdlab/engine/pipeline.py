"""The whole path as functions the CLI, the dashboard and the notebooks share:
prepare (fine-tune, cache) a teacher -> build a student -> distill -> evaluate -> store.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

from .chains import run_chain
from ..runs.checkpoint import checkpoint_position, find_checkpoint
from ..config import RunConfig, apply_preset, teacher_lr_for, teacher_members  # noqa: F401  (re-exported)
from ..data.loaders import load_data
from ..data.transfer import extend_train
from ..runs.disk import drop_checkpoint
from .distill import train
from ..errors import KdlabError
from ..analysis.evaluate import size_report, summary
from ..models.limits import check_max_len
from ..methods import get
from ..models.narrow import build_narrow
from ..runs import prep_lock
from .selection import Selector
from ..models.ready_teacher import is_kdlab_model, ready_teacher
from ..models.core import build_student, folder_mb, check_student_fits, load_saved, load_teacher, save_model
from ..speed.ddp import is_main
from ..runs.run_record import StoredRun, record_models, recording
from ..runs.store import Store, teacher_cache_root  # noqa: F401  (teacher_cache_root: used here and re-exported)


def load_bundle(cfg: RunConfig):
    return load_data(cfg.data, text_col=cfg.text_col, label_col=cfg.label_col, ood=cfg.ood or None,
                     max_train=cfg.max_train, max_eval=cfg.max_eval,
                     seed=cfg.train.seed if getattr(cfg, "data_seed", None) is None else cfg.data_seed,
                     task=getattr(cfg, "task", None), label_kind=getattr(cfg, "label_kind", None),
                     ood_map=getattr(cfg, "ood_map", None))


PROBLEM_TYPES = {"classes": "single_label_classification", "score": "regression",
                 "multi": "multi_label_classification"}


def set_problem_type(model, task):
    """A score task's model has one output (regression), a multi-label task's a sigmoid per label."""
    if model is not None and hasattr(model, "config"):
        model.config.problem_type = PROBLEM_TYPES.get(getattr(task, "kind", "classes"))
    return model


def _summary(evals: dict, task=None) -> dict:
    """The run's summary: the task's primary metric per evaluation split."""
    return summary(evals, task)


def prepare_teacher(cfg: RunConfig, store: Store, bundle=None, *, attentions: bool = False, log=print):
    """Fine-tune the teacher on the in-domain train split, or reuse the cached one.

    Returns (teacher, tokenizer, teacher_run_id). The fine-tuned teacher is saved with
    ``save_pretrained`` under ``<runs>/teachers/<key>`` where the key hashes the base model, the
    data identity and the fine-tuning settings.
    """
    check_max_len(cfg.teacher_train.max_len, name=cfg.teacher)   # before the data is read or the model loaded
    store.check_writable("preparing a teacher")
    bundle = bundle or load_bundle(cfg)
    if cfg.teacher_finetuned or is_kdlab_model(cfg.teacher):   # a fine-tuned classifier: used as is
        return ready_teacher(cfg, store, bundle, attentions=attentions, log=log)
    key = cfg.teacher_key(bundle.identity)
    folder = teacher_cache_root(store) / key
    meta = folder / "kdlab.json"
    if meta.exists():
        return _reuse_teacher(cfg, store, folder, attentions, log)
    with prep_lock.held(folder, log=log) as announce:   # one fine-tuning per teacher, across processes
        if meta.exists():   # another process prepared it while this one waited
            return _reuse_teacher(cfg, store, folder, attentions, log)
        return _fine_tune_teacher(cfg, store, bundle, key, folder, attentions, log, announce)


def _reuse_teacher(cfg, store, folder: Path, attentions: bool, log):
    info = json.loads((folder / "kdlab.json").read_text())
    teacher, tok = load_saved(folder, attentions=attentions)
    log(f"teacher: reusing fine-tuned {cfg.teacher} ({folder})")
    return teacher, tok, _adopt_teacher_run(store, info, folder)


def _fine_tune_teacher(cfg, store, bundle, key: str, folder: Path, attentions: bool, log, announce):
    meta = folder / "kdlab.json"
    teacher, tok = load_teacher(cfg.teacher, bundle.num_labels(), trust_remote_code=cfg.trust_remote_code,
                                attentions=attentions, seed=cfg.teacher_train.seed)
    set_problem_type(teacher, bundle.task)
    tconf = {"teacher": cfg.teacher, "data": cfg.data or "embedded", "data_identity": bundle.identity,
             "train": dataclasses.asdict(cfg.teacher_train), "key": key, "task_spec": bundle.task.to_dict(),
             "ood": list(cfg.ood or []), "ood_map": cfg.ood_map}   # `eval --run TEACHER --model all` scores them too
    run_id = store.create_run("teacher", "ce", tconf, name=teacher_run_name(cfg.teacher))
    announce(store.root, run_id)
    log(f"teacher: fine-tuning {cfg.teacher} on {len(bundle.train)} examples ({run_id})")
    try:
        res = train(teacher, tok, bundle, get("ce"), cfg=cfg.teacher_train, store=store, run_id=run_id)
        if res.status != "finished":
            store.finish(run_id, res.status, res.message)
            raise KdlabError(f"teacher fine-tuning was {res.status}")
        size = size_report(teacher, tok, bundle.dev.texts, cfg.teacher_train.max_len, texts_b=bundle.dev.texts_b)
        if _main_rank() and not meta.exists():
            # the training curve and evaluations travel with the model, so a store that adopts it shows them
            history = {"metrics": store.metrics(run_id), "evals": store.evals(run_id)}
            save_model(teacher, tok, folder, extra={"run_id": run_id, **tconf, "evals": res.evals, "size": size,
                                                    "history": history})
        store.set_artifact(run_id, "model_dir", str(folder))
        if Path(folder).is_dir():
            size = {**size, "mb": round(folder_mb(folder), 2)}
        store.set_artifact(run_id, "size", size)
        store.finish(run_id, "finished", summary=_summary(res.evals, bundle.task))
        drop_checkpoint(store.folder(run_id) / "checkpoint")   # the model is in the cache; teachers never resume
    except BaseException as e:
        store.finish(run_id, "failed", message=_short(e))
        raise
    return teacher, tok, run_id


def teacher_run_name(teacher: str) -> str:
    """The stored name of the run that fine-tunes ``teacher`` (how the Setup page follows its progress)."""
    return f"teacher {teacher}"


def prepare_teachers(cfg: RunConfig, store: Store, bundle=None, *, attentions: bool = False, log=print):
    """Every teacher of ``cfg`` (``teacher_members``) prepared one by one through ``prepare_teacher``.
    Returns [(teacher, tokenizer, run id)]."""
    bundle = bundle or load_bundle(cfg)
    return [prepare_teacher(one, store, bundle, attentions=attentions, log=log) for one in teacher_members(cfg)]


def special_teacher(cfg: RunConfig, store: Store, bundle, method_cls, log=print):
    """A teacher given as soft labels (``cfg.teacher_logits``) or an ensemble (``cfg.teachers``): (teacher,
    tokenizer, teacher run id, the model the default student is built from). Layer methods refuse both."""
    from ..models.teachers import (EnsembleTeacher, SoftLabelTeacher, check_method, check_same_tokenizer, file_digest,
                           load_soft_labels)
    if cfg.teacher_logits:
        check_method(method_cls, "soft labels (--teacher-logits)")
        table = load_soft_labels(cfg.teacher_logits, bundle)
        base, tok = load_teacher(cfg.teacher, bundle.num_labels(), trust_remote_code=cfg.trust_remote_code,
                                 seed=cfg.teacher_train.seed)
        set_problem_type(base, bundle.task)
        return SoftLabelTeacher(table, base.config), tok, _soft_label_run(cfg, store, bundle, table, file_digest(
            cfg.teacher_logits), log), base
    check_method(method_cls, "several teachers (an ensemble)")
    prepared = prepare_teachers(cfg, store, bundle, log=log)
    check_same_tokenizer([p[1] for p in prepared], cfg.teachers)
    ens = EnsembleTeacher([p[0] for p in prepared], cfg.ensemble, bundle.task.kind)
    ens.runs = [p[2] for p in prepared]
    log(f"teacher: an ensemble of {len(prepared)} teachers ({cfg.ensemble})")
    return ens, prepared[0][1], prepared[0][2], prepared[0][0]


def _soft_label_run(cfg, store: Store, bundle, table, digest: str, log) -> str:
    """A finished teacher run recording the soft labels (nothing to evaluate: "soft labels only"), once per file and
    data."""
    key = f"soft-{digest}-{bundle.identity}"
    for r in store.runs(kind="teacher"):
        if r["config"].get("key") == key and r["status"] == "finished":
            return r["id"]
    conf = {"teacher": None, "teacher_logits": str(cfg.teacher_logits), "sha256": digest, "rows": int(table.shape[0]),
            "width": int(table.shape[1]), "data": cfg.data or "embedded", "data_identity": bundle.identity,
            "key": key, "task_spec": bundle.task.to_dict()}
    run_id = store.create_run("teacher", "soft-labels", conf, name=f"teacher soft labels {Path(cfg.teacher_logits).name}")
    log(f"teacher: soft labels from {cfg.teacher_logits} ({table.shape[0]} rows; {run_id})")
    store.finish(run_id, "finished", "soft labels only: not evaluated")
    return run_id


def _adopt_teacher_run(store: Store, info: dict, folder: Path) -> str | None:
    """A teacher fine-tuned for another store gets a finished teacher run in this one, with its evaluations."""
    run_id = info.get("run_id")
    for r in store.runs(kind="teacher"):
        if r["id"] == run_id or (r["config"].get("key") == info.get("key") and r["status"] == "finished"):
            return r["id"]
    conf = {k: v for k, v in info.items() if k not in ("evals", "size", "run_id", "history")}
    new_id = store.create_run("teacher", "ce", conf, name=f"teacher {info.get('teacher')} (cached)")
    history = info.get("history") or {}
    by_step: dict = {}
    for m in history.get("metrics", []):
        by_step.setdefault((m["step"], m["epoch"]), {})[m["name"]] = m["value"]
    for (step, epoch), values in sorted(by_step.items()):
        store.log_metrics(new_id, step, epoch, values)
    if history.get("evals"):
        rows: dict = {}
        for e in history["evals"]:
            rows.setdefault((e["step"], e["epoch"], e["split"], e["domain"]), {})[e["metric"]] = e["value"]
        for (step, epoch, split, domain), m in rows.items():
            store.log_eval(new_id, step, epoch, split, domain, m)
    else:
        for split, m in (info.get("evals") or {}).items():
            store.log_eval(new_id, 0, 0, split, "in-domain" if split == "dev" else split, m)
    store.set_artifact(new_id, "model_dir", str(folder))
    if info.get("size"):
        store.set_artifact(new_id, "size", {**info["size"], "mb": round(folder_mb(folder), 2)})
    store.finish(new_id, "finished", "reused a cached fine-tuned teacher",
                 summary=_summary(info.get("evals") or {}, _task_of(info.get("task_spec"))))
    return new_id


def _main_rank() -> bool:
    return is_main()


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


def is_ranking(cfg: RunConfig, methods=()) -> bool:
    """The dispatch between the classification path and ranking (``kdlab.ranking``: queries, a corpus, qrels): a
    ranking method (``cfg.method`` or one of ``methods``), ``--task ranking`` or a BEIR folder as data."""
    from ..ranking.train import wants_ranking
    return wants_ranking(cfg) or any(wants_ranking(dataclasses.replace(cfg, method=m)) for m in methods)


def check_ranking_run(cfg: RunConfig) -> None:
    """A ranking run's checks before any work (its method, its options, flags that do not apply)."""
    from ..ranking.train import check_ranking, options
    check_ranking(cfg)
    options(cfg)


def prepare_ranking_teacher(cfg: RunConfig, store: Store, log=print) -> str:
    """The ranking teacher (fine-tuned cross-encoder or fused), prepared or reused; its run id."""
    from ..ranking.train import ranking_teacher
    return ranking_teacher(cfg, store, log=log)


def distill_run(cfg: RunConfig, store: Store | None = None, *, teacher=None, tokenizer=None, bundle=None,
                teacher_run: str | None = None, kind: str = "student", log=print, student=None,
                resume: str | None = None, on_create=None, keep_checkpoints: bool = False) -> str:
    """Build the student, distill it with ``cfg.method`` and store everything; returns the run id.

    A finished run drops its resume checkpoint (nothing reads it again) unless ``keep_checkpoints``.

    ``student``: an already built student (hops of a chain, e.g. self-distillation into a fresh copy).
    ``on_create(run_id)``: called as soon as the run exists in the store (a study records its cell then)."""
    cfg = apply_preset(cfg)
    store = store or Store()
    store.check_writable()   # a read-only store: one line now, not a permission error inside the teacher's folder
    if teacher is None and student is None:   # a --max-len the models' positions cannot take: before any work
        for name in [*(cfg.teachers or [cfg.teacher]), *([cfg.student] if cfg.student else [])]:
            for n in {cfg.train.max_len, cfg.teacher_train.max_len}:
                check_max_len(n, name=name)
    if bundle is None and teacher is None and student is None:
        from ..ranking.train import distill_ranking
        if is_ranking(cfg):   # queries, a corpus and qrels: a cross-encoder into a bi-encoder, through the one
            if str(cfg.student or "") == "static":   # loop with the ranking adaptor (kdlab.ranking.adaptor)
                raise KdlabError("the static student is a classifier: a ranking run trains a bi-encoder; drop "
                                 "--student static")
            return distill_ranking(cfg, store, log=log, resume=resume, on_create=on_create,
                                   keep_checkpoints=keep_checkpoints)
    if bundle is None and teacher is None and student is None:
        from ..lm.train import distill_lm, wants_lm
        # a causal language model: a decoder teacher into a decoder student, through the one loop with the LM
        # adaptor (kdlab.lm.adaptor); a resumed LM run too
        if wants_lm(cfg):
            return distill_lm(cfg, store, log=log, on_create=on_create, resume=resume,
                              keep_checkpoints=keep_checkpoints)
    method_cls = get(cfg.method)
    method_cls.check_options(cfg.method_args)   # before the data is read and minutes of teacher fine-tuning
    bundle = bundle or load_bundle(cfg)
    s_tok, retokenize = None, False
    if getattr(cfg, "student", None) and student is None:   # a pretrained student (kdlab.models.students)
        from ..models.students import check_student_choice, check_tokenizers, student_tokenizer
        check_student_choice(cfg, method_cls, bundle.task)
        s_tok = student_tokenizer(cfg)
        retokenize = check_tokenizers(cfg, method_cls, s_tok)   # before minutes of teacher fine-tuning
    method_cls.check_label_kind(bundle.task.kind, bundle.task.name)   # before minutes of teacher fine-tuning
    if cfg.train.select:   # --select names a split and a metric the run has
        Selector.of(cfg.train.select, cfg.train.patience, None).check_plan(bundle)
    needs_attn = method_cls.needs_attentions
    if teacher is None and (cfg.teacher_logits or cfg.teachers):   # soft labels / an ensemble: kdlab.models.teachers
        teacher, tokenizer, teacher_run, base = special_teacher(cfg, store, bundle, method_cls, log=log)
    else:
        base = None   # the model the default student is built from: the teacher
    if (teacher is None and student is None and not method_cls.defines("make_student") and not cfg.student_hidden
            and s_tok is None):
        check_student_fits(cfg.teacher, layers=cfg.student_layers, init=cfg.student_init,
                           layer_list=cfg.student_layer_list)   # before minutes of teacher fine-tuning
    if teacher is None and (method_cls.uses_teacher or cfg.student_init != "fresh"):
        teacher, tokenizer, teacher_run = prepare_teacher(cfg, store, bundle, attentions=needs_attn, log=log)
    elif teacher is None and student is None and s_tok is None and not method_cls.defines("make_student"):
        # a fresh student trained alone (ce): the teacher's architecture and tokenizer, never fine-tuned
        base, tokenizer = load_teacher(cfg.teacher, bundle.num_labels(), trust_remote_code=cfg.trust_remote_code,
                                       seed=cfg.teacher_train.seed)
        set_problem_type(base, bundle.task)
    if method_cls.chain:   # a chain of runs (teacher assistants, self-distillation): kdlab.engine.chains
        return run_chain(method_cls, cfg, store, run=distill_run, teacher=teacher, tokenizer=tokenizer,
                         bundle=bundle, teacher_run=teacher_run, log=log)
    if s_tok is not None:
        from ..models.students import load_student
        student, s_tok = load_student(cfg, bundle, attentions=needs_attn, teacher=teacher, tokenizer=tokenizer)
    if student is None:   # the method's own student, or None for the default one
        student = method_cls.make_student(teacher, tokenizer, cfg)
    base = base if base is not None else teacher
    if student is None:
        init = method_cls.student_init if cfg.student_init == "skip" else cfg.student_init
        if cfg.student_hidden and cfg.student_narrow_init != "random":   # projected from the teacher
            student = build_narrow(base, tokenizer, bundle.train, cfg, init or cfg.student_init)
        else:
            student = build_student(base, layers=cfg.student_layers, init=init or cfg.student_init,
                                    layer_list=cfg.student_layer_list, hidden=cfg.student_hidden,
                                    seed=cfg.train.seed)
    bundle = method_cls.augment_train(bundle, tokenizer, teacher, cfg)   # e.g. bilstm enlarges the transfer set
    bundle = extend_train(bundle, cfg, tokenizer, teacher, method_cls, log=log)   # --transfer FILE, --augment
    if (cfg.method_args or {}).get("mapping") == "cka" and not cfg.method_args.get("mapping_cka"):
        from ..analysis.cka_mapping import with_cka_scores   # each student layer <- its most similar teacher layer
        cfg = with_cka_scores(cfg, teacher, student, s_tok or tokenizer, bundle, retokenize, log=log)
    if retokenize:   # the teacher reads every text of the run through its own tokenizer (kdlab.models.retokenize)
        from ..models.retokenize import RetokenizedTeacher
        teacher = RetokenizedTeacher(teacher, tokenizer, s_tok, [bundle.train, *bundle.eval_splits().values()],
                                     cfg.train.max_len)
        log("teacher: tokenizes differently from the student; each reads the texts through its own tokenizer")
    if s_tok is not None:
        tokenizer = s_tok   # the student's batches, and the tokenizer saved with it
    conf = cfg.to_dict()
    conf["teacher_run"] = teacher_run
    if getattr(teacher, "runs", None):
        conf["teacher_runs"] = teacher.runs   # every teacher of an ensemble
    conf["data_identity"] = bundle.identity
    conf["task_spec"] = bundle.task.to_dict()
    lock = contextlib.ExitStack()   # the run's writers' lock (resume_run holds it already for a resumed run)
    if resume:   # continue a stored run from its last checkpoint (resume_run)
        run_id, checkpoint = resume, _checkpoint_of(store, resume)
        store.reopen(run_id, *checkpoint_position(checkpoint))
    else:
        run_id, checkpoint = store.create_run(kind, cfg.method, conf, name=cfg.name, parent=teacher_run), None
        lock.enter_context(prep_lock.run_held(store, run_id))
        if on_create is not None:
            on_create(run_id)
    log(f"{cfg.method}: distilling a {student.config.num_hidden_layers}-layer student ({run_id})")
    with recording(store, run_id, lock):   # a kill or error is recorded on the run; the lock released
        res = train(student, tokenizer, bundle, method_cls, teacher=teacher, cfg=cfg.train,
                    method_args=cfg.method_args, store=store, run_id=run_id, resume=checkpoint)
        out = store.folder(run_id) / "student"
        if _main_rank():   # under torchrun only rank 0 writes
            save_model(student, tokenizer, out, extra={"run_id": run_id, "method": cfg.method,
                                                      "task_spec": bundle.task.to_dict()})
        record_models(store, run_id, res, out)
        size = size_report(student, tokenizer, bundle.dev.texts, cfg.train.max_len, texts_b=bundle.dev.texts_b)
        if out.is_dir():
            size["mb"] = round(folder_mb(out), 2)
        store.set_artifact(run_id, "size", size)
        store.finish(run_id, res.status, res.message,
                     summary=_summary(res.evals, bundle.task))
        if res.status == "finished" and not keep_checkpoints:
            drop_checkpoint(store.folder(run_id) / "checkpoint")
    return run_id


def _checkpoint_of(store: Store, run_id: str) -> Path:
    ck = find_checkpoint(store.folder(run_id) / "checkpoint")
    if ck is None:
        raise KdlabError(f"run {run_id} has no resumable checkpoint: start it again "
                         "(use --checkpoint-every N to checkpoint during an epoch)")
    return ck


def resume_run(store: Store, run_id: str, log=print, keep_checkpoints: bool = False) -> str:
    """Resume a stopped, killed or failed run from its last checkpoint; returns the run id."""
    run = store.run(run_id)
    if run["kind"] == "teacher":
        raise KdlabError(f"run {run['id']} is a teacher fine-tuning run: teachers are re-made by `kdlab teacher`")
    if run["status"] in ("finished", "running"):
        raise KdlabError(f"run {run['id']} is {run['status']}: only a killed (died), failed or cancelled run "
                         "can be resumed")
    with prep_lock.run_held(store, run["id"]):   # a second resume of the same run fails here, naming the first
        run = store.run(run["id"])   # again under the lock: another process may have finished it meanwhile
        if run["status"] in ("finished", "running"):
            raise KdlabError(f"run {run['id']} is {run['status']}: only a killed (died), failed or cancelled run "
                             "can be resumed")
        _checkpoint_of(store, run["id"])
        cfg = StoredRun(run).config()
        cfg.train.progress = False
        return distill_run(cfg, store, log=log, resume=run["id"], keep_checkpoints=keep_checkpoints)


def _task_of(spec):
    from ..tasks import Task
    return Task.from_dict(spec) if isinstance(spec, dict) else None


def eval_run(store: Store, run_id: str, data_file: str, *, text_col=None, label_col=None,
             max_len: int = 64, ood_map=None) -> dict:
    """Evaluate a stored student (or teacher) on any labeled file with the run's task; returns {metric: value},
    the task's primary metric first. A file with other classes than the model's is scored through ``ood_map``
    or the task's built-in mapping."""
    from ..data.loaders import load_eval_file
    from ..analysis.evaluate import metrics, predict
    run = store.run(run_id)
    if StoredRun(run).is_ranking:
        from ..ranking.train import eval_ranking_run   # nDCG@10, MRR@10, Recall@100 on the folder's test qrels
        return eval_ranking_run(store, run, data_file)
    folder = store.artifact(run["id"], "model_dir")
    if folder and not Path(folder).exists():
        raise KdlabError(f"the model folder of run {run['id']} ({folder}) is gone: it was deleted or moved out of "
                         f"the run store {store.root}")
    if not folder:
        raise KdlabError(f"run {run['id']} has no saved model (status {run['status']}): evaluate a finished run")
    model, tok = load_saved(folder)
    check_max_len(max_len, model=model)
    C = model.config.num_labels
    task = StoredRun(run, store).task(folder)   # None: a run from before tasks (sentiment)
    if task is not None and task.kind != "score" and task.label_names:
        names = list(task.label_names)
    else:
        names = ["negative", "positive"] if C == 2 else [str(i) for i in range(C)]
    split = load_eval_file(data_file, names, text_col=text_col, label_col=label_col, task=task, ood_map=ood_map)
    logits = predict(model, split, tok, max_len=max_len)
    out = {"run": run["id"], "data": str(data_file)}
    if task is not None:
        out["task"] = task.name
        out["primary"] = task.primary
    if split.label_map is not None:
        out["label_map"] = {n: split.label_names[j] for n, j in zip(names, split.label_map)}
    return {**out, **metrics(logits, split.labels, C, task, split.label_map)}
