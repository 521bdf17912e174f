"""Model selection and early stopping (``--select dev:accuracy --patience 2``).

After every epoch's evaluation the chosen metric on the chosen split is compared with the best so far (higher
is better, except for ``mse``, ``ece`` and a causal LM's ``perplexity`` and ``token_kl``: the studies' own list,
``kdlab.analysis.stats.LOWER_IS_BETTER``). An improvement saves the student's weights to ``<run>/selected/``
(with ``selection.json``: split, metric, epoch, step, value and that epoch's evaluations), so the selected model
survives a stop and a resume. ``patience`` epochs in a row without an improvement stop the run early. The run
keeps both: its final evaluations are those of the last epoch, the ``selection`` artifact those of the selected
one, so selecting on an out-of-domain split is visibly different from selecting in domain.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..analysis.stats import LOWER_IS_BETTER
from ..errors import KdlabError


def parse_select(spec) -> tuple[str, str] | None:
    """'split:metric' -> (split, metric); None/'' -> None."""
    if spec in (None, ""):
        return None
    parts = str(spec).split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise KdlabError(f"--select takes split:metric, e.g. --select dev:accuracy or --select scitail_test:macro_f1 "
                         f"(got {spec!r})")
    return parts[0].strip(), parts[1].strip()


@dataclass
class Selector:
    split: str
    metric: str
    patience: int = 0
    folder: Path | None = None          # <run>/selected, or None (nothing written: no store)
    best: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    record: dict = field(default_factory=dict)

    @classmethod
    def of(cls, spec, patience: int, folder) -> "Selector | None":
        sel = parse_select(spec)
        if sel is None:
            if patience:
                raise KdlabError("--patience stops when the selected metric stops improving: give it with --select "
                                 "split:metric (e.g. --select dev:accuracy)")
            return None
        s = cls(*sel, patience=int(patience or 0), folder=None if folder is None else Path(folder))
        if s.folder is not None and (s.folder / "selection.json").is_file():   # a resumed run: the best so far
            s.record = json.loads((s.folder / "selection.json").read_text())
            s.best, s.best_epoch = s.record["value"], s.record["epoch"]
        return s

    def check_plan(self, bundle):
        """Before training: the split exists and the task computes the metric."""
        splits = list(bundle.eval_splits())
        task = getattr(bundle, "task", None)
        kind = getattr(task, "kind", "classes")
        metrics = list(getattr(task, "metrics", None) or ("accuracy", "macro_f1")) + \
            (["ece", "agreement"] if kind == "classes" else [])
        self.check_splits({s: dict.fromkeys(metrics) for s in splits})

    def check_splits(self, evals: dict):
        if self.split not in evals:
            raise KdlabError(f"--select {self.split}:{self.metric}: there is no evaluation split '{self.split}' "
                             f"(the splits are {', '.join(evals)})")
        if self.metric not in evals[self.split]:
            raise KdlabError(f"--select {self.split}:{self.metric}: the task has no metric '{self.metric}' "
                             f"(its metrics are {', '.join(k for k in evals[self.split] if k != 'n')})")

    def better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value < self.best if self.metric in LOWER_IS_BETTER else value > self.best

    def update(self, evals: dict, epoch: int, step: int, save) -> bool:
        """Record this epoch's evaluation; ``save(folder)`` writes the student when it is the best so far.
        Returns True when the run should stop (patience exhausted)."""
        self.check_splits(evals)
        value = float(evals[self.split][self.metric])
        if self.better(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.record = {"split": self.split, "metric": self.metric, "epoch": epoch, "step": step, "value": value,
                           "evals": evals}
            if self.folder is not None:
                save(self.folder)
                (self.folder / "selection.json").write_text(json.dumps(self.record, indent=1))
            return False
        self.bad_epochs += 1
        return bool(self.patience) and self.bad_epochs >= self.patience
