"""The ``"numpy"`` rollout backend: the reference every other backend is tested against.

The ``"numpy"`` rollout backend: the array kernel
(:func:`~metalqr.rollouts._array_kernel.simulate_costs_array`) with NumPy, chunked over roll-outs
and threaded over chunks; the reference every other backend is tested against.
"""

from __future__ import annotations

import math

import numpy as np

from .._parallel import map_chunks
from ._array_kernel import simulate_costs_array
from .backends import Backend, register_backend
from .counter_rng import normals as counter_normals

__all__ = ["NumpyBackend", "CHUNK"]

#: Roll-outs per chunk of the array kernel (bounds memory at ~chunk * d * d floats).
CHUNK = 8192
#: Normals generated per call of the counter-based generator.
NORMALS_CHUNK = 1 << 20


class NumpyBackend(Backend):
    """NumPy implementation of :class:`~metalqr.rollouts.backends.Backend`."""

    name = "numpy"
    description = "array kernel with NumPy, chunked and threaded (reference implementation)"

    def simulate(self, A, B, Q, R, L0, G, task_index, K, noise_index, length, key, ref=None,
                 factor=math.inf):
        """See :meth:`Backend.simulate`."""
        N, d = K.shape[0], A.shape[-1]
        ref = np.zeros(N) if ref is None else ref

        def chunks(ti, Kc, ni, rc):
            with np.errstate(over="ignore", invalid="ignore"):
                outs = [simulate_costs_array(np, A, B, Q, R, L0, G, ti[s:s + CHUNK],
                                             Kc[s:s + CHUNK], ni[s:s + CHUNK], length, key,
                                             rc[s:s + CHUNK], factor)
                        for s in range(0, ti.shape[0], CHUNK)]
            return (np.concatenate(outs) if outs else np.empty(0),)

        return map_chunks(chunks, [task_index, K, noise_index, ref], N,
                          work=N * length * d * d * 20)[0]

    def normals(self, key, n):
        """See :meth:`Backend.normals`."""
        out = np.empty(n)
        for s in range(0, n, NORMALS_CHUNK):
            out[s:s + NORMALS_CHUNK] = counter_normals(
                np, key, np.arange(s, min(n, s + NORMALS_CHUNK), dtype=np.uint64))
        return out

    def sphere_points(self, key, rows, n, radius):
        """See :meth:`Backend.sphere_points`."""
        G = self.normals(key, rows * n).reshape(rows, n)
        G *= (radius / np.sqrt(np.einsum("ij,ij->i", G, G)))[:, None]     # in place
        return G

    def perturbed_gains(self, C, V, two_point):
        """See :meth:`Backend.perturbed_gains`."""
        signs = np.array([1.0, -1.0] if two_point else [1.0])
        return C[:, None, None, :] + signs[None, None, :, None] * V[:, :, None, :]


register_backend(NumpyBackend())
