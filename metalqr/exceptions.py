"""Exceptions raised by metalqr.

Every error that is caused by the caller's input derives from :class:`ValueError`
so that generic ``except ValueError`` handlers keep working, and from
:class:`MetalqrError` so that callers can catch everything this library raises.
"""

from __future__ import annotations

__all__ = [
    "MetalqrError",
    "ValidationError",
    "ValidationTypeError",
    "CheckpointError",
    "UnstablePolicyError",
    "NotMAMLStabilizingError",
    "NotMetaLearnableError",
    "RolloutOverflowError",
    "BackendUnavailableError",
    "TrainingStalledError",
    "TrainingDivergedError",
    "MetalqrWarning",
    "RolloutLengthWarning",
    "TrainingWorsenedWarning",
    "TOWFallbackWarning",
]


class MetalqrError(Exception):
    """Base class of every exception raised by metalqr."""


class ValidationError(MetalqrError, ValueError):
    """An argument has the wrong shape or value.

    An argument has the wrong shape, contains non-finite values or violates a mathematical
    requirement (symmetry, definiteness, ...).
    """


class ValidationTypeError(ValidationError, TypeError):
    """An argument has the wrong type.

    A string where a number is expected, a complex or boolean array where a real one is, a
    non-callable callback... It is a :class:`ValidationError`, hence a ``ValueError``, and also
    a ``TypeError``.
    """


class CheckpointError(MetalqrError, ValueError):
    """A checkpoint or result file cannot be used.

    A checkpoint or result file is damaged, from another run or another format version, or its
    folder is in use by another run. The message names the file and the way out (start afresh,
    or use another output folder).
    """


class UnstablePolicyError(MetalqrError, ValueError):
    """A gain ``K`` does not stabilise a task: ``rho(A - B K) >= 1``.

    Parameters
    ----------
    message : str
        What failed and how to fix it.
    task_index : int or None
        Sets ``task_index``.
    spectral_radius : float
        Sets ``spectral_radius``.

    Attributes
    ----------
    task_index : int or None
        Index of the offending task in a :class:`~metalqr.TaskSet` (``None`` for
        a single task).
    spectral_radius : float
        ``rho(A - B K)`` of that task.
    """

    def __init__(self, message: str, *, task_index: int | None = None,
                 spectral_radius: float = float("nan")) -> None:
        super().__init__(message)
        self.task_index = task_index
        self.spectral_radius = spectral_radius


class NotMAMLStabilizingError(UnstablePolicyError):
    """A gain is not MAML-stabilising (Definition 1 of the ZO-MAML paper).

    Either ``K`` or one of its one-step adaptations ``K - eta grad J_i(K)`` does not stabilise
    its task.

    Parameters
    ----------
    message : str
        What failed and how to fix it.
    task_index : int or None
        Index of the offending task.
    spectral_radius : float
        The offending closed loop's spectral radius.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Definition 1.
    """


class NotMetaLearnableError(MetalqrError, ValueError):
    """The task set provably has no common stabilising gain.

    For example the scalar pair A1=3, B1=4 / A2=1, B2=-1 of Section 3.2 of the ZO-MAML paper.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Section 3.2 (a task set without a common stabilising gain).
    """


class RolloutOverflowError(MetalqrError, ArithmeticError):
    """A simulated trajectory overflowed (non-finite state or cost)."""


class BackendUnavailableError(MetalqrError, RuntimeError):
    """The requested rollout backend cannot run here (e.g. ``"cupy"`` without CuPy or a GPU)."""


class TrainingStalledError(MetalqrError, RuntimeError):
    """Meta-training rejected too many consecutive updates.

    The gradient estimate keeps leaving the stabilising set. A checkpoint of the last good state
    is kept.

    Parameters
    ----------
    message : str
        What failed and how to fix it.
    result : MetaTrainingResult or None
        Sets ``result``.

    Attributes
    ----------
    result : MetaTrainingResult or None
        The run up to the stall (final gain and history).
    """

    def __init__(self, message: str, result=None) -> None:
        super().__init__(message)
        self.result = result


class TrainingDivergedError(MetalqrError, ArithmeticError):
    """Meta-training produced non-finite values or left the stabilising set.

    Meta-training produced non-finite parameters or losses (step size too large), or, with
    ``guard="none"``, an update left the stabilising set.

    Parameters
    ----------
    message : str
        What failed and how to fix it.
    result : MetaTrainingResult or None
        Sets ``result``.

    Attributes
    ----------
    result : MetaTrainingResult or None
        The run up to the divergence (its best iterate included).
    """

    def __init__(self, message: str, result=None) -> None:
        super().__init__(message)
        self.result = result


class MetalqrWarning(UserWarning):
    """Base class of the warnings metalqr emits (a result that is valid but suspect)."""


class RolloutLengthWarning(MetalqrWarning):
    """The roll-out length is short compared with the closed loop's mixing time.

    The expected ``l``-step cost is biased and its gradient may point away from the true one.
    The message names a length that keeps the bias within tolerance.
    """


class TrainingWorsenedWarning(MetalqrWarning):
    """A training run ended with a worse objective than it started with.

    A training run ended with a worse objective than it started with; the result's ``K_best``
    holds the best iterate seen.
    """


class TOWFallbackWarning(MetalqrWarning):
    """TOW's nested iLQR failed and the window kept the uniform weights.

    :func:`metalqr.tow.tow_weights` returned the uniform nominal weights ``mu_u`` because
    its iLQR stopped without accepting any step (for example "regularization limit ...
    Q_uu indefinite"); the message names iLQR's stop reason. The weights are valid (the
    uniform baseline) but are not TOW's optimised ones.
    """
