"""Studies of causal LM objectives (kdlab.lm.study): perplexity's direction and its token-weighted paired bootstrap
on made-up per-example NLLs, the per-example NLLs of a real evaluation, and a tiny study end to end (lm-ce as the
baseline, the same held-out examples for every seed, a killed cell started again, one line for a mixed grid)."""
import json
import math
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from kdlab.cli import main
from kdlab.errors import KdlabError
from kdlab.lm.data import Row, encode
from kdlab.lm.metrics import evaluate_lm
from kdlab.lm.models import tiny_lm
from kdlab.analysis.stats import example_outputs, metric_value, paired_bootstrap, summarize, verdict
from kdlab.runs.store import Store
from kdlab.engine.study import plan_cells


def test_perplexity_is_token_weighted_and_lower_is_better():
    # two examples: 3 tokens with NLL 3.0 in all, 1 token with NLL 3.0: exp(6 / 4), not the mean of per-example
    pred = example_outputs({"nll": np.array([3.0, 3.0]), "labels": np.array([3, 1])}, "lm")
    assert pred.tolist() == [[3.0, 3.0], [3.0, 1.0]]
    assert metric_value("perplexity", pred, np.array([3, 1])) == pytest.approx(math.exp(1.5))
    assert verdict(-2.0, -1.0, "perplexity") == "better" and verdict(1.0, 2.0, "perplexity") == "worse"
    assert verdict(-1.0, 1.0, "perplexity") == "inconclusive"


def test_paired_bootstrap_of_perplexity_on_known_answers():
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 12, 200)
    base = np.stack([np.stack([tokens * 1.2 + rng.normal(0, .3, 200), tokens], 1) for _ in range(2)])   # ppl e^1.2
    good = np.stack([np.stack([tokens * 1.0 + rng.normal(0, .3, 200), tokens], 1) for _ in range(2)])   # ppl e^1.0
    res = paired_bootstrap(good, base, tokens, "perplexity", n_boot=300)
    assert res["delta"] == pytest.approx(math.exp(1.0) - math.exp(1.2), abs=0.02)
    assert res["ci_low"] <= res["delta"] <= res["ci_high"] < 0
    cell = lambda p, s: {"dev": {"value": metric_value("perplexity", p[s], tokens), "pred": p[s], "labels": tokens}}
    groups = {"lm-ce": {"method": "lm-ce", "seeds": {s: cell(base, s) for s in (0, 1)}},
              "lm-fkl": {"method": "lm-fkl", "seeds": {s: cell(good, s) for s in (0, 1)}},
              "lm-rkl": {"method": "lm-rkl", "seeds": {s: cell(base[::-1] * [1.05, 1], s) for s in (0, 1)}}}
    rows = summarize(groups, "lm-ce", "perplexity", "lm", n_boot=300)
    assert [(r["method"], r["verdict"]) for r in rows] == [("lm-ce", "baseline"), ("lm-fkl", "better"),
                                                           ("lm-rkl", "worse")]


def test_per_example_nll_sums_to_the_perplexity():
    model, tok = tiny_lm(seed=1)
    ex = encode([Row("to make soup you need", " salt and water ."), Row("", "on monday it is sunny in oslo ."),
                 Row("to make cake you", " need eggs .")], tok, 48)
    m = evaluate_lm(model, ex, tok.pad_token_id, batch_size=2, per_example=True)
    assert m["example_tokens"].tolist() == [len(e.ids) - max(e.n_prompt, 1) for e in ex]   # completion + eos
    assert math.exp(m["example_nll"].sum() / m["example_tokens"].sum()) == pytest.approx(m["perplexity"], rel=1e-6)
    one = evaluate_lm(model, ex[1:2], tok.pad_token_id, per_example=True)   # the same NLL alone as in a batch
    assert one["example_nll"][0] == pytest.approx(m["example_nll"][1], rel=1e-4)


def test_lm_grid_and_refusals():
    cells = plan_cells(["lm-fkl", "lm-jsd"], [0, 1], {"beta": [0.2, 0.8]}, baseline="lm-ce")
    assert [c["key"] for c in cells][:3] == ["lm-ce seed=0", "lm-ce seed=1", "lm-fkl seed=0"]
    assert [c["key"] for c in cells if c["method"] == "lm-jsd"][0] == "lm-jsd beta=0.2 seed=0"
    from kdlab.methods import get, names
    from kdlab.lm.train import METHODS
    assert set(names("lm")) == set(METHODS) and not set(METHODS) & set(names())   # registered, not classification
    assert all(set(get(m).option_names()) <= set(get(m).option_specs()) for m in METHODS)   # every option declared
    with pytest.raises(KdlabError, match="no method of the study has this option"):
        plan_cells(["lm-fkl"], [0], {"lmbda": [0.2]}, baseline="lm-ce")
    with pytest.raises(KdlabError, match="temperature must be a positive"):
        plan_cells(["lm-fkl"], [0], {"temperature": [0]}, baseline="lm-ce")


