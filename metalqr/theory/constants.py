"""Problem-dependent constants of the ZO-MAML paper's lemmas, evaluated on a TaskSet.

Notation (Appendix A of the ZO-MAML paper): for tasks ``i``, ``J_max(K) = max_i J_i(K)``,
``J_min = min_i J_i(K_i*)``, ``mu = min_i sigma_min(Psi_i)`` (in the ergodic setting
``Sigma_K >= Psi``, which plays the role of ``sigma_min(Sigma_0)`` in Fazel et al. 2018),
``||X||_max = max_i ||X_i||`` (spectral norms), ``sigma_Q = min_i sigma_min(Q_i)``.

Each constant is implemented as printed in the paper ("paper") and, where the printed
formula is not a valid bound, in a corrected form ("corrected", the default) derived here
and stated in the docstring. ``tests/test_theory.py`` property-tests every inequality.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._validation import (as_float_array, check_choice, check_int, check_positive, check_probability,
                           check_real)
from ..exceptions import ValidationError, ValidationTypeError
from ..lqr.policy import check_gain, evaluate_batch
from ..lqr.riccati import optimal_gain
from ..lqr.tasks import as_batch
from ..meta.objective import as_taskset

__all__ = ["VARIANTS", "TaskConstants", "task_constants", "h_G", "h_c", "h_H", "h_Delta", "h_cost", "h_grad",
           "cost_lipschitz", "h_hess", "h_L_grad", "h_sample_task", "h_r2", "rollout_length_meta",
           "rollout_length_variance",
           "gradient_domination_lambda", "h_G_meta", "h_cost_meta", "bernstein_samples",
           "rollout_length_bound"]

Variant = Literal["corrected", "paper"]

#: Valid values of every ``variant=`` argument of :mod:`metalqr.theory`.
VARIANTS = ("corrected", "paper")

_SCALARS = ("J_max", "J_min", "mu", "sigma_Q", "sigma_R", "norm_A", "norm_B", "norm_R", "norm_Q_min",
            "norm_Q", "norm_AK", "norm_K", "norm_K_F", "RBPB", "BPA_F", "trace_Psi", "trace_R",
            "norm_Sigma0", "trace_Sigma0", "norm_AK_F")
#: Fields that the lemmas divide by: they must be > 0 (the others >= 0).
_DIVISORS = ("J_max", "J_min", "mu", "sigma_Q", "sigma_R", "norm_Q_min", "norm_Q", "trace_Psi")


def _guarded(fn):
    """Report float over/underflow inside a constant as a named error.

    Report float over/underflow inside a constant (``x / eps**2`` with a tiny ``eps``...) as a
    named :class:`~metalqr.ValidationError`, never a raw ZeroDivisionError/OverflowError.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ZeroDivisionError, OverflowError) as exc:
            raise ValidationError(
                f"{fn.__name__}: the result over- or underflows float64 ({exc}); an accuracy argument "
                f"(epsilon, delta, radius) is too small or the tasks too badly conditioned for a "
                f"representable bound.") from None
    return wrapper


@dataclass(frozen=True)
class TaskConstants:  # numpydoc ignore=PR01
    """Quantities of a TaskSet at a gain ``K`` that the lemmas' polynomials are built from.

    Norms are spectral unless marked ``_F`` (Frobenius); ``max`` / ``min`` run over the tasks.

    Attributes
    ----------
    J, J_star : (n,) ndarray
        Costs ``J_i(K)`` and optimal costs ``J_i(K_i*)``.
    J_max, J_min : float
        Largest and smallest ``J_i(K)``.
    mu : float
        ``min_i sigma_min(Psi_i)``.
    sigma_Q, sigma_R : float
        ``min_i sigma_min(Q_i)`` and ``min_i sigma_min(R_i)``.
    norm_A, norm_B, norm_R, norm_Q : float
        ``max_i ||A_i||``, ``max_i ||B_i||``, ``max_i ||R_i||``, ``max_i ||Q_i||``.
    norm_Q_min : float
        ``min_i ||Q_i||``.
    norm_AK : float
        ``max_i ||A_i - B_i K||``.
    norm_K, norm_K_F : float
        ``||K||`` and ``||K||_F``.
    RBPB : float
        ``max_i ||R_i + B_i'P_i B_i||``.
    BPA_F : float
        ``max_i ||B_i'P_i A_i||_F``.
    trace_Psi, trace_R, trace_Sigma0 : float
        ``max_i Tr(Psi_i)``, ``max_i Tr(R_i)``, ``max_i Tr(Sigma0_i)``.
    norm_Sigma0 : float
        ``max_i ||Sigma0_i||``.
    norm_AK_F : float
        ``max_i ||A_i - B_i K||_F``.
    Sigma_star : (n,) ndarray
        ``||Sigma_{K_i*}||`` per task.
    d, k : int
        State and input dimensions.

    Raises
    ------
    ValidationError
        A malformed field (hand-built objects are checked too).
    """

    J: np.ndarray            # J_i(K), (n,)
    J_star: np.ndarray       # J_i(K_i*), (n,)
    J_max: float
    J_min: float
    mu: float
    sigma_Q: float           # min_i sigma_min(Q_i)
    sigma_R: float           # min_i sigma_min(R_i)
    norm_A: float            # ||A||_max
    norm_B: float            # ||B||_max
    norm_R: float            # ||R||_max
    norm_Q_min: float        # ||Q||_min = min_i ||Q_i||
    norm_Q: float            # ||Q||_max
    norm_AK: float           # ||A - B K||_max
    norm_K: float            # ||K|| (spectral)
    norm_K_F: float          # ||K||_F
    RBPB: float              # max_i ||R_i + B_i'P_i B_i||
    BPA_F: float             # max_i ||B_i'P_i A_i||_F
    trace_Psi: float         # max_i Tr(Psi_i)
    trace_R: float           # max_i Tr(R_i)
    norm_Sigma0: float       # max_i ||Sigma0_i||
    trace_Sigma0: float      # max_i Tr(Sigma0_i)
    norm_AK_F: float         # max_i ||A_i - B_i K||_F
    Sigma_star: np.ndarray   # ||Sigma_{K_i*}|| per task
    d: int
    k: int

    def __post_init__(self) -> None:
        """Validate the fields of the task constants.

        Validate the fields (they are normally filled by :func:`task_constants` or
        :func:`~metalqr.theory.sublevel_constants`; hand-built objects are checked too).

        Raises
        ------
        ValidationError
            If a field is non-finite, negative, or zero where the lemmas divide by it
            (``mu``, ``sigma_Q``, ``sigma_R``, ``norm_B``, ...), or the per-task arrays
            disagree in length.
        """
        d = check_int(self.d, "TaskConstants.d", minimum=1)
        k = check_int(self.k, "TaskConstants.k", minimum=1)
        arrays = {}
        for name in ("J", "J_star", "Sigma_star"):
            arr = as_float_array(getattr(self, name), f"TaskConstants.{name}", ndim=1, allow_empty=False)
            if np.any(arr <= 0):
                raise ValidationError(f"TaskConstants.{name} must be > 0 for every task; got "
                                      f"{np.array2string(arr, precision=3)}.")
            arrays[name] = arr
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise ValidationError("TaskConstants.J, J_star and Sigma_star must have one entry per task; "
                                  f"got lengths {[len(a) for a in arrays.values()]}.")
        for name in _SCALARS:
            check_real(getattr(self, name), f"TaskConstants.{name}", minimum=0.0,
                       min_inclusive=name not in _DIVISORS)
        for name, arr in arrays.items():
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "d", d)
        object.__setattr__(self, "k", k)


