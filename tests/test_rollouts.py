"""Rollout engine: counter-based noise, backend agreement, statistics against the exact
finite-horizon expectation, reproducibility and errors."""

import math

import numpy as np
import pytest
import scipy.stats

import metalqr
from metalqr.rollouts import backends as backends_mod
from metalqr.rollouts.counter_rng import (GAMMA, ZIG_KI, ZIG_LAYERS, ZIG_R, ZIG_V, _mix, normals,
                                          ziggurat_tables)
from metalqr.rollouts import _array_kernel as array_kernel, _numba_kernel as numba_kernel, numpy_backend
from metalqr.rollouts.engine import noise_factors
from metalqr.rollouts._numba_kernel import normals_numba
from helpers import random_task, stabilizing_gain


def test_ziggurat_layers_have_equal_areas():
    """Marsaglia & Tsang's construction: layer i >= 1 is [0, x_i] x [f(x_i), f(x_{i-1})], the
    base layer [0, V/f(R)] x [0, f(R)] plus the tail; every one has area V, x_{N-1} = R, the
    top layer reaches f(0) = 1, and KI[i] is x_{i-1}/x_i in units of 2^-52."""
    KI, W, F = ziggurat_tables()
    x = W * 2.0**52
    f = lambda t: np.exp(-0.5 * t * t)
    assert x[-1] == ZIG_R and x.size == ZIG_LAYERS
    np.testing.assert_allclose(F[1:], f(x[1:]), rtol=1e-15)
    areas = x[1:] * (F[:-1] - F[1:])
    np.testing.assert_allclose(areas, ZIG_V, rtol=1e-8)
    tail = math.sqrt(2 * math.pi) * scipy.stats.norm.sf(ZIG_R)
    assert x[0] * f(ZIG_R) == pytest.approx(ZIG_V) and ZIG_R * f(ZIG_R) + tail == pytest.approx(ZIG_V, rel=1e-9)
    assert np.all(np.abs(KI[2:].astype(float) / 2.0**52 - x[1:-1] / x[2:]) < 1e-15)
    assert KI[0] / 2.0**52 == pytest.approx(ZIG_R / x[0], rel=1e-15)


