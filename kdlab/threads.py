"""How many CPU threads a kdlab process computes with: its share of the cores.

Two torch processes that each take every core slow each other down by an order of magnitude (their OpenMP
threads wait on each other): two tiny runs side by side took 9x one run on 2 cores, not 2x. So every kdlab
process that computes (a run, a study worker, a notebook kernel) registers itself in a machine-wide folder
(``$KDLAB_CPU_DIR``, default ``<tmp>/kdlab-cpu``: one small file per process, removed at exit; a dead process's
file is ignored and cleaned up) and takes ``cores // processes`` threads (at least one). A training loop calls
``rebalance()`` as it goes, so a run that started alone gives a core back when a second one starts, and takes
it again when that one ends. The dashboard's own process keeps to one thread and does not register.

The choice, first match wins: ``--threads N`` (a command's option, ``TrainConfig.threads``), ``$KDLAB_THREADS``,
``$OMP_NUM_THREADS`` (the OpenMP setting torch itself honours), else the share.
"""
from __future__ import annotations

import atexit
import os
import tempfile
import time
from pathlib import Path

from .errors import KdlabError

_state = {"registered": None, "auto": False, "peers": 1, "checked": 0.0, "threads": None}
CHECK_SECONDS = 2.0   # how often rebalance() looks at the other processes


def share(cores: int, processes: int) -> int:
    """Threads for each of ``processes`` kdlab processes computing on ``cores`` cores: an even share, at least 1."""
    return max(1, int(cores) // max(1, int(processes)))


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def folder() -> Path:
    return Path(os.environ.get("KDLAB_CPU_DIR") or Path(tempfile.gettempdir()) / "kdlab-cpu")


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux: field 22 of /proc/PID/stat), so a reused pid is not taken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = _start_time(pid)
    return now is None or not started or now == started


def active(where: Path | None = None) -> list[int]:
    """The pids of the kdlab processes computing on this machine now (stale entries are removed)."""
    where = where or folder()
    pids = []
    try:
        entries = list(where.iterdir())
    except OSError:
        return pids
    for f in entries:
        try:
            pid = int(f.name)
            started = f.read_text().strip()
        except (ValueError, OSError):
            continue
        if _alive(pid, started):
            pids.append(pid)
        else:
            try:
                f.unlink()
            except OSError:
                pass
    return sorted(pids)


def register(where: Path | None = None) -> None:
    """Count this process among those computing (until it exits or ``unregister()``)."""
    where = where or folder()
    pid = os.getpid()
    if _state["registered"] == (where, pid):
        return
    try:
        where.mkdir(parents=True, exist_ok=True)
        try:
            where.chmod(0o1777)   # shared by every user's kdlab processes, like /tmp
        except OSError:
            pass
        (where / str(pid)).write_text(_start_time(pid) or "")
    except OSError:
        return   # an unwritable folder: the process still runs, just without counting itself
    _state["registered"] = (where, pid)
    atexit.register(unregister)


def unregister() -> None:
    reg = _state["registered"]
    if reg and reg[1] == os.getpid():
        try:
            (reg[0] / str(reg[1])).unlink()
        except OSError:
            pass
    _state["registered"] = None


def _explicit(threads: int | None) -> tuple[int | None, str]:
    if threads:
        return int(threads), "--threads"
    for var in ("KDLAB_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v:
            try:
                n = int(v)
            except ValueError:
                raise KdlabError(f"${var} must be a whole number of CPU threads (got {v!r})")
            if n >= 1:
                return n, "$" + var
    return None, ""


def check(threads) -> None:
    """A ``--threads`` value: 0 / None (the share of the cores) or a positive whole number."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise KdlabError(f"threads must be a positive whole number of CPU threads, or 0 for this process's share "
                         f"of the cores (got {threads!r})")


def decide(threads: int | None = None, *, peers: int = 1, running: int | None = None,
           n_cores: int | None = None) -> tuple[int, str]:
    """``(threads, why)`` for this process. ``running``: the kdlab processes computing now, this one included
    (default: counted in ``folder()``); ``peers``: at least this many (a study's workers start together)."""
    n, why = _explicit(threads)
    if n is not None:
        return n, why
    c = n_cores or cores()
    procs = max(int(peers), running if running is not None else max(1, len(active())))
    return share(c, procs), f"share of {c} core(s) among {procs} kdlab process(es)"


def use(threads: int | None = None, *, peers: int = 1, register_process: bool = True) -> int:
    """Set torch's CPU threads for this process (and count it among those computing). Returns the number."""
    check(threads)
    if register_process:
        register()
    n, why = decide(threads, peers=peers)
    _state.update(auto=not why.startswith(("--", "$")), peers=peers, checked=time.monotonic())
    _set(n)
    return n


def rebalance() -> int | None:
    """Take this process's share again when other kdlab processes started or ended (cheap; looks every
    ``CHECK_SECONDS``). Only where the share was chosen automatically; returns the threads now in use."""
    if not _state["auto"]:
        return _state["threads"]
    now = time.monotonic()
    if now - _state["checked"] < CHECK_SECONDS:
        return _state["threads"]
    _state["checked"] = now
    n, _ = decide(None, peers=_state["peers"])
    if n != _state["threads"]:
        _set(n)
    return n


def in_use() -> int:
    """The threads torch computes with in this process now."""
    import torch
    return torch.get_num_threads()


def _set(n: int) -> None:
    import torch
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _state["threads"] = n


def one_thread() -> None:
    """The dashboard's own process: one thread, not counted (the runs it starts take the cores)."""
    _state["auto"] = False
    _set(1)


DASHBOARD_MARK = "KDLAB_DASHBOARD_THREADS"


def dashboard() -> None:
    """The dashboard's own process: one thread (set before torch is imported, through $OMP_NUM_THREADS, which
    ``child_env`` keeps from the runs the dashboard starts), and not counted among the processes computing."""
    import sys
    if "torch" in sys.modules:
        one_thread()
    elif not os.environ.get("OMP_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ[DASHBOARD_MARK] = "1"


def child_env(env: dict) -> dict:
    """The environment for a run the dashboard starts: without the dashboard's own one-thread setting, so the
    run takes its share of the cores."""
    env = dict(env)
    if env.pop(DASHBOARD_MARK, None):
        env.pop("OMP_NUM_THREADS", None)
    return env
