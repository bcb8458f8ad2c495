"""Optimal LQR gains from the discrete algebraic Riccati equation (DARE), batched and checked.

``P = Q + A'PA - A'PB (R + B'PB)^{-1} B'PA`` and ``K = (R + B'PB)^{-1} B'PA`` for every task
of a :class:`TaskSet` at once:

1. a batched structure-preserving doubling algorithm (SDA, :mod:`metalqr.lqr._doubling`)
   gives a candidate ``P`` for all tasks together; tasks whose ``P`` has a diagonal spanning
   more than ``BALANCE_RATIO`` are rescaled (``x~ = T x``, ``T`` diagonal powers of two chosen
   so that ``diag(T^-1 P T^-1)`` is nearly constant) and solved again, so that the result does
   not depend on the user's state units (all later steps work in those coordinates);
2. where its scaled Riccati residual is not at rounding level, Newton (Hewer policy
   iteration) steps ``K <- K(P)``, ``P <- P_K`` with metalqr's Lyapunov solver refine it;
3. every task's answer is checked (:func:`check_dare_solution`): finite, symmetric positive
   semidefinite, scaled residual small, closed loop ``A - BK`` stable (``rho < 1``), and the
   identity ``J(K) = Tr((Q + K'RK) Sigma_K) = Tr(P Psi)`` of Proposition 1 with ``Sigma_K``
   from metalqr's own Lyapunov solver;
4. tasks that fail are solved again by :func:`scipy.linalg.solve_discrete_are` and checked
   the same way; a task that no solver answers correctly raises a :class:`ValidationError`
   naming the task and the reason (uncontrollable unstable mode, unobservable mode on the unit
   circle, or the failed checks).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.linalg

from .._parallel import blas_single_thread
from .._validation import as_float_array, format_radius
from ..exceptions import ValidationError
from ._doubling import sda
from .lyapunov import KRON_MAX_D, _doubling_powers, _refined, lyapunov_pair, spectral_radius_of
from .policy import COMPILED_MIN_BATCH, _compiled_kernel, _compiled_pair
from .tasks import Batch, TaskLike, as_batch

__all__ = ["optimal_gain", "solve_dare_checked", "check_dare_solution", "riccati_residual",
           "DareSolution", "DareCheck", "RESIDUAL_TOL", "IDENTITY_TOL"]

#: Largest accepted scaled Riccati residual ``||Res||_F / (||Q|| + ||A'PA|| + ||A'PB(R+B'PB)^-1 B'PA|| + ||P||)``.
RESIDUAL_TOL = 1e-10
#: Scaled residual above which Newton refinement is tried.
REFINE_TOL = 1e-14
#: Newton (Hewer) refinement steps at most.
MAX_NEWTON = 4
#: Largest accepted relative gap between ``Tr(P Psi)`` and the Lyapunov cost of ``K``, plus
#: ``100 d eps kappa`` (``kappa`` estimates the Lyapunov operator's condition) plus ten times
#: the gap the residual explains (see :func:`check_dare_solution`).
IDENTITY_TOL = 1e-9
#: Diagonal spread of ``P`` above which the task is rebalanced and solved again.
BALANCE_RATIO = 2.0 ** 8
#: Rebalancing passes at most.
MAX_BALANCE = 3
EPS = float(np.finfo(float).eps)
#: Batches up to this size use the Kronecker Lyapunov kernel in the checks (d <= 6).
SMALL_BATCH = 32
#: Relative tolerance on the smallest eigenvalue of ``P`` (positive semidefiniteness).
PSD_TOL = 1e-10


def _T(X: np.ndarray) -> np.ndarray:
    return np.swapaxes(X, -1, -2)


def _sym(X: np.ndarray) -> np.ndarray:
    return 0.5 * (X + _T(X))


def _fro(X: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("nij,nij->n", X, X))


def _gain_and_residual(A, B, Q, R, P):
    """Return ``K(P)`` and the scaled Riccati residual of ``P``.

    ``K(P)``, the scaled Riccati residual of ``P`` (shape (n,), inf where non-finite) and the
    scale it is relative to (``||Q|| + ||A'PA|| + ||A'PB K|| + ||P||``).
    """
    K, _, r, scale = _gain_residual_matrix(A, B, Q, R, P)
    return K, r, scale


def _gain_residual_matrix(A, B, Q, R, P):
    """``K(P)``, the residual matrix ``Q + A'PA - A'PB K(P) - P``, its scaled norm, the scale."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        PA, PB = P @ A, P @ B
        BtPA = _T(PB) @ A
        try:
            K = np.linalg.solve(R + _T(B) @ PB, BtPA)
        except np.linalg.LinAlgError:
            K = np.full(BtPA.shape, np.nan)
            for i in range(P.shape[0]):
                try:
                    K[i] = np.linalg.solve(R[i] + B[i].T @ PB[i], BtPA[i])
                except np.linalg.LinAlgError:
                    pass
        APA = _T(A) @ PA
        corr = _T(BtPA) @ K
        res = Q + APA - corr - P
        scale = _fro(Q) + _fro(APA) + _fro(corr) + _fro(P)
        r = _fro(res) / np.where(scale > 0, scale, 1.0)
    r = np.where(np.isfinite(r) & np.all(np.isfinite(K), axis=(1, 2)), r, np.inf)
    return K, res, r, scale


