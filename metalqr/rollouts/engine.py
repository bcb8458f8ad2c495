"""The rollout engine: empirical costs of many (task, policy) pairs at once, plus the exact
finite-horizon expectation that those costs estimate."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import as_float_array, as_rng, check_positive
from ..exceptions import ValidationError
from ..lqr.tasks import Batch, TaskLike, as_batch
from .backends import get_backend
from .counter_rng import draw_key

__all__ = ["simulate_costs", "expected_rollout_cost", "lower_factor", "noise_factors"]


def lower_factor(S: np.ndarray) -> np.ndarray:
    """Lower-triangular ``L`` with ``L L' = S`` for symmetric PSD ``S`` (batched).

    Exact also for singular ``S``: from ``F = V sqrt(max(lam, 0))`` (``F F' = S``), the QR
    factorisation ``F' = Q_ R_`` gives ``L = R_'``.
    """
    lam, V = np.linalg.eigh(S)
    F = V * np.sqrt(np.clip(lam, 0.0, None))[..., None, :]
    R_ = np.linalg.qr(np.swapaxes(F, -1, -2), mode="r")
    L = np.swapaxes(R_, -1, -2)
    sign = np.where(np.diagonal(L, axis1=-2, axis2=-1) < 0, -1.0, 1.0)
    return L * sign[..., None, :]


#: ``L_Psi`` with ``cond > 1 / WELL_CONDITIONED`` (e.g. singular ``Psi``) is not diagonalised.
WELL_CONDITIONED = 1e-6


def well_conditioned(G: np.ndarray) -> bool:
    """Whether every factor in the batch ``G`` inverts accurately (condition number below
    ``1 / WELL_CONDITIONED``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return bool(np.all(np.linalg.cond(G) * WELL_CONDITIONED < 1.0))


def noise_factors(Sigma0: np.ndarray, Psi: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Square roots ``(L0, G)`` with ``L0 L0' = Sigma0`` and ``G G' = Psi`` that map the
    counter-based normals to ``x_0 = L0 z`` and ``w_t = G z`` on every backend (batched).

    ``L0`` is lower triangular. ``G = L_Psi U``, with ``U`` the eigenvectors of
    ``L_Psi' Q L_Psi``, so that in the noise coordinates ``y = G^{-1} x`` the stage cost
    ``x'Qx = y'(G'QG)y`` is a weighted sum of squares (the Numba kernel uses this). Where
    ``L_Psi`` is ill-conditioned (e.g. singular ``Psi``), ``G = L_Psi``.
    """
    L = lower_factor(Psi)
    G = L.copy()
    for i in range(L.shape[0]):
        if well_conditioned(L[i]):
            _, U = np.linalg.eigh(L[i].T @ Q[i] @ L[i])
            G[i] = L[i] @ U
    return lower_factor(Sigma0), G


def _factors(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    return noise_factors(batch.Sigma0, batch.Psi, batch.Q)


def run_rollouts(batch: Batch, task_index: np.ndarray, K: np.ndarray, length: int, key: int,
                 backend: str | None, noise_index: np.ndarray | None = None,
                 factors: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Internal engine call on validated arrays; non-finite costs come back as ``inf``."""
    L0, G = _factors(batch) if factors is None else factors
    if noise_index is None:
        noise_index = np.arange(K.shape[0])
    with np.errstate(over="ignore", invalid="ignore"):
        costs = get_backend(backend).simulate(batch.A, batch.B, batch.Q, batch.R, L0, G,
                                              task_index, K, noise_index, length, key)
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
    backend : {"numba", "numpy", "cupy"}, optional
    noise_index : array_like of int, shape (N,), optional
        Noise stream of each rollout; rollouts with equal indices see identical noise
        (common random numbers). Default: all different.

    Returns
    -------
    costs : ndarray, shape (N,)
        ``inf`` where a trajectory overflowed.
    """
    batch = as_batch(tasks, "tasks")
    length = check_positive(length, "length", integer=True)
    K = as_float_array(K, "K")
    k, d = batch.k, batch.d
    if task_index is None:
        if K.ndim == 3:
            N = K.shape[0]
        else:
            N = batch.n if n_rollouts is None else check_positive(n_rollouts, "n_rollouts", integer=True)
        task_index = np.arange(N) % batch.n
    task_index = np.asarray(task_index)
    if task_index.ndim != 1 or not np.issubdtype(task_index.dtype, np.integer):
        raise ValidationError(f"task_index must be a 1-D integer array; got {task_index.dtype} "
                              f"array of shape {task_index.shape}.")
    if task_index.size and (task_index.min() < 0 or task_index.max() >= batch.n):
        raise ValidationError(f"task_index entries must lie in [0, {batch.n}); got range "
                              f"[{task_index.min()}, {task_index.max()}].")
    N = task_index.shape[0]
    if K.shape == (k, d):
        K = np.broadcast_to(K, (N, k, d))
    elif K.shape != (N, k, d):
        raise ValidationError(f"K must have shape (k, d) = ({k}, {d}) or (N, k, d) = ({N}, {k}, {d}); "
                              f"got {K.shape}.")
    if noise_index is None:
        noise_index = np.arange(N)
    else:
        noise_index = np.asarray(noise_index)
        if noise_index.shape != (N,) or not np.issubdtype(noise_index.dtype, np.integer) or (
                N and noise_index.min() < 0):
            raise ValidationError(f"noise_index must be N = {N} non-negative integers; got "
                                  f"{noise_index.dtype} array of shape {noise_index.shape}.")
    key = draw_key(as_rng(rng))
    return run_rollouts(batch, task_index, np.ascontiguousarray(K, dtype=np.float64), length, key,
                        backend, noise_index)


def expected_rollout_cost(tasks: TaskLike, K: Any, length: int):
    """Exact expectation of :func:`simulate_costs`:
    ``(1/l) sum_{t=1}^{l} Tr((Q + K'RK) Sigma_t)`` with ``Sigma_0 = Sigma0`` and
    ``Sigma_{t+1} = A_K Sigma_t A_K' + Psi`` (the finite-horizon cost of Lemma 14).

    Defined for any ``K`` (also non-stabilising ones). Returns a float, or shape (n,) for a
    TaskSet.
    """
    from ..lqr.policy import check_gain, closed_loop

    batch = as_batch(tasks, "tasks")
    length = check_positive(length, "length", integer=True)
    Kb = check_gain(batch, K)
    AK = closed_loop(batch, Kb)
    M = batch.Q + np.swapaxes(Kb, -1, -2) @ batch.R @ Kb
    S = np.array(batch.Sigma0)
    total = np.zeros(batch.n)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(length):
            S = AK @ S @ np.swapaxes(AK, -1, -2) + batch.Psi
            total += np.einsum("nij,nji->n", M, S)
    total = np.where(np.isfinite(total), total / length, math.inf)
    return float(total[0]) if batch.single else total
