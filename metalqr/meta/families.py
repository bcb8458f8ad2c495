"""Task families: the random generator of Section 6 of the ZO-MAML paper and perturbations.

Task families: the random generator of Section 6 of the ZO-MAML paper and perturbation families
around a user's own system.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from .._validation import (as_float_array, as_rng, check_bool, check_int, check_positive,
                           check_real, check_size)
from ..exceptions import NotMetaLearnableError, ValidationError, ValidationTypeError
from ..lqr.lyapunov import spectral_radius_of
from ..lqr.policy import closed_loop
from ..lqr.riccati import optimal_gain
from ..lqr.tasks import LQRTask, TaskSet, as_batch

__all__ = ["sample_tasks", "perturb_tasks", "repair_stable", "repair_spd",
           "default_heterogeneity"]

#: Most tasks one call may build (tasks are built one by one in Python, ~0.1 ms each).
MAX_TASKS = 100_000
#: Default relative perturbation of :func:`perturb_tasks`: each perturbed matrix ``X`` gets
#: i.i.d. noise of standard deviation ``RELATIVE_SCALE * margin * rms(X)``, where ``margin``
#: is ``1 - rho(A - B K*)`` of the nominal system's optimal closed loop.
RELATIVE_SCALE = 0.1
_NAMES = ("A", "B", "Q", "R", "Psi")


def repair_stable(A: Any, max_spectral_radius: float) -> np.ndarray:
    """Scale ``A`` so that ``rho(A) <= max_spectral_radius`` (unchanged if already so).

    Parameters
    ----------
    A : array_like (d, d)
    max_spectral_radius : float in (0, 1]

    Returns
    -------
    ndarray (d, d)
    """
    A = as_float_array(A, "A", ndim=2, allow_empty=False)
    if A.shape[0] != A.shape[1]:
        raise ValidationError(f"A must be square; got shape {A.shape}.")
    r = check_real(max_spectral_radius, "max_spectral_radius", minimum=0.0, maximum=1.0,
                   min_inclusive=False)
    rho = float(spectral_radius_of(A))
    return A * (r / rho) if rho > r else A


def repair_spd(M: Any, min_eigenvalue: float) -> np.ndarray:
    """Return the nearest symmetric matrix with eigenvalues at least ``min_eigenvalue``.

    Symmetric part of ``M`` with its eigenvalues clipped below at ``min_eigenvalue`` (the
    nearest matrix, in Frobenius norm, with that property).

    Parameters
    ----------
    M : array_like (m, m)
    min_eigenvalue : float > 0

    Returns
    -------
    ndarray (m, m), symmetric positive definite
    """
    M = as_float_array(M, "M", ndim=2, allow_empty=False)
    if M.shape[0] != M.shape[1]:
        raise ValidationError(f"M must be square; got shape {M.shape}.")
    eps = check_positive(min_eigenvalue, "min_eigenvalue")
    S = 0.5 * (M + M.T)
    lam, V = np.linalg.eigh(S)
    out = (V * np.maximum(lam, eps)) @ V.T
    return 0.5 * (out + out.T)


def _check_n_tasks(n_tasks: Any, what: str) -> int:
    n = check_int(n_tasks, "n_tasks", minimum=1)
    if n > MAX_TASKS:
        raise ValidationError(
            f"n_tasks = {n} is above metalqr's limit of {MAX_TASKS} tasks per call: {what} builds "
            f"and checks tasks one by one (about 0.1 ms each, so about {n * 1e-4 / 60:.3g} minutes "
            f"here). Draw the family in chunks of at most {MAX_TASKS} tasks with independent "
            f"seeds, or use fewer tasks.")
    return n


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
       estimator of Algorithm 2 then blows up, see ``docs/meta_learning.md``); ``Q``, ``R``,
       ``Psi`` are replaced by their symmetric part with eigenvalues clipped below at
       ``min_eigenvalue`` (symmetric positive definite). ``B`` is not changed; ``Sigma0 = I``.

    Parameters
    ----------
    n_tasks : int in [1, 100000]
        Number of tasks.
    d, k : int >= 1
        State and input dimensions.
    heterogeneity : float >= 0
        Variance of each task's entries around the nominal ones.
    rng : Generator, int seed >= 0 or None
        Source of randomness (the nominal matrices, then the tasks).
    max_spectral_radius : float in (0, 1)
        Spectral radius every ``A`` is scaled down to if it exceeds it (step 3).
    min_eigenvalue : float > 0
        Floor of the eigenvalues of ``Q``, ``R``, ``Psi`` (step 3).
    return_nominal : bool
        Also return the repaired nominal task.

    Returns
    -------
    TaskSet or (TaskSet, LQRTask)
        ``n_tasks`` tasks of shapes ``A`` (d, d), ``B`` (d, k); with ``return_nominal=True``
        also the repaired nominal task.

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed argument, or a request above the size limits (``n_tasks`` > 100000, or
        more than 2**31 matrix entries).

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Section 6 (the random task families of the numerical study).
    """
    n_tasks = _check_n_tasks(n_tasks, "sample_tasks")
    d = check_int(d, "d", minimum=1)
    k = check_int(k, "k", minimum=1)
    check_size(float(n_tasks + 1) * (4.0 * d * d + d * k + k * k), "sample_tasks",
               what="float64 matrix entries", alternative="Use smaller d, k or fewer tasks.")
    h = check_positive(heterogeneity, "heterogeneity", allow_zero=True)
    r = check_real(max_spectral_radius, "max_spectral_radius", minimum=0.0, maximum=1.0,
                   min_inclusive=False, max_inclusive=False)
    eps = check_positive(min_eigenvalue, "min_eigenvalue")
    return_nominal = check_bool(return_nominal, "return_nominal")
    rng = as_rng(rng)
    nominal = {"A": rng.uniform(size=(d, d)), "B": rng.uniform(size=(d, k)),
               "Q": rng.uniform(size=(d, d)), "R": rng.uniform(size=(k, k)),
               "Psi": rng.uniform(size=(d, d))}

    def make(mats: dict) -> LQRTask:
        return LQRTask(repair_stable(mats["A"], r), mats["B"], repair_spd(mats["Q"], eps),
                       repair_spd(mats["R"], eps), Psi=repair_spd(mats["Psi"], eps))

    nominal_task = make(nominal)
    # Tasks are centred on the raw nominal draws, then repaired the same way.
    sd = np.sqrt(h)
    tasks = TaskSet([make({name: M + sd * rng.standard_normal(M.shape) for name, M in nominal.items()})
                     for _ in range(n_tasks)])
    return (tasks, nominal_task) if return_nominal else tasks


