"""LQR core: tasks, Lyapunov/Riccati solvers, exact cost, gradient and Hessian."""

from .lyapunov import dlyap
from .optimization import PolicyOptimizationResult, policy_optimization
from .policy import (cost, evaluate, gauss_newton_direction, gradient, hessian, hessian_vp,
                     is_stabilizing, natural_gradient, spectral_radius)
from .riccati import optimal_gain
from .systems import boeing747, double_integrator, inverted_pendulum, standard_systems
from .tasks import LQRTask, TaskSet

__all__ = [
    "LQRTask", "TaskSet", "dlyap", "spectral_radius", "is_stabilizing", "optimal_gain", "cost",
    "gradient", "hessian_vp", "hessian", "natural_gradient", "gauss_newton_direction", "evaluate",
    "policy_optimization", "PolicyOptimizationResult", "boeing747", "double_integrator",
    "inverted_pendulum", "standard_systems",
]