def _check_candidate(batch: Batch, P: Any, name: str = "P") -> np.ndarray:
    """Validate a candidate solution: shape (d, d), or (n, d, d) for a TaskSet of n tasks."""
    P = as_float_array(P, name)
    n, d = batch.n, batch.d
    if P.shape == (d, d):
        return np.broadcast_to(P, (n, d, d))
    if not batch.single and P.shape == (n, d, d):
        return P
    per_task = "" if batch.single else f" or ({n}, {d}, {d}) (one per task)"
    raise ValidationError(f"{name} must have shape (d, d) = ({d}, {d}){per_task}; got {P.shape}.")


def riccati_residual(task: TaskLike, P: Any):
    """Scaled residual of a candidate DARE solution ``P`` of each task.

    ``||Q + A'PA - A'PB (R + B'PB)^{-1} B'PA - P||_F`` divided by
    ``||Q||_F + ||A'PA||_F + ||A'PB (R + B'PB)^{-1} B'PA||_F + ||P||_F``: a backward error,
    about 1e-16 for a backward-stable solver on a well-scaled task.

    Parameters
    ----------
    task : LQRTask or TaskSet
    P : array_like, shape (d, d) or (n, d, d)
        Candidate solution(s); one per task for a TaskSet of ``n`` tasks.

    Returns
    -------
    float or ndarray of shape (n,)
        ``inf`` where ``R + B'PB`` is singular.

    Raises
    ------
    ValidationError
        On a wrong shape or non-finite ``P``, or if ``task`` is not a task.
    """
    batch = as_batch(task)
    r = _gain_and_residual(batch.A, batch.B, batch.Q, batch.R, _check_candidate(batch, P))[1]
    return float(r[0]) if batch.single else r


@dataclass(frozen=True)
class DareSolution:
    """Checked DARE solutions of a batch of tasks (one leading task axis).

    Attributes
    ----------
    K : ndarray, shape (n, k, d)
        Optimal gains ``(R + B'PB)^{-1} B'PA``.
    P : ndarray, shape (n, d, d)
        Stabilising solutions.
    method : ndarray of str, shape (n,)
        ``"sda"``, ``"sda+newton"`` or ``"scipy"`` (which solver's answer passed the checks).
    residual : ndarray, shape (n,)
        Scaled Riccati residual (:func:`riccati_residual`).
    identity_error : ndarray, shape (n,)
        ``max |Tr(P Psi) - J| / J`` over ``J = Tr(P_K Psi)`` and ``J = Tr((Q + K'RK) Sigma_K)``.
    sda_iterations : ndarray of int, shape (n,)
        Doubling steps taken (all balancing passes together).
    scaling : ndarray, shape (n, d)
        Diagonal ``T`` (powers of two) of the coordinates ``x~ = T x`` in which the solution
        was computed and checked (residual and identity figures refer to them).
    """

    K: np.ndarray
    P: np.ndarray
    method: np.ndarray
    residual: np.ndarray
    identity_error: np.ndarray
    sda_iterations: np.ndarray
    scaling: np.ndarray


