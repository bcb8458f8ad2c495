"""Argument checks shared inside :mod:`metalqr.tow`.

Learners, task lists, sources, optimisers, parameter vectors. Built on :mod:`metalqr._validation`;
every error names the argument and says how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_float_array
from ..exceptions import ValidationError, ValidationTypeError


def check_params(x: Any, name: str, size: int) -> np.ndarray:
    """Return a finite real parameter vector of length ``size``."""
    x = as_float_array(x, name, ndim=1)
    if x.size != size:
        raise ValidationError(f"{name} must have length {size} (the network's parameter count); "
                              f"got {x.size}.")
    return x


def param_size(learner) -> int:
    return learner.net.size


def check_optimizer(optimizer: Any, name: str = "optimizer"):
    """Check a meta-optimiser for use as TOW dynamics.

    A meta-optimiser as TOW dynamics: it must carry its own state size and linearisation
    (``state_size(D)``, ``initial_state(x)``, ``step(z, g, tau)``, ``linearize(z, g, G, H,
    tau)``), as :class:`metalqr.tow.SGD` and :class:`metalqr.tow.Adam` do; no type is
    special-cased.
    """
    missing = [m for m in ("state_size", "initial_state", "step", "linearize")
               if not callable(getattr(optimizer, m, None))]
    if missing:
        raise ValidationTypeError(f"{name} must be a meta-optimiser with state_size, initial_state, step and "
                                  f"linearize methods (e.g. metalqr.tow.SGD or metalqr.tow.Adam, see "
                                  f"metalqr.tow.make_optimizer); {type(optimizer).__name__} lacks "
                                  f"{', '.join(missing)}.")
    return optimizer


def check_source(source: Any, name: str = "source", *, need_sample: bool = True):
    """Check a task source.

    A task source: ``sample(rng, n, train)`` (unless ``need_sample`` is false), ``n_in``,
    ``n_out`` and ``loss``.
    """
    if need_sample and not callable(getattr(source, "sample", None)):
        raise ValidationTypeError(f"{name} must be a task source with a sample(rng, n, train) method "
                                  f"(e.g. metalqr.tow.SinusoidTasks()); got {type(source).__name__}.")
    for attr in ("n_in", "n_out"):
        v = getattr(source, attr, None)
        if v is None and not need_sample:
            raise ValidationTypeError(f"{name} must be a task source (with n_in, n_out and loss, e.g. "
                                      f"metalqr.tow.SinusoidTasks()); got {type(source).__name__} without {attr}.")
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValidationError(f"{name}.{attr} must be an int >= 1; got {v!r}.")
    if getattr(source, "loss", None) not in ("mse", "ce"):
        raise ValidationError(f"{name}.loss must be 'mse' or 'ce'; got {getattr(source, 'loss', None)!r}.")
    return source


def check_tasks(tasks: Any, name: str, *, allow_empty: bool = False) -> list:
    """Return a list (or tuple) of :class:`~metalqr.tow.Task`."""
    from .tasks import Task
    if isinstance(tasks, Task):
        raise ValidationTypeError(f"{name} must be a list of Task objects; got a single Task "
                                  f"(wrap it: [task]).")
    if not isinstance(tasks, (list, tuple)):
        raise ValidationTypeError(f"{name} must be a list of metalqr.tow.Task; got "
                                  f"{type(tasks).__name__}.")
    if not tasks and not allow_empty:
        raise ValidationError(f"{name} must contain at least one task; got an empty list.")
    for i, t in enumerate(tasks):
        if not isinstance(t, Task):
            raise ValidationTypeError(f"{name}[{i}] must be a metalqr.tow.Task; got {type(t).__name__}.")
    return list(tasks)


def check_batches(batches: Any, name: str = "batches") -> list:
    """Return a non-empty sequence of ``T`` mini-batches, each a list of ``M >= 1`` tasks (same M)."""
    if not isinstance(batches, (list, tuple)) or not batches:
        got = (f"an empty {type(batches).__name__}" if isinstance(batches, (list, tuple))
               else f"a {type(batches).__name__}")
        raise ValidationError(f"{name} must be a non-empty list of mini-batches, each a list of Task "
                              f"(e.g. [source.sample(rng, M) for _ in range(T)]); got {got}.")
    out = [check_tasks(b, f"{name}[{t}]") for t, b in enumerate(batches)]
    M = len(out[0])
    for t, b in enumerate(out):
        if len(b) != M:
            raise ValidationError(f"{name}[{t}] has {len(b)} tasks but {name}[0] has {M}; every "
                                  f"mini-batch of a window must have the same number of tasks M.")
    return out


#: Documented sane ranges of TOW's scale parameters (issue 1: beta_u = 1e308 overflowed the
#: cost's curvature ``c_uu = beta_u I``, and ``beta_u/2 |u - mu_u|^2`` overflowed above ~1e160).
#: ``beta_u`` in (0, BETA_U_MAX]; ``mu_u`` in [0, MU_U_MAX].
BETA_U_MAX = 1e12
MU_U_MAX = 1e6


def check_beta_u(value: Any, name: str = "beta_u") -> float:
    """Check TOW's prior precision ``beta_u`` (Eq. (7)).

    TOW's prior precision (Eq. (7)) as a float in ``(0, BETA_U_MAX]`` (1e12: a larger precision
    pins every weight to ``mu_u`` anyway and overflows the iLQR cost).
    """
    from .._validation import check_real
    return check_real(value, f"{name} (TOW prior precision)",
                      minimum=0.0, maximum=BETA_U_MAX, min_inclusive=False)


def check_mu_u(value: Any, name: str = "mu_u") -> float:
    """TOW's prior mean of the weights (Eq. (7)) as a float in ``[0, MU_U_MAX]``."""
    from .._validation import check_real
    return check_real(value, f"{name} (TOW prior mean of the weights)", minimum=0.0, maximum=MU_U_MAX)
