"""Model-agnostic meta-policy optimisation: Algorithm 3 of the ZO-MAML paper, as a tool
with per-iteration history, step rejection, checkpoints and progress bars."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np

from .._validation import as_float_array, as_rng, check_positive
from ..exceptions import (NotMAMLStabilizingError, RolloutOverflowError, TrainingStalledError,
                          UnstablePolicyError, ValidationError)
from ..lqr.policy import check_gain
from ..lqr.tasks import as_batch
from .history import History
from .objective import (as_taskset, check_meta_learnable, cost_gap_ratio, first_order_maml_gradient,
                        is_maml_stabilizing, maml_gradient, maml_objective, optimal_costs)
from .zeroth_order import zo_maml_gradient

__all__ = ["meta_policy_optimization", "MetaTrainingResult"]

GradientKind = Literal["zo", "exact", "first_order"]
_ZO_OPTIONS = {"n_perturbations": 100, "inner_perturbations": None, "rollout_length": 50,
               "radius": 0.05, "task_batch": None, "two_point": False, "oracle": "rollout"}
_CHECKPOINT_VERSION = 1


@dataclass
class MetaTrainingResult:
    """Result of :func:`meta_policy_optimization`.

    Attributes
    ----------
    K : ndarray (k, d)
        Final meta-policy.
    history : History
        One record per iteration: ``iteration``, ``meta_objective`` (exact ``L(K)``),
        ``cost_gap_ratio``, ``grad_norm`` (of the gradient used), ``step`` (the step size
        taken, 0 if rejected), ``backtracks``, ``rejected`` (0/1), ``seconds``.
    stop_reason : str
        ``"n_iterations"``, ``"tolerance"``, ``"callback"`` or ``"stalled"``.
    initial : dict
        ``meta_objective`` and ``cost_gap_ratio`` at ``K0`` (before any update).
    """

    K: np.ndarray
    history: History
    stop_reason: str
    initial: dict

    @property
    def converged(self) -> bool:
        return self.stop_reason == "tolerance"


def _fingerprint(tasks, K0, settings: dict) -> str:
    h = hashlib.sha256()
    for name in ("A", "B", "Q", "R", "Psi", "Sigma0"):
        h.update(np.ascontiguousarray(getattr(tasks, name)).tobytes())
    h.update(np.ascontiguousarray(K0).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _save_checkpoint(path: str, fingerprint: str, K: np.ndarray, history: History,
                     rng: np.random.Generator) -> None:
    state = {"version": _CHECKPOINT_VERSION, "fingerprint": fingerprint, "K": K.tolist(),
             "records": history.records, "rng_state": rng.bit_generator.state}
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, path)  # atomic: a kill leaves either the old or the new checkpoint


def _load_checkpoint(path: str, fingerprint: str, rng: np.random.Generator):
    with open(path) as fh:
        state = json.load(fh)
    if state.get("version") != _CHECKPOINT_VERSION or state.get("fingerprint") != fingerprint:
        raise ValidationError(f"checkpoint {path!r} belongs to a different run (tasks, K0 or "
                              f"settings differ); delete it or pass another checkpoint path.")
    rng.bit_generator.state = state["rng_state"]
    return np.array(state["K"], dtype=np.float64), History(state["records"])


def meta_policy_optimization(tasks: Any, K0: Any, *, alpha: float, eta: float, n_iterations: int,
                             gradient: GradientKind = "zo", rng: Any = None,
                             backend: str | None = None, progress: bool = True,
                             checkpoint: str | os.PathLike | None = None, checkpoint_every: int = 10,
                             callback: Callable[[dict, np.ndarray], Any] | None = None,
                             tol: float = 0.0, max_backtracks: int = 20,
                             max_consecutive_rejections: int = 25,
                             weights: Any = None, **estimator_options: Any) -> MetaTrainingResult:
    """Meta-policy optimisation ``K_{n+1} = K_n - alpha grad L(K_n)`` (Algorithm 3).

    Parameters
    ----------
    tasks : TaskSet
    K0 : array_like (k, d)
        MAML-stabilising initial gain (Definition 1).
    alpha, eta : float
        Meta learning rate and adaptation rate.
    n_iterations : int
    gradient : {"zo", "exact", "first_order"}
        Algorithm 2 (:func:`zo_maml_gradient`), the exact meta-gradient
        (:func:`maml_gradient`), or first-order MAML (Hessian term dropped).
    rng : Generator or seed
        Source of all randomness; a seed makes the run reproducible.
    backend : str, optional
        Roll-out backend for ``gradient="zo"``.
    progress : bool
        Show a tqdm progress bar.
    checkpoint : path, optional
        JSON checkpoint written every ``checkpoint_every`` iterations and at the end
        (atomically). If it exists when the run starts, the run resumes from it and reaches
        the same final ``K`` as an uninterrupted run with the same seed.
    callback : callable(record, K), optional
        Called after every iteration; a truthy return value stops the run.
    tol : float
        Stop when the norm of the gradient estimate falls below ``tol`` (Algorithm 3's epsilon).
    max_backtracks : int
        An update that leaves the MAML-stabilising set, or whose gradient estimate
        overflowed, is retried with half the step up to this many times; if all fail the
        iteration is rejected (``K`` unchanged, ``rejected = 1`` in the history).
    max_consecutive_rejections : int
        After this many rejected iterations in a row the run stops with
        :class:`TrainingStalledError` (after saving the checkpoint).
    weights : array_like, optional
        Task weights for the exact objective and gradients.
    **estimator_options
        For ``gradient="zo"``: ``n_perturbations`` (100), ``inner_perturbations`` (= M),
        ``rollout_length`` (50), ``radius`` (0.05), ``task_batch``, ``two_point``, ``oracle``.

    Raises
    ------
    TrainingStalledError
        If ``max_consecutive_rejections`` iterations in a row are rejected.
    NotMetaLearnableError
        If the tasks provably share no stabilising gain.
    NotMAMLStabilizingError
        If ``K0`` is not MAML-stabilising.
    """
    ts = as_taskset(tasks)
    batch = as_batch(ts)
    K_start = np.array(check_gain(batch, K0, name="K0")[0])
    K = K_start
    alpha = check_positive(alpha, "alpha")
    eta = check_positive(eta, "eta", allow_zero=True)
    n_iterations = check_positive(n_iterations, "n_iterations", allow_zero=True, integer=True)
    checkpoint_every = check_positive(checkpoint_every, "checkpoint_every", integer=True)
    max_consecutive_rejections = check_positive(max_consecutive_rejections,
                                                "max_consecutive_rejections", integer=True)
    if gradient not in ("zo", "exact", "first_order"):
        raise ValidationError(f"gradient must be 'zo', 'exact' or 'first_order'; got {gradient!r}.")
    unknown = set(estimator_options) - set(_ZO_OPTIONS)
    if unknown or (estimator_options and gradient != "zo"):
        raise ValidationError(f"unknown estimator options {sorted(unknown or estimator_options)} for "
                              f"gradient={gradient!r}; the zo estimator takes {sorted(_ZO_OPTIONS)}.")
    zo_options = {**_ZO_OPTIONS, **estimator_options}
    if weights is not None:
        weights = as_float_array(weights, "weights", shape=(len(ts),))
    check_meta_learnable(ts)
    if not is_maml_stabilizing(ts, K, eta):
        raise NotMAMLStabilizingError(
            f"K0 is not MAML-stabilising for eta = {eta:g} (Definition 1): K0 or an adapted gain "
            f"K0 - eta grad J_i(K0) does not stabilise some task. Use a stabilising K0 (e.g. "
            f"metalqr.common_stabilizing_gain(tasks)) or a smaller eta.")
    rng = as_rng(rng)
    settings = {"alpha": alpha, "eta": eta, "gradient": gradient, "backend": backend,
                "weights": None if weights is None else weights.tolist(), "zo": zo_options,
                "max_backtracks": max_backtracks}
    fingerprint = _fingerprint(ts, K, settings)
    history = History()
    path = None if checkpoint is None else os.fspath(checkpoint)
    if path is not None and os.path.exists(path):
        K, history = _load_checkpoint(path, fingerprint, rng)
    J_star = optimal_costs(ts)
    initial = {"meta_objective": maml_objective(ts, K_start, eta, weights),
               "cost_gap_ratio": cost_gap_ratio(ts, K_start, J_star)}

    def estimate(K_now: np.ndarray) -> np.ndarray:
        if gradient == "exact":
            return maml_gradient(ts, K_now, eta, weights)
        if gradient == "first_order":
            return first_order_maml_gradient(ts, K_now, eta, weights)
        return zo_maml_gradient(ts, K_now, eta=eta, rng=rng, backend=backend, **zo_options)

    from tqdm.auto import tqdm
    bar = tqdm(total=n_iterations, initial=len(history), disable=not progress, desc="meta-PO",
               unit="it", leave=False)
    stop_reason = "n_iterations"
    try:
        for it in range(len(history), n_iterations):
            t0 = time.perf_counter()
            try:
                G = estimate(K)
                with np.errstate(over="ignore", invalid="ignore"):
                    grad_norm = float(np.linalg.norm(G))
                ok = bool(np.isfinite(grad_norm))
            except (RolloutOverflowError, UnstablePolicyError):
                G, grad_norm, ok = None, math.inf, False
            step, backtracks, accepted = alpha, 0, False
            if ok:
                for backtracks in range(max_backtracks + 1):
                    K_new = K - step * G
                    if is_maml_stabilizing(ts, K_new, eta):
                        accepted = True
                        break
                    step *= 0.5
            if accepted:
                K = K_new
            record = {"iteration": it + 1,
                      "meta_objective": maml_objective(ts, K, eta, weights),
                      "cost_gap_ratio": cost_gap_ratio(ts, K, J_star),
                      "grad_norm": grad_norm, "step": step if accepted else 0.0,
                      "backtracks": backtracks, "rejected": int(not accepted),
                      "seconds": time.perf_counter() - t0}
            history.append(record)
            bar.update(1)
            bar.set_postfix(ratio=f"{record['cost_gap_ratio']:.4g}", refresh=False)
            if path is not None and ((it + 1) % checkpoint_every == 0 or it + 1 == n_iterations):
                _save_checkpoint(path, fingerprint, K, history, rng)
            recent = history.records[-max_consecutive_rejections:]
            if len(recent) == max_consecutive_rejections and all(r["rejected"] for r in recent):
                if path is not None:
                    _save_checkpoint(path, fingerprint, K, history, rng)
                raise TrainingStalledError(
                    f"the last {max_consecutive_rejections} updates were all rejected: the gradient "
                    f"estimate overflows or every step leaves the MAML-stabilising set. Reduce the "
                    f"smoothing radius (perturbed gains K + U must stay stabilising), eta or alpha, "
                    f"or start from a gain with more stability margin, or use two_point=True.",
                    result=MetaTrainingResult(K, history, "stalled", initial))
            if callback is not None and callback(record, K.copy()):
                stop_reason = "callback"
                break
            if ok and grad_norm <= tol:
                stop_reason = "tolerance"
                break
    finally:
        bar.close()
    if path is not None and stop_reason != "n_iterations":
        _save_checkpoint(path, fingerprint, K, history, rng)
    return MetaTrainingResult(K, history, stop_reason, initial)
