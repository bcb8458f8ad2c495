"""Compiled forward pass: feedback, clipping and integration in one Numba loop.

Two kinds of compiled dynamics reach it:

* a :class:`CompiledStep` (the standard problems of :mod:`metalqr.ilqr.problems`): a
  module-level ``@njit(cache=True)`` step ``step(x, u, t, *params)`` together with a
  module-level ``@njit(cache=True)`` forward kernel that inlines :func:`_forward_loop` with that
  step as a global. Its cache key is its argument types only, so a fresh process loads it
  from Numba's on-disk cache and compiles nothing; ``params`` (e.g. ``dt``) are run-time
  arguments, so any time step uses the same compiled code.
* a user's Numba function ``step(x, u, t)``: it is passed as an argument to
  :func:`forward_compiled`, whose kernel is compiled once per process (Numba cannot cache a
  function that takes another compiled function as an argument: the cache key would contain
  the object's identity, and every process would write another cache file). Nothing is
  written to disk for it.

Numba invalidates a cached function only when its own source file changes: the cached
kernels of :mod:`metalqr.ilqr.problems` inline :func:`_forward_loop` from this file, so after
editing :func:`_forward_loop` clear ``metalqr/ilqr/__pycache__/*.nb*`` (the test
``test_standard_forward_kernel_matches_generic`` fails on a stale kernel).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ..exceptions import ValidationError, ValidationTypeError

__all__ = ["forward_compiled", "CompiledStep"]


@nb.njit(inline="always")
def _forward_loop(step, params, x0, X, U, K, k, alpha, lo, hi, clip):
    """Run the forward pass in one compiled loop.

    ``u_t = U_t + alpha k_t + K_t (x_t - X_t)`` (clipped to [lo, hi] if ``clip``) and ``x_{t+1}
    = step(x_t, u_t, t, *params)``; returns the new (X, U).

    Inlined (Numba IR) into its callers, so a caller that names ``step`` as a module-level
    global is cacheable. No bounds checks: callers check shapes first.
    """
    T, M = U.shape
    D = x0.shape[0]
    Xn = np.empty((T + 1, D))
    Un = np.empty((T, M))
    Xn[0] = x0
    for t in range(T):
        for a in range(M):
            s = U[t, a] + alpha * k[t, a]
            for j in range(D):
                s += K[t, a, j] * (Xn[t, j] - X[t, j])
            if clip:
                s = min(max(s, lo[a]), hi[a])
            Un[t, a] = s
        Xn[t + 1] = step(Xn[t], Un[t], t, *params)
    return Xn, Un


@nb.njit
def _forward_user(step, x0, X, U, K, k, alpha, lo, hi, clip):
    """Forward pass with a user's step ``(x, u, t)`` (not cached: see the module docstring)."""
    return _forward_loop(step, (), x0, X, U, K, k, alpha, lo, hi, clip)


def _is_numba(fn) -> bool:
    return hasattr(fn, "py_func")


