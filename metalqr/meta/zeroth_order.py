"""Zeroth-order gradient and meta-gradient estimation: Algorithms 1 and 2 of the ZO-MAML paper.

Both estimators evaluate many perturbed gains in one call of the rollout engine
(:mod:`metalqr.rollouts`), batched over tasks x outer x inner perturbations, or, with
``oracle="exact"``, with the exact cost ``J`` (to study the estimator apart from roll-out noise).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from .._validation import (as_rng, check_bool, check_choice, check_int, check_positive,
                           check_size)
from ..exceptions import (RolloutOverflowError, UnstablePolicyError, ValidationError,
                          ValidationTypeError)
from ..lqr.policy import check_gain, costs_indexed
from ..lqr.tasks import Batch, as_batch
from ..rollouts.backends import check_backend, get_backend, perturbed_gains, sphere_points
from ..rollouts.counter_rng import draw_key
from ..rollouts.engine import DIVERGENCE_FACTOR, factors_of, run_rollouts
from .objective import as_taskset, meta_gain

__all__ = ["zo_gradient", "zo_maml_gradient", "sphere_perturbations"]

Oracle = Literal["rollout", "exact"]


def _check_shape(shape: Any, name: str = "shape") -> tuple[int, ...]:
    """Return a tuple of at least two positive ints ending in ``(k, d)``."""
    if isinstance(shape, (str, bytes, np.ndarray)) or not isinstance(shape, (tuple, list)):
        raise ValidationTypeError(f"{name} must be a tuple of ints ending in (k, d), e.g. "
                                  f"(M, k, d); got {shape!r}.")
    if len(shape) < 2:
        raise ValidationError(f"{name} must have at least two entries (k, d); got {shape!r}.")
    return tuple(check_int(n, f"{name}[{i}]", minimum=1) for i, n in enumerate(shape))


def sphere_perturbations(rng: Any, shape: tuple[int, ...], radius: float,
                         backend: str | None = None) -> np.ndarray:
    """I.i.d. matrices uniform on the Frobenius sphere of radius ``radius``.

    Normalised Gaussians from the counter-based generator (key drawn from ``rng``), so every
    backend draws the same perturbations (the ``U_m`` of Algorithms 1 and 2 of the ZO-MAML
    paper).

    Parameters
    ----------
    rng : numpy.random.Generator, int seed >= 0 or None
        Source of the generator's key.
    shape : tuple of int
        ``(..., k, d)``: any number (>= 0) of leading axes, then the matrix shape; every
        entry >= 1.
    radius : float
        Frobenius norm of each matrix, finite and > 0.
    backend : str, optional
        A name of :func:`metalqr.rollouts.known_backends` (``"numba"``, ``"numpy"``,
        ``"cupy"``; default ``METALQR_BACKEND`` or ``"numba"``).

    Returns
    -------
    ndarray
        Of the given shape; each trailing ``(k, d)`` matrix has Frobenius norm ``radius``.

    Raises
    ------
    ValidationError
        On a malformed shape, a radius that is not finite and positive, an unknown backend,
        or a request above metalqr's size limit.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Algorithms 1 and 2 (the perturbations ``U_m``).
    """
    shape = _check_shape(shape)
    radius = check_positive(radius, "radius")
    backend = check_backend(backend)
    rng = as_rng(rng)
    total = float(np.prod([float(n) for n in shape]))
    check_size(total, "sphere_perturbations", what="float64 entries",
               alternative="Request fewer perturbations (the leading axes of shape).")
    rows, n = int(np.prod(shape[:-2], dtype=np.int64)), shape[-2] * shape[-1]
    return sphere_points(draw_key(rng), rows, n, radius, backend).reshape(shape)


class _Evaluator:
    """Cost oracle shared by the estimators: exact ``J`` or empirical roll-out costs."""

    def __init__(self, batch: Batch, oracle: str, length: int | None, backend: str | None,
                 rng: np.random.Generator) -> None:
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
    """Combine costs and perturbations into a zeroth-order estimate.

    ZO estimate from costs ``J[..., m, s]`` and perturbations ``U[..., m, k, d]``: one-point
    ``(dk/r^2) mean_m J_m U_m``; two-point ``(dk/(2 r^2)) mean_m (J_m^+ - J_m^-) U_m``.
    """
    coeff = J[..., 0] - J[..., 1] if two_point else J[..., 0]
    scale = dk / radius**2 / (2.0 if two_point else 1.0)
    return scale * np.einsum("...m,...mij->...ij", coeff, U) / U.shape[-3]


def _check_common(n_perturbations, rollout_length, radius, oracle, backend, two_point):
    """Validate the estimators' shared options; return ``(M, r, l, backend, two_point, oracle)``."""
    oracle = check_choice(oracle, "oracle", ("rollout", "exact"))
    M = check_positive(n_perturbations, "n_perturbations", integer=True)
    r = check_positive(radius, "radius")
    length = None if oracle == "exact" else check_positive(rollout_length, "rollout_length",
                                                           integer=True)
    backend = check_backend(backend)
    if oracle == "rollout":
        get_backend(backend)                          # raises if it cannot run here
    return M, r, length, backend, check_bool(two_point, "two_point"), oracle


def _check_work(what: str, n_gains: float, kd: int, length: int | None) -> None:
    """Refuse an estimator call whose perturbed gains or roll-out work exceed the limits."""
    check_size(n_gains * kd, what, what="float64 entries of perturbed gains",
               alternative="Use fewer perturbations (n_perturbations, inner_perturbations) "
                           "or a task_batch.")
    if length is not None:
        check_size(n_gains * length * kd, what, what="roll-out steps x gain entries",
                   limit=ROLLOUT_WORK_LIMIT,
                   alternative="Use fewer perturbations, a shorter rollout_length or a "
                               "task_batch.")


