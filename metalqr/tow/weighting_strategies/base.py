"""The weighting-strategy interface.

What a training window provides, what a strategy returns, and the base classes a new strategy
derives from (see :mod:`.registry`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["Window", "WindowResult", "WeightingStrategy", "PerBatchStrategy"]


@dataclass(frozen=True)
class Window:  # numpydoc ignore=PR01
    """Everything one training window gives a strategy (built by :func:`metalqr.tow.run_experiment`).

    Attributes
    ----------
    learner : MAML or ProtoNet
        ``learner.batch(x, batch) -> (losses (M,), G (D, M), GN)`` gives the tasks' validation
        losses and gradients at meta-parameters ``x``.
    z : (S,) ndarray
        Optimiser state at the start of the window (``z[:D]`` are the meta-parameters).
    D : int
        Parameter count of the learner.
    batches : sequence of T lists of M :class:`metalqr.tow.Task`
        The window's mini-batches (the same for every strategy).
    optimizer : SGD or Adam
        The meta-optimiser: ``step(z, g, tau)``, ``linearize(...)``, ``state_size(D)``.
    tau0 : int
        Meta-updates done before this window (update ``t`` of the window is ``tau0 + t + 1``).
    rng : numpy.random.Generator
        A generator for stochastic strategies, seeded from ``(seed, window, strategy name)``:
        the same for every rerun, independent of which other strategies run.
    options : mapping
        The experiment's strategy settings: ``beta_u``, ``mu_u``, ``kappa``, ``n_ilqr``,
        ``value_model``, ``line_search``, ``terminal_cost``.
    """

    learner: Any
    z: np.ndarray
    D: int
    batches: Sequence[list]
    optimizer: Any
    tau0: int
    rng: np.random.Generator
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def T(self) -> int:
        """Mini-batches in the window."""
        return len(self.batches)

    @property
    def M(self) -> int:
        """Tasks per mini-batch."""
        return len(self.batches[0])


@dataclass
class WindowResult:  # numpydoc ignore=PR01
    """What a strategy returns for one window.

    Attributes
    ----------
    z : (S,) ndarray
        Optimiser state after the window.
    U : (T, M) ndarray
        The weights used, non-negative, one row per mini-batch (each a probability vector
        when the strategy is ``normalised``; rows of NaN after a divergence, which
        :func:`run_experiment` reports as :class:`TrainingDivergedError`).
    """

    z: np.ndarray
    U: np.ndarray


class WeightingStrategy(abc.ABC):
    """A task-weighting strategy.

    A ``name``, a one-line ``description`` and one method,
    :meth:`~metalqr.tow.WeightingStrategy.window`, that trains through one window and returns
    the weights it used.

    Strategies that choose each mini-batch's weights from that mini-batch's losses alone
    derive from :class:`PerBatchStrategy` and implement only :meth:`PerBatchStrategy.weights`.
    Register an instance with :func:`metalqr.tow.register_strategy`.
    """

    #: Registry key, CLI choice and result name (non-empty, no spaces).
    name: str = ""
    #: One line for the CLI help and the docs.
    description: str = ""
    #: The :attr:`Window.options` it reads, plus ``"gauss_newton"`` if it uses the learner's
    #: Gauss-Newton curvature (benchmarks vary exactly these settings per strategy).
    reads: tuple = ()
    #: Whether each mini-batch's weights sum to 1 (a probability vector). True for the
    #: baselines; False for TOW, whose Algorithm 1 only imposes ``u >= 0`` with prior mean
    #: ``mu_u = 1/M`` (Eq. (7)), so its rows sum to about, not exactly, 1.
    normalised: bool = True

    @abc.abstractmethod
    def window(self, w: Window) -> WindowResult:
        """Train through the window ``w`` and return the final state and the (T, M) weights.

        Parameters
        ----------
        w : Window
            The window: learner, state, mini-batches, optimiser, generator and options.

        Returns
        -------
        WindowResult
            The state after the window and the (T, M) weights used.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class PerBatchStrategy(WeightingStrategy):
    """A strategy that weights each mini-batch from its losses.

    A strategy that weights each mini-batch from its losses, then takes one optimiser step with
    the weighted gradient ``G u`` (the baselines of Section 5 of the TOW paper).

    References
    ----------
    TOW paper [nguyen2023tow], Section 5 (the baselines) and Eq. (12).
    """

    @abc.abstractmethod
    def weights(self, losses: np.ndarray, w: Window) -> np.ndarray:
        """Return the weights ``u`` (M,) of one mini-batch, a probability vector.

        Parameters
        ----------
        losses : (M,) ndarray
            The tasks' validation losses at the current meta-parameters (finite).
        w : Window
            The window (for ``options``, ``rng`` and sizes).

        Returns
        -------
        (M,) ndarray
            Non-negative weights summing to 1.
        """

    def window(self, w: Window) -> WindowResult:
        """Weight each mini-batch by :meth:`weights` and take one optimiser step per mini-batch.

        Parameters
        ----------
        w : Window
            The window: learner, state, mini-batches, optimiser and options.

        Returns
        -------
        WindowResult
            The state after the window's ``T`` steps and the (T, M) weights used.
        """
        z = w.z
        U = np.full((w.T, w.M), np.nan)
        for t, batch in enumerate(w.batches):
            losses, G, _ = w.learner.batch(z[:w.D], batch)
            if not np.all(np.isfinite(losses)):
                break                       # NaN rows: run_experiment raises TrainingDivergedError
            U[t] = self.weights(losses, w)
            z = w.optimizer.step(z, G @ U[t], w.tau0 + t + 1)
        return WindowResult(z, U)
