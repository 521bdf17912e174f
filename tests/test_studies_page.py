"""The Studies dashboard page under AppTest, on a study stored by hand (no training): the table with verdicts,
the forest plot (one panel per domain, intervals, per-seed points) and the per-seed table."""
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from kdlab.analysis.stats import summarize
from kdlab.runs.store import Store
from kdlab.analysis.viz import seed_deltas, study_forest

APP = Path(__file__).resolve().parents[1] / "app"


def _rows():
    rng = np.random.default_rng(0)
    labels = np.ones(300, dtype=int)
    cell = lambda p: {s: {"value": float((p[s] == labels).mean()), "pred": p[s], "labels": labels}
                      for s in ("dev", "ood_imdb")}
    pred = lambda rate: {s: (rng.random(300) < rate).astype(int) for s in ("dev", "ood_imdb")}
    groups = {"ce": {"method": "ce", "seeds": {0: cell(pred(0.6)), 1: cell(pred(0.6))}},
              "kd": {"method": "kd", "seeds": {0: cell(pred(0.9)), 1: cell(pred(0.9))}},
              "pkd-skip": {"method": "pkd-skip", "seeds": {0: cell(pred(0.6)), 1: cell(pred(0.6))}}}
    return summarize(groups, "ce", "accuracy", n_boot=200)


def test_forest_figure_data():
    rows = _rows()
    fig = study_forest(rows)
    assert [a.text for a in fig.layout.annotations][:2] == ["dev (in domain)", "ood_imdb (out of domain)"]
    kd = next(t for t in fig.data if t.y == ("kd",) and t.name == "better")
    r = next(r for r in rows if r["group"] == "kd" and r["domain"] == "dev")
    assert kd.x[0] == r["delta"] and kd.error_x.array[0] == r["ci_high"] - r["delta"]
    seeds = [t for t in fig.data if t.name == "per seed"]
    assert len(seeds) == 4 and all(len(t.x) == 2 for t in seeds)   # 2 methods x 2 domains, 2 seeds each
    assert seed_deltas(rows, r)["0"] == r["seeds"]["0"] - next(
        b for b in rows if b["verdict"] == "baseline" and b["domain"] == "dev")["seeds"]["0"]


def test_studies_page(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(APP))
    store = Store(tmp_path)
    rows = json.loads(json.dumps(_rows(), default=float))
    for r in rows:   # as kdlab.engine.study.aggregate names the doctor for inconclusive and worse verdicts
        if r["verdict"] in ("inconclusive", "worse"):
            r["doctor"] = f"python -m kdlab doctor --run run-{r['group']}"
    store.save_study("s1", {"grid": {"methods": ["ce", "kd", "pkd-skip"], "seeds": [0, 1], "baseline": "ce"},
                            "cells": [{"key": f"{m} seed={s}"} for m in ("ce", "kd", "pkd-skip") for s in (0, 1)]})
    store.set_study_result("s1", {"rows": rows})
    store.save_study("empty", {"grid": {"methods": ["ce"]}, "cells": []})
    at = AppTest.from_file(str(APP / "pages" / "10_Studies.py"), default_timeout=60)
    at.session_state["kd_runs_root"] = str(tmp_path)
    at.run()
    assert not at.exception and not at.error
    at.selectbox(key="studies_pick").set_value("s1").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value   # the table comes first
    assert list(table["verdict"]) == [r["verdict"] for r in rows]
    assert set(table["verdict"]) >= {"baseline", "better"}
    assert any("better than ce: kd on dev; kd on ood_imdb" in s.value for s in at.success)
    assert any(c.value == "python -m kdlab doctor --run run-pkd-skip" for c in at.code)   # pkd-skip: inconclusive
    forest = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert forest["layout"]["title"]["text"].startswith("Difference to ce (accuracy)")
    assert at.dataframe[1].value.shape == (6, 2)   # per seed: 3 methods x 2 domains, 2 seeds
    at.selectbox(key="studies_pick").set_value("empty").run()
    assert not at.exception and any("no aggregated results" in i.value for i in at.info)