def _nominal_margin(nominal: LQRTask) -> float:
    K_star, _ = optimal_gain(nominal)
    rho = float(spectral_radius_of(closed_loop(as_batch(nominal), K_star[None]))[0])
    return max(0.0, 1.0 - rho)


def default_heterogeneity(nominal: LQRTask, perturb: Iterable[str] = ("A", "B")) -> dict:
    """Per-matrix standard deviations that :func:`perturb_tasks` uses by default.

    ``sd_X = RELATIVE_SCALE * margin * rms(X)`` for each perturbed matrix ``X``, with
    ``rms(X) = ||X||_F / sqrt(size of X)`` and ``margin = 1 - rho(A - B K*)`` of the
    nominal optimal closed loop: the family's spread is relative to the system's own scale
    and to how far its closed loop is from instability.

    Parameters
    ----------
    nominal : LQRTask
        The user's system.
    perturb : iterable of str
        Names of the perturbed matrices (any of ``"A", "B", "Q", "R", "Psi"``).

    Returns
    -------
    dict
        ``{name: standard deviation}`` for the names in ``perturb``.

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed task or ``perturb`` (unknown matrix names are listed).
    """
    if not isinstance(nominal, LQRTask):
        raise ValidationTypeError(f"nominal must be an LQRTask; got {type(nominal).__name__}.")
    names = _check_perturb(perturb)
    margin = _nominal_margin(nominal)
    out = {}
    for name in names:
        X = np.asarray(getattr(nominal, name))
        out[name] = RELATIVE_SCALE * margin * float(np.linalg.norm(X)) / math.sqrt(X.size)
    return out


def _check_perturb(perturb: Any) -> tuple[str, ...]:
    if isinstance(perturb, str):
        hint = f" Pass ({perturb!r},)." if perturb in _NAMES else ""
        raise ValidationTypeError(f"perturb must be a tuple of matrix names such as ('A', 'B'), "
                                  f"not a string {perturb!r}.{hint}")
    try:
        names = tuple(perturb)
    except TypeError:
        raise ValidationTypeError(f"perturb must be a tuple of matrix names (any of "
                                  f"{', '.join(_NAMES)}); got {type(perturb).__name__}.") from None
    bad = [n for n in names if not isinstance(n, str) or n not in _NAMES]
    if bad:
        raise ValidationError(f"perturb may name only {', '.join(_NAMES)}; got {bad}.")
    if not names:
        raise ValidationError("perturb must name at least one matrix (e.g. ('A', 'B')); an empty "
                              "perturb makes every task equal to the nominal one.")
    if len(set(names)) != len(names):
        raise ValidationError(f"perturb names a matrix twice: {list(names)}.")
    return names


def _has_common_gain(tasks: TaskSet) -> bool:
    from .objective import common_stabilizing_gain
    try:
        common_stabilizing_gain(tasks)
        return True
    except (NotMetaLearnableError, ValidationError):
        return False


