"""Nothing lost, nothing corrupted: a store opened to read writes nothing, a read-only store is listed and
evaluated, model folders are recorded relative to the store (a moved or copied store reads its own models, old
absolute paths included), and two compressions of one run never both claim a name."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from kdlab import cli
from kdlab.runs import prep_lock, store_paths
from kdlab.config import build_config
from kdlab.errors import KdlabError
from kdlab.models.core import save_model, tiny_model
from kdlab.runs.store import Store


def _stored_run(root) -> tuple[Store, str]:
    """A finished tiny-preset run with a saved (random, untrained) student: no training needed."""
    store = Store(root)
    conf = build_config(preset="tiny", max_train=64, max_eval=16).to_dict()
    rid = store.create_run("student", "kd", conf)
    model, tok = tiny_model()
    save_model(model, tok, store.folder(rid) / "student")
    store.set_artifact(rid, "model_dir", str(store.folder(rid) / "student"))
    store.finish(rid, "finished")
    return store, rid


def _raw_artifact(root, rid, name):
    with sqlite3.connect(os.path.join(root, "kdlab.db")) as c:
        return json.loads(c.execute("SELECT value FROM artifacts WHERE run_id=? AND name=?", (rid, name)).fetchone()[0])


def _tsv(path):
    path.write_text("sentence\tlabel\na fine film\tpositive\na dull film\tnegative\n")
    return str(path)


def test_model_folders_are_recorded_relative_and_a_moved_store_finds_them(tmp_path, capsys):
    store, rid = _stored_run(tmp_path / "a")
    assert _raw_artifact(tmp_path / "a", rid, "model_dir") == f"{rid}/student"
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = Store(tmp_path / "b")
    assert moved.artifact(rid, "model_dir") == str(tmp_path / "b" / rid / "student")
    rc = cli.main(["eval", "--run", rid, "--data", _tsv(tmp_path / "x.tsv"), "--runs", str(tmp_path / "b"),
                   "--max-len", "16"])
    assert rc == 0 and '"accuracy"' in capsys.readouterr().out
    assert cli.main(["compress", "--run", rid, "--quantize", "int8", "--runs", str(tmp_path / "b"), "--quiet"]) == 0
    capsys.readouterr()
    assert moved.artifact(rid, "models") == {"int8": str(tmp_path / "b" / rid / "models" / "int8")}
    assert (tmp_path / "b" / rid / "models" / "int8" / "kdlab.json").exists() and not (tmp_path / "a").exists()


def test_old_absolute_paths_resolve_through_the_moved_or_copied_store(tmp_path):
    store, rid = _stored_run(tmp_path / "old")
    old_abs = str(tmp_path / "old" / rid / "student")
    with sqlite3.connect(tmp_path / "old" / "kdlab.db") as c:   # as stores before relative paths recorded it
        c.execute("UPDATE artifacts SET value=? WHERE run_id=? AND name='model_dir'", (json.dumps(old_abs), rid))
        c.execute("INSERT INTO artifacts VALUES (?,?,?)", (rid, "models", json.dumps({"int8": old_abs + "/../models/int8"})))
    shutil.copytree(tmp_path / "old", tmp_path / "copy")
    copy = Store(tmp_path / "copy")
    assert copy.artifact(rid, "model_dir") == str(tmp_path / "copy" / rid / "student")   # its own, not the original's
    assert Store(tmp_path / "old").artifact(rid, "model_dir") == old_abs
    shutil.move(tmp_path / "old", tmp_path / "moved")
    assert Store(tmp_path / "moved").artifact(rid, "model_dir") == str(tmp_path / "moved" / rid / "student")
    # the copy's own model deleted: reported gone, never read from the original
    shutil.rmtree(tmp_path / "copy" / rid / "student")
    assert copy.artifact(rid, "model_dir") == str(tmp_path / "copy" / rid / "student")
    with pytest.raises(KdlabError, match="is gone"):
        from kdlab.engine.pipeline import eval_run
        eval_run(copy, rid, "unused.tsv")
    # a path outside the store (a shared teacher cache) is used as recorded
    assert store_paths.resolve(tmp_path / "copy", "/elsewhere/teachers/abc") == "/elsewhere/teachers/abc"


def test_opening_a_store_to_read_writes_nothing(tmp_path):
    store, rid = _stored_run(tmp_path / "s")
    db = tmp_path / "s" / "kdlab.db"
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    s2 = Store(tmp_path / "s")
    assert [r["id"] for r in s2.runs()] == [rid] and s2.artifact(rid, "model_dir")
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before


@pytest.fixture
def readonly(monkeypatch):
    """os.access says no for the store folders below ``tmp_path`` (the tests run as root, where chmod does not)."""
    real = os.access

    def make(root):
        monkeypatch.setattr(store_paths.os, "access", lambda p, m, **k: False if str(p).startswith(str(root))
                            and m == os.W_OK else real(p, m, **k))
    return make


def test_a_readonly_store_lists_and_evaluates_and_refuses_new_runs_with_one_line(tmp_path, readonly, capsys):
    store, rid = _stored_run(tmp_path / "ro")
    db = tmp_path / "ro" / "kdlab.db"
    before = (db.read_bytes(), sorted(p.name for p in (tmp_path / "ro").iterdir()))
    readonly(tmp_path / "ro")
    ro = Store(tmp_path / "ro")
    assert not ro.writable and ro.run(rid)["status"] == "finished"
    assert cli.main(["runs", "--runs", str(tmp_path / "ro")]) == 0 and rid in capsys.readouterr().out
    assert cli.main(["eval", "--run", rid, "--data", _tsv(tmp_path / "x.tsv"), "--runs", str(tmp_path / "ro"),
                     "--max-len", "16"]) == 0
    capsys.readouterr()
    with pytest.raises(KdlabError, match="read-only.*needs a writable store"):
        ro.create_run("student", "kd", {})
    with pytest.raises(KdlabError, match="read-only"):
        ro.set_artifact(rid, "x", 1)   # a write through the read-only connection: one line, not sqlite's
    rc = cli.main(["compress", "--run", rid, "--quantize", "int8", "--runs", str(tmp_path / "ro")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "writable store" in err
    for argv in (["distill", "--preset", "tiny", "--quiet"], ["teacher", "--preset", "tiny", "--quiet"], ["gc"]):
        rc = cli.main([*argv, "--runs", str(tmp_path / "ro")])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and "needs a writable store" in err, (argv, err)
    assert (db.read_bytes(), sorted(p.name for p in (tmp_path / "ro").iterdir()
                                    if not p.name.startswith("kdlab.db-"))) == before


def test_the_models_list_is_claimed_in_one_transaction(tmp_path):
    store, rid = _stored_run(tmp_path / "s")
    assert store.add_entry(rid, "models", "int8", str(store.folder(rid) / "models" / "int8"))
    assert not store.add_entry(rid, "models", "int8", "/somewhere/else")   # the first claim stays
    assert store.artifact(rid, "models") == {"int8": str(tmp_path / "s" / rid / "models" / "int8")}
    assert _raw_artifact(tmp_path / "s", rid, "models") == {"int8": f"{rid}/models/int8"}


def test_two_compressions_at_once_never_both_claim_a_name(tmp_path, capsys):
    store, rid = _stored_run(tmp_path / "s")
    cmd = [sys.executable, "-m", "kdlab", "compress", "--run", rid, "--quantize", "int8", "--name", "x",
           "--runs", str(tmp_path / "s"), "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    rcs = sorted(p.returncode for p in procs)
    assert rcs == [0, 2], outs
    err = next(e for (_, e), p in zip(outs, procs) if p.returncode == 2)
    assert err.count("\n") == 1 and ("being written by another process (pid" in err or "already has a model" in err)
    assert list(store.artifact(rid, "models")) == ["x"]
    assert sorted(p.name for p in (store.folder(rid) / "models").iterdir()) == ["x"]   # no partial folder left
    # with the run's lock held by another process, compress names it at once
    hold = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom kdlab.runs import prep_lock\n"
                             "with prep_lock.exclusive(sys.argv[1], 'x'):\n    print('held', flush=True)\n"
                             "    time.sleep(60)", str(prep_lock.run_lock_path(store, rid))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "held"
        rc = cli.main(["compress", "--run", rid, "--quantize", "int8", "--name", "y", "--runs", str(store.root)])
        assert rc == 2 and f"(pid {hold.pid}" in capsys.readouterr().err
    finally:
        hold.kill()
        hold.wait()
    assert list(store.artifact(rid, "models")) == ["x"]