@_guarded
def task_constants(tasks: Any, K: Any) -> TaskConstants:
    """Evaluate the building blocks of the lemmas' constants at a common gain.

    Evaluate the building blocks of the lemmas' constants at a common gain ``K`` (Appendix A of
    the ZO-MAML paper).

    Parameters
    ----------
    tasks : TaskSet or LQRTask
        The task family; every ``Q_i`` and ``Psi_i`` must be positive definite.
    K : array_like, shape (k, d)
        One gain shared by all tasks, stabilising every task.

    Returns
    -------
    TaskConstants
        The quantities at ``K``.

    Raises
    ------
    ValidationError
        If ``tasks`` is not a TaskSet/LQRTask, ``K`` has the wrong shape/dtype or is
        non-finite, some ``Q_i`` or ``Psi_i`` is only semidefinite (the lemmas divide by
        ``sigma_min(Q)`` through ``||Sigma_K|| <= J(K) / sigma_min(Q)`` and by
        ``mu = sigma_min(Psi)``: with a singular one the constants are infinite).
    UnstablePolicyError
        If ``K`` does not stabilise some task.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Appendix A (the quantities the constants of Lemmas 1-5
    and 8-14 are built from).
    """
    ts = as_taskset(tasks)
    batch = as_batch(ts)
    Kb = _common_gain(ts, K, "K")
    _check_definite(batch)
    ev = evaluate_batch(batch, check_gain(batch, Kb), "task_constants")
    K_star, _ = optimal_gain(ts)
    ev_star = evaluate_batch(batch, check_gain(batch, K_star), "task_constants")
    J = np.einsum("nij,nji->n", ev.P, batch.Psi)
    J_star = np.einsum("nij,nji->n", ev_star.P, batch.Psi)
    spec = lambda X: np.linalg.norm(X, 2, axis=(-2, -1))
    K0 = np.asarray(Kb[0])
    return TaskConstants(
        J=J, J_star=J_star, J_max=float(J.max()), J_min=float(J_star.min()),
        mu=float(np.min(np.linalg.eigvalsh(batch.Psi))),
        sigma_Q=float(np.min(np.linalg.eigvalsh(batch.Q))), sigma_R=float(np.min(np.linalg.eigvalsh(batch.R))),
        norm_A=float(spec(batch.A).max()), norm_B=float(spec(batch.B).max()), norm_R=float(spec(batch.R).max()),
        norm_Q_min=float(spec(batch.Q).min()), norm_Q=float(spec(batch.Q).max()),
        norm_AK=float(spec(ev.AK).max()), norm_K=float(np.linalg.norm(K0, 2)),
        norm_K_F=float(np.linalg.norm(K0)), RBPB=float(spec(ev.RBPB).max()),
        BPA_F=float(np.linalg.norm(np.swapaxes(batch.B, -1, -2) @ ev.P @ batch.A, axis=(-2, -1)).max()),
        trace_Psi=float(np.trace(batch.Psi, axis1=-2, axis2=-1).max()),
        trace_R=float(np.trace(batch.R, axis1=-2, axis2=-1).max()),
        norm_Sigma0=float(spec(batch.Sigma0).max()),
        trace_Sigma0=float(np.trace(batch.Sigma0, axis1=-2, axis2=-1).max()),
        norm_AK_F=float(np.linalg.norm(ev.AK, axis=(-2, -1)).max()),
        Sigma_star=spec(ev_star.Sigma), d=ts.d, k=ts.k)


def _common_gain(ts, K: Any, name: str) -> np.ndarray:
    """Validate one gain shared by all tasks.

    Validate one gain of shape (k, d) shared by all tasks (per-task gains are refused: the
    constants are stated for a single meta-policy ``K``).
    """
    arr = as_float_array(K, name)
    if arr.ndim == 3:
        raise ValidationError(f"{name} must be one gain of shape (k, d) = ({ts.k}, {ts.d}) shared by all "
                              f"tasks; got per-task gains of shape {arr.shape}.")
    return check_gain(as_batch(ts), arr, name)