def perturb_tasks(nominal: LQRTask, n_tasks: int, *, heterogeneity: float | None = None,
                  rng: Any = None, perturb: Iterable[str] = ("A", "B"),
                  min_eigenvalue: float = 1e-3, max_spectral_radius: float | None = None,
                  require_common_gain: bool = True) -> TaskSet:
    """Return a family of tasks around a user's own system (e.g. :func:`metalqr.boeing747`).

    Each task adds i.i.d. Gaussian noise to the entries of the matrices named in
    ``perturb`` (any of ``"A", "B", "Q", "R", "Psi"``). Perturbed weights are repaired to
    symmetric positive definite as in :func:`sample_tasks`; ``A`` is rescaled only if
    ``max_spectral_radius`` is given (open-loop unstable families are allowed: they need a
    common stabilising gain, see :func:`metalqr.common_stabilizing_gain`).

    Parameters
    ----------
    nominal : LQRTask
        The user's system, the centre of the family.
    n_tasks : int in [1, 100000]
        Number of tasks.
    heterogeneity : float >= 0 or None
        Variance of the noise added to every perturbed entry (absolute). ``None``
        (default): relative to the system's scale, see :func:`default_heterogeneity`
        (standard deviation ``0.1 * (1 - rho(A - B K*)) * rms(X)`` for each matrix ``X``).
    rng : Generator, int seed >= 0 or None
        Source of the noise.
    perturb : tuple of str
        Names of the matrices to perturb (default ``("A", "B")``).
    min_eigenvalue : float > 0
        Floor of the eigenvalues of perturbed ``Q``, ``R``, ``Psi``.
    max_spectral_radius : float in (0, 1), optional
        Rescale each perturbed ``A`` to at most this spectral radius.
    require_common_gain : bool
        Refuse a family without a common stabilising gain (default True).

    Returns
    -------
    TaskSet
        ``n_tasks`` tasks with the nominal task's shapes.

    Raises
    ------
    NotMetaLearnableError
        If ``require_common_gain`` and :func:`metalqr.common_stabilizing_gain` finds no
        gain that stabilises every task; the message suggests a heterogeneity that works
        for these draws (found by bisection on the noise scale).
    ValidationError, ValidationTypeError
        A malformed argument.
    """
    if not isinstance(nominal, LQRTask):
        raise ValidationTypeError(f"nominal must be an LQRTask; got {type(nominal).__name__}. "
                                  f"Build one with metalqr.LQRTask(A, B, Q, R) or "
                                  f"LQRTask.from_statespace(sys, Q, R).")
    n_tasks = _check_n_tasks(n_tasks, "perturb_tasks")
    names = _check_perturb(perturb)
    eps = check_positive(min_eigenvalue, "min_eigenvalue")
    if max_spectral_radius is not None:
        max_spectral_radius = check_real(max_spectral_radius, "max_spectral_radius", minimum=0.0,
                                         maximum=1.0, min_inclusive=False, max_inclusive=False)
    require_common_gain = check_bool(require_common_gain, "require_common_gain")
    if heterogeneity is None:
        sd = default_heterogeneity(nominal, names)
    else:
        s = math.sqrt(check_positive(heterogeneity, "heterogeneity", allow_zero=True))
        sd = {name: s for name in names}
    d, k = nominal.d, nominal.k
    check_size(float(n_tasks) * (4.0 * d * d + d * k + k * k), "perturb_tasks",
               what="float64 matrix entries", alternative="Use fewer tasks.")
    rng = as_rng(rng)
    base = {name: np.array(getattr(nominal, name)) for name in _NAMES}
    Z = [{name: rng.standard_normal(base[name].shape) for name in names} for _ in range(n_tasks)]

    def build(scale: float) -> TaskSet:
        tasks = []
        for z in Z:
            mats = dict(base)
            for name in names:
                mats[name] = base[name] + (scale * sd[name]) * z[name]
                if name in ("Q", "R", "Psi"):
                    mats[name] = repair_spd(mats[name], eps)
            if max_spectral_radius is not None:
                mats["A"] = repair_stable(mats["A"], max_spectral_radius)
            tasks.append(LQRTask(mats["A"], mats["B"], mats["Q"], mats["R"], Psi=mats["Psi"],
                                 Sigma0=nominal.Sigma0))
        return TaskSet(tasks)

    tasks = build(1.0)
    if require_common_gain and not _has_common_gain(tasks):
        lo, hi = 0.0, 1.0
        if not _has_common_gain(build(0.0)):
            raise NotMetaLearnableError(
                "perturb_tasks: even the unperturbed nominal system has no stabilising gain "
                "among 0 and K*; check the nominal system (is (A, B) stabilisable?).")
        for _ in range(12):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _has_common_gain(build(mid)) else (lo, mid)
        works = (0.5 * lo * max(sd.values())) ** 2
        given = "the default (relative) heterogeneity" if heterogeneity is None else \
            f"heterogeneity = {heterogeneity:g}"
        raise NotMetaLearnableError(
            f"perturb_tasks: with {given} the {n_tasks} tasks share no stabilising gain (no "
            f"candidate among 0, the tasks' optimal gains and their mean stabilises every task), "
            f"so the family cannot be meta-learned. For these draws the family is meta-learnable "
            f"up to {lo:.3g} times that spread; try heterogeneity={works:.3g} (half of it, as a "
            f"variance), or pass require_common_gain=False to keep the family anyway.")
    return tasks
