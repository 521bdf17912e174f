"""A loss that becomes non-finite stops the run with a message naming the objective and layer;
the run is marked failed, not finished, and the last good checkpoint is kept."""
import json

import pytest
import torch

from kdlab.config import RunConfig, TrainConfig
from kdlab.errors import KdlabError
from kdlab.methods.base import REGISTRY
from kdlab.methods.basic import HiddenKD
from kdlab.engine.pipeline import distill_run
from kdlab.runs.store import Store


class NanAtStep3(HiddenKD):
    """The hidden-state term of student layer 2 turns NaN at step 3."""
    name = "test-nan-at-3"

    def loss(self, s, t, batch, state):
        total, parts = super().loss(s, t, batch, state)
        if state.step >= 3:
            parts["hidden_mse/s2-t4"] = torch.tensor(float("nan"))
            total = total + parts["hidden_mse/s2-t4"]
        return total, parts


@pytest.fixture
def nan_method():
    REGISTRY[NanAtStep3.name] = NanAtStep3
    yield NanAtStep3.name
    REGISTRY.pop(NanAtStep3.name, None)


def test_non_finite_loss_fails_the_run_and_keeps_the_checkpoint(tmp_path, nan_method):
    store = Store(tmp_path)
    cfg = RunConfig(preset="tiny", method=nan_method, max_train=96, max_eval=32,
                    train=TrainConfig(progress=False, max_steps=8, checkpoint_every=1, batch_size=16),
                    teacher_train=TrainConfig(progress=False, max_steps=4))
    with pytest.raises(KdlabError, match=r"non-finite at step 3.*hidden_mse/s2-t4"):
        distill_run(cfg, store, log=lambda *_: None)
    student_runs = store.runs(kind="student")
    assert len(student_runs) == 1
    run = student_runs[0]
    assert run["status"] == "failed" and "hidden_mse/s2-t4" in run["message"]
    ckpt = store.folder(run["id"]) / "checkpoint"
    assert (ckpt / "model.safetensors").exists()
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 3, state  # steps 1..3 were good; the NaN appeared while computing step 4
    assert max(r["step"] for r in store.metrics(run["id"])) == 3
