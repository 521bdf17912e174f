"""Studies: the statistics on made-up numbers with a known answer (checked against scipy's bootstrap), and a tiny
grid end to end (table, JSON, CSV, re-run starts nothing, a killed cell is resumed, not restarted)."""
import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats as sps

from kdlab.cli import main
from kdlab.errors import KdlabError
from kdlab.analysis.stats import paired_bootstrap, summarize, verdict
from kdlab.runs.store import Store
from kdlab.engine.study import parse_seeds, parse_vary, plan_cells


def _preds(correct_rate, n, rng):
    """Binary predictions that are right on about ``correct_rate`` of n examples with labels all 1."""
    return (rng.random(n) < correct_rate).astype(int)


def test_bootstrap_agrees_with_scipy_for_one_seed():
    rng = np.random.default_rng(1)
    labels = np.ones(400, dtype=int)
    a, b = _preds(0.8, 400, rng), _preds(0.7, 400, rng)
    ours = paired_bootstrap(a[None], b[None], labels, "accuracy", n_boot=4000, seed=3)
    ca, cb = (a == labels).astype(float), (b == labels).astype(float)
    assert ours["delta"] == pytest.approx(ca.mean() - cb.mean())
    ref = sps.bootstrap((ca, cb), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis), paired=True,
                        vectorized=True, n_resamples=4000, method="percentile", random_state=5).confidence_interval
    assert ours["ci_low"] == pytest.approx(ref.low, abs=0.01)
    assert ours["ci_high"] == pytest.approx(ref.high, abs=0.01)


def test_verdicts_on_known_answers():
    rng = np.random.default_rng(0)
    labels = np.ones(500, dtype=int)
    base = np.stack([_preds(0.6, 500, rng) for _ in range(3)])
    better = np.stack([_preds(0.9, 500, rng) for _ in range(3)])
    res = paired_bootstrap(better, base, labels, n_boot=1000)
    assert res["ci_low"] > 0.2 and verdict(res["ci_low"], res["ci_high"]) == "better"
    res = paired_bootstrap(base, better, labels, n_boot=1000)
    assert verdict(res["ci_low"], res["ci_high"]) == "worse"
    same = paired_bootstrap(base, base.copy(), labels, n_boot=500)
    assert same == {**same, "delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    assert verdict(same["ci_low"], same["ci_high"]) == "inconclusive"
    assert verdict(-0.1, -0.05, "mse") == "better"   # lower is better: the sides swap


def test_interval_covers_the_true_difference():
    """Method right with probability 0.75, baseline 0.70, independently: the true difference is 0.05; in 40
    made-up studies of 3 seeds x 600 examples the 95% interval covers it in most of them."""
    rng = np.random.default_rng(7)
    labels = np.ones(600, dtype=int)
    covered = 0
    for _ in range(40):
        a = np.stack([_preds(0.75, 600, rng) for _ in range(3)])
        b = np.stack([_preds(0.70, 600, rng) for _ in range(3)])
        r = paired_bootstrap(a, b, labels, n_boot=400, seed=int(rng.integers(1000)))
        covered += r["ci_low"] <= 0.05 <= r["ci_high"]
    assert covered >= 34


def test_generic_metric_and_summary_rows():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 300)
    good = np.where(rng.random(300) < 0.9, labels, 1 - labels)
    bad = np.where(rng.random(300) < 0.6, labels, 1 - labels)
    r = paired_bootstrap(good[None], bad[None], labels, "macro_f1", n_boot=100)
    from kdlab.analysis.evaluate import macro_f1
    assert r["delta"] == pytest.approx(macro_f1(good, labels, 2) - macro_f1(bad, labels, 2))
    assert r["ci_low"] > 0
    cell = lambda p: {"dev": {"value": float((p == labels).mean()), "pred": p, "labels": labels}}
    groups = {"ce": {"method": "ce", "seeds": {0: cell(bad)}}, "kd": {"method": "kd", "seeds": {0: cell(good)}}}
    rows = summarize(groups, "ce", "accuracy", n_boot=100)
    assert [(r["method"], r["verdict"]) for r in rows] == [("ce", "baseline"), ("kd", "better")]
    with pytest.raises(KdlabError, match="baseline"):
        summarize({"kd": groups["kd"]}, "ce", "accuracy")


