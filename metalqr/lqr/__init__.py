"""LQR core: tasks, Lyapunov/Riccati solvers, exact cost, gradient and Hessian."""

from .._api import public_names as _public_names
from .lyapunov import dlyap
from .optimization import PolicyOptimizationResult, policy_optimization
from .policy import (PolicyEvaluation, cost, evaluate, gauss_newton_direction, gradient, hessian,
                     hessian_vp, is_stabilizing, natural_gradient, spectral_radius)
from .riccati import optimal_gain
from .systems import boeing747, double_integrator, inverted_pendulum, standard_systems
from .tasks import LQRTask, TaskSet

__all__ = _public_names(globals())