@dataclass(frozen=True)
class DareCheck:
    """Outcome of :func:`check_dare_solution` (one leading task axis).

    Attributes
    ----------
    ok : ndarray of bool, shape (n,)
        Whether each candidate passed every check.
    residual : ndarray, shape (n,)
        Scaled Riccati residual (see :func:`riccati_residual`).
    identity_error : ndarray, shape (n,)
        ``|Tr(P Psi) - J(K)| / J`` with ``J(K) = Tr((Q + K'RK) Sigma_K)`` (inf if unstable).
    rho : ndarray, shape (n,)
        Spectral radius of ``A - BK`` where the gain does not stabilise (>= 1), else 0.
    why : list of str
        Per task, the first check that failed ('' if none).
    K : ndarray, shape (n, k, d)
        ``K(P) = (R + B'PB)^{-1} B'PA``.
    """

    ok: np.ndarray
    residual: np.ndarray
    identity_error: np.ndarray
    rho: np.ndarray
    why: list
    K: np.ndarray


#: Closed loops with ``||Sigma_K||_F > NEAR_UNIT_CIRCLE_GAIN ||Psi||_F`` (spectral radius within
#: about ``1e-8`` of 1, or strongly non-normal) have their stability decided by their
#: eigenvalues too (:func:`~metalqr.lqr.lyapunov.spectral_radius_of`), as
#: :func:`metalqr.is_stabilizing` decides it.
NEAR_UNIT_CIRCLE_GAIN = 1e8


def _closed_loop_covariance(AK: np.ndarray, Psi: np.ndarray):
    """Return the closed-loop covariance (Eq. (1)) and whether the loop is stable.

    ``Sigma_K = A_K Sigma_K A_K' + Psi`` (Eq. (1)) by metalqr's Lyapunov solver, and whether
    ``rho(A_K) < 1`` (powers of ``A_K`` vanish). Uses the squared Smith (doubling) kernel with
    one refinement step for large batches (for small ``d`` several times faster than the
    Kronecker kernel on 1000 tasks and as accurate; both are checked against SciPy), and
    :func:`~metalqr.lqr.lyapunov.lyapunov_pair` (Kronecker kernel for ``d <= 6``) for a few
    tasks, where the doubling's Python-level steps would dominate.
    """
    if AK.shape[-1] > KRON_MAX_D or AK.shape[0] <= SMALL_BATCH:
        stable, Sigma, _ = lyapunov_pair(_T(AK), Psi)
        return stable, Sigma
    powers, stable = _doubling_powers(AK)
    AKs = np.where(stable[:, None, None], AK, 0.0)
    Sigma = _sym(_refined(powers, AKs, Psi, transpose=False))
    return stable, np.where(stable[:, None, None], Sigma, 0.0)


def check_dare_solution(task: TaskLike, P: Any) -> DareCheck:
    """Check candidate DARE solutions ``P`` of each task independently of how they were found.

    A candidate passes when it is finite, symmetric positive semidefinite (smallest eigenvalue
    >= ``-PSD_TOL ||P||``), its scaled residual is at most ``RESIDUAL_TOL``, ``K = K(P)`` makes
    ``A - BK`` stable (proved by metalqr's Lyapunov solver: eigenvalues for ``d <= 6``,
    vanishing powers of ``A - BK`` above), and ``Tr(P Psi)`` agrees with
    ``J(K) = Tr((Q + K'RK) Sigma_K)`` (Proposition 1 of the ZO-MAML paper; ``Sigma_K`` from
    metalqr's Lyapunov solver) within ``IDENTITY_TOL + 100 d eps ||Sigma_K|| / ||Psi|| +
    10 (||Res||_F + d eps s) ||Sigma_K||_F / J``: since ``Tr(P Psi) - J(K) = Tr(Res Sigma_K)``
    exactly, a larger gap than the residual ``Res`` (scale ``s``) explains means that ``P``,
    ``K`` or the Lyapunov solve is wrong.

    Parameters
    ----------
    task : LQRTask or TaskSet
    P : array_like, shape (d, d) or (n, d, d)
        Candidate solution(s), e.g. from another solver.

    Returns
    -------
    DareCheck
        With a leading task axis (length 1 for a single task).

    Raises
    ------
    ValidationError
        On a wrong shape or non-finite ``P``, or if ``task`` is not a task.
    """
    batch = as_batch(task)
    P = np.array(_check_candidate(batch, P))
    return _check_arrays(batch.A, batch.B, batch.Q, batch.R, batch.Psi, P)


