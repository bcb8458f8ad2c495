"""Task families: the random generator of Section 6 of the ZO-MAML paper and perturbation
families around a user's own system."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from .._validation import as_rng, check_positive
from ..exceptions import ValidationError
from ..lqr.lyapunov import spectral_radius_of
from ..lqr.tasks import LQRTask, TaskSet

__all__ = ["sample_tasks", "perturb_tasks", "repair_stable", "repair_spd"]


def repair_stable(A: np.ndarray, max_spectral_radius: float) -> np.ndarray:
    """Scale ``A`` so that ``rho(A) <= max_spectral_radius`` (unchanged if already so)."""
    rho = float(spectral_radius_of(A))
    return A * (max_spectral_radius / rho) if rho > max_spectral_radius else A


def repair_spd(M: np.ndarray, min_eigenvalue: float) -> np.ndarray:
    """Symmetric part of ``M`` with its eigenvalues clipped below at ``min_eigenvalue``
    (the nearest matrix, in Frobenius norm, with that property)."""
    S = 0.5 * (M + M.T)
    lam, V = np.linalg.eigh(S)
    out = (V * np.maximum(lam, min_eigenvalue)) @ V.T
    return 0.5 * (out + out.T)


def sample_tasks(n_tasks: int, d: int, k: int, *, heterogeneity: float = 0.25, rng: Any = None,
                 max_spectral_radius: float = 0.7, min_eigenvalue: float = 0.1,
                 return_nominal: bool = False):
    """Random family of similar LQR tasks (Section 6 of the ZO-MAML paper).

    1. Nominal matrices: entries of ``A0`` (d x d), ``B0`` (d x k), ``Q0``, ``R0``, ``Psi0``
       drawn i.i.d. uniform on [0, 1].
    2. Each task draws every entry from ``N(nominal entry, heterogeneity)`` (``heterogeneity``
       is the *variance*; the paper uses 0.25).
    3. "Repair" (applied to the nominal and to every task): ``A`` is scaled down to spectral
       radius ``max_spectral_radius`` if it exceeds it (so ``K = 0`` stabilises every task
       and the family is meta-learnable; the paper only asks for ``rho < 1``. The default
       0.7 leaves enough margin that perturbations of Frobenius norm 2r = 0.1 around
       ``K = 0`` never destabilise a task, while at 0.9 up to 7% do and the one-point
       estimator of Algorithm 2 then blows up, see ``docs/meta_learning.md``); ``Q``, ``R``, ``Psi`` are replaced by their
       symmetric part with eigenvalues clipped below at ``min_eigenvalue`` (symmetric
       positive definite). ``B`` is not changed; ``Sigma0 = I``.

    Parameters
    ----------
    n_tasks, d, k : int
        Number of tasks, state and input dimensions.
    heterogeneity : float
        Variance of each task's entries around the nominal ones.
    rng : Generator or seed
    max_spectral_radius : float in (0, 1)
    min_eigenvalue : float > 0
    return_nominal : bool
        Also return the repaired nominal task.

    Returns
    -------
    TaskSet, or (TaskSet, LQRTask) with ``return_nominal=True``.
    """
    n_tasks = check_positive(n_tasks, "n_tasks", integer=True)
    d = check_positive(d, "d", integer=True)
    k = check_positive(k, "k", integer=True)
    h = check_positive(heterogeneity, "heterogeneity", allow_zero=True)
    if not 0 < max_spectral_radius < 1:
        raise ValidationError(f"max_spectral_radius must lie in (0, 1); got {max_spectral_radius}.")
    eps = check_positive(min_eigenvalue, "min_eigenvalue")
    rng = as_rng(rng)
    nominal = {"A": rng.uniform(size=(d, d)), "B": rng.uniform(size=(d, k)),
               "Q": rng.uniform(size=(d, d)), "R": rng.uniform(size=(k, k)),
               "Psi": rng.uniform(size=(d, d))}

    def make(mats: dict) -> LQRTask:
        return LQRTask(repair_stable(mats["A"], max_spectral_radius), mats["B"],
                       repair_spd(mats["Q"], eps), repair_spd(mats["R"], eps),
                       Psi=repair_spd(mats["Psi"], eps))

    nominal_task = make(nominal)
    # Tasks are centred on the raw nominal draws, then repaired the same way.
    sd = np.sqrt(h)
    tasks = TaskSet([make({name: M + sd * rng.standard_normal(M.shape) for name, M in nominal.items()})
                     for _ in range(n_tasks)])
    return (tasks, nominal_task) if return_nominal else tasks


def perturb_tasks(nominal: LQRTask, n_tasks: int, *, heterogeneity: float = 1e-3, rng: Any = None,
                  perturb: Iterable[str] = ("A", "B"), min_eigenvalue: float = 1e-3,
                  max_spectral_radius: float | None = None) -> TaskSet:
    """A family of tasks around a user's own system (e.g. :func:`metalqr.boeing747`).

    Each task adds i.i.d. ``N(0, heterogeneity)`` noise to the entries of the matrices named
    in ``perturb`` (any of ``"A", "B", "Q", "R", "Psi"``). Perturbed weights are repaired to
    symmetric positive definite as in :func:`sample_tasks`; ``A`` is rescaled only if
    ``max_spectral_radius`` is given (open-loop unstable families are allowed: they need a
    common stabilising gain, see :func:`metalqr.common_stabilizing_gain`).
    """
    if not isinstance(nominal, LQRTask):
        raise ValidationError(f"nominal must be an LQRTask; got {type(nominal).__name__}.")
    n_tasks = check_positive(n_tasks, "n_tasks", integer=True)
    sd = np.sqrt(check_positive(heterogeneity, "heterogeneity", allow_zero=True))
    perturb = tuple(perturb)
    unknown = set(perturb) - {"A", "B", "Q", "R", "Psi"}
    if unknown:
        raise ValidationError(f"perturb may name only A, B, Q, R, Psi; got {sorted(unknown)}.")
    rng = as_rng(rng)
    tasks = []
    for _ in range(n_tasks):
        mats = {name: np.array(getattr(nominal, name)) for name in ("A", "B", "Q", "R", "Psi")}
        for name in perturb:
            mats[name] = mats[name] + sd * rng.standard_normal(mats[name].shape)
            if name in ("Q", "R", "Psi"):
                mats[name] = repair_spd(mats[name], min_eigenvalue)
        if max_spectral_radius is not None:
            mats["A"] = repair_stable(mats["A"], max_spectral_radius)
        tasks.append(LQRTask(mats["A"], mats["B"], mats["Q"], mats["R"], Psi=mats["Psi"],
                             Sigma0=nominal.Sigma0))
    return TaskSet(tasks)
