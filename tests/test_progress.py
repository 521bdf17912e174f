"""Progress of a stored run (kdlab.runs.progress): phase, step of total, ETA from the loop's plan."""
from kdlab.runs.progress import eta_text, progress_line, run_progress
from kdlab.runs.store import Store


def test_progress_phase_step_and_eta(tmp_path):
    store = Store(tmp_path)
    rid = store.create_run("student", "kd", {"train": {}}, name="p")
    store.set_artifact(rid, "plan", {"total_steps": 100, "steps_per_epoch": 50, "started": 1000.0, "start_step": 20})
    store.log_metrics(rid, 40, 0, {"loss": 1.0})
    p = run_progress(store, store.run(rid), now=1100.0)
    # 20 steps in 100 s since the (resumed) start at step 20: 5 s per step, 60 steps left
    assert (p["phase"], p["step"], p["total"], p["eta_s"]) == ("student training", 40, 100, 300.0)
    assert p["fraction"] == 0.4
    assert progress_line(store, store.run(rid), now=1100.0) == "kd: student training, step 40 / 100, ETA 5 min"
    store.log_metrics(rid, 100, 1, {"loss": 0.5})
    assert run_progress(store, store.run(rid), now=1200.0)["phase"] == "evaluation"
    store.finish(rid, "finished")
    done = run_progress(store, store.run(rid))
    assert done["eta_s"] is None and done["fraction"] == 1.0
    t = store.create_run("teacher", "ce", {"train": {"max_steps": 8}}, name="t")   # no plan yet: max_steps, no ETA
    assert progress_line(store, store.run(t)) == "ce: teacher fine-tuning, step 0 / 8, ETA unknown"
    assert (eta_text(30), eta_text(3600), eta_text(7200)) == ("ETA 30 s", "ETA 60 min", "ETA 2.0 h")