def test_ziggurat_tail_and_wedges_have_normal_frequencies():
    """Frequencies of |z| > c against 2 Phi(-c) (binomial z-score < 5) on 20M draws: c = R
    checks the tail method, the others the layers and their wedges."""
    n = 20_000_000
    z = normals_numba(3, n)
    for c in (0.5, 1.0, 2.0, 3.0, ZIG_R, 4.0, 4.5):
        p = 2 * scipy.stats.norm.sf(c)
        assert abs(np.sum(np.abs(z) > c) - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_counter_normals_are_standard_normal():
    z = normals(np, 2024, np.arange(1_000_000, dtype=np.uint64))
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert abs(np.mean(z**4) - 3) < 5 * math.sqrt(96 / n)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / math.sqrt(n)
    assert scipy.stats.kstest(z[:200_000], "norm").pvalue > 1e-4


def _family(rng, d, k, n=3):
    tasks = metalqr.TaskSet([random_task(rng, d, k, rho=0.8) for _ in range(n)])
    Ks = np.stack([stabilizing_gain(rng, t, scale=0.05) for t in tasks])
    return tasks, Ks


@pytest.mark.parametrize("d, k", [(1, 1), (3, 2), (7, 3)])
def test_numpy_and_numba_agree(rng, d, k):
    tasks, Ks = _family(rng, d, k)
    ti = np.arange(300) % 3
    K = Ks[ti] + 0.01 * rng.standard_normal((300, k, d))
    a = metalqr.simulate_costs(tasks, K, task_index=ti, length=40, rng=5, backend="numpy")
    b = metalqr.simulate_costs(tasks, K, task_index=ti, length=40, rng=5, backend="numba")
    assert np.allclose(a, b, rtol=1e-10, atol=0)
    c = metalqr.simulate_costs(tasks, K, task_index=ti, length=40, rng=6, backend="numba")
    assert not np.allclose(a, c)


def test_numba_normals_match_the_numpy_generator():
    """The compiled generator gives the NumPy generator's numbers: bit for bit on the
    one-multiplication path, to the last bit of exp/log on the slow path (wedges, tail)."""
    n = 1_000_000
    a = normals_numba(77, n)
    c = np.arange(n, dtype=np.uint64)
    b = normals(np, 77, c)
    h = _mix(np.uint64(77) + (c + np.uint64(1)) * GAMMA)
    slow = (h >> np.uint64(12)) >= ZIG_KI[(h & np.uint64(ZIG_LAYERS - 1)).astype(np.int64)]
    assert 0.002 * n < slow.sum() < 0.01 * n and np.sum(np.abs(b) > ZIG_R) > 20
    np.testing.assert_array_equal(a[~slow], b[~slow])
    assert np.max(np.abs(a - b) / np.abs(b)) < 1e-14


def test_numba_result_does_not_depend_on_the_block_of_rollouts(rng, monkeypatch):
    """Roll-outs are simulated LANES at a time per task; shuffled tasks, padded blocks and
    a block size that divides nothing give the same costs."""
    tasks, Ks = _family(rng, 5, 3)
    ti = rng.permutation(np.arange(301) % 3)
    K = Ks[ti] + 0.01 * rng.standard_normal((301, 3, 5))
    ref = metalqr.simulate_costs(tasks, K, task_index=ti, length=25, rng=4, backend="numpy")
    for lanes in (1, 7, numba_kernel.LANES):
        monkeypatch.setattr(numba_kernel, "LANES", lanes)
        got = metalqr.simulate_costs(tasks, K, task_index=ti, length=25, rng=4, backend="numba")
        assert np.allclose(got, ref, rtol=1e-10, atol=0)


def test_array_kernel_does_not_depend_on_blocks_or_noise_slabs(rng, monkeypatch):
    """The NumPy/CuPy kernel groups roll-outs by task into blocks of LANES and generates the
    noise of several steps at once; neither choice changes a cost."""
    tasks, Ks = _family(rng, 4, 2)
    ti = rng.permutation(np.arange(203) % 3)
    K = Ks[ti] + 0.01 * rng.standard_normal((203, 2, 4))
    ref = metalqr.simulate_costs(tasks, K, task_index=ti, length=20, rng=8, backend="numpy")
    monkeypatch.setattr(array_kernel, "LANES", 7)
    monkeypatch.setattr(array_kernel, "NOISE_BYTES", 1)          # one step per generator call
    got = metalqr.simulate_costs(tasks, K, task_index=ti, length=20, rng=8, backend="numpy")
    assert np.allclose(got, ref, rtol=1e-12, atol=0)


@pytest.mark.slow
def test_numba_whitened_and_direct_paths_agree_with_numpy(rng):
    """The Numba kernel simulates in noise coordinates when Psi is well conditioned and in
    the original ones otherwise (singular Psi); both match the NumPy kernel."""
    base = random_task(rng, 3, 2, rho=0.8)
    K = np.broadcast_to(stabilizing_gain(rng, base, scale=0.05), (200, 2, 3))
    for Psi in (np.diag([1.0, 0.5, 2.0]) + 0.1, np.diag([1.0, 0.0, 1.0])):
        task = metalqr.LQRTask(base.A, base.B, base.Q, base.R, Psi=Psi)
        a = metalqr.simulate_costs(task, K, length=30, rng=2, backend="numpy")
        b = metalqr.simulate_costs(task, K, length=30, rng=2, backend="numba")
        assert np.allclose(a, b, rtol=1e-10, atol=0)


def test_noise_factors_are_square_roots_that_diagonalise_the_cost(rng):
    """G G' = Psi; where Psi is well conditioned G'QG is diagonal (the Numba kernel's sum of
    squares), otherwise G is the lower Cholesky-type factor; L0 L0' = Sigma0."""
    tasks = [random_task(rng, 4, 2, rho=0.8) for _ in range(2)]
    Psi = np.stack([tasks[0].Psi, np.diag([1.0, 0.0, 2.0, 1.0])])
    Q = np.stack([t.Q for t in tasks])
    Sigma0 = np.stack([t.Sigma0 for t in tasks])
    L0, G = noise_factors(Sigma0, Psi, Q)
    np.testing.assert_allclose(G @ np.swapaxes(G, 1, 2), Psi, atol=1e-12)
    np.testing.assert_allclose(L0 @ np.swapaxes(L0, 1, 2), Sigma0, atol=1e-12)
    assert np.allclose(np.triu(L0, 1), 0)
    Qw = G[0].T @ Q[0] @ G[0]
    assert np.max(np.abs(Qw - np.diag(np.diag(Qw)))) < 1e-13 * np.abs(Qw).max()
    assert np.allclose(np.triu(G[1], 1), 0) and not np.allclose(np.triu(G[0], 1), 0)


def test_results_do_not_depend_on_chunking_or_threads(rng, monkeypatch):
    tasks, Ks = _family(rng, 3, 2)
    ti = np.arange(1000) % 3
    ref = metalqr.simulate_costs(tasks, Ks[ti], task_index=ti, length=20, rng=1, backend="numpy")
    monkeypatch.setattr(numpy_backend, "CHUNK", 37)
    monkeypatch.setenv("METALQR_NUM_THREADS", "1")
    again = metalqr.simulate_costs(tasks, Ks[ti], task_index=ti, length=20, rng=1, backend="numpy")
    assert np.array_equal(ref, again)
    # A rollout's cost depends only on (key, its noise index, task, gain): a subset agrees.
    sub = metalqr.simulate_costs(tasks, Ks[ti[:10]], task_index=ti[:10], length=20, rng=1,
                                 backend="numba")
    assert np.allclose(sub, ref[:10], rtol=1e-10)


def test_common_noise_index_gives_identical_rollouts(rng):
    tasks, Ks = _family(rng, 2, 1, n=1)
    c = metalqr.simulate_costs(tasks, np.repeat(Ks, 4, axis=0), task_index=np.zeros(4, int),
                               noise_index=np.array([7, 7, 3, 3]), length=30, rng=0)
    assert c[0] == c[1] and c[2] == c[3] and c[0] != c[2]


@pytest.mark.parametrize("backend", metalqr.available_backends())
def test_mean_matches_exact_finite_horizon_expectation(backend):
    """The empirical cost averages x_1..x_l; its exact mean is the Lemma 14 finite-horizon cost.
    z-score below 4.5 (a false alarm has probability < 1e-5)."""
    task = metalqr.boeing747()
    K, _ = metalqr.optimal_gain(task)
    for length in (1, 5, 50):
        c = metalqr.simulate_costs(task, K, length=length, n_rollouts=40_000, rng=length,
                                   backend=backend)
        exact = metalqr.expected_rollout_cost(task, K, length)
        assert abs(c.mean() - exact) < 4.5 * c.std() / math.sqrt(c.size)


def test_singular_noise_covariance_and_scalar_exact():
    # Psi singular (noise only in the first state); scalar closed form for a 1-D task.
    task = metalqr.LQRTask(np.diag([0.5, 0.3]), np.eye(2), np.eye(2), np.eye(2),
                           Psi=np.diag([1.0, 0.0]), Sigma0=np.zeros((2, 2)))
    c = metalqr.simulate_costs(task, np.zeros((2, 2)), length=3, n_rollouts=20000, rng=0)
    # x_2 never moves: cost only from x_1 (exact variance sums 1, 1.25, 1.3125 -> mean 1.1875).
    assert metalqr.expected_rollout_cost(task, np.zeros((2, 2)), 3) == pytest.approx(1.1875)
    assert abs(c.mean() - 1.1875) < 4.5 * c.std() / math.sqrt(c.size)


def test_overflow_gives_inf_never_nan():
    task = metalqr.LQRTask([[3.0]], [[1.0]], [[1.0]], [[1.0]])
    for backend in metalqr.available_backends():
        c = metalqr.simulate_costs(task, [[0.0]], length=2000, n_rollouts=4, rng=0, backend=backend)
        assert np.all(c == math.inf)
    assert metalqr.expected_rollout_cost(task, [[0.0]], 2000) == math.inf


def test_engine_validation():
    task = metalqr.LQRTask([[0.5]], [[1.0]], [[1.0]], [[1.0]])
    with pytest.raises(metalqr.ValidationError, match="length"):
        metalqr.simulate_costs(task, [[0.0]], length=0)
    with pytest.raises(metalqr.ValidationError, match="task_index"):
        metalqr.simulate_costs(task, [[0.0]], length=5, task_index=[0, 1])
    with pytest.raises(metalqr.ValidationError, match="K"):
        metalqr.simulate_costs(task, np.zeros((3, 2, 1)), length=5, task_index=[0, 0, 0])
    with pytest.raises(metalqr.ValidationError, match="backend"):
        metalqr.simulate_costs(task, [[0.0]], length=5, backend="fortran")
    with pytest.raises(metalqr.ValidationError, match="rng"):
        metalqr.simulate_costs(task, [[0.0]], length=5, rng="seed")


def test_cupy_backend_unavailable_is_a_clear_error():
    if backends_mod.cupy_available():
        pytest.skip("a GPU is present: covered by test_cupy_matches_numpy")
    with pytest.raises(metalqr.BackendUnavailableError, match="cupy"):
        metalqr.simulate_costs(metalqr.boeing747(), np.zeros((2, 4)), length=5, backend="cupy")


@pytest.mark.gpu
@pytest.mark.skipif(not backends_mod.cupy_available(), reason="needs CuPy and a CUDA GPU")
def test_cupy_matches_numpy(rng):
    tasks, Ks = _family(rng, 5, 2)
    ti = np.arange(3000) % 3
    a = metalqr.simulate_costs(tasks, Ks[ti], task_index=ti, length=30, rng=2, backend="numpy")
    b = metalqr.simulate_costs(tasks, Ks[ti], task_index=ti, length=30, rng=2, backend="cupy")
    assert np.allclose(a, b, rtol=1e-9)


# --- issue 13, part D: badly scaled / singular covariances and diverging roll-outs ---------

from hypothesis import given, strategies as st  # noqa: E402

from metalqr.rollouts.engine import factor_error, lower_factor  # noqa: E402
from helpers import random_spd  # noqa: E402


class _ProxyXP:
    """NumPy under another name: the array kernel then takes its CuPy code path (no host
    synchronisation), which the CPU test runs exercise this way."""

    def __getattr__(self, name):
        return getattr(np, name)


def _scaled(task, s):
    """Issue 13 part D: the task in the coordinates x' = S x, S = diag(s, 1/s, s, 1/s, ...)."""
    S = np.diag([s if i % 2 == 0 else 1.0 / s for i in range(task.d)])
    Si = np.diag(1.0 / np.diag(S))
    return metalqr.LQRTask(S @ task.A @ Si, S @ task.B, Si @ task.Q @ Si, task.R,
                           Psi=S @ task.Psi @ S, Sigma0=S @ task.Sigma0 @ S), Si


def _low_rank_psd(rng, d, r):
    F = rng.standard_normal((d, r))
    return F @ F.T


@given(st.integers(0, 10_000), st.integers(1, 6), st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6]),
       st.booleans())
