"""The speed paths of the roll-out kernels (issue 15) change no number: the NumPy generator's
cache-sized blocks, the serial twins of the parallel fills, the fitted block widths, the
factorisation memo and the single-threaded products of the divergence reference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import metalqr
from metalqr.lqr.tasks import as_batch
from metalqr.rollouts import _counter_rng_numba as counter_rng_numba
from metalqr.rollouts import _numba_kernel as numba_kernel
from metalqr.rollouts import counter_rng
from metalqr.rollouts._blocks import fitted_lanes, task_blocks
from metalqr.rollouts.counter_rng import GAMMA, INT_SHIFT, LAYER_MASK, SIGN_SHIFT, ZIG_KI, ZIG_W
from metalqr.rollouts.engine import divergence_reference
from metalqr.rollouts._factors import memo_by_value
from helpers import random_task


def _fast_path_reference(key, c):
    """The ziggurat's one-multiplication path written out as in the module docstring of
    counter_rng (whole-array operations, sign applied last) and the mask of its draws."""
    x = np.uint64(key) + (c + np.uint64(1)) * GAMMA
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    h = x ^ (x >> np.uint64(31))
    i = (h & LAYER_MASK).astype(np.int64)
    a = h >> INT_SHIFT
    z = a.astype(np.float64) * ZIG_W[i]
    z = np.where((h >> SIGN_SHIFT) & np.uint64(1), -z, z)
    return z, a < ZIG_KI[i]


@pytest.mark.parametrize("block", [7, 1 << 14])
def test_numpy_generator_blocks_give_the_documented_bits(block, monkeypatch):
    monkeypatch.setattr(counter_rng, "NORMALS_BLOCK", block)
    c = (np.arange(40_000, dtype=np.uint64) * np.uint64(3)).reshape(200, 200)
    got = counter_rng.normals(np, 2**62 + 5, c)
    want, fast = _fast_path_reference(2**62 + 5, c)
    assert got.shape == c.shape and 0 < np.sum(~fast) < 0.01 * c.size
    np.testing.assert_array_equal(got[fast], want[fast])
    monkeypatch.setattr(counter_rng, "NORMALS_BLOCK", 1 << 20)     # one pass: same bits
    np.testing.assert_array_equal(counter_rng.normals(np, 2**62 + 5, c), got)


def test_serial_and_parallel_fills_give_the_same_bits(monkeypatch):
    rng = np.random.default_rng(0)
    C, V = rng.standard_normal((6, 12)), rng.standard_normal((6, 5, 12))
    serial = (counter_rng_numba.normals_numba(9, 5000),
              counter_rng_numba.sphere_numba(9, 40, 12, 0.3),
              numba_kernel.perturbed_numba(C, V, True))
    monkeypatch.setattr(counter_rng_numba, "PARALLEL_MIN", 0)
    monkeypatch.setattr(numba_kernel, "PARALLEL_MIN", 0)
    parallel = (counter_rng_numba.normals_numba(9, 5000),
                counter_rng_numba.sphere_numba(9, 40, 12, 0.3),
                numba_kernel.perturbed_numba(C, V, True))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(parallel[2][:, :, 1], C[:, None] - V)


@settings(max_examples=60)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=400), st.integers(1, 130))
def test_fitted_lanes_keep_the_number_of_blocks_and_cover_every_rollout(ti, lanes):
    ti = np.asarray(ti)
    width = fitted_lanes(ti, lanes)
    assert 1 <= width <= lanes
    bt_full, _ = task_blocks(ti, lanes)
    bt, rows = task_blocks(ti, width)
    assert bt.size == bt_full.size                                  # no extra blocks
    assert np.array_equal(np.sort(rows[rows >= 0]), np.arange(ti.size))
    n_max = int(np.bincount(ti).max())
    assert width >= -(-n_max // -(-n_max // lanes))                 # wide enough
    assert fitted_lanes(np.zeros(20, dtype=int), 128) == 24         # 20 a task: 24 lanes


def test_memo_by_value_returns_fresh_copies_and_recomputes_on_new_values():
    calls = []

    @memo_by_value
    def f(a, b):
        calls.append(1)
        return a + b, a * b

    a, b = np.arange(4.0), np.ones(4)
    s, _ = f(a, b)
    s[:] = -1.0                                                     # the caller's copy only
    s2, p2 = f(a.copy(), b.copy())
    assert len(calls) == 1 and np.array_equal(s2, a + b) and np.array_equal(p2, a)
    f(a, b + 1e-300 + 1.0)                                          # other values: recomputed
    f(a.astype(np.float32), b)                                      # other dtype: recomputed
    assert len(calls) == 3


def test_divergence_reference_matches_the_direct_formula():
    rng = np.random.default_rng(3)
    tasks = metalqr.TaskSet([random_task(rng, 20, 3, rho=0.8) for _ in range(2)])
    batch = as_batch(tasks)
    ti = rng.permutation(np.arange(900) % 2)                        # 1350 rows a task
    K = 0.1 * rng.standard_normal((900, 3, 20))
    V = batch.Psi + batch.Sigma0
    lam = np.linalg.eigvalsh(batch.R)[:, -1]
    want = (np.einsum("nij,nji->n", batch.Q[ti], V[ti])
            + lam[ti] * np.einsum("nai,nij,naj->n", K, V[ti], K))
    np.testing.assert_allclose(divergence_reference(batch, ti, K), want, rtol=1e-12)


def test_pooled_buffers_are_reused_only_when_no_one_holds_them(monkeypatch):
    from metalqr.rollouts import _pool as pool
    monkeypatch.setattr(pool, "_BUFFERS", [])
    a = pool.empty((300, 200))
    b = pool.empty((200, 300))
    assert not np.shares_memory(a, b)                               # a is alive
    a_data = a.ctypes.data
    view = a[10:]
    del a
    c = pool.empty((300, 200))
    assert not np.shares_memory(c, view) and not np.shares_memory(c, b)   # a view holds it
    del view
    d = pool.empty((60000,))
    assert d.ctypes.data == a_data                                  # free again: reused
    assert pool.empty((2, 3)).shape == (2, 3) and len(pool._BUFFERS) == 3   # small: not pooled
    points = counter_rng_numba.sphere_numba(4, 300, 200, 1.0)
    again = counter_rng_numba.sphere_numba(4, 300, 200, 1.0)
    assert not np.shares_memory(points, again) and np.array_equal(points, again)


def test_memo_by_value_does_not_keep_large_arguments(monkeypatch):
    from metalqr.rollouts import _factors
    monkeypatch.setattr(_factors, "MEMO_MAX_BYTES", 100)
    calls = []

    @memo_by_value
    def f(a):
        calls.append(1)
        return 2 * a

    big, small = np.ones(20), np.ones(5)                            # 160 and 40 bytes
    f(big), f(big), f(small), f(small)
    assert len(calls) == 3                                          # big twice, small once


def test_serial_and_parallel_kernel_calls_give_the_same_bits(monkeypatch):
    rng = np.random.default_rng(5)
    tasks = metalqr.TaskSet([random_task(rng, 4, 2, rho=0.8) for _ in range(3)])
    ti = rng.permutation(np.arange(90) % 3)
    K = 0.02 * rng.standard_normal((90, 2, 4))
    import numba
    before = numba.get_num_threads()
    monkeypatch.setattr(numba_kernel, "SERIAL_WORK", 0)
    par = metalqr.simulate_costs(tasks, K, task_index=ti, length=30, rng=2, backend="numba")
    monkeypatch.setattr(numba_kernel, "SERIAL_WORK", 10**12)
    ser = metalqr.simulate_costs(tasks, K, task_index=ti, length=30, rng=2, backend="numba")
    np.testing.assert_array_equal(par, ser)
    assert numba.get_num_threads() == before                        # restored