def _check_definite(batch) -> None:
    """Check the quantities the lemmas divide by: ``sigma_min(Q_i)``, ``sigma_min(Psi_i)`` and ``||B||``."""
    for name in ("Q", "Psi"):
        lo = np.linalg.eigvalsh(getattr(batch, name))[:, 0]
        bad = np.flatnonzero(lo <= 0.0)
        if bad.size:
            i = int(bad[0])
            role = ("||Sigma_K|| <= J(K) / sigma_min(Q)" if name == "Q"
                    else "mu = min_i sigma_min(Psi_i), Sigma_K >= Psi")
            raise ValidationError(
                f"{name} of task {i} is singular (smallest eigenvalue {lo[i]:.3g}), but the ZO-MAML "
                f"lemmas' constants need every {name}_i positive definite: they divide by it ({role}), "
                f"so they would be infinite. Add a small multiple of the identity to {name}.")


def _tc(c: Any, name: str = "c") -> "TaskConstants":
    if not isinstance(c, TaskConstants):
        raise ValidationTypeError(f"{name} must be a TaskConstants (from metalqr.theory.task_constants or "
                                  f"sublevel_constants); got {type(c).__name__}.")
    return c


def _variant(variant: Any) -> str:
    return check_choice(variant, "variant", VARIANTS)


def _eta(eta: Any) -> float:
    return check_positive(eta, "eta", allow_zero=True)


def _hH(h_H_value: Any) -> float:
    return check_positive(h_H_value, "h_H_value", allow_zero=True)


def _count(m: float, name: str, culprit: str) -> int:
    """Return a sample count: at least 1, an overflow reported (``int(inf)`` raises OverflowError)."""
    if not math.isfinite(m):
        raise ValidationError(f"{name}: the sample count overflows float64 ({m!r}); {culprit} is too small "
                              f"(or the variance bound too large) for a representable count.")
    return max(int(math.ceil(m)), 1)


def _out(value: float, name: str, allow_zero: bool = False) -> float:
    """Check that every constant is finite and positive.

    Every constant is finite and > 0 for valid input (``h_G``, ``h_c`` may be exactly 0 at a
    common optimum); an overflow or underflow is reported, not returned.
    """
    if value == 0 and not allow_zero:
        raise ValidationError(
            f"{name} underflows to 0 on these tasks (the bound is astronomically small: badly conditioned "
            f"weights or huge costs). Rescale the tasks or use a gain with a smaller cost.")
    if not math.isfinite(value):
        raise ValidationError(
            f"{name} overflows float64 ({value!r}) on these tasks: the bound is astronomically large "
            f"(badly conditioned weights, sigma_min(Q) or sigma_min(Psi) tiny, or J_max huge). Rescale "
            f"the tasks or use a gain with a smaller cost.")
    if value < 0:  # pragma: no cover - guarded by construction
        raise ValidationError(f"{name} came out negative ({value!r}); please report this as a bug.")
    return value


def _h0(c: TaskConstants) -> float:
    """Bound ``||E_K^i||_F`` by gradient domination (Lemma 3).

    Bound on ``||E_K^i||_F``: by the lower gradient-domination bound (Lemma 3), ``Tr(E'E) <= ||R
    + B'PB|| (J_i(K) - J_i*) / mu <= ||R + B'PB||_max (J_max - J_min) / mu``.
    """
    return math.sqrt(max(c.RBPB * (c.J_max - c.J_min), 0.0) / c.mu)


@_guarded
def h_G(c: TaskConstants, variant: Variant = "corrected") -> float:
    """Lemma 1/8: ``||grad J_i(K)||_F <= h_G(K)``.

    Paper: ``J_max h_0 / sigma_Q`` with ``h_0`` from ``_h0``. Corrected: twice that,
    because ``grad J = 2 E Sigma`` gives ``||grad J||_F <= 2 ||E||_F ||Sigma||`` and
    ``||Sigma_K|| <= J(K) / sigma_min(Q)``; the printed version drops the 2 of Eq. (2).

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    variant : {"corrected", "paper"}
        Derived valid bound (default) or the formula as printed.

    Returns
    -------
    float
        Bound ``>= 0`` (0 exactly at a common optimum).

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, or ``variant`` is not a valid name, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 1 and 8, and Eq. (2).
    """
    c, variant = _tc(c), _variant(variant)
    base = c.J_max * _h0(c) / c.sigma_Q
    return _out(2.0 * base if variant == "corrected" else base, "h_G", allow_zero=True)


@_guarded
def h_c(c: TaskConstants) -> float:
    """Return the gain norm bound of Lemmas 1 and 8.

    Lemma 1/8: ``||K||_F <= h_c(K) = (h_0 + ||B'PA||_F,max) / sigma_min(R)`` from ``K = (R +
    B'PB)^{-1} (E + B'PA)`` (Frobenius norm of ``B'PA``, so the bound holds for ``||K||_F``; the
    paper's ``||.||_max`` is ambiguous).

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).

    Returns
    -------
    float
        Bound ``>= 0`` on ``||K||_F``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 1 and 8.
    """
    c = _tc(c)
    return _out((_h0(c) + c.BPA_F) / c.sigma_R, "h_c", allow_zero=True)