def test_noise_factor_is_entrywise_accurate_for_any_psd(seed, d, s, singular):
    """G G' = Psi and L0 L0' = Sigma0 to ~eps relative to sqrt(S_ii S_jj), for badly scaled and
    singular covariances (the old eigh factor of S itself had error 0.57 at s = 1e4 and 2e8 at
    s = 1e6 on such inputs)."""
    rng = np.random.default_rng(seed)
    P = _low_rank_psd(rng, d, max(1, d - 2)) if singular else random_spd(rng, d)
    S = np.diag([s if i % 2 == 0 else 1.0 / s for i in range(d)])
    Ps = S @ P @ S
    Ps = 0.5 * (Ps + Ps.T)
    assert factor_error(lower_factor(Ps[None]), Ps[None]) < 1e-12
    L0, G = noise_factors(Ps[None], Ps[None], np.eye(d)[None])
    assert factor_error(G, Ps[None]) < 1e-12 and factor_error(L0, Ps[None]) < 1e-12
    assert np.allclose(np.triu(L0[0], 1), 0.0)


def _zscore(c, exact):
    return abs(c.mean() - exact) / (c.std() / math.sqrt(c.size))


@pytest.mark.parametrize("case", ["full", "singular_psi", "singular_sigma0", "zero_sigma0"])
def test_scaled_coordinates_do_not_bias_rollouts(case):
    """Issue 13 part D 5: the mean simulated cost matches expected_rollout_cost (z-test, 4.5
    sigma) in coordinates scaled by S = diag(s, 1/s, s, 1/s), s from 1e-6 to 1e6, also for
    singular Psi / Sigma0, on the NumPy kernel, the Numba kernel and the array kernel's CuPy
    path (NumPy as the array module). Before the fix: z-scores of 90-700 at s = 1e4, 1e-6."""
    rng = np.random.default_rng(7)
    base = random_task(rng, 4, 2, rho=0.8)
    Psi, Sigma0 = base.Psi, random_spd(rng, 4)
    if case == "singular_psi":
        Psi = _low_rank_psd(rng, 4, 2)
    elif case == "singular_sigma0":
        Sigma0 = _low_rank_psd(rng, 4, 1)
    elif case == "zero_sigma0":
        Sigma0 = np.zeros((4, 4))
    base = metalqr.LQRTask(base.A, base.B, base.Q, base.R, Psi=Psi, Sigma0=Sigma0)
    K = stabilizing_gain(rng, base, 0.05)
    means = []
    for s in (1e-6, 1e-3, 1.0, 1e3, 1e6):
        task, Si = _scaled(base, s)
        Ks = K @ Si
        exact = metalqr.expected_rollout_cost(task, Ks, 30)
        assert exact == pytest.approx(metalqr.expected_rollout_cost(base, K, 30), rel=1e-9)
        for backend in metalqr.available_backends():
            c = metalqr.simulate_costs(task, Ks, length=30, n_rollouts=8000, rng=3,
                                       backend=backend)
            assert _zscore(c, exact) < 4.5, (s, backend)
            means.append(c.mean())
        L0, G = noise_factors(task.Sigma0[None], task.Psi[None], task.Q[None])
        N = 2000
        c = array_kernel.simulate_costs_array(
            _ProxyXP(), task.A[None], task.B[None], task.Q[None], task.R[None], L0, G,
            np.zeros(N, dtype=np.int64), np.ascontiguousarray(np.broadcast_to(Ks, (N, 2, 4))),
            np.arange(N), 30, 11, np.ones(N), 1e10)
        assert _zscore(c, exact) < 4.5, (s, "array kernel, cupy path")
    # Same key, same noise: the scaled simulations agree with each other to rounding.
    assert np.ptp(means) < 1e-6 * np.mean(means)


