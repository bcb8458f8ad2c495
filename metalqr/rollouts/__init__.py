"""Rollout engine and its backends (NumPy, Numba, CuPy)."""

from .backends import available_backends, cupy_available, get_backend
from .engine import expected_rollout_cost, simulate_costs

__all__ = ["simulate_costs", "expected_rollout_cost", "get_backend", "available_backends",
           "cupy_available"]