@_guarded
def h_H(c: TaskConstants, J_max_K0: float, variant: Variant = "corrected") -> float:
    """Lemma 1/8: ``||Hess J_i(K)||_F <= h_H(K)`` (Hessian as a ``dk x dk`` matrix).

    Paper (after Bu et al. 2019, Lemma 7.9):
    ``(2||R|| + 2||B|| J_max/mu + 4 sqrt(2) xi ||B|| J_max/mu) J_max k / ||Q||_min`` with
    ``xi = ((1 + ||B||^2) J_max(K0)/mu + ||R|| - 1) / ||Q||_min``. It is **not** a valid bound:
    the ``- 1`` is not scale-invariant, so for small weights (``||R|| < 1``, ``J/mu`` small)
    ``xi`` and then ``h_H`` became negative, and even with ``xi`` clipped at 0 (as done here
    so that no negative number is returned) the Hessian exceeds it (e.g. ``A = 0.9, B = 1,
    Q = R = 1e-3``: ``||Hess|| = 1.01 > 0.066``; kept in ``tests/test_theory.py``).

    Corrected (derived here, the default), from the exact Hessian-vector product
    ``H[X] = 2 (G X - B' P~_X A_K) Sigma + 2 E Sigma~_X`` (see :func:`h_hess` for the notation
    and the bounds ``||T(M)|| <= ||M|| ||Sigma|| / mu``, ``||T*(M)|| <= ||M|| ||P|| / sigma_Q``):
    for ``||X||_F = 1``, ``||H[X]||_2 <= 2 (g + b a Z) s + 2 e W`` with ``g = ||R + B'PB||``,
    ``b = ||B||``, ``a = ||A - BK||``, ``s = J_max / sigma_Q >= ||Sigma||``, ``p = J_max / mu >= ||P||``,
    ``e = h_0 >= ||E||_F`` (Lemma 3), ``Z = 2 e p / sigma_Q``, ``W = 2 b a s^2 / mu``; then
    ``sqrt(min(d, k))`` gives the Frobenius norm of ``H[X]`` and ``sqrt(dk)`` the Frobenius
    norm of the ``dk x dk`` matrix. It is increasing in every building block, so it gives the
    supremum over a sub-level set when evaluated on :func:`~metalqr.theory.sublevel_constants`.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (or suprema from :func:`~metalqr.theory.sublevel_constants`).
    J_max_K0 : float > 0
        ``J_max`` at the initial gain ``K0`` (``c.J_max`` when ``K = K0``); used by the
        printed form only (validated in both).
    variant : {"corrected", "paper"}

    Returns
    -------
    float
        A finite constant ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``J_max_K0`` is not a finite positive number, or
        ``variant`` is not a valid name.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 1 and 8 (and their use in Lemma 7).
    """
    c, variant = _tc(c), _variant(variant)
    J_max_K0 = check_positive(J_max_K0, "J_max_K0")
    if variant == "paper":
        xi = max(((1 + c.norm_B**2) * J_max_K0 / c.mu + c.norm_R - 1.0) / c.norm_Q_min, 0.0)
        return _out((2 * c.norm_R + 2 * c.norm_B * c.J_max / c.mu
                     + 4 * math.sqrt(2) * xi * c.norm_B * c.J_max / c.mu) * c.J_max * c.k / c.norm_Q_min, "h_H")
    g, b, a, e = c.RBPB, c.norm_B, c.norm_AK, _h0(c)
    s, p = c.J_max / c.sigma_Q, c.J_max / c.mu
    Z = 2 * e * p / c.sigma_Q
    W = 2 * b * a * s * s / c.mu
    op = 2 * (g + b * a * Z) * s + 2 * e * W
    return _out(math.sqrt(c.d * c.k) * math.sqrt(min(c.d, c.k)) * op, "h_H")


@_guarded
def h_Delta(c: TaskConstants) -> float:
    """Return the perturbation radius of Lemmas 2 and 9.

    Lemma 2/9 radius: ``sigma_Q mu / (4 ||B|| J_max (||A - BK|| + 1))`` (Fazel et al. 2018,
    Lemma 16, with ``C(K) -> J_max``). The paper prints ``max_i sigma_min(Q_i)`` in the
    numerator, which is not conservative for heterogeneous tasks; this uses the min.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).

    Returns
    -------
    float
        Radius ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, if every ``B_i`` is zero, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 2 and 9; Fazel et al. (2018), Lemma 16.
    """
    c = _tc(c)
    if c.norm_B == 0:
        raise ValidationError("h_Delta is undefined: B is zero in every task, so the radius "
                              "sigma_Q mu / (4 ||B|| J_max (||A - BK|| + 1)) divides by ||B|| = 0 (any "
                              "perturbation of K keeps the closed loop; the constants built on h_Delta "
                              "do not apply).")
    return _out(c.sigma_Q * c.mu / (4.0 * c.norm_B * c.J_max * (c.norm_AK + 1.0)), "h_Delta")


def _nu(c: TaskConstants) -> float:
    return c.J_max / (c.sigma_Q * c.mu)


@_guarded
def h_cost(c: TaskConstants, variant: Variant = "corrected") -> float:
    """Lemma 2/9: ``|J_i(K') - J_i(K)| <= h_cost J_i(K) ||K' - K||_F`` for ``||K' - K|| <= h_Delta``.

    Paper (with ``Tr(Sigma_0) -> max_i Tr(Psi_i)``):
    ``4 Tr(Psi) J_max ||R|| / (mu sigma_Q) (||K|| + h_Delta/2 + ||B|| ||K||^2 (||A-BK||+1) nu)``.
    It is **not** a valid bound: random tasks violate it by factors up to ~300
    (``tests/test_theory.py`` keeps a counterexample).

    Corrected (derived here): by the performance-difference identity
    ``J(K') - J(K) = Tr(Sigma_K' (2 D'E + D'(R + B'PB) D))`` with ``D = K' - K``, and
    ``||Sigma_K'|| <= 2 J_max / sigma_Q`` inside the ``h_Delta`` ball (Fazel et al. 2018,
    Lemma 16, ergodic form), ``|J' - J| <= (2 J_max/sigma_Q)(2 h_0 + ||R + B'PB||_max h_Delta) ||D||_F``;
    dividing by ``min_i J_i(K)`` gives the relative constant of the lemma's form.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    variant : {"corrected", "paper"}
        Derived valid bound (default) or the formula as printed.

    Returns
    -------
    float
        Relative constant ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, or ``variant`` is not a valid name, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 2 and 9; Fazel et al. (2018), Lemma 16.
    """
    c, variant = _tc(c), _variant(variant)
    hD = h_Delta(c)
    if variant == "paper":
        return _out(4 * c.trace_Psi * c.J_max * c.norm_R / (c.mu * c.sigma_Q)
                    * (c.norm_K + hD / 2 + c.norm_B * c.norm_K**2 * (c.norm_AK + 1) * _nu(c)), "h_cost")
    return _out(cost_lipschitz(c) / float(np.min(c.J)), "h_cost")


