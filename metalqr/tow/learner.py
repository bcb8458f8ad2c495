"""Few-shot meta-learners behind one interface.

Few-shot meta-learners on the MLP, all behind one interface used by the weighting strategies:
``batch(x, tasks, curvature)`` returns the per-task validation losses ``l(x)`` (M,), their gradients
(the Jacobian ``J_t'``, D x M) and, on request, per-task Gauss-Newton diagonals (D x M);
``evaluate(x, tasks)`` returns the per-task test metric.

* :class:`MAML` - inner loop Eq. (4) of the TOW paper, ``phi_i = x - gamma grad l(S_i^s; x)``,
  first order (``d phi / d x ~ I``) or full second order (exact Hessian-vector products).
* :class:`ProtoNet` - Prototypical Networks (Snell et al. 2017): the MLP embeds, class
  prototypes are the support means, logits are ``-|f(q) - c_k|^2``.
"""

from __future__ import annotations

import zlib

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import as_rng, check_bool, check_choice, check_int, check_real, check_size
from ..exceptions import ValidationError, ValidationTypeError
from ._checks import check_params, check_tasks
from .mlp import MLP, _output_loss as output_loss, _softmax as softmax
from .tasks import Task

__all__ = ["MAML", "ProtoNet"]


def _metric(loss: str, out: np.ndarray, y: np.ndarray) -> float:
    """MSE for regression, accuracy for classification."""
    if loss == "mse":
        return float(np.mean(np.sum((out - y) ** 2, axis=-1)))
    return float(np.mean(np.argmax(out, axis=-1) == y))


def _n_examples(task) -> int:
    """Support plus query examples of a task."""
    return task.s.shape[0] + task.sq.shape[0]


_NET_METHODS = ("init", "predict", "vjp", "loss_and_grad", "hvp", "gauss_newton_diagonal")


def _width(net) -> int:
    """Hidden width used in memory estimates (the parameter count's square root if unknown)."""
    return int(getattr(net, "hidden", 0) or max(1, int(np.sqrt(net.size))))


def _check_net(net):
    """Check a network.

    An :class:`MLP`, or another network with its interface (e.g. ``metalqr.tow.ConvNet``):
    ``size``, ``n_in``, ``n_out``, ``loss`` and the methods of :data:`_NET_METHODS`.
    """
    if isinstance(net, MLP):
        return net
    missing = [m for m in _NET_METHODS if not callable(getattr(net, m, None))]
    missing += [a for a in ("size", "n_in", "n_out", "loss") if not hasattr(net, a)]
    if missing:
        raise ValidationTypeError(f"net must be a metalqr.tow.MLP (or a network with its interface, such as "
                                  f"metalqr.tow.ConvNet); got {type(net).__name__} without {', '.join(missing)}.")
    return net


class _Net:
    """The unchecked fast path of a network.

    The unchecked fast path of an :class:`MLP` (its arguments are checked once by the learner),
    or the public methods of any other network.
    """

    def __init__(self, net):
        fast = isinstance(net, MLP)
        self.loss_and_grad = net._loss_and_grad if fast else net.loss_and_grad
        self.predict = (lambda x, s: net._forward(x, s)[2]) if fast else net.predict
        self.vjp = net._vjp if fast else net.vjp
        self.hvp = net._hvp if fast else net.hvp
        self.gnd = net._gauss_newton_diagonal if fast else net.gauss_newton_diagonal


def _fast(net) -> _Net:
    return _Net(net)


