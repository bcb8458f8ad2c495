"""The ``"numba"`` rollout backend (the CPU default).

The compiled kernels of :mod:`~metalqr.rollouts._numba_kernel` and the compiled twin of the
counter-based generator, :mod:`~metalqr.rollouts._counter_rng_numba`, parallel over roll-outs. Numba
is imported on first use, not when metalqr is imported.
"""

from __future__ import annotations

import importlib.util
import math

from .backends import Backend, register_backend

__all__ = ["NumbaBackend"]


class NumbaBackend(Backend):
    """Numba implementation of :class:`~metalqr.rollouts.backends.Backend`."""

    name = "numba"
    description = "compiled with Numba, parallel over roll-outs (the CPU default)"
    install_hint = "Install Numba (pip install numba) or use backend='numpy'."

    def available(self):
        """See :meth:`Backend.available`."""
        if self._available is None:            # installed or not: fixed for the process
            self._available = importlib.util.find_spec("numba") is not None
        return self._available

    _available: bool | None = None

    def simulate(self, A, B, Q, R, L0, G, task_index, K, noise_index, length, key, ref=None,
                 factor=math.inf):
        """See :meth:`Backend.simulate`."""
        from ._numba_kernel import simulate_costs_numba
        return simulate_costs_numba(A, B, Q, R, L0, G, task_index, K, noise_index, length, key,
                                    ref, factor)

    def divergence_reference(self, batch, task_index, K):
        """See :meth:`Backend.divergence_reference`.

        Returns a :class:`~metalqr.rollouts._numba_kernel.KernelReference` (the per-task
        parts; :meth:`simulate` forms ``tr(K V K')`` in its kernel, from the gain rows it
        transposes anyway), or ``None`` (the engine's NumPy formula) where a task has
        ``tr(Q V) <= 0``.
        """
        from ._numba_kernel import kernel_reference
        return kernel_reference(batch.Q, batch.R, batch.Psi, batch.Sigma0, task_index)

    def normals(self, key, n):
        """See :meth:`Backend.normals`."""
        from ._counter_rng_numba import normals_numba
        return normals_numba(key, n)

    def sphere_points(self, key, rows, n, radius):
        """See :meth:`Backend.sphere_points`."""
        from ._counter_rng_numba import sphere_numba
        return sphere_numba(key, rows, n, radius)

    def perturbed_gains(self, C, V, two_point):
        """See :meth:`Backend.perturbed_gains`."""
        from ._numba_kernel import perturbed_numba
        return perturbed_numba(C, V, two_point)

    def kernels_cold(self) -> bool:
        """Return whether the roll-out kernels are not yet compiled into metalqr's cache.

        The first call will then compile them (see :mod:`metalqr._numba_cache`).
        """
        from .. import _numba_cache
        from . import _numba_kernel
        return _numba_cache.is_cold(_numba_kernel.__file__)


register_backend(NumbaBackend())
