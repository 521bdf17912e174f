"""The run store: one SQLite database (WAL) plus a folder per run.

Training writes; the dashboard, notebooks and CLI read, also while a run is being written. Every
write is one short transaction, so a reader never sees part of a batch of rows. A run is
``running`` until the loop marks it ``finished``, ``failed`` or ``cancelled``; a run whose process
died is shown as ``running`` with a stale ``updated`` time and a dead pid (``Store.status`` reports
it as ``died``).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from . import store_paths
from ..errors import KdlabError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, name TEXT, kind TEXT, method TEXT, status TEXT, config TEXT,
  created REAL, updated REAL, pid INTEGER, message TEXT, parent TEXT, summary TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
  run_id TEXT, step INTEGER, epoch INTEGER, name TEXT, value REAL
);
CREATE INDEX IF NOT EXISTS metrics_run_step ON metrics(run_id, step);
CREATE TABLE IF NOT EXISTS mappings (
  run_id TEXT, step INTEGER, epoch INTEGER, label TEXT, matrix TEXT
);
CREATE TABLE IF NOT EXISTS evals (
  run_id TEXT, step INTEGER, epoch INTEGER, split TEXT, domain TEXT, metric TEXT, value REAL
);
CREATE INDEX IF NOT EXISTS evals_run ON evals(run_id);
CREATE TABLE IF NOT EXISTS artifacts (
  run_id TEXT, name TEXT, value TEXT, PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS studies (
  name TEXT PRIMARY KEY, spec TEXT, created REAL, updated REAL, result TEXT
);
CREATE TABLE IF NOT EXISTS study_cells (
  study TEXT, cell TEXT, run_id TEXT, PRIMARY KEY (study, cell)
);
CREATE TABLE IF NOT EXISTS grad_norms (
  run_id TEXT, step INTEGER, epoch INTEGER, term TEXT, norm REAL
);
"""

FINAL = ("finished", "failed", "cancelled")


def default_root() -> Path:
    return Path(os.environ.get("KDLAB_RUNS", "runs"))


def teacher_cache_root(store: "Store") -> Path:
    """Fine-tuned teachers live in ``$KDLAB_TEACHERS`` when set (shared by several stores), else in the store."""
    env = os.environ.get("KDLAB_TEACHERS")
    return Path(env) if env else store.root / "teachers"


