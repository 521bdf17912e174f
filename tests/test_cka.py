"""kdlab.analysis.cka against the official demo values and CKA's invariances."""

import numpy as np
import pytest

from kdlab.analysis import cka
from kdlab.errors import KdlabError


def demo_xy():
    np.random.seed(1337)
    X = np.random.randn(100, 10)
    Y = np.random.randn(100, 10) + X
    return X, Y


def test_reference_values():
    X, Y = demo_xy()
    assert cka.linear_cka(X, Y) == pytest.approx(0.55761, abs=1e-5)
    assert cka.linear_cka_debiased(X, Y) == pytest.approx(0.51346, abs=1e-5)


def test_feature_space_agrees_with_example_space():
    X, Y = demo_xy()
    gx, gy = cka.gram_linear(X), cka.gram_linear(Y)
    assert cka.cka_from_grams(gx, gy) == pytest.approx(cka.linear_cka(X, Y), abs=1e-10)
    assert cka.cka_from_grams(gx, gy, debiased=True) == pytest.approx(cka.linear_cka_debiased(X, Y), abs=1e-10)
    # explicit HSIC formula: tr(KHLH) / sqrt(tr(KHKH) tr(LHLH))
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    hsic = lambda K, L_: np.trace(K @ H @ L_ @ H)
    ref = hsic(gx, gy) / np.sqrt(hsic(gx, gx) * hsic(gy, gy))
    assert cka.linear_cka(X, Y) == pytest.approx(ref, abs=1e-10)


def test_self_similarity_and_invariances():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 8))
    Y = rng.standard_normal((50, 12)) + X @ rng.standard_normal((8, 12))
    for f in (cka.linear_cka, cka.linear_cka_debiased):
        assert f(X, X) == pytest.approx(1.0, abs=1e-10)
        base = f(X, Y)
        Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
        assert f(X, Y @ Q) == pytest.approx(base, abs=1e-10)  # orthogonal transform
        assert f(X, 7.5 * Y) == pytest.approx(base, abs=1e-10)  # isotropic scaling
        assert f(X, Y + 3.0) == pytest.approx(base, abs=1e-10)  # translation (centring)
        assert f(Y, X) == pytest.approx(base, abs=1e-10)  # symmetric
    # not invariant to a general invertible linear map
    A = np.diag(np.r_[np.ones(11), 50.0])
    assert abs(cka.linear_cka(X, Y @ A) - cka.linear_cka(X, Y)) > 1e-3


def test_cka_matrix():
    rng = np.random.default_rng(1)
    teacher = [rng.standard_normal((40, 6)) for _ in range(4)]  # N + 1 = 4
    student = [teacher[0] + 0.1 * rng.standard_normal((40, 6)), rng.standard_normal((40, 3)), teacher[3] * 2]
    for debiased, f in ((False, cka.linear_cka), (True, cka.linear_cka_debiased)):
        Mtx = cka.cka_matrix(teacher, student, debiased=debiased)
        assert Mtx.shape == (4, 3) and Mtx.dtype == np.float64
        for i in range(4):
            for j in range(3):
                assert Mtx[i, j] == pytest.approx(f(teacher[i], student[j]), abs=1e-12)
        assert Mtx[3, 2] == pytest.approx(1.0, abs=1e-10)
    selfm = cka.cka_matrix(teacher, teacher)
    np.testing.assert_allclose(np.diag(selfm), 1.0, atol=1e-10)
    np.testing.assert_allclose(selfm, selfm.T, atol=1e-12)


def test_errors():
    with pytest.raises(KdlabError, match="same examples"):
        cka.linear_cka(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(KdlabError, match="2-D"):
        cka.linear_cka(np.zeros((5, 2, 2)), np.zeros((5, 2)))
    with pytest.raises(KdlabError, match="at least 4"):
        cka.linear_cka_debiased(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(KdlabError, match="examples"):
        cka.cka_matrix([np.zeros((5, 2))], [np.zeros((4, 2))])
