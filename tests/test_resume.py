"""Exact resume: a real run is killed with SIGKILL after a checkpoint, resumed with --resume, and ends with
the same loss, metrics and weights as an uninterrupted run with the same seed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from kdlab.runs.store import Store

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["distill", "--preset", "tiny", "--no-progress", "--method", "hidden", "--max-train", "48",
        "--max-eval", "16", "--teacher-epochs", "1", "--batch-size", "8", "--max-steps", "9",
        "--checkpoint-every", "2", "--seed", "3"]


def _run(runs, *extra, wait=True):
    env = dict(os.environ, KDLAB_RUNS=str(runs))
    cmd = [sys.executable, "-m", "kdlab", *ARGS, *extra]
    if wait:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _final(store, run_id):
    m = store.metrics_frame(run_id)
    last = m[m.step == m.step.max()].iloc[0]
    w = load_file(str(store.folder(run_id) / "student" / "model.safetensors"))
    return float(last["loss"]), store.final_evals(run_id), w, sorted(m.step.tolist())


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    runs = tmp_path / "runs"
    r = _run(runs, "--name", "straight")
    assert r.returncode == 0, r.stderr
    store = Store(runs)
    straight = [x for x in store.runs() if x["name"] == "straight"][0]["id"]

    p = _run(runs, "--name", "killed", wait=False)
    killed, deadline = None, time.time() + 300
    while time.time() < deadline:
        rows = [x for x in store.runs() if x["name"] == "killed"]
        if rows:
            killed = rows[0]["id"]
            st = store.folder(killed) / "checkpoint" / "state.json"
            if st.exists() and json.loads(st.read_text())["step"] >= 2:
                break
        assert p.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert store.run(killed)["status"] == "died"
    r = subprocess.run([sys.executable, "-m", "kdlab", "distill", "--resume", killed, "--runs", str(runs)],
                       env=dict(os.environ), capture_output=True, text=True, timeout=600,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert store.run(killed)["status"] == "finished"
    loss_a, ev_a, w_a, steps_a = _final(store, straight)
    loss_b, ev_b, w_b, steps_b = _final(store, killed)
    assert steps_a == steps_b == list(range(1, 10))   # no step lost or logged twice
    assert loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-6)
    assert ev_a.keys() == ev_b.keys()
    for split in ev_a:
        assert ev_b[split]["accuracy"] == pytest.approx(ev_a[split]["accuracy"])
    for k in w_a:
        assert torch.allclose(w_a[k], w_b[k], atol=1e-5), k


def test_resume_refuses_finished_and_unknown_runs(tmp_path, capsys):
    from kdlab.cli import main
    store = Store(tmp_path)
    rid = store.create_run("student", "kd", {"method": "kd"})
    store.finish(rid, "finished")
    assert main(["distill", "--resume", rid, "--runs", str(tmp_path)]) == 2
    assert "finished" in capsys.readouterr().err
    assert main(["distill", "--resume", "nope", "--runs", str(tmp_path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
