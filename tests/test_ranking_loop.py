"""Ranking through the one training loop (kdlab.distill with kdlab.ranking.adaptor): a run stopped mid-way
(killed, or cancelled) resumes to the same weights and metrics as an uninterrupted one; --select dev:ndcg@10
chooses on the dev queries carved from the training queries (never on the test qrels); --precision bf16 and
--tensorboard run on CPU; the plan (progress, ETA) is written. Tiny models built in code, a toy BEIR folder."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdlab.engine import distill
from kdlab.cli import main
from kdlab.engine.pipeline import resume_run
from kdlab.ranking.data import load_beir, write_beir
from kdlab.runs.store import Store
from test_ranking import DOCS, QRELS, QUERIES

COMMON = ["distill", "--task", "ranking", "--teacher", "tiny", "--max-train", "4", "--batch-size", "4",
          "--teacher-epochs", "1", "--no-progress", "--quiet", "--seed", "3"]


@pytest.fixture
def toy(tmp_path):
    return write_beir(tmp_path / "toy", DOCS, QUERIES, QRELS)


def _final(store, run_id):
    m = store.metrics_frame(run_id)
    w = load_file(str(store.folder(run_id) / "student" / "model.safetensors"))
    return m, store.final_evals(run_id), w


def _stop_at(monkeypatch, step: int, how: str):
    """Stop the next run after optimiser step ``step``: an exception (a killed process: the run is marked failed)
    or a cancel request (the dashboard's Cancel: the loop stops at the step's end)."""
    real = distill.log_step

    def log_step(loop, *a, **k):
        row = real(loop, *a, **k)
        if loop.state.step == step:
            if how == "kill":
                raise RuntimeError("killed")
            loop.store.request_cancel(loop.run_id)
        return row
    monkeypatch.setattr(distill, "log_step", log_step)


@pytest.mark.parametrize("method,how", [("margin-mse", "kill"), ("contrastive", "cancel")])
def test_stopped_ranking_run_resumes_to_the_uninterrupted_result(toy, tmp_path, monkeypatch, capsys, method, how):
    root = tmp_path / "runs"
    args = [*COMMON, "--method", method, "--data", str(toy), "--runs", str(root), "--max-steps", "7",
            "--checkpoint-every", "2", "--set", "student_from=tiny" if method == "contrastive" else "negatives=3"]
    assert main([*args, "--name", "straight"]) == 0
    with monkeypatch.context() as mp:
        _stop_at(mp, 5, how)
        code = main([*args, "--name", "stopped"]) if how == "cancel" else None
        if how == "kill":
            with pytest.raises(RuntimeError, match="killed"):
                main([*args, "--name", "stopped"])
    capsys.readouterr()
    store = Store(root)
    runs = {r["name"]: r for r in store.runs(kind="student")}
    stopped = runs["stopped"]
    assert stopped["status"] == ("failed" if how == "kill" else "cancelled"), stopped["message"]
    assert code in (None, 1)
    state = json.loads((store.folder(stopped["id"]) / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4   # the last checkpoint before the stop
    resume_run(store, stopped["id"], log=lambda *a: None)
    assert store.run(stopped["id"])["status"] == "finished"
    m_a, ev_a, w_a = _final(store, runs["straight"]["id"])
    m_b, ev_b, w_b = _final(store, stopped["id"])
    assert sorted(m_a.step.unique().tolist()) == sorted(m_b.step.unique().tolist()) == list(range(1, 8))
    assert m_b[m_b.step == 7]["loss"].iloc[0] == pytest.approx(m_a[m_a.step == 7]["loss"].iloc[0], rel=1e-5)
    assert set(ev_a) == set(ev_b) == {"dev", "test"}
    for split in ev_a:
        for k in ("ndcg@10", "mrr@10", "recall@100"):
            assert ev_b[split][k] == pytest.approx(ev_a[split][k], abs=1e-6), (split, k)
    assert w_a.keys() == w_b.keys()
    for k in w_a:
        assert torch.allclose(w_a[k], w_b[k], atol=1e-5), k


def test_select_on_dev_queries_with_bf16_and_tensorboard(toy, tmp_path, capsys):
    root = tmp_path / "runs"
    assert main([*COMMON, "--method", "contrastive", "--set", "student_from=tiny", "--data", str(toy), "--runs",
                 str(root), "--epochs", "3", "--select", "dev:ndcg@10", "--precision", "bf16", "--tensorboard"]) == 0
    capsys.readouterr()
    store = Store(root)
    run = store.runs(kind="student")[0]
    rid = run["id"]
    assert run["status"] == "finished"
    plan = store.artifact(rid, "plan")
    assert plan["precision"] == "bf16" and plan["total_steps"] == 3 * plan["steps_per_epoch"]
    sel = store.artifact(rid, "selection")
    assert sel["selected"]["split"] == "dev" and sel["selected"]["metric"] == "ndcg@10"
    dev_by_epoch = {e["epoch"]: e["value"] for e in store.evals(rid) if e["split"] == "dev" and e["metric"] == "ndcg@10"}
    assert len(dev_by_epoch) == 3 and sel["selected"]["value"] == pytest.approx(max(dev_by_epoch.values()))
    assert sel["selected"]["epoch"] == min(e for e, v in dev_by_epoch.items() if v == max(dev_by_epoch.values()))
    # the dev queries are training queries the run did not train on; the test queries are the test qrels'
    data = load_beir(toy)
    assert run["config"]["dev_queries"] == 1 and sel["selected"]["evals"]["dev"]["n"] == 1
    assert sel["selected"]["evals"]["test"]["n"] == len(data.split_queries("test"))
    assert store.artifact(rid, "model_dir") == sel["model_dir"]
    meta = json.loads((store.folder(rid) / "selected" / "kdlab.json").read_text())
    assert meta["model"] == "bi-encoder" and meta["selected"] is True
    assert main(["eval", "--runs", str(root), "--run", rid, "--data", str(toy)]) == 0   # the selected model
    res = json.loads(capsys.readouterr().out)
    assert res["ndcg@10"] == pytest.approx(sel["selected"]["evals"]["test"]["ndcg@10"], abs=1e-3)
    assert any((store.folder(rid) / "tensorboard").iterdir())
    preds = dict(__import__("numpy").load(store.folder(rid) / distill.PREDICTIONS))
    assert preds["test/ndcg@10"].shape == (3,) and preds["test/labels"].tolist() == ["t1", "t2", "t3"]
    assert preds["test/ndcg@10"].mean() == pytest.approx(store.final_evals(rid)["test"]["ndcg@10"], abs=1e-6)


def test_select_on_test_qrels_is_refused(toy, tmp_path, capsys):
    assert main([*COMMON, "--method", "contrastive", "--set", "student_from=tiny", "--data", str(toy), "--runs",
                 str(tmp_path / "runs"), "--select", "test:ndcg@10"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdlab: error:") and "\n" not in err and "dev:ndcg@10" in err


def test_ranking_study_prints_verdicts_over_queries(toy, tmp_path, capsys):
    """kdlab study --task ranking: contrastive (the no-KD baseline) and margin-mse, two seeds each on the same data
    and teacher; the table has a verdict per split from the paired bootstrap over seeds and queries."""
    import numpy as np
    root = tmp_path / "runs"
    assert main(["study", "--task", "ranking", "--methods", "contrastive,margin-mse", "--seeds", "2", "--data",
                 str(toy), "--teacher", "tiny", "--max-train", "4", "--max-steps", "2", "--batch-size", "4",
                 "--teacher-epochs", "1", "--bootstrap", "200", "--runs", str(root), "--quiet", "--no-progress",
                 "--json", "--set", "score=cosine"]) == 0
    rows = json.loads(capsys.readouterr().out)
    store = Store(root)
    assert len(store.runs(kind="teacher")) == 1 and len(store.runs(kind="student")) == 4
    # --set: an option every cell shares, the baseline's included (one start for KD and no-KD students)
    assert {r["config"]["method_args"].get("score") for r in store.runs(kind="student")} == {"cosine"}
    assert {(r["method"], r["domain"]) for r in rows} == {(m, d) for m in ("contrastive", "margin-mse")
                                                          for d in ("dev", "test")}
    for r in rows:
        assert r["metric"] == "ndcg@10" and r["n"] == 2
        assert "doctor" not in r   # the doctor diagnoses classification runs: no "why?" pointing at a refusal
        if r["method"] == "contrastive":
            assert r["verdict"] == "baseline"
        else:
            assert r["verdict"] in ("better", "worse", "inconclusive") and r["ci_low"] <= r["delta"] <= r["ci_high"]
    # the observed difference is the mean over seeds of the per-query means' differences
    test = next(r for r in rows if r["method"] == "margin-mse" and r["domain"] == "test")
    base = next(r for r in rows if r["method"] == "contrastive" and r["domain"] == "test")
    assert test["delta"] == pytest.approx(np.mean([test["seeds"][s] - base["seeds"][s] for s in ("0", "1")]), abs=1e-9)
    # scripts/ranking_table.py: the same verdict, and each row's metrics are the mean of its seeds' runs
    import importlib.util
    spec = importlib.util.spec_from_file_location("ranking_table", Path(__file__).parents[1] / "scripts" /
                                                  "ranking_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    name = store.studies()[0]["name"]
    trows = {r["method"]: r for r in table.study_rows(store, name)}
    assert trows["margin-mse"]["verdict"] == test["verdict"] and trows["margin-mse"]["delta"] == test["delta"]
    kd_runs = [r for r in store.runs(kind="student") if r["method"] == "margin-mse"]
    want = np.mean([store.final_evals(r["id"])["test"]["mrr@10"] for r in kd_runs])
    assert float(trows["margin-mse"]["mrr@10"].split(" ")[0]) == pytest.approx(want, abs=5e-4)
    assert trows["margin-mse"]["seeds"] == 2 and trows["contrastive"]["layers"] >= 1
    assert table.main([str(root), name]) == 0
    md = capsys.readouterr().out
    assert md.count("\n| margin-mse (2 seeds") == 1 and f"| {test['verdict']} |" in md
    assert table.main([str(root), "no-such-study"]) == 2
    assert "no study 'no-such-study'" in capsys.readouterr().err
    assert main(["study", "--task", "ranking", "--methods", "kd", "--data", str(toy), "--teacher", "tiny",
                 "--runs", str(root), "--quiet", "--name", "bad"]) == 2
    assert "'kd' is a classification method" in capsys.readouterr().err


def test_small_student_with_margins_contrastive_and_embedding_matching(toy, tmp_path, capsys):
    """A student cut to 1 layer of the tiny bi-encoder (keep_layers), trained with the teacher's margins plus the
    contrastive term and embedding matching to the 2-layer tiny bi-encoder: every term is logged, the saved student
    has 1 layer, and a contrastive run refuses embed_weight (not a KD method) in one line."""
    root = tmp_path / "runs"
    assert main([*COMMON, "--method", "margin-mse", "--data", str(toy), "--runs", str(root), "--set",
                 "student_from=tiny", "--set", "keep_layers=1", "--set", "alpha_hard=0.5", "--set", "embed_weight=1",
                 "--set", "embed_from=tiny", "--set", "transfer_docs=3"]) == 0
    capsys.readouterr()
    store = Store(root)
    run = store.runs(kind="student")[0]
    assert run["status"] == "finished"
    cfg = json.loads((store.folder(run["id"]) / "student" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1
    cols = set(store.metrics_frame(run["id"]).columns)
    assert {"margin_mse", "contrastive", "embed"} <= cols
    m = store.metrics_frame(run["id"])
    assert (m["embed"].dropna() > 0).all()
    # the loader adds 3 corpus documents (drawn from the seed and the batch) to every batch for the embedding term
    from types import SimpleNamespace
    from kdlab.ranking.adaptor import RankingAdaptor
    from kdlab.ranking.models import BiEncoder
    bi = BiEncoder.load(store.folder(run["id"]) / "student")
    bundle = SimpleNamespace(groups=[("q1", [0, 1]), ("q2", [1, 2])], data=load_beir(toy))
    loop = SimpleNamespace(cfg=SimpleNamespace(batch_size=4), student=bi, method=SimpleNamespace(hp={"transfer_docs": 3}))
    a, b = list(RankingAdaptor.loader(SimpleNamespace(bundle=bundle, batch_rows=lambda cfg: 2), loop, 7)), \
        list(RankingAdaptor.loader(SimpleNamespace(bundle=bundle, batch_rows=lambda cfg: 2), loop, 7))
    assert a[0]["x_input_ids"].shape[0] == 3 and len(set(a[0]["x_idx"].tolist())) == 3
    assert torch.equal(a[0]["x_idx"], b[0]["x_idx"])   # the same documents when the epoch is replayed (resume)
    assert main([*COMMON, "--method", "contrastive", "--data", str(toy), "--runs", str(root), "--set",
                 "student_from=tiny", "--set", "embed_weight=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "embed_weight" in err and "\n" not in err


def test_teacher_and_demo_commands_go_through_the_one_entry(toy, tmp_path, capsys, monkeypatch):
    """`kdlab teacher --task ranking` prepares the teacher as distill and study do; `kdlab demo --task ranking` runs
    its three students through `distill_run` (the one entry every run takes) and prints one table with them."""
    from kdlab.engine import pipeline
    root = tmp_path / "runs"
    base = ["--task", "ranking", "--teacher", "tiny", "--max-train", "4", "--batch-size", "4", "--teacher-epochs",
            "1", "--no-progress", "--quiet", "--data", str(toy), "--runs", str(root)]
    assert main(["teacher", *base]) == 0
    teacher = json.loads(capsys.readouterr().out)
    store = Store(root)
    assert [r["id"] for r in store.runs(kind="teacher")] == [teacher["run"]] and teacher["status"] == "finished"
    seen = []
    real = pipeline.distill_run

    def spy(cfg, *a, **k):
        seen.append(cfg.method)
        return real(cfg, *a, **k)
    monkeypatch.setattr(pipeline, "distill_run", spy)
    assert main(["demo", *base, "--max-steps", "1", "--set", "student_from=tiny"]) == 0
    out = capsys.readouterr().out
    assert seen == ["contrastive", "margin-mse", "listwise-kl"]
    assert "teacher (cross-encoder)" in out and "student, margin-mse" in out and "student, no KD" in out
    assert len(store.runs(kind="teacher")) == 1   # the demo reused the teacher the first command prepared
