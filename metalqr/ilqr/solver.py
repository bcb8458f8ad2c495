"""The iLQR solver: backward pass, line search, regularisation and control bounds.

The iLQR solver: backward pass, forward pass with backtracking line search, Levenberg-Marquardt
regularisation, box-constrained controls (TOW paper Algorithm 1 lines 9-19 and Appendix E, with the
corrections of :mod:`metalqr.ilqr.backward`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from .._validation import (check_bool, check_callable, check_choice, check_int, check_real,
                           check_size)
from ..exceptions import MetalqrError, ValidationError, ValidationTypeError
from ._checks import bounds_array, callback_output, optional_real, real_array, step_sizes
from .backward import VALUE_MODELS, _backward_pass_checked
from .derivatives import FD_WORK_LIMIT, Derivatives, _fd_derivatives

__all__ = ["ilqr", "ILQRResult"]

#: Default step sizes of the line search (Tassa et al. 2012).
DEFAULT_LINE_SEARCH = tuple(10.0 ** np.linspace(0.0, -3.0, 11))
_MU_MIN, _MU_MAX, _DELTA0 = 1e-6, 1e10, 2.0
#: State regularisation that has not made ``Q_uu`` positive definite by this ``mu`` is
#: escalated to state + control regularisation.
_MU_ESCALATE = 1e6
CONSTRAINTS = ("boxqp", "reject")
REGULARIZATION_TYPES = ("state", "control")


@dataclass
class ILQRResult:  # numpydoc ignore=PR01
    """Result of :func:`ilqr`.

    Attributes
    ----------
    X : (T+1, D) ndarray
        States of the final trajectory.
    U : (T, M) ndarray
        Controls of the final trajectory.
    K : (T, M, D) ndarray
        Feedback gains of the last backward pass.
    k : (T, M) ndarray
        Feed-forward gains of the last backward pass.
    cost : float
        Total cost of ``(X, U)``.
    costs : list of float
        The total cost before the first iteration and after each accepted one.
    converged : bool
        Whether a stopping test on the cost decrease or the gradient was met.
    stop_reason : str
        Why it stopped, as a short code shared with the other result types (see
        "Conventions" in the API reference): ``"tolerance"`` (converged: the expected or the
        achieved relative decrease fell below ``tol``, or ``U0`` was already stationary),
        ``"max_iterations"`` (the limit was reached first), ``"callback"`` (the callback
        returned True), and the failures ``"non_finite"`` (non-finite derivatives at the
        current trajectory), ``"regularization_limit"`` (``Q_uu`` stayed indefinite up to the
        largest ``mu``), ``"line_search_failed"`` (no step size achieved the required
        decrease up to the largest ``mu``) and ``"fd_unresolved"`` (finite-difference
        derivatives cannot resolve the gradient); :func:`metalqr.tow.tow_weights`'s
        ``line_search="paper"`` adds ``"not_positive_definite"`` (``Q_uu`` indefinite,
        Algorithm 2 has no regularisation).
    n_iterations : int
        Iterations run.
    regularization : float
        The final Levenberg-Marquardt ``mu``.
    regularization_type : str
        The regularisation in use at the end: the requested one, or ``"state+control"``
        after an escalation (state regularisation cannot repair a rank-deficient ``f_u``).
    gradient_norm : float
        ``(sum_t |Q_u,t|^2)^(1/2)`` of the last backward pass (the gradient with respect to
        the feed-forward controls under the feedback policy; components pushing out of an
        active bound dropped), ``nan`` if none was completed.
    message : str
        The same in words, with the numbers behind it (for a failure: the cause at the
        failing step, e.g. ``"f_u is ~0 at step t"`` or ``"c_uu not positive definite at
        step t"``; ``"initial trajectory is stationary ..."`` when ``U0`` was already optimal).
    """

    X: np.ndarray
    U: np.ndarray
    K: np.ndarray
    k: np.ndarray
    cost: float
    costs: list = field(default_factory=list)
    converged: bool = False
    stop_reason: str = ""
    n_iterations: int = 0
    regularization: float = 0.0
    regularization_type: str = "state"
    gradient_norm: float = float("nan")
    message: str = ""


def _min_eig(A: np.ndarray) -> float:
    """Return the smallest eigenvalue of the symmetric part of ``A``.

    Smallest eigenvalue of the symmetric part of ``A``; ``nan`` when ``A`` is not finite or the
    eigen-solver fails (never raises: issue 1, ``eigvalsh`` on an overflowed matrix).
    """
    if not np.all(np.isfinite(A)):
        return float("nan")
    scale = float(np.max(np.abs(A)))
    if scale == 0.0:
        return 0.0
    with np.errstate(all="ignore"):
        S = 0.5 * (A / scale + (A / scale).T)       # scaled first: A + A' may overflow
        try:
            return float(np.min(np.linalg.eigvalsh(S))) * scale
        except np.linalg.LinAlgError:
            return float("nan")


def _diagnose(d: Derivatives, t: int, fd: bool, X: np.ndarray) -> str:
    """Explain why ``Q_uu`` could not be made positive definite.

    Why ``Q_uu`` at step ``t`` could not be made positive definite: the cause in terms of the
    derivatives, not only the symptom. Never raises, also for non-finite matrices.
    """
    T = d.f_u.shape[0]
    with np.errstate(all="ignore"):
        fu_scale = lambda s: bool(np.max(np.abs(d.f_u[s])) <= 1e-12 * max(
            1.0, float(np.max(np.abs(d.f_x[s])))))
        mins = [_min_eig(d.c_uu[s]) for s in range(T)]
        parts = []
        n_fu = sum(fu_scale(s) for s in range(T))
        n_bad = sum(not math.isfinite(m) for m in mins)
        n_cuu = sum(m <= 0 for m in mins if math.isfinite(m))
        if not np.all(np.isfinite(d.c_uu[t])) or not math.isfinite(mins[t]):
            parts.append(f"c_uu is not finite at step {t} (or its eigenvalues cannot be "
                         f"computed; {n_bad} of {T} steps alike): the cost's control curvature "
                         f"overflows the floating-point range; rescale the cost")
        if fu_scale(t):
            parts.append(f"f_u is ~0 at step {t} (max |f_u| = {np.max(np.abs(d.f_u[t])):.3g}: "
                         f"the controls do not move the state there; {n_fu} of {T} steps alike)")
        if math.isfinite(mins[t]) and mins[t] <= 0:
            parts.append(f"c_uu not positive definite at step {t} (smallest eigenvalue "
                         f"{mins[t]:.3g}; {n_cuu} of {T} steps alike)")
        if not parts:
            parts.append(f"Q_uu = c_uu + f_u'V f_u is indefinite at step {t} even with the "
                         f"regularisation (the cost-to-go is not convex in u there)")
        text = "; ".join(parts)
        xmax = float(np.max(np.abs(X)))
    if fd and xmax > 1e6:
        text += (f"; derivatives are finite differences along a trajectory with |x| up to "
                 f"{xmax:.3g}: supply derivatives= if they are inaccurate there")
    return text


def ilqr(dynamics: Callable, cost: Callable, x0: Any, U0: Any, *,
         terminal_cost: Callable | None = None,
         derivatives: Callable[[np.ndarray, np.ndarray], Derivatives] | None = None,
         vectorized: bool = False, max_iterations: int = 100, tol: float = 1e-8,
         value_model: Literal["full", "diagonal"] = "full", u_min: Any = None, u_max: Any = None,
         constraint: Literal["boxqp", "reject"] = "boxqp", regularization: float = 0.0,
         regularization_type: Literal["state", "control"] = "state",
         line_search: Any = None, accept_ratio: float = 0.1,
         callback: Callable[[int, np.ndarray, np.ndarray, float], Any] | None = None,
         fd_step: float | None = None, compiled_step: Any = None) -> ILQRResult:
    """Optimise a trajectory by iterative LQR (TOW paper Algorithms 1-2, Appendix E).

    Iterative LQR for ``min_U sum_t cost(x_t, u_t, t) + terminal_cost(x_T)``, ``x_{t+1} =
    dynamics(x_t, u_t, t)``, ``x_0 = x0`` (TOW paper Section 2.1, Algorithms 1-2, Appendix E,
    corrected; Tassa, Erez & Todorov 2012).

    Parameters
    ----------
    dynamics, cost : callables ``(x, u, t)``
        With ``vectorized=False`` they act on one step: ``x`` (D,), ``u`` (M,), ``t`` int,
        returning (D,) / a real scalar. With ``vectorized=True`` they take batches ``x``
        (N, D), ``u`` (N, M), ``t`` (N,) int and return (N, D) / (N,). Returned shapes and
        dtypes are checked (a wrong one raises; NaN/inf in a trial step rejects that step).
    x0 : (D,) real array
        Initial state (complex input is refused, never truncated).
    U0 : (T, M) real array
        Nominal controls, ``T, M >= 1`` (clipped into the bounds in ``"boxqp"`` mode).
    terminal_cost : callable, optional
        Cost of ``x_T`` (default 0). With ``vectorized=False`` it receives ``x_T`` (D,) and
        returns a scalar. **With** ``vectorized=True`` **it receives a batch** ``x`` of shape
        ``(N, D)`` and must return ``(N,)``: ``N = 1`` (the array ``X[-1:]``) for the cost of
        the trajectory, and larger batches of perturbed copies of ``x_T`` for the finite
        differences.
    derivatives : callable ``(X, U) -> Derivatives``, optional
        Analytic derivatives along the trajectory; default: finite differences with checked,
        output-scaled steps (:func:`finite_difference_derivatives`). ``f_x``, ``c_xx`` and
        ``cT_xx`` may be diagonals (vectors), the TOW case. Every returned shape is checked
        against ``(T, D, M)`` before any compiled code runs.
    vectorized : bool
        Whether ``dynamics``, ``cost`` and ``terminal_cost`` take batches (see above).
    max_iterations : int >= 0
        Most iLQR iterations (backward pass, then forward passes of the line search).
    tol : float >= 0
        Stop when the relative cost decrease of an accepted step, or the relative expected
        decrease, falls below ``tol``.
    value_model : {"full", "diagonal"}
        Dense ``V_t`` or its diagonal only (TOW Section 3.1; ``O(D M^2)`` per step). The
        dense model is refused before any allocation when it would exceed metalqr's memory
        limit (``D`` above about 18000).
    u_min, u_max : scalar or (M,), optional
        Box limits on the controls (``-inf``/``inf`` allowed, NaN not, ``u_min <= u_max``).
    constraint : {"boxqp", "reject"}
        ``"boxqp"``: limits enforced in the backward pass by a box QP (Tassa et al. 2014)
        and by clipping in the forward pass. ``"reject"``: the TOW paper's rule
        (Algorithm 1, line 17): unconstrained gains, and a line-search step is rejected
        while any control leaves the box.
    regularization : float >= 0
        Initial Levenberg-Marquardt ``mu``; it is raised when ``Q_uu`` is not positive
        definite or no step is accepted, and lowered after success (Tassa et al. 2012).
    regularization_type : {"state", "control"}
        ``"state"`` adds ``mu I`` to ``V_{t+1}`` inside ``Q_uu`` and ``Q_ux`` (the default,
        invariant to control scaling); ``"control"`` adds ``mu I`` to ``Q_uu``. State
        regularisation cannot repair a singular ``Q_uu`` whose ``f_u`` is rank-deficient
        (two actuators on one state, no control cost): it is then escalated to
        ``"state+control"`` (both), which repairs any singular ``Q_uu``; the result's
        ``regularization_type`` says so.
    line_search : sequence of float in (0, 1], optional
        Step sizes tried in order (default ``10**linspace(0, -3, 11)``).
    accept_ratio : float in (0, 1)
        Accept a step when ``actual change <= accept_ratio * expected change``.
    callback : callable ``(iteration, X, U, cost)``, optional
        Called after each accepted iteration; returns None or a bool, True stops.
    fd_step : float in (0, 0.1], optional
        Fixed relative finite-difference step (default: adaptive, see
        ``metalqr.ilqr.derivatives``).
    compiled_step : Numba-jitted function ``(x, u, t) -> x_next`` or CompiledStep, optional
        The same one-step dynamics as ``dynamics``, compiled. When given, roll-outs and the
        forward passes of the line search run in one compiled loop
        (``metalqr.ilqr._forward_numba``); results are unchanged. It is checked against
        ``dynamics`` at ``(x0, U0[0], 0)``. A plain Numba function costs a compilation of
        the forward kernel once per process (about 1-2 s); a
        :class:`~metalqr.ilqr.CompiledStep` (the standard problems) brings a
        kernel that Numba caches on disk.

    Returns
    -------
    ILQRResult
        The optimised states ``X`` (T+1, D), controls ``U`` (T, M), gains and costs.
        ``stop_reason`` says why it stopped as a short code (``"tolerance"``,
        ``"max_iterations"``, ``"callback"``, ``"non_finite"``, ``"regularization_limit"``,
        ``"line_search_failed"``, ``"fd_unresolved"``; see :class:`ILQRResult`) and
        ``message`` in words: ``"initial trajectory is stationary (gradient norm ...)"``
        when ``U0`` is already optimal; for a failure, the cause at the failing step
        (``"f_u is ~0 at step t"``, ``"c_uu not positive definite at step t"``).

    Raises
    ------
    ValidationError, ValidationTypeError
        Any malformed argument (named in the message), a callback returning a wrong shape or
        a non-real dtype, inconsistent derivative shapes, a non-finite initial cost, or a
        dense value model / finite-difference workload beyond metalqr's limits (with the
        alternative: ``value_model="diagonal"``, ``derivatives=``), a horizon whose
        trajectories and gains (about ``4 (T+1)(D + M + M D)`` entries) exceed them (checked
        before ``U0`` is copied), or an arithmetic / lookup / type / value error raised inside
        ``dynamics``, ``cost`` or ``terminal_cost`` (wrapped, naming the callback, the
        ``vectorized`` convention and the likely fix; the original is chained as
        ``__cause__``). Other exceptions of a callback (e.g. a deliberate stop) pass through.

    Notes
    -----
    With finite-difference derivatives a stationary point is claimed only when the rounding
    of the evaluation points cannot hide a gradient worth more than ``tol`` of the cost (else
    ``converged=False`` with the reason); entries whose refinement overflowed are reported
    as non-finite derivatives, never read as 0.

    References
    ----------
    TOW paper [nguyen2023tow], Section 2.1, Appendix E and Algorithms 1-2 (the iLQR
    recursion, with the corrections listed in :mod:`metalqr.ilqr`); Tassa, Erez and Todorov
    (2012) for the regularisation and line search; Tassa, Mansard and Todorov (2014),
    Algorithm 3, for the box-constrained controls.

    Examples
    --------
    Drive a discretised double integrator (``dt = 0.1``) to the origin in 20 steps:

    >>> import numpy as np
    >>> from metalqr.ilqr import ilqr
    >>> dynamics = lambda x, u, t: np.array([x[0] + 0.1 * x[1], x[1] + 0.1 * u[0]])
    >>> cost = lambda x, u, t: x @ x + 0.1 * u @ u
    >>> res = ilqr(dynamics, cost, x0=np.array([1.0, 0.0]), U0=np.zeros((20, 1)))
    >>> res.converged, res.U.shape, res.X.shape
    (True, (20, 1), (21, 2))
    >>> bool(res.cost < res.costs[0])
    True
    """
    # ---- arguments ---------------------------------------------------------------------
    dynamics = check_callable(dynamics, "dynamics")
    cost = check_callable(cost, "cost")
    terminal_cost = check_callable(terminal_cost, "terminal_cost", allow_none=True)
    derivatives = check_callable(derivatives, "derivatives", allow_none=True)
    callback = check_callable(callback, "callback", allow_none=True)
    x0 = real_array(x0, "x0", ndim=1, allow_empty=False)
    shape0 = getattr(U0, "shape", None)
    if isinstance(shape0, tuple) and len(shape0) == 2 and all(
            isinstance(n, (int, np.integer)) for n in shape0):
        # the horizon x (state + control) size, before U0 is copied or rolled out (issue 2)
        T0, M0 = int(shape0[0]), int(shape0[1])
        check_size(4.0 * (T0 + 1) * (x0.shape[0] + M0 + M0 * x0.shape[0]),
                   f"ilqr with a horizon of T = {T0} steps, D = {x0.shape[0]}, M = {M0}",
                   what="float64 entries for the trajectories X, U and the gains "
                        "(about 4 (T+1)(D + M + M D))",
                   alternative="Shorten the horizon T (e.g. receding-horizon / MPC windows) "
                               "or solve the problem in pieces.")
    U = real_array(U0, "U0", ndim=2).copy()
    T, M = U.shape
    D = x0.shape[0]
    if T == 0 or M == 0:
        raise ValidationError(f"U0 must have shape (T, M) with T, M >= 1; got {U.shape}.")
    vectorized = check_bool(vectorized, "vectorized")
    max_iterations = check_int(max_iterations, "max_iterations", minimum=0)
    tol = check_real(tol, "tol", minimum=0.0)
    value_model = check_choice(value_model, "value_model", VALUE_MODELS)
    constraint = check_choice(constraint, "constraint", CONSTRAINTS)
    regularization = check_real(regularization, "regularization", minimum=0.0, maximum=_MU_MAX)
    regularization_type = check_choice(regularization_type, "regularization_type",
                                       REGULARIZATION_TYPES)
    alphas = DEFAULT_LINE_SEARCH if line_search is None else step_sizes(line_search, "line_search")
    accept_ratio = check_real(accept_ratio, "accept_ratio", minimum=0.0, maximum=1.0,
                              min_inclusive=False, max_inclusive=False)
    fd_step = optional_real(fd_step, "fd_step", minimum=0.0, maximum=0.1, min_inclusive=False)
    lo, hi = bounds_array(u_min, "u_min", M, -np.inf), bounds_array(u_max, "u_max", M, np.inf)
    if np.any(lo > hi):
        raise ValidationError(f"u_min must not exceed u_max; got u_min={lo.tolist()}, "
                              f"u_max={hi.tolist()}.")
    # ---- work and memory, before anything is allocated ----------------------------------
    check_size(3.0 * T * M * D, "ilqr", what="float64 entries for the gains K (T, M, D)",
               alternative="Shorten the horizon T or reduce the state size D.")
    if value_model == "full":
        dense = 6.0 * D * D + (T * D * D if derivatives is None else 0.0)
        check_size(dense, f"value_model='full' with D = {D}",
                   what="float64 entries for dense D x D matrices",
                   alternative="Use value_model='diagonal' (O(D M) memory per step, TOW "
                               "Section 3.1), with derivatives= giving diagonal f_x and c_xx.")
    if derivatives is None:
        n = D + M
        check_size(T * 4.0 * n ** 3, f"finite differences with D + M = {n}",
                   what="point coordinates", limit=FD_WORK_LIMIT,
                   alternative="Supply analytic derivatives with derivatives=... (a "
                               "Derivatives object; f_x and c_xx may be diagonal).")
    bounded = bool(np.any(np.isfinite(lo)) or np.any(np.isfinite(hi)))
    clip = constraint == "boxqp" and bounded
    if terminal_cost is None:
        terminal_cost = (lambda x: np.zeros(np.shape(x)[0])) if vectorized else (lambda x: 0.0)
    else:
        terminal_cost = _guarded(terminal_cost, "terminal_cost", vectorized, D, M)
    dynamics = _guarded(dynamics, "dynamics", vectorized, D, M)
    cost = _guarded(cost, "cost", vectorized, D, M)

    if clip:
        U = np.clip(U, lo, hi)
    elif constraint == "reject" and not _inside(U, lo, hi):
        raise ValidationError("with constraint='reject' the nominal controls U0 must satisfy the "
                              "bounds u_min <= U0 <= u_max.")

    t_single = [np.array([t]) for t in range(T)]   # allocated once, not per step

    def step(x, u, t):
        if vectorized:
            out = dynamics(x[None], u[None], t_single[t])
            return callback_output(out, "dynamics", (1, D), "for a batch of 1 point "
                                   "(vectorized=True)")[0]
        return callback_output(dynamics(x, u, t), "dynamics", (D,), "for one point")

    def total_cost(X, U):
        with np.errstate(all="ignore"):
            if vectorized:
                stage = callback_output(cost(X[:-1], U, np.arange(T)), "cost", (T,),
                                        f"for a batch of {T} points (vectorized=True)")
                final = callback_output(terminal_cost(X[-1:]), "terminal_cost", (1,),
                                        "for the batch X[-1:] of shape (1, D) (vectorized=True)")
                c = float(np.sum(stage)) + float(final[0])
            else:
                c = sum(float(callback_output(cost(X[t], U[t], t), "cost", (), "for one point"))
                        for t in range(T))
                c += float(callback_output(terminal_cost(X[-1]), "terminal_cost", (),
                                           "for x_T of shape (D,)"))
        return c if math.isfinite(c) else math.inf

    if compiled_step is not None:
        from ._forward_numba import CompiledStep, forward_compiled
        if not (isinstance(compiled_step, CompiledStep) or hasattr(compiled_step, "py_func")):
            raise ValidationTypeError("compiled_step must be a Numba-jitted function "
                                      "(@numba.njit) of (x, u, t) -> x_next or a CompiledStep; "
                                      f"got {type(compiled_step).__name__}.")
        if isinstance(compiled_step, CompiledStep):
            compiled_step.check_shapes(D, M)
        try:
            probe = np.asarray(compiled_step(x0.copy(), U[0].copy(), 0), dtype=float)
        except Exception as exc:   # numba typing errors have many classes
            raise ValidationError(f"compiled_step failed on (x0, U0[0], 0): {exc}") from None
        with np.errstate(all="ignore"):
            ref = step(x0, U[0], 0)
        if probe.shape != (D,) or not np.allclose(probe, ref, rtol=1e-9, atol=1e-12,
                                                  equal_nan=True):
            raise ValidationError(f"compiled_step must compute the same step as dynamics; at "
                                  f"(x0, U0[0], t=0) it returns {probe!r}, dynamics {ref!r}.")

    def forward(X, U, K, k, alpha):
        """Closed-loop pass u_t = U_t + alpha k_t + K_t (x_t - X_t) (clipped in box-QP mode)."""
        with np.errstate(all="ignore"):
            if compiled_step is not None:
                return forward_compiled(compiled_step, x0, X, U, K, k, alpha, lo, hi, clip)
            X_new = np.empty((T + 1, D))
            U_new = np.empty_like(U)
            X_new[0] = x0
            U_ff = U + alpha * k                       # feed-forward part, all steps at once
            for t in range(T):
                u = U_ff[t] + K[t] @ (X_new[t] - X[t])
                U_new[t] = np.clip(u, lo, hi) if clip else u
                X_new[t + 1] = step(X_new[t], U_new[t], t)
        return X_new, U_new

    def linearize(X, U):
        if derivatives is None:
            return _fd_derivatives(dynamics, cost, terminal_cost, X, U, vectorized, fd_step)
        d = derivatives(X, U)
        if not isinstance(d, Derivatives):
            raise ValidationTypeError(f"derivatives must return a metalqr.ilqr.Derivatives; got "
                                      f"{type(d).__name__}.")
        return d.check(T, D, M, name="derivatives(X, U)")

    K = np.zeros((T, M, D))
    k = np.zeros((T, M))
    X, U = forward(np.zeros((T + 1, D)), U, K, k, 0.0)   # zero gains: open-loop roll-out
    J = total_cost(X, U)
    if not math.isfinite(J):
        bad = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
        where = (f"the roll-out leaves the floating-point range at step {int(bad[0])}"
                 if bad.size else f"a stage or terminal cost is not finite; the largest state "
                                  f"entry is {float(np.max(np.abs(X))):.3g}")
        raise ValidationError(f"the cost of the initial trajectory (x0, U0) is not finite ({where}); "
                              f"start from controls U0 whose roll-out stays bounded, or shorten "
                              f"the horizon.")
    costs = [J]
    mu, delta = float(regularization), 1.0
    reg_mode = regularization_type
    reason, converged, it, gnorm = "max_iterations", False, 0, float("nan")
    message = f"iteration limit reached (max_iterations={max_iterations})"
    back_lo, back_hi = (lo, hi) if clip else (None, None)

    def increase(mu, delta):
        delta = max(_DELTA0, delta * _DELTA0)
        return max(_MU_MIN, mu * delta), delta

    def result():
        return ILQRResult(X, U, K, k, J, costs, converged, reason, it, mu, reg_mode, gnorm,
                          message)

    for it in range(1, max_iterations + 1):
        d = linearize(X, U)
        if not d.all_finite():
            reason = "non_finite"
            message = ("non-finite derivatives at the current trajectory (" + _first_non_finite(d)
                       + "; stopped, last finite iterate kept)")
            break
        while True:
            res = _backward_pass_checked(d, U, mu, value_model, back_lo, back_hi, k, reg_mode)
            if res.ok:
                break
            if reg_mode == "state" and (mu >= _MU_ESCALATE or _rank_deficient(d.f_u[res.failed_at])):
                reg_mode = "state+control"        # repairs any singular Q_uu (issue 13 A)
                mu = max(mu, _MU_MIN)
                continue
            mu, delta = increase(mu, delta)
            if mu > _MU_MAX:
                reason = "regularization_limit"
                message = (f"regularization limit (mu > {_MU_MAX:g}, {reg_mode} regularisation): "
                           f"Q_uu not positive definite at step {res.failed_at}; cause: "
                           + _diagnose(d, res.failed_at, derivatives is None, X))
                return result()
        K, k, gnorm = res.K, res.k, res.gradient_norm
        expected_full = res.expected_change(1.0)
        if expected_full > -tol * max(1.0, abs(J)):
            hidden = _fd_hidden_decrease(d, X, U, fd_step) if derivatives is None else 0.0
            if hidden > tol * max(1.0, abs(J)):
                reason = "fd_unresolved"
                message = (f"finite-difference derivatives cannot resolve the gradient here "
                           f"(issue 3): the curvature (max |c_uu| {np.max(np.abs(d.c_uu)):.3g}) "
                           f"times the rounding of the evaluation points can hide a gradient "
                           f"worth a cost decrease up to {hidden:.3g}, so the apparent "
                           f"stationarity (gradient norm {gnorm:.3g}) is not a convergence; "
                           f"supply derivatives= or rescale the cost")
                break
            converged, reason = True, "tolerance"
            if it == 1:
                message = (f"initial trajectory is stationary (gradient norm {gnorm:.3g}, expected "
                           f"decrease {-expected_full:.3g}): U0 is already a local optimum, "
                           f"nothing was changed")
            else:
                message = f"expected decrease below tol (gradient norm {gnorm:.3g})"
            break
        accepted = False
        n_outside = n_nonfinite = 0
        last = None
        for alpha in alphas:
            X_new, U_new = forward(X, U, K, k, alpha)
            if constraint == "reject" and not _inside(U_new, lo, hi):
                n_outside += 1
                continue
            J_new = total_cost(X_new, U_new)
            if not math.isfinite(J_new):
                n_nonfinite += 1
                continue   # non-finite costs are rejected, never propagated
            expected = res.expected_change(alpha)
            last = (alpha, J_new - J, expected)
            if expected < 0 and J_new - J <= accept_ratio * expected:
                accepted = True
                break
        if not accepted:
            mu, delta = increase(mu, delta)
            if mu > _MU_MAX:
                trials = []
                if last is not None:
                    trials.append(f"at step size {last[0]:.3g} the cost changed by {last[1]:.3g} "
                                  f"against a predicted {last[2]:.3g}")
                if n_nonfinite:
                    trials.append(f"{n_nonfinite} trial(s) gave a non-finite cost")
                if n_outside:
                    trials.append(f"{n_outside} trial(s) left the control box "
                                  f"(constraint='reject')")
                reason = "line_search_failed"
                message = (f"no improving step (regularization limit reached): no line-search step "
                           f"achieved {accept_ratio:g} of the predicted decrease "
                           f"{-expected_full:.3g} (gradient norm {gnorm:.3g}); "
                           + "; ".join(trials)
                           + ("; finite-difference derivatives may be inaccurate here, supply "
                              "derivatives=" if derivatives is None else
                              "; check that derivatives= matches dynamics and cost"))
                break
            continue
        improvement = J - J_new
        X, U, J = X_new, U_new, J_new
        costs.append(J)
        delta = min(1.0 / _DELTA0, delta / _DELTA0)
        mu = mu * delta if mu * delta > _MU_MIN else 0.0
        if callback is not None:
            stop = callback(it, X, U, J)
            if stop is not None and not isinstance(stop, (bool, np.bool_)):
                raise ValidationTypeError(f"callback must return None or a bool (True stops); "
                                          f"got {type(stop).__name__}.")
            if stop:
                reason, message = "callback", f"the callback asked to stop after iteration {it}"
                break
        if improvement < tol * max(1.0, abs(J)):
            reason, converged = "tolerance", True
            message = (f"relative improvement below tol ({improvement:.3g} < "
                       f"{tol:g} max(1, |J|))")
            break
    return result()


def _fd_hidden_decrease(d: Derivatives, X: np.ndarray, U: np.ndarray,
                        fd_step: float | None) -> float:
    """Estimate the cost decrease that a gradient hidden by rounding could give.

    Upper estimate of the cost decrease a gradient invisible to central differences could give:
    an evaluation point ``z +- h`` is rounded by up to ``eps (|z| + h)``, which shifts a
    derivative by ``|c_zz| eps (|z| + h)``; such a hidden gradient ``g`` is worth ``g^2 / (2
    c_zz)``, i.e. ``c_zz (eps (|z| + h))^2 / 2`` per coordinate.
    """
    eps = np.finfo(float).eps
    rel = eps ** (1 / 3) if fd_step is None else fd_step
    with np.errstate(all="ignore"):
        total = 0.0
        for Z, H in ((U, d.c_uu), (X[:-1], d.c_xx)):
            diag = np.abs(H) if H.ndim == 2 else np.abs(np.diagonal(H, axis1=1, axis2=2))
            e = eps * (np.abs(Z) + rel * np.maximum(1.0, np.abs(Z)))
            total += float(np.sum(0.5 * diag * e * e))
    return total if math.isfinite(total) else math.inf


#: Exception classes that signal a bug in a user callback (wrapped by :func:`_guarded`).
_CALLBACK_BUGS = (ArithmeticError, LookupError, TypeError, ValueError, AttributeError, NameError)


def _guarded(fn: Callable, name: str, vectorized: bool, D: int, M: int) -> Callable:
    """Wrap a user callback so that its exceptions name the callback.

    ``fn`` with any non-metalqr exception it raises re-raised as a :class:`ValidationError` that
    names the callback, the calling convention in use and the likely fix, chained to the
    original (issue 4).
    """
    if vectorized:
        conv = ("vectorized=True was set: it receives a batch x of shape (N, D) = (N, "
                f"{D})" + ("" if name == "terminal_cost" else f", u (N, {M}), t (N,) int")
                + " and must return " + ("(N, D)" if name == "dynamics" else "(N,)")
                + "; if it is written for one step, pass vectorized=False")
    else:
        conv = (f"vectorized=False: it receives one step, x of shape ({D},)"
                + ("" if name == "terminal_cost" else f", u ({M},), t an int")
                + " and must return " + (f"({D},)" if name == "dynamics" else "a real scalar")
                + "; if it is written for batches, pass vectorized=True")

    def call(*args):
        try:
            return fn(*args)
        except MetalqrError:
            raise
        except _CALLBACK_BUGS as exc:      # other exceptions (a deliberate stop) pass through
            shapes = ", ".join(str(np.shape(a)) for a in args)
            raise ValidationError(
                f"{name} raised {type(exc).__name__}: {exc} (called with arguments of shapes "
                f"{shapes}; {conv}). Fix the error in {name} (e.g. guard divisions and "
                f"domain errors), or check its calling convention.") from exc
    return call


def _first_non_finite(d: Derivatives) -> str:
    """Which derivative is non-finite first, and where (``"f_u at step 3"``)."""
    for name in ("f_x", "f_u", "c_x", "c_u", "c_xx", "c_uu", "c_ux"):
        a = getattr(d, name)
        if a is not None and not np.all(np.isfinite(a)):
            t = int(np.argmax(~np.all(np.isfinite(a.reshape(a.shape[0], -1)), axis=1)))
            return f"{name} at step {t}"
    return "cT_x" if not np.all(np.isfinite(d.cT_x)) else "cT_xx"


def _rank_deficient(fu: np.ndarray) -> bool:
    """Return whether ``f_u`` has numerical rank below ``M``.

    Whether ``f_u`` (D, M) has numerical rank below ``M`` (state regularisation ``mu f_u'f_u``
    cannot then make ``Q_uu`` positive definite).
    """
    if fu.shape[0] < fu.shape[1]:
        return True
    sv = np.linalg.svd(fu, compute_uv=False)
    return bool(sv[-1] <= 1e-10 * max(sv[0], 1e-300))


def _inside(U: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    return bool(np.all(U >= lo) and np.all(U <= hi))
