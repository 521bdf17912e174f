"""Model selection (--select split:metric) and early stopping (--patience) on the tiny preset."""
import dataclasses
from pathlib import Path

import pytest

from kdlab.config import RunConfig, apply_preset, build_config
from kdlab.errors import KdlabError
from kdlab.analysis.evaluate import evaluate
from kdlab.models.core import load_saved
from kdlab.engine.pipeline import distill_run, load_bundle
from kdlab.runs.store import Store

QUIET = dict(log=lambda *_: None)


def _cfg(**train):
    # the tiny teacher of the method tests' fixture (tests/test_methods_a.py), shared through KDLAB_TEACHERS
    cfg = apply_preset(RunConfig(max_train=64, max_eval=32, preset="tiny", method="kd"))
    cfg.train = dataclasses.replace(cfg.train, progress=False, batch_size=16, checkpoint_each_epoch=False, **train)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, progress=False, checkpoint_each_epoch=False)
    return cfg


def test_the_selected_epoch_is_kept_and_reported_beside_the_last(tmp_path):
    store = Store(tmp_path)
    cfg = _cfg(epochs=3, select="ood_restaurant:accuracy")
    run = distill_run(cfg, store, **QUIET)
    sel = store.artifact(run, "selection")
    best = sel["selected"]
    per_epoch = {e["epoch"]: e["value"] for e in store.evals(run)
                 if e["split"] == "ood_restaurant" and e["metric"] == "accuracy"}
    assert set(per_epoch) == {1, 2, 3} and best["value"] == max(per_epoch.values())
    assert best["epoch"] == min(e for e, v in per_epoch.items() if v == best["value"])   # the first best epoch
    assert sel["last"]["epoch"] == 3 and sel["last"]["evals"] == store.final_evals(run)
    # the run's model is the selected one: evaluating it again gives the selected epoch's numbers
    assert store.artifact(run, "model_dir") == sel["model_dir"]
    model, tok = load_saved(sel["model_dir"])
    again, _ = evaluate(model, tok, load_bundle(cfg), max_len=cfg.train.max_len)
    for split, m in best["evals"].items():
        assert again[split]["accuracy"] == pytest.approx(m["accuracy"])


def test_patience_stops_a_run_that_does_not_improve(tmp_path, capsys):
    store = Store(tmp_path)
    cfg = _cfg(epochs=6, lr=1e-12, select="dev:accuracy", patience=1)   # no learning: accuracy never improves
    run = distill_run(cfg, store, **QUIET)
    r = store.run(run)
    assert r["status"] == "finished" and "stopped early after epoch 2" in r["message"]
    sel = store.artifact(run, "selection")
    assert sel["stopped_early"] and sel["selected"]["epoch"] == 1 and sel["last"]["epoch"] == 2
    plan = store.artifact(run, "plan")   # the loop's plan (kdlab.runs.progress): 6 epochs of 64 examples in batches of 16
    assert (plan["total_steps"], plan["steps_per_epoch"], plan["start_step"]) == (24, 4, 0)
    from kdlab.cli import main
    assert main(["runs", "--runs", str(tmp_path)]) == 0
    assert "selected: epoch 1 by dev:accuracy" in capsys.readouterr().out
    import csv
    import io
    assert main(["runs", "--runs", str(tmp_path), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    mine = {x["split"]: x for x in rows if x["run"] == run}
    assert set(mine) == {"dev", "ood_restaurant", "ood_electronics"}
    assert float(mine["dev"]["accuracy"]) == pytest.approx(store.final_evals(run)["dev"]["accuracy"])
    assert float(mine["dev"]["mb"]) > 0 and mine["dev"]["method"] == "kd" and mine["dev"]["seed"] == "0"


@pytest.mark.parametrize("kw,needle", [
    (dict(patience=2), "--select split:metric"),
    (dict(select="dev"), "split:metric"),
    (dict(select="nosuch:accuracy"), "no evaluation split 'nosuch'"),
    (dict(select="dev:pearson"), "no metric 'pearson'"),
])
def test_bad_selection_is_one_clear_error_before_training(tmp_path, kw, needle):
    with pytest.raises(KdlabError, match=needle):
        cfg = build_config(preset="tiny", max_train=64, max_eval=32, **kw)
        distill_run(cfg, Store(tmp_path), **QUIET)
    assert not Store(tmp_path).runs(kind="student") or \
        all(r["status"] != "finished" for r in Store(tmp_path).runs(kind="student"))


def test_a_study_with_select_compares_the_selected_models(tmp_path, capsys):
    """A study run with --select reads each cell's selected epoch (its evaluations and per-example outputs);
    --report last reads the last epochs'; the two differ where a run's best epoch is not its last."""
    import numpy as np

    from kdlab.analysis.stats import load_predictions
    from kdlab.engine.study import aggregate, format_table, run_study
    store = Store(tmp_path)
    cfg = _cfg(epochs=3, select="ood_restaurant:accuracy")
    res = run_study(cfg, store, "sel", ["ce", "kd"], [0, 1], workers=1, progress=False, n_boot=200, **QUIET)
    rows = {(r["method"], r["domain"]): r for r in res["rows"]}
    cells = store.study("sel")["cells"]
    for (method, domain), r in rows.items():
        assert r["model"] == "selected by ood_restaurant:accuracy"
        sel_vals = [store.artifact(cells[f"{method} seed={s}"], "selection")["selected"]["evals"][domain]["accuracy"]
                    for s in (0, 1)]
        assert r["mean"] == pytest.approx(np.mean(sel_vals))
    for s in (0, 1):   # the selected epoch's per-example outputs travel with its model
        sel = store.artifact(cells[f"kd seed={s}"], "selection")
        out = load_predictions(Path(sel["model_dir"]) / "predictions.npz")["ood_restaurant"]
        acc = float((out["logits"].argmax(1) == out["labels"]).mean())
        assert acc == pytest.approx(sel["selected"]["evals"]["ood_restaurant"]["accuracy"], abs=1e-6)
    last = {(r["method"], r["domain"]): r for r in aggregate(store, "sel", n_boot=200, report="last")}
    for (method, domain), r in last.items():
        assert r["model"] == "last epoch"
        assert r["mean"] == pytest.approx(np.mean([store.final_evals(cells[f"{method} seed={s}"])[domain]["accuracy"]
                                                   for s in (0, 1)]))
    assert "models: each run's selected by ood_restaurant:accuracy" in format_table(res["rows"])
    assert (tmp_path / "studies" / "sel" / "results-last.csv").exists()
