"""Zeroth-order gradient and meta-gradient estimation: Algorithms 1 and 2 of the ZO-MAML paper.

Both estimators evaluate many perturbed gains in one call of the rollout engine
(:mod:`metalqr.rollouts`), batched over tasks x outer x inner perturbations, or, with
``oracle="exact"``, with the exact cost ``J`` (to study the estimator apart from roll-out noise).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .._validation import as_rng, check_positive
from ..exceptions import RolloutOverflowError, UnstablePolicyError, ValidationError
from ..lqr.policy import check_gain, costs_indexed
from ..lqr.tasks import Batch, as_batch
from ..rollouts.backends import perturbed_gains, sphere_points
from ..rollouts.counter_rng import draw_key
from ..rollouts.engine import DIVERGENCE_FACTOR, factors_of, run_rollouts
from .objective import as_taskset

__all__ = ["zo_gradient", "zo_maml_gradient", "sphere_perturbations"]

Oracle = Literal["rollout", "exact"]


def sphere_perturbations(rng: np.random.Generator, shape: tuple[int, ...], radius: float,
                         backend: str | None = None) -> np.ndarray:
    """I.i.d. matrices uniform on the Frobenius sphere of radius ``radius``; ``shape`` ends in
    ``(k, d)``. Normalised Gaussians from the counter-based generator (key drawn from
    ``rng``), so every backend draws the same perturbations."""
    rows, n = int(np.prod(shape[:-2])), shape[-2] * shape[-1]
    return sphere_points(draw_key(as_rng(rng)), rows, n, radius, backend).reshape(shape)


class _Evaluator:
    """Cost oracle shared by the estimators: exact ``J`` or empirical roll-out costs."""

    def __init__(self, batch: Batch, oracle: str, length: int | None, backend: str | None,
                 rng: np.random.Generator) -> None:
        if oracle not in ("rollout", "exact"):
            raise ValidationError(f"oracle must be 'rollout' or 'exact'; got {oracle!r}.")
        self.batch, self.oracle, self.length, self.backend, self.rng = batch, oracle, length, backend, rng
        self.factors = factors_of(batch) if oracle == "rollout" else None

    def __call__(self, task_index: np.ndarray, K: np.ndarray, noise_index: np.ndarray,
                 what: str) -> np.ndarray:
        K = np.ascontiguousarray(K.reshape(-1, self.batch.k, self.batch.d))
        ti = task_index.reshape(-1)
        if self.oracle == "exact":
            J = costs_indexed(self.batch, ti, K)
            if not np.all(np.isfinite(J)):
                bad = int(np.argmax(~np.isfinite(J)))
                raise UnstablePolicyError(
                    f"{what}: a perturbed gain does not stabilise task {ti[bad]}; reduce the "
                    f"smoothing radius or the adaptation rate eta.", task_index=int(ti[bad]))
        else:
            J = run_rollouts(self.batch, ti, K, self.length, draw_key(self.rng), self.backend,
                             noise_index.reshape(-1), self.factors)
            if not np.all(np.isfinite(J)):
                raise RolloutOverflowError(
                    f"{what}: {int(np.sum(~np.isfinite(J)))} of {J.size} roll-outs overflowed or "
                    f"diverged (a stage cost beyond {DIVERGENCE_FACTOR:g} times its reference "
                    f"scale); the perturbed gains are far from stabilising. Reduce the smoothing radius, eta "
                    f"or the roll-out length.")
        return J.reshape(task_index.shape)


def _signs(two_point: bool) -> np.ndarray:
    return np.array([1.0, -1.0]) if two_point else np.array([1.0])


def _combine(J: np.ndarray, U: np.ndarray, two_point: bool, dk: int, radius: float) -> np.ndarray:
    """ZO estimate from costs ``J[..., m, s]`` and perturbations ``U[..., m, k, d]``:
    one-point ``(dk/r^2) mean_m J_m U_m``; two-point ``(dk/(2 r^2)) mean_m (J_m^+ - J_m^-) U_m``."""
    coeff = J[..., 0] - J[..., 1] if two_point else J[..., 0]
    scale = dk / radius**2 / (2.0 if two_point else 1.0)
    return scale * np.einsum("...m,...mij->...ij", coeff, U) / U.shape[-3]


def _check_common(n_perturbations, rollout_length, radius, oracle):
    M = check_positive(n_perturbations, "n_perturbations", integer=True)
    r = check_positive(radius, "radius")
    length = None if oracle == "exact" else check_positive(rollout_length, "rollout_length", integer=True)
    return M, r, length


def zo_gradient(task: Any, K: Any, *, n_perturbations: int = 100, rollout_length: int = 50,
                radius: float = 0.05, rng: Any = None, backend: str | None = None,
                two_point: bool = False, oracle: Oracle = "rollout") -> np.ndarray:
    """Zeroth-order policy-gradient estimate, Algorithm 1 of the ZO-MAML paper.

    ``grad~ J(K) = (1/M) sum_m (dk/r^2) J~(K + U_m) U_m`` with ``U_m`` uniform on the Frobenius
    sphere of radius ``r`` in ``R^{k x d}`` and ``J~`` the empirical cost of one roll-out of
    length ``l`` (Eq. (5); its expectation is the gradient of the sphere-smoothed cost).

    Parameters
    ----------
    task : LQRTask or TaskSet
        For a TaskSet, one independent estimate per task (shape (n, k, d)).
    K : array_like, shape (k, d)
    n_perturbations : int
        ``M``.
    rollout_length : int
        ``l`` (ignored with ``oracle="exact"``).
    radius : float
        Smoothing radius ``r``.
    rng : Generator or seed
    backend : {"numba", "numpy", "cupy"}, optional
    two_point : bool
        Antithetic estimator ``(dk/(2r^2)) (J~(K+U) - J~(K-U)) U``; the two roll-outs of a pair
        share their noise (common random numbers), which removes most roll-out variance.
    oracle : {"rollout", "exact"}
        ``"exact"`` replaces ``J~`` by the exact ``J``.

    Raises
    ------
    RolloutOverflowError
        If a roll-out overflowed (perturbed gain far from stabilising).
    UnstablePolicyError
        With ``oracle="exact"``, if a perturbed gain is not stabilising.
    """
    batch = as_batch(task)
    Kb = check_gain(batch, K)
    M, r, length = _check_common(n_perturbations, rollout_length, radius, oracle)
    rng = as_rng(rng)
    n, k, d = batch.n, batch.k, batch.d
    sg = _signs(two_point)
    U = sphere_perturbations(rng, (n, M, k, d), r, backend)
    gains = perturbed_gains(Kb.reshape(n, -1), U.reshape(n, M, -1), two_point,
                            backend).reshape(n, M, sg.size, k, d)                   # K + s U
    task_index = np.broadcast_to(np.arange(n)[:, None, None], gains.shape[:3])
    noise = np.broadcast_to(np.arange(n * M).reshape(n, M, 1), gains.shape[:3])  # pairs share noise
    J = _Evaluator(batch, oracle, length, backend, rng)(task_index, gains, noise, "zo_gradient")
    return batch.out(_combine(J, U, two_point, d * k, r))


def zo_maml_gradient(tasks: Any, K: Any, *, eta: float, n_perturbations: int = 100,
                     inner_perturbations: int | None = None, rollout_length: int = 50,
                     radius: float = 0.05, rng: Any = None, backend: str | None = None,
                     task_batch: int | None = None, two_point: bool = False,
                     oracle: Oracle = "rollout") -> np.ndarray:
    """Hessian-free zeroth-order meta-gradient, Algorithm 2 of the ZO-MAML paper.

    For each task ``i`` of the batch and outer perturbation ``U_m``: estimate
    ``grad~ J_i(K + U_m)`` with Algorithm 1 (``inner_perturbations`` perturbations), adapt
    ``K_m^i = K + U_m - eta grad~ J_i(K + U_m)`` (Eq. (6)), roll it out, and return
    ``(1/|T|) sum_i (1/M) sum_m (dk/r^2) J~_i(K_m^i) U_m``. All inner roll-outs
    (``|T| M M_inner``) run in one engine call and all outer ones in a second.

    Parameters
    ----------
    tasks : TaskSet
    K : array_like, shape (k, d)
    eta : float
        Adaptation rate.
    n_perturbations, inner_perturbations : int
        Outer ``M`` and inner ``M'`` (default ``M``; the paper uses ``M' = M``).
    rollout_length, radius, rng, backend, two_point, oracle
        As in :func:`zo_gradient`, applied to both layers.
    task_batch : int, optional
        Sample this many tasks without replacement (default: every task once).

    Returns
    -------
    ndarray, shape (k, d)
    """
    ts = as_taskset(tasks)
    batch = as_batch(ts)
    Kb = check_gain(batch, K)[0]
    eta = check_positive(eta, "eta", allow_zero=True)
    M, r, length = _check_common(n_perturbations, rollout_length, radius, oracle)
    Mi = M if inner_perturbations is None else check_positive(inner_perturbations,
                                                              "inner_perturbations", integer=True)
    rng = as_rng(rng)
    n, k, d = batch.n, batch.k, batch.d
    if task_batch is None:
        chosen = np.arange(n)
    else:
        b = check_positive(task_batch, "task_batch", integer=True)
        if b > n:
            raise ValidationError(f"task_batch must be at most the number of tasks ({n}); got {b}.")
        chosen = np.sort(rng.choice(n, size=b, replace=False))
    T = chosen.size
    sg = _signs(two_point)
    S = sg.size
    evaluate = _Evaluator(batch, oracle, length, backend, rng)
    # Outer perturbed gains K_hat[t, m, s] = K + s U[t, m].
    U = sphere_perturbations(rng, (T, M, k, d), r, backend)
    K_hat = Kb + sg[None, None, :, None, None] * U[:, :, None]                      # (T, M, S, k, d)
    # Inner Algorithm 1 at every outer gain: V[t, m, s, j], gains K_hat + s' V.
    V = sphere_perturbations(rng, (T, M, S, Mi, k, d), r, backend)
    inner = perturbed_gains(K_hat.reshape(-1, k * d), V.reshape(-1, Mi, k * d), two_point,
                            backend).reshape(T, M, S, Mi, S, k, d)
    shape_in = inner.shape[:5]
    ti_in = np.broadcast_to(chosen[:, None, None, None, None], shape_in)
    noise_in = np.broadcast_to(np.arange(T * M * S * Mi).reshape(T, M, S, Mi, 1), shape_in)
    J_in = evaluate(ti_in, inner, noise_in, "zo_maml_gradient (inner Algorithm 1)")
    g_hat = _combine(J_in, V, two_point, d * k, r)                                 # (T, M, S, k, d)
    K_adapted = K_hat - eta * g_hat                                                # Eq. (6)
    ti_out = np.broadcast_to(chosen[:, None, None], K_adapted.shape[:3])
    noise_out = np.broadcast_to(np.arange(T * M).reshape(T, M, 1), K_adapted.shape[:3])
    J_out = evaluate(ti_out, K_adapted, noise_out, "zo_maml_gradient (adapted roll-outs)")
    return _combine(J_out, U, two_point, d * k, r).mean(axis=0)
