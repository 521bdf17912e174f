"""One preparation per teacher: a lock that survives processes (CLI runs, dashboard launches, notebooks).

``held(folder)`` guards the fine-tuning of the teacher cached in ``folder`` (its key hashes the base model, the
data and the settings) with an exclusive ``fcntl.flock`` on ``<folder>.lock``. The process that holds it writes
who it is (store root, run id, pid) into the lock file; a second process that needs the same teacher waits, says
so once, then reports the preparing run's step every ``report_every`` seconds, and afterwards finds the teacher
ready in the cache instead of fine-tuning it again. The ranks of one torchrun/accelerate job are not locked
against each other (they fine-tune together). The OS releases a flock when its process dies, so a killed
preparation never blocks the next one. Where ``fcntl`` does not exist (Windows) there is no lock.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def lock_path(folder) -> Path:
    folder = Path(folder)
    return folder.with_name(folder.name + ".lock")


def holder(folder) -> dict:
    """What the process preparing ``folder`` wrote into its lock file ({} when unknown)."""
    try:
        return json.loads(lock_path(folder).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _progress(info: dict) -> str:
    """'run R, step S' of the preparing run, read from its store."""
    run, root = info.get("run"), info.get("store")
    if not run or not root:
        return "starting"
    try:
        from .store import Store
        rows = Store(root).metrics(run)
        return f"run {run}, step {rows[-1]['step']}" if rows else f"run {run}, starting"
    except Exception:   # the other process's store is not readable from here: say what is known
        return f"run {run}"


@contextmanager
def held(folder, *, log=print, report_every: float = 30.0, poll: float = 1.0):
    """Hold the preparation lock of ``folder`` (waiting for another holder, with progress messages); yields a
    function ``announce(store_root, run_id)`` that records the run doing the preparation."""
    if fcntl is None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # no lock under torchrun/accelerate: the ranks of one job fine-tune together (collective ops)
        yield lambda *a: None
        return
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited, last = False, 0.0
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if not waited or now - last >= report_every:
                    info = holder(folder)
                    log(f"teacher: waiting for another process (pid {info.get('pid', '?')}) that is preparing this "
                        f"teacher ({_progress(info)}); it is fine-tuned once and then reused")
                    waited, last = True, now
                time.sleep(poll)

        def announce(store_root=None, run_id=None):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "store": str(store_root or ""), "run": run_id,
                                      "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)

        announce()
        yield announce
    finally:
        os.close(fd)   # releases the flock


def preparation(folder, store=None) -> dict | None:
    """The preparation of ``folder`` under way in some process, or None when none is: ``{"pid", "run", "store",
    "since", "line", "fraction"}`` with the preparing run's progress line and fraction done (``kdlab.progress``),
    read from the store its holder announced (or ``store`` when given). For a page or a notebook that has a run
    waiting for this teacher."""
    path = lock_path(folder)
    if fcntl is None or not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)   # free: nobody is preparing
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            pass
    finally:
        os.close(fd)
    info = holder(folder)
    out = {"pid": info.get("pid"), "run": info.get("run"), "store": info.get("store"), "since": info.get("since"),
           "line": "teacher fine-tuning: starting", "fraction": 0.0}
    try:
        from .progress import progress_line, run_progress
        from .store import Store
        st = store if store is not None else Store(info["store"]) if info.get("store") else None
        if st is not None and info.get("run"):
            run = st.run(info["run"])
            out["line"] = progress_line(st, run).replace("ce: ", "", 1)
            out["fraction"] = run_progress(st, run)["fraction"]
    except Exception:   # the holder's store is not readable from here: what the lock file says
        pass
    return out