def _check_arrays(A, B, Q, R, Psi, P) -> DareCheck:
    K, res, scale = _gain_and_residual(A, B, Q, R, P)
    return _check(A, B, Q, R, Psi, P, K, res, scale)


def _check(A, B, Q, R, Psi, P, K, res, scale) -> DareCheck:
    """:func:`check_dare_solution` given ``K = K(P)``, the scaled residual and its scale."""
    n, d = P.shape[0], P.shape[-1]
    finite = np.isfinite(res)
    why = [""] * n
    Ps = np.where(finite[:, None, None], P, 0.0)
    Ks = np.where(finite[:, None, None], K, 0.0)
    asym = _fro(Ps - _T(Ps))
    normP = _fro(Ps)
    lam_min = np.linalg.eigvalsh(_sym(Ps))[:, 0]
    psd = (lam_min >= -PSD_TOL * normP) & (asym <= 1e-12 * np.maximum(normP, 1e-300))
    AK = A - B @ Ks
    W_T = Q + _T(Ks) @ R @ Ks
    kernel = _compiled_kernel() if d <= KRON_MAX_D and n >= COMPILED_MIN_BATCH else None
    if kernel is not None:
        # compiled small-task kernel (same Lyapunov maths; uncertified tasks by NumPy)
        stable, _, _, Sigma, _, _ = _compiled_pair(kernel, A, B, Q, R, Psi, Ks)
    else:
        stable, Sigma = _closed_loop_covariance(AK, Psi)
    # A closed loop whose spectral radius is within rounding of 1 can pass the Lyapunov
    # solver's test (its powers vanish after 2^64 steps) while eigvals puts it on the unit
    # circle, so metalqr.is_stabilizing(task, K*) said False: e.g. an unobservable mode of A
    # at 1 (Q blind to it) whose P-candidate from SciPy gave ||Sigma_K|| / ||Psi|| = 3e17.
    # Where the covariance is that large, stability is decided as spectral_radius() does.
    with np.errstate(over="ignore", invalid="ignore"):
        suspect = stable & ~(_fro(Sigma) <= NEAR_UNIT_CIRCLE_GAIN * _fro(Psi))
    if suspect.any():
        idx = np.flatnonzero(suspect)
        stable = stable.copy()
        stable[idx] = spectral_radius_of(AK[idx]) < 1.0
    rho = np.zeros(n)
    with np.errstate(over="ignore", invalid="ignore"):
        J_ric = np.einsum("nij,nji->n", Ps, Psi)
        J_S = np.einsum("nij,nji->n", W_T, Sigma)
        ident = np.abs(J_ric - J_S) / np.maximum(np.maximum(np.abs(J_ric), np.abs(J_S)), 1e-300)
        # Tr(P Psi) - J(K) = Tr(Res Sigma_K) exactly (adjoint of the Lyapunov operator), so
        # the residual (at least its rounding, d eps scale) explains a gap up to
        # ||Res||_F ||Sigma_K||_F / J; the Lyapunov solve itself adds about d eps kappa.
        kappa = _fro(Sigma) / np.maximum(_fro(Psi), 1e-300)
        explained = ((np.where(np.isfinite(res), res, 0.0) + d * EPS) * scale * _fro(Sigma)
                     / np.maximum(np.abs(J_ric), 1e-300))
        id_tol = (IDENTITY_TOL + 100.0 * d * EPS * np.where(np.isfinite(kappa), kappa, 0.0)
                  + 10.0 * np.where(np.isfinite(explained), explained, 0.0))
    ident = np.where(stable & np.isfinite(ident), ident, np.inf)
    ok = finite & psd & stable & (res <= RESIDUAL_TOL) & (ident <= id_tol)
    for i in np.flatnonzero(~ok):
        if not finite[i]:
            why[i] = "the candidate is not finite"
        elif not stable[i]:
            rho[i] = max(1.0, float(np.max(np.abs(np.linalg.eigvals(AK[i])))))
            why[i] = f"its gain does not stabilise the task (spectral radius of A - BK = {format_radius(rho[i])})"
        elif not psd[i]:
            why[i] = (f"P is not symmetric positive semidefinite (smallest eigenvalue "
                      f"{lam_min[i]:.3g}, ||P|| = {normP[i]:.3g})")
        elif res[i] > RESIDUAL_TOL:
            why[i] = f"its scaled Riccati residual {res[i]:.3g} exceeds {RESIDUAL_TOL:g}"
        else:
            why[i] = (f"Tr(P Psi) and the Lyapunov cost J(K) differ by a relative {ident[i]:.3g} "
                      f"(> {id_tol[i]:.3g})")
    return DareCheck(ok, res, ident, rho, why, K)


