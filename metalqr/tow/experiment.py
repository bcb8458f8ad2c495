"""Compare the weighting strategies on one task stream (Section 5 of the TOW paper).

Train one learner with each weighting strategy on the same task stream and evaluate it on held-out
tasks (Section 5 of the TOW paper, at CPU scale).

Every strategy sees the same mini-batches (window ``k`` draws its ``T`` mini-batches of
``M`` tasks from ``default_rng([seed, k])``), starts from the same initialisation and uses
the same meta-optimiser (SGD or Adam). Baselines update once per mini-batch with their
weights; TOW solves Algorithm 1 over the window and follows the optimised trajectory.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .. import _checkpoint
from .._validation import (as_float_array, as_seed, check_bool, check_choice, check_int, check_real, check_size)
from ..exceptions import (CheckpointError, TrainingDivergedError, TrainingWorsenedWarning, ValidationError,
                          ValidationTypeError)
from ._checks import check_beta_u, check_source
from .learner import MAML, ProtoNet, _check_learner as check_learner
from .mlp import MLP
from .optimizers import OPTIMIZERS, make_optimizer
from .tasks import SinusoidTasks
from .weighting import LINE_SEARCHES, TERMINAL_COSTS
from .weighting_strategies import Window, get_strategy, strategies as registered_strategies

__all__ = ["StrategyResult", "run_experiment", "run_sinusoid_experiment", "make_learner", "STRATEGIES",
           "LEARNERS", "NETS", "save_results", "plot_curves", "plot_weights", "PRESETS", "PAPER_PRESET",
           "exponential_moving_average", "UNITS"]

#: The built-in strategies' names (a snapshot of the registry at import; the live list is
#: :func:`metalqr.tow.strategies`).
STRATEGIES = registered_strategies()
LEARNERS = ("fomaml", "maml", "protonet")
VALUE_MODELS = ("diagonal", "full")
CHECKPOINT_KIND = "tow_experiment"

#: The TOW paper's Omniglot configuration, used by ``preset="paper"``.
#:
#: From Nguyen, Do & Carneiro 2023, Section 5.1 ("For all experiments, ..." paragraph) and
#: Figure 1's caption:
#:
#: * ``M = 10`` tasks per mini-batch ("The mini-batch size is M = 10 tasks for Omniglot");
#: * ``T = 5`` ("we report the result for the case M = 10 and T = 5"; the same paragraph first
#:   says T = 10 for Omniglot, but the reported results use T = 5);
#: * Adam meta-optimiser, ``alpha = 1e-4`` ("the state-transition dynamics f follows the
#:   formula of Adam optimiser"; "The learning rate for the meta-parameters, alpha, is set at
#:   10^-4");
#: * inner loop ``gamma = 0.1`` with 5 gradient updates ("the learning rate gamma of task
#:   adaptation ... is 0.1 for Omniglot ... with 5 gradient updates"): a learner setting,
#:   used by ``metalqr tow --preset paper`` and checked by :func:`run_experiment`;
#: * 2 iLQR iterations, ``beta_u = 10``, ``mu_u = 1/M``; ``kappa = 1.2`` for the baselines;
#:   Algorithm 1's own line search and acceptance rule (``line_search="paper"``);
#: * 1,000 test tasks (Table 1) and curves on 100 validation tasks (5-way 1-shot),
#:   smoothed by an exponential moving average with smoothing factor 0.1 (Figure 1).
PAPER_PRESET = dict(T=5, M=10, optimizer="adam", alpha=1e-4, beta_u=10.0, kappa=1.2, n_ilqr=2, n_test=1000,
                    n_val=100, curve_smoothing=0.1, value_model="diagonal", line_search="paper",
                    terminal_cost="none", gamma=0.1, inner_steps=5)
#: The presets of :func:`run_experiment` and ``metalqr tow --preset``, by name.
PRESETS = {"paper": PAPER_PRESET}
#: The loss a preset's settings were made for (``preset="paper"``: the Omniglot
#: classification of Section 5.1; Section 5 of the TOW paper gives no regression setting).
PRESET_LOSS = {"paper": "ce"}
#: Settings used only by the "tow" strategy (explicitly given without it: refused).
TOW_ONLY_SETTINGS = ("beta_u", "n_ilqr", "value_model", "line_search", "terminal_cost")
#: A strategy whose final validation metric is worse than its initial one by this much warns
#: (:class:`~metalqr.exceptions.TrainingWorsenedWarning`): MSE ``WORSENED_FACTOR`` times the
#: initial one, accuracy ``WORSENED_ACCURACY_DROP`` below it.
WORSENED_FACTOR, WORSENED_ACCURACY_DROP = 2.0, 0.1
#: run_experiment's own defaults (without a preset).
_DEFAULTS = dict(T=5, M=5, optimizer="sgd", alpha=0.05, beta_u=10.0, kappa=1.2, n_ilqr=2, n_test=600, n_val=100,
                 curve_smoothing=None, value_model="diagonal", line_search="metalqr", terminal_cost="none")


def exponential_moving_average(values, factor: float) -> np.ndarray:
    """Return the exponential moving average of ``values`` (the TOW paper's Figure 1).

    ``s_0 = v_0``, ``s_i = factor v_i + (1 - factor) s_{i-1}``: the exponential moving average
    "with smoothing factor 0.1" of the TOW paper's Figure 1 (``factor = 0.1``: a new point moves
    the curve by a tenth of its distance).

    Parameters
    ----------
    values : (n,) array_like of float
        The curve ``v_0 .. v_{n-1}``.
    factor : float, in (0, 1]
        Weight of the newest point (1: no smoothing).

    Returns
    -------
    (n,) ndarray
        The smoothed curve ``s_0 .. s_{n-1}``.

    Raises
    ------
    ValidationError
        Non-finite or non-1-D values; ``factor`` outside ``(0, 1]``.

    References
    ----------
    TOW paper [nguyen2023tow], Figure 1 (smoothing factor 0.1).
    """
    values = as_float_array(values, "values", ndim=1)
    factor = check_real(factor, "factor", minimum=0.0, maximum=1.0, min_inclusive=False)
    out = np.empty_like(values)
    for i, v in enumerate(values):
        out[i] = v if i == 0 else factor * v + (1.0 - factor) * out[i - 1]
    return out

#: Units of the quantities written by :func:`save_results`.
UNITS = {"seconds": "s (wall-clock, training updates only: weights and meta-updates, summed over "
                    "windows; evaluation and checkpointing excluded)",
         "time_vs_uniform": "ratio of seconds to uniform's seconds (strategies interleaved window by "
                            "window in one run)",
         "mse": "mean squared error on the query set after adaptation (output units squared)",
         "accuracy": "fraction of query examples classified correctly after adaptation, in [0, 1]",
         "ci95": "half-width of the normal 95% confidence interval of the mean over tasks",
         "window": "training windows done (each T mini-batches of M tasks)"}


@dataclass
class StrategyResult:  # numpydoc ignore=PR01
    """Result of one strategy in :func:`run_experiment`.

    Attributes
    ----------
    name : str
        The strategy.
    metric : (n_test,) ndarray
        Per-test-task metric (MSE or accuracy) of the final meta-parameters.
    seconds : float
        Wall time of the training updates (weights and meta-updates) summed over windows, s.
    metric_name : {"mse", "accuracy"}
        What ``metric`` measures.
    curve : list of (window, mean, ci95)
        Validation metric over the ``n_val`` validation tasks at window 0 (the initial
        parameters) and every ``eval_every`` windows: its mean and the half-width of its
        normal 95% confidence interval.
    weights, groups : (windows, T, M) ndarray or None
        Weights used, and the tasks' groups (amplitude or alphabet).
    window_seconds : (windows,) ndarray or None
        Training time of each window, s.
    settings : dict
        Every setting needed to rerun (see :func:`run_experiment`).
    params : (D,) ndarray or None
        The final meta-parameters ``x`` (the first ``D`` entries of the optimiser state).
    """

    name: str
    metric: np.ndarray
    seconds: float
    metric_name: str = "mse"
    curve: list = field(default_factory=list)
    weights: np.ndarray | None = None
    groups: np.ndarray | None = None
    window_seconds: np.ndarray | None = None
    settings: dict = field(default_factory=dict)
    params: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationTypeError(f"name must be a non-empty str; got {self.name!r}.")
        self.metric = as_float_array(self.metric, "metric", ndim=1, allow_empty=False)
        self.seconds = check_real(self.seconds, "seconds", minimum=0.0)
        self.metric_name = check_choice(self.metric_name, "metric_name", ("mse", "accuracy"))
        if not isinstance(self.settings, dict):
            raise ValidationTypeError(f"settings must be a dict; got {type(self.settings).__name__}.")

    @property
    def mean(self) -> float:
        """Mean of :attr:`metric` over the test tasks."""
        return float(self.metric.mean())

    @property
    def ci95(self) -> float:
        """Return the half-width of the 95% confidence interval of the mean.

        Half-width of the normal 95% confidence interval of the mean over test tasks (NaN
        with a single test task).
        """
        return _ci95(self.metric)


def _ci95(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan")
    return float(1.96 * values.std(ddof=1) / np.sqrt(values.size))


#: The networks of :func:`make_learner` and ``metalqr tow --net``.
NETS = ("mlp", "conv")


def _image_side(source) -> int | None:
    """Return the side of the square images ``source`` yields, or None.

    Side of the square grey images ``source`` yields (flattened to ``n_in = side**2``), or None
    when its inputs are not images (sinusoid inputs, feature vectors).
    """
    from .omniglot import OmniglotTasks
    from .tasks import DigitsTasks, ImageFolderTasks
    if not isinstance(source, (OmniglotTasks, DigitsTasks, ImageFolderTasks)):
        return None
    side = int(round(np.sqrt(source.n_in)))
    return side if side * side == source.n_in else None


def make_learner(kind: str, source, *, net: str = "mlp", hidden: int = 40, gamma: float = 0.01,
                 inner_steps: int = 1, embedding: int = 16, channels: int = 8):
    """Return a learner on a network sized for ``source``: the MLP, or the small ConvNet on image sources.

    Parameters
    ----------
    kind : {"fomaml", "maml", "protonet"}
        First-order MAML, second-order MAML, or Prototypical Networks.
    source : task source, or any object with ``n_in``, ``n_out`` and ``loss``
        Sizes the network (e.g. :class:`SinusoidTasks`).
    net : {"mlp", "conv"}
        ``"mlp"`` (default): :class:`MLP` with one hidden layer of ``hidden`` units.
        ``"conv"``: :class:`~metalqr.tow.ConvNet`, ``min(3, log2 side)`` blocks of [3 x 3
        convolution with ``channels`` maps, ReLU, 2 x 2 max-pooling] and a linear layer (the
        "Conv-4" embedding of MAML / Prototypical Networks on Omniglot, shrunk for a CPU);
        only for sources whose inputs are square grey images (:class:`OmniglotTasks`,
        :class:`DigitsTasks`, :class:`ImageFolderTasks`), and not with ``kind="maml"``
        (the ConvNet has no Hessian-vector product).
    hidden : int, >= 1
        Hidden width of the MLP (``net="mlp"``).
    gamma : float, >= 0
        Inner (adaptation) step size of MAML, Eq. (4) (ignored by ProtoNet).
    inner_steps : int, >= 1
        Inner gradient steps of MAML.
    embedding : int, >= 1
        Embedding width of ProtoNet (either network).
    channels : int, >= 1
        Feature maps of every convolution (``net="conv"``).

    Returns
    -------
    MAML or ProtoNet
        The learner, on a new network (``loss`` from ``source``).

    Raises
    ------
    ValidationError
        Unknown ``kind`` or ``net`` (valid ones listed), a malformed source or size, ProtoNet
        on a regression source, ``net="conv"`` on a source whose inputs are not images, or
        ``net="conv"`` with ``kind="maml"``.
    """
    kind = check_choice(kind, "kind", LEARNERS)
    net = check_choice(net, "net", NETS)
    source = check_source(source, need_sample=False)      # only its sizes and loss are used
    hidden = check_int(hidden, "hidden", minimum=1)
    gamma = check_real(gamma, "gamma", minimum=0.0)
    inner_steps = check_int(inner_steps, "inner_steps", minimum=1)
    embedding = check_int(embedding, "embedding", minimum=1)
    channels = check_int(channels, "channels", minimum=1)
    if kind == "protonet" and source.loss != "ce":
        raise ValidationError("kind='protonet' needs a classification source (loss 'ce'); use 'fomaml' or "
                              "'maml' for regression.")
    if net == "conv":
        side = _image_side(source)
        if side is None:
            raise ValidationError(f"net='conv' needs a source of square images (OmniglotTasks, DigitsTasks, "
                                  f"ImageFolderTasks); {type(source).__name__} gives vectors of width "
                                  f"{source.n_in}: use net='mlp'.")
        if side < 2:
            raise ValidationError(f"net='conv' needs images of at least 2 x 2 pixels; the source's are "
                                  f"{side} x {side}: use net='mlp'.")
        if kind == "maml":
            raise ValidationError("net='conv' has no Hessian-vector product, so kind='maml' (second order) is not "
                                  "available on it; use kind='fomaml' or 'protonet', or net='mlp'.")
        from .convnet import ConvNet
        blocks = min(3, side.bit_length() - 1)
        if kind == "fomaml":
            return MAML(ConvNet(source.n_in, channels, blocks, source.n_out, source.loss), gamma, inner_steps,
                        first_order=True)
        return ProtoNet(ConvNet(source.n_in, channels, blocks, embedding, "mse"))
    if kind in ("fomaml", "maml"):
        return MAML(MLP(source.n_in, hidden, source.n_out, source.loss), gamma, inner_steps,
                    first_order=(kind == "fomaml"))
    return ProtoNet(MLP(source.n_in, hidden, embedding, "mse"))


def _save_state(path: str, fingerprint: str, k: int, z, curve, weights, groups, window_seconds) -> None:
    """Checkpoint one strategy after ``k`` windows (versioned, checksummed, atomic)."""
    _checkpoint.save(path, CHECKPOINT_KIND, fingerprint,
                     {"z": np.asarray(z), "curve": np.array(curve, dtype=float).reshape(-1, 3),
                      "weights": np.array(weights, dtype=float), "groups": np.array(groups, dtype=float),
                      "window_seconds": np.array(window_seconds, dtype=float)},
                     {"k": int(k)})


def _load_state(path: str, fingerprint: str, *, z_size: int, T: int, M: int, eval_every: int,
                n_iterations: int):
    """Load and cross-check one strategy's checkpoint.

    Load and cross-check one strategy's checkpoint; any inconsistency (a bumped window counter,
    a truncated history, a wrong state size) is one :class:`CheckpointError`.
    """
    arrays, meta = _checkpoint.load(path, CHECKPOINT_KIND, fingerprint)
    fail = lambda why: CheckpointError(f"checkpoint {path!r} is inconsistent ({why}); delete it (or run "
                                       f"without --resume / checkpoint) to start afresh.")
    try:
        k = meta["k"]
        z, curve, weights = arrays["z"], arrays["curve"], arrays["weights"]
        groups, secs = arrays["groups"], arrays["window_seconds"]
    except KeyError as exc:
        raise fail(f"missing entry {exc}") from None
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise fail(f"window counter {k!r}")
    if k > n_iterations:
        raise CheckpointError(f"checkpoint {path!r} is at window {k}, beyond n_iterations={n_iterations}; "
                              f"ask for at least {k} windows, or delete it to start afresh.")
    n_curve = k // eval_every + 1 if eval_every else 0          # window 0 included
    checks = [(z.shape == (z_size,), f"state of shape {z.shape}, expected ({z_size},)"),
              (weights.shape == (k, T, M), f"weights of shape {weights.shape} for {k} windows"),
              (groups.shape == (k, T, M), f"groups of shape {groups.shape} for {k} windows"),
              (secs.shape == (k,), f"{secs.shape[0] if secs.ndim else '?'} window times for {k} windows"),
              (curve.shape == (n_curve, 3), f"{curve.shape[0]} curve points for {k} windows")]
    for ok, why in checks:
        if not ok:
            raise fail(why)
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(weights)) and np.all(secs >= 0)):
        raise fail("non-finite state or weights")
    if n_curve and not np.array_equal(curve[:, 0], eval_every * np.arange(n_curve)):
        raise fail("curve windows do not match eval_every")
    return (k, z.copy(), [(int(a), float(b), float(c)) for a, b, c in curve], list(weights),
            [list(g) for g in groups], list(secs))


def _check_strategies(strategies) -> tuple:
    valid = registered_strategies()
    if strategies is None:
        return valid
    if isinstance(strategies, str):
        raise ValidationTypeError(f"strategies must be a sequence of names, e.g. ({strategies!r},); got "
                                  f"the string {strategies!r}.")
    if not isinstance(strategies, (list, tuple)):
        raise ValidationTypeError(f"strategies must be a list or tuple of names from {valid}; got "
                                  f"{type(strategies).__name__}.")
    if not strategies:
        raise ValidationError(f"strategies must name at least one of {valid}.")
    unknown = [s for s in strategies if not (isinstance(s, str) and s in valid)]
    if unknown:
        raise ValidationError(f"unknown strategies {unknown}; choose from the registered {valid} (add one "
                              f"with metalqr.tow.register_strategy).")
    if len(set(strategies)) != len(strategies):
        raise ValidationError(f"strategies must not repeat a name; got {list(strategies)}.")
    return tuple(strategies)


def _version() -> str:
    from .._version import __version__
    return __version__


def run_experiment(source, learner, strategies: Sequence[str] | None = None, *, n_iterations: int = 100,
                   T: int | None = None, M: int | None = None, optimizer: str | None = None,
                   alpha: float | None = None, beta_u: float | None = None, kappa: float | None = None,
                   n_ilqr: int | None = None, n_test: int | None = None, n_val: int | None = None,
                   rng: Any = 0, eval_every: int = 0, progress: bool = False,
                   value_model: str | None = None, checkpoint: str | None = None,
                   checkpoint_every: int = 10, line_search: str | None = None,
                   terminal_cost: str | None = None, curve_smoothing: float | None = None,
                   preset: str | None = None) -> list[StrategyResult]:
    """Train a learner with each weighting strategy (Section 5 of the TOW paper).

    Train ``learner`` with each strategy for ``n_iterations`` windows of ``T`` mini-batches of
    ``M`` tasks (Section 5 of the TOW paper).

    Every strategy sees the same mini-batches (window ``k`` draws them from
    ``default_rng([seed, k])``, ``seed`` the root seed from ``rng``), starts from
    ``learner.init(seed)`` and uses the same
    meta-optimiser. The strategies are **interleaved window by window** (window ``k`` of every
    strategy, then window ``k + 1``), and each strategy's training time is summed over its
    windows, so that a change of machine load during the run affects all of them alike and
    ``time_vs_uniform`` is a fair ratio. Each window is handed to the strategy's
    :meth:`~metalqr.tow.WeightingStrategy.window` (the registry,
    :func:`metalqr.tow.strategies`; no strategy is special-cased here). The built-in
    baselines update once per mini-batch with their weights (``uniform``: ``1/M``;
    ``exploration`` / ``exploitation``: Eq. (12), see :func:`dirichlet_weights`); ``tow``
    solves Algorithm 1 over the window (:func:`tow_weights`) and follows the optimised
    trajectory. A strategy's ``rng`` is ``default_rng([seed, k, crc32(name)])``.

    With ``checkpoint`` (a folder, locked against a second run for the duration), each
    strategy's state (optimiser state, curve, weights, window times) is saved every
    ``checkpoint_every`` windows and at the end through ``metalqr._checkpoint``
    (versioned, checksummed, atomic; its fingerprint covers the seed, every training setting,
    the source, the learner and the initial parameters, but not ``n_iterations``, ``n_test``
    and the other strategies, which do not change a strategy's state after ``k`` windows). A rerun with the same settings resumes
    from it and gives the same result as an uninterrupted run; a larger ``n_iterations``
    extends a finished run.

    Parameters
    ----------
    source : task source
        Where tasks come from (e.g. :class:`SinusoidTasks`): ``sample(rng, n, train)``,
        ``n_in``, ``n_out`` and ``loss``.
    learner : MAML or ProtoNet
        Built for ``source`` (see :func:`make_learner`).
    strategies : sequence of str, optional
        Names of registered strategies (:func:`metalqr.tow.strategies`; the built-ins are
        "uniform", "exploration", "exploitation", "tow"); default: every registered one.
    n_iterations : int, >= 1
        Training windows.
    T, M : int, >= 1
        Mini-batches per window and tasks per mini-batch (default 5, 5; paper preset 5, 10).
    optimizer : {"sgd", "adam"}
        Meta-optimiser (:class:`SGD` or :class:`Adam`); default "sgd" (paper preset: "adam").
    alpha : float, > 0
        Meta step size (default 0.05; paper preset 1e-4).
    beta_u : float, in (0, 1e12]
        TOW's prior precision, Eq. (7) (default 10).
    kappa : float, > 1
        Dirichlet concentration of the exploration / exploitation baselines, Eq. (12)
        (default 1.2).
    n_ilqr : int, >= 1
        Number of iLQR iterations per window for TOW (default 2).
    n_test, n_val : int, >= 2
        Held-out test tasks (final metric) and validation tasks (curve) (default 600, 100;
        paper preset 1000, 100).
    rng : int seed >= 0, Generator or None
        Root of every stream (``0`` by default). An int is the root ``seed`` itself; a
        Generator gives one draw, recorded as ``settings["seed"]`` (pass that int to rerun).
    eval_every : int, >= 0
        Evaluate the validation curve every this many windows (0: never).
    progress : bool
        Show a progress bar.
    value_model : {"diagonal", "full"}
        TOW's iLQR value model (default "diagonal").
    checkpoint : str or None
        Checkpoint folder.
    checkpoint_every : int, >= 1
        Save the checkpoint every this many windows (and at the end).
    line_search : {"metalqr", "paper"}
        TOW's line search and acceptance rule (:func:`tow_weights`; default "metalqr"; paper
        preset "paper").
    terminal_cost : {"none", "validation"}
        TOW's terminal cost (:func:`tow_weights`; default "none", Eq. (7)).
    curve_smoothing : float in (0, 1] or None
        Smoothing factor of the exponential moving average of the validation curve
        (:func:`exponential_moving_average`) written beside the raw curve by
        :func:`save_results` and drawn by :func:`plot_curves` (default None: none; paper
        preset 0.1, Figure 1).
    preset : {"paper"} or None
        Start from :data:`PAPER_PRESET` (Section 5.1 of the TOW paper) instead of the
        defaults above; every argument given explicitly overrides its preset value. The
        preset's inner loop (``gamma = 0.1``, 5 steps) belongs to the learner: a MAML
        ``learner`` with other values is run as given, and the difference is listed in
        ``settings["preset_overrides"]`` with every other override. The preset is for
        classification sources (``source.loss == "ce"``); on a regression source it is
        refused (its inner step diverges there, and the paper gives no regression setting).

    Returns
    -------
    list of StrategyResult
        In the order of ``strategies``; each carries ``settings`` (every value used, the
        ``preset`` and the ``preset_overrides``).

    Raises
    ------
    ValidationError
        Any malformed argument (unknown names are listed with the valid ones), a strategy
        returning weights of the wrong shape, ``preset="paper"`` on a regression source, or a
        TOW-only setting (``beta_u``, ``n_ilqr``, ``value_model``, ``line_search``,
        ``terminal_cost``) given explicitly while ``strategies`` lacks "tow".
    CheckpointError
        A damaged, edited or foreign checkpoint, or a checkpoint folder in use by another run.
    TrainingDivergedError
        A strategy's parameters became non-finite (reduce ``alpha``).

    Warns
    -----
    TrainingWorsenedWarning
        A strategy's final validation metric is far worse than the initial parameters' (MSE
        above 2 times it, accuracy 0.1 below it, or non-finite); the message names the
        strategy.

    References
    ----------
    TOW paper [nguyen2023tow], Section 5 (the experiments), Algorithm 1 (TOW) and Eq. (12)
    (the exploration / exploitation baselines).

    Examples
    --------
    A tiny comparison of uniform weighting and TOW on skewed sinusoids:

    >>> from metalqr.tow import SinusoidTasks, make_learner, run_experiment
    >>> source = SinusoidTasks()
    >>> learner = make_learner("fomaml", source, hidden=8)
    >>> results = run_experiment(source, learner, ["uniform", "tow"], n_iterations=2, T=2, M=3,
    ...                          n_test=4, n_val=2)
    >>> [r.name for r in results], results[1].weights.shape   # (windows, T, M)
    (['uniform', 'tow'], (2, 2, 3))
    >>> results[0].metric_name, results[0].metric.shape        # per-test-task MSE
    ('mse', (4,))
    """
    source = check_source(source)
    learner = check_learner(learner)
    strategies = _check_strategies(strategies)
    if preset is not None:
        preset = check_choice(preset, "preset", tuple(PRESETS))
        if source.loss != PRESET_LOSS[preset]:
            raise ValidationError(
                f"preset {preset!r} is the TOW paper's Omniglot classification setting (Section 5.1: MAML "
                f"gamma=0.1 with 5 inner steps, Adam alpha=1e-4) for classification sources (loss "
                f"{PRESET_LOSS[preset]!r}); source {type(source).__name__} is a regression (loss {source.loss!r}), "
                f"where it diverges. Drop preset and give the settings you want explicitly.")
    explicit = dict(beta_u=beta_u, n_ilqr=n_ilqr, value_model=value_model, line_search=line_search,
                    terminal_cost=terminal_cost)
    tow_only = [k for k in TOW_ONLY_SETTINGS if explicit[k] is not None]
    if tow_only and "tow" not in strategies:
        raise ValidationError(f"{', '.join(tow_only)}: only the 'tow' strategy uses "
                              f"{'it' if len(tow_only) == 1 else 'them'}, and strategies {list(strategies)} do not "
                              f"include it; add 'tow' to strategies or leave {', '.join(tow_only)} out.")
    given = dict(T=T, M=M, optimizer=optimizer, alpha=alpha, beta_u=beta_u, kappa=kappa, n_ilqr=n_ilqr,
                 n_test=n_test, n_val=n_val, value_model=value_model, line_search=line_search,
                 terminal_cost=terminal_cost, curve_smoothing=curve_smoothing)
    base = PRESETS[preset] if preset is not None else _DEFAULTS
    chosen = {k: (v if v is not None else base[k]) for k, v in given.items()}
    (T, M, optimizer, alpha, beta_u, kappa, n_ilqr, n_test, n_val, value_model, line_search, terminal_cost,
     curve_smoothing) = chosen.values()
    n_iterations = check_int(n_iterations, "n_iterations", minimum=1)
    T = check_int(T, "T", minimum=1)
    M = check_int(M, "M", minimum=1)
    optimizer = check_choice(optimizer, "optimizer", OPTIMIZERS)
    alpha = check_real(alpha, "alpha", minimum=0.0, min_inclusive=False)
    beta_u = check_beta_u(beta_u)
    kappa = check_real(kappa, "kappa", minimum=1.0, min_inclusive=False)
    n_ilqr = check_int(n_ilqr, "n_ilqr", minimum=1)
    n_test = check_int(n_test, "n_test", minimum=2)
    n_val = check_int(n_val, "n_val", minimum=2)
    seed = as_seed(rng, "rng")
    eval_every = check_int(eval_every, "eval_every", minimum=0)
    progress = check_bool(progress, "progress")
    value_model = check_choice(value_model, "value_model", VALUE_MODELS)
    line_search = check_choice(line_search, "line_search", LINE_SEARCHES)
    terminal_cost = check_choice(terminal_cost, "terminal_cost", TERMINAL_COSTS)
    if curve_smoothing is not None:
        curve_smoothing = check_real(curve_smoothing, "curve_smoothing", minimum=0.0, maximum=1.0,
                                     min_inclusive=False)
    checkpoint_every = check_int(checkpoint_every, "checkpoint_every", minimum=1)
    if checkpoint is not None and (not isinstance(checkpoint, (str, os.PathLike)) or not os.fspath(checkpoint)):
        raise ValidationTypeError(f"checkpoint must be a folder path or None; got {checkpoint!r}.")
    if getattr(learner.net, "n_in", None) != source.n_in:
        raise ValidationError(f"learner takes inputs of width {learner.net.n_in} but source gives "
                              f"{source.n_in}; build it with make_learner(kind, source).")
    if isinstance(learner, MAML) and (learner.net.loss != source.loss or learner.net.n_out != source.n_out):
        raise ValidationError(f"learner's network (loss {learner.net.loss!r}, n_out {learner.net.n_out}) does not "
                              f"fit source (loss {source.loss!r}, n_out {source.n_out}); build it with "
                              f"make_learner(kind, source).")
    if isinstance(learner, ProtoNet) and source.loss != "ce":
        raise ValidationError("learner is a ProtoNet, which needs a classification source (loss 'ce'); "
                              f"source has loss {source.loss!r}.")
    check_size(float(len(strategies)) * n_iterations * T * M * 2, "run_experiment", what="stored weights",
               alternative="Use fewer windows (n_iterations) or smaller T, M.")
    settings = dict(source=repr(source), learner=repr(learner),
                    n_parameters=learner.net.size,
                    strategies=list(strategies), n_iterations=n_iterations, T=T, M=M, optimizer=optimizer,
                    alpha=alpha, beta_u=beta_u, mu_u=1.0 / M, kappa=kappa, n_ilqr=n_ilqr, n_test=n_test,
                    n_val=n_val, seed=seed, eval_every=eval_every, value_model=value_model,
                    line_search=line_search, terminal_cost=terminal_cost, curve_smoothing=curve_smoothing,
                    learner_gamma=getattr(learner, "gamma", None),
                    learner_inner_steps=getattr(learner, "inner_steps", None),
                    metric=getattr(learner, "metric_name", "mse"), metalqr_version=_version(),
                    preset=preset, preset_overrides=_overrides(preset, given, learner))
    opt = make_optimizer(optimizer, alpha)
    x0 = learner.init(seed)
    D = x0.size
    test_tasks = source.sample(np.random.default_rng([seed, 10**6]), n_test, train=False)
    val_tasks = source.sample(np.random.default_rng([seed, 10**6 + 1]), n_val, train=False)
    lock = None
    if checkpoint is not None:
        checkpoint = os.fspath(checkpoint)
        lock = _checkpoint.FolderLock(checkpoint).acquire()
    try:
        options = dict(beta_u=beta_u, mu_u=1.0 / M, kappa=kappa, n_ilqr=n_ilqr, value_model=value_model,
                       line_search=line_search, terminal_cost=terminal_cost)
        return _train(source, learner, strategies, settings, opt, x0, D, test_tasks, val_tasks, checkpoint,
                      n_iterations, T, M, seed, eval_every, checkpoint_every, options, alpha, progress)
    finally:
        if lock is not None:
            lock.release()


def _overrides(preset, given: dict, learner) -> dict:
    """Return ``{setting: [preset value, value used]}`` for every override of the preset.

    Return ``{setting: [preset value, value used]}`` for every explicit argument (and MAML inner
    loop) that differs from the preset's value.
    """
    if preset is None:
        return {}
    ref = PRESETS[preset]
    out = {k: [ref[k], v] for k, v in given.items() if v is not None and v != ref[k]}
    if isinstance(learner, MAML):
        for k, attr in (("gamma", "gamma"), ("inner_steps", "inner_steps")):
            if getattr(learner, attr) != ref[k]:
                out[k] = [ref[k], getattr(learner, attr)]
    return out


def _fingerprint(settings: dict, name: str, x0: np.ndarray) -> str:
    keep = {k: v for k, v in settings.items() if k not in ("strategies", "n_iterations", "n_test",
                                                           "metalqr_version", "curve_smoothing", "preset",
                                                           "preset_overrides")}
    blob = json.dumps(dict(keep, strategy=name), sort_keys=True).encode() + x0.tobytes()
    return hashlib.sha256(blob).hexdigest()


def _divergence_advice(learner, x0, val_tasks, alpha) -> str:
    """Say which step size to reduce after a divergence.

    ``gamma`` when one inner step at the initial parameters already blows up, else ``alpha``
    (naming ``gamma`` too for MAML).
    """
    gamma = getattr(learner, "gamma", None)
    if gamma is None or not gamma > 0:
        return f"Reduce the meta step size alpha (= {alpha:g})."
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            inner_ok = bool(np.all(np.isfinite(learner.evaluate(x0, val_tasks))))
    except (ValidationError, ArithmeticError):
        inner_ok = False
    if not inner_ok:
        return (f"The learner's inner step size gamma (= {gamma:g}) is too large: the adapted "
                f"parameters are not finite already at the initial parameters. Reduce gamma.")
    return (f"Reduce the meta step size alpha (= {alpha:g}); if that does not help, reduce the "
            f"learner's inner step size gamma (= {gamma:g}).")


def _train(source, learner, strategies, settings, opt, x0, D, test_tasks, val_tasks, checkpoint,
           n_iterations, T, M, seed, eval_every, checkpoint_every, options, alpha, progress):
    state = {}
    curve0 = []
    if eval_every:                      # window 0: the common initial parameters
        v = learner.evaluate(x0, val_tasks)
        curve0 = [(0, float(v.mean()), _ci95(v))]
    for name in strategies:
        st = dict(z=opt.initial_state(x0), curve=list(curve0), weights=[], groups=[], secs=[], start=0,
                  strategy=get_strategy(name, "strategies"), rng_key=zlib.crc32(name.encode()))
        if checkpoint is not None:
            st["path"] = os.path.join(checkpoint, f"{name}.ckpt")
            st["fingerprint"] = _fingerprint(settings, name, x0)
            if os.path.exists(st["path"]):
                (st["start"], st["z"], st["curve"], st["weights"], st["groups"],
                 st["secs"]) = _load_state(st["path"], st["fingerprint"], z_size=st["z"].size, T=T, M=M,
                                           eval_every=eval_every, n_iterations=n_iterations)
        state[name] = st
    first = min(st["start"] for st in state.values())
    from tqdm.auto import tqdm
    for k in tqdm(range(first, n_iterations), desc="windows", disable=not progress, initial=first,
                  total=n_iterations):
        rng = np.random.default_rng([seed, k])
        batches = [source.sample(rng, M) for _ in range(T)]
        tau0 = k * T
        for name in strategies:                 # interleaved: window k of every strategy
            st = state[name]
            if k < st["start"]:
                continue
            z = st["z"]
            t0 = time.perf_counter()
            try:
                out = st["strategy"].window(Window(learner, z, D, batches, opt, tau0,
                                                   np.random.default_rng([seed, k, st["rng_key"]]),
                                                   options))
            except ValidationError as err:
                # A strategy's internal arrays (gradients, values) overflowed: the run diverged;
                # the user's argument is a step size, not the internal name the check saw.
                if "non-finite" not in str(err):
                    raise
                raise TrainingDivergedError(
                    f"strategy {name!r} diverged at window {k + 1}: its gradients are no longer "
                    f"finite. {_divergence_advice(learner, x0, val_tasks, alpha)}") from err
            z, U = np.asarray(out.z, dtype=float), np.asarray(out.U, dtype=float)
            if U.shape != (T, M):
                raise ValidationError(f"strategy {name!r} returned weights of shape {U.shape} for window "
                                      f"{k + 1}; its window() must return (T, M) = ({T}, {M}).")
            st["secs"].append(time.perf_counter() - t0)
            if not np.all(np.isfinite(z)) or not np.all(np.isfinite(U)):
                raise TrainingDivergedError(
                    f"strategy {name!r} diverged at window {k + 1}: the meta-parameters are no longer "
                    f"finite. {_divergence_advice(learner, x0, val_tasks, alpha)}")
            st["z"] = z
            st["weights"].append(U)
            st["groups"].append([[task.group for task in b] for b in batches])
            if eval_every and (k + 1) % eval_every == 0:
                v = learner.evaluate(z[:D], val_tasks)
                st["curve"].append((k + 1, float(v.mean()), _ci95(v)))
            if checkpoint is not None and ((k + 1) % checkpoint_every == 0 or k + 1 == n_iterations):
                _save_state(st["path"], st["fingerprint"], k + 1, z, st["curve"], st["weights"], st["groups"],
                            st["secs"])
    v0 = None
    for name in strategies:                     # a run that ended far worse than it started warns
        st = state[name]
        curve = st["curve"]
        if eval_every and curve and curve[-1][0] == n_iterations:
            first, last = curve0[0][1], curve[-1][1]
        else:
            if v0 is None:
                v0 = float(learner.evaluate(x0, val_tasks).mean())
            first, last = v0, float(learner.evaluate(st["z"][:D], val_tasks).mean())
        accuracy = getattr(learner, "metric_name", "mse") == "accuracy"
        if (not np.isfinite(last) or (last < first - WORSENED_ACCURACY_DROP if accuracy
                                      else last > WORSENED_FACTOR * first)):
            metric = "accuracy" if accuracy else "MSE"
            warnings.warn(f"strategy {name!r} ended worse than it started: validation {metric} {last:.4g} after "
                          f"{n_iterations} windows vs {first:.4g} at the start (diverged?); reduce the meta step "
                          f"size alpha (= {alpha:g}) or the learner's inner step.", TrainingWorsenedWarning,
                          stacklevel=3)
    results = []
    for name in strategies:
        st = state[name]
        results.append(StrategyResult(name, learner.evaluate(st["z"][:D], test_tasks), float(np.sum(st["secs"])),
                                      getattr(learner, "metric_name", "mse"), st["curve"],
                                      np.array(st["weights"], dtype=float).reshape(-1, T, M),
                                      np.array(st["groups"], dtype=float).reshape(-1, T, M),
                                      np.array(st["secs"], dtype=float), dict(settings), st["z"][:D].copy()))
    return results


def run_sinusoid_experiment(strategies: Sequence[str] | None = None, *, hidden: int = 40, gamma: float = 0.01,
                            source: SinusoidTasks | None = None, learner: str = "fomaml",
                            **kwargs) -> list[StrategyResult]:
    """Run :func:`run_experiment` on skewed sinusoids.

    :func:`run_experiment` on skewed sinusoids (``source``, default :class:`SinusoidTasks`) with
    ``learner`` (``"fomaml"`` or ``"maml"``) on a tanh MLP of width ``hidden`` and inner step
    ``gamma``; ``kwargs`` go to :func:`run_experiment`.

    Parameters
    ----------
    strategies : sequence of str, optional
        Registered strategy names (default: every registered one).
    hidden : int, >= 1
        Hidden width of the MLP.
    gamma : float, >= 0
        Inner (adaptation) step size, Eq. (4) of the TOW paper.
    source : SinusoidTasks, optional
        The task source (default: ``SinusoidTasks()``).
    learner : {"fomaml", "maml"}
        First- or second-order MAML.
    **kwargs
        Passed to :func:`run_experiment` (``n_iterations``, ``T``, ``M``, ...).

    Returns
    -------
    list of StrategyResult
        One result per strategy (see :func:`run_experiment`).

    Raises
    ------
    ValidationError
        A malformed argument (see :func:`make_learner` and :func:`run_experiment`).
    """
    source = SinusoidTasks() if source is None else check_source(source)
    learner = check_choice(learner, "learner", ("fomaml", "maml"))
    return run_experiment(source, make_learner(learner, source, hidden=hidden, gamma=gamma), strategies, **kwargs)


def _check_results(results, name: str = "results") -> list:
    if isinstance(results, StrategyResult):
        return [results]
    if not isinstance(results, (list, tuple)) or not results:
        raise ValidationError(f"{name} must be a non-empty list of StrategyResult (from run_experiment); "
                              f"got {type(results).__name__}.")
    for i, r in enumerate(results):
        if not isinstance(r, StrategyResult):
            raise ValidationTypeError(f"{name}[{i}] must be a StrategyResult; got {type(r).__name__}.")
    return list(results)


def _check_path(path, name: str) -> str:
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes) or not os.fspath(path):
        raise ValidationTypeError(f"{name} must be a non-empty file path (str); got {path!r}.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValidationError(f"{name}: {folder!r} is a file, not a folder.")
    if os.path.isdir(path):
        raise ValidationError(f"{name}: {path!r} is a folder; give a file path (prefix).")
    return path


def save_results(results: Sequence[StrategyResult], path_prefix: str) -> dict:
    """Write the results table, curves and raw results of an experiment.

    Write ``<prefix>_table.csv`` (strategy, mean, ci95, seconds, time vs uniform and every
    setting), ``<prefix>_curves.csv`` (window, validation mean and ci95 and every setting) and
    ``<prefix>.json`` (settings, units, table, curves, weights, groups, window times). Each file
    is written atomically; the settings suffice to rerun the experiment.

    ``seconds`` is the training time (weights and meta-updates) summed over windows and
    ``time_vs_uniform`` its ratio to uniform's (to the first strategy's without uniform);
    both come from one run in which the strategies were interleaved window by window.

    Parameters
    ----------
    results : list of StrategyResult
        The results of one :func:`run_experiment` call.
    path_prefix : str
        File prefix; its folder is created if needed.

    Returns
    -------
    dict
        ``{"table": rows, "settings": settings}``.

    Raises
    ------
    ValidationError, ValidationTypeError
        ``results`` not a non-empty list of StrategyResult, or ``path_prefix`` not a file prefix.
    """
    results = _check_results(results)
    path_prefix = _check_path(path_prefix, "path_prefix")
    settings = dict(results[0].settings)
    base = next((r.seconds for r in results if r.name == "uniform"), results[0].seconds)
    flat = {f"setting_{k}": (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in settings.items()}
    table = [{"strategy": r.name, "metric": r.metric_name, "mean": r.mean, "ci95": r.ci95, "n_test": r.metric.size,
              "seconds": r.seconds, "time_vs_uniform": r.seconds / base if base > 0 else float("nan"), **flat}
             for r in results]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(table[0]))
    w.writeheader()
    w.writerows(table)
    _checkpoint.atomic_write_text(f"{path_prefix}_table.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf)
    smoothing = settings.get("curve_smoothing")
    ema_col = [f"validation_{results[0].metric_name}_ema{smoothing:g}"] if smoothing else []
    w.writerow(["strategy", "window", "validation_" + results[0].metric_name, "ci95", *ema_col, *flat])
    for r in results:
        ema = _curve_ema(r, smoothing)
        w.writerows([(r.name, *point[:3], *([ema[i]] if smoothing else []), *flat.values())
                     for i, point in enumerate(r.curve)])
    _checkpoint.atomic_write_text(f"{path_prefix}_curves.csv", buf.getvalue())
    doc = {"settings": settings, "units": UNITS, "table": table,
           "curves": {r.name: [list(p) for p in r.curve] for r in results},
           "curve_columns": ["window", "mean", "ci95"],
           "curves_ema": ({r.name: _curve_ema(r, smoothing).tolist() for r in results} if smoothing else {}),
           "window_seconds": {r.name: r.window_seconds.tolist() for r in results if r.window_seconds is not None},
           "weights": {r.name: r.weights.tolist() for r in results if r.weights is not None},
           "groups": {r.name: r.groups.tolist() for r in results if r.groups is not None}}
    _checkpoint.atomic_write_text(f"{path_prefix}.json", json.dumps(doc))
    return {"table": table, "settings": settings}


def _curve_ema(result: StrategyResult, smoothing) -> np.ndarray:
    """Return the exponential moving average of a result's validation means (empty without one)."""
    if not smoothing or not result.curve:
        return np.zeros(len(result.curve))
    return exponential_moving_average([p[1] for p in result.curve], smoothing)


