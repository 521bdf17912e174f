"""Teachers that are not one model (kdlab.models.teachers): soft labels from a file drive logit KD, and an ensemble of
several teachers with the two published loss forms; layer methods refuse both in one line."""
import csv
import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from kdlab.engine import distill
from kdlab.config import RunConfig, apply_preset, build_config
from kdlab.errors import KdlabError
from kdlab.models.features import features
from kdlab.methods.base import Context
from kdlab.methods.basic import KD
from kdlab.models.core import ModelInfo, build_student, tiny_model
from kdlab.engine.pipeline import distill_run, load_bundle
from kdlab.records import Features
from kdlab.runs.store import Store
from kdlab.models.teachers import SoftLabelTeacher, load_soft_labels

QUIET = dict(log=lambda *_: None)


def _cfg(**kw):
    cfg = apply_preset(RunConfig(max_train=16, max_eval=8, preset="tiny", **kw))
    cfg.train = dataclasses.replace(cfg.train, max_steps=3, progress=False, batch_size=8, checkpoint_each_epoch=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, epochs=1, progress=False, checkpoint_each_epoch=False)
    return cfg


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _kl(p, q):   # batchmean KL(p || q) of probability rows
    return float((p * (np.log(p) - np.log(q))).sum(-1).mean())


# ----------------------------------------------------------------------------------------------- ensemble loss
def test_two_teacher_ensemble_loss_matches_a_hand_computation():
    ctx = Context(teacher=ModelInfo(2, 32, 2, 100), student=ModelInfo(1, 32, 2, 100), num_labels=3)
    kd = KD(ctx)
    s = np.array([[0.3, -1.2, 2.0], [1.0, 0.5, -0.5]])
    t1 = np.array([[2.0, 0.0, -1.0], [0.2, 0.1, 3.0]])
    t2 = np.array([[-1.0, 1.5, 0.5], [2.5, -2.0, 0.0]])
    T = 2.0
    q = _softmax(s / T)
    p1, p2 = _softmax(t1 / T), _softmax(t2 / T)
    want_probs = T * T * _kl((p1 + p2) / 2, q)
    want_kl = T * T * (_kl(p1, q) + _kl(p2, q)) / 2
    assert abs(want_probs - want_kl) > 1e-3   # the two forms differ (Jensen)
    st = torch.tensor(s, dtype=torch.float32)
    for form, want in (("mean-probs", want_probs), ("mean-kl", want_kl)):
        t = Features(logits=torch.zeros(2, 3), mask=None, extra={"ensemble": {
            "logits": [torch.tensor(t1, dtype=torch.float32), torch.tensor(t2, dtype=torch.float32)], "form": form}})
        got = float(kd.teacher_soft_loss(st, t, "kl", T))
        assert got == pytest.approx(want, rel=1e-5), form
    # one teacher: both forms are plain KD to it
    t = Features(logits=torch.zeros(2, 3), mask=None, extra={"ensemble": {"logits": [torch.tensor(t1).float()],
                                                                          "form": "mean-probs"}})
    assert float(kd.teacher_soft_loss(st, t, "kl", T)) == pytest.approx(T * T * _kl(p1, q), rel=1e-5)