@contextmanager
def _creating(root: Path):
    """An exclusive lock on ``<root>/.locks/schema.lock`` while the schema is made (none where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    (root / ".locks").mkdir(exist_ok=True)
    with open(root / ".locks" / "schema.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_root()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KdlabError(f"cannot create the run store folder '{self.root}': {e.strerror}. "
                             "Choose another folder with --runs") from None
        self.path = self.root / "kdlab.db"
        # a store opened to read writes nothing: the schema is created (and WAL switched on) only where missing,
        # and a store the user cannot write is read through a read-only connection (kdlab.runs.store_paths)
        self.writable = store_paths.writable(self.root, self.path)
        self._uri = None if self.writable else store_paths.readonly_uri(self.path)
        if self.path.exists() and self._has_schema():
            return
        if not self.writable:
            if not self.path.exists():
                raise KdlabError(f"'{self.root}' holds no run store and is read-only: choose another folder with "
                                 "--runs")
            return   # an older store without the newest tables: what it has can be read
        # two processes that open a new store at once (two runs started together) take turns: switching a
        # database to WAL does not wait on SQLite's busy timeout, so the second would fail with "locked"
        with _creating(self.root):
            if self.path.exists() and self._has_schema():
                return
            with self._conn() as c:
                c.execute("PRAGMA journal_mode=WAL")
                c.executescript(SCHEMA)

    def _has_schema(self) -> bool:
        with self._conn() as c:
            have = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")}
            wal = self._uri is not None or c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        return wal and set(re.findall(r"IF NOT EXISTS (\w+)", SCHEMA)) <= have

    def check_writable(self, what: str = "a new run"):
        if not self.writable:
            raise KdlabError(f"the run store '{self.root}' is read-only: runs, eval and the dashboard read it, but "
                             f"{what} needs a writable store (copy it, or choose another folder with --runs)")

    @contextmanager
    def _conn(self):
        try:
            c = (sqlite3.connect(self._uri, uri=True, timeout=30) if self._uri else
                 sqlite3.connect(self.path, timeout=30))
        except sqlite3.Error as e:
            raise KdlabError(f"cannot open the run store '{self.path}': {e}") from None
        try:
            c.execute("PRAGMA busy_timeout=30000")
            with c:  # one transaction
                yield c
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e) or "malformed" in str(e):
                raise KdlabError(f"the run store '{self.path}' is not a kdlab database ({e}): "
                                 "move it away or choose another folder with --runs") from None
            if "readonly" in str(e):
                self.writable = False
                self.check_writable("writing")
            raise
        finally:
            c.close()

    # -- writing ----------------------------------------------------------------------------
    def create_run(self, kind: str, method: str, config: dict, name: str | None = None,
                   parent: str | None = None) -> str:
        self.check_writable()
        run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{method}-{secrets.token_hex(2)}"
        self.folder(run_id).mkdir(parents=True, exist_ok=True)
        (self.folder(run_id) / "config.json").write_text(json.dumps(config, indent=2, default=str))
        now = time.time()
        with self._conn() as c:
            c.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                      (run_id, name or run_id, kind, method, "running", json.dumps(config, default=str),
                       now, now, os.getpid(), "", parent, "{}"))
        return run_id

    def folder(self, run_id: str) -> Path:
        return self.root / run_id

    def log_metrics(self, run_id: str, step: int, epoch: int, values: dict):
        rows = [(run_id, step, epoch, k, float(v)) for k, v in values.items()]
        with self._conn() as c:
            c.executemany("INSERT INTO metrics VALUES (?,?,?,?,?)", rows)
            c.execute("UPDATE runs SET updated=? WHERE id=?", (time.time(), run_id))

    def log_mapping(self, run_id: str, step: int, epoch: int, matrix, label: str = "W"):
        m = matrix.tolist() if hasattr(matrix, "tolist") else matrix
        with self._conn() as c:
            c.execute("INSERT INTO mappings VALUES (?,?,?,?,?)", (run_id, step, epoch, label, json.dumps(m)))

    def log_grad_norms(self, run_id: str, step: int, epoch: int, norms: dict):
        """The gradient norm each loss term put on the student's parameters at ``step`` (kdlab.analysis.grad_share)."""
        with self._conn() as c:
            c.executemany("INSERT INTO grad_norms VALUES (?,?,?,?,?)",
                          [(run_id, step, epoch, k, float(v)) for k, v in norms.items()])

    def log_eval(self, run_id: str, step: int, epoch: int, split: str, domain: str, metrics: dict):
        rows = [(run_id, step, epoch, split, domain, k, float(v)) for k, v in metrics.items()]
        with self._conn() as c:
            c.executemany("INSERT INTO evals VALUES (?,?,?,?,?,?,?)", rows)

    def set_artifact(self, run_id: str, name: str, value):
        value = store_paths.map_paths(name, value, lambda p: store_paths.relative(self.root, p))
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO artifacts VALUES (?,?,?)", (run_id, name, json.dumps(value, default=str)))

    def add_entry(self, run_id: str, name: str, key: str, value) -> bool:
        """Add ``key: value`` to the dict artifact ``name`` in one transaction (read, check, write); False when
        ``key`` is there already (nothing written)."""
        value = store_paths.map_paths(name, {key: value}, lambda p: store_paths.relative(self.root, p))[key]
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")   # no other writer between the read and the write
            r = c.execute("SELECT value FROM artifacts WHERE run_id=? AND name=?", (run_id, name)).fetchone()
            d = json.loads(r[0]) if r else {}
            if key in d:
                return False
            d[key] = value
            c.execute("INSERT OR REPLACE INTO artifacts VALUES (?,?,?)", (run_id, name, json.dumps(d, default=str)))
        return True

    def record_stop(self, run_id: str, e: BaseException, resumable: bool = True) -> None:
        """A run stopped by the exception ``e`` (call it from the ``except`` block, then re-raise): Ctrl-C marks it
        cancelled (a ``resumable`` run's exception then names it, so the CLI prints the command that resumes it),
        anything else failed with the error's line, and the traceback goes to ``error.txt`` unless it is a
        KdlabError (a mistake the message already explains)."""
        if isinstance(e, KeyboardInterrupt):
            self.finish(run_id, "cancelled", "interrupted")
            if resumable:
                e.kdlab_run = (str(self.root), run_id)
            return
        self.finish(run_id, "failed", message=f"{type(e).__name__}: {e}"[:500])
        if not isinstance(e, KdlabError):
            import traceback
            (self.folder(run_id) / "error.txt").write_text(traceback.format_exc())

    def finish(self, run_id: str, status: str = "finished", message: str = "", summary: dict | None = None):
        assert status in FINAL, status
        with self._conn() as c:
            c.execute("UPDATE runs SET status=?, message=?, updated=?, summary=? WHERE id=?",
                      (status, message, time.time(), json.dumps(summary or {}, default=str), run_id))

    def reopen(self, run_id: str, step: int, epoch: int):
        """Mark a stopped run ``running`` again to continue it from ``step`` / ``epoch`` (its checkpoint's
        position, read by the caller): rows logged after that point are deleted in one transaction (they
        will be written again)."""
        with self._conn() as c:
            c.execute("DELETE FROM metrics WHERE run_id=? AND step>?", (run_id, step))
            c.execute("DELETE FROM evals WHERE run_id=? AND (step>? OR epoch>?)", (run_id, step, epoch))
            c.execute("DELETE FROM mappings WHERE run_id=? AND step>=?", (run_id, step))
            c.execute("DELETE FROM grad_norms WHERE run_id=? AND step>=?", (run_id, step))
            c.execute("UPDATE runs SET status='running', message='', pid=?, updated=? WHERE id=?",
                      (os.getpid(), time.time(), run_id))
        (self.folder(run_id) / "CANCEL").unlink(missing_ok=True)

    def drop_evals(self, run_id: str, from_step: int):
        """Delete the evaluations logged at ``from_step`` and later (a run resumed from its final checkpoint makes
        its last evaluation again)."""
        with self._conn() as c:
            c.execute("DELETE FROM evals WHERE run_id=? AND step>=?", (run_id, from_step))

    def request_cancel(self, run_id: str):
        (self.folder(run_id) / "CANCEL").touch()

    def cancel_requested(self, run_id: str) -> bool:
        return (self.folder(run_id) / "CANCEL").exists()

    # -- reading ----------------------------------------------------------------------------
    def runs(self, kind: str | None = None) -> list[dict]:
        q = "SELECT * FROM runs" + (" WHERE kind=?" if kind else "") + " ORDER BY created DESC"
        with self._conn() as c:
            c.row_factory = sqlite3.Row
            rows = [dict(r) for r in c.execute(q, (kind,) if kind else ())]
        for r in rows:
            r["config"] = json.loads(r["config"] or "{}")
            r["summary"] = json.loads(r["summary"] or "{}")
            r["status"] = self._live_status(r)
        return rows

    def run(self, run_id: str) -> dict:
        with self._conn() as c:
            c.row_factory = sqlite3.Row
            r = c.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if r is None:   # a run's name (--name), where it is unique
                named = c.execute("SELECT * FROM runs WHERE name=? ORDER BY created DESC", (run_id,)).fetchall()
                if len(named) > 1:
                    raise KdlabError(f"{len(named)} runs are named '{run_id}' in {self.root}: give one of their ids "
                                     f"({', '.join(n['id'] for n in named[:5])})")
                r = named[0] if named else None
            if r is None:   # a method name: that method's latest run
                r = c.execute("SELECT * FROM runs WHERE method=? ORDER BY created DESC", (run_id,)).fetchone()
            if r is None:
                like = c.execute("SELECT id FROM runs WHERE id LIKE ? ORDER BY created DESC",
                                 (f"%{run_id}%",)).fetchall()
                if len(like) == 1:
                    r = c.execute("SELECT * FROM runs WHERE id=?", (like[0][0],)).fetchone()
        if r is None:
            raise KdlabError(f"no run '{run_id}' in the run store {self.root}: `python -m kdlab runs` lists them")
        r = dict(r)
        r["config"] = json.loads(r["config"] or "{}")
        r["summary"] = json.loads(r["summary"] or "{}")
        r["status"] = self._live_status(r)
        return r

    @staticmethod
    def _live_status(r: dict) -> str:
        if r["status"] != "running" or not r.get("pid"):
            return r["status"]
        if r["pid"] == os.getpid():
            return "running"
        try:
            os.kill(r["pid"], 0)
        except ProcessLookupError:
            return "died"
        except PermissionError:
            pass
        return "running"

    def metrics(self, run_id: str, since_step: int = -1) -> list[dict]:
        with self._conn() as c:
            rows = c.execute("SELECT step, epoch, name, value FROM metrics WHERE run_id=? AND step>? "
                             "ORDER BY step, rowid", (run_id, since_step)).fetchall()
        return [dict(step=s, epoch=e, name=n, value=v) for s, e, n, v in rows]

    def metrics_frame(self, run_id: str):
        """Metrics as a wide pandas frame: one row per step, one column per name."""
        import pandas as pd
        rows = self.metrics(run_id)
        if not rows:
            return pd.DataFrame()
        df = pd.DataFrame(rows)
        return df.pivot_table(index=["step", "epoch"], columns="name", values="value").reset_index()

    def mappings(self, run_id: str) -> list[dict]:
        with self._conn() as c:
            rows = c.execute("SELECT step, epoch, label, matrix FROM mappings WHERE run_id=? ORDER BY rowid",
                             (run_id,)).fetchall()
        return [dict(step=s, epoch=e, label=l, matrix=json.loads(m)) for s, e, l, m in rows]

    def grad_norms(self, run_id: str) -> list[dict]:
        """Rows {step, epoch, term, norm} written by ``log_grad_norms``, in step order ([] for a read-only store made
        before the table existed)."""
        try:
            with self._conn() as c:
                rows = c.execute("SELECT step, epoch, term, norm FROM grad_norms WHERE run_id=? ORDER BY step, rowid",
                                 (run_id,)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" not in str(e):
                raise
            rows = []
        return [dict(step=s, epoch=e, term=t, norm=n) for s, e, t, n in rows]

    def evals(self, run_id: str) -> list[dict]:
        with self._conn() as c:
            rows = c.execute("SELECT step, epoch, split, domain, metric, value FROM evals WHERE run_id=? "
                             "ORDER BY rowid", (run_id,)).fetchall()
        return [dict(step=s, epoch=e, split=sp, domain=d, metric=m, value=v) for s, e, sp, d, m, v in rows]

    def final_evals(self, run_id: str) -> dict:
        """{split: {metric: value}} from the latest evaluation of each split."""
        out: dict = {}
        for r in self.evals(run_id):
            out.setdefault(r["split"], {})[r["metric"]] = r["value"]
        return out

    def artifact(self, run_id: str, name: str, default=None):
        with self._conn() as c:
            r = c.execute("SELECT value FROM artifacts WHERE run_id=? AND name=?", (run_id, name)).fetchone()
        if not r:
            return default
        # recorded paths (model folders) as paths on this machine, wherever the store is now
        return store_paths.map_paths(name, json.loads(r[0]), lambda p: store_paths.resolve(self.root, p))

    # -- studies (kdlab.engine.study): a grid of runs under one name ---------------------------------------
    def save_study(self, name: str, spec: dict):
        now = time.time()
        with self._conn() as c:
            c.execute("INSERT INTO studies (name, spec, created, updated, result) VALUES (?,?,?,?,?) "
                      "ON CONFLICT(name) DO UPDATE SET spec=excluded.spec, updated=excluded.updated",
                      (name, json.dumps(spec, default=str), now, now, None))

    def set_study_cell(self, name: str, cell: str, run_id: str):
        with self._conn() as c:
            c.execute("INSERT OR REPLACE INTO study_cells VALUES (?,?,?)", (name, cell, run_id))
            c.execute("UPDATE studies SET updated=? WHERE name=?", (time.time(), name))

    def set_study_result(self, name: str, result):
        with self._conn() as c:
            c.execute("UPDATE studies SET result=?, updated=? WHERE name=?",
                      (json.dumps(result, default=str), time.time(), name))

    def studies(self) -> list[dict]:
        """Every study, newest first: name, spec, created, updated, result (None until aggregated), cells."""
        with self._conn() as c:
            rows = c.execute("SELECT name, spec, created, updated, result FROM studies ORDER BY created DESC").fetchall()
            cells = c.execute("SELECT study, cell, run_id FROM study_cells").fetchall()
        by: dict = {}
        for st, cell, rid in cells:
            by.setdefault(st, {})[cell] = rid
        return [dict(name=n, spec=json.loads(sp or "{}"), created=cr, updated=up,
                     result=json.loads(res) if res else None, cells=by.get(n, {})) for n, sp, cr, up, res in rows]

    def study(self, name: str) -> dict | None:
        for s in self.studies():
            if s["name"] == name:
                return s
        return None
