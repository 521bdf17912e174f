"""TensorBoard event files per run (``--tensorboard``): the training rows (loss, learning rate, the method's parts)
under ``train/`` and every evaluation under ``<split>/<metric>``, written into ``<run folder>/tensorboard`` with
``torch.utils.tensorboard`` (needs the ``tensorboard`` package: ``pip install kdlab[tensorboard]``). View with
``tensorboard --logdir runs``. A resumed run purges the events after its checkpoint's step."""
from __future__ import annotations

from pathlib import Path

from ..errors import KdlabError

FOLDER = "tensorboard"


class EventWriter:
    def __init__(self, folder, start_step: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise KdlabError("--tensorboard needs the tensorboard package: pip install 'kdlab[tensorboard]' "
                             "(or pip install tensorboard)") from None
        self.w = SummaryWriter(log_dir=str(Path(folder)), purge_step=start_step or None)

    def train_row(self, step: int, row: dict):
        for k, v in row.items():
            self.w.add_scalar(f"train/{k}", float(v), step)

    def evals(self, step: int, evals: dict):
        for split, m in evals.items():
            for k, v in m.items():
                if k != "n":
                    self.w.add_scalar(f"{split}/{k}", float(v), step)
        self.w.flush()

    def close(self):
        self.w.close()


def read_scalars(folder) -> dict:
    """{tag: [(step, value), ...]} of the event files in ``folder`` (tensorboard's own reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