@_guarded
def cost_lipschitz(c: TaskConstants) -> float:
    """Return the Lipschitz constant of every cost on the ``h_Delta`` ball.

    Absolute Lipschitz constant of every ``J_i`` on the ``h_Delta`` ball around ``K`` (see
    :func:`h_cost`): ``(2 J_max / sigma_Q)(2 h_0 + ||R + B'PB||_max h_Delta)``.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).

    Returns
    -------
    float
        Absolute constant ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, or the value over/underflows float64.
    """
    c = _tc(c)
    return _out((2 * c.J_max / c.sigma_Q) * (2 * _h0(c) + c.RBPB * h_Delta(c)), "cost_lipschitz")


@_guarded
def h_grad(c: TaskConstants) -> float:
    """Lemma 2/9 (as printed): ``||grad J_i(K') - grad J_i(K)||_F <= h_grad ||K' - K||_F``.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).

    Returns
    -------
    float
        Constant ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 2 and 9.
    """
    c = _tc(c)
    r = c.J_max / c.sigma_Q
    first = 4 * r * (c.norm_R + c.norm_B * (c.norm_A + c.norm_B * (c.norm_K + h_Delta(c)))
                     * (h_cost(c, "paper") * c.J_max / c.trace_Psi) + c.norm_B**2 * c.J_max / c.mu)
    return _out(first + 8 * r**2 * (c.norm_B * (c.norm_AK + 1) / c.mu) * _h0(c), "h_grad")


def _ball_bounds(c: TaskConstants) -> dict:
    """Bound the quantities on the ``h_Delta`` ball used by :func:`h_hess`.

    Suprema over the ``h_Delta`` ball around ``K`` used by :func:`h_hess` (all spectral norms):
    ``J <= Jb = J_max + cost_lipschitz h_Delta``; ``||Sigma|| <= min(2 J_max, Jb) / sigma_Q``
    (Fazel et al. 2018, Lemma 16); ``||P|| <= Jb / mu``; ``||A - BK|| <= ||A - BK|| + ||B||
    h_Delta``; ``||E||_F <= sqrt(||R + B'PB|| (Jb - J_min) / mu)`` (Lemma 3).
    """
    hD = h_Delta(c)
    Jb = c.J_max + cost_lipschitz(c) * hD
    s = min(2 * c.J_max, Jb) / c.sigma_Q
    p = Jb / c.mu
    g = c.norm_R + c.norm_B**2 * p
    return dict(b=c.norm_B, s=s, p=p, g=g, a=c.norm_AK + c.norm_B * hD,
                e=math.sqrt(max(g * (Jb - c.J_min), 0.0) / c.mu), st=s / c.mu, pt=p / c.sigma_Q)


@_guarded
def h_hess(c: TaskConstants, variant: Variant = "corrected") -> float:
    """Return the Hessian Lipschitz constant of Lemmas 2 and 9.

    Lemma 2/9: ``||Hess J_i(K') - Hess J_i(K)||_F <= h_hess ||K' - K||_F`` for ``||K' - K||_F <=
    h_Delta`` (Hessians as ``dk x dk`` matrices).

    Paper: ``2 (h_1 + 2 h_2)`` with the ``h_1..h_9`` of Appendix A, which use ``mu~`` without
    defining it; here ``mu~ := J_max / sigma_Q`` (the bound on ``||Sigma_K||``), ``Tr(A - BK)``
    is read as ``sqrt(d) ||A - BK||_F`` and ``||K||_max`` as ``||K||``. Reported, not relied on.

    Corrected (derived here, the default): bound the third derivative along the segment.
    The true Hessian-vector product (see :func:`metalqr.hessian_vp`) is
    ``H[X] = 2 (G X - B' P~_X A_K) Sigma + 2 E Sigma~_X`` with ``G = R + B'PB``,
    ``P~_X = T*(X'E + E'X)``, ``Sigma~_X = T(-B X Sigma A_K' - A_K Sigma X'B')``,
    ``T(M) = sum_t A_K^t M A_K'^t`` and ``T*`` its adjoint. For symmetric ``M``,
    ``||T(M)|| <= ||M|| ||Sigma|| / mu`` and ``||T*(M)|| <= ||M|| ||P|| / sigma_Q``. Differentiating
    every factor along a unit direction ``Y`` (``dA_K = -B Y``) and bounding with the ball suprema
    of ``_ball_bounds`` bounds ``||dH[X]||_2`` for unit ``X``; ``sqrt(min(d,k))`` converts it to
    Frobenius and ``sqrt(dk)`` the operator norm to the Frobenius norm of the ``dk x dk`` matrix.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    variant : {"corrected", "paper"}
        Derived valid bound (default) or the formula as printed.

    Returns
    -------
    float
        Constant ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, or ``variant`` is not a valid name, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 2 and 9 and Appendix A.
    """
    c, variant = _tc(c), _variant(variant)
    if variant == "paper":
        return _out(_h_hess_paper(c), "h_hess")
    q = _ball_bounds(c)
    b, s, a, e, g, st, pt = q["b"], q["s"], q["a"], q["e"], q["g"], q["st"], q["pt"]
    dP = pt * 2 * e                                  # ||P'|| = ||T*(Y'E + E'Y)||
    dS = st * 2 * b * s * a                          # ||Sigma'||
    dE = g + b * dP * a                              # ||E'|| = ||G Y - B'P'A_K||
    Z = pt * 2 * e                                   # ||P~_X||
    dZ = pt * (2 * b * a * Z + 2 * dE)               # ||(P~_X)'||
    W = st * 2 * b * s * a                           # ||Sigma~_X||
    dW = st * (2 * b * a * W + 2 * b * dS * a + 2 * b**2 * s)
    third = (2 * (b**2 * dP + b * dZ * a + b * Z * b) * s + 2 * (g + b * Z * a) * dS
             + 2 * dE * W + 2 * e * dW)
    return _out(math.sqrt(c.d * c.k) * math.sqrt(min(c.d, c.k)) * third, "h_hess")


