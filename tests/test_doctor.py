"""Gradient shares and ``kdlab doctor``: every finding on made-up inputs with hand-computed figures, and on a tiny
stored run (tiny teacher, 96 examples, a few steps) whose figures are recomputed by hand from what it stored."""
import json
import math

import numpy as np
import pytest
import torch

from kdlab.analysis import doctor, grad_share
from kdlab.cli import main
from kdlab.config import RunConfig, TrainConfig
from kdlab.errors import KdlabError
from kdlab.runs.store import Store


def _cfg(method, every=1, steps=3, **kw):
    return RunConfig(teacher="tiny", max_train=96, max_eval=48, student_layers=2, method=method, name=method,
                     train=TrainConfig(max_steps=steps, epochs=1, batch_size=16, max_len=32, progress=False,
                                       grad_share_every=every),
                     teacher_train=TrainConfig(epochs=1, lr=1e-3, batch_size=16, max_len=32, progress=False), **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One store: the tiny teacher, a hidden-state KD run (shares every 2 steps), the same run without shares,
    and the student trained alone."""
    from kdlab.engine.pipeline import distill_run
    store = Store(tmp_path_factory.mktemp("runs"))
    quiet = lambda *a, **k: None
    with pytest.MonkeyPatch.context() as mp:
        # a teacher fine-tuned in this store (not adopted from the suite's shared teachers), so that its stored
        # evaluation outputs cover exactly this run's splits (the by-hand agreement reads them)
        mp.setenv("KDLAB_TEACHERS", str(tmp_path_factory.mktemp("teachers")))
        ids = {"hidden": distill_run(_cfg("hidden", every=2, steps=4), store, log=quiet),
               "noshares": distill_run(_cfg("kd", every=0), store, log=quiet),
               "ce": distill_run(_cfg("ce"), store, log=quiet)}
    return store, ids


# ----------------------------------------------------------------------------------------------- gradient shares
def test_term_norms_by_hand():
    w = torch.nn.Parameter(torch.ones(4))
    a, b = 3 * w.sum(), (w ** 2).sum()             # d/dw: 3 everywhere (norm 3*2), 2w = 2 (norm 2*2)
    norms = grad_share.term_norms({"a": a, "b": b}, a + b, [w])
    assert norms == pytest.approx({"a": 6.0, "b": 4.0})
    assert w.grad is None                           # measured aside: the loop's own backward is untouched
    assert grad_share.term_norms({"a": a, "b": b}, a + 2 * b, [w]) is None   # terms that do not add up: skipped
    assert grad_share.term_norms({"a": a}, a, [w]) is None                   # one term: nothing to share
    assert grad_share.wants(50, 0, -1, 10) and grad_share.wants(50, 9, -1, 10)   # the first and the last step
    assert not grad_share.wants(50, 5, -1, 10) and not grad_share.wants(0, 0, -1, 10)   # 0 = off
    assert not grad_share.wants(50, 0, 0, 10)   # once per step (gradient accumulation: several micro-batches)
    rows = [dict(step=0, term="a", norm=6.0), dict(step=0, term="b", norm=4.0),
            dict(step=2, term="a", norm=1.0), dict(step=2, term="b", norm=3.0)]
    sh = grad_share.shares(rows)
    assert sh["a"]["mean_share"] == pytest.approx((0.6 + 0.25) / 2) and sh["a"]["last_share"] == pytest.approx(0.25)
    assert sh["b"]["mean_norm"] == pytest.approx(3.5) and sh["b"]["steps"] == 2


def test_loop_logs_grad_norms(runs):
    store, ids = runs
    rows = store.grad_norms(ids["hidden"])
    assert sorted({r["step"] for r in rows}) == [0, 2, 3]         # every 2 of the 4 steps, and the last
    assert {r["term"] for r in rows} == {"kd", "ce", "hidden"}    # alpha_soft*KD, alpha_hard*CE, beta*hidden
    assert all(r["norm"] > 0 for r in rows)
    assert store.grad_norms(ids["noshares"]) == []               # --grad-share-every 0: off


@pytest.mark.parametrize("method, terms", [("pkd-skip", {"ce", "kd", "pt"}), ("distilbert", {"kd", "ce", "cos"}),
                                            ("internal-all", {"kd", "ce", "att_kl", "cls_cos"})])
def test_methods_name_their_terms(runs, method, terms):
    """Each method's named terms add up to its loss (else the loop logs nothing): a 2-step run logs them."""
    from kdlab.engine.pipeline import distill_run
    store, _ = runs
    rid = distill_run(_cfg(method, every=1, steps=2), store, log=lambda *a, **k: None)
    rows = store.grad_norms(rid)
    assert {r["step"] for r in rows} == {0, 1}
    got = {r["term"] for r in rows}
    assert len(got) >= 2 and got <= terms, got


# ----------------------------------------------------------------------------------------------- each finding
def test_teacher_finding():
    f = doctor.teacher_finding(0.80, [0.794, 0.798], "accuracy")
    assert f["level"] == "problem" and f["data"]["alone"] == pytest.approx(0.796)   # +0.004 < 0.01
    assert "teacher +0.004" in f["figure"]
    f = doctor.teacher_finding(0.80, [0.70], "accuracy", reference=(0.90, "SST-2 dev", None))
    assert f["level"] == "warning" and "-0.100" in f["figure"]                     # 10 points under
    assert doctor.teacher_finding(0.88, [0.70], "accuracy", reference=(0.90, "x", None))["level"] == "ok"
    assert doctor.teacher_finding(0.505, [], "accuracy", chance=0.5)["level"] == "problem"


def test_dark_knowledge_finding():
    T = 2.0
    z = np.array([[2.0, 0.0], [0.0, 6.0]])           # at T=2: p_top = 1/(1+e^-1), 1/(1+e^-3)
    p1, p2 = 1 / (1 + math.exp(-1)), 1 / (1 + math.exp(-3))
    ent = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))
    f = doctor.dark_knowledge_finding({"dev": z, "ood_x": z * 10}, T)
    dev = f["data"]["splits"]["dev"]
    assert dev["off_top"] == pytest.approx(((1 - p1) + (1 - p2)) / 2)
    assert dev["entropy"] == pytest.approx((ent(p1) + ent(p2)) / 2)
    assert f["data"]["splits"]["ood_x"]["off_top"] < 0.01 and f["level"] == "ok"
    assert doctor.dark_knowledge_finding({"dev": z * 10}, T)["level"] == "warning"           # nearly one-hot
    near = doctor.dark_knowledge_finding({"dev": np.array([[0.04, 0.0]])}, 1.0)              # 0.51 / 0.49
    assert near["level"] == "problem" and "--temperature 1" in near["next"]