# ----------------------------------------------------------------------------------------------- soft labels
def test_soft_label_files_npy_and_csv_rows_by_text_and_one_line_errors(tmp_path):
    cfg = _cfg()
    bundle = load_bundle(cfg)
    n = len(bundle.train)
    z = np.random.RandomState(0).randn(n, 2).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    assert torch.allclose(load_soft_labels(tmp_path / "z.npy", bundle), torch.tensor(z))
    # a CSV keyed by text, in another order and with an extra row; probabilities become log-probabilities
    p = _softmax(z)
    with open(tmp_path / "p.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["text", "neg", "pos"], ["an unrelated row", 0.5, 0.5]])
        w.writerows([bundle.train.texts[i], repr(float(p[i, 0])), repr(float(p[i, 1]))] for i in reversed(range(n)))
    got = load_soft_labels(tmp_path / "p.csv", bundle)
    assert torch.allclose(torch.softmax(got, -1), torch.tensor(p), atol=1e-6)
    np.save(tmp_path / "rows.npy", z[:-1])
    np.save(tmp_path / "width.npy", np.zeros((n, 3), np.float32))
    (tmp_path / "miss.csv").write_text("text,a,b\nnothing,1,2\n")
    for name, words in (("rows.npy", f"{n - 1} rows but the training split has {n}"),
                        ("width.npy", "3 values per row but the task"),
                        ("miss.csv", f"no row for {n} of the {n} training examples"),
                        ("none.npy", "does not exist")):
        with pytest.raises(KdlabError, match=words) as e:
            load_soft_labels(tmp_path / name, bundle)
        assert "\n" not in str(e.value)


def test_the_kd_loss_at_step_one_uses_the_files_logits(tmp_path):
    cfg = _cfg()
    bundle = load_bundle(cfg)
    base, tok = tiny_model(2, seed=0)
    table = torch.tensor(np.random.RandomState(1).randn(len(bundle.train), 2) * 3, dtype=torch.float32)
    teacher = SoftLabelTeacher(table, base.config)
    student = build_student(base, layers=1, init="fresh", seed=0)
    loop = distill.setup(student, tok, bundle, "kd", teacher=teacher, cfg=cfg.train,
                         method_args={"temperature": 2.0, "alpha_soft": 1.0, "alpha_hard": 0.0})
    assert loop.cache is None
    student.eval()   # no dropout: the student's logits below are those the loss sees
    _, batch = next(iter(distill.epoch_batches(loop)))
    with torch.no_grad():
        s = features(student, batch).logits.numpy()
    loss, parts = distill.forward_backward(loop, batch)
    t = table[batch["idx"]].numpy()
    want = 4.0 * _kl(_softmax(t / 2), _softmax(s / 2))
    assert float(parts["kd"]) == pytest.approx(want, rel=1e-4)
    assert float(loss.detach()) == pytest.approx(want, rel=1e-4)


def test_soft_labels_drive_kd_end_to_end_and_layer_methods_refuse(tmp_path):
    cfg = _cfg()
    bundle = load_bundle(cfg)
    z = np.random.RandomState(2).randn(len(bundle.train), 2).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    store = Store(tmp_path / "runs")
    run = distill_run(dataclasses.replace(cfg, teacher_logits=str(tmp_path / "z.npy")), store, **QUIET)
    r = store.run(run)
    assert r["status"] == "finished" and r["config"]["teacher_logits"].endswith("z.npy")
    (t,) = store.runs(kind="teacher")
    assert t["method"] == "soft-labels" and t["message"] == "soft labels only: not evaluated"
    assert r["parent"] == t["id"]
    assert "agreement" not in store.final_evals(run)["dev"]   # nothing to agree with on the evaluation splits
    kd = [m["value"] for m in store.metrics(run) if m["name"] == "kd"]
    assert len(kd) == 3 and all(np.isfinite(kd))
    n_runs = len(store.runs())
    for method in ("pkd-skip", "tinybert", "takd"):
        with pytest.raises(KdlabError, match=f"method '{method}' cannot learn from soft labels") as e:
            distill_run(dataclasses.replace(cfg, method=method, teacher_logits=str(tmp_path / "z.npy")), store,
                        **QUIET)
        assert "\n" not in str(e.value)
    assert len(store.runs()) == n_runs   # refused before any run is created


# ----------------------------------------------------------------------------------------------- ensembles
def test_a_two_teacher_ensemble_runs_is_stored_and_listed(tmp_path):
    cfg = build_config(preset="tiny", teacher=["tiny", "tiny-roberta"], ensemble="mean-kl", max_train=16, max_eval=8,
                       max_steps=3, batch_size=8, teacher_epochs=1, no_progress=True)
    assert cfg.teachers == ["tiny", "tiny-roberta"] and cfg.teacher == "tiny"
    store = Store(tmp_path / "runs")
    run = distill_run(cfg, store, **QUIET)
    r = store.run(run)
    assert r["status"] == "finished"
    assert r["config"]["teachers"] == ["tiny", "tiny-roberta"] and r["config"]["ensemble"] == "mean-kl"
    assert len(r["config"]["teacher_runs"]) == 2
    assert {store.run(t)["config"]["teacher"] for t in r["config"]["teacher_runs"]} == {"tiny", "tiny-roberta"}
    assert "agreement" in store.final_evals(run)["dev"]   # with the ensemble's mean prediction
    out = subprocess.run([sys.executable, "-m", "kdlab", "runs", "--runs", str(tmp_path / "runs")],
                         capture_output=True, text=True, check=True).stdout
    assert "teachers: tiny, tiny-roberta (mean-kl)" in out
    with pytest.raises(KdlabError, match="method 'pkd-skip' cannot learn from several teachers") as e:
        distill_run(dataclasses.replace(cfg, method="pkd-skip"), store, **QUIET)
    assert "\n" not in str(e.value)
    with pytest.raises(KdlabError, match="ensemble must be mean-probs or mean-kl"):
        build_config(teacher=["tiny", "tiny"], ensemble="median")
