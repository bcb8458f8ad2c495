"""iLQR backward pass (Appendix E and Algorithm 2 of the TOW paper, corrected), with a full
or a diagonal model of the value Hessian ``V_t``.

Corrections to Algorithm 2 as printed, following Tassa, Erez & Todorov (2012):

* ``Q_ux = C_ux + F_u' V F_x`` (lines 8-9 omit the cost cross term ``C_ux``);
* the value update uses the general form, valid for any gains (also box-clamped ones):
  ``v = q_x + K'Q_uu k + K'q_u + Q_ux'k`` and ``V = Q_xx + K'Q_uu K + K'Q_ux + Q_ux'K``;
* the expected cost change of a forward pass with step ``eps`` is
  ``dJ(eps) = eps * sum_t k_t'q_u + eps^2 / 2 * sum_t k_t'Q_uu k_t`` (line 17's
  ``theta_t = theta_{t+1} - q_u'Q_uu q_u`` is not this quantity: it has the wrong sign
  structure and uses ``Q_uu`` instead of its inverse). ``tests/test_ilqr.py`` checks
  ``dJ(eps)`` against the actual change on a linear-quadratic problem, where it is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxqp import box_qp
from .derivatives import Derivatives

__all__ = ["BackwardResult", "backward_pass"]


@dataclass
class BackwardResult:
    """Gains and expected-decrease terms of one backward pass.

    ``K`` (T, M, D), ``k`` (T, M); the expected change for step ``eps`` is
    ``eps * dV[0] + eps**2 * dV[1]``. ``ok`` is False when a ``Q_uu`` (plus regularisation)
    was not positive definite.
    """

    K: np.ndarray
    k: np.ndarray
    dV: tuple[float, float]
    ok: bool
    failed_at: int = -1

    def expected_change(self, eps: float) -> float:
        return eps * self.dV[0] + eps * eps * self.dV[1]


#: Largest state dimension for which the dense, unconstrained pass runs compiled (Numba).
COMPILED_MAX_D = 64


def _dense(a: np.ndarray, T: int | None) -> np.ndarray:
    """Dense (T, D, D) / (D, D) matrices from dense or diagonal derivative arrays."""
    if T is None:
        return np.ascontiguousarray(np.diag(a) if a.ndim == 1 else a, dtype=float)
    if a.ndim == 2:
        out = np.zeros(a.shape + (a.shape[1],))
        idx = np.arange(a.shape[1])
        out[:, idx, idx] = a
        return out
    return np.ascontiguousarray(a, dtype=float)


def _backward_compiled(d: Derivatives, T: int, M: int, D: int, mu: float, reg_type: str) -> BackwardResult:
    from .backward_numba import backward_dense
    c_ux = np.zeros((T, M, D)) if d.c_ux is None else np.ascontiguousarray(d.c_ux, dtype=float)
    K, k, dV1, dV2, failed = backward_dense(
        _dense(d.f_x, T), np.ascontiguousarray(d.f_u, dtype=float), np.ascontiguousarray(d.c_x, dtype=float),
        np.ascontiguousarray(d.c_u, dtype=float), _dense(d.c_xx, T), np.ascontiguousarray(d.c_uu, dtype=float),
        c_ux, np.ascontiguousarray(d.cT_x, dtype=float), _dense(d.cT_xx, None), float(mu),
        reg_type == "state")
    return BackwardResult(K, k, (float(dV1), float(dV2)), failed < 0, int(failed))


def _solve_controls(Quu, Qu, Qux, mu, lower, upper, k_warm):
    """Feed-forward ``k`` and feedback ``K`` from the local QP (box-constrained if bounded)."""
    M = Qu.shape[0]
    if M == 1 and lower is None and upper is None:
        h = Quu[0, 0] + mu
        if not h > 0:
            return None
        return -Qu / h, -Qux / h
    Quu_reg = Quu + mu * np.eye(M)
    if lower is None and upper is None:
        try:
            L = np.linalg.cholesky(Quu_reg)
        except np.linalg.LinAlgError:
            return None
        rhs = np.concatenate([Qu[:, None], Qux], axis=1)
        sol = -np.linalg.solve(L.T, np.linalg.solve(L, rhs))
        return sol[:, 0], sol[:, 1:]
    lo = np.full(M, -np.inf) if lower is None else lower
    hi = np.full(M, np.inf) if upper is None else upper
    res = box_qp(Quu_reg, Qu, lo, hi, x0=k_warm)
    if not res.ok:
        return None
    K = np.zeros_like(Qux)
    if np.any(res.free):
        K[res.free] = -res.H_free_inv @ Qux[res.free]
    return res.x, K


def backward_pass(d: Derivatives, U: np.ndarray, *, mu: float, value_model: str,
                  u_min: np.ndarray | None, u_max: np.ndarray | None,
                  k_warm: np.ndarray | None = None, reg_type: str = "state",
                  compiled: bool = True) -> BackwardResult:
    """Run the backward recursion from ``V_{T+1} = cT_xx``, ``v_{T+1} = cT_x``.

    ``value_model="full"`` keeps ``V_t`` dense (``O(D^2)``); ``"diagonal"`` keeps its
    diagonal only (TOW Section 3.1): ``O(D M^2)`` time and ``O(D M)`` memory per step when
    ``f_x`` and ``c_xx`` are given as diagonals.

    The dense, unconstrained case with ``D <= COMPILED_MAX_D`` runs the compiled twin
    :func:`metalqr.ilqr.backward_numba.backward_dense` (``compiled=False`` forces Python;
    the two are checked against each other in the tests).

    ``reg_type="state"`` regularises with ``V_{t+1} + mu I`` inside ``Q_uu`` and ``Q_ux``
    (Tassa et al. 2012, Eq. (10), invariant to the scaling of the controls); ``"control"``
    adds ``mu I`` to ``Q_uu``. The unregularised ``Q_uu`` enters the expected decrease.
    """
    T, M = U.shape
    D = d.c_x.shape[1]
    diag = value_model == "diagonal"
    if compiled and not diag and u_min is None and u_max is None and D <= COMPILED_MAX_D:
        return _backward_compiled(d, T, M, D, mu, reg_type)
    K = np.zeros((T, M, D))
    k = np.zeros((T, M))
    dV1 = dV2 = 0.0
    if diag:
        V = d.cT_xx.copy() if d.cT_xx.ndim == 1 else np.diagonal(d.cT_xx).copy()
    else:
        V = np.diag(d.cT_xx) if d.cT_xx.ndim == 1 else d.cT_xx.copy()
    v = d.cT_x.copy()
    for t in range(T - 1, -1, -1):
        fx, fu = d.f_x[t], d.f_u[t]
        cux = None if d.c_ux is None else d.c_ux[t]
        lo = None if u_min is None else u_min - U[t]
        hi = None if u_max is None else u_max - U[t]
        fx_diag = fx.ndim == 1
        smu = mu if reg_type == "state" else 0.0
        if diag:
            VFx = V * fx if fx_diag else None
            Qx = d.c_x[t] + (fx * v if fx_diag else fx.T @ v)
            Qu = d.c_u[t] + fu.T @ v
            cxx = d.c_xx[t] if d.c_xx[t].ndim == 1 else np.diagonal(d.c_xx[t])
            Qxx = cxx + (fx * VFx if fx_diag else np.einsum("ji,j,ji->i", fx, V, fx))
            Vr = V + smu
            Qux_r = (fu.T * (Vr * fx)) if fx_diag else (fu.T * Vr) @ fx
            Quu = d.c_uu[t] + (fu.T * V) @ fu
            Quu_r = Quu + smu * (fu.T @ fu) if smu else Quu
        else:
            Fx = np.diag(fx) if fx_diag else fx
            VFx = V @ Fx
            Qx = d.c_x[t] + Fx.T @ v
            Qu = d.c_u[t] + fu.T @ v
            cxx = np.diag(d.c_xx[t]) if d.c_xx[t].ndim == 1 else d.c_xx[t]
            Qxx = cxx + Fx.T @ VFx
            Qux_r = fu.T @ VFx + (smu * (fu.T @ Fx) if smu else 0.0)
            Quu = d.c_uu[t] + fu.T @ V @ fu
            Quu_r = Quu + smu * (fu.T @ fu) if smu else Quu
        if cux is not None:
            Qux_r = Qux_r + cux
        Quu, Quu_r = 0.5 * (Quu + Quu.T), 0.5 * (Quu_r + Quu_r.T)
        sol = _solve_controls(Quu_r, Qu, Qux_r, 0.0 if reg_type == "state" else mu, lo, hi,
                              None if k_warm is None else k_warm[t])
        if sol is None:
            return BackwardResult(K, k, (0.0, 0.0), False, t)
        kt, Kt = sol
        k[t], K[t] = kt, Kt
        dV1 += float(kt @ Qu)
        dV2 += 0.5 * float(kt @ Quu @ kt)
        # Value update with the unregularised Q_ux (Tassa et al. 2012, Eq. (11)).
        Qux = Qux_r - (smu * (fu.T * fx if fx_diag else fu.T @ fx) if smu else 0.0)
        Quu_k = Quu @ kt
        v = Qx + Kt.T @ Quu_k + Kt.T @ Qu + Qux.T @ kt
        if diag:
            V = Qxx + np.einsum("md,mn,nd->d", Kt, Quu, Kt) + 2.0 * np.einsum("md,md->d", Kt, Qux)
        else:
            KtQux = Kt.T @ Qux
            V = Qxx + Kt.T @ Quu @ Kt + KtQux + KtQux.T
            V = 0.5 * (V + V.T)
    return BackwardResult(K, k, (dV1, dV2), True)