def test_agreement_finding():
    z_t = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 0.0 + 3]])
    z_s = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])   # one of four disagrees
    f = doctor.agreement_finding({"dev": z_s}, {"dev": z_t})
    kl_row = sum(p * math.log(p / q) for p, q in zip([1 / (1 + math.e), math.e / (1 + math.e)],
                                                       [math.e / (1 + math.e), 1 / (1 + math.e)]))
    assert f["data"]["splits"]["dev"]["agreement"] == 0.75 and f["level"] == "warning"
    assert f["data"]["splits"]["dev"]["kl"] == pytest.approx(kl_row / 4)
    ood = doctor.agreement_finding({"dev": z_t, "ood": z_s}, {"dev": z_t, "ood": z_t})
    assert ood["level"] == "warning" and "--transfer" in ood["next"]          # 1.00 in domain, 0.75 out
    assert doctor.agreement_finding({"dev": z_t}, {"dev": z_t})["level"] == "ok"


def test_grad_share_finding():
    sh = {"kd": {"mean_share": 0.02, "steps": 3}, "ce": {"mean_share": 0.48, "steps": 3},
          "hidden": {"mean_share": 0.50, "steps": 3}}
    f = doctor.grad_share_finding(sh, "hidden", {"alpha_soft": 0.5})
    assert f["level"] == "warning" and f["data"]["low"] == ["kd"]
    assert "multiply alpha_soft by about 49" in f["next"] and "--set alpha_soft=24.5" in f["next"]   # 0.98/0.02
    f = doctor.grad_share_finding({"pt": {"mean_share": 0.98, "steps": 1}, "kd": {"mean_share": 0.02, "steps": 1}},
                                  "pkd-skip")
    assert f["data"]["high"] == ["pt"] and "beta" in f["next"]
    ok = doctor.grad_share_finding({"kd": {"mean_share": 0.4, "steps": 1}, "ce": {"mean_share": 0.6, "steps": 1}},
                                   "kd")
    assert ok["level"] == "ok" and "kd 40.0%" in ok["figure"]


