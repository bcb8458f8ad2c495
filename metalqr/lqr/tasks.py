"""LQR tasks and task sets (Section 3.1 of the ZO-MAML paper).

A task is the linear system ``x_{t+1} = A x_t + B u_t + w_t`` with ``w_t ~ N(0, Psi)``,
``x_0 ~ N(0, Sigma0)``, stage cost ``x'Qx + u'Ru`` and linear policy ``u = -K x`` with
``K`` of shape ``(k, d)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence, Union, overload

import numpy as np

from .._validation import as_float_array, check_psd, check_symmetric
from ..exceptions import ValidationError, ValidationTypeError

__all__ = ["LQRTask", "TaskSet", "TaskLike", "TaskIndexError",
           # building blocks for the other metalqr packages (not re-exported by metalqr.lqr):
           "Batch", "as_batch"]


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _check_psd_equilibrated(M: np.ndarray, name: str) -> None:
    """Check semidefiniteness relative to each entry's own scale.

    Semidefiniteness relative to each entry's own scale: ``M_ii >= 0`` and the diagonally
    equilibrated ``D^-1 M D^-1`` (``D = diag(sqrt(M_ii))``) PSD to ``1e-8``. The plain
    eigenvalue test only sees ``-1e-8 ||M||``, so a badly scaled indefinite matrix such as
    ``diag(1e12, -1)`` passed it (and its noise factor silently lost the negative part).
    """
    dg = np.diag(M)
    top = float(np.max(np.abs(dg), initial=0.0))
    off = np.abs(M - np.diag(dg))
    tol = np.maximum(1e-8 * off.max(axis=1, initial=0.0), 1e-14 * top)
    if np.any(dg < -tol):
        i = int(np.argmin(dg + tol))
        raise ValidationError(f"{name} must be positive semidefinite; its diagonal entry "
                              f"{name}[{i}, {i}] = {dg[i]:.3g} is negative.")
    sc = np.sqrt(np.clip(dg, 0.0, None))
    inv = np.divide(1.0, sc, out=np.zeros_like(sc), where=sc > 1e-154)
    zero_rows = sc <= 1e-154
    if np.any(zero_rows):
        worst = float(off[zero_rows].max(initial=0.0))
        if worst > 1e-14 * top:
            raise ValidationError(f"{name} must be positive semidefinite; a row with zero "
                                  f"diagonal has off-diagonal entries up to {worst:.3g} (they "
                                  f"must be zero: a variable with zero variance is "
                                  f"uncorrelated with every other).")
    C = M * inv[:, None] * inv[None, :]
    lo = float(np.min(np.linalg.eigvalsh(C)))
    if lo < -1e-8:
        raise ValidationError(f"{name} must be positive semidefinite; after scaling to unit "
                              f"diagonal its smallest eigenvalue is {lo:.3g} (entries relative "
                              f"to sqrt({name}_ii {name}_jj) violate semidefiniteness).")


class LQRTask:
    """One LQR task ``(A, B, Q, R, Psi, Sigma0)``; immutable and validated.

    Parameters
    ----------
    A : array_like, shape (d, d)
        State matrix.
    B : array_like, shape (d, k)
        Input matrix.
    Q : array_like, shape (d, d)
        State weight, symmetric positive semidefinite.
    R : array_like, shape (k, k)
        Input weight, symmetric positive definite.
    Psi : array_like, shape (d, d), optional
        Process-noise covariance, symmetric positive semidefinite (default identity).
    Sigma0 : array_like, shape (d, d), optional
        Covariance of the initial state used by roll-outs (default identity).

    Raises
    ------
    ValidationError
        On wrong shapes, non-finite, complex, boolean or string entries, asymmetric or
        indefinite weights. Semidefiniteness of ``Q``, ``Psi`` and ``Sigma0`` is checked
        both on the matrix and relative to each entry's scale ``sqrt(M_ii M_jj)``, so a
        badly scaled indefinite matrix is refused too.

    Examples
    --------
    >>> import numpy as np, metalqr
    >>> task = metalqr.LQRTask(A=[[1.0, 0.1], [0.0, 1.0]], B=[[0.0], [0.1]], Q=np.eye(2), R=[[1.0]])
    >>> task.d, task.k
    (2, 1)
    """

    __slots__ = ("_A", "_B", "_Q", "_R", "_Psi", "_Sigma0")

    def __init__(self, A: Any, B: Any, Q: Any, R: Any, Psi: Any = None, Sigma0: Any = None) -> None:
        A = as_float_array(A, "A", ndim=2)
        if A.shape[0] != A.shape[1] or A.shape[0] == 0:
            raise ValidationError(f"A must be a non-empty square (d, d) matrix; got shape {A.shape}.")
        d = A.shape[0]
        B = np.atleast_2d(as_float_array(B, "B"))
        if B.ndim == 2 and B.shape == (1, d) and d > 1:
            raise ValidationError(f"B must have shape (d, k) = ({d}, k); got {B.shape}. "
                                  f"For a single input pass a column, e.g. B.reshape({d}, 1).")
        if B.ndim != 2 or B.shape[0] != d or B.shape[1] == 0:
            raise ValidationError(f"B must have shape (d, k) with d = {d} rows (A is {d}x{d}); "
                                  f"got {B.shape}.")
        k = B.shape[1]
        Q = check_symmetric(as_float_array(Q, "Q", shape=(d, d)), "Q")
        R = check_symmetric(as_float_array(np.atleast_2d(R) if np.ndim(R) < 2 else R, "R",
                                           shape=(k, k)), "R")
        Psi = np.eye(d) if Psi is None else check_symmetric(as_float_array(Psi, "Psi", shape=(d, d)), "Psi")
        Sigma0 = (np.eye(d) if Sigma0 is None
                  else check_symmetric(as_float_array(Sigma0, "Sigma0", shape=(d, d)), "Sigma0"))
        check_psd(Q, "Q", strict=False)
        check_psd(R, "R", strict=True)
        check_psd(Psi, "Psi", strict=False)
        check_psd(Sigma0, "Sigma0", strict=False)
        for name, M in (("Q", Q), ("Psi", Psi), ("Sigma0", Sigma0)):
            _check_psd_equilibrated(M, name)
        self._A, self._B, self._Q, self._R = map(_readonly, (A, B, Q, R))
        self._Psi, self._Sigma0 = _readonly(Psi), _readonly(Sigma0)

    A = property(lambda self: self._A, doc="State matrix, shape (d, d).")
    B = property(lambda self: self._B, doc="Input matrix, shape (d, k).")
    Q = property(lambda self: self._Q, doc="State weight, shape (d, d).")
    R = property(lambda self: self._R, doc="Input weight, shape (k, k).")
    Psi = property(lambda self: self._Psi, doc="Process-noise covariance, shape (d, d).")
    Sigma0 = property(lambda self: self._Sigma0, doc="Initial-state covariance, shape (d, d).")

    @property
    def d(self) -> int:
        """State dimension."""
        return self._A.shape[0]

    @property
    def k(self) -> int:
        """Input dimension."""
        return self._B.shape[1]

    @classmethod
    def from_statespace(cls, sys: Any, Q: Any, R: Any, Psi: Any = None,
                        Sigma0: Any = None) -> "LQRTask":
        """Build a task from a discrete-time :class:`control.StateSpace`.

        Parameters
        ----------
        sys : control.StateSpace
            A discrete-time system (``sys.dt`` not 0); its ``A`` and ``B`` are used.
        Q, R : array_like
            State (d, d) and input (k, k) weights.
        Psi, Sigma0 : array_like, optional
            Noise and initial-state covariances (d, d) (default identity).

        Returns
        -------
        LQRTask
            The task ``(sys.A, sys.B, Q, R, Psi, Sigma0)``.

        Raises
        ------
        ValidationError
            If ``sys`` is not a state-space system or is continuous-time.
        """
        if not all(hasattr(sys, attr) for attr in ("A", "B", "dt")):
            raise ValidationError(f"sys must be a control.StateSpace; got {type(sys).__name__}.")
        if sys.dt is None or sys.dt == 0:
            raise ValidationError("sys must be a discrete-time StateSpace (dt > 0 or True); got a "
                                  "continuous-time system. Discretise it first, e.g. "
                                  "control.c2d(sys, Ts).")
        return cls(np.asarray(sys.A), np.asarray(sys.B), Q, R, Psi, Sigma0)

    def __repr__(self) -> str:
        return f"LQRTask(d={self.d}, k={self.k})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LQRTask):
            return NotImplemented
        return all(np.array_equal(getattr(self, n), getattr(other, n))
                   for n in ("A", "B", "Q", "R", "Psi", "Sigma0"))

    __hash__ = None  # type: ignore[assignment]


class TaskSet:
    """A batch of :class:`LQRTask` of equal ``(d, k)``, stored as stacked arrays.

    The stacked matrices are available as ``A`` (n, d, d), ``B`` (n, d, k), ``Q``, ``R``,
    ``Psi`` and ``Sigma0``. A ``TaskSet`` is indexable (an int gives an ``LQRTask``, a
    slice or index array gives a ``TaskSet``), iterable and has ``len``.

    Parameters
    ----------
    tasks : sequence of LQRTask
        At least one task; all of equal ``(d, k)``.

    Raises
    ------
    ValidationError
        If ``tasks`` is empty, contains non-tasks or tasks of different ``(d, k)``.
    """

    __slots__ = ("_tasks", "A", "B", "Q", "R", "Psi", "Sigma0")

    def __init__(self, tasks: Iterable[LQRTask]) -> None:
        if isinstance(tasks, (LQRTask, str, bytes, np.ndarray)) or not hasattr(tasks, "__iter__"):
            raise ValidationTypeError(f"tasks must be an iterable of LQRTask (e.g. a list); got "
                                      f"{type(tasks).__name__}.")
        tasks = tuple(tasks)
        if not tasks:
            raise ValidationError("tasks must contain at least one LQRTask; got an empty sequence.")
        for i, t in enumerate(tasks):
            if not isinstance(t, LQRTask):
                raise ValidationTypeError(f"tasks[{i}] must be an LQRTask; got {type(t).__name__}.")
        d, k = tasks[0].d, tasks[0].k
        for i, t in enumerate(tasks):
            if (t.d, t.k) != (d, k):
                raise ValidationError(f"all tasks must share (d, k); tasks[0] has (d, k) = ({d}, {k}) "
                                      f"but tasks[{i}] has ({t.d}, {t.k}).")
        self._tasks = tasks
        for name in ("A", "B", "Q", "R", "Psi", "Sigma0"):
            object.__setattr__(self, name, _readonly(np.stack([getattr(t, name) for t in tasks])))

    @property
    def d(self) -> int:
        """State dimension shared by all tasks."""
        return self._tasks[0].d

    @property
    def k(self) -> int:
        """Input dimension shared by all tasks."""
        return self._tasks[0].k

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[LQRTask]:
        return iter(self._tasks)

    @overload
    def __getitem__(self, index: int) -> LQRTask: ...
    @overload
    def __getitem__(self, index: Union[slice, Sequence[int], np.ndarray]) -> "TaskSet": ...

    def __getitem__(self, index):
        """Return one task (int index) or a TaskSet (slice, index array or mask).

        An int gives an :class:`LQRTask`; a slice, a 1-D integer array (negative entries
        count from the end) or a boolean mask of length ``len(self)`` gives a TaskSet.

        Raises
        ------
        TaskIndexError
            (a :class:`~metalqr.ValidationError` and an ``IndexError``) for an index out of
            range, a mask of another length, an empty selection, or an index of another
            type (floats, strings, 2-D arrays).
        """
        n = len(self._tasks)
        if isinstance(index, (bool, np.bool_)):
            raise TaskIndexError(f"index must be an int, a slice, an integer array or a boolean "
                                 f"mask of length {n}; got the bool {index!r}.")
        if isinstance(index, (int, np.integer)):
            if not -n <= index < n:
                raise TaskIndexError(f"index {index} is out of range for a TaskSet of {n} tasks "
                                     f"(valid: -{n} .. {n - 1}).")
            return self._tasks[index]
        if isinstance(index, slice):
            chosen = self._tasks[index]
            if not chosen:
                raise TaskIndexError(f"index {index} selects no task of this TaskSet of {n} "
                                     f"tasks; a TaskSet must not be empty.")
            return TaskSet(chosen)
        if isinstance(index, (str, bytes, float, complex)) or index is None:
            raise TaskIndexError(f"index must be an int, a slice, an integer array or a boolean "
                                 f"mask of length {n}; got {index!r}.")
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise TaskIndexError(f"a boolean mask index must have shape ({n},) (one entry "
                                     f"per task); got shape {idx.shape}.")
            idx = np.flatnonzero(idx)
        elif idx.dtype.kind not in "iu" or idx.ndim != 1:
            raise TaskIndexError(f"index must be an int, a slice, a 1-D integer array or a "
                                 f"boolean mask of length {n}; got {idx.dtype} array of shape "
                                 f"{idx.shape}.")
        if idx.size == 0:
            raise TaskIndexError("index selects no task; a TaskSet must not be empty.")
        if idx.min() < -n or idx.max() >= n:
            raise TaskIndexError(f"index entries must lie in -{n} .. {n - 1} for a TaskSet of "
                                 f"{n} tasks; got range [{idx.min()}, {idx.max()}].")
        return TaskSet([self._tasks[int(i)] for i in idx])

    def __repr__(self) -> str:
        return f"TaskSet(n_tasks={len(self)}, d={self.d}, k={self.k})"


class TaskIndexError(ValidationError, IndexError):
    """A malformed or out-of-range index into a :class:`TaskSet`.

    A :class:`~metalqr.ValidationError` that is also an ``IndexError``.
    """


TaskLike = Union[LQRTask, TaskSet]


@dataclass(frozen=True)
class Batch:
    """Internal: stacked task arrays plus whether the caller passed a single task."""

    A: np.ndarray
    B: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    Psi: np.ndarray
    Sigma0: np.ndarray
    single: bool

    @property
    def n(self) -> int:
        """Number of tasks."""
        return self.A.shape[0]

    @property
    def d(self) -> int:
        """State dimension."""
        return self.A.shape[1]

    @property
    def k(self) -> int:
        """Input dimension."""
        return self.B.shape[2]

    def out(self, value: np.ndarray):
        """Strip the task axis again when the caller passed a single task."""
        return value[0] if self.single else value


def as_batch(task: Any, name: str = "task") -> Batch:
    """Return the stacked arrays of an :class:`LQRTask` or :class:`TaskSet`."""
    if isinstance(task, LQRTask):
        return Batch(task.A[None], task.B[None], task.Q[None], task.R[None], task.Psi[None],
                     task.Sigma0[None], True)
    if isinstance(task, TaskSet):
        return Batch(task.A, task.B, task.Q, task.R, task.Psi, task.Sigma0, False)
    hint = "Build one with metalqr.LQRTask(A, B, Q, R)"
    if isinstance(task, (list, tuple)) and task and all(isinstance(t, LQRTask) for t in task):
        hint = (f"For several tasks wrap them in metalqr.TaskSet([...]) (got a {type(task).__name__} "
                f"of {len(task)} LQRTasks)")
    if type(task).__name__ in ("StateSpace", "LinearIOSystem", "TransferFunction"):
        hint = ("For a python-control system use metalqr.LQRTask.from_statespace(sys, Q, R) "
                "(see docs/python_control.md)")
    raise ValidationTypeError(f"{name} must be an LQRTask or a TaskSet; got "
                              f"{type(task).__name__}. {hint}.")
