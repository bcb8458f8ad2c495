"""The rollout engine: empirical costs of many (task, policy) pairs at once.

The rollout engine: empirical costs of many (task, policy) pairs at once, plus the exact
finite-horizon expectation that those costs estimate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import as_float_array, as_rng, check_int, check_positive, check_size
from ..exceptions import ValidationError, ValidationTypeError
from ..lqr.tasks import Batch, TaskLike, as_batch
from .backends import check_backend, get_backend
from .counter_rng import block_stride, draw_key
from ._factors import (FACTOR_RTOL, WELL_CONDITIONED, equilibrated_factor,  # noqa: F401
                      factor_error, lower_factor, noise_factors, well_conditioned)

__all__ = ["simulate_costs", "expected_rollout_cost", "lower_factor", "noise_factors",
           "factors_of", "run_rollouts", "factor_error", "DIVERGENCE_FACTOR",
           "divergence_reference"]


def factors_of(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """:func:`noise_factors` of the tasks of ``batch`` (computed once per estimator call)."""
    return noise_factors(batch.Sigma0, batch.Psi, batch.Q)


#: A roll-out whose stage cost ``c_t`` exceeds ``DIVERGENCE_FACTOR`` times the reference
#: ``tr(Q V) + lambda_max(R) tr(K V K') + max(c_1 .. c_m)`` (``V = Psi + Sigma0``) (``m = min(l, d + 1)`` first steps) is
#: diverging: its cost is reported as ``inf`` (and the estimators raise
#: :class:`~metalqr.RolloutOverflowError`).
DIVERGENCE_FACTOR = 1e10


def divergence_reference(batch: Batch, task_index: np.ndarray, K: np.ndarray,
                         chunk: int = 65536) -> np.ndarray:
    """Return the deterministic part of the divergence bound of each roll-out.

    Deterministic part of the divergence bound of each roll-out: the upper bound ``tr(Q V) +
    lambda_max(R) tr(K V K') >= tr((Q + K'RK) V)`` with ``V = Psi + Sigma0`` (the scale of a
    stage cost driven by one draw of the noise or the initial state; invariant under a change of
    state coordinates), or ``||Q + K'RK||_F ||V||_F`` where it is zero.

    Shape ``(N,)``. The roll-outs are taken in task order (no copy when ``task_index`` is
    already sorted, as the estimators pass it), ``chunk`` at a time; per task within a chunk
    one single-threaded product ``K V`` (:func:`_rows_times`), then one reduction for the
    whole chunk.
    """
    N = K.shape[0]
    ref = np.zeros(N)
    if N == 0:
        return ref
    k, d = K.shape[1], K.shape[2]
    V = batch.Psi + batch.Sigma0
    lam_R = np.linalg.eigvalsh(batch.R)[:, -1]
    qv = np.einsum("nij,nij->n", batch.Q, V)
    task_index = np.asarray(task_index)
    ordered = bool(np.all(task_index[1:] >= task_index[:-1]))
    order = None if ordered else np.argsort(task_index, kind="stable")
    ts = task_index if ordered else task_index[order]
    for s in range(0, N, chunk):
        e = min(N, s + chunk)
        Kc = np.ascontiguousarray(K[s:e] if ordered else K[order[s:e]])
        rows = Kc.reshape(-1, d)
        KV = np.empty_like(rows)
        tc = ts[s:e]
        cuts = np.flatnonzero(tc[1:] != tc[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, e - s]):
            _rows_times(rows[a * k:b * k], V[tc[a]], KV[a * k:b * k])
        tr = qv[tc] + lam_R[tc] * np.einsum("ni,ni->n", KV.reshape(e - s, -1),
                                            rows.reshape(e - s, -1))
        low = np.flatnonzero(tr <= 0.0)
        if low.size:
            Kl, tl = Kc[low], tc[low]
            M = batch.Q[tl] + np.swapaxes(Kl, -1, -2) @ batch.R[tl] @ Kl
            tr[low] = np.linalg.norm(M, axis=(-2, -1)) * np.linalg.norm(V[tl], axis=(-2, -1))
        if ordered:
            ref[s:e] = tr
        else:
            ref[order[s:e]] = tr
    return ref


#: Largest ``m d d`` of one product in :func:`_rows_times`: below OpenBLAS's threading
#: threshold (``m n k < 2^18``), so each product runs on the calling thread. On a shared
#: 2-core machine a threaded BLAS call for this little work waits for its threads to be
#: scheduled: the (10000, 20) @ (20, 20) product of a (20, 10) meta-gradient took 0.3 ms on
#: one thread and 2-80 ms threaded under load.
SMALL_GEMM = 1 << 17


def _rows_times(X: np.ndarray, V: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Return ``X @ V`` for a tall ``X`` and a small ``V``, in row blocks.

    ``out = X @ V`` for a tall ``X`` (m, d) and a small ``V`` (d, d), as products of at most
    ``SMALL_GEMM / d^2`` rows (at least 64) on the calling thread.
    """
    rows = max(64, SMALL_GEMM // max(1, V.shape[0] * V.shape[1]))
    for s in range(0, X.shape[0], rows):
        np.matmul(X[s:s + rows], V, out=out[s:s + rows])
    return out


def run_rollouts(batch: Batch, task_index: np.ndarray, K: np.ndarray, length: int, key: int,
                 backend: str | None, noise_index: np.ndarray | None = None,
                 factors: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Run the engine on validated arrays.

    Internal engine call on validated arrays; costs of roll-outs that overflowed or diverged
    (see ``DIVERGENCE_FACTOR``) come back as ``inf``.
    """
    L0, G = factors_of(batch) if factors is None else factors
    if noise_index is None:
        noise_index = np.arange(K.shape[0])
    be = get_backend(backend)
    sim = be.simulate
    with np.errstate(over="ignore", invalid="ignore"):
        ref = be.divergence_reference(batch, task_index, K)     # the backend's own, or
        if ref is None:                                         # the NumPy formula
            ref = divergence_reference(batch, task_index, K)
        costs = sim(batch.A, batch.B, batch.Q, batch.R, L0, G, task_index, K, noise_index,
                    length, key, ref, DIVERGENCE_FACTOR)
    return np.where(np.isfinite(costs), costs, math.inf)


def simulate_costs(tasks: TaskLike, K: Any, *, length: int, rng: Any = None,
                   task_index: Any = None, n_rollouts: int | None = None,
                   backend: str | None = None, noise_index: Any = None) -> np.ndarray:
    """Empirical costs of rollouts, ``(1/l) sum_{t=1}^{l} x_t'(Q + K'RK) x_t``.

    Each rollout starts at ``x_0 ~ N(0, Sigma0)``, applies ``u_t = -K x_t`` and
    ``x_{t+1} = A x_t + B u_t + w_t`` with ``w_t ~ N(0, Psi)`` for ``l`` steps, and averages the
    stage costs of ``x_1 .. x_l`` as in Algorithm 1 of the ZO-MAML paper.

    Parameters
    ----------
    tasks : LQRTask or TaskSet
        The task, or a TaskSet (roll-outs pick tasks by ``task_index``).
    K : array_like, shape (k, d) or (N, k, d)
        One gain for all rollouts, or one per rollout.
    length : int
        Roll-out length ``l``.
    rng : Generator or seed
        Source of the noise key (one draw per call).
    task_index : array_like of int, shape (N,), optional
        Task of each rollout (default: rollout ``n`` uses task ``n % n_tasks``).
    n_rollouts : int, optional
        Number of rollouts when ``K`` is a single gain and ``task_index`` is not given.
    backend : str, optional
        A name of :func:`metalqr.rollouts.known_backends` (``"numba"``, ``"numpy"``,
        ``"cupy"``; default ``METALQR_BACKEND`` or ``"numba"``).
    noise_index : array_like of int, shape (N,), optional
        Noise stream of each rollout; rollouts with equal indices see identical noise
        (common random numbers). Default: all different.

    Returns
    -------
    costs : ndarray, shape (N,)
        ``inf`` where a trajectory overflowed or diverged: a stage cost ``c_t`` beyond
        ``DIVERGENCE_FACTOR`` (1e10) times ``tr(Q V) + lambda_max(R) tr(K V K') +
        max(c_1 .. c_m)`` (``V = Psi + Sigma0``, ``m = min(l, d + 1)``), detected from the
        roll-out itself on every backend.

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed argument (named), or a request above metalqr's size limits.
    BackendUnavailableError
        ``backend`` cannot run here.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Algorithm 1 (the empirical cost ``J~`` of one roll-out).
    """
    batch = as_batch(tasks, "tasks")
    length = check_int(length, "length", minimum=1, maximum=MAX_LENGTH)
    K = as_float_array(K, "K")
    k, d = batch.k, batch.d
    if n_rollouts is not None:
        n_rollouts = check_positive(n_rollouts, "n_rollouts", integer=True)
    if task_index is None:
        if K.ndim == 3:
            N = K.shape[0]
            if n_rollouts is not None and n_rollouts != N:
                raise ValidationError(f"n_rollouts = {n_rollouts} disagrees with the {N} gains "
                                      f"of K (shape {K.shape}); pass one or the other.")
        else:
            N = batch.n if n_rollouts is None else n_rollouts
        _check_rollout_size(N, length, k, d)
        task_index = np.arange(N) % batch.n
    else:
        task_index = _index_array(task_index, "task_index")
        if n_rollouts is not None and n_rollouts != task_index.shape[0]:
            raise ValidationError(f"n_rollouts = {n_rollouts} disagrees with the "
                                  f"{task_index.shape[0]} entries of task_index; pass one or "
                                  f"the other.")
    if task_index.size and (task_index.min() < 0 or task_index.max() >= batch.n):
        raise ValidationError(f"task_index entries must lie in [0, {batch.n}); got range "
                              f"[{task_index.min()}, {task_index.max()}].")
    N = task_index.shape[0]
    _check_rollout_size(N, length, k, d)
    if K.shape == (k, d):
        K = np.broadcast_to(K, (N, k, d))
    elif K.shape != (N, k, d):
        raise ValidationError(f"K must have shape (k, d) = ({k}, {d}) or (N, k, d) = ({N}, {k}, {d}); "
                              f"got {K.shape}.")
    stride = block_stride(length, d)
    if noise_index is None:
        noise_index = np.arange(N)
    else:
        noise_index = _index_array(noise_index, "noise_index")
        if noise_index.shape != (N,) or (N and noise_index.min() < 0):
            raise ValidationError(f"noise_index must be N = {N} non-negative integers; got "
                                  f"{noise_index.dtype} array of shape {noise_index.shape}"
                                  + (f" with minimum {noise_index.min()}" if noise_index.size
                                     else "") + ".")
    if N and (float(np.max(noise_index)) + 1.0) * stride >= 2.0 ** 63:
        raise ValidationError(f"noise_index entries must be below 2**63 / ((length + 1) d) = "
                              f"{2.0 ** 63 / stride:.3g} (the noise counters would wrap around); "
                              f"got {int(np.max(noise_index))}.")
    backend = check_backend(backend)
    key = draw_key(as_rng(rng))
    return run_rollouts(batch, task_index, np.ascontiguousarray(K, dtype=np.float64), length, key,
                        backend, noise_index)


#: Largest roll-out length accepted (counters and the float length stay exact).
MAX_LENGTH = 2 ** 40
#: Largest ``roll-outs x length x d (d + k)`` one :func:`simulate_costs` call may simulate
#: (about an hour of compiled roll-outs on one core).
ROLLOUT_WORK_LIMIT = 1e13


def _index_array(value: Any, name: str) -> np.ndarray:
    """Return a 1-D integer array (bool, float, complex and object arrays rejected)."""
    if isinstance(value, (str, bytes)):
        raise ValidationTypeError(f"{name} must be a 1-D array of integers; got a string.")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise ValidationTypeError(f"{name} must be a 1-D array of integers; got {arr.dtype} "
                                  f"array of shape {arr.shape}.")
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be a 1-D integer array; got {arr.dtype} "
                              f"array of shape {arr.shape}.")
    return arr.astype(np.int64)


def _check_rollout_size(N: int, length: int, k: int, d: int) -> None:
    """Refuse a roll-out request whose memory or work exceeds metalqr's limits."""
    check_size(float(N) * (k * d + 4), "simulate_costs", what="float64 entries (gains and "
               "indices of the roll-outs)", alternative="Request fewer roll-outs (n_rollouts "
               "or the length of task_index) and average several calls.")
    check_size(float(N) * length * d * (d + k), "simulate_costs", what="roll-out steps x "
               "d (d + k) multiply-adds", limit=ROLLOUT_WORK_LIMIT,
               alternative="Use fewer roll-outs or a shorter length; the exact expectation of "
                           "the cost is expected_rollout_cost.")


def expected_rollout_cost(tasks: TaskLike, K: Any, length: int):
    """Return the exact expectation of :func:`simulate_costs`.

    Exact expectation of :func:`simulate_costs`: ``(1/l) sum_{t=1}^{l} Tr((Q + K'RK) Sigma_t)``
    with ``Sigma_0 = Sigma0`` and ``Sigma_{t+1} = A_K Sigma_t A_K' + Psi`` (the finite-horizon
    cost of Lemma 14 of the ZO-MAML paper).

    Parameters
    ----------
    tasks : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks.
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks
        The gain(s) (any, stabilising or not).
    length : int
        ``l`` in ``[1, 2**40]``. Up to ``RECURSION_MAX_LENGTH`` steps the recursion
        above is run; beyond, the same sum by doubling in ``O(log l)`` matrix products:
        ``l Tr(Psi S_l) - Tr(Psi T_l) + Tr(Sigma0 (S_{l+1} - M))`` with
        ``S_n = sum_{j<n} X_j``, ``T_n = sum_{j<n} j X_j``, ``X_j = A_K'^j M A_K^j``.

    Returns
    -------
    float, or ndarray of shape (n,) for a TaskSet
        Defined for any ``K`` (also non-stabilising ones); ``inf`` where it overflows.

    Raises
    ------
    ValidationError
        On a malformed task, gain or length.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemma 14 (the finite-horizon cost) and Algorithm 1.
    """
    from ..lqr.policy import check_gain, closed_loop

    batch = as_batch(tasks, "tasks")
    length = check_int(length, "length", minimum=1, maximum=MAX_LENGTH)
    Kb = check_gain(batch, K)
    AK = closed_loop(batch, Kb)
    with np.errstate(over="ignore", invalid="ignore"):
        M = batch.Q + np.swapaxes(Kb, -1, -2) @ batch.R @ Kb
        if length <= RECURSION_MAX_LENGTH:
            S = np.array(batch.Sigma0)
            total = np.zeros(batch.n)
            for _ in range(length):
                S = AK @ S @ np.swapaxes(AK, -1, -2) + batch.Psi
                total += np.einsum("nij,nji->n", M, S)
        else:
            S_l, T_l = _power_sums(AK, M, length)
            S_l1 = S_l + _T(_mat_power(AK, length)) @ M @ _mat_power(AK, length)
            total = (length * np.einsum("nij,nji->n", batch.Psi, S_l)
                     - np.einsum("nij,nji->n", batch.Psi, T_l)
                     + np.einsum("nij,nji->n", batch.Sigma0, S_l1 - M))
        total = np.where(np.isfinite(total), total / length, math.inf)
    return float(total[0]) if batch.single else total


#: Longest horizon for which :func:`expected_rollout_cost` runs the plain recursion.
RECURSION_MAX_LENGTH = 4096


def _T(X: np.ndarray) -> np.ndarray:
    return np.swapaxes(X, -1, -2)


def _mat_power(A: np.ndarray, n: int) -> np.ndarray:
    """Return ``A^n`` by repeated squaring (batched)."""
    out = np.broadcast_to(np.eye(A.shape[-1]), A.shape).copy()
    P = A
    while n:
        if n & 1:
            out = out @ P
        n >>= 1
        if n:
            P = P @ P
    return out


def _power_sums(A: np.ndarray, M: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the power sums ``S_n`` and ``T_n`` by doubling.

    ``S_n = sum_{j<n} A'^j M A^j`` and ``T_n = sum_{j<n} j A'^j M A^j`` by doubling: a block of
    ``q`` terms ``(S, T, A^q)`` followed by another of ``q'`` terms combines into ``(S + P'S'P,
    T + P'(T' + q S')P, P'..)`` with ``P = A^q``.
    """
    S_r = np.zeros_like(M)
    T_r = np.zeros_like(M)
    P_r = np.broadcast_to(np.eye(A.shape[-1]), A.shape).copy()
    p_r = 0
    S_b, T_b, P_b, q = M.copy(), np.zeros_like(M), A.copy(), 1
    while n:
        if n & 1:
            S_r, T_r = (S_r + _T(P_r) @ S_b @ P_r,
                        T_r + _T(P_r) @ (T_b + p_r * S_b) @ P_r)
            P_r, p_r = P_b @ P_r, p_r + q
        n >>= 1
        if n:
            S_b, T_b = S_b + _T(P_b) @ S_b @ P_b, T_b + _T(P_b) @ (T_b + q * S_b) @ P_b
            P_b, q = P_b @ P_b, 2 * q
    return S_r, T_r
