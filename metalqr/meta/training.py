"""Model-agnostic meta-policy optimisation: Algorithm 3 of the ZO-MAML paper, as a tool.

Model-agnostic meta-policy optimisation: Algorithm 3 of the ZO-MAML paper, as a tool with
per-iteration history, a model-free stability guard, the best iterate, checkpoints and progress
bars.

Which quantities use the model (the true ``A_i, B_i``):

* the gradient estimate with ``gradient="zo"`` and ``oracle="rollout"`` uses roll-outs only;
* ``guard="rollouts"`` (default) decides whether a step is safe from roll-outs only;
  ``guard="model"`` asks :func:`is_maml_stabilizing` with the true ``A_i, B_i`` (simulation
  studies); ``guard="none"`` takes every step (the paper's plain update);
* ``rollout_length=None`` chooses ``l`` from the closed-loop mixing time at ``K0`` (model),
  and an explicit ``l`` is checked against it (model, a warning only);
* the history's ``meta_objective`` and ``cost_gap_ratio``, ``K_best`` and the
  "worse than the start" warning are evaluation with the exact model: they never steer
  the updates.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np

from .. import _checkpoint
from .._validation import (as_float_array, as_rng, check_bool, check_callable, check_choice,
                           check_int, check_positive, check_real, check_size, format_radius)
from ..exceptions import (CheckpointError, NotMAMLStabilizingError, RolloutLengthWarning,
                          RolloutOverflowError, TrainingDivergedError, TrainingStalledError,
                          TrainingWorsenedWarning, UnstablePolicyError, ValidationError,
                          ValidationTypeError)
from ..lqr.lyapunov import dlyap, spectral_radius_of
from ..lqr.policy import closed_loop
from ..lqr.tasks import as_batch
from ..rollouts import simulate_costs
from ..rollouts.backends import check_backend
from .history import UNITS, History
from .objective import (as_taskset, check_meta_learnable, cost_gap_ratio, first_order_maml_gradient,
                        is_maml_stabilizing, maml_gradient, maml_objective, optimal_costs)
from .zeroth_order import zo_maml_gradient

__all__ = ["meta_policy_optimization", "MetaTrainingResult", "rollout_bias",
           "mixing_rollout_length", "GRADIENTS", "GUARDS", "OUTER_UPDATES"]

GradientKind = Literal["zo", "exact", "first_order"]
GUARDS = ("rollouts", "model", "none")
OUTER_UPDATES = ("plain", "adam_clipped")
GRADIENTS = ("zo", "exact", "first_order")
_ZO_OPTIONS = {"n_perturbations": 100, "inner_perturbations": None, "rollout_length": None,
               "radius": 0.05, "task_batch": None, "two_point": False, "oracle": "rollout"}
#: The paper's roll-out length; ``rollout_length=None`` never goes below it.
PAPER_ROLLOUT_LENGTH = 50
#: Relative bias of the expected l-step cost that ``rollout_length=None`` allows.
ROLLOUT_BIAS_TOLERANCE = 0.05
#: Longest roll-out ``rollout_length=None`` will choose.
MAX_ROLLOUT_LENGTH = 1_000_000
#: ``outer_update="adam_clipped"`` (the authors' public code, ``algo/hessianfree.py`` of
#: UnionPan/mamllqr): meta-gradient Frobenius norm clipped at ``ADAM_CLIP``, then Adam.
ADAM_CLIP, ADAM_BETA1, ADAM_BETA2, ADAM_EPS = 10.0, 0.9, 0.999, 1e-7
#: ``guard="rollouts"``: roll-outs per task, and the limits on the cost blow-up against the
#: current gain and on the growth of the cost between ``l`` and ``2l`` steps.
GUARD_ROLLOUTS, GUARD_BLOWUP, GUARD_GROWTH = 8, 10.0, 2.0
CHECKPOINT_KIND = "meta_training"


@dataclass
class MetaTrainingResult:  # numpydoc ignore=PR01
    """Result of :func:`meta_policy_optimization`.

    Attributes
    ----------
    K : ndarray (k, d)
        Final meta-policy (the last iterate of Algorithm 3).
    history : History
        One record per iteration, starting with iteration 0 (the initial gain ``K0``):
        ``iteration``, ``meta_objective`` (exact ``L(K)``, evaluation only),
        ``cost_gap_ratio`` (exact, evaluation only), ``grad_norm`` (norm of the gradient
        estimate used; 0 at iteration 0), ``step`` (the step size taken, 0 if rejected),
        ``backtracks``, ``rejected`` (0/1), ``seconds`` (wall-clock seconds of the iteration).
    stop_reason : str
        A short code shared with the other result types (see "Conventions" in the API
        reference): ``"max_iterations"`` (all ``n_iterations`` done and the final objective
        is not worse than the initial one), ``"no_improvement"`` (all iterations done but the final objective
        is worse than the initial one; a :class:`~metalqr.exceptions.TrainingWorsenedWarning`
        was issued), ``"tolerance"`` (converged: the gradient-estimate norm fell to ``tol``),
        ``"callback"``, ``"stalled"`` (in the result attached
        to :class:`~metalqr.TrainingStalledError`) or ``"diverged"`` (attached to
        :class:`~metalqr.TrainingDivergedError`).
    initial : dict
        ``meta_objective`` and ``cost_gap_ratio`` at ``K0`` (before any update).
    K_best : ndarray (k, d)
        The iterate with the smallest exact meta-objective seen (iteration 0 included).
    best_iteration : int
        The iteration of ``K_best``.
    best_objective : float
        The exact meta-objective ``L(K_best)``.
    settings : dict
        Every setting of the run (seed, step sizes, estimator options with the roll-out
        length actually used, guard, outer update), for reports and reruns.
    n_iterations : int
        Outer iterations done (``len(history) - 1``; resumed ones included).
    converged : bool
        Whether the run stopped at ``tol`` (``stop_reason == "tolerance"``); set with
        ``stop_reason``.
    """

    K: np.ndarray
    history: History
    stop_reason: str
    initial: dict
    K_best: np.ndarray | None = None
    best_iteration: int = 0
    best_objective: float = math.inf
    settings: dict | None = None
    n_iterations: int = 0
    converged: bool = False

    @property
    def improved(self) -> bool:
        """Whether the final exact objective is below the initial one."""
        return bool(self.history["meta_objective"][-1] < self.initial["meta_objective"])


# ----------------------------------------------------------------------------- roll-out length
def rollout_bias(tasks: Any, K: Any, length: int) -> np.ndarray:
    """Relative bias of the expected ``l``-step roll-out cost against the ergodic cost.

    With ``A_K = A - B K``, ``M = Q + K'RK``, ``Sigma_K = dlyap(A_K, Psi)``,
    ``D = Sigma0 - Sigma_K`` and ``X = dlyap(A_K, D)``, the expectation of
    :func:`metalqr.simulate_costs` is ``J(K) + Tr(M (A_K X A_K' - A_K^{l+1} X A_K'^{l+1})) / l``
    (``Sigma_t - Sigma_K = A_K^t D A_K'^t``; Lemma 14 of the ZO-MAML paper bounds the same
    quantity). Returns ``|E J~_l - J| / J`` per task, shape (n,). Uses the model.

    Parameters
    ----------
    tasks : TaskSet or LQRTask
        The task family (a single LQRTask counts as one task).
    K : array_like (k, d)
        A gain that stabilises every task.
    length : int
        Roll-out length ``l`` >= 1.

    Returns
    -------
    (n,) ndarray
        ``|E J~_l - J| / J`` per task.

    Raises
    ------
    UnstablePolicyError
        If ``K`` does not stabilise some task.
    ValidationError
        If ``length`` is not a positive int.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Lemma 14 (the finite-horizon bias of the roll-out cost).
    """
    ts = as_taskset(tasks)
    length = check_int(length, "length", minimum=1)
    terms = _bias_terms(ts, K)
    return _relative_bias(terms, np.array([length]))[:, 0]


def _bias_terms(ts, K):
    from ..lqr.policy import check_gain
    batch = as_batch(ts)
    Kb = check_gain(batch, K)
    AK = closed_loop(batch, Kb)
    rho = spectral_radius_of(AK)
    if np.any(rho >= 1.0):
        i = int(np.argmax(rho))
        raise UnstablePolicyError(f"K does not stabilise task {i} (spectral radius {format_radius(rho[i])}); "
                                  f"the roll-out length is only defined for a stabilising gain.",
                                  task_index=i, spectral_radius=float(rho[i]))
    M = batch.Q + np.swapaxes(Kb, -1, -2) @ batch.R @ Kb
    Sigma = dlyap(AK, batch.Psi)
    X = dlyap(AK, batch.Sigma0 - Sigma)
    J = np.einsum("nij,nji->n", M, Sigma)
    c_inf = np.einsum("nij,nji->n", M, AK @ X @ np.swapaxes(AK, -1, -2))
    return AK, M, X, J, c_inf, rho


def _relative_bias(terms, lengths: np.ndarray) -> np.ndarray:
    AK, M, X, J, c_inf, _ = terms
    out = np.empty((AK.shape[0], lengths.size))
    for j, l in enumerate(lengths):
        P = np.linalg.matrix_power(AK, int(l) + 1)
        tail = np.einsum("nij,nji->n", M, P @ X @ np.swapaxes(P, -1, -2))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, j] = np.where(J > 0, np.abs(c_inf - tail) / (l * np.where(J > 0, J, 1.0)), 0.0)
    return out


def mixing_rollout_length(tasks: Any, K: Any, *, tolerance: float = ROLLOUT_BIAS_TOLERANCE) -> int:
    """Return the shortest roll-out length whose expected cost is close to the ergodic cost.

    Shortest roll-out length ``l`` whose expected cost is within ``tolerance`` (relative) of the
    ergodic cost ``J(K)`` on every task (see :func:`rollout_bias`), i.e. ``l`` of the order of
    the closed loop's mixing time ``1 / (1 - rho(A - BK)^2)``. Uses the model.

    Parameters
    ----------
    tasks : TaskSet or LQRTask
        The task family (a single LQRTask counts as one task).
    K : array_like (k, d)
        A gain that stabilises every task.
    tolerance : float in (0, 1)
        Largest relative bias of the expected ``l``-step cost.

    Returns
    -------
    int
        The length ``l`` (at most ``MAX_ROLLOUT_LENGTH``).

    Raises
    ------
    UnstablePolicyError
        If ``K`` does not stabilise some task.
    ValidationError
        If the length would exceed ``MAX_ROLLOUT_LENGTH`` (closed loop too close to instability).
    """
    ts = as_taskset(tasks)
    tol = check_real(tolerance, "tolerance", minimum=0.0, maximum=1.0, min_inclusive=False,
                     max_inclusive=False)
    terms = _bias_terms(ts, K)
    J, c_inf = terms[3], terms[4]
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = np.where(J > 0, np.abs(c_inf) / (tol * np.where(J > 0, J, 1.0)), 1.0)
    lo, hi = 1, max(1, int(math.ceil(float(np.max(guess)))))
    while np.max(_relative_bias(terms, np.array([hi]))) > tol:
        lo, hi = hi, 2 * hi
        if hi > MAX_ROLLOUT_LENGTH:
            raise ValidationError(
                f"rollout_length: the closed loop mixes too slowly (spectral radius "
                f"{float(np.max(terms[5])):.6g}); a roll-out cost within {tol:g} of the ergodic "
                f"cost needs more than {MAX_ROLLOUT_LENGTH} steps. Start from a gain with more "
                f"stability margin.")
    while hi - lo > 1:  # the bias is ~ c/l: bisect for the smallest l that meets tol
        mid = (lo + hi) // 2
        if np.max(_relative_bias(terms, np.array([mid]))) <= tol:
            hi = mid
        else:
            lo = mid
    return hi


# ----------------------------------------------------------------------------- validation
def _check_estimator_options(options: dict, gradient: str, n_tasks: int) -> dict:
    unknown = sorted(set(options) - set(_ZO_OPTIONS))
    if unknown:
        import difflib
        hints = [difflib.get_close_matches(u, list(_ZO_OPTIONS), n=1) for u in unknown]
        hint = "".join(f" Did you mean {h[0]!r} for {u!r}?" for u, h in zip(unknown, hints) if h)
        raise ValidationError(f"unknown estimator options {unknown}; the zo estimator takes "
                              f"{sorted(_ZO_OPTIONS)}.{hint}")
    if options and gradient != "zo":
        raise ValidationError(f"estimator options {sorted(options)} only apply to gradient='zo'; "
                              f"got gradient={gradient!r}. Drop them or use gradient='zo'.")
    o = {**_ZO_OPTIONS, **options}
    o["n_perturbations"] = check_int(o["n_perturbations"], "n_perturbations", minimum=1)
    if o["inner_perturbations"] is not None:
        o["inner_perturbations"] = check_int(o["inner_perturbations"], "inner_perturbations",
                                             minimum=1)
    if o["rollout_length"] is not None:
        o["rollout_length"] = check_int(o["rollout_length"], "rollout_length", minimum=1)
    o["radius"] = check_positive(o["radius"], "radius")
    if o["task_batch"] is not None:
        o["task_batch"] = check_int(o["task_batch"], "task_batch", minimum=1, maximum=n_tasks)
    o["two_point"] = check_bool(o["two_point"], "two_point")
    o["oracle"] = check_choice(o["oracle"], "oracle", ("rollout", "exact"))
    return o


def _check_path(checkpoint: Any) -> str | None:
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, (str, os.PathLike)) or isinstance(checkpoint, bytes):
        raise ValidationTypeError(f"checkpoint must be a file path (str or os.PathLike) or None; "
                                  f"got {type(checkpoint).__name__}.")
    path = os.fspath(checkpoint)
    if not isinstance(path, str) or not path.strip():
        raise ValidationError(f"checkpoint must be a non-empty file path; got {checkpoint!r}.")
    if "\x00" in path:
        raise ValidationError(f"checkpoint must not contain NUL characters; got {checkpoint!r}.")
    if os.path.isdir(path):
        raise ValidationError(f"checkpoint {path!r} is a folder; pass a file path inside it, e.g. "
                              f"{os.path.join(path, 'checkpoint.npz')!r}.")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValidationError(f"checkpoint {path!r}: its folder {folder!r} is a file.")
    return path


def _check_weights(weights: Any, n: int):
    if weights is None:
        return None
    w = as_float_array(weights, "weights", shape=(n,))
    if np.any(w < 0) or w.sum() <= 0:
        raise ValidationError(f"weights must be non-negative with a positive sum; got "
                              f"{np.array2string(w, precision=3)}.")
    return w


def _seed_tag(rng: Any) -> Any:
    """Return what the fingerprint records about ``rng``.

    What the fingerprint records about ``rng``: the seed, or a hash of a Generator's starting
    state (``None``: fresh entropy; a resumed run takes the saved state).
    """
    if rng is None:
        return None
    if isinstance(rng, np.random.Generator):
        state = json.dumps(rng.bit_generator.state, sort_keys=True, default=str)
        return "generator:" + hashlib.sha256(state.encode()).hexdigest()[:16]
    if isinstance(rng, np.random.SeedSequence):
        return f"seedsequence:{rng.entropy}:{tuple(rng.spawn_key)}"
    return int(rng)


def _fingerprint(tasks, K0, settings: dict) -> str:
    h = hashlib.sha256()
    for name in ("A", "B", "Q", "R", "Psi", "Sigma0"):
        h.update(np.ascontiguousarray(getattr(tasks, name)).tobytes())
    h.update(np.ascontiguousarray(K0).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


# ----------------------------------------------------------------------------- checkpoints
def _save_checkpoint(path: str, fingerprint: str, state: dict, history: History,
                     rng: np.random.Generator) -> None:
    arrays = {"K": state["K"], "K_best": state["K_best"], "adam_m": state["adam_m"],
              "adam_v": state["adam_v"]}
    if state["K_prev"] is not None:
        arrays["K_prev"] = state["K_prev"]
    meta = {"records": history.records, "rng_state": rng.bit_generator.state,
            "adam_t": state["adam_t"], "best_iteration": state["best_iteration"]}
    _checkpoint.save(path, CHECKPOINT_KIND, fingerprint, arrays, meta)


def _load_checkpoint(path: str, fingerprint: str, rng: np.random.Generator, ts, eta, weights,
                     shape) -> tuple[dict, History]:
    """Load and cross-check a checkpoint; every inconsistency is one CheckpointError."""
    arrays, meta = _checkpoint.load(path, CHECKPOINT_KIND, fingerprint)

    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path!r} is inconsistent ({why}); delete it (or run "
                               f"without --resume / checkpoint) to start afresh.")

    try:
        K = np.asarray(arrays["K"], dtype=np.float64)
        K_best = np.asarray(arrays["K_best"], dtype=np.float64)
        m, v = np.asarray(arrays["adam_m"], np.float64), np.asarray(arrays["adam_v"], np.float64)
        K_prev = np.asarray(arrays["K_prev"], np.float64) if "K_prev" in arrays else None
        records = meta["records"]
        adam_t = meta["adam_t"]
        best_it = meta["best_iteration"]
        rng_state = meta["rng_state"]
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"missing or malformed entry: {type(exc).__name__}: {exc}") from None
    for name, arr in (("K", K), ("K_best", K_best), ("adam_m", m), ("adam_v", v)) + (
            (("K_prev", K_prev),) if K_prev is not None else ()):
        if arr.shape != shape or not np.all(np.isfinite(arr)):
            raise bad(f"{name} has shape {arr.shape} or non-finite entries; expected {shape}")
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise bad("the history is empty or malformed")
    its = [r.get("iteration") for r in records]
    if its != list(range(len(records))):
        raise bad("the history's iterations are not 0, 1, 2, ... (truncated, duplicated or "
                  "reordered records)")
    if not isinstance(adam_t, int) or not 0 <= adam_t < len(records):
        raise bad(f"the Adam step counter {adam_t!r} does not fit the history")
    if not isinstance(best_it, int) or not 0 <= best_it < len(records):
        raise bad(f"the best iteration {best_it!r} does not fit the history")
    # K and K_best must reproduce the exact objectives recorded for them.
    for name, gain, rec in (("K", K, records[-1]), ("K_best", K_best, records[best_it])):
        want = rec.get("meta_objective")
        got = maml_objective(ts, gain, eta, weights)
        if not isinstance(want, (int, float)) or not (
                got == want or (math.isfinite(got) and abs(got - want) <= 1e-9 * abs(want))):
            raise bad(f"{name} does not reproduce the meta-objective recorded at iteration "
                      f"{rec.get('iteration')} ({got!r} vs {want!r}): it was edited")
    try:
        rng.bit_generator.state = rng_state
    except (TypeError, ValueError, KeyError) as exc:
        raise bad(f"the random-generator state cannot be restored ({exc})") from None
    try:
        order = [c for c in UNITS if c in records[0]] + [c for c in records[0] if c not in UNITS]
        history = History([{c: r[c] for c in order if c in r} for r in records])
    except ValidationError as exc:
        raise bad(f"the history is malformed ({exc})") from None
    state = {"K": K, "K_best": K_best, "K_prev": K_prev, "adam_m": m, "adam_v": v,
             "adam_t": adam_t, "best_iteration": best_it}
    return state, history


# ----------------------------------------------------------------------------- guard
class _RolloutGuard:
    """Model-free safety check of a step from roll-outs with common random numbers.

    A candidate gain is rejected when a roll-out overflows, when its mean ``l``-step cost on
    some task exceeds ``GUARD_BLOWUP`` times that of the current gain, or when its cost grows
    from ``l`` to ``2 l`` steps by more than ``GUARD_GROWTH`` times the current gain's growth (a
    trajectory that is diverging).
    """

    def __init__(self, ts, length: int, backend, rng: np.random.Generator) -> None:
        self.ts, self.length, self.backend, self.rng = ts, length, backend, rng
        n = len(ts)
        self.task_index = np.repeat(np.arange(n), GUARD_ROLLOUTS)

    def start(self, K: np.ndarray) -> None:
        """Fix the current gain and fresh common random numbers for this iteration."""
        self.K = K
        self.seeds = [int(s) for s in self.rng.integers(0, 2**63, size=2)]

    def accepts(self, K_new: np.ndarray) -> bool:
        n, N = len(self.ts), self.task_index.size
        gains = np.concatenate([np.broadcast_to(self.K, (N,) + self.K.shape),
                                np.broadcast_to(K_new, (N,) + K_new.shape)])
        task_index = np.concatenate([self.task_index, self.task_index])
        noise_index = np.concatenate([np.arange(N), np.arange(N)])      # common random numbers
        means = []
        for length, seed in zip((self.length, 2 * self.length), self.seeds):
            with np.errstate(over="ignore", invalid="ignore"):
                J = simulate_costs(self.ts, gains, length=length, rng=np.random.default_rng(seed),
                                   task_index=task_index, noise_index=noise_index,
                                   backend=self.backend)
            means.append(J.reshape(2, n, GUARD_ROLLOUTS).mean(axis=2))
        (J1_ref, J1), (J2_ref, J2) = means
        if not (np.all(np.isfinite(J1)) and np.all(np.isfinite(J2))):
            return False
        def ratio(a, b):   # a / b with 0 / 0 = 1 (zero-cost tasks: Psi = 0 and x_0 = 0)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.where(a > 0, math.inf, 1.0))
        growth, growth_ref = ratio(J2, J1), ratio(J2_ref, J1_ref)
        if np.any(J1 > GUARD_BLOWUP * J1_ref):
            return False
        return bool(np.all(growth <= GUARD_GROWTH * np.maximum(1.0, growth_ref)))


# ----------------------------------------------------------------------------- training
def meta_policy_optimization(tasks: Any, K0: Any, *, alpha: float, eta: float, n_iterations: int,
                             gradient: GradientKind = "zo", rng: Any = None,
                             backend: str | None = None, progress: bool = True,
                             checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 10,
                             callback: Callable[[dict, np.ndarray], Any] | None = None,
                             tol: float = 0.0, max_backtracks: int = 20,
                             max_consecutive_rejections: int = 25,
                             weights: Any = None, guard: str = "rollouts",
                             outer_update: str = "plain",
                             **estimator_options: Any) -> MetaTrainingResult:
    """Optimise a meta-policy by Algorithm 3 of the ZO-MAML paper.

    Meta-policy optimisation ``K_{n+1} = K_n - alpha grad L(K_n)`` (Algorithm 3 of the ZO-MAML
    paper), with a stability guard, the best iterate and checkpoints.

    Parameters
    ----------
    tasks : TaskSet
        The training tasks (``n`` tasks of state dimension ``d`` and input dimension ``k``).
    K0 : array_like (k, d)
        MAML-stabilising initial gain (Definition 1), e.g.
        :func:`metalqr.common_stabilizing_gain`.
    alpha : float > 0
        Meta learning rate (outer step size).
    eta : float >= 0
        Adaptation rate (inner step size of Eq. (4)).
    n_iterations : int >= 1
        Number of outer iterations ``N``.
    gradient : {"zo", "exact", "first_order"}
        Algorithm 2 (:func:`zo_maml_gradient`), the exact meta-gradient
        (:func:`maml_gradient`), or first-order MAML (Hessian term dropped).
    rng : Generator, int seed >= 0 or None
        Source of all randomness; a seed makes the run reproducible.
    backend : str or None
        Roll-out backend, a name of :func:`metalqr.rollouts.known_backends` (``None``: the
        default one).
    progress : bool
        Show a tqdm progress bar.
    checkpoint : path, optional
        Checkpoint file (``metalqr._checkpoint``: versioned, checksummed, atomic) written
        every ``checkpoint_every`` iterations and at the end. If it exists when the run
        starts, the run resumes from it and reaches the same final ``K`` as an uninterrupted
        run with the same seed; a damaged, edited or foreign file raises
        :class:`~metalqr.CheckpointError`.
    checkpoint_every : int >= 1
        Save the checkpoint every this many iterations (and at the end).
    callback : callable(record, K), optional
        Called after every iteration; a truthy return value stops the run.
    tol : float >= 0
        Stop when the norm of the gradient estimate falls below ``tol`` (Algorithm 3's epsilon).
    max_backtracks : int >= 0
        A step the guard refuses, or whose gradient estimate overflowed, is retried with half
        the step up to this many times; if all fail the iteration is rejected (``K``
        unchanged, ``rejected = 1``).
    max_consecutive_rejections : int >= 1
        After this many rejected iterations in a row the run stops with
        :class:`TrainingStalledError` (after saving the checkpoint).
    weights : array_like (n,), optional
        Non-negative task weights for the exact objective and gradients.
    guard : {"rollouts", "model", "none"}
        How a step is judged safe. ``"rollouts"`` (default, model-free): roll-outs of the
        candidate gain with common random numbers (overflow, a cost blow-up against the
        current gain, or cost growth from ``l`` to ``2l`` steps reject it); when the
        gradient estimate at an accepted gain overflows, the run returns to the previous
        gain. ``"model"``: :func:`is_maml_stabilizing` with the true ``A_i, B_i``
        (simulation studies). ``"none"``: the paper's plain update; a step that makes the
        estimate overflow ends the run with :class:`TrainingDivergedError`.
    outer_update : {"plain", "adam_clipped"}
        ``"plain"``: ``K - alpha G`` (Algorithm 3). ``"adam_clipped"``: the authors' public
        code (UnionPan/mamllqr, ``algo/hessianfree.py``): ``G`` clipped to Frobenius norm
        10, then Adam (beta1 0.9, beta2 0.999, eps 1e-7, bias-corrected moments),
        ``K - alpha m_hat / (sqrt(v_hat) + eps)``. The moments advance once per iteration
        with a finite gradient estimate; backtracking halves the step.
    **estimator_options
        For ``gradient="zo"``: ``n_perturbations`` (M, 100), ``inner_perturbations``
        (M', default M), ``rollout_length`` (l; default ``None``: chosen from the closed
        loop's mixing time at ``K0`` with :func:`mixing_rollout_length`, at least 50),
        ``radius`` (r, 0.05), ``task_batch``, ``two_point`` (False), ``oracle``
        ("rollout").

    Returns
    -------
    MetaTrainingResult
        Final ``K``, ``K_best`` (best exact objective seen), the history from iteration 0,
        ``stop_reason`` and the settings.

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed argument (named in the message).
    TrainingStalledError
        If ``max_consecutive_rejections`` iterations in a row are rejected.
    TrainingDivergedError
        With ``guard="none"``, if an update left the stabilising set (the estimate
        overflows) or produced non-finite entries.
    NotMetaLearnableError
        If the tasks provably share no stabilising gain.
    NotMAMLStabilizingError
        If ``K0`` is not MAML-stabilising.
    CheckpointError
        If an existing checkpoint is damaged, edited, or from another run.

    Warns
    -----
    RolloutLengthWarning
        If an explicit ``rollout_length`` is shorter than the mixing-time length (the
        message names it), at ``K0`` or at the final gain.
    TrainingWorsenedWarning
        If the final exact objective is worse than the initial one (``stop_reason`` is then
        ``"no_improvement"``; use ``K_best``).

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Algorithm 3 (the outer loop), Algorithm 2 (the
    zeroth-order meta-gradient) and Eq. (4) (the objective).

    Examples
    --------
    Five exact meta-gradient steps on three random tasks:

    >>> from metalqr import common_stabilizing_gain, meta_policy_optimization, sample_tasks
    >>> tasks = sample_tasks(3, 2, 1, rng=0)
    >>> K0 = common_stabilizing_gain(tasks)
    >>> res = meta_policy_optimization(tasks, K0, alpha=1e-2, eta=1e-3, n_iterations=5,
    ...                                gradient="exact", progress=False)
    >>> res.K.shape, len(res.history["iteration"])     # iterations 0..5
    ((1, 2), 6)
    >>> bool(res.history["meta_objective"][-1] < res.history["meta_objective"][0])
    True
    """
    ts = as_taskset(tasks)
    k, d = ts.k, ts.d
    K_start = as_float_array(K0, "K0", shape=(k, d))
    alpha = check_positive(alpha, "alpha")
    eta = check_positive(eta, "eta", allow_zero=True)
    n_iterations = check_int(n_iterations, "n_iterations", minimum=1)
    gradient = check_choice(gradient, "gradient", GRADIENTS)
    backend = None if backend is None else check_backend(backend, "backend")
    progress = check_bool(progress, "progress")
    path = _check_path(checkpoint)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
    callback = check_callable(callback, "callback", allow_none=True)
    tol = check_real(tol, "tol", minimum=0.0)
    max_backtracks = check_int(max_backtracks, "max_backtracks", minimum=0)
    max_consecutive_rejections = check_int(max_consecutive_rejections,
                                           "max_consecutive_rejections", minimum=1)
    weights = _check_weights(weights, len(ts))
    guard = check_choice(guard, "guard", GUARDS)
    outer_update = check_choice(outer_update, "outer_update", OUTER_UPDATES)
    zo = _check_estimator_options(estimator_options, gradient, len(ts))
    rng_in, rng = rng, as_rng(rng)
    seed_tag = _seed_tag(rng_in)
    if gradient == "zo":
        T = len(ts) if zo["task_batch"] is None else zo["task_batch"]
        S = 2 if zo["two_point"] else 1
        Mi = zo["n_perturbations"] if zo["inner_perturbations"] is None else zo["inner_perturbations"]
        check_size(float(T) * zo["n_perturbations"] * S * (Mi * S + 1) * k * d,
                   "meta_policy_optimization", what="float64 entries of perturbed gains per "
                   "iteration (n_tasks x M x M' x k x d)",
                   alternative="Reduce n_perturbations / inner_perturbations or use task_batch.")
    check_meta_learnable(ts)
    if not is_maml_stabilizing(ts, K_start, eta):
        raise NotMAMLStabilizingError(
            f"K0 is not MAML-stabilising for eta = {eta:g} (Definition 1): K0 or an adapted gain "
            f"K0 - eta grad J_i(K0) does not stabilise some task. Use a stabilising K0 (e.g. "
            f"metalqr.common_stabilizing_gain(tasks)) or a smaller eta.")

    # Roll-out length: chosen from, or checked against, the mixing time at K0 (model).
    needs_length = (gradient == "zo" and zo["oracle"] == "rollout") or guard == "rollouts"
    if needs_length:
        l_mix = mixing_rollout_length(ts, K_start)
        if zo["rollout_length"] is None:
            zo["rollout_length"] = max(PAPER_ROLLOUT_LENGTH, l_mix)
        elif zo["rollout_length"] < l_mix:
            _warn_length(ts, K_start, zo["rollout_length"], l_mix, "K0")
    length = zo["rollout_length"]

    settings = {"alpha": alpha, "eta": eta, "gradient": gradient, "backend": backend,
                "weights": None if weights is None else weights.tolist(), "zo": zo,
                "max_backtracks": max_backtracks, "guard": guard, "outer_update": outer_update,
                "max_consecutive_rejections": max_consecutive_rejections, "seed": seed_tag}
    fingerprint = _fingerprint(ts, K_start, settings)
    J_star = optimal_costs(ts)
    if not float(np.sum(J_star)) > 0.0:
        raise ValidationError(
            "tasks: the optimal costs J_i(K_i*) sum to 0 (Psi = 0 for every task), so "
            "J(K) = Tr(P_K Psi) is 0 for every gain and there is nothing to learn. Give the "
            "tasks a process-noise covariance Psi (e.g. the identity).")
    initial = {"meta_objective": maml_objective(ts, K_start, eta, weights),
               "cost_gap_ratio": cost_gap_ratio(ts, K_start, J_star)}
    if path is not None and os.path.exists(path):
        state, history = _load_checkpoint(path, fingerprint, rng, ts, eta, weights, (k, d))
    else:
        state = {"K": K_start.copy(), "K_best": K_start.copy(), "K_prev": None,
                 "adam_m": np.zeros((k, d)), "adam_v": np.zeros((k, d)), "adam_t": 0,
                 "best_iteration": 0}
        history = History()
        history.append({"iteration": 0, **initial, "grad_norm": 0.0, "step": 0.0,
                        "backtracks": 0, "rejected": 0, "seconds": 0.0})
    from .._version import __version__
    history.meta = {"settings": settings, "units": UNITS, "metalqr_version": __version__,
                    "n_iterations": n_iterations}
    K = state["K"]
    guard_check = _RolloutGuard(ts, length, backend, rng) if guard == "rollouts" else None

    def estimate(K_now: np.ndarray) -> np.ndarray:
        if gradient == "exact":
            return maml_gradient(ts, K_now, eta, weights)
        if gradient == "first_order":
            return first_order_maml_gradient(ts, K_now, eta, weights)
        return zo_maml_gradient(ts, K_now, eta=eta, rng=rng, backend=backend, **zo)

    def result(reason: str) -> MetaTrainingResult:
        b = state["best_iteration"]
        return MetaTrainingResult(K.copy(), history, reason, initial, state["K_best"].copy(), b,
                                  float(history.records[b]["meta_objective"]), settings,
                                  n_iterations=len(history) - 1,
                                  converged=reason == "tolerance")

    def save() -> None:
        if path is not None:
            state["K"] = K
            _save_checkpoint(path, fingerprint, state, history, rng)

    from tqdm.auto import tqdm
    done = len(history) - 1
    bar = tqdm(total=n_iterations, initial=min(done, n_iterations), disable=not progress,
               desc="meta-PO", unit="it", leave=False)
    stop_reason = "max_iterations"
    try:
        for it in range(done, n_iterations):
            t0 = time.perf_counter()
            try:
                G = estimate(K)
                with np.errstate(over="ignore", invalid="ignore"):
                    grad_norm = float(np.linalg.norm(G))
                ok = bool(np.isfinite(grad_norm))
            except (RolloutOverflowError, UnstablePolicyError):
                G, grad_norm, ok = None, math.inf, False
            step, backtracks, accepted = alpha, 0, False
            if not ok and guard == "none":
                state["K"] = K
                raise TrainingDivergedError(
                    f"iteration {it + 1}: the gradient estimate at the current gain overflowed: "
                    f"the plain update (guard='none') left the stabilising set. Use "
                    f"guard='rollouts', or a smaller alpha; K_best holds the best gain seen.",
                    result=result("diverged"))
            if not ok and guard == "rollouts" and state["K_prev"] is not None:
                K = state["K_prev"]          # model-free rollback to the last gain that worked
                state["K_prev"] = None
            if ok:
                if outer_update == "adam_clipped":
                    if grad_norm > ADAM_CLIP:
                        G = G * (ADAM_CLIP / grad_norm)
                    state["adam_t"] += 1
                    t = state["adam_t"]
                    state["adam_m"] = ADAM_BETA1 * state["adam_m"] + (1 - ADAM_BETA1) * G
                    state["adam_v"] = ADAM_BETA2 * state["adam_v"] + (1 - ADAM_BETA2) * G * G
                    m_hat = state["adam_m"] / (1 - ADAM_BETA1 ** t)
                    v_hat = state["adam_v"] / (1 - ADAM_BETA2 ** t)
                    direction = m_hat / (np.sqrt(v_hat) + ADAM_EPS)
                else:
                    direction = G
                if guard_check is not None:
                    guard_check.start(K)
                for backtracks in range(max_backtracks + 1):
                    K_new = K - step * direction
                    if not np.all(np.isfinite(K_new)):
                        safe = False
                    elif guard == "none":
                        safe = True
                    elif guard == "model":
                        safe = is_maml_stabilizing(ts, K_new, eta)
                    else:
                        safe = guard_check.accepts(K_new)
                    if safe:
                        accepted = True
                        break
                    step *= 0.5
            if accepted:
                state["K_prev"] = K
                K = K_new
            record = {"iteration": it + 1,
                      "meta_objective": maml_objective(ts, K, eta, weights),
                      "cost_gap_ratio": cost_gap_ratio(ts, K, J_star),
                      "grad_norm": grad_norm, "step": step if accepted else 0.0,
                      "backtracks": backtracks, "rejected": int(not accepted),
                      "seconds": time.perf_counter() - t0}
            history.append(record)
            if record["meta_objective"] < history.records[state["best_iteration"]]["meta_objective"]:
                state["best_iteration"], state["K_best"] = it + 1, K.copy()
            bar.update(1)
            bar.set_postfix(ratio=f"{record['cost_gap_ratio']:.4g}", refresh=False)
            if (it + 1) % checkpoint_every == 0 or it + 1 == n_iterations:
                save()
            recent = history.records[-max_consecutive_rejections:]
            if (len(history) > max_consecutive_rejections
                    and all(r["rejected"] for r in recent)):
                save()
                raise TrainingStalledError(
                    f"the last {max_consecutive_rejections} updates were all rejected: the gradient "
                    f"estimate overflows or every step is refused by guard={guard!r}. Reduce the "
                    f"smoothing radius (perturbed gains K + U must stay stabilising), eta or alpha, "
                    f"or start from a gain with more stability margin, or use two_point=True. "
                    f"The best gain seen (iteration {state['best_iteration']}) is in "
                    f"err.result.K_best.", result=result("stalled"))
            if callback is not None and callback(record, K.copy()):
                stop_reason = "callback"
                break
            if ok and grad_norm <= tol:
                stop_reason = "tolerance"
                break
    finally:
        bar.close()
    if stop_reason != "max_iterations" or done >= n_iterations:
        save()
    final = history.records[-1]["meta_objective"]
    if needs_length and zo["rollout_length"] is not None and math.isfinite(final):
        try:
            l_end = mixing_rollout_length(ts, K)
        except (UnstablePolicyError, ValidationError):
            l_end = None
        if (l_end is not None and length < l_end
                and np.max(rollout_bias(ts, K, length)) > 2 * ROLLOUT_BIAS_TOLERANCE
                and length >= mixing_rollout_length(ts, K_start)):
            _warn_length(ts, K, length, l_end, "the final gain")
    if stop_reason == "max_iterations" and not final <= initial["meta_objective"]:
        stop_reason = "no_improvement"
        b = state["best_iteration"]
        warnings.warn(TrainingWorsenedWarning(
            f"meta-training ended worse than it started: meta-objective {initial['meta_objective']:.6g} "
            f"-> {final:.6g} (cost-gap ratio {initial['cost_gap_ratio']:.4g} -> "
            f"{history.records[-1]['cost_gap_ratio']:.4g}). The best iterate is iteration {b} "
            f"(meta-objective {history.records[b]['meta_objective']:.6g}, result.K_best). Check the "
            f"roll-out length, reduce alpha, or use two_point=True."), stacklevel=2)
    return result(stop_reason)


def _warn_length(ts, K, length: int, better: int, where: str) -> None:
    bias = float(np.max(rollout_bias(ts, K, length)))
    rho = float(np.max(spectral_radius_of(closed_loop(as_batch(ts), np.broadcast_to(K, (len(ts),) + K.shape)))))
    warnings.warn(RolloutLengthWarning(
        f"rollout_length = {length} is short for the closed loop at {where} (spectral radius "
        f"{rho:.4g}): the expected {length}-step cost is off the ergodic cost by up to "
        f"{100 * bias:.3g}%, and its gradient may point away from the true one. Use "
        f"rollout_length >= {better} (bias <= {100 * ROLLOUT_BIAS_TOLERANCE:g}%), or "
        f"rollout_length=None to choose it from the mixing time."), stacklevel=3)
