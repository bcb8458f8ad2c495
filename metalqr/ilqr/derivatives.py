"""Derivatives of the dynamics and cost along a trajectory.

Derivatives of the dynamics and cost along a trajectory, from the user or by finite differences
(vectorised over the horizon when the callables accept batches).

Finite-difference steps (issue 13 A). A central difference with step ``h`` has rounding
error about ``eps |f| / h``. The classic step ``h = eps^(1/3) max(1, |z_j|)`` is relative to
the *input*; when the outputs are huge and the input is small (a control ``u = 0`` next to
a state ``|x| = 1e17``) the perturbation is lost in rounding (``1.5 x + h == 1.5 x``) and the
derivative comes out as 0. Every difference is therefore checked. The "smallest
resolvable derivative" of an entry is ``_KAPPA eps |f| / h`` (``_KAPPA = 1e4``: resolved to
4 digits). Where it exceeds ``1e-3`` (outputs above about ``3e3 max(1, |z_j|)``), an entry
is *at risk* if it is resolved to fewer than ``_KAPPA_ACCEPT`` (1e8) units of rounding and
either its rounding bound exceeds ``1e-7`` of the largest derivative of the same coordinate,
or it was not seen at all while a derivative of size 1 could have been lost. Smaller
outputs are never refined, so ordinary problems are differenced exactly as before. The
coordinates of at-risk entries
are differenced again with steps growing by ``_GROWTH`` (1e3) per rung (for a Hessian, a
coordinate's step grows while its own second derivative is at risk); a rung's value
replaces the previous one only while the two agree within their rounding bounds (a larger
step must not trade rounding for truncation error unnoticed), and the entry is settled when
it is resolved to ``_KAPPA_ACCEPT`` (1e8) units of rounding (relative rounding error below
1e-7), when any derivative above ``1e-8`` would be resolved (the entry is then ~0), when a
larger step no longer lowers the smallest resolvable derivative (the step has outgrown the
output's own scale), or at the first inconsistent or non-finite rung.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from .._validation import check_bool, check_callable, check_size
from ..exceptions import ValidationError
from ._checks import callback_output, optional_real, real_array

__all__ = ["Derivatives", "finite_difference_derivatives", "fd_dynamics_jacobians",
           "quadratic_cost_derivatives", "FD_WORK_LIMIT"]

_EPS = np.finfo(float).eps
#: An FD entry is resolved when its two evaluations differ by at least this many units of
#: rounding of the output.
_KAPPA = 1e4
#: Resolution at which a refined entry is settled.
_KAPPA_ACCEPT = 1e8
#: Rounding bound, relative to the largest derivative of the same coordinate, above which
#: a seen entry is refined.
_REL = 1e-7
#: Step growth per rung of the refinement, and the largest number of rungs.
_GROWTH, _MAX_RUNGS = 1e3, 40
#: Rounding error of one evaluation of a user callable, in units of ``eps |f|``.
_SAFETY = 8.0
#: Largest number of float64 point coordinates formed in one batch (memory per chunk).
_CHUNK = 2 ** 22
#: Largest total number of point coordinates one finite-difference call may evaluate
#: (work guard: ``T * 4 (D + M)^3`` for the cost Hessian).
FD_WORK_LIMIT = 2 ** 34


@dataclass
class Derivatives:  # numpydoc ignore=PR01
    """Derivatives of the dynamics and cost along a trajectory (TOW paper Eq. (64)-(65)).

    First derivatives of the dynamics and second-order expansion of the cost along a trajectory
    ``X`` (T+1, D), ``U`` (T, M) (TOW paper Appendix E, Eq. (64)-(65)).

    Attributes
    ----------
    f_x : (T, D, D) dense or (T, D) diagonal ndarray
        State Jacobians of the dynamics, ``d x_{t+1} / d x_t``.
    f_u : (T, D, M) ndarray
        Control Jacobians of the dynamics, ``d x_{t+1} / d u_t``.
    c_x : (T, D) ndarray
        State gradients of the stage costs.
    c_u : (T, M) ndarray
        Control gradients of the stage costs.
    c_xx : (T, D, D) dense or (T, D) diagonal ndarray
        State Hessians of the stage costs.
    c_uu : (T, M, M) ndarray
        Control Hessians of the stage costs.
    c_ux : (T, M, D) ndarray or None
        Mixed second derivatives of the stage costs (None: zero).
    cT_x : (D,) ndarray
        Gradient of the terminal cost.
    cT_xx : (D, D) dense or (D,) diagonal ndarray
        Hessian of the terminal cost.

    Raises
    ------
    ValidationError
        At construction, when an array is not real (complex, boolean, string), or when the
        shapes disagree (``T``, ``D`` and ``M`` are read from ``f_u``). Non-finite entries are
        allowed here (derivatives at a diverged trajectory); :func:`backward_pass` refuses
        them and :func:`ilqr` stops with a reason.

    References
    ----------
    TOW paper [nguyen2023tow], Appendix E, Eq. (64)-(65).
    """

    f_x: np.ndarray
    f_u: np.ndarray
    c_x: np.ndarray
    c_u: np.ndarray
    c_xx: np.ndarray
    c_uu: np.ndarray
    c_ux: Optional[np.ndarray]
    cT_x: np.ndarray
    cT_xx: np.ndarray

    def __post_init__(self) -> None:
        self.check()

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, D, M)`` read from ``f_u``."""
        return tuple(np.shape(self.f_u))

    def check(self, T: int | None = None, D: int | None = None, M: int | None = None, *,
              finite: bool = False, name: str = "derivatives",
              against: str = "the trajectory") -> "Derivatives":
        """Validate every field and convert it to C-contiguous float64 in place.

        Validate every field (real dtype, shapes consistent with ``f_u`` (T, D, M) and with
        the given ``T``, ``D``, ``M``; all finite if ``finite``); convert to C-contiguous
        float64 in place.

        Parameters
        ----------
        T, D, M : int, optional
            Horizon, state size and control size the fields must match (None: read from
            ``f_u``).
        finite : bool
            Whether to refuse non-finite entries.
        name : str
            How the messages name this object (``name.f_x`` ...).
        against : str
            What gave ``T``, ``D``, ``M`` (for the messages).

        Returns
        -------
        Derivatives
            ``self``, its fields converted.

        Raises
        ------
        ValidationError
            Naming the field (``name.f_x`` ...) and the expected shape.
        """
        f_u = real_array(self.f_u, f"{name}.f_u", ndim=3, finite=False)
        T0, D0, M0 = f_u.shape
        for want, got, what in ((T, T0, "T (horizon)"), (D, D0, "D (state size)"),
                                (M, M0, "M (control size)")):
            if want is not None and want != got:
                raise ValidationError(f"{name}.f_u has shape {f_u.shape} (T, D, M) but "
                                      f"{against} has {what} = {want}; every derivative array "
                                      f"must match the trajectory it was computed on.")
        if min(T0, D0, M0) < 1:
            raise ValidationError(f"{name}.f_u must have shape (T, D, M) with T, D, M >= 1; "
                                  f"got {f_u.shape}.")
        T, D, M = T0, D0, M0
        spec = {"f_x": [(T, D, D), (T, D)], "c_x": [(T, D)], "c_u": [(T, M)],
                "c_xx": [(T, D, D), (T, D)], "c_uu": [(T, M, M)], "c_ux": [(T, M, D)],
                "cT_x": [(D,)], "cT_xx": [(D, D), (D,)]}
        self.f_u = np.ascontiguousarray(f_u)
        for field_name, shapes in spec.items():
            value = getattr(self, field_name)
            if value is None and field_name == "c_ux":
                continue
            arr = real_array(value, f"{name}.{field_name}", finite=False)
            if arr.shape not in shapes:
                want = " or ".join(str(s) for s in shapes)
                raise ValidationError(f"{name}.{field_name} must have shape {want} for "
                                      f"(T, D, M) = {(T, D, M)} read from f_u; got {arr.shape}.")
            setattr(self, field_name, np.ascontiguousarray(arr))
        if finite:
            for field_name in ("f_x", "f_u", "c_x", "c_u", "c_xx", "c_uu", "c_ux", "cT_x",
                               "cT_xx"):
                arr = getattr(self, field_name)
                if arr is not None and not np.all(np.isfinite(arr)):
                    bad = np.argwhere(~np.isfinite(arr))[0]
                    raise ValidationError(f"{name}.{field_name} contains non-finite values "
                                          f"(first at index {tuple(int(i) for i in bad)}); "
                                          f"derivatives must be finite.")
        return self

    def all_finite(self) -> bool:
        """Return whether every array is finite.

        Returns
        -------
        bool
            True when no field holds NaN or an infinity.
        """
        return all(np.all(np.isfinite(getattr(self, n))) for n in
                   ("f_x", "f_u", "c_x", "c_u", "c_xx", "c_uu", "cT_x", "cT_xx")) and (
            self.c_ux is None or bool(np.all(np.isfinite(self.c_ux))))


