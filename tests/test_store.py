"""The SQLite run store: written by one process, read by another while it is written."""
import json
import multiprocessing as mp
import sqlite3
import time

import pytest

from kdlab.errors import KdlabError
from kdlab.runs.store import Store


def _writer(root, run_id, steps):
    s = Store(root)
    for step in range(1, steps + 1):
        # one batch of rows per step: 5 named values, all written in one transaction
        s.log_metrics(run_id, step, 0, {f"m{i}": step * 10 + i for i in range(5)})
        time.sleep(0.002)
    s.finish(run_id, "finished", summary={"dev": 0.5})


def test_reader_follows_a_run_while_it_is_written(tmp_path):
    store = Store(tmp_path)
    run_id = store.create_run("student", "kd", {"seed": 1})
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_writer, args=(str(tmp_path), run_id, 150))
    p.start()
    seen_steps, partial = set(), 0
    reader = Store(tmp_path)
    deadline = time.time() + 60
    saw_running_with_rows = False
    while time.time() < deadline:
        rows = reader.metrics(run_id)
        by_step = {}
        for r in rows:
            by_step.setdefault(r["step"], []).append(r)
        for step, rs in by_step.items():
            if len(rs) != 5:
                partial += 1
            assert sorted(r["value"] for r in rs) == [step * 10 + i for i in range(5)]
        seen_steps |= set(by_step)
        status = reader.run(run_id)["status"]
        if status == "running" and by_step:
            saw_running_with_rows = True
        if status == "finished":
            break
        time.sleep(0.01)
    p.join(30)
    assert partial == 0
    assert saw_running_with_rows, "the reader never saw the run in progress"
    assert reader.run(run_id)["status"] == "finished"
    assert seen_steps | {r["step"] for r in reader.metrics(run_id)} == set(range(1, 151))
    assert reader.run(run_id)["summary"] == {"dev": 0.5}


def test_store_records_and_reads_back(tmp_path):
    s = Store(tmp_path)
    rid = s.create_run("student", "hidden", {"a": 1}, name="x")
    s.log_mapping(rid, 0, 0, [[0.0, 1.0], [1.0, 0.0]])
    s.log_eval(rid, 10, 1, "dev", "in-domain", {"accuracy": 0.75})
    s.log_eval(rid, 20, 2, "dev", "in-domain", {"accuracy": 0.8})
    s.log_metrics(rid, 1, 0, {"loss": 2.0, "hidden_mse/s1-t2": 0.5})
    s.log_metrics(rid, 2, 0, {"loss": 1.0, "hidden_mse/s1-t2": 0.25})
    s.set_artifact(rid, "cka", {"linear": [[1.0]]})
    assert s.mappings(rid)[0]["matrix"] == [[0.0, 1.0], [1.0, 0.0]]
    assert s.final_evals(rid)["dev"]["accuracy"] == 0.8
    df = s.metrics_frame(rid)
    assert list(df["loss"]) == [2.0, 1.0] and list(df["hidden_mse/s1-t2"]) == [0.5, 0.25]
    assert s.artifact(rid, "cka") == {"linear": [[1.0]]}
    assert json.loads((s.folder(rid) / "config.json").read_text()) == {"a": 1}
    assert s.run(rid[-12:])["id"] == rid  # a unique part of the id is enough


def test_dead_writer_shows_as_died(tmp_path):
    s = Store(tmp_path)
    rid = s.create_run("student", "kd", {})
    with sqlite3.connect(s.path) as c:
        c.execute("UPDATE runs SET pid=? WHERE id=?", (2 ** 22 + 12345, rid))
    assert s.run(rid)["status"] == "died"


def test_unknown_run_and_corrupt_database(tmp_path):
    s = Store(tmp_path)
    with pytest.raises(KdlabError, match="no run"):
        s.run("nope")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "kdlab.db").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(KdlabError, match="not a kdlab database"):
        Store(bad)


def test_a_stopped_run_is_recorded_once_the_same_way_by_every_loop(tmp_path):
    from kdlab.errors import KdlabError
    from kdlab.runs.store import Store
    store = Store(tmp_path / "runs")
    ids = [store.create_run("student", "kd", {}) for _ in range(4)]
    stops = [(ids[0], KdlabError("bad option"), True), (ids[1], ValueError("boom"), True),
             (ids[2], KeyboardInterrupt(), True), (ids[3], KeyboardInterrupt(), False)]
    for rid, e, resumable in stops:
        try:
            raise e
        except BaseException as caught:
            store.record_stop(rid, caught, resumable=resumable)
    assert store.run(ids[0])["status"] == "failed" and store.run(ids[0])["message"] == "KdlabError: bad option"
    assert not (store.folder(ids[0]) / "error.txt").exists()      # the message already explains it
    assert "ValueError: boom" in (store.folder(ids[1]) / "error.txt").read_text()
    assert stops[2][1].kdlab_run == (str(store.root), ids[2])     # the CLI prints the command that resumes it
    assert getattr(stops[3][1], "kdlab_run", None) is None         # a loop without checkpoints: no such command
    assert [store.run(i)["status"] for i in ids[2:]] == ["cancelled", "cancelled"]


def test_new_store_opened_by_many_processes_at_once(tmp_path):
    """Runs started together on a fresh --runs folder: each one opens the store, none fails with 'locked'."""
    import subprocess
    import sys
    import time
    code = ("import sys, time; from kdlab.runs.store import Store; t = float(sys.argv[2])\n"
            "while time.time() < t: time.sleep(0.001)\n"
            "s = Store(sys.argv[1]); print(s.path.exists())")
    root = tmp_path / "fresh"
    start = time.time() + 3   # every process past its imports, then all open the store in the same millisecond
    procs = [subprocess.Popen([sys.executable, "-c", code, str(root), str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1][-300:] for o in outs]
    assert all(o[0].strip() == "True" for o in outs)