def _diverging_task():
    """A closed loop with spectral radius 1.5 (issue 13 part D 6)."""
    task = metalqr.LQRTask([[1.0, 0.2], [0.0, 1.2]], [[0.0], [1.0]], np.eye(2), [[1.0]])
    K = np.array([[0.0, -0.3]])
    assert metalqr.spectral_radius(task, K) == pytest.approx(1.5)
    return task, K


def test_diverging_rollouts_are_detected_in_every_backend():
    """A roll-out whose stage cost grows 1e10 times beyond its reference scale is reported as
    inf by every backend long before a float overflows (length 50: the costs are ~1e17, all
    finite), and the estimators raise RolloutOverflowError instead of returning a finite
    -1e19 gradient."""
    task, K = _diverging_task()
    assert math.isfinite(metalqr.expected_rollout_cost(task, K, 50))
    for backend in metalqr.available_backends():
        c = metalqr.simulate_costs(task, K, length=50, n_rollouts=64, rng=0, backend=backend)
        assert np.all(c == math.inf), backend
        with pytest.raises(metalqr.RolloutOverflowError, match="diverg"):
            metalqr.zo_gradient(task, K, rng=0, backend=backend)
        with pytest.raises(metalqr.RolloutOverflowError):
            metalqr.zo_maml_gradient(metalqr.TaskSet([task, task]), K, eta=1e-3,
                                     n_perturbations=4, rng=0, backend=backend)
    L0, G = noise_factors(task.Sigma0[None], task.Psi[None], task.Q[None])
    for xp in (np, _ProxyXP()):
        c = array_kernel.simulate_costs_array(
            xp, task.A[None], task.B[None], task.Q[None], task.R[None], L0, G,
            np.zeros(16, dtype=np.int64), np.repeat(K[None], 16, axis=0), np.arange(16), 50, 5,
            np.full(16, 2.0), 1e10)
        assert np.all(c == math.inf)
    with pytest.raises(metalqr.UnstablePolicyError):
        metalqr.zo_gradient(task, K, rng=0, oracle="exact")