def _newton_refine(A, B, Q, R, P, res, K=None, Res=None):
    """Refine by Newton / Hewer steps in correction form.

    Newton / Hewer steps in correction form, keeping for each task the iterate with the smallest
    scaled residual.

    With ``K = K(P)`` and ``A_K = A - BK`` the residual satisfies
    ``Res(P) = Q + K'RK + A_K' P A_K - P``, so the Newton iterate ``P_K`` (the value matrix of
    ``K``) is ``P + X`` with ``X = A_K' X A_K + Res(P)``. Solving for the small correction
    ``X`` (metalqr's Lyapunov solver) rather than for ``P_K`` itself keeps the Lyapunov
    solve's relative error on ``X``: on an ill-conditioned task the direct form ``P <- P_K``
    lowered the residual 10x but raised the error of ``P`` from 2e-11 to 1e-8.

    ``K`` and ``Res`` of ``P`` may be passed if known. Returns the best ``P``, its scaled
    residual, whether it improved, and its ``K`` and residual scale.
    """
    best_P, best_res = P.copy(), res.copy()
    improved = np.zeros(P.shape[0], dtype=bool)
    cur = P
    if K is None or Res is None:
        K, Res, _, _ = _gain_residual_matrix(A, B, Q, R, cur)
    best_K, best_scale = np.full(K.shape, np.nan), np.full(P.shape[0], np.nan)
    for _ in range(MAX_NEWTON):
        finite = np.all(np.isfinite(K), axis=(1, 2)) & np.all(np.isfinite(Res), axis=(1, 2))
        Ks = np.where(finite[:, None, None], K, 0.0)
        stable, X, _ = lyapunov_pair(A - B @ Ks, np.where(finite[:, None, None], _sym(Res), 0.0),
                                     verify=False)     # a correction: the Riccati residual is checked
        ok = finite & stable
        if not np.any(ok):
            break
        nxt = _sym(cur + X)
        K_n, Res_n, r, scale_n = _gain_residual_matrix(A, B, Q, R, nxt)
        r = np.where(ok, r, np.inf)
        better = r < best_res
        best_P[better], best_res[better] = nxt[better], r[better]
        best_K[better], best_scale[better] = K_n[better], scale_n[better]
        improved |= better
        if np.all(best_res <= REFINE_TOL) or not np.any(better):
            break
        cur = np.where(better[:, None, None], nxt, cur)
        K = np.where(better[:, None, None], K_n, K)
        Res = np.where(better[:, None, None], Res_n, Res)
    return best_P, best_res, improved, best_K, best_scale


def _scipy_one(A, B, Q, R):
    import warnings
    try:
        # its warnings (ill-conditioning, an invalid cast in its balancing of a badly scaled
        # task) are not passed on: the answer is checked independently by the caller
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    except (np.linalg.LinAlgError, ValueError) as exc:
        return None, f"SciPy's solve_discrete_are failed ({exc})"
    return _sym(P), ""


def _diagnose(A: np.ndarray, B: np.ndarray, Q: np.ndarray) -> str:
    """Structural reason (PBH test) why a task has no stabilising DARE solution, or ''."""
    d = A.shape[0]
    lam = np.linalg.eigvals(A)
    scale = max(np.linalg.norm(A, 2), np.linalg.norm(B, 2), 1e-300)
    qscale = max(np.linalg.norm(Q, 2), 1e-300)
    for l in lam[np.argsort(-np.abs(lam))]:
        if abs(l) < 1.0 - 1e-10:
            break
        M = np.hstack([A - l * np.eye(d), B])
        if np.linalg.svd(M, compute_uv=False)[-1] <= 1e-8 * scale:
            return (f"(A, B) is not stabilisable: the eigenvalue {l:.6g} of A (|lambda| = "
                    f"{format_radius(abs(l))} >= 1) is not reachable from B (rank [A - lambda I, B] < {d})")
    for l in lam:
        if abs(abs(l) - 1.0) > 1e-8:
            continue
        M = np.vstack([A - l * np.eye(d), Q * (scale / qscale)])
        if np.linalg.svd(M, compute_uv=False)[-1] <= 1e-8 * scale:
            return (f"(A, Q^1/2) has an unobservable mode on the unit circle: the eigenvalue "
                    f"{l:.6g} of A (|lambda| = {abs(l):.6g}) is not seen by Q (rank "
                    f"[A - lambda I; Q] < {d}), so no stabilising solution exists")
    return ""