class CompiledStep:
    """A compiled one-step dynamics with its cached forward kernel.

    A compiled one-step dynamics ``x_{t+1} = step(x_t, u_t, t, *params)`` with its cached
    forward kernel (how the standard problems supply ``compiled_step`` to
    :func:`metalqr.ilqr.ilqr`).

    Parameters
    ----------
    step : Numba-jitted ``(x (D,), u (M,), t int, *params) -> (D,)``
        The one-step dynamics.
    forward : Numba-jitted ``(x0, X, U, K, k, alpha, lo, hi, clip, *params) -> (X, U)``
        A module-level ``@njit(cache=True)`` function returning
        ``_forward_loop(step, params, x0, X, U, K, k, alpha, lo, hi, clip)`` with ``step``
        named as a global (then Numba caches it across processes).
    params : tuple of float
        Run-time parameters passed after ``t`` (the standard problems pass ``(dt,)``).
    dims : (int, int)
        ``(D, M)``, the state and control sizes ``step`` indexes; every call and forward pass
        is checked against them first (the compiled code does no bounds checks).

    Raises
    ------
    ValidationTypeError
        ``step`` or ``forward`` not Numba-jitted, ``params`` not a tuple of real numbers,
        ``dims`` not a pair of positive ints.

    Examples
    --------
    >>> from metalqr.ilqr import problems
    >>> cs = problems.acrobot(dt=0.05).compiled_step
    >>> cs.params
    (0.05,)
    """

    __slots__ = ("step", "forward", "params", "dims")

    def __init__(self, step, forward, params: tuple = (), dims: tuple = (1, 1)) -> None:
        for name, fn in (("step", step), ("forward", forward)):
            if not _is_numba(fn):
                raise ValidationTypeError(f"CompiledStep {name} must be a Numba-jitted function "
                                          f"(@numba.njit); got {type(fn).__name__}.")
        if not isinstance(params, tuple) or any(
                isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, float, np.integer,
                                                                      np.floating))
                for p in params):
            raise ValidationTypeError(f"CompiledStep params must be a tuple of real numbers; got "
                                      f"{params!r}.")
        if not (isinstance(dims, tuple) and len(dims) == 2 and all(
                isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)) and n >= 1
                for n in dims)):
            raise ValidationTypeError(f"CompiledStep dims must be a pair (D, M) of positive ints; "
                                      f"got {dims!r}.")
        self.step, self.forward = step, forward
        self.params = tuple(float(p) for p in params)
        self.dims = (int(dims[0]), int(dims[1]))

    def check_shapes(self, D: int, M: int, what: str = "compiled_step") -> None:
        """Refuse a state size ``D`` or control size ``M`` other than ``dims``.

        Parameters
        ----------
        D, M : int
            The state and control sizes of the caller's problem.
        what : str
            How the message names the compiled step.

        Raises
        ------
        ValidationError
            ``(D, M)`` differs from ``dims``.
        """
        if (D, M) != self.dims:
            raise ValidationError(f"{what} is compiled for states of size {self.dims[0]} and "
                                  f"controls of size {self.dims[1]}; got D={D}, M={M}. Pass the "
                                  f"compiled_step of this problem, or none.")

    def __call__(self, x, u, t):
        """One step ``step(x, u, t, *params)`` (x (D,), u (M,) float64 arrays, t int)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        u = np.ascontiguousarray(u, dtype=np.float64)
        if x.ndim != 1 or u.ndim != 1:
            raise ValidationError(f"compiled_step takes x (D,) and u (M,); got shapes {x.shape} "
                                  f"and {u.shape}.")
        self.check_shapes(x.shape[0], u.shape[0])
        return self.step(x, u, int(t), *self.params)

    def __repr__(self) -> str:
        return f"CompiledStep({self.step.py_func.__name__}, params={self.params}, dims={self.dims})"


def _check_forward_arrays(x0, X, U, K, k, lo, hi) -> None:
    arrays = dict(x0=x0, X=X, U=U, K=K, k=k, lo=lo, hi=hi)
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype != np.float64:
            raise ValidationError(f"{name} must be a float64 array.")
    if U.ndim != 2 or x0.ndim != 1:
        raise ValidationError(f"U must be (T, M) and x0 (D,); got {U.shape} and {x0.shape}.")
    T, M = U.shape
    D = x0.shape[0]
    want = dict(X=(T + 1, D), K=(T, M, D), k=(T, M), lo=(M,), hi=(M,))
    for name, shape in want.items():
        if arrays[name].shape != shape:
            raise ValidationError(f"{name} must have shape {shape}; got {arrays[name].shape}.")


def forward_compiled(step, x0, X, U, K, k, alpha, lo, hi, clip):
    """Run the compiled forward pass after checking every shape.

    ``u_t = U_t + alpha k_t + K_t (x_t - X_t)`` (clipped to [lo, hi] if ``clip``) and ``x_{t+1}
    = step(x_t, u_t, t)`` in one compiled loop, after checking every shape (the kernel does no
    bounds checks). The forward pass of TOW Algorithm 1, lines 12-17.

    Parameters
    ----------
    step : Numba-jitted ``(x (D,), u (M,), t) -> (D,)``, or a :class:`CompiledStep`
        A plain Numba function is run by a kernel compiled once per process (not cached on
        disk); a :class:`CompiledStep` runs its own cached kernel.
    x0 : (D,); X : (T+1, D); U : (T, M); K : (T, M, D); k : (T, M); lo, hi : (M,)
        float64 arrays.
    alpha : float; clip : bool

    Returns
    -------
    (X_new (T+1, D), U_new (T, M))

    Raises
    ------
    ValidationError
        A wrong shape or dtype, or ``step`` not a Numba-compiled function.
    """
    if not (isinstance(step, CompiledStep) or _is_numba(step)):
        raise ValidationTypeError("compiled_step must be a Numba-jitted function "
                                  "(@numba.njit) of (x, u, t) or a CompiledStep; got "
                                  f"{type(step).__name__}.")
    _check_forward_arrays(x0, X, U, K, k, lo, hi)
    if isinstance(step, CompiledStep):
        step.check_shapes(x0.shape[0], U.shape[1])
        return step.forward(x0, X, U, K, k, float(alpha), lo, hi, bool(clip), *step.params)
    return _forward_user(step, x0, X, U, K, k, float(alpha), lo, hi, bool(clip))
