"""Rollout engine and its backends (see ``backends`` for the interface and the registry).

The line below is the backend registry: one module per backend, each registering itself with
:func:`~metalqr.rollouts.backends.register_backend` when imported. Adding a backend is one new
module and its name on that line.
"""

from .._api import public_names as _public_names
from . import numpy_backend, numba_backend, cupy_backend  # noqa: F401  (the registry line)
from .backends import (KNOWN_BACKENDS, Backend, available_backends, backend_help, check_backend,
                       cupy_available, get_backend, known_backends, register_backend)
from .engine import expected_rollout_cost, simulate_costs

__all__ = _public_names(globals())
