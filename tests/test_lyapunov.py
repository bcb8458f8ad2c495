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



@pytest.mark.parametrize("d", [2, 8])
def test_overflowing_solution_is_refused_not_returned_as_nan(d):
    # X[0, 0] = sum_t a^{2t} * (1e160)^2 ~ 1e320 / (1 - a^2) overflows float64: before, dlyap
    # returned an all-NaN matrix (d = 2) with a RuntimeWarning, and for d = 8 (doubling) a
    # truncated sum; now a named error
    A = np.diag(np.full(d, 0.5))
    A[0, 0] = 0.999999
    A[0, 1] = 1e160
    stable = 0.5 * np.eye(d)
    with pytest.raises(metalqr.ValidationError,
                       match=r"W \(batch index \(1,\)\) could be computed.*exceeds the float64 range"):
        metalqr.dlyap(np.stack([stable, A]), np.eye(d))
    with pytest.raises(metalqr.ValidationError, match="balance it by a diagonal similarity"):
        metalqr.dlyap(A, np.eye(d))
    # entries of 1e100: X ~ 2e206 is representable; for d = 8 the doubling's powers are not
    # (before: a truncated sum, X[1, 1] = 1.25 instead of 4/3, returned silently; then a named
    # error; now solved after balancing and verified). Reference: A = D Ab D^-1 with
    # D = diag(1e100, 1, ...), so X = D Y D with Y = Ab Y Ab' + D^-1 D^-1 (well scaled, SciPy).
    A[0, 1] = 1e100
    X = metalqr.dlyap(A, np.eye(d))
    assert X[1, 1] == pytest.approx(1.0 / (1.0 - 0.25))
    Dv = np.ones(d)
    Dv[0] = 1e100
    Ab = A / Dv[:, None] * Dv[None, :]
    Y = scipy.linalg.solve_discrete_lyapunov(Ab, np.diag(1.0 / Dv ** 2))
    assert np.allclose(X / (Dv[:, None] * Dv[None, :]), Y, rtol=1e-8, atol=0)
    # moderately scaled: every path agrees with SciPy
    A[0, 1] = 1e3
    X = metalqr.dlyap(A, np.eye(d))
    assert rel(X, scipy.linalg.solve_discrete_lyapunov(A, np.eye(d))) < 1e-8

# --- issue 15: cheaper stability test for d = 2 and the kernel choice -------------------------

from hypothesis import given, strategies as st  # noqa: E402

from metalqr.lqr import lyapunov as _ly  # noqa: E402


