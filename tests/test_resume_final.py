"""A run killed after its final checkpoint (before it was marked finished) resumes to finished with each
evaluation stored once (the resumed loop evaluates the final model again and used to add a second copy)."""
from kdlab import cli
from kdlab.engine.pipeline import resume_run
from kdlab.runs.store import Store


def test_resume_from_the_final_checkpoint_stores_each_evaluation_once(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert cli.main(["distill", "--preset", "tiny", "--no-progress", "--quiet", "--max-train", "32", "--max-eval", "8",
                     "--teacher-epochs", "1", "--batch-size", "8", "--max-steps", "4", "--keep-checkpoints",
                     "--runs", runs]) == 0
    capsys.readouterr()
    store = Store(runs)
    rid = store.runs(kind="student")[0]["id"]
    before = sorted((e["step"], e["split"], e["metric"]) for e in store.evals(rid))
    store.finish(rid, "failed", "killed")   # killed after the final checkpoint: it can be resumed
    resume_run(store, rid, log=lambda *a: None)
    after = sorted((e["step"], e["split"], e["metric"]) for e in store.evals(rid))
    assert store.run(rid)["status"] == "finished" and after == before
