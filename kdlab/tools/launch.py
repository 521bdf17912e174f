"""Start training as a separate process and follow it through the run store.

The dashboard uses this so that a page rerun never blocks or kills a run: ``launch`` writes the run's
``RunConfig`` (named NAME) to ``<runs>/launches/NAME.json`` and starts ``python -m kdlab <command> --config
that.json --runs DIR`` in its own session (``start_new_session``), ``run_named`` polls the store for the named
run, and ``cancel`` asks the loop to stop through ``Store.request_cancel`` (the loop checks it after every step).
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig
from ..errors import KdlabError
from ..runs.store import Store
from ..threads import child_env

# the launched process runs in the project folder, so that a relative data path means what it means in the
# dashboard (app/common.check_path resolves it there)
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Launch:
    pid: int
    name: str
    runs: str
    log: str
    started: float
    command: list
    config: str = ""

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def log_tail(self, n: int = 15) -> str:
        try:
            return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def pid_alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own finished child (no zombie)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def unique_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%H%M%S')}-{os.urandom(2).hex()}"


def launch(cfg: RunConfig, runs: str | os.PathLike, name: str, command: str = "distill",
           python: str | None = None, env: dict | None = None) -> Launch:
    """Start ``python -m kdlab <command> --config <runs>/launches/<name>.json --runs runs`` detached.

    The config file holds ``cfg`` named ``name``, without progress bars; output goes to
    ``<runs>/launches/<name>.log``. Returns at once (the run id comes later: ``run_named``).
    """
    runs = Path(runs).resolve()
    folder = runs / "launches"
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    log, conf = folder / f"{safe}.log", folder / f"{safe}.json"
    cfg = RunConfig.from_dict(cfg.to_dict())   # a copy
    cfg.name = name
    cfg.train = dataclasses.replace(cfg.train, progress=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, progress=False)
    conf.write_text(json.dumps(cfg.to_dict(), indent=2))
    cmd = [python or sys.executable, "-m", "kdlab", command, "--config", str(conf), "--runs", str(runs)]
    penv = child_env(dict(os.environ, **(env or {})))   # the run takes its share of the cores (kdlab.threads)
    penv["KDLAB_RUNS"] = str(runs)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=str(REPO_ROOT), env=penv, start_new_session=True)
    return Launch(pid=proc.pid, name=name, runs=str(runs), log=str(log), started=time.time(), command=cmd,
                  config=str(conf))


def run_named(store: Store, name: str, kind: str | None = None) -> str | None:
    """Id of the newest run called ``name`` (optionally of one kind), or None."""
    for r in store.runs(kind):
        if r["name"] == name:
            return r["id"]
    return None


def wait_for_run(store: Store, launched: Launch, timeout: float = 120.0, poll: float = 0.3,
                 kind: str | None = None) -> str:
    """Poll the store until the launched run appears; KdlabError (with the log tail) when the process
    ends first or the timeout passes."""
    deadline = time.time() + timeout
    while True:
        rid = run_named(store, launched.name, kind)
        if rid:
            return rid
        if not launched.alive():
            rid = run_named(store, launched.name, kind)
            if rid:
                return rid
            raise KdlabError(f"the run '{launched.name}' stopped before it started:\n{launched.log_tail()}")
        if time.time() > deadline:
            raise KdlabError(f"the run '{launched.name}' did not appear in the run store within {timeout:.0f} s "
                             f"(still preparing?); its log is {launched.log}")
        time.sleep(poll)


def cancel(store: Store, run_id: str):
    """Ask a running run to stop after its current step (the loop marks it ``cancelled``)."""
    store.request_cancel(run_id)


def stop(launched: Launch, sig=signal.SIGTERM):
    """Stop a launched process that has no run yet (e.g. still fine-tuning the teacher)."""
    if launched.alive():
        try:
            os.killpg(launched.pid, sig)
        except ProcessLookupError:
            pass