@given(st.integers(0, 10_000), st.sampled_from([0.3, 0.9, 1 - 1e-6, 1 + 1e-6, 1.5]))
def test_schur_cohn_2x2_agrees_with_eigenvalues(seed, target):
    """rho(A) < 1 by the Schur-Cohn test equals the eigenvalue test away from the boundary
    (|rho - 1| > 1e-9), for matrices scaled to rho = target."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((64, 2, 2))
    A *= (target / np.max(np.abs(np.linalg.eigvals(A)), axis=-1))[:, None, None]
    rho = np.max(np.abs(np.linalg.eigvals(A)), axis=-1)
    clear = np.abs(rho - 1.0) > 1e-9
    np.testing.assert_array_equal(_ly._schur_stable_2x2(A)[clear], (rho < 1.0)[clear])


def test_schur_cohn_2x2_boundary_cases():
    c, s = np.cos(0.3), np.sin(0.3)
    cases = {"diag(1, .5)": ([[1.0, 0.0], [0.0, 0.5]], False),
             "diag(-1, .5)": ([[-1.0, 0.0], [0.0, 0.5]], False),
             "rotation": ([[c, -s], [s, c]], False),
             "shrunk rotation": ([[0.999 * c, -0.999 * s], [0.999 * s, 0.999 * c]], True),
             "jordan 0.999": ([[0.999, 1e3], [0.0, 0.999]], True),
             "jordan 1": ([[1.0, 1e-3], [0.0, 1.0]], False),
             "nan": ([[np.nan, 0.0], [0.0, 0.5]], False),
             "inf": ([[np.inf, 0.0], [0.0, 0.5]], False)}
    for name, (A, want) in cases.items():
        assert bool(_ly._schur_stable_2x2(np.array([A]))[0]) is want, name
        if np.all(np.isfinite(A)):
            stable, P, _ = _ly.lyapunov_pair_one(np.array(A), np.eye(2))
            assert stable is want, name


@pytest.mark.parametrize("d", [3, 4, 6])
def test_batched_small_d_kernel_choice_does_not_change_results(rng, d, monkeypatch):
    """Batches with n d^4 >= KRON_BATCH_WORK take the doubling kernel: the same P and Sigma
    as the Kronecker kernel (to 1e-12) and as SciPy, and the same stability flags."""
    n = 160
    A = rng.standard_normal((n, d, d))
    A *= (rng.uniform(0.2, 0.99, n) / np.max(np.abs(np.linalg.eigvals(A)), axis=-1))[:, None, None]
    A[0] *= 1.2 / np.max(np.abs(np.linalg.eigvals(A[0])))             # rho(A0) = 1.2
    W = np.stack([random_spd(rng, d) for _ in range(n)])
    calls = []
    kron = _ly._lyapunov_pair_kron
    monkeypatch.setattr(_ly, "_lyapunov_pair_kron", lambda *a: calls.append(1) or kron(*a))
    s1, XT1, X1 = _ly.lyapunov_pair(A, W, W)
    assert not calls                                      # the doubling kernel ran
    monkeypatch.setattr(_ly, "KRON_BATCH_WORK", float("inf"))
    s2, XT2, X2 = _ly.lyapunov_pair(A, W, W)
    assert calls
    np.testing.assert_array_equal(s1, s2)
    assert not s1[0] and s1[1:].all()
    np.testing.assert_allclose(XT1, XT2, rtol=1e-11, atol=1e-12 * np.abs(XT2).max())
    np.testing.assert_allclose(X1, X2, rtol=1e-11, atol=1e-12 * np.abs(X2).max())
    i = 5
    np.testing.assert_allclose(XT1[i], scipy.linalg.solve_discrete_lyapunov(A[i].T, W[i]),
                               rtol=1e-10)


def test_compiled_2x2_pair_matches_the_numpy_kernel(rng, monkeypatch):
    """Batches of d = 2 with n >= NUMBA_MIN_BATCH take the compiled kernel (one LU, two
    triangular solves): the same stability flags (unstable members zeroed), residuals as small
    as the NumPy kernel's, and SciPy's solutions; rho up to 0.9999 and beyond 1."""
    n = 300
    A = rng.standard_normal((n, 2, 2))
    A *= (rng.uniform(0.05, 1.2, n) / np.max(np.abs(np.linalg.eigvals(A)), axis=-1))[:, None, None]
    A[:3] = [[[1.0, 0.0], [0.0, 0.5]], [[0.9999, 5.0], [0.0, 0.9999]], [[0.0, 0.0], [0.0, 0.0]]]
    W = np.stack([random_spd(rng, 2) for _ in range(n)])
    WT = np.stack([random_spd(rng, 2) for _ in range(n)])
    calls = []
    kernel = _ly._numba_pair()
    assert kernel is not None
    monkeypatch.setattr(_ly, "_numba_pair", lambda: calls.append(1) or kernel)
    s1, XT1, X1 = _ly.lyapunov_pair(A, WT, W)
    assert calls
    monkeypatch.setattr(_ly, "NUMBA_MIN_BATCH", 10 ** 9)
    s2, XT2, X2 = _ly.lyapunov_pair(A, WT, W)
    np.testing.assert_array_equal(s1, s2)
    assert not s1[0] and s1[1] and s1[2] and 0 < s1.sum() < n
    assert np.all(XT1[~s1] == 0) and np.all(X1[~s1] == 0)
    At = np.swapaxes(A, -1, -2)

    def residuals(XT, X):
        XT, X, B, Bt = XT[s1], X[s1], A[s1], At[s1]
        r1 = np.linalg.norm(Bt @ XT @ B + WT[s1] - XT, axis=(1, 2)) / np.linalg.norm(XT, axis=(1, 2))
        r2 = np.linalg.norm(B @ X @ Bt + W[s1] - X, axis=(1, 2)) / np.linalg.norm(X, axis=(1, 2))
        return np.maximum(r1, r2)

    assert residuals(XT1, X1).max() <= 4 * residuals(XT2, X2).max() + 1e-15
    assert np.array_equal(XT1, np.swapaxes(XT1, -1, -2)) and np.array_equal(X1, np.swapaxes(X1, -1, -2))
    for i in np.flatnonzero(s1)[:20]:
        np.testing.assert_allclose(X1[i], scipy.linalg.solve_discrete_lyapunov(A[i], W[i]),
                                   rtol=1e-9)


def _exact_lyap_2x2(A, W):
    """X = A' X A + W for 2 x 2 ``A`` solved exactly in rational arithmetic (Gauss-Jordan on
    the 4 x 4 Kronecker system of the float inputs), rounded once at the end."""
    from fractions import Fraction as Fr

    A = [[Fr(float(x)) for x in r] for r in A]
    L = [[Fr(int(r == c)) - A[c // 2][r // 2] * A[c % 2][r % 2] for c in range(4)]
         + [Fr(float(W[r // 2][r % 2]))] for r in range(4)]
    for c in range(4):
        p = next(r for r in range(c, 4) if L[r][c] != 0)
        L[c], L[p] = L[p], L[c]
        for r in range(4):
            if r != c and L[r][c] != 0:
                f = L[r][c] / L[c][c]
                L[r] = [x - f * y for x, y in zip(L[r], L[c])]
    return np.array([[float(L[2 * i + j][4] / L[2 * i + j][2 * i + j]) for j in range(2)]
                     for i in range(2)])


def test_compiled_2x2_pair_is_as_accurate_as_lapack_against_exact_solutions(rng):
    """Against exact rational solutions: the compiled kernel's error is within a few eps
    (rho up to 0.95), as LAPACK's; on the benchmark family it was 5e-15 where LAPACK's (and
    SciPy's) was 5.4e-14 on its worst task."""
    n = 80
    A = rng.standard_normal((n, 2, 2))
    A *= (rng.uniform(0.3, 0.95, n) / np.max(np.abs(np.linalg.eigvals(A)), axis=-1))[:, None, None]
    W = np.stack([random_spd(rng, 2) for _ in range(n)])
    assert n >= _ly.NUMBA_MIN_BATCH
    stable, XT, _ = _ly.lyapunov_pair(A, W, W)
    assert stable.all()
    err = [np.abs(XT[i] - (X := _exact_lyap_2x2(A[i], W[i]))).max() / np.abs(X).max()
           for i in range(0, n, 4)]
    assert max(err) < 2e-13


@pytest.mark.parametrize("d", [7, 12, 30])
def test_pair_doubling_per_task_powers_match_scipy(rng, d, monkeypatch):
    # issue 15: the doubling path of lyapunov_pair (d > KRON_MAX_D) drops each task from the
    # squarings once its powers are negligible and checks the residual with probe vectors.
    # Mixed spectral radii in one batch (incl. 0.999 and a nilpotent-fast 0.05) and one
    # unstable member must give SciPy's solutions per task and flag the unstable one.
    rhos = [0.05, 0.5, 0.9, 0.999, 1.02, 0.7]
    A = np.stack([_scaled(rng, d, r) for r in rhos])
    WT = np.stack([random_spd(rng, d) for _ in rhos])
    W = np.stack([random_spd(rng, d) for _ in rhos])
    monkeypatch.setenv("METALQR_NUM_THREADS", "1")
    stable, XT, X = _ly.lyapunov_pair(A, WT, W)
    assert stable.tolist() == [r < 1 for r in rhos]
    for i, r in enumerate(rhos):
        if r >= 1:
            assert not np.any(XT[i]) and not np.any(X[i])
            continue
        refT = scipy.linalg.solve_discrete_lyapunov(A[i].T, WT[i])
        ref = scipy.linalg.solve_discrete_lyapunov(A[i], W[i])
        tol = 1e-9 if r < 0.99 else 1e-7          # SciPy's own error grows like cond * eps
        assert rel(XT[i], refT) < tol and rel(X[i], ref) < tol
        # residuals at working precision, also at rho = 0.999
        assert rel(A[i].T @ XT[i] @ A[i] + WT[i], XT[i]) < 1e-12
        assert rel(A[i] @ X[i] @ A[i].T + W[i], X[i]) < 1e-12
    # the per-task kernel gives the same result as the former all-tasks doubling
    ok = np.flatnonzero(stable)
    powers, _ = _ly._doubling_powers(A[ok])
    old = _ly._refined(powers, A[ok], WT[ok], transpose=True)
    assert rel(XT[ok], old) < 1e-12


def test_pair_doubling_refines_when_the_residual_is_large(rng, monkeypatch):
    # force the refinement branch: a probe check that always fails must still return SciPy's
    # answer (one refinement step on the flagged tasks only)
    d = 9
    A = np.stack([_scaled(rng, d, r) for r in (0.3, 0.95)])
    W = np.stack([random_spd(rng, d) for _ in range(2)])
    monkeypatch.setattr(_ly, "_PROBES", 8)
    stable, powers = _ly._pair_powers(A)
    X0 = _ly._pair_apply(powers, W, transpose=False)
    bad = X0.copy()
    bad[1] += 1e-6 * np.eye(d)                     # a wrong start is corrected by refinement
    monkeypatch.setattr(_ly, "_pair_apply", lambda p, Wr, transpose, _f=_ly._pair_apply:
                        bad if Wr is W else _f(p, Wr, transpose))
    X = _ly._pair_refined(powers, A, W, transpose=False)
    for i in range(2):
        assert rel(X[i], scipy.linalg.solve_discrete_lyapunov(A[i], W[i])) < 1e-11


# --- new-user report: strongly non-normal stable A whose doubling powers pass the 1e200 guard --

def _series_longdouble(M: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``sum_t M^t W M'^t`` by the doubling in ``np.longdouble`` (exponent range to 1e4932).

    For entrywise non-negative ``M`` and ``W`` every term is non-negative, so there is no
    cancellation: an independent reference accurate to about 1e-16 relative, even where
    float64 powers of ``M`` reach 1e111.
    """
    M, X = M.astype(np.longdouble), W.astype(np.longdouble)
    for _ in range(64):
        X = X + M @ X @ M.T
        M = M @ M
        if float(np.sum(M * M)) < 1e-40:
            return X
    raise AssertionError("reference series did not converge")


def _jordan(d: int) -> np.ndarray:
    return 0.99 * np.eye(d) + np.eye(d, k=1)


@pytest.mark.parametrize("d", [50, 60, 70])
def test_non_normal_jordan_solution_is_found_not_called_an_overflow(d):
    """Before: d = 60 raised "X overflows float64 ... entries of A and W are too large
    (largest |A| 1, |W| 1)" although X is representable (tr 3.684e236; max |A^k| 8e111) and
    SciPy solves it; d = 50 worked. Now the doubling is rerun up to true overflow, cross-checked
    against SciPy's Schur-based solver, and compared here with the series in np.longdouble."""
    A = _jordan(d)
    I = np.eye(d)
    for M in (A.T, A):
        ref = _series_longdouble(M, I)
        X = metalqr.dlyap(M, I)
        assert np.isfinite(X).all()
        assert float(np.max(np.abs(X - ref) / ref)) < 1e-11
        assert float(abs(np.trace(X) - np.trace(ref)) / np.trace(ref)) < 1e-12
    if d == 60:
        assert np.trace(X) == pytest.approx(3.684e236, rel=1e-3)


@pytest.mark.parametrize("d", [60, 70])
def test_non_normal_jordan_cost_and_evaluate(d):
    """``cost`` and ``evaluate`` (lyapunov_pair's batched path) on a task with that A and
    K = 0: J = Tr(P_K Psi), P_K = sum A'^t Q A^t, Sigma_K = sum A^t Psi A'^t (longdouble)."""
    A = _jordan(d)
    B = np.eye(d)[:, :1]
    task = metalqr.LQRTask(A, B, np.eye(d), [[1.0]])
    K0 = np.zeros((1, d))
    P_ref = _series_longdouble(A.T, np.eye(d))
    J_ref = float(np.sum(P_ref * task.Psi.T))
    assert metalqr.cost(task, K0) == pytest.approx(J_ref, rel=1e-11)
    ev = metalqr.evaluate(task, K0)
    assert float(np.max(np.abs(ev.P - P_ref) / P_ref)) < 1e-11
    S_ref = _series_longdouble(A, task.Psi)
    assert float(np.max(np.abs(ev.Sigma - S_ref) / np.maximum(S_ref, 1e-300))) < 1e-11
    # gradient 2 [(R + B'PB) K - B'PA] Sigma = -2 B'PA Sigma at K = 0 (entries up to 7e238)
    g_ref = -2.0 * (B.T.astype(np.longdouble) @ P_ref @ A.astype(np.longdouble)) @ S_ref
    g = metalqr.gradient(task, K0)
    assert float(np.max(np.abs(g - g_ref) / np.abs(g_ref))) < 1e-11
    # in a batch with a normal task: the normal one is unaffected, the Jordan one solved
    normal = metalqr.LQRTask(0.5 * np.eye(d), B, np.eye(d), [[1.0]])
    J = metalqr.cost(metalqr.TaskSet([normal, task]), K0)
    assert J[0] == pytest.approx(d / 0.75, rel=1e-12)
    assert J[1] == pytest.approx(J_ref, rel=1e-11)


def test_non_normal_jordan_beyond_float64_says_range_not_too_large_entries():
    """d = 80: the true X exceeds float64 (the longdouble series reaches ~1e317); the error
    says so (or ill-conditioning), and no longer claims that entries of 1 are "too large"."""
    d = 80
    A = _jordan(d)
    assert np.max(_series_longdouble(A.T, np.eye(d))) > np.longdouble(np.finfo(float).max)
    with pytest.raises(metalqr.ValidationError) as info:
        metalqr.dlyap(A.T, np.eye(d))
    msg = str(info.value)
    assert "exceeds the float64 range" in msg and "ill-conditioned" in msg
    assert "too large" not in msg
    assert "largest |A| entry 1," in msg
    with pytest.raises(metalqr.ValidationError, match="stabilises the task"):
        metalqr.cost(metalqr.LQRTask(A, np.eye(d)[:, :1], np.eye(d), [[1.0]]), np.zeros((1, d)))
