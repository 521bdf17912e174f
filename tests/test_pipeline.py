"""End to end on the tiny preset: teacher fine-tuning (cached), distillation, evaluation, the CLI."""
import json
import subprocess
import sys

import pytest

from kdlab.cli import main
from kdlab.config import RunConfig, TrainConfig
from kdlab.engine.pipeline import distill_run
from kdlab.runs.store import Store


def tiny_cfg(method="kd", **train):
    return RunConfig(preset="tiny", method=method, train=TrainConfig(progress=False, **train),
                     teacher_train=TrainConfig(progress=False))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("runs"))


def test_tiny_run_beats_chance_and_is_stored(store):
    # 60 steps (of the 150 in two epochs) already take the student well past chance
    run_id = distill_run(tiny_cfg("kd", epochs=2, max_steps=60), store, log=lambda *_: None)
    run = store.run(run_id)
    assert run["status"] == "finished"
    ev = store.final_evals(run_id)
    assert set(ev) == {"dev", "ood_restaurant", "ood_electronics"}
    assert ev["dev"]["accuracy"] > 0.7, ev  # chance is 0.5 on the balanced dev split
    assert 0 <= ev["dev"]["ece"] <= 1 and 0 <= ev["dev"]["agreement"] <= 1
    df = store.metrics_frame(run_id)
    assert {"loss", "kd", "ce", "lr"} <= set(df.columns)
    assert df["step"].tolist() == list(range(1, len(df) + 1))
    assert (store.folder(run_id) / "student" / "model.safetensors").exists()
    assert not (store.folder(run_id) / "checkpoint").exists()   # a finished run drops its resume checkpoint
    teachers = store.runs(kind="teacher")
    assert len(teachers) == 1 and teachers[0]["status"] == "finished"
    size = store.artifact(run_id, "size")
    assert size["params"] > 0 and size["latency_ms"] > 0


def test_teacher_is_reused_for_the_same_data_and_settings(store):
    distill_run(tiny_cfg("ce", max_steps=2), store, log=lambda *_: None)
    assert len(store.runs(kind="teacher")) == 1


def test_the_method_name_is_resolved_once_and_the_class_handed_down(store, monkeypatch):
    import kdlab.engine.distill
    import kdlab.engine.pipeline
    calls = []
    real = kdlab.engine.pipeline.get
    monkeypatch.setattr(kdlab.engine.pipeline, "get", lambda name: calls.append(name) or real(name))
    monkeypatch.setattr(kdlab.engine.distill, "get", lambda name: pytest.fail(f"the loop resolved '{name}' again"))
    run_id = distill_run(tiny_cfg("kd", max_steps=2), store, log=lambda *_: None)
    # once for the student's method (and once for the teacher's fine-tuning, 'ce', where the teacher is trained here)
    assert store.run(run_id)["status"] == "finished" and calls[0] == "kd" and calls.count("kd") == 1


def test_hidden_state_kd_logs_per_layer_values_and_mapping(store):
    run_id = distill_run(tiny_cfg("hidden", max_steps=3), store, log=lambda *_: None)
    cols = store.metrics_frame(run_id).columns
    per_layer = [c for c in cols if c.startswith("hidden_mse/")]
    assert per_layer == ["hidden_mse/s1-t2", "hidden_mse/s2-t4"]
    W = store.mappings(run_id)[0]["matrix"]
    assert W == [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def test_cli_distill_runs_and_eval_prints_json(store, tmp_path, capsys):
    rc = main(["distill", "--preset", "tiny", "--max-steps", "3", "--no-progress", "--quiet",
               "--runs", str(store.root), "--method", "kd", "--set", "temperature=4"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    run_id = out["run"]
    assert store.run(run_id)["config"]["method_args"] == {"temperature": 4}
    f = tmp_path / "probe.tsv"
    f.write_text("sentence\tlabel\na wonderful, moving film\t1\na dull and tedious mess\t0\n")
    assert main(["eval", "--run", run_id, "--data", str(f), "--runs", str(store.root)]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 2 and 0 <= res["accuracy"] <= 1


def test_cli_methods_and_runs(store, capsys):
    assert main(["methods"]) == 0
    names = capsys.readouterr().out.split()
    assert {"ce", "kd", "kd-mse", "hidden", "margin-mse", "listwise-kl", "contrastive"} <= set(names)
    assert main(["runs", "--runs", str(store.root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(r["kind"] == "teacher" for r in rows)
    from kdlab.models.core import folder_mb
    for r in rows:   # size on disk and latency beside the metrics
        if r["status"] == "finished":
            assert r["size"]["mb"] == round(folder_mb(store.artifact(r["id"], "model_dir")), 2) > 0
            assert r["size"]["latency_ms"] > 0
    assert main(["runs", "--runs", str(store.root)]) == 0
    assert " MB " in capsys.readouterr().out


def test_demo_on_tiny_preset_prints_the_table(tmp_path):
    p = subprocess.run([sys.executable, "-m", "kdlab", "demo", "--preset", "tiny", "--max-steps", "4",
                        "--also", "pkd-skip", "--no-progress", "--quiet", "--runs", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "teacher" in p.stdout and "student, no KD" in p.stdout and "student, kd" in p.stdout
    assert "student, pkd-skip" in p.stdout
    assert "ood_restaurant acc" in p.stdout and "ood_restaurant mF1" in p.stdout   # accuracy and macro-F1
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args,needle", [
    (["distill", "--preset", "tiny", "--data", "/nonexistent/train.tsv"], "not found"),
    (["distill", "--preset", "tiny", "--method", "nope"], "unknown method"),
    (["demo", "--preset", "tiny", "--also", "nope"], "unknown method"),
    (["distill", "--preset", "tiny", "--student-layers", "9"], "more layers"),
    (["distill", "--preset", "tiny", "--set", "bogus=1", "--max-steps", "1"], "no option"),
    (["eval", "--run", "missing", "--data", "x.tsv"], "no run"),
])
def test_cli_bad_input_gives_one_clear_line(tmp_path, args, needle):
    p = subprocess.run([sys.executable, "-m", "kdlab", *args, "--runs", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    lines = [l for l in p.stderr.splitlines() if l.startswith("kdlab: error:")]
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert all(r["status"] != "finished" or r["kind"] == "teacher" for r in Store(tmp_path).runs())


def test_a_store_adopting_a_shared_teacher_gets_its_curve_and_evaluations(store, tmp_path_factory):
    """Fine-tuned teachers are shared between stores (KDLAB_TEACHERS); the adopting store shows the same
    training curve and evaluations as the store that fine-tuned it."""
    distill_run(tiny_cfg("ce", max_steps=1), store, log=lambda *_: None)   # the teacher exists in the cache
    first = store.runs(kind="teacher")[0]
    other = Store(tmp_path_factory.mktemp("other-runs"))
    distill_run(tiny_cfg("ce", max_steps=1), other, log=lambda *_: None)
    adopted = other.runs(kind="teacher")
    assert len(adopted) == 1 and adopted[0]["status"] == "finished"
    key = lambda rows: sorted((m["step"], m["name"], m["value"]) for m in rows)
    assert key(other.metrics(adopted[0]["id"])) == key(store.metrics(first["id"]))
    assert any(m["name"] == "loss" for m in other.metrics(adopted[0]["id"]))
    assert other.final_evals(adopted[0]["id"]) == store.final_evals(first["id"])