def plot_curves(results: Sequence[StrategyResult], path: str, title: str = "") -> None:
    """Plot the validation metric against the training windows.

    Validation metric against training windows, one line per strategy with its 95% confidence
    band over the validation tasks (like Figure 1 of the TOW paper); with a ``curve_smoothing``
    setting, also its exponential moving average (dashed, Figure 1's smoothing factor 0.1 in the
    paper preset).

    Parameters
    ----------
    results : list of StrategyResult
        The results of one :func:`run_experiment` call (with ``eval_every > 0``).
    path : str
        Image file to write (format from the extension).
    title : str
        Figure title.

    Raises
    ------
    ValidationError, ValidationTypeError
        ``results`` not a non-empty list of StrategyResult, or ``path`` not a file path.
    """
    results = _check_results(results)
    path = _check_path(path, "path")
    if not isinstance(title, str):
        raise ValidationTypeError(f"title must be a str; got {type(title).__name__}.")
    fig = _figure((6, 4))
    ax = fig.subplots()
    for r in results:
        if r.curve:
            pts = np.array([p if len(p) == 3 else (*p, np.nan) for p in r.curve], dtype=float)
            line, = ax.plot(pts[:, 0], pts[:, 1], label=r.name)
            smoothing = r.settings.get("curve_smoothing")
            if smoothing:
                ax.plot(pts[:, 0], _curve_ema(r, smoothing), linestyle="--", color=line.get_color(),
                        label=f"{r.name} (EMA {smoothing:g})")
            if np.any(np.isfinite(pts[:, 2])):
                ax.fill_between(pts[:, 0], pts[:, 1] - pts[:, 2], pts[:, 1] + pts[:, 2], alpha=0.2,
                                color=line.get_color(), linewidth=0)
    n_val = results[0].settings.get("n_val")
    ax.set_xlabel("training window (T mini-batches)")
    ax.set_ylabel("validation " + results[0].metric_name
                  + (f" (mean, 95% band over {n_val} tasks)" if n_val else " (mean, 95% band)"))
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _figure(size):
    """Return a figure on its own non-interactive Agg canvas (never switches the user's backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def plot_weights(result: StrategyResult, path: str, n_bins: int = 10) -> None:
    """Plot the weights a strategy gave each task group (like Figure 4 of the TOW paper).

    Weight visualisation (like Figure 4 of the TOW paper): the mean weight a strategy gives a
    task against its group (amplitude / alphabet) over training (heat map: window x group bin),
    and the histogram of all weights.

    Parameters
    ----------
    result : StrategyResult
        With ``weights`` and ``groups`` (from :func:`run_experiment`).
    path : str
        Image file to write.
    n_bins : int, >= 1
        Group bins (quantiles).

    Raises
    ------
    ValidationError, ValidationTypeError
        ``result`` not a StrategyResult with recorded weights, a bad ``path`` or ``n_bins``.
    """
    if not isinstance(result, StrategyResult):
        raise ValidationTypeError(f"result must be a StrategyResult; got {type(result).__name__}.")
    if result.weights is None or result.groups is None or np.shape(result.weights) != np.shape(result.groups) \
            or np.ndim(result.weights) != 3 or np.size(result.weights) == 0:
        raise ValidationError("result must carry weights and groups of one shape (windows, T, M), as "
                              "run_experiment returns them.")
    path = _check_path(path, "path")
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    W, G = result.weights, result.groups
    n_windows = W.shape[0]
    edges = np.unique(np.quantile(G, np.linspace(0, 1, n_bins + 1)))
    if edges.size < 2:
        edges = np.array([G.min() - 0.5, G.max() + 0.5])
    bins = np.clip(np.searchsorted(edges, G, side="right") - 1, 0, edges.size - 2)
    heat = np.full((n_windows, edges.size - 1), np.nan)
    M = W.shape[-1]
    for k in range(n_windows):
        for b in range(edges.size - 1):
            sel = bins[k] == b
            if np.any(sel):
                heat[k, b] = W[k][sel].mean() * M            # 1 = uniform weight
    fig = _figure((10, 4))
    a1, a2 = fig.subplots(1, 2)
    im = a1.imshow(heat.T, aspect="auto", origin="lower", cmap="viridis",
                   extent=(0.5, n_windows + 0.5, 0, edges.size - 1))
    a1.set_yticks(np.arange(edges.size - 1) + 0.5, [f"{edges[b]:.2g}" for b in range(edges.size - 1)])
    a1.set_xlabel("training window")
    a1.set_ylabel("task group (amplitude / alphabet), lower edge")
    a1.set_title(f"{result.name}: mean weight x M")
    fig.colorbar(im, ax=a1)
    a2.hist(W.ravel() * M, bins=40)
    a2.set_xlabel("weight x M (1 = uniform)")
    a2.set_title("all weights")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
