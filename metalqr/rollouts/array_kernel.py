"""Vectorised rollout kernel written against an array module ``xp`` (NumPy or CuPy).

The same function serves the ``"numpy"`` backend (``xp = numpy``) and the ``"cupy"``
backend (``xp = cupy``), so CPU-only test runs exercise the GPU code path.
"""

from __future__ import annotations

import numpy as np

from .counter_rng import block_stride, normals

__all__ = ["simulate_costs_array"]


def simulate_costs_array(xp, A, B, Q, R, L0, G, task_index, K, noise_index, length: int,
                         key: int):
    """Empirical costs of ``N`` rollouts, all in arrays of module ``xp``.

    Parameters
    ----------
    A, B, Q, R, L0, G : arrays, leading task axis
        Task matrices; ``L0 L0' = Sigma0`` and ``G G' = Psi`` (the noise factors of
        :func:`~metalqr.rollouts.engine.noise_factors`: ``x_0 = L0 z``, ``w_t = G z``).
    task_index : int array (N,)
        Task of each rollout.
    K : array (N, k, d)
        Gain of each rollout.
    noise_index : int array (N,)
        Noise stream of each rollout (rollouts with equal index see identical noise).
    length : int
        Number of transitions ``l``.
    key : int
        Key of the counter-based generator.

    Returns
    -------
    costs : array (N,)
        ``(1/l) sum_{t=1}^{l} x_t'(Q + K'RK) x_t`` (Algorithm 1 of the ZO-MAML paper).
    """
    d = A.shape[-1]
    S = block_stride(length, d)
    Kt = xp.swapaxes(K, -1, -2)
    AK = A[task_index] - B[task_index] @ K
    Mc = Q[task_index] + Kt @ R[task_index] @ K
    Gw = G[task_index]
    base = noise_index.astype(xp.uint64) * np.uint64(S)
    cols = xp.arange(d, dtype=xp.uint64)

    def z(t):
        return normals(xp, key, base[:, None] + np.uint64(t * d) + cols[None, :])[..., None]

    x = L0[task_index] @ z(0)
    total = xp.zeros(K.shape[0], dtype=xp.float64)
    for t in range(1, length + 1):
        x = AK @ x + Gw @ z(t)
        total += (xp.swapaxes(x, -1, -2) @ Mc @ x)[:, 0, 0]
    return total / length
