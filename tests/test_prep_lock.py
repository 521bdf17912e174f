"""One preparation per teacher (kdlab.runs.prep_lock): a second process waits, says so, and reuses the teacher."""
import os
import subprocess
import sys
import threading
import time

from kdlab.runs import prep_lock


def test_a_second_holder_waits_and_reports_who_prepares(tmp_path):
    folder = tmp_path / "teachers" / "abc123"
    first_in, release, messages, order = threading.Event(), threading.Event(), [], []

    def first():
        with prep_lock.held(folder, log=messages.append) as announce:
            announce(tmp_path / "runs", "run-A")
            order.append("A in")
            first_in.set()
            release.wait(10)
            order.append("A out")

    def second():
        first_in.wait(10)
        with prep_lock.held(folder, log=messages.append, poll=0.05):
            order.append("B in")

    ta, tb = threading.Thread(target=first), threading.Thread(target=second)
    ta.start()
    tb.start()
    deadline = time.monotonic() + 10
    while not messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert order == ["A in"]                       # B is blocked while A holds the lock
    assert len(messages) == 1 and "waiting for another process" in messages[0] and "run-A" in messages[0]
    assert prep_lock.holder(folder)["run"] == "run-A"
    release.set()
    ta.join(10)
    tb.join(10)
    assert order == ["A in", "A out", "B in"]


def test_two_launches_for_one_teacher_fine_tune_it_once(tmp_path):
    env = dict(os.environ, KDLAB_TEACHERS=str(tmp_path / "teachers"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "kdlab", "teacher", "--preset", "tiny", "--max-train", "64", "--max-eval", "16",
           "--teacher-epochs", "4", "--no-progress", "--runs", str(tmp_path / "runs")]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    logs = "\n".join(e for _, e in outs)
    assert logs.count("teacher: fine-tuning tiny") == 1, logs
    assert logs.count("teacher: reusing fine-tuned tiny") == 1, logs
    assert len([p for p in (tmp_path / "teachers").iterdir() if p.is_dir()]) == 1


def test_resuming_a_run_without_checkpoint_is_one_clear_error(tmp_path):
    """open_student_run (the ranking and LM entries' run opening): a resume of a run that never checkpointed names
    what to do; a new run is created, its on_create called, its writers' lock held until released."""
    import pytest
    from kdlab.errors import KdlabError
    from kdlab.runs.prep_lock import open_student_run
    from kdlab.runs.store import Store
    store = Store(tmp_path / "runs")
    made = []
    rid, checkpoint, lock = open_student_run(store, method="kd", conf={}, name=None, parent=None,
                                             on_create=made.append)
    assert made == [rid] and checkpoint is None and store.run(rid)["kind"] == "student"
    lock.close()
    with pytest.raises(KdlabError, match="no resumable checkpoint: start it again"):
        open_student_run(store, method="kd", conf={}, name=None, parent=None, resume=rid)
