"""A teacher that is already fine-tuned, used as is (``--teacher-finetuned``, or a folder kdlab saved).

The most common real case: "I have a fine-tuned classifier, distil it". The teacher is loaded with its own
classification head (no new head, no fine-tuning), checked against the task (number of outputs; class names when
the model names its classes), evaluated on every domain of the data, and recorded as a finished teacher run with
its evaluations, size and latency, like a teacher kdlab fine-tuned itself. A folder that kdlab saved (a cached
teacher, a student run's model: it holds ``kdlab.json``) is recognised without the flag.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ..errors import KdlabError
from .core import (first_line, is_tiny, folder_mb, load_saved, load_tokenizer, quiet_hf, resolve, save_model,
                     set_attention)
from ..runs.store import Store

GENERIC = re.compile(r"^LABEL_\d+$")


from .packaged import is_kdlab_model  # noqa: E402,F401  (re-exported: a folder kdlab saved)


def load_ready(name_or_path, *, trust_remote_code: bool = False, attentions: bool = False):
    """(model, tokenizer) of a fine-tuned classifier with its own head; refuses a model without one."""
    from transformers import AutoModelForSequenceClassification
    if is_tiny(name_or_path):
        raise KdlabError("the tiny teacher is random: it has to be fine-tuned; drop --teacher-finetuned")
    path = resolve(name_or_path)
    if isinstance(path, Path) and (path / "kdlab.json").is_file():
        return load_saved(path, attentions=attentions)
    quiet_hf()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(path), use_safetensors=True, trust_remote_code=trust_remote_code, output_loading_info=True)
        tok = load_tokenizer(str(name_or_path))
    except (OSError, ValueError) as e:
        raise KdlabError(f"could not load the fine-tuned teacher '{name_or_path}' ({first_line(e)}): give a folder "
                         "saved with save_pretrained (config.json, model.safetensors, tokenizer files) or a hub "
                         "name when online") from None
    missing = [k for k in info.get("missing_keys", []) if "pooler" not in k]   # new weights: no trained head
    if missing:
        raise KdlabError(f"'{name_or_path}' has no trained classification head (missing {missing[:3]}): it is a "
                         "base model, not a fine-tuned classifier; drop --teacher-finetuned to let kdlab fine-tune it")
    set_attention(model, attentions)
    return model, tok


def check_against_task(model, bundle, name) -> None:
    """The teacher's outputs must be the task's: as many (one for a score), and in the same order of class names
    when the model names its classes (``id2label`` other than LABEL_0, LABEL_1, ...)."""
    want = bundle.num_labels()
    have = int(model.config.num_labels)
    if have != want:
        what = "a score (1 output)" if bundle.task.kind == "score" else f"{want} classes {list(bundle.label_names)}"
        raise KdlabError(f"the fine-tuned teacher '{name}' has {have} outputs but the task '{bundle.task.name}' has "
                         f"{what}: give a teacher fine-tuned for this task, or drop --teacher-finetuned to fine-tune one")
    id2label = {int(k): str(v) for k, v in (getattr(model.config, "id2label", None) or {}).items()}
    names = [id2label.get(i, "") for i in range(have)]
    if bundle.task.kind == "classes" and names and not all(GENERIC.match(n) for n in names):
        data = [str(x) for x in bundle.label_names]
        if [n.lower() for n in names] != [d.lower() for d in data]:
            raise KdlabError(f"the fine-tuned teacher '{name}' names its classes {names} but the data's classes are "
                             f"{data} (in this order): relabel the data or give a teacher fine-tuned on these labels")


def ready_teacher(cfg, store: Store, bundle, *, attentions: bool = False, log=print):
    """(teacher, tokenizer, teacher run id) of a teacher used as is; its evaluation is stored once per store,
    teacher and data."""
    from ..analysis.evaluate import evaluate, size_report, summary
    model, tok = load_ready(cfg.teacher, trust_remote_code=cfg.trust_remote_code, attentions=attentions)
    check_against_task(model, bundle, cfg.teacher)
    key = "ready-" + hashlib.sha256(json.dumps({"teacher": str(cfg.teacher), "data": bundle.identity,
                                                 "max_len": cfg.teacher_train.max_len}).encode()).hexdigest()[:16]
    for r in store.runs(kind="teacher"):
        if r["config"].get("key") == key and r["status"] == "finished":
            log(f"teacher: using the fine-tuned {cfg.teacher} as is (evaluated before: {r['id']})")
            return model, tok, r["id"]
    path = resolve(cfg.teacher)
    conf = {"teacher": str(cfg.teacher), "data": cfg.data or "embedded", "data_identity": bundle.identity,
            "key": key, "ready": True, "train": None, "task_spec": bundle.task.to_dict()}
    run_id = store.create_run("teacher", "ready", conf, name=f"teacher {Path(str(cfg.teacher)).name} (as is)")
    log(f"teacher: using the fine-tuned {cfg.teacher} as is, evaluating it on every domain ({run_id})")
    try:
        model.eval()
        results, _ = evaluate(model, tok, bundle, max_len=cfg.teacher_train.max_len)
        for split, m in results.items():
            store.log_eval(run_id, 0, 0, split, "in-domain" if split == "dev" else split, m)
        if isinstance(path, Path):
            folder = path
        else:   # a hub model: a local copy, so that compress / eval / chains can load it like any teacher
            folder = store.folder(run_id) / "teacher"
            save_model(model, tok, folder, extra={"run_id": run_id, **conf})
        store.set_artifact(run_id, "model_dir", str(folder))
        size = size_report(model, tok, bundle.dev.texts, cfg.teacher_train.max_len, texts_b=bundle.dev.texts_b)
        store.set_artifact(run_id, "size", {**size, "mb": round(folder_mb(folder), 2)})
        store.finish(run_id, "finished", "fine-tuned teacher used as is", summary=summary(results, bundle.task))
    except BaseException as e:
        store.finish(run_id, "failed", message=first_line(e))
        raise
    return model, tok, run_id