@pytest.mark.slow
def test_stable_transients_are_not_mistaken_for_divergence():
    """A stable but strongly non-normal closed loop (transient gain 1e4 per step) and a slow
    one (rho = 0.999, 3000 steps) keep their unbiased means on both kernels."""
    fast = metalqr.LQRTask([[0.5, 1e4], [0.0, 0.5]], [[0.0], [1.0]], np.eye(2), [[1.0]])
    slow = metalqr.LQRTask([[0.999]], [[1.0]], [[1.0]], [[1.0]])
    for task, K, length in ((fast, np.zeros((1, 2)), 40), (slow, np.zeros((1, 1)), 3000)):
        exact = metalqr.expected_rollout_cost(task, K, length)
        for backend in metalqr.available_backends():
            c = metalqr.simulate_costs(task, K, length=length, n_rollouts=3000, rng=1,
                                       backend=backend)
            assert np.all(np.isfinite(c)) and _zscore(c, exact) < 4.5


def test_expected_rollout_cost_long_horizons_by_doubling(monkeypatch):
    """Issue 12: expected_rollout_cost(..., 10**9) ran for minutes. Beyond
    RECURSION_MAX_LENGTH the same sum is computed by doubling: it agrees with the recursion
    (forced for short lengths), tends to J(K) like 1/l, and is inf for an unstable loop."""
    from metalqr.rollouts import engine

    task = metalqr.LQRTask([[0.9, 0.3], [0.0, 0.7]], [[0.0], [1.0]], np.eye(2), [[1.0]],
                           Psi=np.diag([1.0, 0.5]), Sigma0=np.array([[2.0, 0.3], [0.3, 1.0]]))
    K = np.array([[0.1, 0.2]])
    rec = [metalqr.expected_rollout_cost(task, K, n) for n in (1, 2, 3, 7, 64, 1000)]
    monkeypatch.setattr(engine, "RECURSION_MAX_LENGTH", 0)
    dbl = [metalqr.expected_rollout_cost(task, K, n) for n in (1, 2, 3, 7, 64, 1000)]
    np.testing.assert_allclose(dbl, rec, rtol=1e-13)
    J = metalqr.cost(task, K)
    far = metalqr.expected_rollout_cost(task, K, 10 ** 9)
    assert abs(far - J) < 1e-7 * J
    near = metalqr.expected_rollout_cost(task, K, 10 ** 4)
    assert abs(near - J) > 10 * abs(far - J)
    assert metalqr.expected_rollout_cost(task, [[0.0, -2.0]], 10 ** 9) == math.inf


