"""Exact policy evaluation, policy gradient and Hessian for LQR.

Section 3.1 and Proposition 1 of the ZO-MAML paper. Batched over the tasks of a :class:`TaskSet`.

Notation: ``A_K = A - B K``, ``P_K = A_K' P_K A_K + Q + K'RK``, ``Sigma_K = A_K Sigma_K A_K' + Psi``
(Eq. (1)), ``E_K = (R + B'P_K B) K - B'P_K A`` and ``J(K) = Tr(P_K Psi) = Tr((Q + K'RK) Sigma_K)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from .._parallel import blas_single_thread, map_chunks
from .._validation import as_float_array, check_size, format_radius
from ..exceptions import UnstablePolicyError, ValidationError, ValidationTypeError
from .lyapunov import (KRON_MAX_D, _lyapunov_pair_serial, dlyap_unchecked, lyapunov_pair,
                       lyapunov_pair_one, spectral_radius_of)
from .tasks import Batch, TaskLike, as_batch

__all__ = [
    "spectral_radius", "is_stabilizing", "cost", "gradient", "hessian_vp", "hessian",
    "natural_gradient", "gauss_newton_direction", "evaluate", "PolicyEvaluation",
    # building blocks for the other metalqr packages (not re-exported by metalqr.lqr):
    "check_gain", "closed_loop", "evaluate_batch", "costs_indexed", "hessian_entries",
]


def _T(X: np.ndarray) -> np.ndarray:
    return np.swapaxes(X, -1, -2)


def check_gain(batch: Batch, K: Any, name: str = "K") -> np.ndarray:
    """Validate a gain for ``batch``: shape (k, d), or (n, k, d) for a TaskSet of n tasks.

    Returns it broadcast to (n, k, d).
    """
    n, d, k = batch.n, batch.d, batch.k
    if (n == 1 and type(K) is np.ndarray and K.dtype == np.float64 and K.shape == (k, d)
            and np.isfinite(K).all()):
        # Fast path (issue 15): already a finite real (k, d) float64 array, i.e. what
        # as_float_array would return; copied (the caller may change K afterwards).
        Kb = K.copy()[None]
        Kb.flags.writeable = False
        return Kb
    if K is None:
        per_task = "" if batch.single else f" or ({n}, {k}, {d}) (one gain per task)"
        raise ValidationTypeError(f"{name} must be a real array of shape (k, d) = ({k}, {d}){per_task}; "
                                  f"got None.")
    K = as_float_array(K, name)
    if K.shape == (k, d):
        return np.broadcast_to(K, (n, k, d))
    if not batch.single and K.shape == (n, k, d):
        return K
    if K.shape == (d, k) and d != k:
        raise ValidationError(f"{name} must have shape (k, d) = ({k}, {d}) for u = -K x; got {K.shape}. "
                              f"Did you pass K transposed?")
    per_task = "" if batch.single else f" or ({n}, {k}, {d}) (one gain per task)"
    raise ValidationError(f"{name} must have shape (k, d) = ({k}, {d}){per_task}; got {K.shape}.")


def closed_loop(batch: Batch, K: np.ndarray) -> np.ndarray:
    """Return ``A - B K`` for every task.

    ``A - B K`` for every task, shape (n, d, d) (``inf`` entries where a huge finite ``K``
    overflows; they count as unstable).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return batch.A - batch.B @ K


