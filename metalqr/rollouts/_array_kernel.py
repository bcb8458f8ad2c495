"""Vectorised rollout kernel written against an array module ``xp`` (NumPy or CuPy).

The same function serves the ``"numpy"`` backend (``xp = numpy``) and the ``"cupy"``
backend (``xp = cupy``), so CPU-only test runs exercise the GPU code path.

Layout: the roll-outs are grouped by task into blocks of ``L <= LANES`` lanes, as many as
the roll-outs of a task need (:func:`~metalqr.rollouts._blocks.fitted_lanes`,
:func:`~metalqr.rollouts._blocks.task_blocks`), states as rows, ``x`` of shape
``(nblocks, L, d)``. A step is then a few batched matrix products with one task matrix per
block (``x A'``, ``u B'``, ``z G'``, ``x Q``, ``u R``: BLAS / cuBLAS GEMMs, written into work
arrays with ``out=``) and one per-roll-out product ``u = K x``; no Python loop over
roll-outs or perturbations, only over time. The noise of several steps is generated per call
of the counter-based generator (time-major, so step ``t``'s noise is one contiguous
``(nblocks, L, d)`` slab), at most :data:`NOISE_BYTES` at a time.
"""

from __future__ import annotations

import math

import numpy as np

from ._blocks import fitted_lanes, task_blocks
from .counter_rng import block_stride, normals

__all__ = ["simulate_costs_array", "LANES", "NOISE_BYTES"]

#: Roll-outs of one task per block (rows of each batched product).
LANES = 256
#: Upper bound on the noise generated at once (bytes).
NOISE_BYTES = 1 << 26


def simulate_costs_array(xp, A, B, Q, R, L0, G, task_index, K, noise_index, length: int,
                         key: int, ref=None, factor: float = math.inf):
    """Empirical costs of ``N`` rollouts.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``; every array below except ``task_index`` lives in it.
    A, B, Q, R, L0, G : arrays, leading task axis
        Task matrices; ``L0 L0' = Sigma0`` and ``G G' = Psi`` (the noise factors of
        :func:`~metalqr.rollouts.engine.noise_factors`: ``x_0 = L0 z``, ``w_t = G z``).
    task_index : NumPy int array (N,)
        Task of each rollout (on the host: it fixes the block layout).
    K : array (N, k, d)
        Gain of each rollout.
    noise_index : int array (N,)
        Noise stream of each rollout (rollouts with equal index see identical noise).
    length : int
        Number of transitions ``l``.
    key : int
        Key of the counter-based generator.
    ref : NumPy array (N,), optional
        Reference scale of each roll-out's stage cost
        (:func:`~metalqr.rollouts.engine.divergence_reference`).
    factor : float
        Divergence factor: a roll-out whose stage cost ``c_t`` at a step ``t > m``
        (``m = min(l, d + 1)``) exceeds ``factor (ref + max(c_1 .. c_m))`` is diverging; its
        state is reset to zero (so it cannot overflow) and its cost is ``inf``.

    Returns
    -------
    costs : array (N,)
        ``(1/l) sum_{t=1}^{l} x_t'(Q + K'RK) x_t`` (Algorithm 1 of the ZO-MAML paper);
        ``inf`` for a diverging roll-out.
    """
    N, d = K.shape[0], K.shape[2]
    out = xp.empty(N, dtype=xp.float64)
    if N == 0:
        return out
    task_index = np.asarray(task_index)
    block_task, block_rows = task_blocks(task_index, fitted_lanes(task_index, LANES))
    nblocks, L = block_rows.shape
    rows = xp.asarray(np.maximum(block_rows, 0))
    bt = xp.asarray(block_task)

    def per_block(M):                   # transposed task matrix of each block
        return xp.ascontiguousarray(xp.swapaxes(M, -1, -2)[bt])

    At, Bt, Gt, L0t, Qb, Rb = (per_block(M) for M in (A, B, G, L0, Q, R))
    Kb = K[rows]                                                        # (nblocks, L, k, d)
    S = block_stride(length, d)
    base = noise_index[rows].astype(xp.uint64) * np.uint64(S)           # (nblocks, L)
    cols = xp.arange(d, dtype=xp.uint64)
    slab = max(1, NOISE_BYTES // (8 * nblocks * L * d))

    def noise(t0, t1):                  # z for x_0 (t = 0) and w_{t-1} (t >= 1), t0 <= t < t1
        c = xp.arange(t0, t1, dtype=xp.uint64)[:, None] * np.uint64(d) + cols[None, :]
        return normals(xp, key, base[None, :, :, None] + c[:, None, None])  # (t, nblocks, L, d)

    ref_host = np.zeros(N) if ref is None else np.asarray(ref, dtype=np.float64)
    refb = xp.asarray(np.where(block_rows >= 0, ref_host[np.maximum(block_rows, 0)], 0.0))
    m = min(length, d + 1)
    watch = math.isfinite(factor)
    on_host = xp is np
    x = noise(0, 1)[0] @ L0t
    u = xp.einsum("blkd,bld->blk", Kb, x)
    xn = xp.empty_like(x)               # work arrays of the time loop (no temporaries)
    tmp = xp.empty_like(x)
    tk = xp.empty_like(u)
    total = xp.zeros((nblocks, L))
    early = xp.zeros((nblocks, L))
    diverged = xp.zeros((nblocks, L), dtype=bool)
    t, any_diverged = 0, False
    for t0 in range(1, length + 1, slab):
        Z = noise(t0, min(t0 + slab, length + 1))
        for j in range(Z.shape[0]):
            t += 1
            xp.matmul(x, At, out=xn)     # x_t = x A' - u B' + z G'
            xp.matmul(u, Bt, out=tmp)
            xn -= tmp
            xp.matmul(Z[j], Gt, out=tmp)
            xn += tmp
            x, xn = xn, x
            u = xp.einsum("blkd,bld->blk", Kb, x)
            xp.matmul(x, Qb, out=tmp)
            xp.matmul(u, Rb, out=tk)
            c = xp.einsum("bld,bld->bl", x, tmp) + xp.einsum("blk,blk->bl", u, tk)
            total += c
            if not watch:
                continue
            if t <= m:
                early = xp.maximum(early, c)
                continue
            bad = c > factor * (refb + early)
            if on_host and not (any_diverged or bad.any()):
                continue
            any_diverged = True
            diverged |= bad                # reset diverging roll-outs: they cannot overflow
            x = xp.where(diverged[..., None], 0.0, x)
            u = xp.where(diverged[..., None], 0.0, u)
    total = xp.where(diverged, xp.inf, total)
    valid = block_rows >= 0
    out[xp.asarray(block_rows[valid])] = total[xp.asarray(valid)] / length
    return out
