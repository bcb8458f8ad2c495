"""Property-testing tools for users' own LQR stability bounds (needs Hypothesis).

Install with ``pip install ".[testing]"`` (the ``test`` extra includes it).

* ``metalqr.testing.strategies``: Hypothesis strategies for LQR tasks
  (:func:`lqr_tasks`), stabilising gains (:func:`stabilizing_gains`), unit directions
  (:func:`directions`), task families (:func:`task_sets`) and meta-learnable families with a
  common MAML-stabilising gain (:func:`meta_learnable_families`, Definition 1 of the ZO-MAML
  paper). They shrink towards small, well-conditioned examples.
* ``metalqr.testing.bounds``: :func:`check_bound` / :func:`assert_bound_holds` search a
  strategy for the worst ratio ``quantity / bound`` and print the shrunk counterexample;
  :func:`assert_gradient_matches_fd` and :func:`assert_hvp_matches_fd` check derivative
  formulas against finite differences.

See ``docs/property_testing.md`` for worked examples.
"""

try:
    import hypothesis  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "metalqr.testing needs the 'hypothesis' package, which is an optional dependency of "
        "metalqr: install it with  pip install \"metalqr[testing]\"  (the 'test' extra includes "
        "it too). The rest of metalqr works without it.") from exc

from .._api import public_names as _public_names
from .bounds import (BoundReport, assert_bound_holds, assert_gradient_matches_fd, assert_hvp_matches_fd,
                     check_bound, format_example)
from .strategies import (STABILITY, MetaFamily, directions, lqr_tasks, meta_learnable_families,
                         stabilizing_gains, task_sets, tasks_and_gains)

__all__ = _public_names(globals())
