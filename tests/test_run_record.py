"""One stored-run record (kdlab.runs.run_record): a student of a two-teacher ensemble is compressed and evaluated
(`kdlab compress`, `kdlab eval --model`), and old or provenance keys never reach RunConfig."""
import json

import pytest

from kdlab.cli import main
from kdlab.errors import KdlabError
from kdlab.runs.run_record import PROVENANCE, StoredRun, config_of
from kdlab.runs.store import Store


def test_config_of_drops_provenance_and_keys_kdlab_no_longer_knows():
    stored = {"preset": "tiny", "method": "kd", "teacher_run": "t1", "teacher_runs": ["t1", "t2"],
              "data_identity": "abc", "task_spec": {"kind": "classify"}, "gone_option": 3,
              "train": {"lr": 3e-5, "max_len": 32, "old_train_key": 1}}
    cfg = config_of(stored)
    assert cfg.method == "kd" and cfg.train.lr == 3e-5 and cfg.train.max_len == 32
    assert not set(PROVENANCE) & set(cfg.to_dict())


def test_record_answers_from_the_stored_form():
    row = {"id": "r1", "kind": "distill", "status": "finished", "parent": "t1",
           "config": {"teacher_run": "t1", "teacher_runs": ["t1", "t2"], "train": {"max_len": 48, "seed": 3},
                      "task_spec": {"kind": "ranking", "metrics": ["ndcg@10"]}, "data": "d"}}
    r = StoredRun(row)
    assert (r.teacher_run, r.teacher_runs, r.max_len, r.seed) == ("t1", ["t1", "t2"], 48, 3)
    assert r.is_ranking and r.primary_metric == "ndcg@10" and r.data == "d"
    old = StoredRun({"id": "r0", "kind": "distill", "status": "finished", "parent": "t0", "config": {}})
    assert old.teacher_runs == ["t0"] and old.max_len == 64 and old.primary_metric == "accuracy"
    with pytest.raises(KdlabError, match="no saved model"):
        old.require_model_dir()


def test_student_of_a_two_teacher_ensemble_compresses_and_evaluates(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert main(["distill", "--preset", "tiny", "--teacher", "tiny", "--teacher", "tiny", "--max-steps", "2",
                 "--max-train", "64", "--max-eval", "32", "--teacher-epochs", "1", "--no-progress", "--quiet",
                 "--runs", runs]) == 0
    run = Store(runs).run(json.loads(capsys.readouterr().out)["run"])
    assert len(run["config"]["teacher_runs"]) == 2
    assert main(["compress", "--run", run["id"], "--quantize", "int8", "--runs", runs, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == "int8"
    assert main(["eval", "--run", run["id"], "--model", "all", "--json", "--runs", runs, "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert "int8" in json.dumps(res) and "teacher" in json.dumps(res)
