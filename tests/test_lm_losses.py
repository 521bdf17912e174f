"""The LM objectives against numpy/scipy on tiny tensors, masks and the JSD beta endpoints included."""
import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr, softmax

from kdlab.errors import KdlabError
from kdlab.kd.lm import forward_kl, generalized_jsd, reverse_kl, token_ce, tvd

S = np.array([[[1.0, 0.0, -1.0, 0.5], [0.2, 0.3, 2.0, -0.4], [3.0, 0.0, 0.0, 0.0]],
              [[-1.0, 2.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0], [1.5, -2.0, 0.3, 0.7]]])
T_ = np.array([[[0.5, 0.5, 0.0, -2.0], [1.0, -1.0, 0.0, 0.0], [0.0, 2.0, 1.0, 0.0]],
               [[2.0, 0.0, 0.0, 1.0], [-0.5, 1.5, 0.0, 0.2], [0.0, 0.0, 3.0, -1.0]]])
MASK = np.array([[1, 1, 0], [0, 1, 1]])   # padding / prompt positions are 0


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def _mean(fn, T=1.0, mask=MASK):
    p, q = softmax(T_ / T, -1), softmax(S / T, -1)
    per = np.array([[fn(p[i, j], q[i, j]) for j in range(3)] for i in range(2)])
    return (per * mask).sum() / mask.sum()


def _kl(a, b):
    return rel_entr(a, b).sum()


def _jsd_np(beta):
    def f(p, q):
        m = beta * p + (1 - beta) * q
        return beta * _kl(p, m) + (1 - beta) * _kl(q, m)
    return f


@pytest.mark.parametrize("chunk", [1, 2, 1024])
def test_forward_kl_with_t_squared_and_mask(chunk):
    for T in (1.0, 2.0):
        got = forward_kl(_t(S), _t(T_), _t(MASK), temperature=T, chunk=chunk).item()
        assert got == pytest.approx(_mean(_kl, T) * T * T, rel=1e-9)
    # the masked positions do not count: changing them changes nothing
    S2 = S.copy()
    S2[0, 2] = [9.0, -9.0, 0.0, 0.0]
    assert forward_kl(_t(S2), _t(T_), _t(MASK)).item() == pytest.approx(_mean(_kl), rel=1e-9)


def test_reverse_kl_and_unmasked_mean():
    got = reverse_kl(_t(S), _t(T_), _t(MASK), temperature=2.0).item()
    assert got == pytest.approx(_mean(lambda p, q: _kl(q, p), 2.0) * 4, rel=1e-9)
    assert reverse_kl(_t(S), _t(T_)).item() == pytest.approx(_mean(lambda p, q: _kl(q, p), mask=np.ones((2, 3))),
                                                              rel=1e-9)
    assert forward_kl(_t(S), _t(T_)).item() != pytest.approx(reverse_kl(_t(S), _t(T_)).item(), rel=1e-3)


def test_jsd_matches_scipy_at_half_and_numpy_elsewhere():
    got = generalized_jsd(_t(S), _t(T_), _t(MASK), beta=0.5).item()
    assert got == pytest.approx(_mean(lambda p, q: jensenshannon(p, q) ** 2), rel=1e-7)
    for beta in (0.1, 0.9):
        got = generalized_jsd(_t(S), _t(T_), _t(MASK), beta=beta, chunk=1).item()
        assert got == pytest.approx(_mean(_jsd_np(beta)), rel=1e-9)


def test_jsd_endpoints_are_forward_and_reverse_kl():
    s, t, m = _t(S), _t(T_), _t(MASK)
    assert generalized_jsd(s, t, m, beta=0.0).item() == pytest.approx(forward_kl(s, t, m).item(), rel=1e-12)
    assert generalized_jsd(s, t, m, beta=1.0).item() == pytest.approx(reverse_kl(s, t, m).item(), rel=1e-12)
    eps = 1e-5   # and they are the limits of JSD(beta)/beta and JSD(beta)/(1-beta)
    assert generalized_jsd(s, t, m, beta=eps).item() / eps == pytest.approx(forward_kl(s, t, m).item(), rel=1e-3)
    assert generalized_jsd(s, t, m, beta=1 - eps).item() / eps == pytest.approx(reverse_kl(s, t, m).item(), rel=1e-3)


def test_tvd():
    got = tvd(_t(S), _t(T_), _t(MASK)).item()
    assert got == pytest.approx(_mean(lambda p, q: 0.5 * np.abs(p - q).sum()), rel=1e-9)
    assert tvd(_t(S), _t(S)).item() == pytest.approx(0.0, abs=1e-12)


def test_gradients_through_chunks_equal_one_chunk():
    grads = []
    for chunk in (1, 100):
        s = _t(S).requires_grad_(True)
        generalized_jsd(s, _t(T_), _t(MASK), beta=0.3, chunk=chunk).backward()
        grads.append(s.grad.clone())
    assert torch.allclose(grads[0], grads[1])
    assert grads[0][0, 2].abs().sum() == 0   # a masked position gets no gradient


def test_all_masked_is_zero_and_ce():
    assert forward_kl(_t(S), _t(T_), _t(np.zeros((2, 3)))).item() == 0.0
    targets = torch.tensor([[0, 2, 1], [1, 3, 2]])
    logp = S - np.log(np.exp(S).sum(-1, keepdims=True))
    want = -np.array([[logp[i, j, targets[i, j]] for j in range(3)] for i in range(2)])
    assert token_ce(_t(S), targets, _t(MASK)).item() == pytest.approx((want * MASK).sum() / MASK.sum(), rel=1e-9)


def test_bad_input_one_line():
    with pytest.raises(KdlabError, match="seq-kd"):
        forward_kl(torch.zeros(1, 2, 5), torch.zeros(1, 2, 7))
    with pytest.raises(KdlabError, match="beta"):
        generalized_jsd(_t(S), _t(T_), beta=1.5)
    with pytest.raises(KdlabError, match="temperature"):
        forward_kl(_t(S), _t(T_), temperature=0)


def test_zero_teacher_probability_contributes_nothing():
    t = torch.tensor([[0.0, float("-inf"), -1.0]], dtype=torch.float64)   # the middle token impossible
    s = torch.tensor([[0.5, 0.2, -0.3]], dtype=torch.float64, requires_grad=True)
    p, q = softmax(np.array([0.0, -np.inf, -1.0])), softmax(np.array([0.5, 0.2, -0.3]))
    got = forward_kl(s, t)
    assert got.item() == pytest.approx(rel_entr(p, q).sum(), rel=1e-12)
    got.backward()
    assert torch.isfinite(s.grad).all()