def solve_dare_checked(task: TaskLike) -> DareSolution:
    """Solve and check the DARE of every task (the engine of :func:`optimal_gain`).

    Parameters
    ----------
    task : LQRTask or TaskSet

    Returns
    -------
    DareSolution
        Gains, solutions and the checks' figures, with a leading task axis (length 1 for a
        single task).

    Raises
    ------
    ValidationError
        If some task has no stabilising solution that passes the checks (see
        :func:`optimal_gain`).
    """
    batch = as_batch(task)
    return _solve(batch)


def _balance_factors(P: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Return powers of two that balance the diagonal of ``P``.

    Powers of two ``f`` (shape (n, d)) that bring the diagonal of ``P / (f f')`` near a common
    value; ones where ``ok`` is False, for zero diagonal entries and for tasks whose diagonal
    already spans less than ``BALANCE_RATIO``.
    """
    n, d = P.shape[0], P.shape[-1]
    f = np.ones((n, d))
    if d == 1 or not np.any(ok):
        return f
    p = np.where(ok[:, None], np.diagonal(P, axis1=1, axis2=2), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmax = np.max(p, axis=1, keepdims=True)
        valid = (p != 0.0) & (pmax > 0.0) & np.isfinite(p)
        pc = np.where(valid, np.maximum(p, 2.2e-16 * pmax), 1.0)
        logp = np.log2(pc)
        nvalid = np.maximum(np.sum(valid, axis=1, keepdims=True), 1)
        centre = np.sum(np.where(valid, logp, 0.0), axis=1, keepdims=True) / nvalid
        e = np.where(valid, np.round(0.5 * (logp - centre)), 0.0)
    spread = np.max(e, axis=1) - np.min(e, axis=1)
    redo = ok & (spread >= 0.5 * np.log2(BALANCE_RATIO))
    return np.where(redo[:, None], np.exp2(e), 1.0)


def _scaled(T: np.ndarray, A, B, Q, Psi, G):
    """Task matrices in the coordinates ``x~ = T x`` (``T`` diagonal, shape (n, d))."""
    Tc, Tr = T[:, :, None], T[:, None, :]
    return A * Tc / Tr, B * Tc, Q / Tc / Tr, Psi * Tc * Tr, G * Tc * Tr


#: Tasks whose cost weights (the geometric middle of the largest entries of ``Q`` and ``R``)
#: lie outside ``[2^-COST_SCALE_EXP, 2^COST_SCALE_EXP]`` are solved with ``Q / c`` and
#: ``R / c`` (``c`` a power of two, exact) and ``P* = c P*(Q / c, R / c)``: ``K*`` does not change when ``Q`` and ``R`` are scaled together,
#: but ``Q, R ~ 1e170`` overflowed the doubling's products and ``1e-200`` underflowed them.
COST_SCALE_EXP = 60


def _cost_scale(batch: Batch) -> np.ndarray:
    """Power-of-two factor ``c`` per task for :data:`COST_SCALE_EXP` (1 where not needed)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # the geometric middle of the two weights' largest entries (R's is > 0: R is
        # positive definite; Q may be 0): Q / c and R / c stay representable
        q = np.abs(batch.Q).max(axis=(1, 2))
        r = np.abs(batch.R).max(axis=(1, 2))
        e = np.round(0.5 * (np.log2(np.where(q > 0, q, r)) + np.log2(r)))
        e = np.where(np.isfinite(e), e, 0.0)
    return np.exp2(np.where(np.abs(e) > COST_SCALE_EXP, e, 0.0))


def _solve(batch: Batch) -> DareSolution:
    c = _cost_scale(batch)
    if np.any(c != 1.0):
        sol = _solve(replace(batch, Q=batch.Q / c[:, None, None], R=batch.R / c[:, None, None]))
        with np.errstate(over="ignore"):
            P = sol.P * c[:, None, None]
        if not np.isfinite(P).all():
            i = int(np.flatnonzero(~np.isfinite(P).all(axis=(1, 2)))[0])
            where = "the task" if batch.single else f"task {i}"
            raise ValidationError(f"the optimal value matrix P* of {where} overflows float64 "
                                  f"(Q and R of size about {c[i]:.3g}; K* is fine): scale Q and R "
                                  f"down by a common factor (K* does not change; P* and J scale "
                                  f"with it).")
        return replace(sol, P=P)
    if batch.n > 1 and batch.d > KRON_MAX_D:
        # metalqr's threads split the Lyapunov solves; BLAS threads on top oversubscribe
        with blas_single_thread():
            return _solve_batch(batch)
    return _solve_batch(batch)


def _solve_batch(batch: Batch) -> DareSolution:
    A, B, Q, R, Psi = batch.A, batch.B, batch.Q, batch.R, batch.Psi
    n, d = batch.n, batch.d
    G = _sym(B @ np.linalg.solve(R, _T(B)))
    # 1. Doubling, then diagonal rebalancing x~ = T x (powers of two, so exact) where the
    #    diagonal of P spans more than BALANCE_RATIO: the answer no longer depends on the
    #    user's choice of state units, and the checks below are made in those coordinates.
    T = np.ones((n, d))
    P, converged, iterations = sda(A, G, Q)
    for _ in range(MAX_BALANCE):
        f = _balance_factors(P, converged)
        redo = np.flatnonzero(np.any(f != 1.0, axis=1))
        if redo.size == 0:
            break
        T[redo] *= f[redo]
        Ar, _, Qr, _, Gr = _scaled(T[redo], A[redo], B[redo], Q[redo], Psi[redo], G[redo])
        P[redo], converged[redo], its = sda(Ar, Gr, Qr)
        iterations[redo] += its
    scaled = bool(np.any(T != 1.0))
    At, Bt, Qt, Psit, _ = _scaled(T, A, B, Q, Psi, G) if scaled else (A, B, Q, Psi, G)
    P = np.where(converged[:, None, None], P, np.nan)
    method = np.where(converged, "sda", "none").astype(object)
    # 2. Newton / Hewer refinement where the residual is not at rounding level.
    K, Res, res, scale = _gain_residual_matrix(At, Bt, Qt, R, P)
    refine = np.flatnonzero(converged & (res > REFINE_TOL))
    P_unrefined = P[refine]
    if refine.size:
        sub = (At[refine], Bt[refine], Qt[refine], R[refine])
        P_r, r_r, improved, K_r, scale_r = _newton_refine(*sub, P[refine], res[refine],
                                                          K[refine], Res[refine])
        up = refine[improved]
        P[up], K[up], res[up], scale[up] = (P_r[improved], K_r[improved], r_r[improved],
                                            scale_r[improved])
        method[up] = "sda+newton"
    # 3. Independent checks of every task.
    checks = _check(At, Bt, Qt, R, Psit, P, K, res, scale)
    K = checks.K.copy()
    residual, ident = checks.residual.copy(), checks.identity_error.copy()
    # 4. SciPy for the tasks that failed, checked the same way; else a named error.
    for i in np.flatnonzero(~checks.ok):
        sl = slice(i, i + 1)
        why_sda = ("doubling did not converge" if not converged[i]
                   else f"the doubling answer failed a check: {checks.why[i]}")
        if method[i] == "sda+newton":      # the refined answer failed: try the unrefined one
            c = _check_arrays(At[sl], Bt[sl], Qt[sl], R[sl], Psit[sl],
                              P_unrefined[np.flatnonzero(refine == i)])
            if c.ok[0]:
                P[i], K[i], method[i] = P_unrefined[np.flatnonzero(refine == i)[0]], c.K[0], "sda"
                residual[i], ident[i] = c.residual[0], c.identity_error[0]
                continue
        P_s, why_scipy = _scipy_one(A[i], B[i], Q[i], R[i])
        if P_s is not None:
            P_s = (P_s / T[i][:, None] / T[i][None, :])[None]
            c = _check_arrays(At[sl], Bt[sl], Qt[sl], R[sl], Psit[sl], P_s)
            if not c.ok[0]:
                P_r, _, improved, _, _ = _newton_refine(At[sl], Bt[sl], Qt[sl], R[sl], P_s,
                                                        c.residual)
                if improved[0]:
                    c2 = _check_arrays(At[sl], Bt[sl], Qt[sl], R[sl], Psit[sl], P_r)
                    if c2.ok[0]:
                        c, P_s = c2, P_r
            if c.ok[0]:
                P[i], K[i], method[i] = P_s[0], c.K[0], "scipy"
                residual[i], ident[i] = c.residual[0], c.identity_error[0]
                continue
            why_scipy = f"SciPy's solve_discrete_are answer failed a check: {c.why[0]}"
        where = "the task" if batch.single else f"task {i}"
        reason = _diagnose(A[i], B[i], Q[i])
        detail = f"{why_sda}; {why_scipy}"
        if reason:
            raise ValidationError(f"the Riccati equation of {where} has no stabilising solution: "
                                  f"{reason} ({detail}).")
        raise ValidationError(f"no checked stabilising solution of the Riccati equation of {where}: "
                              f"{detail}. (A, B) must be stabilisable and (A, Q^1/2) detectable "
                              f"(no unobservable mode on the unit circle); a badly conditioned "
                              f"task may need rescaling.")
    P = _sym(P)
    if scaled:
        K = K * T[:, None, :]
        P = P * T[:, :, None] * T[:, None, :]
    return DareSolution(K, P, method.astype(str), residual, ident, iterations, T)


def optimal_gain(task: TaskLike) -> tuple[np.ndarray, np.ndarray]:
    """Optimal gain ``K*`` and value matrix ``P*`` of each task, solved together and checked.

    ``P* = Q + A'P*A - A'P*B (R + B'P*B)^{-1} B'P*A`` (DARE) and
    ``K* = (R + B'P*B)^{-1} B'P*A``, so that ``u = -K* x`` minimises ``J``; ``P*`` equals
    ``P_{K*}`` of Proposition 1 of the ZO-MAML paper.

    All tasks are solved at once by a batched structure-preserving doubling algorithm
    (Chu, Fan, Lin and Wang 2004), refined by Newton / Hewer steps with metalqr's Lyapunov
    solver where its residual is not at rounding level, and each answer is checked: scaled
    residual <= ``RESIDUAL_TOL`` (1e-10), ``P*`` symmetric positive semidefinite,
    ``rho(A - B K*) < 1`` and ``J(K*) = Tr(P* Psi)`` within ``IDENTITY_TOL`` (1e-8) with
    ``J`` from metalqr's own Lyapunov solves. Tasks that fail are solved again with
    :func:`scipy.linalg.solve_discrete_are` and checked the same way.

    Parameters
    ----------
    task : LQRTask or TaskSet
        One task, or ``n`` tasks of equal ``(d, k)``.

    Returns
    -------
    K_star : ndarray, shape (k, d) or (n, k, d)
        The optimal gain(s) (``u = -K* x``).
    P_star : ndarray, shape (d, d) or (n, d, d)
        The stabilising solution(s) of the DARE, ``P_{K*}``.

    Raises
    ------
    ValidationError
        If ``task`` is not an LQRTask/TaskSet, or some task has no stabilising solution that
        passes the checks. The message names the task index and the reason: ``(A, B)`` not
        stabilisable (an unstable eigenvalue not reachable from ``B``), an unobservable mode
        of ``(A, Q^1/2)`` on the unit circle, or which check each solver's answer failed.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Proposition 1 (``P* = P_{K*}``); Chu, Fan, Lin and Wang
    (2004) for the doubling algorithm.

    Examples
    --------
    >>> import numpy as np, metalqr
    >>> task = metalqr.LQRTask([[2.0]], [[1.0]], [[0.0]], [[1.0]])
    >>> K, P = metalqr.optimal_gain(task)   # P = 3, K = 1.5: A - BK = 0.5
    >>> round(float(P[0, 0]), 12), round(float(K[0, 0]), 12)
    (3.0, 1.5)
    """
    batch = as_batch(task)
    sol = _solve(batch)
    return batch.out(sol.K), batch.out(sol.P)
