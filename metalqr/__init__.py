"""metalqr: LQR meta-policy optimisation (ZO-MAML) and trajectory-optimisation task weighting.

The public API is re-exported here; see ``docs/`` for worked examples and
``docs/references.md`` for the two papers.
"""

#: The version of metalqr (the one place it is stated besides pyproject.toml; a test checks
#: that they agree).
__version__ = "0.1.0"

# Compiled Numba kernels are cached per user and per version (survives a reinstall); this
# must run before the modules that define the kernels are imported. See _numba_cache.
from ._numba_cache import install as _install_kernel_cache

_install_kernel_cache(__version__)
del _install_kernel_cache

from . import exceptions as _exceptions
from .exceptions import *  # noqa: F401,F403 (every exception and warning class is public)
from .lqr import (LQRTask, PolicyOptimizationResult, TaskSet, boeing747, cost, dlyap,
                  double_integrator, evaluate, gauss_newton_direction, gradient, hessian,
                  hessian_vp, inverted_pendulum, is_stabilizing, natural_gradient, optimal_gain,
                  policy_optimization, spectral_radius, standard_systems)

from .meta import (History, MetaTrainingResult, adapted_gains, check_meta_learnable,
                   common_stabilizing_gain, cost_gap_ratio, first_order_maml_gradient,
                   is_maml_stabilizing, maml_gradient, maml_objective, meta_policy_optimization,
                   optimal_costs, perturb_tasks, sample_tasks, sphere_perturbations, zo_gradient,
                   zo_maml_gradient, default_heterogeneity, mixing_rollout_length, rollout_bias)
from .rollouts import available_backends, expected_rollout_cost, simulate_costs

__all__ = [
    *_exceptions.__all__,
    "LQRTask", "TaskSet", "dlyap", "spectral_radius", "is_stabilizing", "optimal_gain", "cost",
    "gradient", "hessian_vp", "hessian", "natural_gradient", "gauss_newton_direction", "evaluate",
    "policy_optimization", "PolicyOptimizationResult", "boeing747", "double_integrator",
    "inverted_pendulum", "standard_systems",
    "sample_tasks", "perturb_tasks", "maml_objective", "maml_gradient", "first_order_maml_gradient",
    "is_maml_stabilizing", "adapted_gains", "cost_gap_ratio", "optimal_costs",
    "check_meta_learnable", "common_stabilizing_gain", "zo_gradient", "zo_maml_gradient",
    "sphere_perturbations", "meta_policy_optimization", "MetaTrainingResult", "History",
    "default_heterogeneity", "mixing_rollout_length", "rollout_bias",
    "simulate_costs", "expected_rollout_cost", "available_backends",
]
