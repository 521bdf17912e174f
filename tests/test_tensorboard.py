"""--tensorboard: event files per run, read back with tensorboard's own reader, equal to the stored rows."""
import pytest

from kdlab.config import build_config
from kdlab.engine.pipeline import distill_run
from kdlab.runs.store import Store
from kdlab.engine.tensorboard import FOLDER, read_scalars


def test_tensorboard_events_match_the_store(tmp_path):
    store = Store(tmp_path / "runs")
    cfg = build_config(preset="tiny", method="kd", max_train=48, max_eval=40, batch_size=16, max_steps=3,
                       teacher_epochs=1, tensorboard=True, no_progress=True)   # the teacher of test_study's grid
    rid = distill_run(cfg, store, log=lambda *a: None)
    scalars = read_scalars(store.folder(rid) / FOLDER)
    losses = {m["step"]: m["value"] for m in store.metrics(rid) if m["name"] == "loss"}
    assert sorted(losses) == [1, 2, 3]
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    for step, v in scalars["train/loss"]:
        assert v == pytest.approx(losses[step], rel=1e-6)
    assert "train/kd" in scalars and "train/lr" in scalars
    final = store.final_evals(rid)
    assert scalars["dev/accuracy"][-1] == (3, pytest.approx(final["dev"]["accuracy"], rel=1e-6))
    assert "ood_restaurant/accuracy" in scalars
    off = distill_run(build_config(preset="tiny", method="ce", max_train=48, max_eval=40, batch_size=16,
                                   max_steps=1, teacher_epochs=1, no_progress=True), store, log=lambda *a: None)
    assert not (store.folder(off) / FOLDER).exists()
