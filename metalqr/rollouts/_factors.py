"""Square roots of the noise covariances used by every rollout backend.

Square roots of the noise covariances (``L0 L0' = Sigma0``, ``G G' = Psi``) that every rollout
backend uses to map the counter-based normals to states and noise.

A leaf module (NumPy only), so that the kernels and the engine can both import it without
an import cycle (it used to live in :mod:`~metalqr.rollouts.engine`, which imports the
backends).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict

import numpy as np

__all__ = ["lower_factor", "factor_error", "noise_factors", "equilibrated_factor",
           "well_conditioned", "WELL_CONDITIONED", "FACTOR_RTOL", "memo_by_value"]

#: Results kept by :func:`memo_by_value` (per decorated function).
MEMO_SIZE = 8
#: Calls whose array arguments exceed this many bytes are not cached (the key and the
#: result would be kept in memory; such task sets are large enough that their roll-outs,
#: not the factorisations, dominate).
MEMO_MAX_BYTES = 4 << 20


def memo_by_value(fn):
    """Cache ``fn(*arrays)`` by the values of its array arguments.

    Shape, dtype and bytes: an exact match, no hash collisions. Keeping the last
    :data:`MEMO_SIZE` results and returning fresh copies of cached arrays (``None``, and the
    non-array members of a tuple, pass through). Arguments above :data:`MEMO_MAX_BYTES` in total
    are not cached.

    For the per-task factorisations that every roll-out call of an estimator repeats on the
    same tasks (eigendecompositions, QR, condition numbers: 3 of the 9 ms of a (20, 10)
    meta-gradient before this cache). The result is the function's own, so the same inputs
    give the same bits whether or not the cache hits.
    """
    cache: OrderedDict = OrderedDict()
    lock = threading.Lock()

    def copy(out):
        if out is None:
            return None
        if isinstance(out, tuple):
            return tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a
                         for a in out)
        return np.array(out, copy=True)

    @functools.wraps(fn)
    def wrapper(*arrays):
        if sum(np.asarray(a).nbytes for a in arrays) > MEMO_MAX_BYTES:
            return fn(*arrays)
        key = tuple((a.shape, a.dtype.str, np.ascontiguousarray(a).tobytes()) for a in
                    (np.asarray(x) for x in arrays))
        with lock:
            hit = cache.get(key, cache)
            if hit is not cache:
                cache.move_to_end(key)
                return copy(hit)
        out = fn(*arrays)
        with lock:
            cache[key] = copy(out)
            while len(cache) > MEMO_SIZE:
                cache.popitem(last=False)
        return out

    wrapper.cache_clear = cache.clear
    return wrapper


def _equilibrate(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ``S`` into ``D C D`` with ``C`` of unit diagonal.

    ``S = D C D`` with ``D = diag(sqrt(S_ii))`` (zero where ``S_ii <= 0``) and ``C`` the
    correlation-type matrix (unit diagonal where ``S_ii > 0``, zero rows/columns elsewhere).
    """
    dg = np.diagonal(S, axis1=-2, axis2=-1)
    sc = np.sqrt(np.where(dg > 0.0, dg, 0.0))
    inv = np.divide(1.0, sc, out=np.zeros_like(sc), where=sc > 0.0)
    return sc, S * inv[..., :, None] * inv[..., None, :]


def lower_factor(S: np.ndarray) -> np.ndarray:
    """Lower-triangular ``L`` with ``L L' = S`` for symmetric PSD ``S`` (batched).

    Accurate for any PSD ``S``, including singular and badly scaled ones: the eigenvalue
    decomposition is taken of the diagonally equilibrated ``C = D^-1 S D^-1``
    (``D = diag(sqrt(S_ii))``, entries of ``C`` in ``[-1, 1]``), ``F = D V sqrt(max(lam, 0))``
    satisfies ``F F' = S`` with an error of each entry ``(i, j)`` of order
    ``eps sqrt(S_ii S_jj)``, and the QR factorisation ``F' = Q_ R_`` (column-wise backward
    stable) gives ``L = R_'``. For positive definite ``S`` this is the Cholesky factor.
    An eigenvalue decomposition of ``S`` itself loses every direction below
    ``eps ||S||`` (issue 13, part D).
    """
    sc, C = _equilibrate(S)
    lam, V = np.linalg.eigh(C)
    F = sc[..., :, None] * (V * np.sqrt(np.clip(lam, 0.0, None))[..., None, :])
    R_ = np.linalg.qr(np.swapaxes(F, -1, -2), mode="r")
    L = np.swapaxes(R_, -1, -2)
    sign = np.where(np.diagonal(L, axis1=-2, axis2=-1) < 0, -1.0, 1.0)
    return L * sign[..., None, :]


