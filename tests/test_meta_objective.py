"""Task families, the MAML objective (Eq. 4), its exact gradient, Definition 1, the
cost-gap ratio and meta-learnability checks."""

import math

import numpy as np
import pytest

import metalqr
from helpers import rel


def _fd_grad(f, K, h):
    g = np.zeros_like(K)
    for idx in np.ndindex(K.shape):
        E = np.zeros_like(K)
        E[idx] = h
        g[idx] = (f(K + E) - f(K - E)) / (2 * h)
    return g


def test_sample_tasks_properties():
    ts, nominal = metalqr.sample_tasks(6, 4, 2, rng=3, return_nominal=True)
    assert len(ts) == 6 and (ts.d, ts.k) == (4, 2)
    assert np.all(metalqr.spectral_radius(ts, np.zeros((2, 4))) <= 0.7 + 1e-12)
    for name in ("Q", "R", "Psi"):
        M = getattr(ts, name)
        assert np.allclose(M, np.swapaxes(M, -1, -2))
        assert np.min(np.linalg.eigvalsh(M)) >= 0.1 - 1e-12
    again = metalqr.sample_tasks(6, 4, 2, rng=3)
    assert all(a == b for a, b in zip(ts, again))
    same = metalqr.sample_tasks(3, 4, 2, heterogeneity=0.0, rng=3, return_nominal=True)
    assert all(t == same[1] for t in same[0])
    with pytest.raises(metalqr.ValidationError, match="max_spectral_radius"):
        metalqr.sample_tasks(2, 2, 1, max_spectral_radius=1.5)


def test_perturb_tasks_around_boeing():
    nominal = metalqr.boeing747()
    ts = metalqr.perturb_tasks(nominal, 5, heterogeneity=1e-4, rng=0, perturb=("A", "B", "Q"))
    assert len(ts) == 5
    assert np.max(np.abs(ts.A - nominal.A)) < 0.1 and not np.allclose(ts.A, nominal.A)
    assert np.all(np.linalg.eigvalsh(ts.Q) > 0)
    K = metalqr.common_stabilizing_gain(ts)
    assert np.all(metalqr.is_stabilizing(ts, K))
    with pytest.raises(metalqr.ValidationError, match="perturb"):
        metalqr.perturb_tasks(nominal, 2, perturb=("C",))


@pytest.mark.parametrize("d, k", [(1, 1), (2, 2), (5, 3)])
def test_maml_gradient_matches_finite_differences(d, k):
    ts = metalqr.sample_tasks(4, d, k, rng=d)
    K = 0.01 * np.random.default_rng(d).standard_normal((k, d))
    for eta in (1e-4, 1e-3):
        assert metalqr.is_maml_stabilizing(ts, K, eta)
        g = metalqr.maml_gradient(ts, K, eta)
        fd = _fd_grad(lambda Z: metalqr.maml_objective(ts, Z, eta), K, 1e-6)
        assert rel(g, fd) < 1e-5
    w = np.arange(1.0, 5.0)
    g = metalqr.maml_gradient(ts, K, 1e-3, weights=w)
    fd = _fd_grad(lambda Z: metalqr.maml_objective(ts, Z, 1e-3, weights=w), K, 1e-6)
    assert rel(g, fd) < 1e-5


def test_eta_zero_reduces_to_mean_gradient_and_first_order_definition():
    ts = metalqr.sample_tasks(3, 3, 2, rng=1)
    K = np.zeros((2, 3))
    assert rel(metalqr.maml_gradient(ts, K, 0.0), metalqr.gradient(ts, K).mean(axis=0)) < 1e-14
    assert metalqr.maml_objective(ts, K, 0.0) == pytest.approx(np.mean(metalqr.cost(ts, K)))
    eta = 1e-3
    Kad = metalqr.adapted_gains(ts, K, eta)
    assert rel(Kad, K - eta * metalqr.gradient(ts, K)) < 1e-14
    fo = np.mean([metalqr.gradient(t, Kad[i]) for i, t in enumerate(ts)], axis=0)
    assert rel(metalqr.first_order_maml_gradient(ts, K, eta), fo) < 1e-12


