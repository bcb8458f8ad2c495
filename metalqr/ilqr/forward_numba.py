"""Compiled forward pass for problems that supply a Numba-jitted one-step function
``step(x, u, t) -> x_next`` (1-D arrays): feedback, clipping and integration in one loop."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["forward_compiled"]


@nb.njit(cache=True)
def forward_compiled(step, x0, X, U, K, k, alpha, lo, hi, clip):
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
