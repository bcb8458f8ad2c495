"""dlyap against SciPy, residual accuracy near the stability boundary, batching, errors."""

import numpy as np
import pytest
import scipy.linalg

import metalqr
from helpers import random_spd, rel


def _scaled(rng, d, rho):
    A = rng.standard_normal((d, d))
    return A * rho / np.max(np.abs(np.linalg.eigvals(A)))


@pytest.mark.parametrize("d", [1, 2, 3, 5, 6, 7, 10, 20, 35])
def test_matches_scipy(rng, d):
    for rho in (0.2, 0.9):
        A = _scaled(rng, d, rho)
        W = random_spd(rng, d)
        X = metalqr.dlyap(A, W)
        ref = scipy.linalg.solve_discrete_lyapunov(A, W)
        # SciPy itself is accurate to ~cond * eps; 1e-9 leaves room for both.
        assert rel(X, ref) < 1e-9
        assert np.allclose(X, X.T, rtol=0, atol=0)


@pytest.mark.parametrize("d", [2, 6, 8, 20, 50])
@pytest.mark.parametrize("rho", [0.99, 0.999])
def test_residual_near_unit_spectral_radius(rng, d, rho):
    A = _scaled(rng, d, rho)
    W = random_spd(rng, d)
    X = metalqr.dlyap(A, W)
    assert np.linalg.norm(X - A @ X @ A.T - W) / np.linalg.norm(X) < 1e-10


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_nonnormal_and_nonsymmetric_rhs(rng):
    # Non-normal A (transient growth ~1e5) and a non-symmetric W. SciPy's default bilinear
    # method loses accuracy on such matrices, so compare with its Kronecker ("direct") one.
    d = 10
    A = np.diag(np.full(d, 0.9)) + np.diag(np.full(d - 1, 1.5), 1)
    W = rng.standard_normal((d, d))
    X = metalqr.dlyap(A, W)
    assert np.linalg.norm(X - A @ X @ A.T - W) / np.linalg.norm(X) < 1e-10
    assert rel(X, scipy.linalg.solve_discrete_lyapunov(A, W, method="direct")) < 1e-8


def test_batched_with_broadcasting(rng):
    A = np.stack([_scaled(rng, 4, r) for r in (0.1, 0.5, 0.95)])
    W = random_spd(rng, 4)
    X = metalqr.dlyap(A[None], np.stack([W, 2 * W])[:, None])
    assert X.shape == (2, 3, 4, 4)
    for j in range(2):
        for i in range(3):
            assert rel(X[j, i], scipy.linalg.solve_discrete_lyapunov(A[i], (j + 1) * W)) < 1e-10


@pytest.mark.parametrize("rho", [1.0, 1.3])
def test_unstable_raises_with_spectral_radius(rng, rho):
    A = np.stack([_scaled(rng, 3, 0.5), _scaled(rng, 3, rho)])
    with pytest.raises(metalqr.UnstablePolicyError, match="spectral radius") as info:
        metalqr.dlyap(A, np.eye(3))
    assert info.value.task_index == 1
    assert info.value.spectral_radius == pytest.approx(rho)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("A, W, word", [
    (np.ones((2, 3)), np.eye(2), "A"),
    (np.eye(2) * 0.5, np.eye(3), "same d"),
    (np.array([[np.nan]]), np.eye(1), "A"),
    (np.eye(2) * 0.5, np.array([[1.0, np.inf], [0.0, 1.0]]), "W"),
    (np.zeros((2, 2, 2)), np.zeros((3, 2, 2)), "broadcast"),
])
def test_bad_input(A, W, word):
    with pytest.raises(metalqr.ValidationError, match=word):
        metalqr.dlyap(A, W)
