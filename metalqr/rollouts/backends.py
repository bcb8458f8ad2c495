"""The one place where a rollout backend is chosen.

=========  ===========================================================================
name       implementation
=========  ===========================================================================
numpy      :func:`~metalqr.rollouts.array_kernel.simulate_costs_array` with NumPy,
           chunked over rollouts and threaded
numba      :func:`~metalqr.rollouts.numba_kernel.simulate_costs_numba`, compiled,
           parallel over rollouts (the CPU default)
cupy       the array kernel with CuPy on a CUDA GPU (``pip install metalqr[gpu]``)
=========  ===========================================================================

All three use the counter-based noise of :mod:`metalqr.rollouts.counter_rng`, so the
same key gives the same costs on every backend (to rounding).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._parallel import map_chunks
from .._validation import check_choice
from ..exceptions import BackendUnavailableError

__all__ = ["Backend", "get_backend", "available_backends", "DEFAULT_BACKEND", "cupy_available",
           "KNOWN_BACKENDS", "check_backend"]

#: Backend used when none is named (override with ``METALQR_BACKEND``).
DEFAULT_BACKEND = os.environ.get("METALQR_BACKEND", "numba")
#: Rollouts per chunk of the array kernels (bounds memory at ~chunk * d * d floats).
CHUNK = 8192


@dataclass(frozen=True)
class Backend:
    """A rollout backend: ``simulate(A, B, Q, R, L0, G, task_index, K, noise_index,
    length, key, ref, factor) -> costs`` on NumPy inputs, NumPy output (``inf`` for a
    roll-out whose stage cost grows beyond ``factor`` times its reference, see
    :func:`~metalqr.rollouts.array_kernel.simulate_costs_array`)."""

    name: str
    simulate: Callable[..., np.ndarray]


def _numpy_simulate(A, B, Q, R, L0, G, task_index, K, noise_index, length, key, ref=None,
                    factor=math.inf):
    from .array_kernel import simulate_costs_array

    N, d = K.shape[0], A.shape[-1]
    ref = np.zeros(N) if ref is None else ref

    def chunks(ti, Kc, ni, rc):
        with np.errstate(over="ignore", invalid="ignore"):
            outs = [simulate_costs_array(np, A, B, Q, R, L0, G, ti[s:s + CHUNK], Kc[s:s + CHUNK],
                                         ni[s:s + CHUNK], length, key, rc[s:s + CHUNK], factor)
                    for s in range(0, ti.shape[0], CHUNK)]
        return (np.concatenate(outs) if outs else np.empty(0),)

    return map_chunks(chunks, [task_index, K, noise_index, ref], N,
                      work=N * length * d * d * 20)[0]


def _numba_simulate(*args):
    from .numba_kernel import simulate_costs_numba
    return simulate_costs_numba(*args)


def cupy_available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError, ...
        return False


def _cupy_simulate(A, B, Q, R, L0, G, task_index, K, noise_index, length, key, ref=None,
                   factor=math.inf):
    import cupy as cp

    from .array_kernel import simulate_costs_array

    dev = [cp.asarray(a) for a in (A, B, Q, R, L0, G)]
    N, k, d = K.shape
    free, _ = cp.cuda.Device().mem_info
    chunk = max(1024, int(free * 0.25 / (8 * (2 * k * d + 8 * (d + k) + 16))))
    out = np.empty(N)
    ref = np.zeros(N) if ref is None else ref
    for s in range(0, N, chunk):
        sl = slice(s, s + chunk)
        out[sl] = cp.asnumpy(simulate_costs_array(
            cp, *dev, task_index[sl], cp.asarray(K[sl]), cp.asarray(noise_index[sl]), length, key,
            ref[sl], factor))
    return out


_BACKENDS = {"numpy": _numpy_simulate, "numba": _numba_simulate, "cupy": _cupy_simulate}


#: Every backend name metalqr knows (whether or not it can run here: see
#: :func:`available_backends`).
KNOWN_BACKENDS = ("numpy", "numba", "cupy")


def check_backend(backend, name: str = "backend") -> str:
    """Validate a backend name against :data:`KNOWN_BACKENDS` (``None`` gives
    :data:`DEFAULT_BACKEND`, itself checked, as it may come from ``METALQR_BACKEND``);
    return the resolved name. An unknown name raises a
    :class:`~metalqr.ValidationError` listing the valid ones."""
    if backend is None:
        return check_choice(DEFAULT_BACKEND, "the METALQR_BACKEND environment variable (the "
                            "default backend)", KNOWN_BACKENDS)
    return check_choice(backend, name, KNOWN_BACKENDS)


def standard_normals(key: int, n: int, backend: str | None = None) -> np.ndarray:
    """``z_0 .. z_{n-1}`` of the counter-based generator with key ``key``: the same numbers
    on every backend (compiled and parallel with ``"numba"``)."""
    name = check_backend(backend)
    if name == "numba":
        from .numba_kernel import normals_numba
        return normals_numba(key, n)
    from .counter_rng import normals
    out = np.empty(n)
    for s in range(0, n, 1 << 20):
        out[s:s + (1 << 20)] = normals(np, key, np.arange(s, min(n, s + (1 << 20)), dtype=np.uint64))
    return out


def sphere_points(key: int, rows: int, n: int, radius: float,
                  backend: str | None = None) -> np.ndarray:
    """``(rows, n)`` points uniform on the sphere of radius ``radius`` in ``R^n``: row ``m`` is
    ``z_{mn} .. z_{mn + n - 1}`` of the counter-based generator with key ``key``, normalised.
    The same points on every backend (to rounding); generated and normalised in one compiled
    pass with ``"numba"``."""
    name = check_backend(backend)
    if name == "numba":
        from .numba_kernel import sphere_numba
        return sphere_numba(key, rows, n, radius)
    G = standard_normals(key, rows * n, backend).reshape(rows, n)
    G *= (radius / np.sqrt(np.einsum("ij,ij->i", G, G)))[:, None]     # in place
    return G


def perturbed_gains(C: np.ndarray, V: np.ndarray, two_point: bool,
                    backend: str | None = None) -> np.ndarray:
    """Gains ``C[p] + V[p, q]`` (and ``C[p] - V[p, q]``) for centres ``C`` of shape ``(P, n)``
    and perturbations ``V`` of shape ``(P, Q, n)``: an array ``(P, Q, S, n)``, ``S = 2`` with
    ``two_point``. One parallel pass with ``"numba"`` (the inner gains of Algorithm 2 are
    about 80 MB at the benchmark's size)."""
    name = check_backend(backend)
    if name == "numba":
        from .numba_kernel import perturbed_numba
        return perturbed_numba(C, V, two_point)
    signs = np.array([1.0, -1.0] if two_point else [1.0])
    return C[:, None, None, :] + signs[None, None, :, None] * V[:, :, None, :]


def available_backends() -> list[str]:
    """Backends that can run on this machine."""
    names = ["numpy", "numba"]
    if cupy_available():
        names.append("cupy")
    return names


def get_backend(name: str | None = None) -> Backend:
    """Resolve a backend name (``None`` gives :data:`DEFAULT_BACKEND`).

    Raises
    ------
    ValidationError
        For an unknown name.
    BackendUnavailableError
        For ``"cupy"`` when CuPy or a CUDA device is missing.
    """
    name = check_backend(name)
    if name == "cupy" and not cupy_available():
        raise BackendUnavailableError("backend 'cupy' needs CuPy and a CUDA GPU: install with "
                                      "pip install 'metalqr[gpu]' on a machine with a GPU, or use "
                                      "backend='numba'.")
    return Backend(name, _BACKENDS[name])