def _h_hess_paper(c: TaskConstants) -> float:
    r = c.J_max / c.sigma_Q
    nu = _nu(c)
    mu_t = r
    h3 = 6 * r**2 * c.norm_K**2 * c.norm_R * c.norm_B * (c.norm_AK + 1) + 6 * r * c.norm_K * c.norm_R
    h4 = 4 * r**2 * c.norm_B * (c.norm_AK + 1) / c.mu
    # The printed "- 1" makes h_6 negative for small weights; it bounds a norm, so clip at 0.
    h6 = max(math.sqrt(1 / c.sigma_Q) * (c.norm_R + (1 + c.norm_B**2) / c.mu * c.J_max) - 1, 0.0)
    h8 = c.norm_R + c.norm_B**2 * c.J_max / c.mu + (c.norm_B * c.norm_A + c.norm_B**2 * c.norm_K) * h3
    h9 = 2 * (c.norm_R * c.norm_K + c.norm_B * c.norm_AK * c.J_max / c.mu)
    h7 = 4 * (nu * h8 + 8 * nu**2 * c.norm_B * (c.norm_AK + 1) * h9)
    trR = c.trace_R
    trAK = math.sqrt(c.d) * c.norm_AK_F
    h1 = h3 * c.norm_B**2 * r + mu_t * h4 * c.norm_B * c.J_max / c.mu + h4 * trR
    h2 = c.norm_B * c.J_max * (h6 * h4 * trAK / c.mu + c.norm_B * h6 * mu_t * nu + mu_t * h7 / c.sigma_Q)
    return 2 * (h1 + 2 * h2)


@_guarded
def gradient_domination_lambda(c: TaskConstants) -> np.ndarray:
    """Return the gradient-domination constants of Lemmas 3 and 10.

    Lemma 3/10: ``lambda_i = mu^2 sigma_min(R_i) / ||Sigma_{K_i*}||`` (with the common
    ``sigma_R``), so that ``J_i(K) - J_i* <= ||grad J_i(K)||_F^2 / lambda_i``.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).

    Returns
    -------
    ndarray, shape (n,)
        ``lambda_i > 0`` per task.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 3 and 10.
    """
    c = _tc(c)
    lam = c.mu**2 * c.sigma_R / c.Sigma_star
    if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValidationError("gradient_domination_lambda underflows or overflows float64 on these tasks "
                              f"(lambda = {lam}); rescale the tasks.")
    return lam


@_guarded
def h_L_grad(c: TaskConstants, eta: float, h_H_value: float, variant: Variant = "corrected") -> float:
    """Lemma 5/12: ``||grad L(K') - grad L(K)||_F <= h_{L,grad} ||K' - K||_F``.

    Paper (definition in the statement):
    ``eta h_hess (1 + eta h_grad) h_G + (k + eta h_H) h_hess (1 + eta h_hess)``.
    The proof (Appendix A) ends with ``(k + eta h_H) h_grad (1 + eta h_grad)`` in the second
    term: the statement replaces ``h_grad`` by ``h_hess`` there. The corrected form (default)
    follows the proof, with ``1 + eta h_H`` (the operator norm of ``I - eta Hess J``) instead
    of ``k`` and the corrected ``h_G``/``h_hess``; constants must be suprema over the points
    involved (use :func:`metalqr.theory.sublevel_constants`).

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    eta : float >= 0
        Adaptation step size.
    h_H_value : float >= 0
        ``h_H`` (from :func:`h_H`, over the points involved).
    variant : {"corrected", "paper"}
        Derived valid bound (default) or the formula as printed.

    Returns
    -------
    float
        Constant ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``eta`` or ``h_H_value`` is negative or non-finite, or ``variant`` is not a valid name, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 5 and 12 and Appendix A.
    """
    c, variant, eta, h_H_value = _tc(c), _variant(variant), _eta(eta), _hH(h_H_value)
    hh, hg = h_hess(c, variant), h_grad(c)
    if variant == "paper":
        return _out(eta * hh * (1 + eta * hg) * h_G(c, "paper") + (c.k + eta * h_H_value) * hh * (1 + eta * hh),
                    "h_L_grad")
    return _out(eta * hh * (1 + eta * hg) * h_G(c) + (1 + eta * h_H_value) * hg * (1 + eta * hg), "h_L_grad")


@_guarded
def h_G_meta(c: TaskConstants, eta: float, h_H_value: float) -> float:
    """Return the meta-gradient norm bound of Lemmas 4 and 11.

    Lemma 4/11: ``||grad L(K)||_F <= (k + eta h_H)(1 + eta h_grad) h_G`` (as printed; ``k``
    stands for ``||I||``; with the corrected ``h_G``).

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    eta : float >= 0
        Adaptation step size.
    h_H_value : float >= 0
        ``h_H`` (from :func:`h_H`, over the points involved).

    Returns
    -------
    float
        Bound ``>= 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``eta`` or ``h_H_value`` is negative or non-finite, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 4 and 11.
    """
    c, eta, h_H_value = _tc(c), _eta(eta), _hH(h_H_value)
    return _out((c.k + eta * h_H_value) * (1 + eta * h_grad(c)) * h_G(c), "h_G_meta", allow_zero=True)


