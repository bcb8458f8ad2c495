"""The ``"cupy"`` rollout backend (CUDA GPU).

The ``"cupy"`` rollout backend: the array kernel
(:func:`~metalqr.rollouts._array_kernel.simulate_costs_array`) and the counter-based generator with
CuPy on a CUDA GPU (``pip install metalqr[gpu]``).

:class:`CupyBackend` takes its array module as an argument (CuPy by default), so the tests
run this very code on a CPU with NumPy standing in for CuPy.
"""

from __future__ import annotations

import math

import numpy as np

from ._array_kernel import simulate_costs_array
from .backends import Backend, cupy_available, register_backend
from .counter_rng import normals as counter_normals

__all__ = ["CupyBackend"]

#: Normals generated per device call.
NORMALS_CHUNK = 1 << 22


class CupyBackend(Backend):
    """CuPy implementation of :class:`~metalqr.rollouts.backends.Backend`.

    Parameters
    ----------
    xp : module, optional
        Array module (default: ``cupy``, imported on first use). Anything else is for tests.
    """

    name = "cupy"
    description = "array kernel with CuPy on a CUDA GPU (pip install 'metalqr[gpu]')"
    install_hint = ("It needs CuPy and a CUDA GPU: install with pip install 'metalqr[gpu]' on "
                    "a machine with a GPU, or use backend='numba'.")

    def __init__(self, xp=None):
        self._xp = xp

    @property
    def xp(self):
        """The ``cupy`` module (imported on first use)."""
        if self._xp is None:
            import cupy
            self._xp = cupy
        return self._xp

    def available(self):
        """See :meth:`Backend.available`."""
        if self._xp is not None:
            return True
        if self._available is None:            # CuPy and the device count: fixed per process
            self._available = cupy_available()
        return self._available

    _available: bool | None = None

    def _host(self, a) -> np.ndarray:
        to_host = getattr(self.xp, "asnumpy", None)
        return np.asarray(a) if to_host is None else to_host(a)

    def _free_bytes(self) -> int:
        try:
            return int(self.xp.cuda.Device().mem_info[0])
        except AttributeError:               # an array module without CUDA (tests)
            return 1 << 30

    def simulate(self, A, B, Q, R, L0, G, task_index, K, noise_index, length, key, ref=None,
                 factor=math.inf):
        """See :meth:`Backend.simulate`."""
        xp = self.xp
        dev = [xp.asarray(a) for a in (A, B, Q, R, L0, G)]
        N, k, d = K.shape
        chunk = max(1024, int(self._free_bytes() * 0.25 / (8 * (2 * k * d + 8 * (d + k) + 16))))
        out = np.empty(N)
        ref = np.zeros(N) if ref is None else ref
        for s in range(0, N, chunk):
            sl = slice(s, s + chunk)
            out[sl] = self._host(simulate_costs_array(
                xp, *dev, task_index[sl], xp.asarray(K[sl]), xp.asarray(noise_index[sl]),
                length, key, ref[sl], factor))
        return out

    def _normals_device(self, key, n):
        xp = self.xp
        parts = [counter_normals(xp, key, xp.arange(s, min(n, s + NORMALS_CHUNK),
                                                     dtype=xp.uint64))
                 for s in range(0, n, NORMALS_CHUNK)]
        return xp.concatenate(parts) if parts else xp.empty(0)

    def normals(self, key, n):
        """See :meth:`Backend.normals`."""
        return self._host(self._normals_device(key, n))

    def sphere_points(self, key, rows, n, radius):
        """See :meth:`Backend.sphere_points`."""
        G = self._normals_device(key, rows * n).reshape(rows, n)
        G *= (radius / self.xp.sqrt(self.xp.einsum("ij,ij->i", G, G)))[:, None]
        return self._host(G)

    def perturbed_gains(self, C, V, two_point):
        """See :meth:`Backend.perturbed_gains`."""
        signs = np.array([1.0, -1.0] if two_point else [1.0])
        return C[:, None, None, :] + signs[None, None, :, None] * V[:, :, None, :]


register_backend(CupyBackend())