def test_capacity_budget_labels_findings():
    f = doctor.capacity_finding(4e6, 22e6, 3, 12)
    assert f["level"] == "warning" and f["data"]["params_ratio"] == pytest.approx(4 / 22)
    assert doctor.capacity_finding(11e6, 22e6, 6, 12)["level"] == "ok"
    b = doctor.budget_finding(150, 1.0, 2)
    assert b["level"] == "warning" and "--epochs 3" in b["next"] and "150 steps" in b["figure"]
    assert doctor.budget_finding(900, 6.0, 2)["level"] == "ok"
    assert doctor.labels_finding(500, 0, False)["level"] == "warning"
    assert doctor.labels_finding(500, 2000, False)["level"] == "ok"
    assert doctor.labels_finding(50000, 0, False)["level"] == "ok"


def test_rank_problems_first():
    fs = [doctor.finding("budget", "warning", "", "", ""), doctor.finding("labels", "ok", "", "", ""),
          doctor.finding("grad_share", "problem", "", "", ""), doctor.finding("teacher", "warning", "", "", "")]
    assert [f["key"] for f in doctor.rank(fs)] == ["grad_share", "teacher", "budget", "labels"]


# ----------------------------------------------------------------------------------------------- on a tiny run
def test_doctor_on_a_tiny_run(runs, capsys):
    from kdlab.analysis.stats import load_predictions
    store, ids = runs
    rid = ids["hidden"]
    d = doctor.diagnose(store, rid)
    by = {f["key"]: f for f in d["findings"]}
    assert set(by) == set(doctor.KEYS) and d["notes"] == []
    levels = [doctor.LEVELS.index(f["level"]) for f in d["findings"]]
    assert levels == sorted(levels)
    run = store.run(rid)
    # by hand from what the runs stored: agreement per split, the student trained alone, the shares
    s = load_predictions(store.folder(rid) / "predictions.npz")
    t = load_predictions(store.folder(run["config"]["teacher_run"]) / "predictions.npz")
    for split in s:
        agree = float((s[split]["logits"].argmax(1) == t[split]["logits"].argmax(1)).mean())
        assert by["agreement"]["data"]["splits"][split]["agreement"] == pytest.approx(agree)
    alone = store.final_evals(ids["ce"])["dev"]["accuracy"]
    assert by["teacher"]["data"]["alone"] == pytest.approx(alone)
    norms = {}
    for r in store.grad_norms(rid):
        norms.setdefault(r["step"], {})[r["term"]] = r["norm"]
    hid = np.mean([n["hidden"] / sum(n.values()) for n in norms.values()])
    assert by["grad_share"]["data"]["shares"]["hidden"]["mean_share"] == pytest.approx(hid)
    assert by["budget"]["data"]["steps"] == 4 and by["budget"]["level"] == "warning"     # 4 steps of a 6-step epoch
    assert by["labels"]["data"]["labeled"] == 96 and by["labels"]["level"] == "warning"
    assert by["dark_knowledge"]["data"]["T"] == 2.0                                          # hidden's default T

    assert main(["doctor", "--run", rid, "--runs", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"kdlab doctor: run {rid}") and " 1. [" in out and "grad" in out
    assert main(["doctor", "--run", rid, "--runs", str(store.root), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert [f["key"] for f in js["findings"]] == [f["key"] for f in d["findings"]]


def test_doctor_bad_input(runs, capsys):
    store, ids = runs
    root = str(store.root)
    # a run made without gradient shares: one line says so, the other findings still print
    assert main(["doctor", "--run", ids["noshares"], "--runs", root]) == 0
    out = capsys.readouterr().out
    assert "note: run" in out and "no gradient shares" in out and "agreement" in out
    assert [ln for ln in out.splitlines() if ln.startswith("note:")] and out.count("note:") == 1
    teacher = store.run(ids["hidden"])["config"]["teacher_run"]
    ranking = store.create_run("student", "listwise", {"task_spec": {"name": "ranking", "kind": "classes"},
                                                       "ranking": {}, "teacher_run": teacher})
    for run, msg in (("no-such-run", "no run 'no-such-run'"), (teacher, "is a teacher run"),
                     (ids["ce"], "without a teacher"), (ranking, "ranking run")):
        assert main(["doctor", "--run", run, "--runs", root]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("kdlab: error:") and msg in err and len(err.splitlines()) == 1


def test_study_verdicts_name_the_doctor(runs):
    from kdlab.engine.study import aggregate, format_table, json_rows
    store, ids = runs
    cells = [{"key": "ce seed=0", "method": "ce", "options": {}, "seed": 0, "group": "ce"},
             {"key": "kd seed=0", "method": "kd", "options": {}, "seed": 0, "group": "kd"}]
    store.save_study("doc", {"setup": {}, "grid": {"baseline": "ce"}, "cells": cells, "config": {"train": {}}})
    store.set_study_cell("doc", "ce seed=0", ids["ce"])
    store.set_study_cell("doc", "kd seed=0", ids["noshares"])
    rows = aggregate(store, "doc", n_boot=50)
    kd = [r for r in rows if r["method"] == "kd"]
    assert kd and all(r["verdict"] in ("inconclusive", "worse", "better") for r in kd)
    for r in rows:
        named = r["verdict"] in ("inconclusive", "worse")
        assert (r.get("doctor") == f"python -m kdlab doctor --run {ids['noshares']}") == named, r
    text = format_table(rows)
    n = sum(r["verdict"] in ("inconclusive", "worse") for r in rows)
    assert n and text.count("why? python -m kdlab doctor --run") == n
    assert all(("doctor" in j) == (j["verdict"] in ("inconclusive", "worse")) for j in json_rows(rows))


def test_doctor_without_teacher_outputs(runs, monkeypatch):
    """A teacher with no model and no stored outputs (soft labels): a note, and the other findings."""
    store, ids = runs

    def none(*a, **k):
        raise KdlabError("the teacher run kept no model and no evaluation outputs")
    monkeypatch.setattr(doctor, "teacher_outputs", none)
    d = doctor.diagnose(store, ids["hidden"])
    keys = {f["key"] for f in d["findings"]}
    assert "agreement" not in keys and "dark_knowledge" not in keys and {"teacher", "grad_share"} <= keys
    assert len(d["notes"]) == 1 and "no teacher outputs" in d["notes"][0]


def test_grad_norms_of_an_older_store(tmp_path, monkeypatch):
    """A store made before the grad_norms table, opened read-only: no rows, not an error."""
    import sqlite3
    store = Store(tmp_path / "old")
    with sqlite3.connect(store.path) as c:
        c.execute("DROP TABLE grad_norms")
    monkeypatch.setattr("kdlab.runs.store_paths.writable", lambda root, db: False)   # as for a user who cannot write
    ro = Store(tmp_path / "old")
    assert not ro.writable and ro.grad_norms("any") == []
