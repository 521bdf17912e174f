"""Disk use of a run store: bytes per run, and ``gc`` to free what finished and failed runs left behind.

A finished run keeps its model (``student/``, ``selected/``, ``models/``) and drops its resume checkpoint (unless
run with ``--keep-checkpoints``). ``gc`` frees, for runs no process is writing: the checkpoints of finished runs
(and of teacher runs, which are never resumed), half-written folders (``*.partial*``, ``.*.stale-*``) and, with
``failed=True``, the checkpoints of failed, cancelled and died runs (they can then not be resumed).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def tree_bytes(path) -> int:
    """Bytes of the files under ``path`` (links not followed); 0 when it does not exist."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def drop_checkpoint(folder) -> int:
    """Remove a run's resume checkpoint (``checkpoint``, ``checkpoint.old``, a half-written ``checkpoint.partial``);
    returns the bytes freed. A finished run's checkpoint is never read again (resume refuses finished runs)."""
    folder = Path(folder)
    freed = 0
    for p in (folder, folder.with_name(folder.name + ".old"), folder.with_name(folder.name + ".partial")):
        if p.is_dir():
            freed += tree_bytes(p)
            shutil.rmtree(p, ignore_errors=True)
    return freed


def run_bytes(store, run: dict) -> int:
    """Bytes a run holds: its folder, plus a teacher run's model folder in the teacher cache."""
    n = tree_bytes(store.folder(run["id"]))
    if run["kind"] == "teacher":
        d = store.artifact(run["id"], "model_dir")
        if d and not str(Path(d).resolve()).startswith(str(store.folder(run["id"]).resolve())):
            n += tree_bytes(d)
    return n


def human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _partials(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in folder.rglob("*") if p.is_dir() and (".partial" in p.name or ".stale-" in p.name)]


def gc(store, *, failed: bool = False, dry_run: bool = False) -> list[dict]:
    """Free what finished (and with ``failed``: failed, cancelled, died) runs left; returns one
    ``{"run", "status", "what", "bytes"}`` per folder freed (or that would be, with ``dry_run``)."""
    from .prep_lock import run_writer
    out = []
    for r in store.runs():
        if r["status"] == "running" or run_writer(store, r["id"]) is not None:
            continue   # a process is writing it
        folder = store.folder(r["id"])
        targets = list(_partials(folder))
        ck = folder / "checkpoint"
        if r["status"] == "finished" or r["kind"] == "teacher" or (failed and r["status"] in ("failed", "cancelled",
                                                                                               "died")):
            targets += [p for p in (ck, ck.with_name("checkpoint.old"), ck.with_name("checkpoint.partial"))
                        if p.is_dir() and p not in targets]
        for p in targets:
            n = tree_bytes(p)
            out.append({"run": r["id"], "status": r["status"], "what": str(p.relative_to(store.root)), "bytes": n})
            if not dry_run:
                shutil.rmtree(p, ignore_errors=True)
    return out