TINY = ["--task", "lm", "--preset", "tiny", "--max-steps", "3", "--max-train", "32", "--max-eval", "12",
        "--bootstrap", "300", "--quiet"]


def test_tiny_lm_study_end_to_end(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    cmd = ["study", "--methods", "lm-fkl,lm-rkl", "--seeds", "2", "--runs", runs, "--name", "obj", *TINY]
    assert main(cmd) == 0
    out = capsys.readouterr().out
    assert "dev (in domain), perplexity:" in out and "weather (out of domain), perplexity:" in out
    assert "\n  lm-ce " in out and "baseline" in out and "lower is better" in out
    assert "published reference rows" not in out and "doctor" not in out   # neither applies to LM runs
    store = Store(runs)
    assert len(store.runs(kind="student")) == 6   # lm-ce, lm-fkl, lm-rkl x 2 seeds (the default baseline: lm-ce)

    assert main(cmd + ["--json"]) == 0   # again: nothing new runs
    rows = json.loads(capsys.readouterr().out)
    assert len(store.runs(kind="student")) == 6
    assert {(r["method"], r["domain"]) for r in rows} == {(m, d) for m in ("lm-ce", "lm-fkl", "lm-rkl")
                                                          for d in ("dev", "weather")}
    st = store.study("obj")
    for r in rows:
        assert r["metric"] == "perplexity" and r["n"] == 2 and "doctor" not in r
        runs_of = [st["cells"][f"{r['method']} seed={s}"] for s in (0, 1)]
        per_seed = [store.run(rid)["summary"][r["domain"]] for rid in runs_of]   # each run's reported perplexity
        assert r["mean"] == pytest.approx(np.mean(per_seed))
        if r["method"] == "lm-ce":
            assert r["verdict"] == "baseline"
            continue
        assert r["ci_low"] <= r["delta"] <= r["ci_high"]
        expect = "better" if r["ci_high"] < 0 else "worse" if r["ci_low"] > 0 else "inconclusive"
        assert r["verdict"] == expect   # lower perplexity is better
    # every seed was evaluated on the same held-out examples (the study's data seed): the same scored tokens
    files = [np.load(store.folder(st["cells"][f"lm-fkl seed={s}"]) / "predictions.npz") for s in (0, 1)]
    assert np.array_equal(files[0]["dev/labels"], files[1]["dev/labels"]) and len(files[0]["dev/labels"]) == 12

    # the dashboard's Studies page shows the LM study's table (perplexity, the verdicts)
    from pathlib import Path
    from streamlit.testing.v1 import AppTest
    app = Path(__file__).resolve().parents[1] / "app"
    sys.path.insert(0, str(app))
    try:
        at = AppTest.from_file(str(app / "pages" / "10_Studies.py"), default_timeout=60)
        at.session_state["kd_runs_root"] = runs
        at.run()
        at.selectbox(key="studies_pick").set_value("obj").run()
        assert not at.exception and all(e.value.startswith("worse than lm-ce: ") for e in at.error)
        assert list(at.dataframe[0].value["verdict"]) == [r["verdict"] for r in rows]
        assert any("lower is better" in c.value for c in at.caption)
    finally:
        sys.path.remove(str(app))

    # a killed cell: an LM run keeps no checkpoint, so the cell starts again as a new run
    victim = st["cells"]["lm-rkl seed=1"]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with sqlite3.connect(store.path) as c:
        c.execute("UPDATE runs SET status='running', pid=? WHERE id=?", (dead.pid, victim))
    assert main(cmd) == 0
    capsys.readouterr()
    again = store.study("obj")["cells"]["lm-rkl seed=1"]
    assert again != victim and store.run(again)["status"] == "finished"


def test_lm_study_refuses_a_mixed_grid_in_one_line(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert main(["study", "--methods", "kd,lm-fkl", "--seeds", "1", "--runs", runs, *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "kd is a classification method" in err and len(err.splitlines()) == 1
    assert main(["study", "--methods", "lm-fkl", "--baseline", "ce", "--seeds", "1", "--runs", runs,
                 "--vary", "temperature=-1", *TINY]) == 2
    assert "temperature must be a positive" in capsys.readouterr().err
    assert not Store(runs).runs()   # refused before any teacher trains
