"""Meta-policy optimisation for LQR (the ZO-MAML paper).

Meta-policy optimisation for LQR: task families, MAML objective and exact meta-gradient,
zeroth-order estimators (Algorithms 1-2), the training loop (Algorithm 3), Figure 1.
"""

from .._api import public_names as _public_names
from .families import default_heterogeneity, perturb_tasks, sample_tasks
from .history import History
from .objective import (adapted_gains, check_meta_learnable, common_stabilizing_gain, cost_gap_ratio,
                        first_order_maml_gradient, is_maml_stabilizing, maml_gradient,
                        maml_objective, optimal_costs)
from .training import MetaTrainingResult, meta_policy_optimization, mixing_rollout_length, rollout_bias
from .zeroth_order import sphere_perturbations, zo_gradient, zo_maml_gradient

__all__ = _public_names(globals())
