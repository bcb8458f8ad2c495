"""Rollout engine and its backends (NumPy, Numba, CuPy)."""

from .backends import (KNOWN_BACKENDS, available_backends, check_backend, cupy_available,
                       get_backend)
from .engine import expected_rollout_cost, simulate_costs

__all__ = ["simulate_costs", "expected_rollout_cost", "get_backend", "available_backends",
           "cupy_available", "check_backend", "KNOWN_BACKENDS"]
