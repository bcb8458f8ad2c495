"""metalqr: LQR meta-policy optimisation (ZO-MAML) and trajectory-optimisation task weighting.

The public API is re-exported here; see ``docs/`` for worked examples.
"""

from .exceptions import (MetalqrError, NotMAMLStabilizingError, NotMetaLearnableError,
                         RolloutOverflowError, UnstablePolicyError, ValidationError)
from .lqr import (LQRTask, PolicyOptimizationResult, TaskSet, boeing747, cost, dlyap,
                  double_integrator, evaluate, gauss_newton_direction, gradient, hessian,
                  hessian_vp, inverted_pendulum, is_stabilizing, natural_gradient, optimal_gain,
                  policy_optimization, spectral_radius, standard_systems)

__version__ = "0.1.0"

__all__ = [
    "MetalqrError", "ValidationError", "UnstablePolicyError", "NotMAMLStabilizingError",
    "NotMetaLearnableError", "RolloutOverflowError",
    "LQRTask", "TaskSet", "dlyap", "spectral_radius", "is_stabilizing", "optimal_gain", "cost",
    "gradient", "hessian_vp", "hessian", "natural_gradient", "gauss_newton_direction", "evaluate",
    "policy_optimization", "PolicyOptimizationResult", "boeing747", "double_integrator",
    "inverted_pendulum", "standard_systems",
]
