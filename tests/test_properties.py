"""Property-based tests (hypothesis) for kdlab.kd.losses: finite, non-negative where they must be, and zero at
a perfect match."""
import torch
from hypothesis import given, settings, strategies as st

from kdlab.kd import losses

SET = settings(max_examples=25, deadline=None)
dims = st.tuples(st.integers(1, 4), st.integers(2, 5))
seeds = st.integers(0, 10_000)
scales = st.floats(0.01, 50.0)


def _t(seed, *shape, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def _mask(seed, B, L):
    g = torch.Generator().manual_seed(seed + 1)
    m = (torch.rand(B, L, generator=g) > 0.4).long()
    m[:, 0] = 1
    return m


@SET
@given(dims, seeds, scales, st.floats(0.5, 20.0))
def test_kd_kl_nonnegative_finite_zero_at_match(bc, seed, scale, T):
    B, C = bc
    s, t = _t(seed, B, C, scale=scale), _t(seed + 7, B, C, scale=scale)
    v = losses.kd_kl(s, t, T)
    assert torch.isfinite(v) and v >= -1e-6
    assert abs(float(losses.kd_kl(t, t, T))) < 1e-5 * T * T


@SET
@given(dims, seeds, scales)
def test_kd_mse_nonnegative_zero_at_match(bc, seed, scale):
    B, C = bc
    s, t = _t(seed, B, C, scale=scale), _t(seed + 3, B, C, scale=scale)
    assert losses.kd_mse(s, t) >= 0 and torch.isfinite(losses.kd_mse(s, t))
    assert float(losses.kd_mse(t, t)) == 0.0


@SET
@given(dims, seeds, scales, st.floats(0.5, 10.0))
def test_soft_ce_at_least_teacher_entropy(bc, seed, scale, T):
    """Soft CE = T^2 (H(p) + KL(p||q)) >= T^2 H(p), with equality at a perfect match."""
    B, C = bc
    s, t = _t(seed, B, C, scale=scale), _t(seed + 5, B, C, scale=scale)
    v = losses.kd_soft_ce(s, t, T)
    at_match = losses.kd_soft_ce(t, t, T)
    assert torch.isfinite(v)
    assert float(v) >= float(at_match) - 1e-4 * max(1.0, float(at_match))


@SET
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 8), seeds, scales)
def test_hidden_losses(B, L, d, seed, scale):
    s, t, m = _t(seed, B, L, d, scale=scale), _t(seed + 2, B, L, d, scale=scale), _mask(seed, B, L)
    for fn in (losses.hidden_mse, losses.hidden_cosine):
        v = fn(s, t, m)
        assert torch.isfinite(v) and v >= -1e-6
        assert abs(float(fn(t, t, m))) < 1e-5
    # garbage in padded positions does not change the value
    s2 = s.clone()
    s2[m == 0] = float("nan")
    assert torch.allclose(losses.hidden_mse(s2, t, m), losses.hidden_mse(s, t, m), equal_nan=False)


@SET
@given(st.integers(1, 4), st.integers(2, 8), seeds, scales, st.booleans())
def test_cls_cosine(B, d, seed, scale, squared):
    s, t = _t(seed, B, d, scale=scale), _t(seed + 9, B, d, scale=scale)
    v = losses.cls_cosine(s, t, squared=squared)
    assert torch.isfinite(v) and -1e-6 <= float(v) <= 4 + 1e-5
    assert abs(float(losses.cls_cosine(t, t, squared=squared))) < 1e-5


@SET
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), seeds)
def test_attention_kl(B, h, L, seed):
    m = _mask(seed, B, L)
    tp = losses.attention_probs_from_scores(_t(seed, B, h, L, L, scale=3.0), m)
    sp = losses.attention_probs_from_scores(_t(seed + 4, B, h, L, L, scale=3.0), m)
    v = losses.attention_kl(sp, tp, m)
    assert torch.isfinite(v) and v >= -1e-6
    assert abs(float(losses.attention_kl(tp, tp, m))) < 1e-5


@SET
@given(dims, seeds, scales)
def test_hard_ce_nonnegative(bc, seed, scale):
    B, C = bc
    z = _t(seed, B, C, scale=scale)
    y = torch.randint(0, C, (B,), generator=torch.Generator().manual_seed(seed))
    v = losses.hard_ce(z, y)
    assert torch.isfinite(v) and v >= 0