def test_grid_parsing():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("4,9") == [4, 9]
    with pytest.raises(KdlabError):
        parse_seeds("two")
    cells = plan_cells(["kd", "pkd-skip"], [0, 1], parse_vary(["temperature=2,4"]))
    assert [c["key"] for c in cells][:3] == ["ce seed=0", "ce seed=1", "kd temperature=2 seed=0"]
    assert len(cells) == 2 + 2 * 2 * 2
    with pytest.raises(KdlabError, match="no method"):
        plan_cells(["ce"], [0], {"temperature": [2]})


TINY = ["--preset", "tiny", "--max-steps", "3", "--max-train", "48", "--max-eval", "40", "--teacher-epochs", "1",
        "--batch-size", "16", "--quiet"]


def test_tiny_study_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    import kdlab.engine.pipeline   # a killed cell never gets to drop its checkpoint: keep them, to kill one below
    monkeypatch.setattr(kdlab.engine.pipeline, "drop_checkpoint", lambda folder: 0)
    runs = str(tmp_path / "runs")
    cmd = ["study", "--methods", "ce,kd", "--seeds", "2", "--runs", runs, "--name", "s1", *TINY]
    assert main(cmd) == 0
    out = capsys.readouterr().out
    assert "verdict" in out and "\n  ce " in out and "\n  kd " in out
    store = Store(runs)
    n_runs = len(store.runs())
    assert n_runs == 5   # the teacher and 4 cells

    assert main(cmd + ["--json"]) == 0   # the same study again: nothing new runs
    rows = json.loads(capsys.readouterr().out)
    assert len(store.runs()) == n_runs
    assert {r["method"] for r in rows} == {"ce", "kd"}
    for r in rows:
        assert {"method", "n", "mean", "std", "delta", "ci_low", "ci_high", "verdict"} <= set(r)
        assert r["n"] == 2
        assert r["verdict"] in ("baseline", "better", "worse", "inconclusive")
        if r["method"] == "kd":
            assert r["ci_low"] <= r["delta"] <= r["ci_high"]
    study = store.study("s1")
    assert study["result"]["rows"] and len(study["cells"]) == 4
    assert (tmp_path / "runs" / "studies" / "s1" / "results.csv").exists()

    # a killed cell: its run is left 'running' by a process that no longer exists
    victim = study["cells"]["kd seed=1"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with sqlite3.connect(store.path) as c:
        c.execute("UPDATE runs SET status='running', pid=? WHERE id=?", (dead.pid, victim))
    assert store.run(victim)["status"] == "died"
    assert main(cmd + ["--csv"]) == 0
    csv_out = capsys.readouterr().out
    assert csv_out.splitlines()[0].startswith("method,options,domain,metric,n,mean,std,delta,ci_low,ci_high,verdict")
    assert len(store.runs()) == n_runs            # resumed in place, not started again
    assert store.run(victim)["status"] == "finished"
    assert store.study("s1")["cells"]["kd seed=1"] == victim

    assert main(["study", "--methods", "ce,kd", "--seeds", "2", "--runs", runs, "--name", "s1", "--preset", "tiny",
                 "--max-steps", "5", "--quiet"]) == 2   # same name, another setup: refused
    assert "another data/model setup" in capsys.readouterr().err


def test_study_set_options_every_cell_shares(tmp_path, capsys):
    """`study --set temperature=4`: every cell whose method has the option gets it (ce has no temperature); an
    option no method has is refused in one line before anything trains; a rerun with another --set is refused."""
    runs = str(tmp_path / "runs")
    cmd = ["study", "--methods", "ce,kd", "--seeds", "1", "--runs", runs, "--name", "t4", *TINY]
    assert main(cmd + ["--set", "temperature=4"]) == 0
    args = {r["method"]: r["config"]["method_args"] for r in Store(runs).runs(kind="student")}
    assert args == {"ce": {}, "kd": {"temperature": 4.0}}
    capsys.readouterr()
    assert main(cmd + ["--name", "bad", "--set", "nope=1"]) == 2
    assert capsys.readouterr().err.strip() == ("kdlab: error: --set nope: no method of the study has this option "
                                               "(methods: ce, kd)")
    assert main(cmd + ["--set", "temperature=2"]) == 2
    assert "another data/model setup" in capsys.readouterr().err
