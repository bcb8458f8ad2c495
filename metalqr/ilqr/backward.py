"""iLQR backward pass (Appendix E and Algorithm 2 of the TOW paper, corrected).

iLQR backward pass (Appendix E and Algorithm 2 of the TOW paper, corrected), with a full or a
diagonal model of the value Hessian ``V_t``.

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

import math
from dataclasses import dataclass

import numpy as np

from .._validation import check_bool, check_choice, check_real, check_size
from ..exceptions import ValidationError, ValidationTypeError
from ._checks import bounds_array, real_array
from .boxqp import _box_qp
from .derivatives import Derivatives

#: Names accepted by ``reg_type``: ``"state"`` adds ``mu F_u'F_u`` to ``Q_uu`` (and
#: ``mu F_u'F_x`` to ``Q_ux``), ``"control"`` adds ``mu I`` to ``Q_uu``, ``"state+control"``
#: both (the escalation :func:`metalqr.ilqr.ilqr` uses when ``F_u`` is rank-deficient).
REG_TYPES = ("state", "control", "state+control")
VALUE_MODELS = ("full", "diagonal")

__all__ = ["BackwardResult", "backward_pass"]


@dataclass
class BackwardResult:  # numpydoc ignore=PR01
    """Gains and expected-decrease terms of one backward pass.

    The expected change for step ``eps`` is ``eps * dV[0] + eps**2 * dV[1]``.

    Attributes
    ----------
    K : (T, M, D) ndarray
        Feedback gains.
    k : (T, M) ndarray
        Feed-forward gains.
    dV : (2,) ndarray
        Terms of the expected cost change.
    ok : bool
        False when a ``Q_uu`` (plus regularisation) was not positive definite.
    failed_at : int
        The step ``t`` where ``Q_uu`` failed (-1 when ``ok``).
    gradient_norm : float
        ``(sum_t |Q_u,t|^2)^(1/2)``, the gradient with respect to the feed-forward controls.
    """

    K: np.ndarray
    k: np.ndarray
    dV: tuple[float, float]
    ok: bool
    failed_at: int = -1
    #: ``(sum_t |Q_u,t|^2)^(1/2)``, components pushing out of an active bound dropped: the
    #: gradient of the cost with respect to the feed-forward controls under the feedback
    #: policy of later steps (zero at a stationary trajectory; unlike the open-loop gradient
    #: it is not amplified by unstable dynamics).
    gradient_norm: float = float("nan")

    def expected_change(self, eps: float) -> float:
        """Return the predicted cost change of a forward pass with step ``eps``.

        Predicted cost change ``eps dV[0] + eps^2 dV[1]`` of a forward pass with step
        ``eps`` (TOW Algorithm 2 line 17, corrected; see the module docstring).

        Parameters
        ----------
        eps : float >= 0
            Line-search step size.

        Returns
        -------
        float
            The predicted change of the total cost (negative: a decrease).

        Raises
        ------
        ValidationError
            ``eps`` not a finite real >= 0.
        """
        eps = check_real(eps, "eps", minimum=0.0)
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


def _reg_split(mu: float, reg_type: str) -> tuple[float, float]:
    """``(mu_state, mu_control)`` for a regularisation type."""
    return (mu if "state" in reg_type else 0.0, mu if "control" in reg_type else 0.0)


def _backward_compiled(d: Derivatives, T: int, M: int, D: int, mu: float, reg_type: str) -> BackwardResult:
    # the arguments were checked by backward_pass / ilqr (shapes, finiteness) and _dense gives
    # C-contiguous float64: call the kernel, not backward_dense, which would check them again
    # on every backward pass (and every regularisation retry)
    from ._backward_numba import _backward_dense_kernel
    c_ux = np.zeros((T, M, D)) if d.c_ux is None else np.ascontiguousarray(d.c_ux, dtype=float)
    smu, cmu = _reg_split(mu, reg_type)
    K, k, dV1, dV2, failed, qn = _backward_dense_kernel(
        _dense(d.f_x, T), np.ascontiguousarray(d.f_u, dtype=float), np.ascontiguousarray(d.c_x, dtype=float),
        np.ascontiguousarray(d.c_u, dtype=float), _dense(d.c_xx, T), np.ascontiguousarray(d.c_uu, dtype=float),
        c_ux, np.ascontiguousarray(d.cT_x, dtype=float), _dense(d.cT_xx, None), smu, cmu)
    return BackwardResult(K, k, (float(dV1), float(dV2)), failed < 0, int(failed), float(qn))


def _solve_controls(Quu, Qu, Qux, mu, lower, upper, k_warm):
    """Feed-forward ``k`` and feedback ``K`` from the local QP (box-constrained if bounded)."""
    M = Qu.shape[0]
    if not (np.all(np.isfinite(Quu)) and np.all(np.isfinite(Qu)) and np.all(np.isfinite(Qux))):
        return None
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
    res = _box_qp(Quu_reg, Qu, lo, hi, k_warm, 100, 1e-10)
    if not res.ok:
        return None
    # the QP answer is checked, not trusted: first-order optimality on the free components
    scale = max(1.0, float(np.linalg.norm(Qu)), float(np.linalg.norm(Quu_reg) * np.linalg.norm(res.x)))
    if not res.residual <= 1e-8 * scale:
        return None      # treated like a non-PD Q_uu: more regularisation, then retry
    K = np.zeros_like(Qux)
    if np.any(res.free):
        K[res.free] = -res.H_free_inv @ Qux[res.free]
    return res.x, K


def backward_pass(d: Derivatives, U: np.ndarray, *, mu: float, value_model: str,
                  u_min: np.ndarray | None, u_max: np.ndarray | None,
                  k_warm: np.ndarray | None = None, reg_type: str = "state",
                  compiled: bool = True) -> BackwardResult:
    """Run the iLQR backward recursion (TOW paper Appendix E, Algorithm 2, corrected).

    Run the backward recursion from ``V_{T+1} = cT_xx``, ``v_{T+1} = cT_x`` (TOW paper Appendix
    E, Algorithm 2 with the corrections of the module docstring).

    ``value_model="full"`` keeps ``V_t`` dense (``O(D^2)``); ``"diagonal"`` keeps its
    diagonal only (TOW Section 3.1): ``O(D M^2)`` time and ``O(D M)`` memory per step when
    ``f_x`` and ``c_xx`` are given as diagonals.

    The dense, unconstrained case with ``D <= COMPILED_MAX_D`` runs the compiled twin
    ``metalqr.ilqr._backward_numba.backward_dense`` (``compiled=False`` forces Python;
    the two are checked against each other in the tests). Every shape is checked before.

    Parameters
    ----------
    d : Derivatives
        Expansion along the trajectory; its horizon ``T``, state size ``D`` and control
        size ``M`` must agree with ``U`` and with each other; all entries finite.
    U : (T, M) array
        Nominal controls (the bounds are applied to ``U_t + k_t``).
    mu : float >= 0
        Levenberg-Marquardt regularisation.
    value_model : {"full", "diagonal"}
        Dense ``V_t`` or its diagonal only (TOW Section 3.1).
    u_min, u_max : None, scalar or (M,) array
        Box limits (``-inf``/``inf`` allowed, ``u_min <= u_max``); ``None`` for none.
    k_warm : (T, M) array, optional
        Warm start of the box QPs.
    reg_type : {"state", "control", "state+control"}
        ``"state"`` regularises with ``V_{t+1} + mu I`` inside ``Q_uu`` and ``Q_ux`` (Tassa
        et al. 2012, Eq. (10), invariant to the scaling of the controls); ``"control"`` adds
        ``mu I`` to ``Q_uu``; ``"state+control"`` does both (it repairs any singular
        ``Q_uu``, also where ``F_u`` is rank-deficient). The unregularised ``Q_uu`` enters
        the expected decrease.
    compiled : bool
        Allow the compiled kernel for the dense, unconstrained case with
        ``D <= COMPILED_MAX_D`` (``False`` forces Python; results agree).

    Returns
    -------
    BackwardResult
        ``ok=False`` and ``failed_at=t`` when the regularised ``Q_uu`` at step ``t`` is not
        positive definite (reported, not raised).

    Raises
    ------
    ValidationError
        Malformed or mutually inconsistent arguments (checked before any compiled code
        runs), non-finite derivatives, or a dense value model beyond the memory limit
        (``value_model="diagonal"`` is the alternative).

    References
    ----------
    TOW paper [nguyen2023tow], Appendix E and Algorithm 2 (corrected as listed in the module
    docstring); Tassa, Erez and Todorov (2012), Eq. (10), for the regularisation.
    """
    if not isinstance(d, Derivatives):
        raise ValidationTypeError(f"d must be a metalqr.ilqr.Derivatives; got {type(d).__name__}.")
    U = real_array(U, "U", ndim=2)
    T, M = U.shape
    if T < 1 or M < 1:
        raise ValidationError(f"U must have shape (T, M) with T, M >= 1; got {U.shape}.")
    d.check(T, None, M, finite=True, name="d", against=f"U of shape {U.shape}")
    D = d.f_u.shape[1]
    mu = check_real(mu, "mu", minimum=0.0)
    value_model = check_choice(value_model, "value_model", VALUE_MODELS)
    reg_type = check_choice(reg_type, "reg_type", REG_TYPES)
    compiled = check_bool(compiled, "compiled")
    u_min = None if u_min is None else bounds_array(u_min, "u_min", M, -np.inf)
    u_max = None if u_max is None else bounds_array(u_max, "u_max", M, np.inf)
    if u_min is not None and u_max is not None and np.any(u_min > u_max):
        raise ValidationError(f"u_min must not exceed u_max; got u_min={u_min.tolist()}, "
                              f"u_max={u_max.tolist()}.")
    if k_warm is not None:
        k_warm = real_array(k_warm, "k_warm", shape=(T, M))
    diag = value_model == "diagonal"
    if not diag:
        check_size(6.0 * D * D, "backward_pass", what="float64 entries for the dense value model",
                   alternative=f"The state has D = {D}: use value_model='diagonal' (O(D M) memory "
                               f"per step, TOW Section 3.1).")
    return _backward_pass_checked(d, U, mu, value_model, u_min, u_max, k_warm, reg_type, compiled)


def _backward_pass_checked(d: Derivatives, U: np.ndarray, mu: float, value_model: str,
                           u_min, u_max, k_warm, reg_type: str, compiled: bool = True) -> BackwardResult:
    """:func:`backward_pass` on arguments already checked (by it or by :func:`ilqr`)."""
    T, M = U.shape
    D = d.f_u.shape[1]
    diag = value_model == "diagonal"
    if compiled and not diag and u_min is None and u_max is None and D <= COMPILED_MAX_D:
        return _backward_compiled(d, T, M, D, mu, reg_type)
    K = np.zeros((T, M, D))
    k = np.zeros((T, M))
    dV1 = dV2 = qn = 0.0
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
        smu, cmu = _reg_split(mu, reg_type)
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
        active = np.zeros(M, dtype=bool)
        if lo is not None:
            active |= (lo >= 0) & (Qu > 0)
        if hi is not None:
            active |= (hi <= 0) & (Qu < 0)
        qn += float(np.sum(np.where(active, 0.0, Qu) ** 2))
        sol = _solve_controls(Quu_r, Qu, Qux_r, cmu, lo, hi,
                              None if k_warm is None else k_warm[t])
        if sol is None:
            return BackwardResult(K, k, (0.0, 0.0), False, t, math.sqrt(qn))
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
    return BackwardResult(K, k, (dV1, dV2), True, -1, math.sqrt(qn))