@dataclass(frozen=True)
class PolicyEvaluation:  # numpydoc ignore=PR01
    """Exact quantities of a stabilising gain, one leading task axis.

    The arrays are read-only views (an evaluation is a record of one gain; change ``K`` and
    call :func:`evaluate` again); :attr:`cost` and :attr:`gradient` return read-only arrays.

    Attributes
    ----------
    K, AK, P, Sigma, E, RBPB : ndarray, shapes (n, k, d), (n, d, d), (n, d, d), (n, d, d), (n, k, d), (n, k, k)
        Gain, closed loop ``A - BK``, value matrix ``P_K``, covariance ``Sigma_K``,
        ``E_K`` and ``R + B'P_K B``.
    Psi : ndarray, shape (n, d, d), or None
        Noise covariance of each task (for :attr:`cost`).
    B : ndarray, shape (n, d, k), or None
        Input matrix of each task (for :meth:`hessian_vp`).
    single : bool
        True when :func:`evaluate` was given a single task (not a TaskSet):
        :meth:`hessian_vp` then returns shape (k, d), as :func:`metalqr.hessian_vp` does.
    """

    K: np.ndarray
    AK: np.ndarray
    P: np.ndarray
    Sigma: np.ndarray
    E: np.ndarray
    RBPB: np.ndarray
    Psi: np.ndarray | None = None
    B: np.ndarray | None = None
    single: bool = False

    def __post_init__(self) -> None:
        for name in ("K", "AK", "P", "Sigma", "E", "RBPB", "Psi", "B"):
            a = getattr(self, name)
            if isinstance(a, np.ndarray) and a.flags.writeable:
                a = a.view()                 # the caller's array keeps its own flag
                a.flags.writeable = False
                object.__setattr__(self, name, a)

    @property
    def cost(self) -> np.ndarray:
        """Proposition 1: ``J(K) = Tr(P_K Psi)`` per task, shape (n,).

        Proposition 1: ``J(K) = Tr(P_K Psi)`` per task, shape (n,), from the same solve of
        ``P_K`` as :attr:`gradient` (``inf`` where it overflows; never NaN). Read-only.
        """
        if self.Psi is None:
            raise ValidationError("this PolicyEvaluation was built without Psi; pass Psi= "
                                  "to read its cost (metalqr.evaluate always does).")
        with np.errstate(over="ignore", invalid="ignore"):
            J = np.einsum("nij,nji->n", self.P, self.Psi)
        J = np.where(np.isfinite(J), J, math.inf)
        J.flags.writeable = False
        return J

    @property
    def gradient(self) -> np.ndarray:
        """Eq. (2): ``2 E_K Sigma_K``, shape (n, k, d), read-only."""
        G = self.__dict__.get("_gradient")
        if G is None:
            G = 2.0 * self.E @ self.Sigma
            G.flags.writeable = False
            object.__setattr__(self, "_gradient", G)
        return G

    def hessian_vp(self, X: Any) -> np.ndarray:
        """Apply the true Hessian of ``J`` at ``K`` to a direction ``X``.

        The Hessian-vector product of :func:`metalqr.hessian_vp`, from this evaluation's
        ``P_K``, ``Sigma_K`` and ``E_K`` (no new solve of the Lyapunov equations of ``K``).
        ``X`` is validated and the result shaped exactly as by :func:`metalqr.hessian_vp`.

        Parameters
        ----------
        X : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks
            The direction: one ``(k, d)`` direction for every task, or one per task (only
            when :func:`evaluate` was given a TaskSet). Real and finite.

        Returns
        -------
        ndarray, shape (k, d) for a single task, else (n, k, d)
            ``Hess J(K)[X]`` (symmetric as an operator).

        Raises
        ------
        ValidationError
            If ``X`` is non-finite or of the wrong shape, or if this evaluation was built
            without ``B``.
        ValidationTypeError
            If ``X`` is complex, boolean or not numeric.

        References
        ----------
        ZO-MAML paper [pan2025zomaml], Eq. (2) differentiated once more (see
        :func:`metalqr.hessian_vp`).
        """
        if self.B is None:
            raise ValidationError("this PolicyEvaluation was built without B; pass B= to "
                                  "apply its Hessian (metalqr.evaluate always does).")
        n, k, d = self.K.shape
        shape = SimpleNamespace(n=n, k=k, d=d, single=self.single)
        H = self._hvp(check_gain(shape, X, name="X"))   # type: ignore[arg-type]
        return H[0] if self.single else H

    def _hvp(self, X: np.ndarray, what: str = "hessian_vp", single: bool | None = None) -> np.ndarray:
        """Unchecked :meth:`hessian_vp` for X of shape (n, k, d) or (n, m, k, d).

        Raises the overflow :class:`ValidationError` (naming ``what``, and the task unless
        ``single``, default :attr:`single`) where the product is not finite.
        """
        X = np.asarray(X, dtype=float)
        one = X.ndim == 3
        Xm = X[:, None] if one else X
        AK, P, S, E = (a[:, None] for a in (self.AK, self.P, self.Sigma, self.E))
        B, RBPB = self.B[:, None], self.RBPB[:, None]
        with np.errstate(over="ignore", invalid="ignore"):     # checked below
            XtE = _T(Xm) @ E
            P_tilde = dlyap_unchecked(_T(AK), XtE + _T(XtE))          # dP_K[X]
            BXSAt = B @ Xm @ S @ _T(AK)
            S_tilde = dlyap_unchecked(AK, -(BXSAt + _T(BXSAt)))        # dSigma_K[X]
            H = 2.0 * (RBPB @ Xm @ S - _T(B) @ P_tilde @ AK @ S + E @ S_tilde)
        bad = ~np.isfinite(H).all(axis=(-2, -1)).all(axis=-1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            single = self.single if single is None else single
            raise _overflow_error(what, self.AK[i], None if single else i,
                                  "Hessian terms (derivatives of P_K and Sigma_K)")
        return H[:, 0] if one else H


def _raise_unstable(rho: np.ndarray, batch: Batch, what: str, error=UnstablePolicyError,
                    gain: str = "K") -> None:
    bad = np.flatnonzero(rho >= 1.0)
    if bad.size:
        i = int(bad[0])
        where = "the task" if batch.single else f"task {i}"
        more = "" if bad.size == 1 else f" ({bad.size} tasks in all: {bad[:10].tolist()})"
        raise error(f"{what} needs a stabilising gain, but {gain} does not stabilise {where}: "
                    f"spectral radius of A - B {gain} is {format_radius(rho[i])} >= 1{more}. Start from a "
                    f"stabilising gain (e.g. metalqr.optimal_gain) or reduce the step size.",
                    task_index=None if batch.single else i, spectral_radius=float(rho[i]))


def _overflow_error(what: str, AK: np.ndarray, i: int | None, quantity: str,
                    gain: str = "K") -> ValidationError:
    """Build the error for a gain that stabilises a task whose values overflow float64.

    ``AK`` is that task's closed loop (d, d); ``i`` its index in a TaskSet (``None`` for a
    single task). Said instead of "not stabilising" (the spectral radius is below 1).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        rho = float(spectral_radius_of(AK[None])[0])
        amax = float(np.max(np.abs(AK)))
    where = "the task" if i is None else f"task {i}"
    return ValidationError(
        f"{what}: {gain} stabilises {where} (spectral radius of A - B {gain} is "
        f"{format_radius(rho)} < 1), but its {quantity} overflow float64 or cannot be computed "
        f"accurately in float64 (they exceed its range, or no solution of the Lyapunov equations "
        f"passed metalqr's accuracy checks; largest |A - B {gain}| entry {amax:.3g}): the task is too "
        f"badly scaled (or A - B {gain} too non-normal) for float64. Rescale the states "
        f"(x -> D x with a diagonal D: A -> D A D^-1, B -> D B, Q -> D^-1 Q D^-1, Psi -> D Psi D, "
        f"{gain} -> {gain} D^-1) so that these matrices have moderate entries; J itself is unchanged "
        f"by that, so if J exceeds about 1e308 scale Q, R or Psi down instead.")


def _check_finite_evaluation(ev: PolicyEvaluation, batch: Batch, what: str) -> None:
    """Raise :func:`_overflow_error` for a task whose ``P_K``, ``Sigma_K``, ``E_K``, ``J`` or gradient is not finite.

    Every task of ``ev`` is stabilised (checked before); a non-finite value means that the
    Lyapunov solutions or the products formed from them exceed the float64 range.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        # screen (two reductions on the small-task fast path): sum(P * Psi) is not finite if
        # some P_K entry is not (inf * 0 is NaN), nor is the sum of G = 2 E Sigma if some entry
        # of E or Sigma is not; a sum of finite values is finite unless it overflows, and then
        # the exact test below decides
        if math.isfinite(float(np.vdot(ev.P, ev.Psi)) + float(ev.gradient.sum())):
            return
        J = np.einsum("nij,nji->n", ev.P, ev.Psi)
        ok = (np.isfinite(J) & np.isfinite(ev.Sigma).all(axis=(1, 2))
              & np.isfinite(ev.gradient).all(axis=(1, 2)) & np.isfinite(ev.E).all(axis=(1, 2)))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise _overflow_error(what, ev.AK[i], None if batch.single else i,
                              "value matrix P_K, covariance Sigma_K, cost J or gradient")


def evaluate(task: TaskLike, K: Any) -> PolicyEvaluation:
    """Solve both Lyapunov equations of Proposition 1 for a stabilising ``K``.

    Returns a :class:`PolicyEvaluation` with a leading task axis (length 1 for a single
    task): ``ev.cost`` (``J(K)``, shape (n,)), ``ev.gradient`` (Eq. (2), shape (n, k, d))
    and ``ev.hessian_vp(X)`` come from one solve of ``P_K`` and ``Sigma_K``, so asking for
    both cost and gradient here costs about half of :func:`cost` followed by :func:`gradient`.

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.

    Returns
    -------
    PolicyEvaluation
        ``K`` (n, k, d), ``AK``, ``P``, ``Sigma`` (n, d, d), ``E`` (n, k, d), ``RBPB`` (n, k, k),
        with :attr:`~PolicyEvaluation.cost` (n,), :attr:`~PolicyEvaluation.gradient` (n, k, d)
        and :meth:`~PolicyEvaluation.hessian_vp`.

    Raises
    ------
    ValidationError
        On a malformed task or gain.
        Also (never ``inf`` or "not stabilising") when ``K`` stabilises a task but its values overflow
        float64 or cannot be computed accurately in it (a badly scaled or strongly non-normal
        ``A - B K``); the message says how to rescale the task.
    UnstablePolicyError
        If ``K`` does not stabilise some task (names the task index and the spectral radius).

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Proposition 1, Eq. (1) and Eq. (2).

    Examples
    --------
    >>> import numpy as np, metalqr
    >>> task = metalqr.double_integrator()
    >>> K = np.array([[1.0, 1.5]])
    >>> ev = metalqr.evaluate(task, K)
    >>> ev.cost.shape, ev.gradient.shape        # a leading task axis of length 1
    ((1,), (1, 1, 2))
    >>> bool(np.isclose(ev.cost[0], metalqr.cost(task, K)))
    True
    """
    batch = as_batch(task)
    Kb = check_gain(batch, K)
    return replace(evaluate_batch(batch, Kb, "evaluate"), single=batch.single)


def evaluate_batch(batch: Batch, Kb: np.ndarray, caller: str) -> PolicyEvaluation:
    """Evaluate stacked gains on an already validated batch (see :func:`evaluate`).

    The building block of the meta-objective and the theory constants (not re-exported by
    :mod:`metalqr.lqr`).

    Parameters
    ----------
    batch : Batch
        From :func:`~metalqr.lqr.tasks.as_batch`.
    Kb : ndarray, shape (n, k, d)
        One gain per task, validated by :func:`check_gain`.
    caller : str
        The public function named in the :class:`~metalqr.UnstablePolicyError` message.

    Returns
    -------
    PolicyEvaluation

    Raises
    ------
    UnstablePolicyError
        If some ``Kb[i]`` does not stabilise task ``i``.
    ValidationError
        If ``Kb[i]`` stabilises task ``i`` but ``P_K``, ``Sigma_K``, ``J`` or the gradient
        overflow float64 (a badly scaled task; the message says how to rescale it).
    """
    if batch.n == 1 and batch.d <= KRON_MAX_D:
        ev = _evaluate_one(batch, Kb, caller)
    elif batch.n > 1 and batch.d > KRON_MAX_D:
        # metalqr's threads split the batch; BLAS threads on top oversubscribe the cores
        with blas_single_thread():
            ev = _evaluate_batched(batch, Kb, caller)
    else:
        ev = _evaluate_batched(batch, Kb, caller)
    _check_finite_evaluation(ev, batch, caller)
    return ev


def _evaluate_batched(batch: Batch, Kb: np.ndarray, what: str) -> PolicyEvaluation:
    if batch.d <= KRON_MAX_D and batch.n >= COMPILED_MIN_BATCH:
        kernel = _compiled_kernel()
        if kernel is not None:
            return _evaluate_compiled(kernel, batch, Kb, what)
    return _evaluate_numpy(batch, Kb, what)


#: Batches of ``d <= KRON_MAX_D`` with at least this many tasks use the compiled kernel
#: :func:`metalqr.lqr._lyap_numba.evaluate_small` when Numba is installed (issue 15: 1000
#: small tasks).
COMPILED_MIN_BATCH = 64
_KERNEL: list = []


def _compiled_kernel():
    """Return the compiled small-task kernel, or None without Numba.

    Return the compiled small-task kernel, or ``None`` without Numba (looked up once; imported
    lazily so that ``import metalqr`` does not import Numba).
    """
    if not _KERNEL:
        import importlib.util
        if importlib.util.find_spec("numba") is None:
            _KERNEL.append(None)
        else:
            from ._lyap_numba import evaluate_2x2, evaluate_small
            _KERNEL.append((evaluate_2x2, evaluate_small))
    return _KERNEL[0]


def _compiled_pair(kernel, A, B, Q, R, Psi, K, want_sigma: bool = True):
    """Solve Proposition 1 for stacked small tasks by the compiled kernel.

    Proposition 1 for stacked small tasks by the compiled kernel: same formulas as the NumPy
    path (one LU of the Kronecker matrix per task shared by ``P_K`` and ``Sigma_K``); every task
    whose stability the kernel does not certify (unstable, ``rho`` near 1, non-finite) is solved
    again by the NumPy kernel, which decides stability from the eigenvalues as before. Returns
    ``stable, AK, P, Sigma, E, RBPB`` (the last three zeros when ``want_sigma`` is False; zeros
    for unstable tasks).
    """
    n, d, k = A.shape[0], A.shape[-1], B.shape[-1]
    c = np.ascontiguousarray
    A, B, Q, R, Psi, K = c(A), c(B), c(Q), c(R), c(Psi), c(K)
    AK, P, S = np.empty((n, d, d)), np.zeros((n, d, d)), np.zeros((n, d, d))
    E, RBPB = np.zeros((n, k, d)), np.zeros((n, k, k))
    certified = np.empty(n, dtype=np.bool_)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if d == 2:
            kernel[0](A, B, Q, R, Psi, K, want_sigma, AK, P, S, E, RBPB, certified)
        else:
            kernel[1](A, B, Q, R, Psi, K, want_sigma, AK, P, S, E, RBPB, certified, (0,) * d)
    stable = certified.copy()
    redo = np.flatnonzero(~certified)
    if redo.size:
        with np.errstate(over="ignore", invalid="ignore"):
            AKr = A[redo] - B[redo] @ K[redo]
            Mr = Q[redo] + _T(K[redo]) @ R[redo] @ K[redo]
        st, Pr, Sr = lyapunov_pair(AKr, Mr, Psi[redo] if want_sigma else None)
        AK[redo], P[redo], stable[redo] = AKr, Pr, st
        if want_sigma:
            S[redo] = Sr
            with np.errstate(over="ignore", invalid="ignore"):
                RBPB[redo] = R[redo] + _T(B[redo]) @ Pr @ B[redo]
                E[redo] = RBPB[redo] @ K[redo] - _T(B[redo]) @ Pr @ A[redo]
    return stable, AK, P, S, E, RBPB


def _evaluate_compiled(kernel, batch: Batch, Kb: np.ndarray, what: str) -> PolicyEvaluation:
    """:func:`_evaluate_numpy` by the compiled kernel (:func:`_compiled_pair`)."""
    stable, AK, P, S, E, RBPB = _compiled_pair(kernel, batch.A, batch.B, batch.Q, batch.R,
                                               batch.Psi, Kb)
    if not np.all(stable):
        rho = np.where(stable, 0.0, np.maximum(spectral_radius_of(AK), 1.0))
        _raise_unstable(rho, batch, what)
    return PolicyEvaluation(Kb, AK, P, S, E, RBPB, batch.Psi, batch.B)


def _evaluate_chunk(A, B, Q, R, Psi, K):
    """Compute closed loop, Lyapunov pair, ``R + B'PB``, ``E_K`` and gradient of a chunk.

    Everything :func:`_evaluate_numpy` computes per task, so that a large batch runs it all
    in :func:`metalqr._parallel.map_chunks` threads (issue 15: at ``d = 200`` the products
    around the Lyapunov solve were a fifth of the time when run on one thread). Values of
    unstable members are zeros (``stable`` False).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        AK = A - B @ K
        M = Q + _T(K) @ R @ K
        stable, P, Sigma = _lyapunov_pair_serial(AK, M, Psi)
        BtP = _T(B) @ P                    # once for both (same association as before)
        RBPB = R + BtP @ B
        E = RBPB @ K - BtP @ A
        G = 2.0 * E @ Sigma
    return stable, AK, P, Sigma, E, RBPB, G


def _evaluate_numpy(batch: Batch, Kb: np.ndarray, what: str) -> PolicyEvaluation:
    n, d, k = batch.n, batch.d, batch.k
    arrays = [batch.A, batch.B, batch.Q, batch.R, batch.Psi, Kb]
    work = n * (d ** 6 if d <= KRON_MAX_D else 40.0 * d ** 3 + 8.0 * k * d * d)
    stable, AK, P, Sigma, E, RBPB, G = map_chunks(_evaluate_chunk, arrays, n, work)
    if not np.all(stable):
        rho = np.where(stable, 0.0, np.maximum(spectral_radius_of(AK), 1.0))
        _raise_unstable(rho, batch, what)
    ev = PolicyEvaluation(Kb, AK, P, Sigma, E, RBPB, batch.Psi, batch.B)
    G.flags.writeable = False
    object.__setattr__(ev, "_gradient", G)      # computed in the chunks; read by .gradient
    return ev


def _evaluate_one(batch: Batch, Kb: np.ndarray, what: str) -> PolicyEvaluation:
    """Evaluate one task of small dimension on 2-D arrays.

    :func:`evaluate_batch` for one task of small dimension on 2-D arrays (issue 15: the per-call
    overhead of the batched path dominated at d = 2). Same formulas, same checks.
    """
    A, B, R, K = batch.A[0], batch.B[0], batch.R[0], Kb[0]
    with np.errstate(over="ignore", invalid="ignore"):
        AK = A - B @ K
        M = batch.Q[0] + K.T @ R @ K
        stable, P, Sigma = lyapunov_pair_one(AK, M, batch.Psi[0])
        if not stable:
            _raise_unstable(np.maximum(spectral_radius_of(AK[None]), 1.0), batch, what)
        BTP = B.T @ P
        RBPB = R + BTP @ B
        E = RBPB @ K - BTP @ A
    return PolicyEvaluation(Kb, AK[None], P[None], Sigma[None], E[None], RBPB[None], batch.Psi,
                            batch.B)


def spectral_radius(task: TaskLike, K: Any):
    """Spectral radius ``rho(A - B K)`` (float, or array of shape (n,) for a TaskSet).

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.

    Returns
    -------
    float or (n,) ndarray
        ``rho(A - B K)``, one per task for a TaskSet (``inf`` where ``A - B K`` overflows).

    Raises
    ------
    ValidationError
        On a malformed task or gain.
    """
    batch = as_batch(task)
    rho = spectral_radius_of(closed_loop(batch, check_gain(batch, K)))
    return float(rho[0]) if batch.single else rho


def is_stabilizing(task: TaskLike, K: Any):
    """Whether ``rho(A - B K) < 1`` (bool, or bool array of shape (n,) for a TaskSet).

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.

    Returns
    -------
    bool or (n,) ndarray of bool
        ``rho(A - B K) < 1``, one per task for a TaskSet.

    Raises
    ------
    ValidationError
        On a malformed task or gain.
    """
    rho = spectral_radius(task, K)
    return bool(rho < 1.0) if np.ndim(rho) == 0 else rho < 1.0


def cost(task: TaskLike, K: Any):
    """Ergodic cost ``J(K) = Tr(P_K Psi) = Tr((Q + K'RK) Sigma_K)`` (Proposition 1).

    Returns ``math.inf`` (never NaN) for a task that ``K`` does not stabilise. For a
    TaskSet the result is an array of shape (n,).

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.

    Returns
    -------
    float or (n,) ndarray
        ``J(K)`` (the cost's units: those of ``x'Qx``), ``inf`` where ``K`` does not stabilise.

    Raises
    ------
    ValidationError
        On a malformed task or gain.
        Also (never ``inf`` or "not stabilising") when ``K`` stabilises a task but its values overflow
        float64 or cannot be computed accurately in it (a badly scaled or strongly non-normal
        ``A - B K``); the message says how to rescale the task.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Proposition 1 and Eq. (1).

    Examples
    --------
    >>> import numpy as np, metalqr
    >>> task = metalqr.LQRTask([[0.5]], [[1.0]], [[1.0]], [[1.0]])
    >>> round(metalqr.cost(task, [[0.0]]), 6)  # Tr(P Psi) with P = 1/(1-0.25)
    1.333333
    >>> metalqr.cost(task, [[-1.0]])  # A - BK = 1.5: unstable
    inf
    """
    batch = as_batch(task)
    Kb = check_gain(batch, K)
    if batch.n == 1 and batch.d <= KRON_MAX_D:         # fast path for one small task
        K1 = Kb[0]
        with np.errstate(over="ignore", invalid="ignore"):
            M = batch.Q[0] + K1.T @ batch.R[0] @ K1
            stable, P, _ = lyapunov_pair_one(batch.A[0] - batch.B[0] @ K1, M)
            J = float(np.einsum("ij,ji->", P, batch.Psi[0]))
            if stable and not math.isfinite(J):
                raise _overflow_error("cost", batch.A[0] - batch.B[0] @ K1, None if batch.single else 0,
                                      "value matrix P_K and cost J")
        J = J if stable else math.inf
        return J if batch.single else np.array([J])
    names = None if batch.single else np.arange(batch.n)
    if batch.n > 1 and batch.d > KRON_MAX_D:
        with blas_single_thread():
            J = _costs(batch.A, batch.B, batch.Q, batch.R, batch.Psi, Kb, names)
    else:
        J = _costs(batch.A, batch.B, batch.Q, batch.R, batch.Psi, Kb, names)
    return float(J[0]) if batch.single else J


def _costs(A, B, Q, R, Psi, K, names=None, what: str = "cost") -> np.ndarray:
    """Return ``J = Tr(P_K Psi)`` for stacked task matrices and gains.

    ``J = Tr(P_K Psi)`` for stacked task matrices and gains; ``inf`` where ``A - BK`` is
    unstable (never NaN). Where ``K`` stabilises a task but ``P_K`` or ``J`` overflows float64,
    raises :func:`_overflow_error` naming the task ``names[i]`` (``None``: a single task).
    """
    kernel = (_compiled_kernel() if A.shape[-1] <= KRON_MAX_D and A.shape[0] >= COMPILED_MIN_BATCH
              else None)
    if kernel is not None:
        stable, _, P, _, _, _ = _compiled_pair(kernel, A, B, Q, R, Psi, K, want_sigma=False)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            AK, M = A - B @ K, Q + _T(K) @ R @ K
        stable, P, _ = lyapunov_pair(AK, M)
    with np.errstate(over="ignore", invalid="ignore"):
        J = np.einsum("nij,nji->n", P, Psi)
    over = stable & ~np.isfinite(J)
    if over.any():
        i = int(np.flatnonzero(over)[0])
        with np.errstate(over="ignore", invalid="ignore"):
            AKi = A[i] - B[i] @ K[i]
        raise _overflow_error(what, AKi, None if names is None else int(names[i]),
                              "value matrix P_K and cost J")
    return np.where(stable, J, math.inf)


def gradient(task: TaskLike, K: Any) -> np.ndarray:
    """Exact policy gradient, Eq. (2) of the ZO-MAML paper: ``2 E_K Sigma_K``.

    Returns shape (k, d), or (n, k, d) for a TaskSet.

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.

    Returns
    -------
    ndarray, shape (k, d) or (n, k, d)
        ``grad J(K) = 2 E_K Sigma_K`` with ``E_K = (R + B'P_K B) K - B'P_K A``.

    Raises
    ------
    ValidationError
        On a malformed task or gain.
        Also (never ``inf`` or "not stabilising") when ``K`` stabilises a task but its values overflow
        float64 or cannot be computed accurately in it (a badly scaled or strongly non-normal
        ``A - B K``); the message says how to rescale the task.
    UnstablePolicyError
        If ``K`` does not stabilise some task.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Eq. (2).

    Examples
    --------
    The gradient vanishes at the optimal gain:

    >>> import numpy as np, metalqr
    >>> task = metalqr.double_integrator()
    >>> K_star, _ = metalqr.optimal_gain(task)
    >>> metalqr.gradient(task, K_star).shape
    (1, 2)
    >>> bool(np.abs(metalqr.gradient(task, K_star)).max() < 1e-8)
    True
    """
    batch = as_batch(task)
    ev = evaluate_batch(batch, check_gain(batch, K), "gradient")
    return batch.out(ev.gradient)


def hessian_vp(task: TaskLike, K: Any, X: Any) -> np.ndarray:
    """Hessian of ``J`` at ``K`` applied to a direction ``X`` (shape (k, d)).

    This is the directional derivative of the gradient (2):

    ``H[X] = 2 (R + B'P B) X Sigma - 2 B' P~[X] A_K Sigma + 2 E Sigma~[X]``

    with ``P~[X] = A_K' P~[X] A_K + X'E + E'X`` and
    ``Sigma~[X] = A_K Sigma~[X] A_K' - (B X Sigma A_K' + A_K Sigma X' B')``.

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.
    X : array_like, same shapes as ``K``
        The direction (one per task for a stacked ``K``-shaped array); real and finite
        (a complex direction is rejected, not truncated).

    Returns
    -------
    ndarray, shape (k, d) or (n, k, d)
        ``Hess J(K)[X]``, symmetric as an operator.

    Raises
    ------
    ValidationError
        On a malformed task, gain or direction.
        Also (never ``inf`` or "not stabilising") when ``K`` stabilises a task but its values overflow
        float64 or cannot be computed accurately in it (a badly scaled or strongly non-normal
        ``A - B K``); the message says how to rescale the task.
    UnstablePolicyError
        If ``K`` does not stabilise some task.

    Notes
    -----
    Eq. (3) of the ZO-MAML paper, ``2 (R + B'PB) X Sigma - 4 B' P~[X] A_K Sigma``, is only
    correct as a *quadratic form*: ``<X, H[X]>`` agrees, but as an operator it is not
    symmetric and is not the Hessian (it drops the ``Sigma~`` term). This function returns
    the true, symmetric Hessian-vector product; both facts are checked in the tests.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Eq. (2) differentiated once more; Eq. (3) (see Notes).
    """
    batch = as_batch(task)
    ev = evaluate_batch(batch, check_gain(batch, K), "hessian_vp")
    Xb = check_gain(batch, X, name="X")
    return batch.out(ev._hvp(Xb, "hessian_vp", batch.single))


def hessian(task: TaskLike, K: Any) -> np.ndarray:
    """Return the Hessian of the cost as a ``(k*d, k*d)`` matrix.

    The Hessian as a ``(k*d, k*d)`` matrix in row-major ``vec(K)`` order (``(n, k*d, k*d)`` for
    a TaskSet), built from all ``k*d`` basis directions in one batched solve (Proposition 1 of
    the ZO-MAML paper, differentiated twice).

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.

    Returns
    -------
    ndarray, shape (k*d, k*d) or (n, k*d, k*d)
        Symmetric, in row-major ``vec(K)`` order.

    Raises
    ------
    ValidationError
        On a malformed task or gain, or when the work arrays would exceed metalqr's size
        limit (about ``n k d (k d + 24 d^2)`` entries; e.g. ``d = 200, k = 100``): use
        :func:`hessian_vp`.
        Also (never ``inf`` or "not stabilising") when ``K`` stabilises a task but its values overflow
        float64 or cannot be computed accurately in it (a badly scaled or strongly non-normal
        ``A - B K``); the message says how to rescale the task.
    UnstablePolicyError
        If ``K`` does not stabilise some task.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Proposition 1 and Eq. (2), differentiated once more (see :func:`hessian_vp`).
    """
    batch = as_batch(task)
    Kb = check_gain(batch, K)
    kd = batch.k * batch.d
    check_size(hessian_entries(batch.n, batch.k, batch.d), "hessian",
               what="float64 entries of work arrays",
               alternative=f"The full Hessian of a ({batch.k}, {batch.d}) gain has "
                           f"({kd})^2 entries per task; use hessian_vp(task, K, X) for "
                           f"Hessian-vector products instead (e.g. inside conjugate gradients).")
    ev = evaluate_batch(batch, Kb, "hessian")
    basis = np.eye(kd).reshape(kd, batch.k, batch.d)
    H = ev._hvp(np.broadcast_to(basis, (batch.n, kd, batch.k, batch.d)), "hessian", batch.single)
    H = H.reshape(batch.n, kd, kd)  # row j = H[e_j]; symmetric, so also column j
    return batch.out(0.5 * (H + _T(H)))


def hessian_entries(n: int, k: int, d: int) -> float:
    """Return the estimated float64 entries of the work arrays of :func:`hessian`.

    Estimated float64 entries of the work arrays of :func:`hessian`: ``k d`` directions per
    task, each with a handful of ``d x d`` matrices and (for ``d`` above the Kronecker kernel's
    limit) up to about 20 stored squarings, plus the ``(k d)^2`` result.
    """
    kd = float(k) * d
    return n * kd * (kd + 24.0 * d * d + 4.0 * kd)


def natural_gradient(task: TaskLike, K: Any) -> np.ndarray:
    """Natural-gradient direction ``grad J(K) Sigma_K^{-1} = 2 E_K`` (Fazel et al. 2018).

    Computed as ``2 E_K`` directly, which equals the formula whenever ``Sigma_K`` is
    invertible and stays defined when ``Psi`` is singular.

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.

    Returns
    -------
    ndarray, shape (k, d) or (n, k, d)
        ``2 E_K``.

    Raises
    ------
    ValidationError, UnstablePolicyError
        As :func:`gradient`.
    """
    batch = as_batch(task)
    ev = evaluate_batch(batch, check_gain(batch, K), "natural_gradient")
    return batch.out(2.0 * ev.E)


def gauss_newton_direction(task: TaskLike, K: Any) -> np.ndarray:
    """Gauss-Newton direction ``(R + B'P_K B)^{-1} grad J(K) Sigma_K^{-1} = 2 (R + B'P_K B)^{-1} E_K``.

    A step of size 1/2 along it is exactly one step of policy iteration.

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task, or a TaskSet of ``n`` tasks (batched).
    K : array_like, shape (k, d), or (n, k, d) for a TaskSet of n tasks (one gain per task)
        Real and finite; ``u = -K x``. Any other leading axes are rejected.

    Returns
    -------
    ndarray, shape (k, d) or (n, k, d)
        ``2 (R + B'P_K B)^{-1} E_K``.

    Raises
    ------
    ValidationError, UnstablePolicyError
        As :func:`gradient`.
    """
    batch = as_batch(task)
    ev = evaluate_batch(batch, check_gain(batch, K), "gauss_newton_direction")
    return batch.out(2.0 * np.linalg.solve(ev.RBPB, ev.E))


def costs_indexed(batch: Batch, task_index: np.ndarray, K: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Exact ``J`` of ``N`` (task, gain) pairs: task ``task_index[n]`` with gain ``K[n]``.

    Internal kernel of the ``oracle="exact"`` estimators; ``inf`` where unstable. Works in
    chunks of ``chunk`` pairs to bound memory.
    """
    out = np.empty(K.shape[0])
    for s in range(0, K.shape[0], chunk):
        ti = task_index[s:s + chunk]
        out[s:s + chunk] = _costs(batch.A[ti], batch.B[ti], batch.Q[ti], batch.R[ti], batch.Psi[ti],
                                  K[s:s + chunk], ti, what="the exact cost oracle")
    return out