def test_definition1_and_infinite_objective():
    ts = metalqr.sample_tasks(3, 2, 2, rng=0)
    K = np.zeros((2, 2))
    assert metalqr.is_maml_stabilizing(ts, K, 1e-4)
    big_eta = 1.0
    assert not metalqr.is_maml_stabilizing(ts, K, big_eta)
    assert metalqr.maml_objective(ts, K, big_eta) == math.inf
    with pytest.raises(metalqr.NotMAMLStabilizingError, match="eta"):
        metalqr.maml_gradient(ts, K, big_eta)
    unstable = 50 * np.ones((2, 2))
    assert not metalqr.is_maml_stabilizing(ts, unstable, 1e-4)
    with pytest.raises(metalqr.NotMAMLStabilizingError, match="task"):
        metalqr.maml_gradient(ts, unstable, 1e-4)


def test_cost_gap_ratio():
    ts = metalqr.sample_tasks(4, 3, 1, rng=2)
    J_star = metalqr.optimal_costs(ts)
    K = np.zeros((1, 3))
    expected = (metalqr.cost(ts, K).sum() - J_star.sum()) / J_star.sum()
    assert metalqr.cost_gap_ratio(ts, K) == pytest.approx(expected)
    assert metalqr.cost_gap_ratio(ts, K, J_star) == pytest.approx(expected)
    K1, _ = metalqr.optimal_gain(ts[0])
    assert metalqr.cost_gap_ratio(ts[:1], K1) == pytest.approx(0.0, abs=1e-12)
    assert metalqr.cost_gap_ratio(ts, 100 * np.ones((1, 3))) == math.inf


def test_paper_scalar_pair_is_not_meta_learnable():
    pair = metalqr.TaskSet([metalqr.LQRTask([[3.0]], [[4.0]], [[1.0]], [[1.0]]),
                            metalqr.LQRTask([[1.0]], [[-1.0]], [[1.0]], [[1.0]])])
    with pytest.raises(metalqr.NotMetaLearnableError, match=r"\(0.5, 1\).*\(-2, -?0\)"):
        metalqr.check_meta_learnable(pair)
    with pytest.raises(metalqr.NotMetaLearnableError):
        metalqr.meta_policy_optimization(pair, [[0.7]], alpha=1e-3, eta=1e-5, n_iterations=1,
                                         gradient="exact", progress=False)
    unreachable = metalqr.TaskSet([metalqr.LQRTask(np.diag([0.5, 2.0]), [[1.0], [0.0]], np.eye(2),
                                                   [[1.0]])])
    with pytest.raises(metalqr.NotMetaLearnableError, match="not stabilisable"):
        metalqr.check_meta_learnable(unreachable)
    ok = metalqr.TaskSet([metalqr.LQRTask([[3.0]], [[4.0]], [[1.0]], [[1.0]]),
                          metalqr.LQRTask([[1.0]], [[1.5]], [[1.0]], [[1.0]])])
    K = metalqr.common_stabilizing_gain(ok)
    assert np.all(metalqr.is_stabilizing(ok, K))


# --- issue 13, part B: the PBH test per eigenspace ----------------------------------------

from hypothesis import given, strategies as st  # noqa: E402

from metalqr.meta.objective import unstabilisable_mode  # noqa: E402


def test_repeated_eigenvalue_with_partial_input_is_not_stabilisable():
    """Issue 13 B 3: A = 2I, B = [1, 1]', Q = I, R = 1 with a stable second task. rank
    [A - 2I, B] = 1 < 2 and w = [1, -1]/sqrt(2) has w'B = 0: NotMetaLearnableError naming
    task 0 (the old per-eigenvector test said nothing)."""
    bad = metalqr.LQRTask(2.0 * np.eye(2), [[1.0], [1.0]], np.eye(2), [[1.0]])
    good = metalqr.LQRTask(0.5 * np.eye(2), [[1.0], [0.0]], np.eye(2), [[1.0]])
    ts = metalqr.TaskSet([bad, good])
    err = pytest.raises(metalqr.NotMetaLearnableError, metalqr.check_meta_learnable, ts).value
    msg = str(err)
    assert "task 0" in msg and "rank [A - lambda I, B] = 1 < d = 2" in msg and "eigenvalue 2" in msg
    lam, rank, w = unstabilisable_mode(bad.A, bad.B)
    assert lam == pytest.approx(2.0) and rank == 1
    assert abs(abs(w[0]) - 2**-0.5) < 1e-12 and w[0] == pytest.approx(-w[1])
    assert np.linalg.norm(w @ bad.B) < 1e-12
    with pytest.raises(metalqr.NotMetaLearnableError, match="task 0"):
        metalqr.common_stabilizing_gain(ts)
    with pytest.raises(metalqr.NotMetaLearnableError, match="task 0"):
        metalqr.meta_policy_optimization(ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5,
                                         n_iterations=1, gradient="exact", progress=False)
    with pytest.raises(metalqr.NotMetaLearnableError, match="task 1"):
        metalqr.check_meta_learnable(metalqr.TaskSet([good, bad]))
    # Two independent inputs reach the whole eigenspace: stabilisable.
    full = metalqr.LQRTask(2.0 * np.eye(2), np.eye(2), np.eye(2), np.eye(2))
    metalqr.check_meta_learnable(full)
    assert metalqr.is_stabilizing(full, metalqr.optimal_gain(full)[0])


