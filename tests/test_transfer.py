"""Transfer sets: unlabeled rows reach only the teacher (KD) term; a run on a transfer set trains on it."""
import pytest
import torch
import torch.nn.functional as F

from kdlab.config import build_config
from kdlab.data.transfer import UNLABELED, read_transfer
from kdlab.errors import KdlabError
from kdlab.methods import get
from kdlab.methods.base import Context
from kdlab.models.core import ModelInfo
from kdlab.records import Features
from kdlab.tasks import BUILTIN


def _kd():
    ctx = Context(teacher=ModelInfo(2, 8, 2, 10), student=ModelInfo(1, 8, 2, 10), num_labels=2)
    return get("kd")(ctx, alpha_soft=0.5, alpha_hard=0.5, temperature=2.0)


def test_unlabeled_rows_only_reach_the_kd_term():
    from kdlab.methods.base import State
    torch.manual_seed(0)
    m, state = _kd(), State(step=0, epoch=0, total_steps=1, steps_per_epoch=1)
    s = torch.randn(4, 2, requires_grad=True)
    t = torch.randn(4, 2)
    feats = lambda z: Features(logits=z, mask=torch.ones(4, 3))
    labels = torch.tensor([1, UNLABELED, 0, UNLABELED])
    total, parts = m.loss(feats(s), feats(t), {"labels": labels}, state)
    ce_labeled = F.cross_entropy(s[[0, 2]], labels[[0, 2]])
    assert float(parts["ce"]) == pytest.approx(ce_labeled.item(), rel=1e-6)   # CE over labeled rows only
    total.backward()
    kd_only = s.detach().clone().requires_grad_(True)
    (0.5 * m.soft_loss(kd_only, t, "kl", 2.0)).backward()
    # the unlabeled rows' gradient is the KD term's alone
    assert torch.allclose(s.grad[[1, 3]], kd_only.grad[[1, 3]], atol=1e-6)
    assert not torch.allclose(s.grad[[0, 2]], kd_only.grad[[0, 2]], atol=1e-4)
    s2 = torch.randn(2, 2, requires_grad=True)
    total2, parts2 = m.loss(Features(s2, None), Features(torch.randn(2, 2), None),
                            {"labels": torch.tensor([UNLABELED, UNLABELED])}, state)
    assert float(parts2["ce"]) == 0.0 and torch.isfinite(total2)


def test_reading_a_transfer_file(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_text("sentence\tlabel\ngood film\tpositive\nbad film\t\nfine\t0\n")
    texts, texts_b, labels = read_transfer(f, BUILTIN["sentiment"], ["negative", "positive"])
    assert texts == ["good film", "bad film", "fine"] and texts_b is None and labels == [1, UNLABELED, 0]
    f2 = tmp_path / "t.txt"
    f2.write_text("one\n\ntwo\n")
    assert read_transfer(f2, BUILTIN["sentiment"], ["negative", "positive"])[2] == [UNLABELED, UNLABELED]
    f.write_text("sentence\tlabel\ngood\tmaybe\n")
    with pytest.raises(KdlabError, match="unknown label"):
        read_transfer(f, BUILTIN["sentiment"], ["negative", "positive"])
    with pytest.raises(KdlabError, match="no file"):
        build_config(preset="tiny", transfer=str(tmp_path / "missing.txt"))


def test_a_kd_run_trains_on_the_transfer_set(tmp_path):
    from kdlab.engine.pipeline import distill_run
    from kdlab.runs.store import Store
    texts = ["a wonderful film", "dull and slow", "great acting", "boring plot", "loved it", "awful"] * 4
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    store = Store(tmp_path / "runs")
    msgs = []
    common = dict(preset="tiny", max_train=48, max_eval=40, batch_size=16, max_steps=3, teacher_epochs=1,
                  transfer=str(tmp_path / "t.txt"), no_progress=True)   # the teacher of test_study's tiny grid
    rid = distill_run(build_config(method="kd", augment=True, **common), store, log=msgs.append)
    assert store.run(rid)["status"] == "finished"
    # 48 labeled rows + 24 unlabeled transfer rows + augmented copies: more than 3 + 2 batches of 16 per epoch
    assert store.artifact(rid, "plan")["steps_per_epoch"] > 5
    assert any("transfer set of" in m and "(0 labeled)" in m for m in msgs)
    msgs.clear()
    rid = distill_run(build_config(method="ce", **common), store, log=msgs.append)   # no teacher: labeled rows only
    assert store.artifact(rid, "plan")["steps_per_epoch"] == 3
    assert any("unlabeled transfer rows are left out" in m for m in msgs)
    with pytest.raises(KdlabError, match="labeled transfer set"):
        distill_run(build_config(method="crd", **common), store, log=msgs.append)
