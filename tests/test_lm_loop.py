"""Causal LM runs through the one training loop (kdlab.engine.distill.train with kdlab.lm.adaptor): the loop's
precision, TensorBoard events and plan artifact on an LM run, model selection on dev perplexity (lower is better),
the LM objectives as registered methods, and one line for what does not apply."""
import json

import numpy as np
import pytest

from kdlab.cli import main
from kdlab.engine.tensorboard import FOLDER, read_scalars
from kdlab.runs.store import Store
from test_lm_run import _refused

SMALL = ["distill", "--task", "lm", "--preset", "tiny", "--max-train", "32", "--max-eval", "4", "--quiet"]


def test_an_lm_run_goes_through_the_one_loop(tmp_path, monkeypatch, capsys):
    from kdlab.engine import distill
    calls = []
    real = distill.train

    def spy(student, tokenizer, bundle, method_name="kd", **kw):
        calls.append((getattr(method_name, "name", method_name), type(bundle).__name__, kw.get("run_id")))
        return real(student, tokenizer, bundle, method_name, **kw)
    monkeypatch.setattr(distill, "train", spy)
    assert main([*SMALL, "--method", "lm-fkl", "--max-steps", "2", "--precision", "bf16", "--tensorboard",
                 "--set", "ce_weight=0.5", "--runs", str(tmp_path)]) == 0
    store = Store(tmp_path)
    run = store.runs(kind="student")[0]
    assert run["status"] == "finished"
    assert ("lm-fkl", "LMBundle", run["id"]) in calls   # the student's run went through the loop
    plan = store.artifact(run["id"], "plan")
    assert plan["total_steps"] == 2 and plan["precision"] == "bf16" and plan["start_step"] == 0
    scalars = read_scalars(store.folder(run["id"]) / FOLDER)
    losses = {m["step"]: m["value"] for m in store.metrics(run["id"]) if m["name"] == "loss"}
    assert [s for s, _ in scalars["train/loss"]] == sorted(losses) == [1, 2]
    for step, v in scalars["train/loss"]:
        assert v == pytest.approx(losses[step], rel=1e-6)
    assert {"train/kd", "train/ce", "train/lr"} <= set(scalars)   # the method's terms
    final = store.final_evals(run["id"])
    assert scalars["dev/perplexity"][-1] == (2, pytest.approx(final["dev"]["perplexity"], rel=1e-6))
    assert "weather/perplexity" in scalars and "dev/token_kl" in scalars
    # the per-example NLLs of the last evaluation: perplexity = exp(sum NLL / sum tokens)
    with np.load(store.folder(run["id"]) / "predictions.npz") as z:
        assert np.exp(z["dev/nll"].sum() / z["dev/labels"].sum()) == pytest.approx(final["dev"]["perplexity"],
                                                                                    rel=1e-5)
    capsys.readouterr()
    assert main(["eval", "--run", run["id"], "--runs", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["perplexity"]["in-domain"] == pytest.approx(final["dev"]["perplexity"],
                                                                                           rel=1e-4)


def test_select_on_dev_perplexity_keeps_the_lowest_epoch(tmp_path, capsys):
    runs = ["--runs", str(tmp_path)]
    assert main([*SMALL, "--method", "lm-rkl", "--epochs", "3", "--batch-size", "16", "--lr", "3e-3",
                 "--select", "dev:perplexity", *runs]) == 0
    store = Store(tmp_path)
    run = store.runs(kind="student")[0]
    sel = store.artifact(run["id"], "selection")
    per_epoch = {e["epoch"]: e["value"] for e in store.evals(run["id"])
                 if e["split"] == "dev" and e["metric"] == "perplexity"}
    assert sorted(per_epoch) == [1, 2, 3]
    best = min(per_epoch, key=per_epoch.get)   # lower is better
    assert best != 1   # training lowers it: the best epoch is not simply the first one
    assert sel["selected"]["epoch"] == best and sel["selected"]["value"] == pytest.approx(per_epoch[best])
    assert store.artifact(run["id"], "model_dir") == sel["model_dir"]   # the kept model: the selected epoch's
    capsys.readouterr()
    assert main(["eval", "--run", run["id"], *runs]) == 0
    assert json.loads(capsys.readouterr().out)["perplexity"]["in-domain"] == pytest.approx(per_epoch[best], rel=1e-4)


def test_what_an_lm_run_does_not_take_is_refused_in_one_line(tmp_path, capsys):
    runs = ["--runs", str(tmp_path), "--max-steps", "1"]
    _refused(capsys, [*SMALL, "--method", "lm-fkl", "--select", "dev:accuracy", *runs], "--select", "perplexity")
    _refused(capsys, [*SMALL, "--method", "lm-fkl", "--select", "test:perplexity", *runs], "split 'test'", "weather")
    _refused(capsys, [*SMALL, "--method", "lm-ce", "--set", "lmbda=0.3", *runs], "lm-ce", "lmbda")
    _refused(capsys, [*SMALL, "--method", "gkd", "--set", "lmbda=1.5", *runs], "lmbda", "[0, 1]")
    _refused(capsys, [*SMALL, "--method", "lm-fkl", "--set", "topk=4", "--set", "hidden_weight=1", *runs], "topk")
    assert not (tmp_path / "kdlab.db").exists() or not Store(tmp_path).runs()   # all before any run or teacher


def test_lm_methods_are_registered_for_lm_tasks_only():
    from kdlab.errors import KdlabError
    from kdlab.methods import get, names
    lm = {"lm-ce", "lm-fkl", "lm-rkl", "lm-jsd", "lm-tvd", "seq-kd", "gkd"}
    assert set(names("lm")) == lm and not lm & set(names()) and not lm & set(names("ranking"))
    assert not get("lm-ce").uses_teacher and not get("seq-kd").uses_teacher and get("gkd").uses_teacher
    with pytest.raises(KdlabError, match="defined only for lm labels"):
        get("lm-fkl").check_label_kind("classes", "sst2")
    with pytest.raises(KdlabError, match="temperature must be a positive number"):
        get("lm-tvd").check_options({"temperature": 0})
    assert get("lm-jsd").resolve_options({"chunk": 64.0})["chunk"] == 64   # a whole number given as 64.0