def factor_error(G: np.ndarray, S: np.ndarray) -> float:
    """Return the largest entrywise relative error of a square root.

    Largest entrywise relative error of a square root: ``max_ij |(G G' - S)_ij| / sqrt(S_ii
    S_jj)`` (``0/0`` counts as ``0``; an error where ``S_ii S_jj = 0`` is measured against
    ``max_i S_ii``).
    """
    E = np.abs(G @ np.swapaxes(G, -1, -2) - S)
    dg = np.clip(np.diagonal(S, axis1=-2, axis2=-1), 0.0, None)
    scale = np.sqrt(dg[..., :, None] * dg[..., None, :])
    floor = np.max(dg, axis=-1, initial=0.0)[..., None, None] * 1e-300 + 1e-300
    return float(np.max(E / np.maximum(scale, floor), initial=0.0))


#: A noise factor whose diagonally equilibrated version has a condition number above
#: ``1 / WELL_CONDITIONED`` (e.g. singular ``Psi``) is not diagonalised (no noise coordinates).
WELL_CONDITIONED = 1e-6
#: Largest entrywise relative error (see :func:`factor_error`) accepted for the rotated
#: factor ``G = L U``; beyond it the plain factor ``L`` is used.
FACTOR_RTOL = 1e-10


def equilibrated_factor(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a factor into row norms and unit rows.

    ``G = diag(h) G_C`` with ``h_i`` the Euclidean norm of row ``i`` of ``G`` (so ``h_i^2 =
    Psi_ii``) and ``G_C`` rows of unit norm (zero rows stay zero).
    """
    h = np.sqrt(np.einsum("...ij,...ij->...i", G, G))
    inv = np.divide(1.0, h, out=np.zeros_like(h), where=h > 0.0)
    return h, G * inv[..., :, None]


def well_conditioned(G: np.ndarray) -> bool:
    """Return whether every factor in the batch inverts accurately.

    Whether every factor in the batch ``G`` inverts accurately: the condition number of its
    diagonally equilibrated version (:func:`equilibrated_factor`) is below ``1 /
    WELL_CONDITIONED``. A diagonal scaling of the state does not change the answer.
    """
    h, GC = equilibrated_factor(G)
    if np.any(h <= 0.0):
        return False
    with np.errstate(divide="ignore", invalid="ignore"):
        return bool(np.all(np.linalg.cond(GC) * WELL_CONDITIONED < 1.0))


@memo_by_value
def noise_factors(Sigma0: np.ndarray, Psi: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return square roots ``(L0, G)`` of ``Sigma0`` and ``Psi``.

    Square roots ``(L0, G)`` with ``L0 L0' = Sigma0`` and ``G G' = Psi`` that map the
    counter-based normals to ``x_0 = L0 z`` and ``w_t = G z`` on every backend (batched).

    Both are accurate entry by entry (``|(G G' - Psi)_ij| <~ eps sqrt(Psi_ii Psi_jj)``) for
    any PSD matrix, singular or badly scaled (see :func:`lower_factor`). ``L0`` is lower
    triangular. ``G = L_Psi U``, with ``U`` the eigenvectors of ``L_Psi' Q L_Psi`` (formed
    from the equilibrated factor), so that in the noise coordinates ``y = G^{-1} x`` the
    stage cost ``x'Qx = y'(G'QG)y`` is a weighted sum of squares (the Numba kernel uses
    this). Where ``L_Psi`` is ill-conditioned after equilibration (e.g. singular ``Psi``) or
    the rotated factor would lose accuracy (entrywise error above :data:`FACTOR_RTOL`),
    ``G = L_Psi``.

    Cached by value (:func:`memo_by_value`): an estimator's repeated calls on the same tasks
    factorise them once.
    """
    L = lower_factor(Psi)
    G = L.copy()
    for i in range(L.shape[0]):
        if well_conditioned(L[i]):
            h, LC = equilibrated_factor(L[i])
            W = LC.T @ (h[:, None] * Q[i] * h[None, :]) @ LC
            _, U = np.linalg.eigh(0.5 * (W + W.T))
            rotated = L[i] @ U
            if factor_error(rotated, Psi[i]) <= FACTOR_RTOL:
                G[i] = rotated
    return lower_factor(Sigma0), G