@_guarded
def h_cost_meta(c: TaskConstants, eta: float, variant: Variant = "corrected") -> float:
    """Lemma 5/12: ``|L(K') - L(K)| <= h_{L,cost} ||K' - K||_F``.

    Paper: ``h_cost (1 + eta h_grad)``, mixing the *relative* constant ``h_cost`` into an
    absolute bound. Corrected: ``cost_lipschitz (1 + eta h_grad)``, the chain rule through
    the adaptation ``K -> K - eta grad J_i(K)``, valid while the adapted gains stay in
    the ``h_Delta`` ball. Property-tested with sub-level-set constants
    (``tests/test_theory.py::test_lemma12_meta_objective_perturbation``).

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    eta : float >= 0
        Adaptation step size.
    variant : {"corrected", "paper"}
        Derived valid bound (default) or the formula as printed.

    Returns
    -------
    float
        Constant ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``eta`` is negative or non-finite, or ``variant`` is not a valid name, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemmas 5 and 12.
    """
    c, variant, eta = _tc(c), _variant(variant), _eta(eta)
    if variant == "paper":
        return _out(h_cost(c, "paper") * (1 + eta * h_grad(c)), "h_cost_meta")
    return _out(cost_lipschitz(c) * (1 + eta * h_grad(c)), "h_cost_meta")


