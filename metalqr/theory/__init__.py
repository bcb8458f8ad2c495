"""Executable versions of the ZO-MAML paper's constants (Lemmas 1-5 and 8-14).

Work in progress: the step-size / sample-size certificate of Theorems 1-2 (``certify``)
and ``benchmarks/bench_theory.py`` are not implemented yet; see docs/theory.md.
"""

from .constants import (TaskConstants, bernstein_samples, cost_lipschitz, gradient_domination_lambda, h_c, h_cost,
                        h_cost_meta, h_Delta, h_G, h_G_meta, h_grad, h_H, rollout_length_bound,
                        task_constants)

__all__ = ["TaskConstants", "task_constants", "cost_lipschitz", "h_G", "h_c", "h_H", "h_Delta", "h_cost", "h_grad",
           "gradient_domination_lambda", "h_G_meta", "h_cost_meta", "bernstein_samples",
           "rollout_length_bound"]
