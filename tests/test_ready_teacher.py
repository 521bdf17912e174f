"""A fine-tuned teacher used as is (--teacher-finetuned, or a folder kdlab saved): never fine-tuned again,
evaluated on every domain and recorded like a fine-tuned teacher; wrong heads are refused in one line."""
import dataclasses

import pytest

from kdlab.config import RunConfig, apply_preset, build_config
from kdlab.errors import KdlabError
from kdlab.models.core import tiny_model
from kdlab.engine.pipeline import distill_run, load_bundle, prepare_teacher
from kdlab.runs.store import Store

QUIET = dict(log=lambda *_: None)


def _tiny_cfg(**kw):
    # the tiny teacher of the method tests' fixture (tests/test_methods_a.py), shared through KDLAB_TEACHERS
    cfg = apply_preset(RunConfig(max_train=64, max_eval=32, preset="tiny", **kw))
    cfg.train = dataclasses.replace(cfg.train, max_steps=2, progress=False, batch_size=16, checkpoint_each_epoch=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, progress=False, checkpoint_each_epoch=False)
    return cfg


def test_a_folder_kdlab_saved_is_used_as_is_with_the_same_evaluations(tmp_path):
    store = Store(tmp_path / "a")
    cfg = _tiny_cfg()
    bundle = load_bundle(cfg)
    _, _, tuned_run = prepare_teacher(cfg, store, bundle, **QUIET)
    folder = store.artifact(tuned_run, "model_dir")
    other = Store(tmp_path / "b")   # another store, the same data: the folder is recognised (kdlab.json)
    logs = []
    cfg2 = dataclasses.replace(cfg, teacher=str(folder))
    run = distill_run(cfg2, other, log=logs.append)
    assert other.run(run)["status"] == "finished"
    assert not any("fine-tuning" in m for m in logs) and any("as is" in m for m in logs)
    (t,) = other.runs(kind="teacher")
    assert t["config"]["ready"] and t["status"] == "finished"
    ev, ref = other.final_evals(t["id"]), store.final_evals(tuned_run)
    assert set(ev) == {"dev", "ood_restaurant", "ood_electronics"}
    for split in ev:
        assert ev[split]["accuracy"] == pytest.approx(ref[split]["accuracy"])
    assert other.artifact(t["id"], "size")["mb"] > 0
    # a second run reuses the stored evaluation instead of evaluating again
    logs.clear()
    distill_run(dataclasses.replace(cfg2, method="ce"), other, log=logs.append)
    assert len(other.runs(kind="teacher")) == 1 and any("evaluated before" in m for m in logs)


def test_a_plain_fine_tuned_folder_needs_the_flag_and_a_matching_head(tmp_path):
    model, tok = tiny_model(num_labels=2, seed=4)
    model.config.id2label, model.config.label2id = {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    folder = tmp_path / "clf"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    cfg = build_config(teacher=str(folder), teacher_finetuned=True, max_train=32, max_eval=16, max_len=32)
    store = Store(tmp_path / "runs")
    _, _, run = prepare_teacher(cfg, store, load_bundle(cfg), **QUIET)
    assert store.run(run)["method"] == "ready" and 0 <= store.final_evals(run)["dev"]["accuracy"] <= 1
    # three outputs for a two-class task
    m3, _ = tiny_model(num_labels=3, seed=4)
    m3.save_pretrained(tmp_path / "three")
    tok.save_pretrained(tmp_path / "three")
    with pytest.raises(KdlabError, match="has 3 outputs but the task 'sentiment' has 2 classes"):
        prepare_teacher(build_config(teacher=str(tmp_path / "three"), teacher_finetuned=True, max_train=32),
                        store, **QUIET)
    # class names in another order than the data's
    named, _ = tiny_model(num_labels=2, seed=4)
    named.config.id2label = {0: "positive", 1: "negative"}
    named.config.label2id = {"positive": 0, "negative": 1}
    named.save_pretrained(tmp_path / "named")
    tok.save_pretrained(tmp_path / "named")
    with pytest.raises(KdlabError, match="names its classes"):
        prepare_teacher(build_config(teacher=str(tmp_path / "named"), teacher_finetuned=True, max_train=32),
                        store, **QUIET)


def test_a_base_model_without_a_head_is_refused(tmp_path):
    from transformers import BertModel
    model, tok = tiny_model(num_labels=2, seed=4)
    BertModel(model.config).save_pretrained(tmp_path / "base")   # an encoder with no classifier
    tok.save_pretrained(tmp_path / "base")
    with pytest.raises(KdlabError, match="no trained classification head"):
        prepare_teacher(build_config(teacher=str(tmp_path / "base"), teacher_finetuned=True, max_train=32),
                        Store(tmp_path / "runs"), **QUIET)
    with pytest.raises(KdlabError, match="tiny teacher is random"):
        prepare_teacher(build_config(preset="tiny", teacher_finetuned=True, max_train=32), Store(tmp_path / "r"),
                        **QUIET)