def _similar(rng, M):
    T = rng.standard_normal(M.shape) + 2 * np.eye(M.shape[0])
    return T, np.linalg.inv(T)


def test_defective_and_complex_unstable_modes(rng):
    """A 3x3 Jordan block at 1.5 hidden by a similarity transform (computed eigenvalues spread
    ~1e-5): B at the chain's end reaches it (stabilisable; the DARE agrees), B at its start
    does not; a rotating unstable pair (|lambda| = 1.2) unreachable by B; a repeated
    eigenvalue 2 of multiplicity 3 with a rank-2 B."""
    J = np.array([[1.5, 1.0, 0.0], [0.0, 1.5, 1.0], [0.0, 0.0, 1.5]])
    T, Ti = _similar(rng, J)
    A = T @ J @ Ti
    assert np.ptp(np.abs(np.linalg.eigvals(A))) > 1e-8           # numerically split
    reach = T @ np.array([[0.0], [0.0], [1.0]])
    assert unstabilisable_mode(A, reach) is None
    assert np.all(np.isfinite(metalqr.optimal_gain(metalqr.LQRTask(A, reach, np.eye(3), [[1.0]]))[0]))
    miss = T @ np.array([[1.0], [0.0], [0.0]])
    lam, rank, w = unstabilisable_mode(A, miss)
    assert lam == pytest.approx(1.5, abs=1e-4) and rank == 2
    c, s = 1.2 * np.cos(0.7), 1.2 * np.sin(0.7)
    A2 = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 0.5]])
    lam, rank, w = unstabilisable_mode(A2, np.array([[0.0], [0.0], [1.0]]))
    assert abs(lam) == pytest.approx(1.2) and abs(lam.imag) > 0.5 and rank == 2
    assert unstabilisable_mode(A2, np.array([[1.0], [0.0], [0.0]])) is None
    lam, rank, _ = unstabilisable_mode(2.0 * np.eye(3), rng.standard_normal((3, 2)))
    assert lam == pytest.approx(2.0) and rank == 2


@given(st.integers(0, 10_000), st.integers(2, 5), st.integers(1, 3), st.booleans())
def test_pbh_agrees_with_the_riccati_equation(seed, d, k, hide):
    """Random systems with a repeated unstable eigenvalue: when a mode is hidden from B (B in
    an invariant complement) the test finds it; otherwise the DARE has a stabilising
    solution and the test passes."""
    rng = np.random.default_rng(seed)
    k = min(k, d - 1) if hide else k
    # d - m copies of the unstable eigenvalue 1.7; hidden: B reaches only the other m modes.
    m = int(rng.integers(1, d)) if hide else int(rng.integers(max(0, d - k), d))
    D = np.concatenate([np.full(d - m, 1.7), rng.uniform(-1.5, 1.5, m)])
    T, Ti = _similar(rng, np.eye(d))
    A = T @ np.diag(D) @ Ti
    Bz = np.zeros((d, k))
    Bz[d - m:] = rng.standard_normal((m, k))
    if not hide:                                        # B reaches the whole eigenspace
        Bz = rng.standard_normal((d, k))
        Bz[: d - m, : d - m] += 3.0 * np.eye(d - m)
    B = T @ Bz
    found = unstabilisable_mode(A, B)
    if hide:
        assert found is not None and abs(found[0]) >= 1.0 - 1e-6
    else:
        assert found is None
        K = metalqr.optimal_gain(metalqr.LQRTask(A, B, np.eye(d), np.eye(k)))[0]
        assert np.max(np.abs(np.linalg.eigvals(A - B @ K))) < 1.0