def _base(h: float | None, order: int) -> float:
    """Return the relative finite-difference step.

    Relative step: ``eps^(1/3)`` (first) / ``eps^(1/4)`` (second derivatives), or the user's
    ``h`` / ``h^(3/4)``.
    """
    if order == 1:
        return _EPS ** (1 / 3) if h is None else h
    return _EPS ** 0.25 if h is None else h ** 0.75


def _batched(fn: Callable, vectorized: bool, D: int | None, name: str, p: int | None) -> Callable:
    """Return a batched version of a user callable.

    ``f(points (N, n), t (N,)) -> (N, p)`` from a user callable: ``fn(x, u, t)`` when ``D``
    splits the points into (x, u), ``fn(x)`` (terminal cost) when ``D`` is None; ``p`` is the
    output size (None: a scalar, returned as (N, 1)). The output shape is checked.
    """
    def check(out, N):
        if vectorized:
            want = (N,) if p is None else (N, p)
            arr = callback_output(out, name, want, f"for a batch of {N} points (vectorized=True)")
        else:
            arr = callback_output(out, name, () if p is None else (p,), "for one point")
        return arr.reshape(N, -1) if vectorized else arr.reshape(1, -1)

    if D is None:
        if vectorized:
            return lambda P, t: check(fn(P), P.shape[0])
        return lambda P, t: np.concatenate([check(fn(q), 1) for q in P]) if len(P) else \
            np.zeros((0, 1 if p is None else p))
    if vectorized:
        return lambda P, t: check(fn(P[:, :D], P[:, D:], t), P.shape[0])
    return lambda P, t: np.concatenate([check(fn(q[:D], q[D:], int(ti)), 1)
                                        for q, ti in zip(P, t)])


