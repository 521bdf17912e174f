"""kdlab.kd.losses against hand-computed values (math / numpy written out here, never the function under test)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdlab.kd import losses as L
from kdlab.errors import KdlabError


def t(x, **kw):
    return torch.tensor(x, dtype=torch.float32, **kw)


def np_softmax(x, axis=-1):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def approx(x, ref, tol=1e-5):
    assert x.dim() == 0
    assert float(x) == pytest.approx(float(ref), rel=tol, abs=tol)


# ----------------------------------------------------------------------------------------------- logits
S_LOG = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
T_LOG = [[2.0, 1.0, 0.0], [0.5, 0.5, 1.0]]


def test_hard_ce_hand():
    logits = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    labels = [1, 0]
    ref = 0.0
    for z, y in zip(logits, labels):
        ref += -(z[y] - math.log(sum(math.exp(v) for v in z)))
    ref /= 2
    approx(L.hard_ce(t(logits), torch.tensor(labels)), ref)


def _kl_ref(s, tt, T):
    total = 0.0
    for zs, zt in zip(s, tt):
        p = np_softmax(np.array(zt) / T)
        q = np_softmax(np.array(zs) / T)
        total += float(np.sum(p * (np.log(p) - np.log(q))))
    return T * T * total / len(s)  # batchmean


def test_kd_kl_t1_and_t2_hand():
    approx(L.kd_kl(t(S_LOG), t(T_LOG), T=1.0), _kl_ref(S_LOG, T_LOG, 1.0))
    approx(L.kd_kl(t(S_LOG), t(T_LOG), T=2.0), _kl_ref(S_LOG, T_LOG, 2.0))
    # explicit T^2 factor at T=2: value = 4 * batchmean KL of the T=2 softened distributions
    p = np_softmax(np.array(T_LOG) / 2)
    q = np_softmax(np.array(S_LOG) / 2)
    kl_rows = (p * np.log(p / q)).sum(axis=1)
    approx(L.kd_kl(t(S_LOG), t(T_LOG), T=2.0), 4.0 * kl_rows.mean())


def test_kd_kl_batchmean_not_elementwise_mean():
    # one example, 2 classes, value computed by hand: p=(.5,.5), q=softmax(0, log 3)=(.25,.75)
    s = t([[0.0, math.log(3.0)]])
    tt = t([[0.0, 0.0]])
    ref = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    approx(L.kd_kl(s, tt), ref)  # not ref / C
    # batch of identical rows -> same value (mean over batch, not sum)
    approx(L.kd_kl(s.repeat(4, 1), tt.repeat(4, 1)), ref)


def test_kd_kl_zero_at_match_and_bad_T():
    approx(L.kd_kl(t(T_LOG), t(T_LOG), T=3.0), 0.0)
    with pytest.raises(KdlabError):
        L.kd_kl(t(S_LOG), t(T_LOG), T=0.0)
    with pytest.raises(KdlabError, match="shape"):
        L.kd_kl(t(S_LOG), t([[1.0, 2.0]]))


def test_kd_soft_ce_hand_and_scale():
    T = 2.0
    p = np_softmax(np.array(T_LOG) / T)
    logq = np.log(np_softmax(np.array(S_LOG) / T))
    ce = float((-(p * logq).sum(axis=1)).mean())
    approx(L.kd_soft_ce(t(S_LOG), t(T_LOG), T=T), T * T * ce)
    approx(L.kd_soft_ce(t(S_LOG), t(T_LOG), T=T, scale_t2=False), ce)
    # soft CE = KL + H(p) -> same as kd_kl + T^2 * entropy
    ent = float((-(p * np.log(p)).sum(axis=1)).mean())
    approx(L.kd_soft_ce(t(S_LOG), t(T_LOG), T=T), _kl_ref(S_LOG, T_LOG, T) + T * T * ent)


def test_kd_mse_hand():
    # diffs: row0 (-1, 1, .5) -> 2.25 ; row1 (-.5, -1.5, 2) -> .25+2.25+4 = 6.5 ; mean = 4.375
    approx(L.kd_mse(t(S_LOG), t(T_LOG)), 4.375)


def test_label_smoothing_and_soft_target_ce():
    tgt = L.label_smoothing_targets(torch.tensor([2, 0]), 3, 0.3)
    expected = np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    np.testing.assert_allclose(tgt.numpy(), expected, atol=1e-6)
    logq = np.log(np_softmax(np.array(S_LOG)))
    ref = float((-(expected * logq).sum(axis=1)).mean())
    approx(L.soft_target_ce(t(S_LOG), tgt), ref)
    # eps = 0 -> plain hard CE
    approx(L.soft_target_ce(t(S_LOG), L.label_smoothing_targets(torch.tensor([2, 0]), 3, 0.0)),
           L.hard_ce(t(S_LOG), torch.tensor([2, 0])))
    with pytest.raises(KdlabError):
        L.label_smoothing_targets(torch.tensor([0]), 3, 1.5)


# ----------------------------------------------------------------------------------------------- hidden
# B=2, L=3, d=2; example 1 has one padded position (index 2)
SH = [[[1.0, 2.0], [0.0, 1.0], [3.0, 3.0]],
      [[1.0, 0.0], [2.0, 2.0], [9.0, -7.0]]]
TH = [[[0.0, 2.0], [1.0, 1.0], [3.0, 1.0]],
      [[1.0, 1.0], [2.0, 0.0], [-5.0, 4.0]]]
MASK = [[1, 1, 1], [1, 1, 0]]


def test_masked_mean_hand():
    out = L.masked_mean(t(SH), torch.tensor(MASK))
    np.testing.assert_allclose(out.numpy(), [[4 / 3, 2.0], [1.5, 1.0]], atol=1e-6)
    np.testing.assert_allclose(L.masked_mean(t(SH), None).numpy(), [[4 / 3, 2.0], [4.0, -5 / 3]], atol=1e-6)


def test_hidden_mse_hand_and_padding():
    # squared diffs per real token (summed over d): ex0: 1, 1, 4 ; ex1: 1, 4  -> 11 / (5 tokens * 2 dims)
    approx(L.hidden_mse(t(SH), t(TH), torch.tensor(MASK)), 11.0 / 10.0)
    # mask=None: plain mean over all 12 elements (padding included): 11 + (14^2 + 11^2) = 328 -> 328/12
    approx(L.hidden_mse(t(SH), t(TH), None), (11 + 196 + 121) / 12)
    # garbage (even inf/nan) in the padded position must not change the value; mask dtypes all accepted
    sh = t(SH)
    sh[1, 2] = torch.tensor([float("nan"), float("inf")])
    for m in (torch.tensor(MASK), torch.tensor(MASK).bool(), torch.tensor(MASK).float()):
        approx(L.hidden_mse(sh, t(TH), m), 1.1)


def test_hidden_cosine_hand():
    def cos(a, b):
        a, b = np.array(a), np.array(b)
        return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))

    dists = [1 - cos(SH[b][l], TH[b][l]) for b in range(2) for l in range(3) if MASK[b][l]]
    approx(L.hidden_cosine(t(SH), t(TH), torch.tensor(MASK)), sum(dists) / 5)
    sh = t(SH)
    sh[1, 2] = 1e6
    approx(L.hidden_cosine(sh, t(TH), torch.tensor(MASK)), sum(dists) / 5)
    all_d = [1 - cos(SH[b][l], TH[b][l]) for b in range(2) for l in range(3)]
    approx(L.hidden_cosine(t(SH), t(TH), None), sum(all_d) / 6)


def test_cls_cosine_hand():
    s = [[1.0, 0.0], [1.0, 1.0]]
    tt = [[0.0, 1.0], [1.0, 0.0]]
    # cos: 0 and 1/sqrt2
    d = [1.0, 1 - 1 / math.sqrt(2)]
    approx(L.cls_cosine(t(s), t(tt)), sum(d) / 2)
    approx(L.cls_cosine(t(s), t(tt), squared=True), sum(x * x for x in d) / 2)


def test_l2_normalized_mse_and_pkd_pt_hand():
    s1 = [[3.0, 4.0], [1.0, 0.0]]
    t1 = [[4.0, 3.0], [0.0, 2.0]]
    # normalised: (.6,.8) vs (.8,.6) -> .04+.04 = .08 ; (1,0) vs (0,1) -> 2 ; mean over batch = 1.04
    approx(L.l2_normalized_mse(t(s1), t(t1)), 1.04)
    s2 = [[1.0, 1.0], [0.0, 5.0]]
    t2 = [[2.0, 2.0], [0.0, -1.0]]
    # layer 2: 0 and (0,1) vs (0,-1) -> 4 ; mean 2
    approx(L.pkd_pt([t(s1), t(s2)], [t(t1), t(t2)]), 1.04 + 2.0)
    with pytest.raises(KdlabError):
        L.pkd_pt([t(s1)], [t(t1), t(t2)])


def test_feature_map_mse_hand():
    def ln(x):
        x = np.asarray(x, dtype=np.float64)
        mu = x.mean(-1, keepdims=True)
        var = x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5)

    s = np.array([[[1.0, 2.0, 4.0], [0.0, 1.0, -1.0]]])
    tt = np.array([[[2.0, 2.0, 5.0], [3.0, 0.0, 0.0]]])
    m = [[1, 1]]
    ref = ((ln(s) - ln(tt)) ** 2).sum() / (2 * 3)
    approx(L.feature_map_mse(t(s.tolist()), t(tt.tolist()), torch.tensor(m)), ref, tol=1e-4)
    # padded second token ignored
    ref1 = ((ln(s[:, :1]) - ln(tt[:, :1])) ** 2).sum() / 3
    approx(L.feature_map_mse(t(s.tolist()), t(tt.tolist()), torch.tensor([[1, 0]])), ref1, tol=1e-4)


# ----------------------------------------------------------------------------------------------- attention
def test_attention_probs_from_scores_masks_keys():
    scores = torch.zeros(1, 1, 3, 3)
    scores[0, 0, 0] = t([0.0, math.log(3.0), 50.0])
    P = L.attention_probs_from_scores(scores, torch.tensor([[1, 1, 0]]))
    np.testing.assert_allclose(P[0, 0, 0].numpy(), [0.25, 0.75, 0.0], atol=1e-6)
    np.testing.assert_allclose(P[0, 0, 1].numpy(), [0.5, 0.5, 0.0], atol=1e-6)
    assert torch.allclose(P.sum(-1), torch.ones(1, 1, 3))


def test_attention_kl_hand_excludes_padded_query_rows():
    # B=1, h=2, L=3, last token padded (key column prob 0 in both; query row 2 is garbage and excluded)
    pt = torch.zeros(1, 2, 3, 3)
    ps = torch.zeros(1, 2, 3, 3)
    rows_t = [[0.5, 0.5, 0.0], [0.9, 0.1, 0.0]]
    rows_s = [[0.25, 0.75, 0.0], [0.5, 0.5, 0.0]]
    for a in range(2):
        for q in range(2):
            pt[0, a, q] = t(rows_t[(a + q) % 2])
            ps[0, a, q] = t(rows_s[(a + q) % 2])
    pt[0, :, 2] = t([0.1, 0.1, 0.8])  # padded query row: garbage
    ps[0, :, 2] = t([0.8, 0.1, 0.1])

    def kl(p, q):
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)

    k0 = kl(rows_t[0], rows_s[0])
    k1 = kl(rows_t[1], rows_s[1])
    # each head has one row of each kind -> sum over (2 heads x 2 real rows) = 2*(k0+k1), / (h=2 * 2 real tokens)
    ref = 2 * (k0 + k1) / 4
    mask = torch.tensor([[1, 1, 0]])
    val = L.attention_kl(ps, pt, mask)
    approx(val, ref)
    assert torch.isfinite(val)
    # unmasked reference form includes the padded row
    kpad = kl([0.1, 0.1, 0.8], [0.8, 0.1, 0.1])
    approx(L.attention_kl(ps, pt, None), (2 * (k0 + k1) + 2 * kpad) / 6)


def test_attention_kl_zero_at_match_with_zero_columns():
    scores = torch.randn(2, 3, 4, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    P = L.attention_probs_from_scores(scores, mask)
    v = L.attention_kl(P, P.clone(), mask)
    assert torch.isfinite(v) and abs(float(v)) < 1e-6


def test_attention_score_mse_hand():
    # B=1, h=1, L=2, token 1 padded -> key column 1 carries -10000 in both
    s = t([[[[1.0, -10000.0], [3.0, -10000.0]]]])
    tt = t([[[[0.0, -10000.0], [1.0, -10000.0]]]])
    # reference form: masked entries -> 0, MSE over 4 entries: (1 + 0 + 4 + 0)/4
    approx(L.attention_score_mse(s, tt), 5.0 / 4.0)
    # masked variant: only (q0, k0) is a real pair -> 1
    approx(L.attention_score_mse(s, tt, torch.tensor([[1, 0]])), 1.0)
    # h=2, second head's real pair is 1+2 = 3 vs 0 -> (1 + 9) / (2 heads * 1 pair)
    s2 = torch.cat([s, s + t([[[[2.0, 0.0], [0.0, 0.0]]]])], dim=1)
    t2 = torch.cat([tt, tt], dim=1)
    approx(L.attention_score_mse(s2, t2, torch.tensor([[1, 0]])), 5.0)


def test_value_relation_hand():
    # B=1, L=2, d=2, heads=2 -> d_k = 1
    v = t([[[1.0, 2.0], [3.0, 0.0]]])
    VR = L.value_relation(v, torch.tensor([[1, 1]]), heads=2)
    assert VR.shape == (1, 2, 2, 2)
    h0 = np.array([1.0, 3.0])
    np.testing.assert_allclose(VR[0, 0].numpy(), np_softmax(np.outer(h0, h0) / 1.0), rtol=1e-5)
    h1 = np.array([2.0, 0.0])
    np.testing.assert_allclose(VR[0, 1].numpy(), np_softmax(np.outer(h1, h1)), rtol=1e-5)
    VRm = L.value_relation(v, torch.tensor([[1, 0]]), heads=2)
    np.testing.assert_allclose(VRm[0, :, :, 1].numpy(), 0.0, atol=1e-7)
    with pytest.raises(KdlabError, match="divisible"):
        L.value_relation(v, None, heads=3)


def test_alp_hand():
    s = t([[1.0, 0.0]])
    ts = t([[[1.0, 0.0], [0.0, 1.0]]])  # N = 2
    alpha, f = L.alp_attention(s, ts)
    a = [math.e / (math.e + 1), 1 / (math.e + 1)]
    np.testing.assert_allclose(alpha.numpy(), [a], rtol=1e-6)
    np.testing.assert_allclose(f.numpy(), [a], rtol=1e-6)
    s2 = t([[0.0, 2.0]])
    total, alphas = L.alp_loss([s, s2], ts)
    assert alphas.shape == (2, 1, 2)
    # layer 1: mse((1,0), a) ; layer 2: eps=(0,2) -> alpha=(1,e^2)/(1+e^2), f = alpha
    b = [1 / (1 + math.e**2), math.e**2 / (1 + math.e**2)]
    ref = ((1 - a[0]) ** 2 + a[1] ** 2) / 2 + (b[0] ** 2 + (2 - b[1]) ** 2) / 2
    approx(total, ref)


# ----------------------------------------------------------------------------------------------- gradients, dtypes
def test_gradients_flow_to_student():
    torch.manual_seed(0)
    B, Lq, d, h, C = 2, 4, 6, 2, 3
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    cases = {
        "kd_kl": lambda s: L.kd_kl(s["z"], torch.randn(B, C), T=2.0),
        "kd_soft_ce": lambda s: L.kd_soft_ce(s["z"], torch.randn(B, C)),
        "kd_mse": lambda s: L.kd_mse(s["z"], torch.randn(B, C)),
        "hard_ce": lambda s: L.hard_ce(s["z"], torch.tensor([0, 2])),
        "hidden_mse": lambda s: L.hidden_mse(s["h"], torch.randn(B, Lq, d), mask),
        "hidden_cosine": lambda s: L.hidden_cosine(s["h"], torch.randn(B, Lq, d), mask),
        "feature_map_mse": lambda s: L.feature_map_mse(s["h"], torch.randn(B, Lq, d), mask),
        "cls_cosine": lambda s: L.cls_cosine(s["h"][:, 0], torch.randn(B, d)),
        "pkd_pt": lambda s: L.pkd_pt([s["h"][:, 0]], [torch.randn(B, d)]),
        "attention_kl": lambda s: L.attention_kl(
            L.attention_probs_from_scores(s["a"], mask),
            L.attention_probs_from_scores(torch.randn(B, h, Lq, Lq), mask), mask),
        "attention_score_mse": lambda s: L.attention_score_mse(s["a"], torch.randn(B, h, Lq, Lq), mask),
        "value_relation": lambda s: L.attention_kl(
            L.value_relation(s["h"], mask, h), L.value_relation(torch.randn(B, Lq, d), mask, h), mask),
        "alp_loss": lambda s: L.alp_loss([s["h"][:, 0]], torch.randn(B, 3, d))[0],
    }
    for name, fn in cases.items():
        s = {"z": torch.randn(B, C, requires_grad=True), "h": torch.randn(B, Lq, d, requires_grad=True),
             "a": torch.randn(B, h, Lq, Lq, requires_grad=True)}
        out = fn(s)
        assert out.dim() == 0 and out.dtype == torch.float32, name
        out.backward()
        grads = [x.grad for x in s.values() if x.grad is not None]
        assert grads, name
        assert all(torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_bf16_inputs_compute_in_float32():
    s = t(S_LOG).bfloat16()
    tt = t(T_LOG).bfloat16()
    out = L.kd_kl(s, tt, T=2.0)
    assert out.dtype == torch.float32
    ref = _kl_ref(s.float().tolist(), tt.float().tolist(), 2.0)
    approx(out, ref)
    assert L.hidden_mse(t(SH).bfloat16(), t(TH).bfloat16(), torch.tensor(MASK)).dtype == torch.float32


def test_mask_shape_error():
    with pytest.raises(KdlabError, match="mask"):
        L.hidden_mse(t(SH), t(TH), torch.ones(2, 4))


# ----------------------------------------------------------------------------------------------- properties
finite = st.floats(-20, 20, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (3, 4), elements=finite), arrays(np.float32, (3, 4), elements=finite),
       st.floats(0.5, 10.0))
def test_prop_kd_losses(zs, zt, T):
    s, tt = torch.from_numpy(zs), torch.from_numpy(zt)
    for fn in (lambda a, b: L.kd_kl(a, b, T=T), L.kd_mse):
        v = fn(s, tt)
        assert torch.isfinite(v) and float(v) >= -1e-5
        assert abs(float(fn(tt, tt))) < 1e-4
    assert float(L.kd_soft_ce(s, tt, T=T)) >= float(L.kd_kl(s, tt, T=T)) - 1e-3  # CE >= KL (entropy >= 0)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (2, 3, 4), elements=finite), arrays(np.float32, (2, 3, 4), elements=finite),
       st.lists(st.integers(1, 3), min_size=2, max_size=2))
def test_prop_hidden_losses(hs, ht, lengths):
    mask = torch.tensor([[1 if l < n else 0 for l in range(3)] for n in lengths])
    s, tt = torch.from_numpy(hs), torch.from_numpy(ht)
    # cosine of a zero vector is 0 (torch convention), so "zero at a match" needs non-degenerate vectors
    assume(bool((tt.norm(dim=-1) > 1e-3).all()))
    for fn in (L.hidden_mse, L.hidden_cosine, L.feature_map_mse):
        v = fn(s, tt, mask)
        assert torch.isfinite(v) and float(v) >= -1e-5
        assert abs(float(fn(tt, tt, mask))) < 1e-4


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (2, 2, 3, 3), elements=finite), arrays(np.float32, (2, 2, 3, 3), elements=finite),
       st.lists(st.integers(1, 3), min_size=2, max_size=2))
def test_prop_attention_losses(a_s, a_t, lengths):
    mask = torch.tensor([[1 if l < n else 0 for l in range(3)] for n in lengths])
    s, tt = torch.from_numpy(a_s), torch.from_numpy(a_t)
    ps = L.attention_probs_from_scores(s, mask)
    pt = L.attention_probs_from_scores(tt, mask)
    v = L.attention_kl(ps, pt, mask)
    assert torch.isfinite(v) and float(v) >= -1e-5
    assert abs(float(L.attention_kl(pt, pt, mask))) < 1e-5
    w = L.attention_score_mse(s, tt, mask)
    assert torch.isfinite(w) and float(w) >= 0
    assert float(L.attention_score_mse(s, s, mask)) == 0.0