#: Largest ``roll-outs x length x k d`` an estimator call may simulate (about an hour of
#: compiled roll-outs on one core).
ROLLOUT_WORK_LIMIT = 1e13


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
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        The gain(s) at which the gradient is estimated.
    n_perturbations : int
        ``M`` (>= 1).
    rollout_length : int
        ``l`` (ignored with ``oracle="exact"``).
    radius : float
        Smoothing radius ``r``.
    rng : Generator or seed
        Source of the perturbations and of the roll-outs' noise.
    backend : str, optional
        A name of :func:`metalqr.rollouts.known_backends` (``"numba"``, ``"numpy"``,
        ``"cupy"``; default ``METALQR_BACKEND`` or ``"numba"``).
    two_point : bool
        Antithetic estimator ``(dk/(2r^2)) (J~(K+U) - J~(K-U)) U``; the two roll-outs of a pair
        share their noise (common random numbers), which removes most roll-out variance.
    oracle : {"rollout", "exact"}
        ``"exact"`` replaces ``J~`` by the exact ``J``.

    Returns
    -------
    ndarray, shape (k, d) or (n, k, d)
        The estimate, in the gain's shape (one per task for a TaskSet).

    Raises
    ------
    ValidationError
        On malformed arguments (counts >= 1, radius finite and > 0, known backend and
        oracle names, ``two_point`` a bool), or a request above metalqr's size limits.
    RolloutOverflowError
        If a roll-out overflowed or diverged (perturbed gain far from stabilising).
    UnstablePolicyError
        With ``oracle="exact"``, if a perturbed gain is not stabilising.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Algorithm 1 and Eq. (5).

    Examples
    --------
    >>> import numpy as np
    >>> from metalqr import double_integrator, gradient, zo_gradient
    >>> task, K = double_integrator(), np.array([[1.0, 1.5]])
    >>> g = zo_gradient(task, K, n_perturbations=400, rng=0, two_point=True, oracle="exact")
    >>> g.shape, bool(np.linalg.norm(g - gradient(task, K)) < 0.2 * np.linalg.norm(g))
    ((1, 2), True)
    """
    batch = as_batch(task)
    Kb = check_gain(batch, K)
    M, r, length, backend, two_point, oracle = _check_common(
        n_perturbations, rollout_length, radius, oracle, backend, two_point)
    rng = as_rng(rng)
    n, k, d = batch.n, batch.k, batch.d
    _check_work("zo_gradient", float(n) * M * (2 if two_point else 1), k * d, length)
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
    tasks : TaskSet (or LQRTask)
        The task family ``T``.
    K : array_like, shape (k, d)
        The meta-gain (no per-task axis).
    eta : float
        Adaptation rate (finite, >= 0).
    n_perturbations, inner_perturbations : int
        Outer ``M`` and inner ``M'`` (default ``M``; the paper uses ``M' = M``).
    rollout_length : int
        Roll-out length ``l`` of both layers (ignored with ``oracle="exact"``).
    radius : float
        Smoothing radius ``r`` of both layers.
    rng : Generator or seed
        Source of the task batch, the perturbations and the roll-outs' noise.
    backend : str, optional
        Roll-out backend (see :func:`zo_gradient`).
    task_batch : int, optional
        Sample this many tasks without replacement (default: every task once).
    two_point : bool
        Antithetic estimator in both layers (see :func:`zo_gradient`).
    oracle : {"rollout", "exact"}
        ``"exact"`` replaces the empirical costs by the exact ones.

    Returns
    -------
    ndarray, shape (k, d)
        The estimate of the meta-gradient ``grad L(K)``.

    Raises
    ------
    ValidationError, RolloutOverflowError, UnstablePolicyError
        As :func:`zo_gradient`; also ``task_batch`` larger than the number of tasks.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Algorithm 2 (with Algorithm 1 inside and the
    adaptation of Eq. (6)).

    Examples
    --------
    The estimate approaches the exact meta-gradient of :func:`metalqr.maml_gradient`:

    >>> import numpy as np
    >>> from metalqr import maml_gradient, sample_tasks, zo_maml_gradient
    >>> tasks = sample_tasks(3, 2, 1, rng=0)
    >>> K = np.zeros((1, 2))
    >>> g = zo_maml_gradient(tasks, K, eta=1e-3, n_perturbations=100, rng=1, two_point=True)
    >>> g_exact = maml_gradient(tasks, K, eta=1e-3)
    >>> g.shape, bool(np.linalg.norm(g - g_exact) < 0.25 * np.linalg.norm(g_exact))
    ((1, 2), True)
    """
    ts = as_taskset(tasks)
    batch = as_batch(ts)
    Kb = meta_gain(batch, K)[0]
    eta = check_positive(eta, "eta", allow_zero=True)
    M, r, length, backend, two_point, oracle = _check_common(
        n_perturbations, rollout_length, radius, oracle, backend, two_point)
    Mi = M if inner_perturbations is None else check_positive(inner_perturbations,
                                                              "inner_perturbations", integer=True)
    rng = as_rng(rng)
    n, k, d = batch.n, batch.k, batch.d
    if task_batch is not None:
        b = check_positive(task_batch, "task_batch", integer=True)
        if b > n:
            raise ValidationError(f"task_batch must be at most the number of tasks ({n}); got {b}.")
    S_ = 2 if two_point else 1
    _check_work("zo_maml_gradient", float(n if task_batch is None else task_batch) * M * S_
                * (Mi * S_ + 1), k * d, length)
    if task_batch is None:
        chosen = np.arange(n)
    else:
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
