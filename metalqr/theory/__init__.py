"""Executable versions of the ZO-MAML paper's constants and certificates.

Executable versions of the ZO-MAML paper's constants (Lemmas 1-5 and 8-14), their suprema over the
sub-level set, and the Lemma 6-7 / Theorem 1-2 certificate (see docs/theory.md for which printed
constants fail and what replaces them).
"""

from .._api import public_names as _public_names
from .certify import Certificate, certify, sublevel_constants

from .constants import (VARIANTS, TaskConstants, bernstein_samples, cost_lipschitz, gradient_domination_lambda, h_c, h_cost,
                        h_cost_meta, h_Delta, h_G, h_G_meta, h_grad, h_H, h_hess, h_L_grad, h_r2,
                        h_sample_task, rollout_length_bound, rollout_length_meta, rollout_length_variance,
                        task_constants)

__all__ = _public_names(globals())
