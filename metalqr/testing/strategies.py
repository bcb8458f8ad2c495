"""Hypothesis strategies for LQR tasks, stabilising gains, directions and task families.

Every strategy validates its own arguments when it is built (a malformed argument raises a
:class:`~metalqr.ValidationError` naming it at once, not at draw time) and produces only
valid inputs: each drawn task passes :class:`~metalqr.LQRTask` validation and is stabilisable
(controllable if asked), each drawn gain stabilises with the promised margin.

Shrinking. Every example is built from bounded floats and small integers whose simplest
values give the simplest system: a perturbation matrix shrinks to 0, a dimension to 1, a weight
eigenvalue to 1, a scale exponent to 0. The minimal task of :func:`lqr_tasks` is
``A = rho diag(1, ..., 1/2)`` (``rho`` at its lower end), ``B`` with a first column of ones,
``Q = R = Psi = I``; the minimal gain of :func:`stabilizing_gains` is its reference gain
(0 for an open-loop stable task, else the optimal gain ``K*``). Counterexamples found by
:func:`metalqr.testing.check_bound` are therefore small and readable.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from .._validation import as_float_array, check_choice, check_int, check_positive, check_real
from ..exceptions import MetalqrError, ValidationError
from ..lqr import LQRTask, TaskSet, cost, optimal_gain, spectral_radius
from ..meta import adapted_gains, common_stabilizing_gain, is_maml_stabilizing

__all__ = ["lqr_tasks", "stabilizing_gains", "tasks_and_gains", "directions", "task_sets",
           "meta_learnable_families", "MetaFamily", "STABILITY"]

#: Valid values of ``stability=``: open-loop spectral radius below ``stable_radius``
#: ("stable"), at least ``1 + unstable_gap`` ("unstable") or anything up to
#: ``max_spectral_radius`` ("any").
STABILITY = ("any", "stable", "unstable")

_UNIT = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
_STABLE_RADIUS = 0.95
_UNSTABLE_GAP = 0.05
_PBH_TOL = 1e-6


class MetaFamily(NamedTuple):  # numpydoc ignore=PR01
    """A meta-learnable family drawn by :func:`meta_learnable_families`.

    Attributes
    ----------
    tasks : TaskSet
        The tasks.
    K : ndarray, shape (k, d)
        A common MAML-stabilising gain for ``eta`` (Definition 1 of the ZO-MAML paper),
        with closed-loop spectral radii at most ``1 - margin`` at ``K`` and at every
        adapted gain ``K - eta grad J_i(K)``.
    eta : float
        The adaptation step size.
    """

    tasks: TaskSet
    K: np.ndarray
    eta: float


# ---------------------------------------------------------------------------- checks
def _dim(value: Any, name: str, max_name: str, max_value: int):
    """``None`` (draw 1..max) or a fixed int in [1, MAX_DIMENSION]."""
    check_int(max_value, max_name, minimum=1, maximum=MAX_DIMENSION)
    if value is None:
        return st.integers(1, max_value)
    return st.just(check_int(value, name, minimum=1, maximum=MAX_DIMENSION))


#: Largest state / input dimension a strategy draws (property tests search many examples;
#: a d = 1000 task already takes seconds to draw and check).
MAX_DIMENSION = 1000


def _stabilisable(A: np.ndarray, B: np.ndarray, controllable: bool) -> bool:
    """Run the PBH stabilisability test.

    PBH test: ``[A - lambda I, B]`` has full row rank (with a relative margin) for every
    eigenvalue (``controllable``) or every eigenvalue with ``|lambda| >= 1 - 1e-9``.
    """
    d = A.shape[0]
    scale = max(1.0, float(np.linalg.norm(A, 2)), float(np.linalg.norm(B, 2)))
    for lam in np.linalg.eigvals(A):
        if not controllable and abs(lam) < 1.0 - 1e-9:
            continue
        M = np.hstack([A - lam * np.eye(d), B.astype(complex)])
        if np.linalg.svd(M, compute_uv=False)[-1] <= _PBH_TOL * scale:
            return False
    return True


def _spd(draw, n: int, condition_number: float) -> np.ndarray:
    """Draw a symmetric positive definite matrix with a bounded condition number.

    Symmetric positive definite ``U diag(lam) U'`` with ``lam`` in ``[1, condition_number]``
    (shrink to 1) and ``U = I - 2 v v' / v'v`` a Householder reflection (``v`` entries in ``[-1,
    1]``; ``v = 0``, the shrinking target, gives ``U = I``). ``2n - 1`` draws instead of
    ``n^2``.
    """
    lam = np.ones(n)
    if condition_number > 1:
        lam = draw(hnp.arrays(np.float64, n, elements=st.floats(1.0, condition_number, allow_nan=False)))
    if n == 1:
        return lam.reshape(1, 1)
    v = draw(hnp.arrays(np.float64, n, elements=_UNIT))
    vv = float(v @ v)
    U = np.eye(n) - 2.0 * np.outer(v, v) / vv if vv > 1e-6 else np.eye(n)
    S = (U * lam) @ U.T
    return 0.5 * (S + S.T)


def _stability_range(stability: str, max_spectral_radius: float) -> tuple[float, float]:
    if stability == "stable":
        return 0.0, min(_STABLE_RADIUS, max_spectral_radius)
    if stability == "unstable":
        if max_spectral_radius < 1.0 + _UNSTABLE_GAP:
            raise ValidationError(f"max_spectral_radius must be >= {1 + _UNSTABLE_GAP:g} for "
                                  f"stability='unstable'; got {max_spectral_radius!r}.")
        return 1.0 + _UNSTABLE_GAP, max_spectral_radius
    return 0.0, max_spectral_radius


# ---------------------------------------------------------------------------- tasks
def lqr_tasks(d: int | None = None, k: int | None = None, *, max_d: int = 4, max_k: int = 2,
              stability: str = "any", max_spectral_radius: float = 1.2, controllable: bool = False,
              condition_number: float = 10.0, badly_scaled: bool = False, max_exponent: int = 3):
    """Strategy for single :class:`~metalqr.LQRTask` objects.

    ``A = rho (D + M) / rho(D + M)`` with ``D = diag(1, ..., 1/2)``, ``M`` entries in
    ``[-1, 1]`` and target spectral radius ``rho``; ``B = B0 + N`` with ``B0`` a first column
    of ones and ``N`` entries in ``[-1, 1]``; ``Q, R, Psi = U diag(lam) U'`` with condition
    number at most ``condition_number``; ``Sigma0 = I``. Tasks that are not stabilisable
    (PBH test with a relative margin of 1e-6) are rejected, so each drawn task has an optimal
    gain; so is ``B = 0`` (the gain would have no effect).

    Parameters
    ----------
    d, k : int >= 1 or None
        State and input dimensions; ``None`` draws them from ``1..max_d`` / ``1..max_k``.
    max_d, max_k : int >= 1
        Largest dimensions drawn when ``d`` / ``k`` is ``None``.
    stability : {"any", "stable", "unstable"}
        Open-loop spectral radius in ``[0, max_spectral_radius]``, ``[0, 0.95]`` or
        ``[1.05, max_spectral_radius]``.
    max_spectral_radius : float > 0
        Largest open-loop spectral radius.
    controllable : bool
        Require ``(A, B)`` controllable (PBH for every eigenvalue) instead of stabilisable.
    condition_number : float >= 1
        Largest condition number of ``Q``, ``R`` and ``Psi`` (1 gives identities).
    badly_scaled : bool
        Also rescale the weights by ``10**e`` and the state coordinates by
        ``T = diag(10**f_i)`` (``A -> T A T^-1``, ``B -> T B``, ``Q -> T^-1 Q T^-1``,
        ``Psi -> T Psi T``), with integer exponents in ``[-max_exponent, max_exponent]``
        (shrinking to 0): an equivalent system in badly scaled coordinates.
    max_exponent : int >= 0
        Range of the scaling exponents.

    Returns
    -------
    hypothesis.strategies.SearchStrategy[LQRTask]
        Draws stabilisable tasks.

    Raises
    ------
    ValidationError
        If an argument is malformed or out of range (names it).
    """
    d_st = _dim(d, "d", "max_d", max_d)
    k_st = _dim(k, "k", "max_k", max_k)
    stability = check_choice(stability, "stability", STABILITY)
    max_spectral_radius = check_positive(max_spectral_radius, "max_spectral_radius")
    lo, hi = _stability_range(stability, max_spectral_radius)
    if not isinstance(controllable, (bool, np.bool_)):
        raise ValidationError(f"controllable must be True or False; got {controllable!r}.")
    condition_number = check_real(condition_number, "condition_number", minimum=1.0)
    if not isinstance(badly_scaled, (bool, np.bool_)):
        raise ValidationError(f"badly_scaled must be True or False; got {badly_scaled!r}.")
    max_exponent = check_int(max_exponent, "max_exponent", minimum=0, maximum=100)
    return _lqr_tasks(d_st, k_st, lo, hi, bool(controllable), condition_number, bool(badly_scaled),
                      max_exponent)


@st.composite
def _lqr_tasks(draw, d_st, k_st, lo, hi, controllable, condition_number, badly_scaled, max_exponent):
    d, k = draw(d_st), draw(k_st)
    rho = draw(st.floats(lo, hi, allow_nan=False))
    D = np.diag(np.linspace(1.0, 0.5, d)) if d > 1 else np.eye(1)
    A_raw = D + draw(hnp.arrays(np.float64, (d, d), elements=_UNIT))
    r = float(np.max(np.abs(np.linalg.eigvals(A_raw))))
    if r < 0.1:                     # M nearly cancels D: keep the well-conditioned base
        A_raw, r = D, 1.0
    A = A_raw * (rho / r)
    B0 = np.zeros((d, k))
    B0[:, 0] = 1.0
    B = B0 + draw(hnp.arrays(np.float64, (d, k), elements=_UNIT))
    Q = _spd(draw, d, condition_number)
    R = _spd(draw, k, condition_number)
    Psi = _spd(draw, d, condition_number)
    Sigma0 = np.eye(d)
    if badly_scaled and max_exponent > 0:
        e = st.integers(-max_exponent, max_exponent)
        Q = Q * 10.0 ** draw(e)
        R = R * 10.0 ** draw(e)
        t = 10.0 ** np.array(draw(st.lists(e, min_size=d, max_size=d)), dtype=float)
        A = (t[:, None] * A) / t[None, :]
        B = t[:, None] * B
        Q = Q / np.outer(t, t)
        Psi = Psi * np.outer(t, t)
        Sigma0 = Sigma0 * np.outer(t, t)
    assume(np.any(B) and _stabilisable(A, B, controllable))
    return LQRTask(A, B, 0.5 * (Q + Q.T), 0.5 * (R + R.T), Psi=0.5 * (Psi + Psi.T),
                   Sigma0=0.5 * (Sigma0 + Sigma0.T))


# ---------------------------------------------------------------------------- gains
def _reference_gain(ts: TaskSet, limit: float):
    """Return the first candidate centre gain whose closed loops are stable enough.

    The first candidate centre whose closed loops all have spectral radius <= ``limit``: 0 (the
    simplest gain; no Riccati equation needed for open-loop stable tasks), the optimal gain
    (mean of the optimal gains, then each, for a TaskSet), cheaper-control optimal gains (R /
    10^2, 10^4, 10^6: closed loops further inside the unit disc); ``None`` if none qualifies.
    Candidates are computed lazily.
    """
    def candidates():
        yield np.zeros((ts.k, ts.d))
        K_star, _ = optimal_gain(ts)
        yield K_star.mean(axis=0)
        yield from K_star[1:] if len(ts) > 1 else ()
        for j in (2, 4, 6):
            try:
                cheap = TaskSet([LQRTask(t.A, t.B, t.Q, t.R * 10.0 ** -j, Psi=t.Psi, Sigma0=t.Sigma0)
                                 for t in ts])
                Kc, _ = optimal_gain(cheap)
            except MetalqrError:
                continue
            yield Kc.mean(axis=0)

    try:
        for K in candidates():
            if np.max(spectral_radius(ts, K)) <= limit:
                return np.array(K)
    except MetalqrError:
        return None
    return None


def _as_taskset(task: Any, name: str = "task") -> TaskSet:
    if isinstance(task, TaskSet):
        return task
    if isinstance(task, LQRTask):
        return TaskSet([task])
    raise ValidationError(f"{name} must be an LQRTask or a TaskSet; got {type(task).__name__}.")


def stabilizing_gains(task: Any, margin: float = 0.05, *, gamma: float | None = None,
                      K0: Any = None, scale: float = 1.0):
    """Strategy for gains ``K`` of shape ``(k, d)`` that stabilise ``task``.

    Strategy for gains ``K`` (shape ``(k, d)``) that stabilise ``task`` (every task of a
    TaskSet) with closed-loop spectral radius at most ``1 - margin``, and optionally lie in the
    sub-level set ``J_i(K) <= gamma J_i(K0)`` of every task.

    ``K = K_ref + t U`` with ``U`` entries in ``[-scale s, scale s]`` (``s = max(1, max|K_ref|)``),
    ``t`` halved from 1 until the conditions hold. ``K_ref`` is ``K0`` if given, else the
    first of 0, the optimal gain (mean of the optimal gains for a TaskSet) and cheaper-control
    optimal gains that meets the margin; an example is rejected if none does.
    ``U`` shrinks to 0, so the minimal gain is ``K_ref``.

    Parameters
    ----------
    task : LQRTask or TaskSet
        The task(s) the gains must stabilise.
    margin : float in [0, 1)
        Required stability margin: ``rho(A_i - B_i K) <= 1 - margin`` (and ``< 1`` always).
    gamma : float >= 1, optional
        Sub-level ratio; with it every drawn ``K`` has ``J_i(K) <= gamma J_i(K0)``
        (``K0`` defaults to the reference gain).
    K0 : array_like, shape (k, d), optional
        Reference gain; must itself satisfy the margin.
    scale : float > 0
        Size of the perturbations relative to the reference gain.

    Returns
    -------
    hypothesis.strategies.SearchStrategy[ndarray]
        Draws (k, d) gains or directions.

    Raises
    ------
    ValidationError
        If an argument is malformed, or ``K0`` violates the margin.
    """
    ts = _as_taskset(task)
    margin = check_real(margin, "margin", minimum=0.0, maximum=1.0, max_inclusive=False)
    if gamma is not None:
        gamma = check_real(gamma, "gamma", minimum=1.0)
    scale = check_positive(scale, "scale")
    limit = 1.0 - margin if margin > 0 else np.nextafter(1.0, 0.0)   # always strictly stabilising
    if K0 is not None:
        K0 = as_float_array(K0, "K0")
        if K0.shape != (ts.k, ts.d):
            raise ValidationError(f"K0 must be one gain of shape (k, d) = ({ts.k}, {ts.d}); got {K0.shape}.")
        if np.max(spectral_radius(ts, K0)) > limit:
            raise ValidationError(f"K0 must stabilise every task with margin {margin:g} (spectral radius "
                                  f"<= {limit:g}); its largest is {np.max(spectral_radius(ts, K0)):.12g}.")
        K_ref = K0
    else:
        K_ref = _reference_gain(ts, limit)
    return _stabilizing_gains(ts, K_ref, limit, gamma, scale)


@st.composite
def _stabilizing_gains(draw, ts, K_ref, limit, gamma, scale):
    assume(K_ref is not None)
    J_ref = cost(ts, K_ref) if gamma is not None else None
    U = draw(hnp.arrays(np.float64, K_ref.shape, elements=_UNIT))
    U = U * (scale * max(1.0, float(np.max(np.abs(K_ref)))))
    t = 1.0
    for _ in range(40):
        K = K_ref + t * U
        ok = np.max(spectral_radius(ts, K)) <= limit
        if ok and gamma is not None:
            ok = bool(np.all(cost(ts, K) <= gamma * J_ref))
        if ok:
            return K
        t *= 0.5
    return np.array(K_ref)


def tasks_and_gains(margin: float = 0.05, **task_kwargs):
    """Strategy for pairs ``(task, K)`` of a task and a stabilising gain.

    Strategy for pairs ``(task, K)``: a task from :func:`lqr_tasks` (``task_kwargs``) and a gain
    from :func:`stabilizing_gains` with ``margin``.

    Parameters
    ----------
    margin : float in [0, 1)
        Stability margin of the gains (see :func:`stabilizing_gains`).
    **task_kwargs
        Options of :func:`lqr_tasks`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy[tuple[LQRTask, ndarray]]
        Draws ``(task, K)`` pairs.

    Raises
    ------
    ValidationError
        If an argument is malformed (names it).
    """
    margin = check_real(margin, "margin", minimum=0.0, maximum=1.0, max_inclusive=False)
    return lqr_tasks(**task_kwargs).flatmap(
        lambda t: stabilizing_gains(t, margin).map(lambda K: (t, K)))


def directions(k: int, d: int, *, norm: float = 1.0):
    """Strategy for directions ``X`` of shape ``(k, d)`` with a given Frobenius norm.

    Strategy for directions ``X`` of shape ``(k, d)`` with ``||X||_F = norm`` (entries in ``[-1,
    1]`` normalised; the all-zero draw, the shrinking target, gives ``X = norm e_1 e_1'``).

    Parameters
    ----------
    k, d : int >= 1
        Shape of the gain the direction perturbs.
    norm : float > 0
        Frobenius norm of every drawn direction.

    Returns
    -------
    hypothesis.strategies.SearchStrategy[ndarray]
        Draws (k, d) gains or directions.

    Raises
    ------
    ValidationError
        If an argument is malformed (names it).
    """
    k = check_int(k, "k", minimum=1)
    d = check_int(d, "d", minimum=1)
    norm = check_positive(norm, "norm")

    def unit(X):
        n = float(np.linalg.norm(X))
        if n < 1e-3:
            X = np.zeros((k, d))
            X[0, 0] = 1.0
            n = 1.0
        return X * (norm / n)

    return hnp.arrays(np.float64, (k, d), elements=_UNIT).map(unit)


# ---------------------------------------------------------------------------- families
def task_sets(n: int | None = None, d: int | None = None, k: int | None = None,
              heterogeneity: float = 0.1, *, max_n: int = 3, max_d: int = 4, max_k: int = 2,
              stability: str = "any", max_spectral_radius: float = 1.2, condition_number: float = 10.0,
              badly_scaled: bool = False, max_exponent: int = 3):
    """Strategy for :class:`~metalqr.TaskSet` families around a nominal task.

    The nominal task comes from :func:`lqr_tasks`; task ``i`` has ``A_i = A + h M_i``,
    ``B_i = B + h N_i`` (entries of ``M_i``, ``N_i`` in ``[-1, 1]``, times ``max(1, max|A|)``
    resp. ``max(1, max|B|)``) and weights ``W_i = (1 + h u_i) W`` (``W`` in ``Q, R, Psi``,
    ``u_i`` in ``[0, 1]``; positive definite by construction),
    with ``h = heterogeneity``. With ``stability="stable"`` each ``A_i`` is scaled back to
    spectral radius 0.95 if the perturbation pushed it out; every task is stabilisable
    (others are rejected). Perturbations shrink to 0 (identical tasks).

    Parameters
    ----------
    n, d, k : int >= 1 or None
        Number of tasks and dimensions; ``None`` draws from ``1..max_n`` etc.
    heterogeneity : float >= 0
        Size ``h`` of the per-task perturbations.
    max_n, max_d, max_k : int >= 1
        Largest sizes drawn when ``n``, ``d``, ``k`` are ``None``.
    stability : {"any", "stable", "unstable"}
        As in :func:`lqr_tasks` (for the nominal task; the per-task perturbations are then
        relative to its scale).
    max_spectral_radius : float > 0
        As in :func:`lqr_tasks`.
    condition_number : float >= 1
        As in :func:`lqr_tasks`.
    badly_scaled : bool
        As in :func:`lqr_tasks`.
    max_exponent : int >= 0
        As in :func:`lqr_tasks`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy[TaskSet]
        Draws task families.

    Raises
    ------
    ValidationError
        If an argument is malformed or out of range (names it).
    """
    n_st = _dim(n, "n", "max_n", max_n)
    h = check_positive(heterogeneity, "heterogeneity", allow_zero=True)
    nominal = lqr_tasks(d, k, max_d=max_d, max_k=max_k, stability=stability,
                        max_spectral_radius=max_spectral_radius, condition_number=condition_number,
                        badly_scaled=badly_scaled, max_exponent=max_exponent)
    stable = stability == "stable"
    return _task_sets(n_st, h, nominal, stable)


@st.composite
def _task_sets(draw, n_st, h, nominal, stable):
    t0 = draw(nominal)
    n = draw(n_st)
    d, k = t0.d, t0.k
    sA = max(1.0, float(np.max(np.abs(t0.A))))       # perturbations relative to the nominal's scale
    sB = max(1.0, float(np.max(np.abs(t0.B))))
    tasks = []
    for _ in range(n):
        A = t0.A + h * sA * draw(hnp.arrays(np.float64, (d, d), elements=_UNIT))
        if stable:
            r = float(np.max(np.abs(np.linalg.eigvals(A))))
            if r > _STABLE_RADIUS:
                A = A * (_STABLE_RADIUS / r)
        B = t0.B + h * sB * draw(hnp.arrays(np.float64, (d, k), elements=_UNIT))
        W = {}
        for name in ("Q", "R", "Psi"):
            u = draw(st.floats(0.0, 1.0, allow_nan=False))
            W[name] = getattr(t0, name) * (1.0 + h * u)
        assume(np.any(B) and _stabilisable(A, B, False))
        tasks.append(LQRTask(A, B, W["Q"], W["R"], Psi=W["Psi"], Sigma0=t0.Sigma0))
    return TaskSet(tasks)


def meta_learnable_families(n: int | None = None, d: int | None = None, k: int | None = None,
                            heterogeneity: float = 0.1, *, eta: float | None = None, margin: float = 0.02,
                            max_eta: float = 0.1, **task_set_kwargs):
    """Strategy for meta-learnable families ``(tasks, K, eta)``.

    Strategy for :class:`MetaFamily` triples ``(tasks, K, eta)``: a family from
    :func:`task_sets` with a common MAML-stabilising gain ``K`` for ``eta`` (Definition 1 of the
    ZO-MAML paper: ``K`` and every adapted gain ``K - eta grad J_i(K)`` stabilise their task),
    each closed loop with spectral radius at most ``1 - margin``.

    ``K`` is :func:`metalqr.common_stabilizing_gain` of the family (families without one are
    rejected). With ``eta=None`` a step size is drawn in ``[max_eta / 1000, max_eta]`` and
    halved until :func:`metalqr.is_maml_stabilizing` holds with the margin; a fixed ``eta``
    rejects families for which it does not.

    Parameters
    ----------
    n, d, k : int >= 1 or None
        As in :func:`task_sets`.
    heterogeneity : float >= 0
        As in :func:`task_sets`.
    eta : float > 0, optional
        Fixed adaptation step size.
    margin : float in [0, 1)
        Stability margin of ``K`` and of the adapted gains.
    max_eta : float > 0
        Largest drawn step size when ``eta`` is ``None``.
    **task_set_kwargs
        More options of :func:`task_sets`.

    Returns
    -------
    hypothesis.strategies.SearchStrategy[MetaFamily]
        Draws ``(tasks, K, eta)`` triples.

    Raises
    ------
    ValidationError
        If an argument is malformed or out of range (names it).

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Definition 1.
    """
    if eta is not None:
        eta = check_positive(eta, "eta")
    margin = check_real(margin, "margin", minimum=0.0, maximum=1.0, max_inclusive=False)
    max_eta = check_positive(max_eta, "max_eta")
    sets = task_sets(n, d, k, heterogeneity, **task_set_kwargs)
    return _families(sets, eta, margin, max_eta)


@st.composite
def _families(draw, sets, eta, margin, max_eta):
    ts = draw(sets)
    limit = 1.0 - margin if margin > 0 else np.nextafter(1.0, 0.0)
    K = np.zeros((ts.k, ts.d))
    if np.max(spectral_radius(ts, K)) > limit:      # K = 0 is common_stabilizing_gain's first try
        try:
            K = common_stabilizing_gain(ts)
        except MetalqrError:
            assume(False)
    assume(np.max(spectral_radius(ts, K)) <= limit)

    def ok(e):
        return (is_maml_stabilizing(ts, K, e)
                and np.max([spectral_radius(t, Ka) for t, Ka in zip(ts, adapted_gains(ts, K, e))]) <= limit)

    if eta is None:
        e = draw(st.floats(max_eta / 1000, max_eta, allow_nan=False))
        for _ in range(40):
            if ok(e):
                break
            e *= 0.5
        assume(ok(e))
        return MetaFamily(ts, K, float(e))
    assume(ok(eta))
    return MetaFamily(ts, K, eta)
