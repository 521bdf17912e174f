"""One writer per run, study and workshop pack (kdlab.runs.prep_lock.exclusive): a second writer started beside the
first fails at once with one line naming the first one's pid; the lock goes with its process."""
import os
import subprocess
import sys
import textwrap

import pytest

from kdlab import cli
from kdlab.runs import prep_lock
from kdlab.errors import KdlabError
from kdlab.runs.store import Store

HOLD = textwrap.dedent("""
    import sys, time
    from kdlab.runs import prep_lock
    with prep_lock.exclusive(sys.argv[1], "x"):
        print("held", flush=True)
        time.sleep(60)
""")


def _holder(path):
    """A second process holding the lock on ``path`` (until killed)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture
def stopped_run(tmp_path):
    store = Store(tmp_path / "runs")
    rid = store.create_run("student", "kd", {"method": "kd"})
    store.finish(rid, "failed", "killed")
    return store, rid


def test_a_second_resume_names_the_process_writing_the_run(stopped_run, capsys):
    store, rid = stopped_run
    p = _holder(prep_lock.run_lock_path(store, rid))
    try:
        assert prep_lock.run_writer(store, rid) == p.pid
        rc = cli.main(["distill", "--resume", rid, "--runs", str(store.root)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and err.startswith("kdlab: error:")
        assert f"pid {p.pid}" in err and rid in err
        assert store.run(rid)["status"] == "failed"   # nothing of the run was touched
    finally:
        p.kill()
        p.wait()
    assert prep_lock.run_writer(store, rid) is None   # a killed holder leaves no lock behind
    rc = cli.main(["distill", "--resume", rid, "--runs", str(store.root)])
    assert rc == 2 and "no resumable checkpoint" in capsys.readouterr().err   # past the lock now


def test_the_lock_is_exclusive_within_and_across_processes(tmp_path):
    path = tmp_path / "r" / "run.lock"
    with prep_lock.exclusive(path, "run A"):
        with pytest.raises(KdlabError, match=f"run A is being written by another process \\(pid {os.getpid()}"):
            with prep_lock.exclusive(path, "run A"):
                pass
    with prep_lock.exclusive(path, "run A"):   # released
        pass


def test_a_second_study_and_workshop_fail_at_once(tmp_path, capsys):
    runs = tmp_path / "runs"
    p = _holder(runs / "studies" / "s1.lock")
    try:
        rc = cli.main(["study", "--preset", "tiny", "--methods", "kd", "--seeds", "1", "--name", "s1",
                       "--runs", str(runs), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and f"study 's1' is being written by another process (pid {p.pid}" in err
    finally:
        p.kill()
        p.wait()
    p = _holder(runs / "workshop.lock")
    try:
        rc = cli.main(["workshop", "prepare", "--preset", "tiny", "--runs", str(runs), "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and f"(pid {p.pid}" in err and "workshop" in err
    finally:
        p.kill()
        p.wait()


def test_study_bootstrap_is_checked_before_any_cell(tmp_path, capsys):
    rc = cli.main(["study", "--preset", "tiny", "--methods", "kd", "--bootstrap", "-5", "--runs",
                   str(tmp_path / "runs"), "--quiet"])
    assert rc == 2 and "--bootstrap must be a positive" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "kdlab.db").exists() or Store(tmp_path / "runs").runs() == []




def test_two_resumes_started_together_write_the_run_once(tmp_path, monkeypatch, capsys):
    import kdlab.engine.distill
    runs = str(tmp_path / "runs")
    real = kdlab.engine.distill.log_step

    def interrupted_at_step_3(loop, *a, **k):   # Ctrl-C after step 3: the run keeps its checkpoint of step 2
        if loop.teacher is not None and loop.state.step == 3:   # the student's loop, not the teacher's
            raise KeyboardInterrupt
        return real(loop, *a, **k)
    monkeypatch.setattr(kdlab.engine.distill, "log_step", interrupted_at_step_3)
    assert cli.main(["distill", "--preset", "tiny", "--no-progress", "--quiet", "--max-train", "32", "--max-eval", "8",
                     "--teacher-epochs", "1", "--batch-size", "8", "--checkpoint-every", "2", "--runs", runs]) == 130
    monkeypatch.undo()
    store = Store(runs)
    rid = store.runs(kind="student")[0]["id"]
    assert store.run(rid)["status"] == "cancelled"
    assert f"kdlab: interrupted: continue it with `python -m kdlab distill --resume {rid} --runs {runs}`" in \
        capsys.readouterr().err
    cmd = [sys.executable, "-m", "kdlab", "distill", "--resume", rid, "--runs", runs, "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 2], outs
    err = next(e for (_, e), p in zip(outs, procs) if p.returncode == 2)
    assert err.count("\n") == 1 and ("being written by another process (pid" in err or "is finished" in err), err
    steps = [m["step"] for m in store.metrics(rid) if m["name"] == "loss"]
    assert steps == list(range(1, 9))   # every step logged once
    keys = [(e["step"], e["split"], e["metric"]) for e in store.evals(rid)]
    assert len(keys) == len(set(keys)) and store.run(rid)["status"] == "finished"   # evaluated once
