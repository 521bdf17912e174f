"""A stored run read back: its configuration (one conversion from the stored form), its task, its teacher run(s),
its model folder and its data. Every reader of the store (the pipeline, deploy, CKA, the scripts, the dashboard
and the notebooks) turns a stored run into a ``RunConfig`` through ``StoredRun.config`` instead of digging
into the stored dict.

A run stores its ``RunConfig`` as a dict with provenance recorded beside it (``PROVENANCE``: the teacher
run(s), the data's identity, the resolved task). ``config`` keeps the configuration only; keys a newer or
older kdlab does not know are dropped, so old run stores still open.
"""
from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..config import RunConfig, TrainConfig
from ..errors import KdlabError

# what a run records next to its configuration (not RunConfig fields)
PROVENANCE = ("teacher_run", "teacher_runs", "data_identity", "task_spec")


def config_of(stored: dict) -> RunConfig:
    """The ``RunConfig`` of a stored configuration dict: provenance and keys kdlab no longer knows are dropped."""
    known = {f.name for f in dataclasses.fields(RunConfig)}
    tk = {f.name for f in dataclasses.fields(TrainConfig)}
    d = {k: v for k, v in (stored or {}).items() if k in known and k not in PROVENANCE}
    for key in ("train", "teacher_train"):
        if isinstance(d.get(key), dict):
            d[key] = {k: v for k, v in d[key].items() if k in tk}
    return RunConfig.from_dict(d)


@dataclass
class StoredRun:
    """One row of the store (``Store.run``) with what its readers ask of it."""
    row: dict
    store: object = None   # the kdlab.runs.store.Store it came from (artifacts: model folders)

    @staticmethod
    def load(store, run_id: str) -> "StoredRun":
        return StoredRun(store.run(run_id), store)

    @property
    def id(self) -> str:
        return self.row["id"]

    @property
    def kind(self) -> str:
        return self.row["kind"]

    @property
    def stored(self) -> dict:
        """The configuration dict as stored (with provenance)."""
        return self.row.get("config") or {}

    def config(self) -> RunConfig:
        """The run's ``RunConfig`` (a teacher run stores its data spec and fine-tuning settings only: those)."""
        return config_of(self.stored)

    @property
    def data(self):
        """The run's data spec (a file, folder, builtin name; None or "embedded" for the embedded data)."""
        return self.stored.get("data")

    @property
    def train(self) -> dict:
        return self.stored.get("train") or {}

    @property
    def data_identity(self) -> str | None:
        """The identity (hash) of the data the run read (runs of the same data share it)."""
        return self.stored.get("data_identity")

    @property
    def seed(self):
        return self.train.get("seed")

    @property
    def max_len(self) -> int:
        return int(self.train.get("max_len", 64))

    @property
    def teacher_run(self) -> str | None:
        """The run of the teacher it was distilled from (the first of an ensemble), or None."""
        return self.stored.get("teacher_run") or self.row.get("parent")

    @property
    def teacher_runs(self) -> list[str]:
        """Every teacher run (an ensemble's members; one for a single teacher; [] for none)."""
        runs = self.stored.get("teacher_runs")
        return list(runs) if runs else ([self.teacher_run] if self.teacher_run else [])

    @property
    def task_spec(self) -> dict | None:
        spec = self.stored.get("task_spec")
        return spec if isinstance(spec, dict) else None

    @property
    def task_kind(self) -> str | None:
        return (self.task_spec or {}).get("kind")

    @property
    def is_ranking(self) -> bool:
        return self.task_kind == "ranking"

    @property
    def primary_metric(self) -> str:
        """The primary metric of its recorded task; accuracy for runs stored before tasks."""
        from ..tasks import run_primary_metric
        return run_primary_metric(self.row)

    def task(self, folder=None):
        """The ``Task`` it was trained on (stored with its configuration, else with its model in ``folder``), or
        None (runs from before tasks: sentiment)."""
        from ..tasks import Task
        spec = self.task_spec
        if spec is None and folder is not None and (Path(folder) / "kdlab.json").exists():
            try:
                spec = json.loads((Path(folder) / "kdlab.json").read_text()).get("task_spec")
            except (OSError, ValueError):
                spec = None
        return Task.from_dict(spec) if isinstance(spec, dict) else None

    def model_dir(self, run_id: str | None = None) -> Path | None:
        """The saved model folder of this run (or of ``run_id``, e.g. its teacher run); None when none is left."""
        rid = run_id or self.id
        folder = self.store.artifact(rid, "model_dir") if self.store is not None and rid else None
        return Path(folder) if folder and Path(folder).exists() else None

    def require_model_dir(self, what: str = "") -> Path:
        folder = self.model_dir()
        if folder is None:
            raise KdlabError(f"{what + ' ' if what else ''}run {self.id} has no saved model (status "
                             f"{self.row['status']}): use a finished run (`python -m kdlab runs` lists them)")
        return folder

    def teacher_dir(self) -> Path | None:
        """The teacher's saved model folder (None when the run has no teacher run or its folder is gone)."""
        return self.model_dir(self.teacher_run) if self.kind != "teacher" and self.teacher_run else None


def record_models(store, run_id: str, res, out: Path) -> None:
    """The run's kept model: the last epoch's (``out``), or the selected epoch's when the loop selected one
    (``res.selection``; the last one stays in ``out``), recorded as the run's ``model_dir`` and ``selection``."""
    store.set_artifact(run_id, "model_dir", str(out))
    if res.selection is not None:
        selected = store.folder(run_id) / "selected"
        store.set_artifact(run_id, "selection", {**res.selection, "model_dir": str(selected),
                                                 "last_model_dir": str(out)})
        if selected.is_dir():
            store.set_artifact(run_id, "model_dir", str(selected))


@contextmanager
def recording(store, run_id: str, lock):
    """The body that trains and stores a run: a stop inside it (an error, Ctrl-C, a kill signal) is recorded on the
    run (``Store.record_stop``) and raised again; the run's writers' lock (``lock``, an ExitStack) is released."""
    try:
        yield
    except BaseException as e:
        store.record_stop(run_id, e)
        raise
    finally:
        lock.close()
