"""The Numba backend's divergence reference formed inside its kernel (speed work on issue 15):
the same divergence flags and the same cost bits as with the NumPy reference passed in, and
the NumPy formula where the kernel's version does not apply."""

import numpy as np
import pytest

import metalqr
from metalqr.lqr.tasks import as_batch
from metalqr.rollouts import backends as backends_mod
from metalqr.rollouts.engine import divergence_reference, noise_factors, run_rollouts
from helpers import random_task, stabilizing_gain

pytest.importorskip("numba")
from metalqr.rollouts import _numba_kernel as numba_kernel  # noqa: E402


def _case(seed, d, k, n=3, N=240, psi_singular=False):
    rng = np.random.default_rng(seed)
    tasks = [random_task(rng, d, k, rho=0.8) for _ in range(n)]
    if psi_singular:                     # the kernel then works in the original coordinates
        tasks = [metalqr.LQRTask(t.A, t.B, t.Q, t.R, Psi=np.diag(np.r_[np.ones(d - 1), 0.0]))
                 for t in tasks]
    ts = metalqr.TaskSet(tasks)
    Ks = np.stack([stabilizing_gain(rng, t, scale=0.05) for t in tasks])
    ti = rng.integers(0, n, N)
    K = np.ascontiguousarray(Ks[ti] + 0.05 * rng.standard_normal((N, k, d)))
    K[::5] *= 4.0                        # some roll-outs diverge
    return ts, ti, K, rng


@pytest.mark.parametrize("seed,d,k,singular", [(0, 20, 10, False), (1, 7, 5, False),
                                               (2, 3, 2, True), (3, 1, 1, False)])
@pytest.mark.parametrize("factor", [2.0, 30.0, 1e10])
def test_kernel_reference_gives_the_flags_and_bits_of_the_numpy_reference(seed, d, k,
                                                                          singular, factor):
    """Small factors make the flags depend on the reference itself (not only on the early
    costs): the kernel's ``tr(K V K')`` must agree with the NumPy formula for every flag to
    agree; the costs of the roll-outs not flagged are the same bits."""
    ts, ti, K, rng = _case(seed, d, k, psi_singular=singular)
    batch = as_batch(ts)
    L0, G = noise_factors(batch.Sigma0, batch.Psi, batch.Q)
    ni, key = np.arange(K.shape[0]), int(rng.integers(0, 2**62))
    own = backends_mod.get_backend("numba").divergence_reference(batch, ti, K)
    assert isinstance(own, numba_kernel.KernelReference)
    args = (batch.A, batch.B, batch.Q, batch.R, L0, G, ti, K, ni, 30, key)
    with np.errstate(over="ignore", invalid="ignore"):
        got = numba_kernel.simulate_costs_numba(*args, own, factor)
        want = numba_kernel.simulate_costs_numba(*args, divergence_reference(batch, ti, K),
                                                 factor)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_array_equal(got, want)
    if factor == 2.0:                                       # the test has teeth: some
        assert 0 < np.isinf(got).sum() < got.size           # flags, and they depend on ref
        with np.errstate(over="ignore", invalid="ignore"):
            off = numba_kernel.simulate_costs_numba(
                *args, 0.05 * divergence_reference(batch, ti, K), factor)
        assert not np.array_equal(np.isinf(off), np.isinf(want))


def test_a_task_with_zero_state_cost_falls_back_to_the_numpy_formula():
    """``tr(Q V) = 0`` (``Q = 0``): the reference may be ``||Q + K'RK||_F ||V||_F``, which the
    kernel does not form; the backend returns ``None`` and the engine's formula is used."""
    rng = np.random.default_rng(5)
    t = random_task(rng, 3, 2)
    ts = metalqr.TaskSet([metalqr.LQRTask(t.A, t.B, np.zeros((3, 3)), t.R, Psi=t.Psi), t])
    batch = as_batch(ts)
    ti = np.array([0, 1, 1, 0])
    K = np.zeros((4, 2, 3))
    assert backends_mod.get_backend("numba").divergence_reference(batch, ti, K) is None
    assert isinstance(backends_mod.get_backend("numba").divergence_reference(
        batch, np.array([1, 1]), K[:2]), numba_kernel.KernelReference)  # task 0 unused
    a = run_rollouts(batch, ti, K, 20, 7, "numba")
    b = run_rollouts(batch, ti, K, 20, 7, "numpy")
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_default_backend_hook_leaves_the_reference_to_the_engine():
    ts, ti, K, _ = _case(4, 4, 2, N=20)
    assert backends_mod.get_backend("numpy").divergence_reference(as_batch(ts), ti, K) is None


def test_kernel_reference_without_a_divergence_test_is_ignored():
    """``factor = inf`` (no test): a KernelReference passed as ``ref`` changes nothing."""
    ts, ti, K, rng = _case(6, 5, 3, N=64)
    batch = as_batch(ts)
    L0, G = noise_factors(batch.Sigma0, batch.Psi, batch.Q)
    own = backends_mod.get_backend("numba").divergence_reference(batch, ti, K)
    args = (batch.A, batch.B, batch.Q, batch.R, L0, G, ti, K, np.arange(K.shape[0]), 12, 3)
    with np.errstate(over="ignore", invalid="ignore"):
        a = numba_kernel.simulate_costs_numba(*args, own, np.inf)
        b = numba_kernel.simulate_costs_numba(*args, None, np.inf)
    np.testing.assert_array_equal(a, b)