@_guarded
def bernstein_samples(epsilon: float, delta: float, sigma2: float, bound: float, d1: int, d2: int) -> int:
    """Return the matrix Bernstein sample size of Lemma 13.

    Lemma 13 (matrix Bernstein, Gross 2011 as used by the paper): the number of samples ``m >= 2
    min(d1,d2)/eps^2 (sigma^2 + B eps / (3 sqrt(min(d1,d2)))) log((d1+d2)/delta)``.

    Parameters
    ----------
    epsilon : float > 0
        Accuracy of the sample mean (spectral norm).
    delta : float in (0, 1)
        Failure probability.
    sigma2 : float >= 0
        Variance proxy.
    bound : float >= 0
        Almost-sure norm bound (``sigma2`` and ``bound`` not both 0).
    d1, d2 : int >= 1
        Matrix dimensions.

    Returns
    -------
    int
        Sample count ``>= 1``.

    Raises
    ------
    ValidationError
        If an argument is out of range (``delta = 5`` used to give -91) or the count overflows.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemma 13.
    """
    epsilon = check_positive(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    sigma2 = check_positive(sigma2, "sigma2", allow_zero=True)
    bound = check_positive(bound, "bound", allow_zero=True)
    d1 = check_int(d1, "d1", minimum=1)
    d2 = check_int(d2, "d2", minimum=1)
    if sigma2 == 0 and bound == 0:
        raise ValidationError("sigma2 and bound are both 0: the matrices are almost surely zero and no "
                              "sample count is needed; pass the variance proxy and the norm bound.")
    dm = min(d1, d2)
    m = 2 * dm / epsilon**2 * (sigma2 + bound * epsilon / (3 * math.sqrt(dm))) * math.log((d1 + d2) / delta)
    return _count(m, "bernstein_samples", "epsilon")


@_guarded
def h_sample_task(epsilon: float, delta: float, c: TaskConstants, eta: float, h_H_value: float) -> int:
    """Return the task batch size of the proof of Lemma 7.

    Lemma 7 (proof, Appendix B): task batch ``|T_n| >= h_sample,task(2/eps, delta/2)`` ``= 8
    min(d,k)/eps^2 (sigma_T^2 + B_T eps / (6 sqrt(min(d,k)))) log(2 (d+k)/delta)`` with ``B_T =
    2 (1 + eta h_H) h_G`` and ``sigma_T^2 = 2 (1 + eta h_H)^2 h_G^2`` (so that the task-sampling
    error of the meta-gradient is at most ``eps/2`` w.p. ``1 - delta/2``).

    Parameters
    ----------
    epsilon : float > 0
        Accuracy.
    delta : float in (0, 1)
        Failure probability.
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    eta : float >= 0
        Adaptation step size.
    h_H_value : float >= 0
        ``h_H`` (from :func:`h_H`, over the points involved).

    Returns
    -------
    int
        Task batch size ``>= 1``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``epsilon <= 0``, ``delta`` outside (0, 1), or ``eta``/``h_H_value`` negative, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemma 7 (its proof) and Appendix B.
    """
    epsilon = check_positive(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    c, eta, h_H_value = _tc(c), _eta(eta), _hH(h_H_value)
    m = min(c.d, c.k)
    hG = h_G(c)
    BT = 2 * (1 + eta * h_H_value) * hG
    sT2 = 2 * (1 + eta * h_H_value) ** 2 * hG**2
    n = 8 * m / epsilon**2 * (sT2 + BT * epsilon / (6 * math.sqrt(m))) * math.log(2 * (c.d + c.k) / delta)
    return _count(n, "h_sample_task", "epsilon")


@_guarded
def h_r2(epsilon: float, c: TaskConstants, eta: float, h_H_value: float) -> float:
    """Return the smoothing radius of the proof of Lemma 7.

    Lemma 7 (proof): smoothing radius ``r <= h_r^2(6/eps) = eps / (6 h_{L,grad})`` making the
    meta-gradient smoothing bias at most ``eps/6``; the proof's Lipschitz constant ``eta h_hess
    h_G + (1 + eta h_H)(1 + eta h_grad) h_grad`` is the corrected :func:`h_L_grad`. The paper
    prints ``1 / (6 (...))``, dropping the ``eps`` that the proof's conclusion ``(i) <= eps/6``
    needs.

    Parameters
    ----------
    epsilon : float > 0
        Accuracy.
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    eta : float >= 0
        Adaptation step size.
    h_H_value : float >= 0
        ``h_H`` (from :func:`h_H`, over the points involved).

    Returns
    -------
    float
        Radius ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``epsilon <= 0`` or ``eta``/``h_H_value`` negative, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemma 7 (its proof).
    """
    epsilon = check_positive(epsilon, "epsilon")
    return _out(epsilon / (6 * h_L_grad(c, eta, h_H_value)), "h_r2")


@_guarded
def rollout_length_meta(c: TaskConstants, epsilon: float, radius: float) -> float:
    """Return the outer roll-out length of the proof of Lemma 7.

    Lemma 7 (proof): ``l >= h^2_{l,grad}(12/eps) = 32 d^2 k^2 J_max^2 (||Q|| + ||R|| ||K||^2) /
    (eps r mu sigma_Q^2)`` for the outer roll-outs' finite-horizon error.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    epsilon : float > 0
        Accuracy.
    radius : float > 0
        Smoothing radius ``r``.

    Returns
    -------
    float
        Roll-out length ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``epsilon <= 0`` or ``radius <= 0``, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemma 7 (its proof).
    """
    c = _tc(c)
    epsilon = check_positive(epsilon, "epsilon")
    radius = check_positive(radius, "radius")
    return _out(32 * c.d**2 * c.k**2 * c.J_max**2 * (c.norm_Q + c.norm_R * c.norm_K**2)
                / (epsilon * radius * c.mu * c.sigma_Q**2), "rollout_length_meta")


@_guarded
def rollout_length_variance(c: TaskConstants, epsilon: float, delta: float) -> float:
    """Return the roll-out length that concentrates one roll-out's cost (Lemma 6).

    Roll-out length ``l`` after which one roll-out's empirical cost is within ``epsilon`` of its
    expectation with probability ``>= 1 - delta`` (the role of ``h_{l,var}`` in Lemma 6, which
    the paper delegates to Fazel et al. 2018, Lemma 32, without a formula).

    Derived here. With all noise stacked in a standard normal ``zeta``, the empirical cost is
    a Gaussian quadratic form ``zeta' W zeta``, ``W = (1/l) sum_t Phi_t' M Phi_t >= 0``,
    ``M = Q + K'RK``. Laurent & Massart (2000, Lemma 1), with ``x = log(2/delta)``, give
    ``|zeta'W zeta - Tr W| <= 2 sqrt(x ||W|| Tr W) + 2 x ||W||`` (using
    ``||W||_F^2 <= ||W|| Tr W``). The stacked map from noise to states is block Toeplitz with
    blocks ``A_K^s L``, so ``||W|| <= ||M|| S_1^2 max(||Sigma0||, ||Psi||) / l`` with
    ``S_1 = sum_s ||A_K^s||``. From ``Sigma_K >= Psi >= mu I``,
    ``||A_K^s|| <= sqrt(kappa) (1 - 1/kappa)^{s/2}`` with ``kappa = ||Sigma_K|| / mu <= J_max / (sigma_Q mu)``,
    hence ``S_1 <= 2 kappa^{3/2}``, and ``Tr W <= J_max + ||M|| Tr(Sigma0) kappa^2``. Here
    ``||Psi|| <= J_max / sigma_Q`` (``Psi <= Sigma_K``). Solving the quadratic inequality in
    ``sqrt(||W||)`` gives ``l``.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    epsilon : float > 0
        Accuracy.
    delta : float in (0, 1)
        Failure probability.

    Returns
    -------
    float
        Roll-out length ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``epsilon <= 0`` or ``delta`` outside (0, 1), or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemma 6; Fazel et al. (2018), Lemma 32.
    """
    c = _tc(c)
    epsilon = check_positive(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    x = math.log(2.0 / delta)
    kappa = max(_nu(c), 1.0)
    normM = c.norm_Q + c.norm_R * c.norm_K**2
    S1 = 2.0 * kappa**1.5
    Cw = normM * S1**2 * max(c.norm_Sigma0, c.J_max / c.sigma_Q)
    trW = c.J_max + normM * c.trace_Sigma0 * kappa**2
    b = 2.0 * math.sqrt(x * trW)
    # largest sqrt(||W||) with 2 x a^2 + b a <= eps, in the cancellation-free form
    a = 2.0 * epsilon / (b + math.sqrt(b * b + 8.0 * x * epsilon))
    return _out(Cw / a**2, "rollout_length_variance")


@_guarded
def rollout_length_bound(c: TaskConstants, epsilon: float, which: Literal["cost", "covariance"] = "cost") -> float:
    """Return the roll-out length of Lemma 14.

    Lemma 14: roll-out length after which the finite-horizon covariance (``"covariance"``) or
    cost (``"cost"``) is within ``epsilon`` of the ergodic one: ``d J_max^2 / (eps mu
    sigma_Q^2)`` times ``(||Q|| + ||R|| ||K||^2)`` for the cost.

    Parameters
    ----------
    c : TaskConstants
        Building blocks at ``K`` (:func:`task_constants`) or suprema over a sub-level set
        (:func:`~metalqr.theory.sublevel_constants`).
    epsilon : float > 0
        Accuracy.
    which : {"cost", "covariance"}
        Which finite-horizon quantity.

    Returns
    -------
    float
        Roll-out length ``> 0``.

    Raises
    ------
    ValidationError
        If ``c`` is not a TaskConstants, ``epsilon <= 0`` or ``which`` is not a valid name, or the value over/underflows float64.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemma 14.
    """
    c = _tc(c)
    epsilon = check_positive(epsilon, "epsilon")
    which = check_choice(which, "which", ("cost", "covariance"))
    base = c.d * c.J_max**2 / (epsilon * c.mu * c.sigma_Q**2)
    return _out(base * (c.norm_Q + c.norm_R * c.norm_K**2) if which == "cost" else base, "rollout_length_bound")