def test_divergence_flags_agree_across_backends_on_a_mixed_batch():
    """Diverging and stable roll-outs in one call: every backend flags the same roll-outs,
    and the stable ones keep identical costs (to rounding) with and without the test."""
    bad, K_bad = _diverging_task()
    good = metalqr.LQRTask([[0.5, 0.1], [0.0, 0.4]], [[0.0], [1.0]], np.eye(2), [[1.0]])
    ts = metalqr.TaskSet([bad, good])
    ti = np.arange(40) % 2
    K = np.where(ti[:, None, None] == 0, K_bad, np.array([[0.0, 0.1]]))
    got = {be: metalqr.simulate_costs(ts, K, task_index=ti, length=60, rng=4, backend=be)
           for be in metalqr.available_backends()}
    L0, G = noise_factors(ts.Sigma0, ts.Psi, ts.Q)
    from metalqr.lqr.tasks import as_batch
    from metalqr.rollouts.engine import DIVERGENCE_FACTOR, divergence_reference
    ref = divergence_reference(as_batch(ts), ti, K)
    args = (ts.A, ts.B, ts.Q, ts.R, L0, G, ti, np.ascontiguousarray(K), np.arange(40), 60)
    from metalqr.rollouts.counter_rng import draw_key
    key = draw_key(np.random.default_rng(4))
    got["cupy path"] = array_kernel.simulate_costs_array(_ProxyXP(), *args, key, ref,
                                                         DIVERGENCE_FACTOR)
    plain = array_kernel.simulate_costs_array(np, *args, key)          # no divergence test
    for name, c in got.items():
        assert np.all(np.isinf(c) == (ti == 0)), name
        np.testing.assert_allclose(c[ti == 1], plain[ti == 1], rtol=1e-10, err_msg=name)