def _rows_in_chunks(per_row: int, R: int):
    """Row ranges of at most ``_CHUNK`` point coordinates each."""
    step = max(1, _CHUNK // max(per_row, 1))
    return [(a, min(a + step, R)) for a in range(0, R, step)]


def _grad_once(f, Z, ts, h):
    """Return central differences at many points.

    Central differences at rows ``Z`` (R, n) with steps ``h`` (R, n): estimate (R, n, p),
    rounding bound, resolution in units of rounding, and smallest resolvable derivative.
    """
    R, n = Z.shape
    out = []
    for a, b in _rows_in_chunks(2 * n * n, R):
        Zc, hc = Z[a:b], h[a:b]
        pts = Zc[:, None, None, :] + np.array([1.0, -1.0])[None, :, None, None] * (
            hc[:, None, :, None] * np.eye(n))
        with np.errstate(all="ignore"):
            V = f(pts.reshape(-1, n), np.repeat(ts[a:b], 2 * n))
        out.append(V.reshape(b - a, 2, n, -1))
    V = np.concatenate(out)
    with np.errstate(all="ignore"):
        diff = V[:, 0] - V[:, 1]
        noise = _EPS * (np.abs(V[:, 0]) + np.abs(V[:, 1]))
        den = 2 * h[:, :, None]
        return diff / den, _SAFETY * noise / den, np.abs(diff) / noise, _KAPPA * noise / den


def _hess_once(f, Z, ts, h):
    """Return second differences of a scalar function at many points.

    Second differences ``(f(++) - f(+-) - f(-+) + f(--)) / (4 h_i h_j)`` of a scalar ``f`` at
    rows ``Z`` (R, n): estimate, rounding bound, resolution and smallest resolvable second
    derivative, each (R, n, n).
    """
    R, n = Z.shape
    signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=float)
    eye = np.eye(n)
    # blocks of (rows, first index i) with at most _CHUNK point coordinates each
    ib = max(1, min(n, _CHUNK // (4 * n * n)))
    rc = max(1, _CHUNK // (4 * n * n * n)) if ib == n else 1
    out = []
    for a, b in [(r, min(r + rc, R)) for r in range(0, R, rc)]:
        Cr = np.empty((b - a, 4, n, n))
        hE = h[a:b, :, None] * eye                                    # row i = h_i e_i
        for i0 in range(0, n, ib):
            i1 = min(i0 + ib, n)
            pts = (Z[a:b, None, None, None, :]
                   + signs[None, :, 0, None, None, None] * hE[:, None, i0:i1, None, :]
                   + signs[None, :, 1, None, None, None] * hE[:, None, None, :, :])  # (r, 4, ib, n, n)
            with np.errstate(all="ignore"):
                C = f(pts.reshape(-1, n), np.repeat(ts[a:b], 4 * (i1 - i0) * n))
            Cr[:, :, i0:i1] = C.reshape(b - a, 4, i1 - i0, n)
        out.append(Cr)
    C = np.concatenate(out)
    with np.errstate(all="ignore"):
        num = C[:, 0] - C[:, 1] - C[:, 2] + C[:, 3]
        noise = _EPS * np.abs(C).sum(axis=1)
        den = 4 * h[:, :, None] * h[:, None, :]
        H = num / den
        H = 0.5 * (H + np.swapaxes(H, 1, 2))
        return H, _SAFETY * noise / den, np.abs(num) / noise, _KAPPA * noise / den


def _adapt(once, Z, ts, h0, fixed, hessian=False):
    """Run ``once`` and refine the entries at risk on a ladder of steps.

    Run ``once`` at steps ``h0``; refine the at-risk entries on a ladder of growing steps
    (module docstring). ``once`` returns (estimate, rounding bound, resolution, smallest
    resolvable value), entries indexed (row, coordinate, ...).
    """
    est, err, ratio, smin = once(Z, ts, h0)
    if fixed:
        return est
    with np.errstate(all="ignore"):     # products of huge entries may overflow (issue 3)
        if hessian:
            dg = np.abs(np.diagonal(est, axis1=1, axis2=2))
            scale = np.maximum(np.abs(est), np.sqrt(dg[:, :, None] * dg[:, None, :]))
        else:
            scale = np.max(np.abs(est), axis=2, keepdims=True)
        # at risk, next to a large output (a derivative of 1e-3 resolved to fewer than 4
        # digits): an entry seen but resolved to fewer than 7 digits relative to the largest
        # of its coordinate, or an entry not seen where a derivative of 1 could have been lost
        pending = (ratio < _KAPPA_ACCEPT) & np.isfinite(smin) & (
            ((ratio > 0) & (err > _REL * scale) & (smin > 1e-3)) | (smin > 1.0))
    if not np.any(pending):
        return est
    rows = np.flatnonzero(pending.reshape(len(Z), -1).any(axis=1))
    Zs, tss, h = Z[rows], ts[rows], h0[rows].copy()
    e, er, pend, sm_prev = est[rows], err[rows], pending[rows], smin[rows]
    overflowed = np.zeros_like(pend)
    for _ in range(_MAX_RUNGS):
        if hessian:     # a coordinate moves while its own curvature is unresolved
            moving = np.diagonal(pend, axis1=1, axis2=2)
            pend = pend & (moving[:, :, None] | moving[:, None, :])
        else:           # a coordinate moves while any output's derivative is unresolved
            moving = pend.any(axis=2)
        if not np.any(moving):
            break
        h = np.where(moving, h * _GROWTH, h)
        try:
            G, E, rat, sm = once(Zs, tss, h)
        except (ArithmeticError, ValueError):   # e.g. math.exp overflowing at a large step
            break
        with np.errstate(all="ignore"):
            usable = np.isfinite(G) & (np.abs(G - e) <= er + E)
        overflowed |= pend & ~np.isfinite(G)
        take = pend & usable
        e[take], er[take] = G[take], E[take]
        with np.errstate(invalid="ignore"):
            # settled: resolved; or any derivative above 1e-8 would be seen (the entry is ~0);
            # or a larger step no longer lowers the resolvable size (beyond the output's scale)
            settled = take & ((rat >= _KAPPA_ACCEPT) | (sm <= 1e-8) | (sm >= sm_prev))
        pend = pend & ~settled & usable
        sm_prev = sm
        if not np.any(pend):
            break
    # an entry still unresolved whose larger steps overflowed is unknown, not zero: mark it
    # non-finite so that the solver stops instead of reading it as a zero gradient (issue 3)
    e[pend & overflowed] = np.nan
    est[rows] = e
    return est


def _gradient(f, Z, ts, step):
    h0 = _base(step, 1) * np.maximum(1.0, np.abs(Z))
    return _adapt(lambda Zs, tss, h: _grad_once(f, Zs, tss, h), Z, ts, h0, step is not None)


def _hessian(f, Z, ts, step):
    h0 = _base(step, 2) * np.maximum(1.0, np.abs(Z))
    return _adapt(lambda Zs, tss, h: _hess_once(f, Zs, tss, h), Z, ts, h0, step is not None,
                  hessian=True)


def _check_trajectory(X, U):
    X = real_array(X, "X", ndim=2)
    U = real_array(U, "U", ndim=2)
    T, M = U.shape
    if T < 1 or M < 1:
        raise ValidationError(f"U must have shape (T, M) with T, M >= 1; got {U.shape}.")
    if X.shape[0] != T + 1 or X.shape[1] < 1:
        raise ValidationError(f"X must have shape (T+1, D) = ({T + 1}, D) with D >= 1 to match U "
                              f"of shape {U.shape}; got {X.shape}.")
    return X, U


def _check_fd_options(vectorized, step):
    vectorized = check_bool(vectorized, "vectorized")
    step = optional_real(step, "step", minimum=0.0, maximum=0.1, min_inclusive=False)
    return vectorized, step


def _dynamics_jacobians(dynamics, X, U, vectorized, step):
    T, D = X.shape[0] - 1, X.shape[1]
    n = D + U.shape[1]
    check_size(T * 2.0 * n * n, "finite differences of dynamics", what="point coordinates",
               alternative="Supply analytic derivatives with derivatives=... (a Derivatives "
                           "object, f_x may be diagonal).", limit=FD_WORK_LIMIT)
    Z = np.concatenate([X[:-1], U], axis=1)
    J = _gradient(_batched(dynamics, vectorized, D, "dynamics", D), Z, np.arange(T), step)
    return np.swapaxes(J[:, :D], 1, 2), np.swapaxes(J[:, D:], 1, 2)


def fd_dynamics_jacobians(dynamics: Callable, X: np.ndarray, U: np.ndarray, *,
                          vectorized: bool = False, step: float | None = None):
    """Return central-difference dynamics Jacobians along a trajectory.

    Central-difference ``f_x`` (T, D, D) and ``f_u`` (T, D, M) along (X, U), with the checked,
    output-scaled steps of the module docstring.

    Parameters
    ----------
    dynamics : callable ``(x, u, t) -> x_next``
        One step (``vectorized=False``: (D,), (M,), int -> (D,)) or a batch
        (``vectorized=True``: (N, D), (N, M), (N,) -> (N, D)).
    X : (T+1, D) array
        Finite real states.
    U : (T, M) array
        Finite real controls.
    vectorized : bool
        Whether the callables take batches (see above).
    step : float in (0, 0.1], optional
        Fixed relative step ``h`` (``h max(1, |z|)``, no adaptation); default adaptive.

    Returns
    -------
    f_x : (T, D, D); f_u : (T, D, M)

    Raises
    ------
    ValidationError
        Malformed arguments, a callback returning the wrong shape or a non-real dtype, or
        more than ``FD_WORK_LIMIT`` point coordinates to evaluate.
    """
    check_callable(dynamics, "dynamics")
    X, U = _check_trajectory(X, U)
    vectorized, step = _check_fd_options(vectorized, step)
    return _dynamics_jacobians(dynamics, X, U, vectorized, step)


def quadratic_cost_derivatives(X: np.ndarray, U: np.ndarray, goal: np.ndarray, q: float, r: float,
                               q_final: float) -> dict:
    """Return the exact derivatives of a diagonal quadratic cost.

    Exact derivatives of ``q |x - goal|^2 + r |u|^2`` (stage) and ``q_final |x_T - goal|^2``
    (terminal), as keyword arguments of :class:`Derivatives` (diagonal Hessians).

    Parameters
    ----------
    X : (T+1, D); U : (T, M); goal : (D,) or scalar
    q, r, q_final : float
        Finite weights.

    Returns
    -------
    dict with ``c_x, c_u, c_xx, c_uu, c_ux, cT_x, cT_xx``.

    Raises
    ------
    ValidationError
        Malformed or inconsistent arguments.
    """
    from .._validation import check_real
    X, U = _check_trajectory(X, U)
    T, M = U.shape
    D = X.shape[1]
    goal = real_array(goal, "goal")
    if goal.shape not in ((), (D,)):
        raise ValidationError(f"goal must be a scalar or have shape ({D},); got {goal.shape}.")
    q, r, q_final = (check_real(v, n) for v, n in ((q, "q"), (r, "r"), (q_final, "q_final")))
    return dict(c_x=2 * q * (X[:-1] - goal), c_u=2 * r * U, c_xx=np.full((T, D), 2 * q),
                c_uu=np.broadcast_to(2 * r * np.eye(M), (T, M, M)).copy(), c_ux=None,
                cT_x=2 * q_final * (X[-1] - goal), cT_xx=np.full(D, 2 * q_final))


def _fd_derivatives(dynamics, cost, terminal_cost, X, U, vectorized, step) -> Derivatives:
    D = X.shape[1]
    T = U.shape[0]
    n = D + U.shape[1]
    check_size(T * 4.0 * n ** 3 + 4.0 * D ** 3, "finite differences of cost",
               what="point coordinates",
               alternative="Supply analytic derivatives with derivatives=... (a Derivatives "
                           "object; c_xx may be diagonal).", limit=FD_WORK_LIMIT)
    Z = np.concatenate([X[:-1], U], axis=1)                       # (T, D + M)
    f_x, f_u = _dynamics_jacobians(dynamics, X, U, vectorized, step)
    stage = _batched(cost, vectorized, D, "cost", None)
    ts = np.arange(T)
    g = _gradient(stage, Z, ts, step)[:, :, 0]
    H = _hessian(stage, Z, ts, step)
    terminal = _batched(terminal_cost, vectorized, None, "terminal_cost", None)
    xT = X[-1:]
    gT = _gradient(terminal, xT, np.zeros(1, dtype=int), step)[0, :, 0]
    HT = _hessian(terminal, xT, np.zeros(1, dtype=int), step)[0]
    return Derivatives(f_x=f_x, f_u=f_u, c_x=g[:, :D], c_u=g[:, D:], c_xx=H[:, :D, :D],
                       c_uu=H[:, D:, D:], c_ux=H[:, D:, :D], cT_x=gT, cT_xx=HT)


def finite_difference_derivatives(dynamics: Callable, cost: Callable, terminal_cost: Callable,
                                  X: np.ndarray, U: np.ndarray, *, vectorized: bool = False,
                                  step: float | None = None) -> Derivatives:
    """Differentiate the dynamics and costs along a trajectory by central differences.

    Central finite differences of ``dynamics``, ``cost`` and ``terminal_cost`` along ``(X, U)``
    (the expansion of TOW paper Appendix E, Eq. (64)-(65)).

    Jacobians use ``2 (D + M)`` evaluations per time step; the cost Hessian uses the
    central second-difference formula on ``z = (x, u)`` with ``4 (D + M)^2`` evaluations.
    Steps: ``h max(1, |z|)`` with ``h = eps^(1/3)`` for first and ``eps^(1/4)`` for second
    derivatives; entries lost in rounding are differenced again with a step scaled to the
    output and kept only when consistent (module docstring). Evaluations are batched in
    chunks of at most ``2**22`` coordinates.

    Parameters
    ----------
    dynamics : callable ``(x, u, t)``
        Returns the next state: (D,) per point, or (N, D) for a batch with ``vectorized=True``
        (``x`` (N, D), ``u`` (N, M), ``t`` (N,) int).
    cost : callable ``(x, u, t)``
        Stage cost: a real scalar per point, or (N,) for a batch.
    terminal_cost : callable ``(x)``
        Cost of ``x_T``: a scalar for ``x`` (D,), or (N,) for a batch ``x`` (N, D) with
        ``vectorized=True`` (it then receives batches of perturbed copies of ``x_T``).
    X : (T+1, D) array
        Finite real states (``T, D >= 1``).
    U : (T, M) array
        Finite real controls (``M >= 1``).
    vectorized : bool
        Whether the callables take batches (see above).
    step : float in (0, 0.1], optional
        Fixed relative step instead of the adaptive default.

    Returns
    -------
    Derivatives
        Dense ``f_x``, ``c_xx``, ``cT_xx``; ``c_ux`` from the mixed second differences.

    Raises
    ------
    ValidationError
        Malformed arguments; a callback returning the wrong shape or a complex, boolean or
        string result (:class:`~metalqr.ValidationTypeError`); more than ``FD_WORK_LIMIT``
        point coordinates to evaluate (``T * 4 (D + M)^3``), with the alternative.

    References
    ----------
    TOW paper [nguyen2023tow], Appendix E, Eq. (64)-(65) (the expansion these derivatives fill).
    """
    check_callable(dynamics, "dynamics")
    check_callable(cost, "cost")
    check_callable(terminal_cost, "terminal_cost")
    X, U = _check_trajectory(X, U)
    vectorized, step = _check_fd_options(vectorized, step)
    return _fd_derivatives(dynamics, cost, terminal_cost, X, U, vectorized, step)
