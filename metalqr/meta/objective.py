"""The MAML meta-objective for LQR and its exact gradient (Section 3.2 of the ZO-MAML paper).

``L(K) = sum_i w_i J_i(K - eta grad J_i(K))`` (Eq. (4), with weights ``w`` summing to one)
and ``grad L(K) = sum_i w_i (I - eta Hess J_i(K)) [grad J_i(K_i')]``, ``K_i' = K - eta grad J_i(K)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import as_float_array, check_positive, format_radius
from ..exceptions import (NotMAMLStabilizingError, NotMetaLearnableError, UnstablePolicyError,
                          ValidationError, ValidationTypeError)
from ..lqr.lyapunov import spectral_radius_of
from ..lqr.policy import check_gain, closed_loop, cost, evaluate_batch
from ..lqr.riccati import optimal_gain
from ..lqr.tasks import LQRTask, TaskSet, as_batch

__all__ = [
    "maml_objective", "maml_gradient", "first_order_maml_gradient", "is_maml_stabilizing",
    "adapted_gains", "cost_gap_ratio", "optimal_costs", "check_meta_learnable",
    "common_stabilizing_gain", "unstabilisable_mode",
    # building blocks for metalqr.meta's other modules and metalqr.theory (not re-exported):
    "as_taskset", "meta_gain",
]


def as_taskset(tasks: Any) -> TaskSet:
    """Return a TaskSet from a TaskSet or a single LQRTask."""
    if isinstance(tasks, TaskSet):
        return tasks
    if isinstance(tasks, LQRTask):
        return TaskSet([tasks])
    raise ValidationTypeError(f"tasks must be a TaskSet (or an LQRTask); got "
                              f"{type(tasks).__name__}. Build one with metalqr.TaskSet([...]).")


def meta_gain(batch, K: Any, name: str = "K") -> np.ndarray:
    """Validate the one meta-gain ``K`` shared by every task.

    Validate the one meta-gain ``K`` of shape ``(k, d)`` shared by every task (a stack of
    per-task gains is rejected: it is not a meta-gain); returns it broadcast to ``(n, k, d)``.
    """
    Kb = check_gain(batch, K, name)
    if np.ndim(K) != 2:
        raise ValidationError(f"{name} must be one meta-gain of shape (k, d) = ({batch.k}, "
                              f"{batch.d}) shared by all tasks; got shape {np.shape(K)} (a "
                              f"stack of per-task gains is not a meta-gain).")
    return Kb


def _weights(weights: Any, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = as_float_array(weights, "weights", shape=(n,))
    if np.any(w < 0) or w.sum() <= 0 or not np.isfinite(w.sum()):
        raise ValidationError("weights must be non-negative with a positive sum; got "
                              f"{np.array2string(w, precision=3)}.")
    return w / w.sum()


def _eta(eta: Any) -> float:
    return check_positive(eta, "eta", allow_zero=True)


def adapted_gains(tasks: Any, K: Any, eta: float) -> np.ndarray:
    """Return the one-step adapted gains ``K_i' = K - eta grad J_i(K)`` (Eq. (6)).

    One-step adapted gains ``K_i' = K - eta grad J_i(K)``, shape (n, k, d) (Eq. (6) of the
    ZO-MAML paper with the exact gradient).

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family (a single LQRTask counts as one task).
    K : array_like, shape (k, d)
        The meta-gain shared by all tasks (a per-task stack (n, k, d) is rejected).
    eta : float
        Adaptation rate, finite and >= 0.

    Returns
    -------
    ndarray, shape (n, k, d)
        One adapted gain per task.

    Raises
    ------
    NotMAMLStabilizingError
        If ``K`` does not stabilise some task.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Eq. (6) (with the exact gradient, Eq. (2)).
    """
    ts = as_taskset(tasks)
    batch = as_batch(ts)
    Kb = meta_gain(batch, K)
    eta = _eta(eta)
    ev = _evaluate_maml(batch, Kb, "adapted_gains")
    return Kb - eta * ev.gradient


def _evaluate_maml(batch, Kb, what, eta=None):
    """Evaluate, reporting instability as a violation of Definition 1.

    :func:`~metalqr.lqr.policy.evaluate_batch` that reports instability as a violation of
    Definition 1: of ``K`` itself, or (``eta`` given, ``Kb`` = adapted gains) of the adapted
    gains.
    """
    try:
        return evaluate_batch(batch, Kb, what)
    except UnstablePolicyError as err:
        i = 0 if err.task_index is None else err.task_index
        if eta is None:
            detail = (f"K does not stabilise task {i}. Start from a gain that stabilises every "
                      f"task, e.g. metalqr.common_stabilizing_gain(tasks)")
        else:
            detail = (f"the adapted gain K - eta grad J_{i}(K) does not stabilise task {i}; "
                      f"reduce eta (= {eta:g})")
        raise NotMAMLStabilizingError(
            f"{what}: K is not MAML-stabilising (Definition 1): {detail} (spectral radius "
            f"{format_radius(err.spectral_radius)}).", task_index=i, spectral_radius=err.spectral_radius) from None


def is_maml_stabilizing(tasks: Any, K: Any, eta: float) -> bool:
    """Return whether ``K`` is MAML-stabilising for ``eta`` (Definition 1).

    Definition 1: ``rho(A_i - B_i K) < 1`` and ``rho(A_i - B_i (K - eta grad J_i(K))) < 1`` for
    every task.

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family (a single LQRTask counts as one task).
    K : array_like, shape (k, d)
        The meta-gain shared by all tasks (a per-task stack (n, k, d) is rejected).
    eta : float
        Adaptation rate, finite and >= 0.

    Returns
    -------
    bool
        True when ``K`` and every adapted gain stabilise their task.

    Raises
    ------
    ValidationError
        On malformed arguments.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Definition 1.
    """
    ts = as_taskset(tasks)
    batch = as_batch(ts)
    Kb = meta_gain(batch, K)
    eta = _eta(eta)
    if np.any(spectral_radius_of(closed_loop(batch, Kb)) >= 1.0):
        return False
    K_ad = Kb - eta * evaluate_batch(batch, Kb, "is_maml_stabilizing").gradient
    return bool(np.all(spectral_radius_of(closed_loop(batch, K_ad)) < 1.0))


def maml_objective(tasks: Any, K: Any, eta: float, weights: Any = None) -> float:
    """Eq. (4): ``L(K) = sum_i w_i J_i(K - eta grad J_i(K))`` (uniform weights by default).

    Returns ``math.inf`` when ``K`` is not MAML-stabilising (like :func:`metalqr.cost`).

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family (a single LQRTask counts as one task).
    K : array_like, shape (k, d)
        The meta-gain shared by all tasks (a per-task stack (n, k, d) is rejected).
    eta : float
        Adaptation rate, finite and >= 0.
    weights : array_like, shape (n,), optional
        Task weights, finite, >= 0 with a positive sum (normalised; uniform by default).

    Returns
    -------
    float
        ``L(K)``; ``inf`` when ``K`` is not MAML-stabilising.

    Raises
    ------
    ValidationError
        On malformed arguments.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Eq. (4) with the adaptation of Eq. (6).
    """
    ts = as_taskset(tasks)
    w = _weights(weights, len(ts))
    meta_gain(as_batch(ts), K)
    _eta(eta)
    if not is_maml_stabilizing(ts, K, eta):
        return math.inf
    J = cost(ts, adapted_gains(ts, K, eta))
    return float(np.dot(w, J)) if np.all(np.isfinite(J)) else math.inf


def maml_gradient(tasks: Any, K: Any, eta: float, weights: Any = None) -> np.ndarray:
    """Exact meta-gradient ``sum_i w_i (I - eta Hess J_i(K)) [grad J_i(K_i')]``.

    Uses the true (symmetric) Hessian-vector product of :func:`metalqr.hessian_vp`, so
    ``(I - eta H)`` applied to ``grad J_i(K_i')`` is exact. With ``eta = 0`` it is the mean
    gradient.

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family (a single LQRTask counts as one task).
    K : array_like, shape (k, d)
        The meta-gain shared by all tasks (a per-task stack (n, k, d) is rejected).
    eta : float
        Adaptation rate, finite and >= 0.
    weights : array_like, shape (n,), optional
        Task weights, finite, >= 0 with a positive sum (normalised; uniform by default).

    Returns
    -------
    ndarray, shape (k, d)
        The exact meta-gradient ``grad L(K)``.

    Raises
    ------
    ValidationError
        On malformed arguments.
    NotMAMLStabilizingError
        If ``K`` or an adapted gain ``K_i'`` does not stabilise its task.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], the gradient of Eq. (4) through the adaptation of Eq. (6)
    (the Hessian term as in Eq. (3), with the true Hessian-vector product).

    Examples
    --------
    >>> import numpy as np
    >>> from metalqr import maml_gradient, sample_tasks
    >>> tasks = sample_tasks(3, 2, 1, rng=0)
    >>> g = maml_gradient(tasks, np.zeros((1, 2)), eta=1e-3)
    >>> g.shape
    (1, 2)
    """
    batch, w, eta, ev, G_ad = _adapted_step(tasks, K, eta, weights, "maml_gradient")
    per_task = G_ad - eta * ev.hessian_vp(G_ad)
    return np.einsum("n,nij->ij", w, per_task)


def first_order_maml_gradient(tasks: Any, K: Any, eta: float, weights: Any = None) -> np.ndarray:
    """First-order MAML: ``sum_i w_i grad J_i(K_i')`` (the Hessian term dropped).

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family (a single LQRTask counts as one task).
    K : array_like, shape (k, d)
        The meta-gain shared by all tasks (a per-task stack (n, k, d) is rejected).
    eta : float
        Adaptation rate, finite and >= 0.
    weights : array_like, shape (n,), optional
        Task weights, finite, >= 0 with a positive sum (normalised; uniform by default).

    Returns
    -------
    ndarray, shape (k, d)
        ``sum_i w_i grad J_i(K_i')``.

    Raises
    ------
    ValidationError
        On malformed arguments.
    NotMAMLStabilizingError
        If ``K`` or an adapted gain does not stabilise its task.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Eq. (4) and Eq. (6) (first-order MAML drops the Hessian
    term of the meta-gradient).
    """
    _, w, _, _, G_ad = _adapted_step(tasks, K, eta, weights, "first_order_maml_gradient")
    return np.einsum("n,nij->ij", w, G_ad)


def _adapted_step(tasks, K, eta, weights, what):
    """Evaluate at ``K`` and at the adapted gains (shared part of the meta-gradients).

    Shared part of the meta-gradients: the evaluation at ``K`` and the gradients ``grad
    J_i(K_i')`` at the adapted gains.
    """
    ts = as_taskset(tasks)
    batch = as_batch(ts)
    eta = _eta(eta)
    w = _weights(weights, len(ts))
    Kb = meta_gain(batch, K)
    ev = _evaluate_maml(batch, Kb, what)
    G_ad = _evaluate_maml(batch, Kb - eta * ev.gradient, what, eta).gradient
    return batch, w, eta, ev, G_ad


def optimal_costs(tasks: Any) -> np.ndarray:
    """``J_i(K_i*)`` of every task (shape (n,)).

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family.

    Returns
    -------
    (n,) ndarray
        ``J_i(K_i*)`` of each task.

    Raises
    ------
    ValidationError
        A malformed task set, or a task without a stabilising DARE solution.
    """
    ts = as_taskset(tasks)
    K_star, _ = optimal_gain(ts)
    return np.asarray(cost(ts, K_star))


def cost_gap_ratio(tasks: Any, K: Any, J_star: Any = None) -> float:
    """Figure 1 metric: ``(sum_i J_i(K) - sum_i J_i(K_i*)) / sum_i J_i(K_i*)``.

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family (a single LQRTask counts as one task).
    K : array_like, shape (k, d), or (n, k, d) (one gain per task, e.g. adapted gains)
        The gain(s) evaluated.
    J_star : array_like, shape (n,), optional
        The optimal costs ``J_i(K_i*)`` (from :func:`optimal_costs`), to avoid re-solving
        the DAREs: finite, >= 0, with a positive sum.

    Returns
    -------
    float
        ``inf`` if ``K`` does not stabilise some task.

    Raises
    ------
    ValidationError
        On a malformed ``J_star`` (wrong length, negative entries, zero sum) or gain.
    """
    ts = as_taskset(tasks)
    if J_star is None:
        J_star = optimal_costs(ts)
    else:
        J_star = as_float_array(J_star, "J_star", shape=(len(ts),))
        if np.any(J_star < 0) or float(np.sum(J_star)) <= 0.0:
            raise ValidationError(f"J_star must hold the optimal costs J_i(K_i*) >= 0 of the "
                                  f"{len(ts)} tasks with a positive sum (use "
                                  f"metalqr.optimal_costs(tasks)); got "
                                  f"{np.array2string(J_star, precision=4, threshold=8)}.")
    total = float(np.sum(cost(ts, K)))
    return (total - float(np.sum(J_star))) / float(np.sum(J_star))


#: Relative tolerance of the PBH rank test (scaled by ``max(||A||_2, ||B||_2, 1)``).
PBH_RTOL = 1e-10


def unstabilisable_mode(A: np.ndarray, B: np.ndarray):
    """Return an unstabilisable eigenvalue of ``(A, B)`` by the PBH test, or None.

    Popov-Belevitch-Hautus test per eigenspace: an eigenvalue ``lambda`` of ``A`` with
    ``|lambda| >= 1`` and ``rank [A - lambda I, B] < d``, or ``None`` if there is none.

    Eigenvalues are grouped into clusters of numerically coincident values (a repeated or
    defective eigenvalue is computed as a cloud of radius up to ``(eps ||A||)^(1/m)``; two
    eigenvalues belong together when they differ by less than ten times their error
    estimates ``eps ||A|| cond(lambda)``), and each cluster is tested once at its mean, with
    ranks from the singular values of ``[A - lambda I, B]`` and a tolerance scaled by
    ``||[A, B]||`` and the cluster's spread. Testing one eigenvector per eigenvalue (the old
    test) misses a repeated eigenvalue whose eigenspace ``B`` reaches only in part, e.g.
    ``A = 2 I``, ``B = [1, 1]'`` (issue 13, part B).

    Returns
    -------
    (lam, rank, w) or None
        The eigenvalue (complex), the numerical rank of ``[A - lam I, B]`` and a unit left
        null vector ``w`` (``w'(A - lam I) ~ 0``, ``w'B ~ 0``).
    """
    import scipy.linalg

    d = A.shape[0]
    eps = np.finfo(float).eps
    normA = float(np.linalg.norm(A, 2))
    scale = max(normA, float(np.linalg.norm(B, 2)), 1.0)
    lam, VL, VR = scipy.linalg.eig(A, left=True, right=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = 1.0 / np.abs(np.einsum("ij,ij->j", VL.conj(), VR))
    cond = np.where(np.isfinite(cond), cond, 1.0 / eps)
    err = eps * max(normA, 1e-300) * cond                          # eigenvalue error estimates
    # Clusters: connected components of |lam_i - lam_j| <= 10 (err_i + err_j) + tiny.
    label = np.arange(d)
    for a in range(d):
        for b in range(a + 1, d):
            if abs(lam[a] - lam[b]) <= 10.0 * (err[a] + err[b]) + PBH_RTOL * scale:
                la, lb = label[a], label[b]
                label[label == lb] = la
    for c in np.unique(label):
        members = np.flatnonzero(label == c)
        mu = complex(np.mean(lam[members]))
        if abs(mu) < 1.0 and np.max(np.abs(lam[members])) < 1.0:
            continue
        spread = float(np.max(np.abs(lam[members] - mu)))
        M = np.hstack([A - mu * np.eye(d), B.astype(complex)])
        U, sv, _ = np.linalg.svd(M)
        tol = PBH_RTOL * scale + 10.0 * spread + 10.0 * float(np.max(err[members]))
        rank = int(np.sum(sv > tol))
        if rank < d:
            w = U[:, d - 1].conj()
            w = w / w[np.argmax(np.abs(w))] * (np.abs(w).max() / np.linalg.norm(w))
            if abs(mu.imag) <= tol:
                mu, w = complex(mu.real), w.real.astype(complex)
                w = w / np.linalg.norm(w)
            return mu, rank, w
    return None


def check_meta_learnable(tasks: Any) -> None:
    """Raise :class:`NotMetaLearnableError` when the tasks provably share no stabilising gain.

    Detected cases: a task that no gain stabilises (an eigenvalue ``|lambda| >= 1`` with
    ``rank [A - lambda I, B] < d``: the PBH test per eigenspace, repeated and defective
    eigenvalues included, see ``unstabilisable_mode``), and for scalar systems (d = k = 1) disjoint stabilising intervals
    ``{K : |a_i - b_i K| < 1}`` (the example of Section 3.2 of the ZO-MAML paper). Passing
    this check does not prove that a common stabilising gain exists.

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family.

    Raises
    ------
    NotMetaLearnableError
        A detected case (the message names the task or the intervals).
    ValidationError
        A malformed task set.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Section 3.2 and Definition 2.
    """
    ts = as_taskset(tasks)
    for i, t in enumerate(ts):
        mode = unstabilisable_mode(t.A, t.B)
        if mode is not None:
            lam, rank, w = mode
            lam_s = f"{lam.real:.4g}" if lam.imag == 0 else f"{lam:.4g}"
            w_s = np.array2string(w.real if np.all(w.imag == 0) else w, precision=4)
            raise NotMetaLearnableError(
                f"task {i} is not stabilisable: for its eigenvalue {lam_s} (|lambda| = "
                f"{abs(lam):.4g} >= 1) rank [A - lambda I, B] = {rank} < d = {t.d} (PBH test); "
                f"w = {w_s} satisfies w'A = lambda w' and w'B = 0, so no gain moves this mode "
                f"and the task set cannot be meta-learned. Remove the task or give it an input "
                f"that reaches this mode.")
    if ts.d == 1 and ts.k == 1:
        lo, hi = -math.inf, math.inf
        for t in ts:
            a, b = float(t.A[0, 0]), float(t.B[0, 0])
            if b == 0.0:
                continue  # |a| < 1 here, else the PBH test above raised
            ends = sorted(((a - 1.0) / b, (a + 1.0) / b))
            lo, hi = max(lo, ends[0]), min(hi, ends[1])
        if lo >= hi:
            intervals = ", ".join(
                f"({min((float(t.A[0, 0]) - 1) / float(t.B[0, 0]), (float(t.A[0, 0]) + 1) / float(t.B[0, 0])):.4g}, "
                f"{max((float(t.A[0, 0]) - 1) / float(t.B[0, 0]), (float(t.A[0, 0]) + 1) / float(t.B[0, 0])):.4g})"
                for t in ts if float(t.B[0, 0]) != 0.0)
            raise NotMetaLearnableError(
                f"the scalar tasks share no stabilising gain: their stabilising intervals {intervals} "
                f"do not intersect, so the task set cannot be meta-learned (Section 3.2 of the "
                f"ZO-MAML paper).")


def common_stabilizing_gain(tasks: Any) -> np.ndarray:
    """Return a gain that stabilises every task, found by trying ``0``, each ``K_i*`` and their mean.

    Parameters
    ----------
    tasks : TaskSet (or LQRTask)
        The task family.

    Returns
    -------
    ndarray, shape (k, d)
        A gain that stabilises every task.

    Raises
    ------
    NotMetaLearnableError
        If :func:`check_meta_learnable` proves that none exists.
    ValidationError
        If none of the candidates works (one may still exist: supply it yourself).
    """
    ts = as_taskset(tasks)
    check_meta_learnable(ts)
    K_star, _ = optimal_gain(ts)
    candidates = [np.zeros((ts.k, ts.d)), K_star.mean(axis=0)] + list(K_star)
    batch = as_batch(ts)
    for K in candidates:
        if np.all(spectral_radius_of(closed_loop(batch, check_gain(batch, K))) < 1):
            return np.array(K)
    raise ValidationError("no common stabilising gain among 0, the tasks' optimal gains and their "
                          "mean; pass a stabilising K0 explicitly.")
