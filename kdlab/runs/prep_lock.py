"""One preparation per teacher: a lock that survives processes (CLI runs, dashboard launches, notebooks).

``held(folder)`` guards the fine-tuning of the teacher cached in ``folder`` (its key hashes the base model, the
data and the settings) with an exclusive ``fcntl.flock`` on ``<folder>.lock``. The process that holds it writes
who it is (store root, run id, pid) into the lock file; a second process that needs the same teacher waits, says
so once, then reports the preparing run's step every ``report_every`` seconds, and afterwards finds the teacher
ready in the cache instead of fine-tuning it again. The ranks of one torchrun/accelerate job are not locked
against each other (they fine-tune together). The OS releases a flock when its process dies, so a killed
preparation never blocks the next one. Where ``fcntl`` does not exist (Windows) there is no lock.

``exclusive(path, what)`` is the writers' lock: one process at a time writes a run (distill, resume, compress of
its models), a study or a workshop pack; a second writer does not wait but fails at once with one line naming
the process (pid) that holds it. ``run_held(store, run_id)`` is that lock on ``<store>/.locks/<run>.lock``.
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
    "since", "line", "fraction"}`` with the preparing run's progress line and fraction done (``kdlab.runs.progress``),
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


def _busy_line(what: str, info: dict) -> str:
    pid = info.get("pid", "?")
    since = f" since {info['since']}" if info.get("since") else ""
    return (f"{what} is being written by another process (pid {pid}{since}): wait for it to finish, or stop it "
            f"(kill {pid}) and try again")


@contextmanager
def exclusive(path, what: str):
    """Hold an exclusive lock on the file ``path`` for the block, or raise a KdlabError at once naming the process
    that holds it (``what`` says what is locked, e.g. "run R"). Several ranks of one torchrun job are one writer."""
    from ..errors import KdlabError
    if fcntl is None or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        yield
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise KdlabError(f"cannot lock {what} ({path}: {e.strerror}): writing needs a writable run store") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                info = {}
            raise KdlabError(_busy_line(what, info)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the flock


def run_lock_path(store, run_id: str) -> Path:
    return store.root / ".locks" / f"{run_id}.lock"   # outside the run's folder: a refused writer changes nothing there


def run_held(store, run_id: str):
    """The writers' lock of one run (``exclusive``)."""
    return exclusive(run_lock_path(store, run_id), f"run {run_id}")


def run_writer(store, run_id: str) -> int | None:
    """The pid of the process writing ``run_id`` now, or None when no process holds its lock."""
    path = run_lock_path(store, run_id)
    if fcntl is None or not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            try:
                return json.loads(os.pread(fd, 4096, 0).decode() or "{}").get("pid")
            except ValueError:
                return -1
    finally:
        os.close(fd)


def open_student_run(store, *, method: str, conf: dict, name, parent, resume: str | None = None, on_create=None):
    """(run id, checkpoint, lock) of a task entry's student run: a new run, created under its writers' lock (released
    by ``recording``) with ``on_create(run_id)`` called, or the stopped run ``resume`` reopened at its last checkpoint
    (``<run>/checkpoint``; the caller of a resume, ``resume_run``, holds the lock already)."""
    import contextlib
    from ..errors import KdlabError
    from .checkpoint import checkpoint_position, find_checkpoint
    lock = contextlib.ExitStack()
    if resume:
        checkpoint = find_checkpoint(store.folder(resume) / "checkpoint")
        if checkpoint is None:
            raise KdlabError(f"run {resume} has no resumable checkpoint: start it again "
                             "(use --checkpoint-every N to checkpoint during an epoch)")
        store.reopen(resume, *checkpoint_position(checkpoint))
        return resume, checkpoint, lock
    run_id = store.create_run("student", method, conf, name=name, parent=parent)
    lock.enter_context(run_held(store, run_id))
    if on_create is not None:
        on_create(run_id)
    return run_id, None, lock