class _Learner:
    """The interface shared by the learners.

    The interface shared by the learners; subclasses define ``_task_loss_and_grad``,
    ``_curvature``, ``_evaluate`` and ``_check_task``.
    """

    def _x(self, x) -> np.ndarray:
        return check_params(x, "x", self.net.size)

    def _tasks(self, tasks, name: str = "tasks") -> list:
        tasks = check_tasks(tasks, name)
        for i, t in enumerate(tasks):
            self._check_task(t, f"{name}[{i}]")
        return tasks

    def _check_task(self, task: Task, name: str) -> None:
        if task.s.shape[1] != self.net.n_in:
            raise ValidationError(f"{name} has inputs of width {task.s.shape[1]} but the network takes "
                                  f"n_in = {self.net.n_in}; build the learner for this task source.")

    def init(self, rng) -> np.ndarray:
        """Return initial meta-parameters (see :meth:`MLP.init`); ``rng`` a Generator or an int seed."""
        return self.net.init(as_rng(rng))

    def batch(self, x: np.ndarray, tasks: list[Task], curvature: bool = False):
        """Return the validation losses, gradients and curvatures of tasks.

        Validation losses (M,), gradients (D, M) and, with ``curvature``, GN diagonals (D,
        M) of the tasks at meta-parameters ``x`` (D,).
        """
        x, tasks = self._x(x), self._tasks(tasks)
        curvature = check_bool(curvature, "curvature")
        if curvature:               # one adaptation / forward pass per task for all three
            out = [self._task_loss_grad_curvature(x, task) for task in tasks]
            return (np.array([o[0] for o in out]), np.stack([o[1] for o in out], axis=1),
                    np.stack([o[2] for o in out], axis=1))
        pairs = [self._task_loss_and_grad(x, task) for task in tasks]
        G = np.stack([g for _, g in pairs], axis=1)
        return np.array([loss for loss, _ in pairs]), G, None

    def task_loss_and_grad(self, x: np.ndarray, task: Task):
        """Return validation loss ``l_i(x)`` of one task and its gradient (D,) at ``x`` (D,)."""
        x = self._x(x)
        self._check_task(check_tasks([task], "task")[0], "task")
        return self._task_loss_and_grad(x, task)

    def curvature(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Per-task Gauss-Newton diagonals (D, M) at ``x`` (D,), TOW's curvature (Appendix H)."""
        return self._curvature(self._x(x), self._tasks(tasks))

    def evaluate(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Per-task test metric (M,) after adaptation: MSE (regression) or accuracy."""
        return self._evaluate(self._x(x), self._tasks(tasks))


@dataclass(frozen=True)
class MAML(_Learner):
    """MAML on an :class:`MLP` (Finn et al. 2017; Eq. (3)-(4) of the TOW paper).

    ``first_order=True`` (FOMAML) uses the query gradient at ``phi_i``; otherwise the exact
    meta-gradient ``prod_j (I - gamma Hess l(S^s; phi_j)) grad l(S^q; phi_K)`` through all
    ``inner_steps`` (back-to-front Hessian-vector products). The curvature returned for TOW
    is the Gauss-Newton diagonal of the query loss at ``phi_i`` (first-order in ``gamma``).

    Parameters
    ----------
    net : MLP
        The network (or another network with its interface, e.g. :class:`ConvNet`).
    gamma : float, >= 0
        Inner step size.
    inner_steps : int, >= 1
        Inner gradient steps, Eq. (4).
    first_order : bool
        First-order MAML (FOMAML) instead of the exact meta-gradient.

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed network or a parameter out of range, named.

    Notes
    -----
    Methods take meta-parameters ``x`` (D,) with ``D = net.size`` and tasks whose inputs have
    ``net.n_in`` columns and whose outputs fit ``net.loss`` (real targets of width
    ``net.n_out`` for ``"mse"``, labels below ``net.n_out`` for ``"ce"``); anything else
    raises :class:`~metalqr.ValidationError` naming the argument.

    References
    ----------
    TOW paper [nguyen2023tow], Eq. (3)-(4); Finn, Abbeel and Levine (2017).
    """

    net: MLP
    gamma: float = 0.01
    inner_steps: int = 1
    first_order: bool = True

    def __post_init__(self) -> None:
        _check_net(self.net)
        object.__setattr__(self, "gamma", check_real(self.gamma, "gamma", minimum=0.0))
        object.__setattr__(self, "inner_steps", check_int(self.inner_steps, "inner_steps", minimum=1))
        object.__setattr__(self, "first_order", check_bool(self.first_order, "first_order"))

    @property
    def metric_name(self) -> str:
        """``"mse"`` for regression networks, ``"accuracy"`` for classifiers."""
        return "mse" if self.net.loss == "mse" else "accuracy"

    def _check_task(self, task: Task, name: str) -> None:
        super()._check_task(task, name)
        if self.net.loss == "mse":
            if task.y.ndim != 2 or task.y.shape[1] != self.net.n_out:
                raise ValidationError(f"{name} must have real targets of width n_out = {self.net.n_out} for a "
                                      f"regression MAML; got y of shape {task.y.shape}.")
        else:
            if task.y.ndim != 1:
                raise ValidationError(f"{name} must have integer class labels for a classification MAML; got "
                                      f"y of shape {task.y.shape}.")
            top = max(int(task.y.max()), int(task.yq.max()))
            if top >= self.net.n_out:
                raise ValidationError(f"{name} has label {top} but the network has n_out = {self.net.n_out} "
                                      f"classes.")

    def adapt(self, x: np.ndarray, task: Task, trajectory: bool = False):
        """Adapt the parameters to a task by the inner loop, Eq. (4).

        Inner loop Eq. (4) of the TOW paper: ``inner_steps`` gradient steps of size ``gamma``
        on the support set.

        Parameters
        ----------
        x : (D,) array_like
            Meta-parameters.
        task : Task
            The task (its support set is used).
        trajectory : bool
            Return every iterate instead of the last.

        Returns
        -------
        (D,) ndarray or list of (D,) ndarray
            The adapted parameters ``phi``, or the iterates ``x, ..., phi`` with ``trajectory``.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        """
        x = self._x(x)
        self._check_task(check_tasks([task], "task")[0], "task")
        return self._adapt(x, task, check_bool(trajectory, "trajectory"))

    def _adapt(self, x, task, trajectory=False):
        phis = [x]
        for _ in range(self.inner_steps):
            phis.append(phis[-1] - self.gamma * _fast(self.net).loss_and_grad(phis[-1], task.s, task.y)[1])
        return phis if trajectory else phis[-1]

    def _task_loss_and_grad(self, x: np.ndarray, task: Task, phis=None):
        """Return the validation loss ``l_i(x) = l(S^q; phi_i(x))`` and its (first- or second-order) gradient."""
        phis = self._adapt(x, task, trajectory=True) if phis is None else phis
        net = _fast(self.net)
        loss, g = net.loss_and_grad(phis[-1], task.sq, task.yq)
        if not self.first_order:
            for phi in reversed(phis[:-1]):
                g = g - self.gamma * net.hvp(phi, task.s, task.y, g)
        return loss, g

    def _task_loss_grad_curvature(self, x, task):
        """Loss, gradient and Gauss-Newton diagonal of one task from one adaptation."""
        phis = self._adapt(x, task, trajectory=True)
        loss, g = self._task_loss_and_grad(x, task, phis)
        return loss, g, _fast(self.net).gnd(phis[-1], task.sq)

    def _curvature(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Per-task Gauss-Newton diagonals of the query loss at the adapted parameters (D, M)."""
        net = _fast(self.net)
        return np.stack([net.gnd(self._adapt(x, t), t.sq) for t in tasks], axis=1)

    def _evaluate(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Query MSE (regression) or accuracy (classification) after adaptation, per task."""
        predict = _fast(self.net).predict
        return np.array([_metric(self.net.loss, predict(self._adapt(x, t), t.sq), t.yq)
                         for t in tasks])


@dataclass(frozen=True)
class ProtoNet(_Learner):
    """Prototypical Networks on an MLP embedding (``net.n_out`` = embedding size).

    Logits of query ``q`` for class ``k``: ``-|f(q) - c_k|^2`` with ``c_k`` the mean support
    embedding of class ``k``; loss: softmax cross-entropy. Gradients by back-propagating the
    logit derivatives into both the query and support embeddings; the Gauss-Newton diagonal
    uses the exact logit Jacobian (``curvature_method="exact"``: one back-propagated row per
    query and class) or its Monte-Carlo estimate (``"mc"``, DiagGGN-MC of Dangel et al. 2020:
    ``mc_samples`` rows per query, ``J'(p - e_y)`` with ``y ~ p``; unbiased, N times cheaper,
    seeded by the parameters and the task so that it is reproducible).

    Parameters
    ----------
    net : MLP
        The embedding network (``net.n_out`` = embedding width).
    curvature_method : {"exact", "mc"}
    mc_samples : int, >= 1
        Samples per query for ``"mc"``.

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed network or a parameter out of range, named.

    Notes
    -----
    Tasks must be classification tasks with at least one support example of every class.
    """

    net: MLP
    curvature_method: str = "exact"
    mc_samples: int = 1

    metric_name = "accuracy"

    def __post_init__(self) -> None:
        _check_net(self.net)
        check_choice(self.curvature_method, "curvature_method", ("exact", "mc"))
        object.__setattr__(self, "mc_samples", check_int(self.mc_samples, "mc_samples", minimum=1))

    def _check_task(self, task: Task, name: str) -> None:
        super()._check_task(task, name)
        if task.y.ndim != 1:
            raise ValidationError(f"{name} must be a classification task (integer labels) for ProtoNet; "
                                  f"got regression targets of shape {task.y.shape}.")
        n_way = int(max(task.y.max(), task.yq.max())) + 1
        if np.any(np.bincount(task.y, minlength=n_way) == 0):
            raise ValidationError(f"{name}: ProtoNet needs at least one support example of every class "
                                  f"0..{n_way - 1}.")

    def _logits(self, x, task, vjp: bool = False):
        """Return the logits, query-prototype differences and prototype matrix.

        Logits (n_q, N), query-prototype differences and the prototype matrix ``A``; with
        ``vjp``, also the network's vjp on ``[support; query]`` from the same forward pass
        (networks with ``_linearize``, e.g. the ConvNet: one forward pass instead of three).
        """
        n_way = int(max(task.y.max(), task.yq.max())) + 1
        lin = getattr(self.net, "_linearize", None) if vjp else None
        net_vjp = None
        if lin is not None:
            out, net_vjp = lin(x, np.concatenate([task.s, task.sq]))
            es, eq = out[:task.s.shape[0]], out[task.s.shape[0]:]
        else:
            predict = _fast(self.net).predict
            es, eq = predict(x, task.s), predict(x, task.sq)
        onehot = np.eye(n_way)[task.y]                              # (n_s, N)
        counts = onehot.sum(0)
        if np.any(counts == 0):
            raise ValidationError("ProtoNet: every class needs at least one support example.")
        A = onehot / counts                                         # prototype = A' es
        protos = A.T @ es                                           # (N, e)
        diff = eq[:, None, :] - protos[None, :, :]                  # (n_q, N, e)
        logits = -np.sum(diff * diff, axis=-1)
        return (logits, diff, A, net_vjp) if vjp else (logits, diff, A)

    def _logit_vjp(self, x, task, dlogits, diff, A, net_vjp=None):
        """Back-propagate ``dlogits`` to the parameters.

        Back-propagate ``dlogits`` (..., n_q, N) to the parameters (..., D) (through
        ``net_vjp`` from :meth:`_logits` when given).
        """
        # logits = -|eq - A'es|^2 -> d/d eq = -2 sum_k dl_k diff_k ; d/d protos_k = 2 sum_q dl_qk diff_qk
        d_eq = -2.0 * np.einsum("...qk,qke->...qe", dlogits, diff)
        d_protos = 2.0 * np.einsum("...qk,qke->...ke", dlogits, diff)
        d_es = np.einsum("sk,...ke->...se", A, d_protos)
        dout = np.concatenate([d_es, d_eq], axis=-2)
        if net_vjp is not None:
            return net_vjp(dout)
        return _fast(self.net).vjp(x, np.concatenate([task.s, task.sq]), dout)

    def _task_loss_and_grad(self, x: np.ndarray, task: Task):
        logits, diff, A, net_vjp = self._logits(x, task, vjp=True)
        loss, dlogits, _ = output_loss(logits, task.yq, "ce")
        return loss, self._logit_vjp(x, task, dlogits, diff, A, net_vjp)

    def _task_loss_grad_curvature(self, x, task):
        """Loss, gradient and Gauss-Newton diagonal of one task from one forward pass."""
        logits, diff, A, net_vjp = self._logits(x, task, vjp=True)
        loss, dlogits, _ = output_loss(logits, task.yq, "ce")
        g = self._logit_vjp(x, task, dlogits, diff, A, net_vjp)
        return loss, g, self._task_gn(x, task, logits, diff, A, net_vjp)

    def _curvature(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        """Return per-task Gauss-Newton diagonals of the query cross-entropy.

        Per-task Gauss-Newton diagonals ``diag(J' H J)`` of the query cross-entropy, with the
        exact logit Jacobian ``J`` (one back-propagated row per query and class).
        """
        return np.stack([self._task_gn(x, task, *self._logits(x, task, vjp=True)) for task in tasks], axis=1)

    def _task_gn(self, x, task, logits, diff, A, net_vjp):
        """Return the Gauss-Newton diagonal (D,) of one task from its logits (see :meth:`_curvature`)."""
        nq, N = logits.shape
        if self.curvature_method == "mc":
            p = softmax(logits)
            rng = np.random.default_rng([zlib.crc32(x.tobytes()), zlib.crc32(task.sq.tobytes())])
            S = self.mc_samples
            check_size(float(S * nq) * (nq * N + self.net.size + _n_examples(task) * _width(self.net)),
                       "ProtoNet.curvature", what="float64 entries (Monte-Carlo Gauss-Newton rows)",
                       alternative="Use fewer mc_samples, or fewer query examples per task.")
            rows = np.zeros((S * nq, nq, N))
            for j in range(S):
                y = (rng.random((nq, 1)) > np.cumsum(p, axis=1)).sum(axis=1).clip(0, N - 1)
                rows[j * nq + np.arange(nq), np.arange(nq)] = p
                rows[j * nq + np.arange(nq), np.arange(nq), y] -= 1.0
            R = self._logit_vjp(x, task, rows, diff, A, net_vjp)
            return np.sum(R * R, axis=0) / (nq * S)
        check_size(float(nq * N) * (nq * N + self.net.size + _n_examples(task) * _width(self.net)),
                   "ProtoNet.curvature", what="float64 entries (exact Gauss-Newton rows)",
                   alternative="Use ProtoNet(net, curvature_method='mc') (DiagGGN-MC), or fewer query "
                               "examples or classes per task.")
        rows = np.zeros((nq * N, nq, N))
        rows[np.arange(nq * N), np.repeat(np.arange(nq), N), np.tile(np.arange(N), nq)] = 1.0
        J = self._logit_vjp(x, task, rows, diff, A, net_vjp).reshape(nq, N, -1)
        p = softmax(logits)
        H = (np.einsum("qk,kl->qkl", p, np.eye(N)) - p[:, :, None] * p[:, None, :]) / nq
        return np.sum(J * (H @ J), axis=(0, 1))

    def _evaluate(self, x: np.ndarray, tasks: list[Task]) -> np.ndarray:
        return np.array([_metric("ce", self._logits(x, t)[0], t.yq) for t in tasks])


def _check_learner(learner: Any, name: str = "learner"):
    """Return ``learner`` if it is a :class:`~metalqr.tow.MAML` or :class:`~metalqr.tow.ProtoNet`.

    It lives beside the two classes so that :mod:`metalqr.tow._checks` need not import this
    module (no import cycle).
    """
    if not isinstance(learner, (MAML, ProtoNet)):
        raise ValidationTypeError(f"{name} must be a metalqr.tow.MAML or metalqr.tow.ProtoNet (see "
                                  f"metalqr.tow.make_learner); got {type(learner).__name__}.")
    return learner
