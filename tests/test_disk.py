"""Disk use: a finished run drops its resume checkpoint (--keep-checkpoints keeps it), `runs` shows each run's
name and disk use, `kdlab gc` / `runs --prune` free what finished (and with --failed, failed) runs left, `--run`
takes a unique run name, and Ctrl-C says how to continue."""
import json

import pytest

from kdlab import cli
from kdlab.runs import prep_lock
from kdlab.runs.disk import gc, human, tree_bytes
from kdlab.errors import KdlabError
from kdlab.runs.store import Store

TINY = ["distill", "--preset", "tiny", "--no-progress", "--quiet", "--max-train", "48", "--max-eval", "16",
        "--teacher-epochs", "1", "--batch-size", "8", "--max-steps", "4"]


def test_a_finished_run_drops_its_checkpoint_unless_asked_to_keep_it(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert cli.main([*TINY, "--runs", runs, "--name", "dropped"]) == 0
    assert cli.main([*TINY, "--runs", runs, "--name", "kept", "--keep-checkpoints"]) == 0
    capsys.readouterr()
    store = Store(runs)
    by = {r["name"]: r for r in store.runs()}
    dropped, kept = store.folder(by["dropped"]["id"]), store.folder(by["kept"]["id"])
    assert (dropped / "student" / "config.json").exists() and not (dropped / "checkpoint").exists()
    assert (kept / "checkpoint" / "state.json").exists()
    teacher = store.folder(by["dropped"]["parent"])
    assert not (teacher / "checkpoint").exists()   # the teacher's is never read again either
    # runs: names and disk use per run
    assert cli.main(["runs", "--runs", runs]) == 0
    out = capsys.readouterr().out
    assert "  name: dropped" in out and "  name: kept" in out
    assert f"{human(tree_bytes(kept))} disk" in out
    assert cli.main(["runs", "--runs", runs, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["kept"]["disk_bytes"] == tree_bytes(kept) > rows["dropped"]["disk_bytes"] == tree_bytes(dropped)
    # --run takes the name
    assert cli.main(["eval", "--run", "kept", "--model", "student", "--json", "--runs", runs, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["run"] == by["kept"]["id"]
    # gc frees the kept checkpoint of the finished run
    ck = tree_bytes(kept / "checkpoint")
    assert cli.main(["runs", "--prune", "--runs", runs]) == 0
    assert f"freed {human(ck)} in 1 folders" in capsys.readouterr().out
    assert not (kept / "checkpoint").exists() and (kept / "student" / "config.json").exists()


def _fake(store, status, name=None):
    rid = store.create_run("student", "kd", {}, name=name)
    for sub, n in (("checkpoint", 1000), ("student", 300), ("models/.x.partial-1", 50)):
        (store.folder(rid) / sub).mkdir(parents=True)
        (store.folder(rid) / sub / "w.bin").write_bytes(b"\0" * n)
    if status != "running":
        store.finish(rid, status)
    return rid


def test_gc_frees_finished_runs_and_failed_ones_only_when_asked(tmp_path, capsys):
    store = Store(tmp_path / "runs")
    fin, failed, busy = _fake(store, "finished"), _fake(store, "failed"), _fake(store, "finished")
    with prep_lock.run_held(store, busy):   # a process writes this one: left alone
        dry = gc(store, dry_run=True)
        assert sorted((r["run"], r["what"].split("/", 1)[1], r["bytes"]) for r in dry) == sorted(
            [(fin, "models/.x.partial-1", 50), (fin, "checkpoint", 1000), (failed, "models/.x.partial-1", 50)])
        assert (store.folder(fin) / "checkpoint").exists()   # a dry run deletes nothing
        assert sum(r["bytes"] for r in gc(store)) == 1100
    assert not (store.folder(fin) / "checkpoint").exists() and (store.folder(fin) / "student").exists()
    assert (store.folder(failed) / "checkpoint").exists()   # still resumable
    assert cli.main(["gc", "--failed", "--runs", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "freed 2.0 kB in 3 folders" in out   # 1000 + 1000 + 50 bytes: failed's checkpoint, the busy run's leftovers
    assert not (store.folder(failed) / "checkpoint").exists()


def test_run_names_resolve_where_unique(tmp_path):
    store = Store(tmp_path / "runs")
    a = _fake(store, "finished", name="alpha")
    _fake(store, "finished", name="twin")
    _fake(store, "finished", name="twin")
    assert store.run("alpha")["id"] == a
    with pytest.raises(KdlabError, match="2 runs are named 'twin'.*give one of their ids"):
        store.run("twin")


def test_ctrl_c_prints_the_resume_command(tmp_path, monkeypatch, capsys):
    import kdlab.engine.pipeline
    store = Store(tmp_path / "runs")
    rid = _fake(store, "cancelled")
    (store.folder(rid) / "checkpoint" / "state.json").write_text("{}")
    (store.folder(rid) / "checkpoint" / "train_state.safetensors").write_text("")

    def interrupted(cfg, store, **k):
        e = KeyboardInterrupt()
        e.kdlab_run = (str(store.root), rid)
        raise e
    monkeypatch.setattr(kdlab.engine.pipeline, "distill_run", interrupted)
    assert cli.main(["distill", "--preset", "tiny", "--runs", str(store.root)]) == 130
    err = capsys.readouterr().err
    assert f"continue it with `python -m kdlab distill --resume {rid} --runs {store.root}`" in err
