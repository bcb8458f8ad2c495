"""Standard trajectory-optimisation problems for tests and benchmarks, and a registry of them.

Each standard problem is stated once, as a :class:`StandardProblem` registered with
:func:`register_problem`: its compiled one-step dynamics, its quadratic cost weights, its
defaults (``T``, ``dt``, ``x0``) and the reference cost a good solver reaches. Everything
else is derived from that one statement by :func:`standard_problem`: the vectorised Python
dynamics and cost callables, the analytic cost derivatives (with central-difference dynamics
Jacobians), and the compiled forward pass (:class:`~metalqr.ilqr.CompiledStep`),
all for the requested ``dt``. The compiled code is cached on disk by Numba and is not
recompiled in a fresh process (see docs/ilqr.md, "Start-up").

Adding a standard problem is a change to this file only: write its step as a module-level
``@nb.njit(cache=True)`` function ``step(x, u, t, dt) -> x_next`` (one point), the two
three-line cached kernels that name it (batch and forward pass, as for the acrobot below), and
one :func:`register_problem` call. The contract tests (``tests/test_ilqr.py``,
``test_standard_problem_*``) then check it against everything: compiled step == Python step
at several ``dt``, halving ``dt`` converges, analytic derivatives == finite differences, and
:func:`metalqr.ilqr.ilqr` reaches its reference.

The cost of every standard problem is ``s (q |x - goal|^2 + r |u|^2)`` per stage with
``s = dt`` if ``stage_times_dt`` else 1, and ``q_final |x_T - goal|^2`` at the end.

Other problems:

* ``linear_quadratic(...)``: random time-varying LQ problem, with the exact finite-horizon
  Riccati solution for comparison.
* ``diagonal_quadratic(D, M, T)``: a TOW-like problem with D-dimensional state, diagonal
  ``f_x`` and ``c_xx``: ``x_{t+1} = x_t - lr * sum_j u_j a_j * (x_t - c_j)`` (one gradient
  step on ``M`` weighted quadratic losses), cost ``sum_j loss_j(x) + beta/2 |u - mu|^2``.

The registered standard problems (generated from the registry):
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numba as nb
import numpy as np

from .._validation import (as_rng, check_bool, check_callable, check_choice, check_int,
                           check_psd, check_real, check_size, check_symmetric)
from ..exceptions import ValidationError, ValidationTypeError
from ._checks import real_array
from .derivatives import Derivatives, fd_dynamics_jacobians, quadratic_cost_derivatives
from ._forward_numba import CompiledStep, _forward_loop

__all__ = ["Problem", "StandardProblem", "register_problem", "standard_problems",
           "standard_problem", "standard_problem_spec", "acrobot", "pendulum", "cartpole", "linear_quadratic",
           "diagonal_quadratic", "finite_horizon_lqr"]


def _check_reference(value: Any, name: str) -> float:
    if isinstance(value, (bool, np.bool_, str, bytes, complex)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise ValidationTypeError(f"{name} must be a real number (NaN for none); got {value!r}.")
    return float(value)


def _check_options(value: Any, name: str) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValidationTypeError(f"{name} must be a dict of ilqr keyword arguments (str keys); "
                                  f"got {value!r}.")
    return dict(value)


@dataclass
class Problem:  # numpydoc ignore=PR01
    """A trajectory-optimisation problem in the form :func:`metalqr.ilqr.ilqr` takes.

    Attributes
    ----------
    name : str
        Name of the problem.
    dynamics, cost : callables ``(x, u, t)``
        Batch-first when ``vectorized`` (see :func:`metalqr.ilqr.ilqr`).
    terminal_cost : callable ``(x)``
        Cost of the final state.
    x0 : (D,) array
        Initial state (finite, real).
    U0 : (T, M) array
        Nominal controls (finite, real).
    derivatives : callable ``(X, U) -> Derivatives`` or None
        Analytic derivatives along a trajectory (None: finite differences).
    vectorized : bool
        Whether the callables take batches.
    reference : float
        A total cost that :func:`metalqr.ilqr.ilqr` with ``solver_options`` reaches from
        ``U0`` (at most this value); NaN if none is known (e.g. a standard problem at a
        non-default ``T`` or ``dt``).
    compiled_step : :class:`~metalqr.ilqr.CompiledStep`, Numba-jitted
        ``(x, u, t) -> x_next``, or None
        The same one-step dynamics as ``dynamics``, compiled (used for the forward passes).
    dt : float
        Time step (s) of the dynamics; NaN where the problem has none.
    solver_options : dict
        :func:`metalqr.ilqr.ilqr` options under which ``reference`` is reached (e.g.
        ``max_iterations``); ``{}`` for the defaults.

    Raises
    ------
    ValidationError
        A malformed field (checked at construction).
    """

    name: str
    dynamics: Callable
    cost: Callable
    terminal_cost: Callable
    x0: np.ndarray
    U0: np.ndarray
    derivatives: Optional[Callable] = None
    vectorized: bool = True
    reference: float = float("nan")
    compiled_step: Optional[Any] = None
    dt: float = float("nan")
    solver_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValidationTypeError(f"name must be a str; got {type(self.name).__name__}.")
        check_callable(self.dynamics, "dynamics")
        check_callable(self.cost, "cost")
        check_callable(self.terminal_cost, "terminal_cost")
        check_callable(self.derivatives, "derivatives", allow_none=True)
        self.x0 = real_array(self.x0, "x0", ndim=1, allow_empty=False)
        self.U0 = real_array(self.U0, "U0", ndim=2)
        if min(self.U0.shape) < 1:
            raise ValidationError(f"U0 must have shape (T, M) with T, M >= 1; got {self.U0.shape}.")
        self.vectorized = check_bool(self.vectorized, "vectorized")
        self.reference = _check_reference(self.reference, "reference")
        if self.compiled_step is not None and not (
                isinstance(self.compiled_step, CompiledStep) or hasattr(self.compiled_step, "py_func")):
            raise ValidationTypeError("compiled_step must be a Numba-jitted function, a "
                                      "CompiledStep or None; got "
                                      f"{type(self.compiled_step).__name__}.")
        dt = _check_reference(self.dt, "dt")
        if not math.isnan(dt):
            dt = check_real(dt, "dt", minimum=0.0, min_inclusive=False)
        self.dt = dt
        self.solver_options = _check_options(self.solver_options, "solver_options")

    def kwargs(self, compiled: bool = True) -> dict:
        """Keyword arguments for :func:`ilqr` (besides solver options).

        Parameters
        ----------
        compiled : bool
            ``False`` leaves out the compiled one-step dynamics (pure-Python forward passes).

        Returns
        -------
        dict
            ``dynamics``, ``cost``, ``terminal_cost``, ``x0``, ``U0``, ``derivatives``,
            ``vectorized`` and (if ``compiled``) ``compiled_step``.

        Raises
        ------
        ValidationError
            ``compiled`` not a bool.
        """
        compiled = check_bool(compiled, "compiled")
        return dict(dynamics=self.dynamics, cost=self.cost, x0=self.x0, U0=self.U0,
                    terminal_cost=self.terminal_cost, derivatives=self.derivatives,
                    vectorized=self.vectorized,
                    compiled_step=self.compiled_step if compiled else None)


# ---- the registry of standard problems ----------------------------------------------------

def _is_numba(fn) -> bool:
    return hasattr(fn, "py_func")


@dataclass(frozen=True)
class StandardProblem:  # numpydoc ignore=PR01
    """The one statement of a standard problem (see the module docstring).

    Attributes
    ----------
    name : str
        Registry key (a Python identifier).
    step : Numba-jitted ``(x (D,), u (M,), t int, dt float) -> (D,)``
        One step of the dynamics, a module-level ``@nb.njit(cache=True)`` function.
    batch : Numba-jitted ``(X (N, D), U (N, M), ts (N,) int64, dt) -> (N, D)``
        ``_batch_loop(step, (dt,), X, U, ts)``, module-level and cached.
    forward : Numba-jitted forward kernel
        ``_forward_loop(step, (dt,), ...)``, module-level and cached
        (:class:`~metalqr.ilqr.CompiledStep`).
    x0 : (D,) ndarray
        Initial state.
    goal : (D,) ndarray
        Target state.
    M : int >= 1
        Number of controls (``U0`` is zero).
    q, r, q_final : float >= 0
        Cost weights: stage ``s (q |x - goal|^2 + r |u|^2)``, terminal ``q_final |x_T - goal|^2``.
    stage_times_dt : bool
        ``s = dt`` (a running cost integrated over time) or ``s = 1``.
    T : int >= 1
        Default horizon.
    dt : float in (0, 1]
        Default time step (s).
    reference : float
        Total cost :func:`metalqr.ilqr.ilqr` reaches at the defaults with ``solver_options``.
    reference_source : str
        Where ``reference`` comes from (an independent solver or a published figure).
    solver_options : dict
        :func:`metalqr.ilqr.ilqr` options under which ``reference`` is reached.
    summary : str
        One line for the module docstring.

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed field, named.
    """

    name: str
    step: Any
    batch: Any
    forward: Any
    x0: tuple
    goal: tuple
    M: int
    q: float
    r: float
    q_final: float
    stage_times_dt: bool
    T: int
    dt: float
    reference: float
    reference_source: str
    solver_options: dict = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValidationTypeError(f"name must be a str that is a Python identifier; got "
                                      f"{self.name!r}.")
        for n in ("step", "batch", "forward"):
            if not _is_numba(getattr(self, n)):
                raise ValidationTypeError(f"{n} must be a module-level Numba-jitted function "
                                          f"(@nb.njit(cache=True)); got "
                                          f"{type(getattr(self, n)).__name__}.")
        x0 = real_array(self.x0, "x0", ndim=1, allow_empty=False)
        goal = real_array(self.goal, "goal", shape=x0.shape)
        object.__setattr__(self, "x0", tuple(x0.tolist()))
        object.__setattr__(self, "goal", tuple(goal.tolist()))
        object.__setattr__(self, "M", check_int(self.M, "M", minimum=1))
        for n in ("q", "r", "q_final"):
            object.__setattr__(self, n, check_real(getattr(self, n), n, minimum=0.0))
        object.__setattr__(self, "stage_times_dt", check_bool(self.stage_times_dt, "stage_times_dt"))
        T, dt = _horizon_step(self.T, self.dt)
        object.__setattr__(self, "T", T)
        object.__setattr__(self, "dt", dt)
        object.__setattr__(self, "reference", _check_reference(self.reference, "reference"))
        for n in ("reference_source", "summary"):
            if not isinstance(getattr(self, n), str):
                raise ValidationTypeError(f"{n} must be a str; got {getattr(self, n)!r}.")
        object.__setattr__(self, "solver_options", _check_options(self.solver_options,
                                                                  "solver_options"))


_REGISTRY: dict[str, StandardProblem] = {}


def register_problem(spec: StandardProblem) -> StandardProblem:
    """Add a standard problem to the registry.

    Its name becomes valid in :func:`standard_problem`, and the contract tests cover it.

    Parameters
    ----------
    spec : StandardProblem
        The problem's one statement; its ``name`` must be new.

    Returns
    -------
    StandardProblem
        ``spec``.

    Raises
    ------
    ValidationTypeError
        ``spec`` not a :class:`StandardProblem`.
    ValidationError
        A problem of that name is already registered.
    """
    if not isinstance(spec, StandardProblem):
        raise ValidationTypeError(f"spec must be a StandardProblem; got {type(spec).__name__}.")
    if spec.name in _REGISTRY:
        raise ValidationError(f"spec: a standard problem named {spec.name!r} is already "
                              f"registered; choose another name.")
    _REGISTRY[spec.name] = spec
    return spec


def standard_problems() -> tuple[str, ...]:
    """Return the names of the registered standard problems, in registration order.

    Returns
    -------
    tuple of str
        The names, valid in :func:`standard_problem`.

    Examples
    --------
    >>> from metalqr.ilqr import problems
    >>> problems.standard_problems()[:3]
    ('acrobot', 'pendulum', 'cartpole')
    """
    return tuple(_REGISTRY)


def standard_problem_spec(name: str) -> StandardProblem:
    """Return the registered :class:`StandardProblem` called ``name``.

    Parameters
    ----------
    name : str
        One of :func:`standard_problems`.

    Returns
    -------
    StandardProblem
        The registered statement.

    Raises
    ------
    ValidationError
        ``name`` not registered (the message lists the valid names).
    """
    return _REGISTRY[check_choice(name, "name", list(_REGISTRY))]


def _horizon_step(T, dt):
    return (check_int(T, "T", minimum=1, maximum=10 ** 7),
            check_real(dt, "dt", minimum=0.0, maximum=1.0, min_inclusive=False))


def _times(t, N: int) -> np.ndarray:
    ts = np.empty(N, dtype=np.int64)
    try:
        ts[:] = t
    except (ValueError, TypeError):
        raise ValidationError(f"t must be an int or N = {N} ints (one per row of x); got "
                              f"{t!r}.") from None
    return ts


def standard_problem(name: str, T: int | None = None, dt: float | None = None) -> Problem:
    """Build the registered standard problem ``name`` for horizon ``T`` and time step ``dt``.

    The Python dynamics and the compiled forward pass both run the problem's one compiled
    step with this ``dt`` (the compiled code takes ``dt`` at run time, so no ``dt`` needs a
    compilation of its own); the stage cost is scaled by ``dt`` where the problem says so.

    Parameters
    ----------
    name : str
        One of :func:`standard_problems`.
    T : int in [1, 1e7], optional
        Horizon (default: the problem's).
    dt : float in (0, 1], optional
        Time step in seconds (default: the problem's).

    Returns
    -------
    Problem
        With ``reference`` the registered reference at the default ``T`` and ``dt`` and NaN
        otherwise, ``dt`` and ``solver_options`` filled in.

    Raises
    ------
    ValidationError
        Unknown ``name``, or ``T`` / ``dt`` out of range or of the wrong type.

    Examples
    --------
    >>> from metalqr.ilqr import ilqr, problems
    >>> p = problems.standard_problem("pendulum", T=100, dt=0.03)
    >>> res = ilqr(**p.kwargs(), max_iterations=5)
    >>> res.cost < res.costs[0]
    True
    """
    spec = standard_problem_spec(name)
    T, dt = _horizon_step(spec.T if T is None else T, spec.dt if dt is None else dt)
    batch, goal = spec.batch, np.array(spec.goal)
    s = dt if spec.stage_times_dt else 1.0
    q, r, q_final = spec.q, spec.r, spec.q_final
    D, M = len(spec.x0), spec.M

    def dynamics(x, u, t):
        x = np.ascontiguousarray(x, dtype=float)
        u = np.ascontiguousarray(u, dtype=float)
        if x.ndim != 2 or x.shape[1] != D or u.shape != (x.shape[0], M):
            # the compiled kernel does no bounds checks: refuse before it runs
            raise ValidationError(f"{spec.name} dynamics takes batches x (N, {D}) and u (N, {M}); "
                                  f"got x {x.shape} and u {u.shape}.")
        return batch(x, u, _times(t, x.shape[0]), dt)

    def cost(x, u, t):
        e = x - goal
        return s * (q * np.sum(e * e, axis=1) + r * np.sum(u * u, axis=1))

    def terminal(x):
        e = x - goal
        return q_final * np.sum(e * e, axis=1)

    def derivatives(X, U):
        f_x, f_u = fd_dynamics_jacobians(dynamics, X, U, vectorized=True)
        return Derivatives(f_x=f_x, f_u=f_u, **quadratic_cost_derivatives(
            X, U, goal, s * q, s * r, q_final))

    default = T == spec.T and dt == spec.dt
    return Problem(spec.name, dynamics, cost, terminal, np.array(spec.x0), np.zeros((T, M)),
                   derivatives, reference=spec.reference if default else float("nan"),
                   compiled_step=CompiledStep(spec.step, spec.forward, (dt,), (D, M)), dt=dt,
                   solver_options=spec.solver_options)


@nb.njit(inline="always")
def _batch_loop(step, params, X, U, ts):
    """Apply a step to a batch of states and controls.

    ``out[n] = step(X[n], U[n], ts[n], *params)`` for ``n < N``: the batched dynamics of a
    standard problem, X (N, D), U (N, M), ts (N,) int64 -> (N, D).

    Inlined (Numba IR) into each problem's cached batch kernel, which names its step as a
    module-level global (that keeps the kernel cacheable across processes). No bounds checks:
    :func:`standard_problem`'s dynamics passes contiguous float64 arrays of matching rows.
    """
    out = np.empty_like(X)
    for n in range(X.shape[0]):
        out[n] = step(X[n], U[n], ts[n], *params)
    return out


# ---- acrobot --------------------------------------------------------------------------------

@nb.njit(cache=True)
def _acrobot_step(x, u, t, dt):
    """Explicit Euler step of the Gym-style acrobot (trajax's test suite)."""
    m1, m2, l1, lc1, lc2, I1, I2 = 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0
    g = 9.8
    out = np.empty_like(x)
    th1, th2, dth1, dth2 = x[0], x[1], x[2], x[3]
    a = u[0]
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * math.cos(th2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * math.cos(th2)) + I2
    phi2 = m2 * lc2 * g * math.cos(th1 + th2 - math.pi / 2)
    phi1 = (-m2 * l1 * lc2 * dth2**2 * math.sin(th2)
            - 2 * m2 * l1 * lc2 * dth2 * dth1 * math.sin(th2)
            + (m1 * lc1 + m2 * l1) * g * math.cos(th1 - math.pi / 2) + phi2)
    ddth2 = ((a + d2 / d1 * phi1 - m2 * l1 * lc2 * dth1**2 * math.sin(th2) - phi2)
             / (m2 * lc2**2 + I2 - d2**2 / d1))
    ddth1 = -(d2 * ddth2 + phi1) / d1
    out[0] = th1 + dt * dth1
    out[1] = th2 + dt * dth2
    out[2] = dth1 + dt * ddth1
    out[3] = dth2 + dt * ddth2
    return out


@nb.njit(cache=True)
def _acrobot_batch(X, U, ts, dt):
    return _batch_loop(_acrobot_step, (dt,), X, U, ts)


@nb.njit(cache=True)
def _acrobot_forward(x0, X, U, K, k, alpha, lo, hi, clip, dt):
    return _forward_loop(_acrobot_step, (dt,), x0, X, U, K, k, alpha, lo, hi, clip)


register_problem(StandardProblem(
    "acrobot", _acrobot_step, _acrobot_batch, _acrobot_forward,
    x0=(0.0, 0.0, 0.0, 0.0), goal=(math.pi, 0.0, 0.0, 0.0), M=1,
    q=0.5 * 0.1, r=0.5 * 0.01, q_final=0.5 * 1000.0, stage_times_dt=False, T=50, dt=0.1,
    reference=51.0,
    reference_source="trajax's test suite: objective below 51 (4959.476212 at U = 0); SciPy "
                     "L-BFGS-B direct shooting reaches 45.34 from U = 0",
    summary="the acrobot of trajax's test suite (Gym-style dynamics, explicit Euler, "
            "x0 = 0, goal [pi, 0, 0, 0], stage 0.5 * 0.1 |x - goal|^2 + 0.5 * 0.01 |u|^2, "
            "terminal 0.5 * 1000 |x_T - goal|^2)"))


def acrobot(T: int = 50, dt: float = 0.1) -> Problem:
    """Return the trajax acrobot (``standard_problem("acrobot", T, dt)``; see the module docstring).

    Parameters
    ----------
    T : int in [1, 1e7]
        Horizon.
    dt : float in (0, 1]
        Time step (s) of the explicit Euler integration.

    Returns
    -------
    Problem
        ``reference`` 51 at the defaults (trajax's test suite), NaN otherwise.

    Raises
    ------
    ValidationError
        ``T`` or ``dt`` out of range or of the wrong type.
    """
    return standard_problem("acrobot", T, dt)


# ---- pendulum -------------------------------------------------------------------------------

@nb.njit(cache=True)
def _pendulum_step(x, u, t, dt):
    """RK4 step of the torque-driven pendulum ``theta'' = u - 9.81 sin(theta)``."""
    out = np.empty_like(x)
    th, om, a = x[0], x[1], u[0]
    k1t, k1o = om, a - 9.81 * math.sin(th)
    k2t, k2o = om + 0.5 * dt * k1o, a - 9.81 * math.sin(th + 0.5 * dt * k1t)
    k3t, k3o = om + 0.5 * dt * k2o, a - 9.81 * math.sin(th + 0.5 * dt * k2t)
    k4t, k4o = om + dt * k3o, a - 9.81 * math.sin(th + dt * k3t)
    out[0] = th + dt / 6.0 * (k1t + 2 * k2t + 2 * k3t + k4t)
    out[1] = om + dt / 6.0 * (k1o + 2 * k2o + 2 * k3o + k4o)
    return out


@nb.njit(cache=True)
def _pendulum_batch(X, U, ts, dt):
    return _batch_loop(_pendulum_step, (dt,), X, U, ts)


@nb.njit(cache=True)
def _pendulum_forward(x0, X, U, K, k, alpha, lo, hi, clip, dt):
    return _forward_loop(_pendulum_step, (dt,), x0, X, U, K, k, alpha, lo, hi, clip)


register_problem(StandardProblem(
    "pendulum", _pendulum_step, _pendulum_batch, _pendulum_forward,
    x0=(0.0, 0.0), goal=(math.pi, 0.0), M=1,
    q=1.0, r=0.01, q_final=10.0, stage_times_dt=True, T=300, dt=0.01,
    reference=11.637,
    reference_source="SciPy L-BFGS-B direct shooting with an adjoint gradient from U = 0 "
                     "reaches 11.636478; rounded up (python benchmarks/bench_ilqr.py "
                     "--references)",
    summary="torque-driven pendulum swing-up (m = l = 1, g = 9.81, RK4), stage "
            "dt ((theta - pi)^2 + theta_dot^2 + 0.01 u^2), terminal "
            "10 ((theta - pi)^2 + theta_dot^2)"))


def pendulum(T: int = 300, dt: float = 0.01) -> Problem:
    """Pendulum swing-up with RK4 (``standard_problem("pendulum", T, dt)``).

    Parameters
    ----------
    T : int in [1, 1e7]
        Horizon.
    dt : float in (0, 1]
        Time step (s).

    Returns
    -------
    Problem
        The swing-up problem (state: angle in rad, angular velocity in rad/s; control:
        torque).

    Raises
    ------
    ValidationError
        ``T`` or ``dt`` out of range or of the wrong type.
    """
    return standard_problem("pendulum", T, dt)


# ---- cart-pole ------------------------------------------------------------------------------

@nb.njit(cache=True)
def _cartpole_step(x, u, t, dt):
    """Take one Euler step of the cart-pole.

    Euler step; M(q) qdd = [F + mp l thd^2 sin th, -mp g l sin th], M = [[mc + mp, mp l cos th],
    [mp l cos th, mp l^2]], F = 5 tanh(u).
    """
    mc, mp, l, g = 10.0, 1.0, 0.5, 9.81
    out = np.empty_like(x)
    th, dx, dth = x[1], x[2], x[3]
    force = 5.0 * math.tanh(u[0])
    s, c = math.sin(th), math.cos(th)
    m11, m12, m22 = mc + mp, mp * l * c, mp * l * l
    r1 = force + mp * l * dth * dth * s
    r2 = -mp * g * l * s
    det = m11 * m22 - m12 * m12
    out[0] = x[0] + dt * dx
    out[1] = th + dt * dth
    out[2] = dx + dt * (m22 * r1 - m12 * r2) / det
    out[3] = dth + dt * (-m12 * r1 + m11 * r2) / det
    return out


@nb.njit(cache=True)
def _cartpole_batch(X, U, ts, dt):
    return _batch_loop(_cartpole_step, (dt,), X, U, ts)


@nb.njit(cache=True)
def _cartpole_forward(x0, X, U, K, k, alpha, lo, hi, clip, dt):
    return _forward_loop(_cartpole_step, (dt,), x0, X, U, K, k, alpha, lo, hi, clip)


register_problem(StandardProblem(
    "cartpole", _cartpole_step, _cartpole_batch, _cartpole_forward,
    x0=(0.0, 0.2, 0.0, -0.1), goal=(0.0, math.pi, 0.0, 0.0), M=1,
    q=0.1, r=0.01, q_final=1000.0, stage_times_dt=False, T=50, dt=0.1,
    reference=64.098,
    reference_source="SciPy L-BFGS-B direct shooting with an adjoint gradient from U = 0 "
                     "reaches 64.097755; rounded up (python benchmarks/bench_ilqr.py "
                     "--references)",
    solver_options={"max_iterations": 1000, "tol": 1e-6},
    summary="cart-pole swing-up of trajax's benchmark (cart 10 kg, pole 1 kg, 0.5 m, "
            "explicit Euler, force 5 tanh(u)), stage 0.1 |x - x*|^2 + 0.01 u^2, terminal "
            "1000 |x_T - x*|^2 with x* = [0, pi, 0, 0] (no angle wrapping: the benchmark's "
            "modulo wrap is discontinuous)"))


def cartpole(T: int = 50, dt: float = 0.1) -> Problem:
    """Cart-pole swing-up (``standard_problem("cartpole", T, dt)``; see the module docstring).

    Parameters
    ----------
    T : int in [1, 1e7]
        Horizon.
    dt : float in (0, 1]
        Time step (s).

    Returns
    -------
    Problem
        The swing-up problem.

    Raises
    ------
    ValidationError
        ``T`` or ``dt`` out of range or of the wrong type.
    """
    return standard_problem("cartpole", T, dt)


# ---- other problems -------------------------------------------------------------------------

def linear_quadratic(D: int, M: int, T: int, rng, diagonal: bool = False) -> tuple[Problem, dict]:
    """Build a random time-varying linear-quadratic problem.

    Random time-varying LQ problem ``x' = A_t x + B_t u + c_t``, cost ``0.5 x'Q_t x + 0.5 u'R_t
    u + q_t'x``, terminal ``0.5 x'Q_T x``; returns the problem (analytic derivatives) and its
    matrices. ``diagonal=True`` makes everything diagonal (requires ``D == M``), i.e. D
    decoupled scalar problems.

    Parameters
    ----------
    D, M, T : int >= 1
        State size, control size, horizon.
    rng : numpy Generator, int seed >= 0 or None
        Source of the random matrices.
    diagonal : bool
        Make every matrix diagonal (requires ``D == M``).

    Returns
    -------
    (Problem, dict)
        The dict holds ``A`` (T, D, D), ``B`` (T, D, M), ``c`` (T, D), ``Q`` (T+1, D, D),
        ``R`` (T, M, M), ``q`` (T, D), ``x0`` (D,), ``ts`` (T,).

    Raises
    ------
    ValidationError
        Malformed sizes, ``diagonal=True`` with ``D != M``, or matrices beyond the memory
        limit.
    """
    D = check_int(D, "D", minimum=1)
    M = check_int(M, "M", minimum=1)
    T = check_int(T, "T", minimum=1)
    rng = as_rng(rng)
    diagonal = check_bool(diagonal, "diagonal")
    check_size(float(T + 1) * (2 * D * D + D * M + M * M), "linear_quadratic",
               what="float64 entries", alternative="Use a smaller D, M or T.")
    if diagonal:
        if D != M:
            raise ValidationError(f"diagonal=True (decoupled LQ problems) needs D == M; got "
                                  f"D={D}, M={M}.")
        A = np.stack([np.diag(rng.uniform(0.5, 1.2, D)) for _ in range(T)])
        B = np.stack([np.diag(rng.uniform(0.5, 1.5, D)) for _ in range(T)])
        Q = np.stack([np.diag(rng.uniform(0.5, 2.0, D)) for _ in range(T + 1)])
        R = np.stack([np.diag(rng.uniform(0.5, 2.0, M)) for _ in range(T)])
    else:
        A = rng.standard_normal((T, D, D)) * 0.4 + np.eye(D)
        B = rng.standard_normal((T, D, M))
        G = rng.standard_normal((T + 1, D, D))
        Q = G @ np.swapaxes(G, 1, 2) / D + 0.1 * np.eye(D)
        H = rng.standard_normal((T, M, M))
        R = H @ np.swapaxes(H, 1, 2) / M + 0.5 * np.eye(M)
    c = rng.standard_normal((T, D)) * 0.1
    q = rng.standard_normal((T, D))
    x0 = rng.standard_normal(D)
    ts = np.arange(T)

    def dynamics(x, u, t):
        return np.einsum("nij,nj->ni", A[t], x) + np.einsum("nij,nj->ni", B[t], u) + c[t]

    def cost(x, u, t):
        return (0.5 * np.einsum("ni,nij,nj->n", x, Q[t], x) + 0.5 * np.einsum("ni,nij,nj->n", u, R[t], u)
                + np.einsum("ni,ni->n", q[t], x))

    def terminal(x):
        return 0.5 * np.einsum("ni,ij,nj->n", x, Q[T], x)

    def derivatives(X, U):
        xs = X[:-1]
        if diagonal:
            fx = np.diagonal(A, axis1=1, axis2=2).copy()
            cxx = np.diagonal(Q[:T], axis1=1, axis2=2).copy()
            cTxx = np.diagonal(Q[T]).copy()
        else:
            fx, cxx, cTxx = A, Q[:T], Q[T]
        return Derivatives(f_x=fx, f_u=B, c_x=np.einsum("nij,nj->ni", Q[:T], xs) + q,
                           c_u=np.einsum("nij,nj->ni", R, U), c_xx=cxx, c_uu=R, c_ux=None,
                           cT_x=Q[T] @ X[-1], cT_xx=cTxx)

    mats = dict(A=A, B=B, c=c, Q=Q, R=R, q=q, x0=x0, ts=ts)
    return Problem("linear_quadratic", dynamics, cost, terminal, x0, np.zeros((T, M)), derivatives), mats


def finite_horizon_lqr(mats: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve the LQ problem of :func:`linear_quadratic` exactly by the Riccati recursion.

    Exact solution of the LQ problem of :func:`linear_quadratic` by the Riccati recursion with
    affine terms: returns the optimal controls (T, M), feedback (T, M, D) and feed-forward (T,
    M) gains (``u_t = K_t x_t + k_t``).

    Parameters
    ----------
    mats : dict
        ``A`` (T, D, D), ``B`` (T, D, M), ``c`` (T, D), ``Q`` (T+1, D, D) symmetric PSD,
        ``R`` (T, M, M) symmetric positive definite, ``q`` (T, D), ``x0`` (D,).

    Returns
    -------
    U : (T, M) ndarray
        Optimal controls.
    K : (T, M, D) ndarray
        Feedback gains.
    k : (T, M) ndarray
        Feed-forward gains.

    Raises
    ------
    ValidationError
        A missing key, a malformed or inconsistent matrix, or an ``R`` that is not positive
        definite.
    """
    if not isinstance(mats, dict):
        raise ValidationTypeError(f"mats must be a dict as returned by linear_quadratic; got "
                                  f"{type(mats).__name__}.")
    missing = [n for n in ("A", "B", "c", "Q", "R", "q", "x0") if n not in mats]
    if missing:
        raise ValidationError(f"mats is missing the key(s) {missing}; pass the dict returned by "
                              f"linear_quadratic.")
    B = real_array(mats["B"], "mats['B']", ndim=3)
    T, D, M = B.shape
    if min(T, D, M) < 1:
        raise ValidationError(f"mats['B'] must have shape (T, D, M) with T, D, M >= 1; got {B.shape}.")
    A = real_array(mats["A"], "mats['A']", shape=(T, D, D))
    c = real_array(mats["c"], "mats['c']", shape=(T, D))
    Q = check_symmetric(real_array(mats["Q"], "mats['Q']", shape=(T + 1, D, D)), "mats['Q']")
    R = check_symmetric(real_array(mats["R"], "mats['R']", shape=(T, M, M)), "mats['R']")
    check_psd(Q, "mats['Q']", strict=False)
    check_psd(R, "mats['R']", strict=True)
    q = real_array(mats["q"], "mats['q']", shape=(T, D))
    x0 = real_array(mats["x0"], "mats['x0']", shape=(D,))
    P, p = Q[T].copy(), np.zeros(D)
    Ks, ks = np.zeros((T, M, D)), np.zeros((T, M))
    for t in range(T - 1, -1, -1):
        H = R[t] + B[t].T @ P @ B[t]
        Ks[t] = -np.linalg.solve(H, B[t].T @ P @ A[t])
        ks[t] = -np.linalg.solve(H, B[t].T @ (P @ c[t] + p))
        Acl = A[t] + B[t] @ Ks[t]
        # linear term of the value: q + K'Rk + (A + BK)'(P (B k + c) + p)
        p = q[t] + Ks[t].T @ R[t] @ ks[t] + Acl.T @ (P @ (B[t] @ ks[t] + c[t]) + p)
        P = Q[t] + A[t].T @ P @ Acl
        P = 0.5 * (P + P.T)
    x, U = x0.copy(), np.zeros((T, M))
    for t in range(T):
        U[t] = Ks[t] @ x + ks[t]
        x = A[t] @ x + B[t] @ U[t] + c[t]
    return U, Ks, ks


def diagonal_quadratic(D: int, M: int, T: int, rng=0, lr: float = 0.5, beta: float = 1.0) -> Problem:
    """TOW-like problem (see module docstring) with analytic diagonal derivatives.

    State ``x`` (D,) are "meta-parameters", control ``u`` (M,) the task weights; each task
    loss is ``l_j(x) = 0.5 sum_i a_ji (x_i - c_ji)^2``; one weighted gradient step per time
    step; cost ``sum_j l_j(x_t) + beta/2 |u_t - 1/M|^2`` and terminal ``sum_j l_j(x_T)``.
    ``f_x = 1 - lr sum_j u_j a_j`` and ``c_xx = sum_j a_j`` are diagonal, so the diagonal
    value model never forms a D x D matrix.

    Parameters
    ----------
    D, M, T : int >= 1
        State size, number of tasks (controls), horizon.
    rng : numpy Generator, int seed >= 0 or None
        Source of the random task losses.
    lr : float > 0
        Step size of the inner gradient step.
    beta : float >= 0
        Weight of the control cost.

    Returns
    -------
    Problem
        The problem, with analytic diagonal derivatives.

    Raises
    ------
    ValidationError
        Malformed arguments, or more than metalqr's limit of float64 entries
        (``~ 4 M D`` plus ``O(T D M)`` per iteration).
    """
    D = check_int(D, "D", minimum=1)
    M = check_int(M, "M", minimum=1)
    T = check_int(T, "T", minimum=1)
    rng = as_rng(rng)
    lr = check_real(lr, "lr", minimum=0.0, min_inclusive=False)
    beta = check_real(beta, "beta", minimum=0.0)
    check_size(4.0 * M * D + 4.0 * T * D * M, "diagonal_quadratic", what="float64 entries",
               alternative="Use a smaller D, M or T.")
    a = rng.uniform(0.2, 1.0, (M, D)) / M
    c = rng.standard_normal((M, D))
    ac = a * c
    mu = 1.0 / M
    asum = a.sum(axis=0)

    def dynamics(x, u, t):
        return x - lr * (x * (u @ a) - u @ ac)

    def task_losses(x):
        return 0.5 * np.einsum("md,nmd->nm", a, (x[:, None, :] - c[None]) ** 2)

    def cost(x, u, t):
        return task_losses(x).sum(axis=1) + 0.5 * beta * np.sum((u - mu) ** 2, axis=1)

    def terminal(x):
        return task_losses(x).sum(axis=1)

    def derivatives(X, U):
        xs = X[:-1]                                                     # (T, D)
        f_x = 1.0 - lr * (U @ a)                                        # (T, D) diagonal
        f_u = -lr * np.swapaxes(a[None] * (xs[:, None, :] - c[None]), 1, 2)   # (T, D, M)
        c_x = xs * asum - ac.sum(axis=0)
        return Derivatives(f_x=f_x, f_u=f_u, c_x=c_x, c_u=beta * (U - mu),
                           c_xx=np.broadcast_to(asum, xs.shape).copy(),
                           c_uu=np.broadcast_to(beta * np.eye(M), (U.shape[0], M, M)).copy(),
                           c_ux=None, cT_x=X[-1] * asum - ac.sum(axis=0), cT_xx=asum.copy())

    return Problem("diagonal_quadratic", dynamics, cost, terminal, np.zeros(D),
                   np.full((T, M), mu), derivatives)


def _registry_doc() -> str:
    lines = []
    for spec in _REGISTRY.values():
        opts = f", solver options {spec.solver_options}" if spec.solver_options else ""
        lines.append(f"\n* ``{spec.name}(T={spec.T}, dt={spec.dt:g})``: ``{spec.summary}``. "
                     f"Reference: total cost <= {spec.reference:g}{opts} ({spec.reference_source}).")
    return "".join(lines) + "\n"


__doc__ = (__doc__ or "") + _registry_doc()
