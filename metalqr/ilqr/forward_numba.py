"""Compiled forward pass for problems that supply a Numba-jitted one-step function
``step(x, u, t) -> x_next`` (1-D arrays): feedback, clipping and integration in one loop."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["forward_compiled"]


@nb.njit(cache=True)
def _forward_kernel(step, x0, X, U, K, k, alpha, lo, hi, clip):
    """``u_t = U_t + alpha k_t + K_t (x_t - X_t)`` (clipped to [lo, hi] if ``clip``) and
    ``x_{t+1} = step(x_t, u_t, t)``. Returns the new (X, U)."""
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
        Xn[t + 1] = step(Xn[t], Un[t], t)
    return Xn, Un


def forward_compiled(step, x0, X, U, K, k, alpha, lo, hi, clip):
    """``u_t = U_t + alpha k_t + K_t (x_t - X_t)`` (clipped to [lo, hi] if ``clip``) and
    ``x_{t+1} = step(x_t, u_t, t)`` in one compiled loop, after checking every shape (the
    kernel does no bounds checks).

    Parameters
    ----------
    step : Numba-jitted ``(x (D,), u (M,), t) -> (D,)``
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
    from ..exceptions import ValidationError, ValidationTypeError
    if not hasattr(step, "py_func"):
        raise ValidationTypeError("compiled_step must be a Numba-jitted function "
                                  "(@numba.njit) of (x, u, t); got "
                                  f"{type(step).__name__}.")
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
    return _forward_kernel(step, x0, X, U, K, k, float(alpha), lo, hi, bool(clip))
