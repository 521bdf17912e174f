"""kdlab.threads: each computing kdlab process takes its share of the cores (no timing here: the choice only)."""
import os
import subprocess
import sys

import pytest

from kdlab import threads
from kdlab.config import build_config
from kdlab.errors import KdlabError


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    for var in ("KDLAB_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KDLAB_CPU_DIR", str(tmp_path / "cpu"))
    yield tmp_path / "cpu"
    threads.unregister()


@pytest.mark.parametrize("running,expected", [(1, 2), (2, 1), (3, 1)])
def test_two_cores_shared_by_one_two_and_three_runs(no_env, running, expected):
    n, why = threads.decide(running=running, n_cores=2)
    assert n == expected
    assert f"among {running}" in why


@pytest.mark.parametrize("cores,procs,expected", [(4, 1, 4), (4, 2, 2), (4, 3, 1), (8, 3, 2), (16, 5, 3), (1, 4, 1)])
def test_share_is_an_even_split_of_at_least_one(cores, procs, expected):
    assert threads.share(cores, procs) == expected


def test_study_workers_count_even_before_they_register(no_env):
    assert threads.decide(running=1, peers=2, n_cores=4)[0] == 2


def test_option_beats_environment_beats_share(no_env, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.decide(running=1, n_cores=2) == (3, "$OMP_NUM_THREADS")
    monkeypatch.setenv("KDLAB_THREADS", "5")
    assert threads.decide(running=1, n_cores=2) == (5, "$KDLAB_THREADS")
    assert threads.decide(4, running=1, n_cores=2) == (4, "--threads")
    monkeypatch.setenv("KDLAB_THREADS", "many")
    with pytest.raises(KdlabError, match="KDLAB_THREADS must be a whole number"):
        threads.decide(running=1, n_cores=2)


def test_registry_counts_live_processes_and_drops_dead_ones(no_env):
    threads.register()
    assert threads.active() == [os.getpid()]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (no_env / str(other.pid)).write_text(threads._start_time(other.pid) or "")
        (no_env / "999999999").write_text("1")            # a process that is gone
        (no_env / str(os.getppid())).write_text("12345")  # a live pid whose start time is not the recorded one
        assert threads.active() == sorted([os.getpid(), other.pid])
        assert not (no_env / "999999999").exists()
        assert threads.decide(n_cores=2)[0] == 1
    finally:
        other.kill()
        other.wait()
    assert threads.active() == [os.getpid()]
    assert threads.decide(n_cores=2)[0] == 2
    threads.unregister()
    assert threads.active() == []


def test_a_run_gives_a_core_back_and_takes_it_again(no_env, monkeypatch):
    import torch
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "cores", lambda: 2)
    monkeypatch.setattr(threads, "CHECK_SECONDS", 0.0)
    try:
        assert threads.use() == 2 and torch.get_num_threads() == 2
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            (no_env / str(other.pid)).write_text(threads._start_time(other.pid) or "")
            assert threads.rebalance() == 1 and torch.get_num_threads() == 1
        finally:
            other.kill()
            other.wait()
        assert threads.rebalance() == 2 and torch.get_num_threads() == 2
        assert threads.use(1) == 1
        (no_env / "1").write_text("")   # pid 1 is alive: an explicit choice is not rebalanced
        assert threads.rebalance() == 1
    finally:
        torch.set_num_threads(before)


def test_bad_thread_counts_are_refused_in_one_line(no_env):
    with pytest.raises(KdlabError, match="threads must be a positive whole number"):
        build_config(preset="tiny", threads=-1)
    cfg = build_config(preset="tiny", threads=3)
    assert cfg.train.threads == 3 and cfg.teacher_train.threads == 3
    assert cfg.teacher_key("x") == build_config(preset="tiny").teacher_key("x")   # not part of a teacher's identity
    r = subprocess.run([sys.executable, "-m", "kdlab", "distill", "--preset", "tiny", "--threads", "-2"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("kdlab: error: threads must be a positive whole number")


def test_dashboard_keeps_one_thread_and_its_runs_do_not_inherit_it(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(threads.DASHBOARD_MARK, raising=False)
    monkeypatch.setattr(sys, "modules", {k: v for k, v in sys.modules.items() if k != "torch"})
    threads.dashboard()
    assert os.environ["OMP_NUM_THREADS"] == "1"
    env = threads.child_env(dict(os.environ))
    assert "OMP_NUM_THREADS" not in env and threads.DASHBOARD_MARK not in env
    # a user's own OMP_NUM_THREADS is kept for the runs
    assert threads.child_env({"OMP_NUM_THREADS": "4"}) == {"OMP_NUM_THREADS": "4"}


def test_concurrent_bench_row_compares_with_one_run_alone(monkeypatch, tmp_path):
    from kdlab.tools import bench_concurrent as bc
    seen = []

    def fake(n, env):
        seen.append((n, env.get("KDLAB_THREADS")))
        return {1: 10.0, 2: 21.0}[n] if env.get("KDLAB_THREADS") is None else 90.0
    monkeypatch.setattr(bc, "timed", fake)
    monkeypatch.setenv("KDLAB_THREADS", "1")   # the caller's own setting does not leak into the measured runs
    res = bc.run_concurrent(2, every_core=True, log=lambda m: None)
    assert seen == [(1, None), (1, None), (2, None), (2, str(res["cores"]))]   # a warm-up run first
    assert res["ratio"] == pytest.approx(2.1) and res["every_core_ratio"] == pytest.approx(9.0)
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nkept\n")
    bc.write_markdown(res, md)
    bc.write_markdown(res, md)   # a second write replaces the block
    text = md.read_text()
    assert text.count("<!-- bench-concurrent:start -->") == 1 and "kept" in text
    assert "| 2 runs together, each its share of the cores (default) | 21.0 | 2.10 |" in text
    with pytest.raises(KdlabError, match="at least 2"):
        bc.run_concurrent(1)
