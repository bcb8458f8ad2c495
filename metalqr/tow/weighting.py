"""The weight computations of the built-in strategies.

``exploration`` and ``exploitation`` (Eq. (12) of the TOW paper, solved exactly) and ``tow``
(Algorithm 1, via :func:`metalqr.ilqr.ilqr`). The strategy objects and their registry live in
:mod:`metalqr.tow.weighting_strategies`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import warnings

import numpy as np
import scipy.optimize

from .._validation import as_float_array, check_choice, check_int, check_real, check_size
from ..exceptions import MetalqrError, TOWFallbackWarning, TrainingDivergedError, ValidationError
from ..ilqr import Derivatives, ILQRResult, backward_pass, ilqr
from ._checks import check_batches, check_beta_u, check_mu_u, check_optimizer, param_size
from .learner import _check_learner as check_learner
from .optimizers import SGD
from .tasks import Task

__all__ = ["dirichlet_weights", "tow_weights", "TOWResult", "TOWProblem", "LINE_SEARCHES", "TERMINAL_COSTS"]

MODES = ("exploration", "exploitation")
#: Line-search and acceptance rules of :func:`tow_weights`: ``"metalqr"`` (the solver's
#: default: Tassa et al.'s step sizes, acceptance on the quadratic model, box-QP bounds,
#: Levenberg-Marquardt regularisation) and ``"paper"`` (Algorithm 1 as printed).
LINE_SEARCHES = ("metalqr", "paper")
#: Terminal costs of the window: ``"none"`` (Eq. (7) as printed) or ``"validation"``.
TERMINAL_COSTS = ("none", "validation")
_PREFETCH = True        # tests switch it off to compare with the plain evaluation


def dirichlet_weights(losses: Any, kappa: float, mode: str) -> np.ndarray:
    r"""Return the exploration / exploitation baselines, Eq. (12) of the TOW paper, solved exactly.

    ``u* = argmin_u  s u'l - ln Dir(u; kappa)`` over the open simplex ``{u > 0, 1'u = 1}``,
    with ``s = -1`` for ``"exploration"`` (hard tasks get more weight) and ``s = +1`` for
    ``"exploitation"`` (familiar tasks get more weight). With the symmetric Dirichlet prior
    ``-ln Dir(u; kappa) = -(kappa - 1) sum_j ln u_j + const``, the objective is strictly
    convex for ``kappa > 1`` and its log barrier keeps ``u`` inside the simplex, so the
    Lagrange conditions ``s l_j - (kappa - 1) / u_j + lambda = 0``, ``1'u = 1`` are necessary
    and sufficient:

    ``u_j = (kappa - 1) / (s l_j + lambda)``,  ``sum_j u_j = 1``,  ``s l_j + lambda > 0``.

    ``phi(lambda) = sum_j (kappa - 1) / (s l_j + lambda)`` decreases strictly from ``+inf``
    to 0 on ``lambda > -min_j s l_j``, so ``lambda`` is its unique root. With
    ``d_j = s l_j - min_i s l_i >= 0`` and ``lambda = (kappa - 1) nu - min_i s l_i`` the
    root ``nu`` lies in ``[1, M]`` (the smallest ``d_j`` is 0, so ``phi >= 1`` at
    ``nu = 1``; every term is ``<= 1/M`` at ``nu = M``): it is found by Brent's method on
    that bracket, polished by Newton steps, and the residual ``|1'u - 1|`` is checked.
    This replaces SciPy's SLSQP, which the paper uses and which fails without saying so for
    losses of order 60 and above (issue 13 C).

    Parameters
    ----------
    losses : (M,) array_like of float
        Validation losses ``l_j(x)`` of the ``M >= 1`` tasks of a mini-batch (finite, real).
    kappa : float
        Dirichlet concentration, ``kappa > 1`` (the paper uses 1.2; ``kappa = 1`` is a flat
        prior with a vertex solution, and for ``kappa < 1`` Eq. (12) has no minimiser, the
        objective being unbounded below on the simplex). Large ``kappa`` tends to uniform.
    mode : {"exploration", "exploitation"}

    Returns
    -------
    u : (M,) ndarray
        The weights, ``u >= 0`` (``> 0`` unless a loss gap overflows ``(kappa - 1)`` by more
        than the float range), ``sum(u) = 1`` to rounding.

    Raises
    ------
    ValidationError
        Non-finite, complex, empty or non-1-D ``losses``; ``kappa <= 1``; unknown ``mode``.

    References
    ----------
    TOW paper [nguyen2023tow], Eq. (12) (the exploration and exploitation baselines).
    """
    losses = as_float_array(losses, "losses", ndim=1, allow_empty=False)
    kappa = check_real(kappa, "kappa", minimum=1.0, min_inclusive=False)
    mode = check_choice(mode, "mode", MODES)
    M = losses.size
    if M == 1:
        return np.ones(1)
    sl = -losses if mode == "exploration" else losses
    with np.errstate(over="ignore"):
        d = sl - sl.min()                       # >= 0, exactly 0 at the arg-min
        if not np.all(np.isfinite(d)):
            raise ValidationError(f"losses span more than the float range (max - min = {d.max()!r}); "
                                  f"rescale the losses.")
        a = kappa - 1.0
        r = d / a                               # may overflow to inf: weight 0, the right limit
    phi = lambda nu: float(np.sum(1.0 / (r + nu)) - 1.0)
    if phi(float(M)) >= 0.0:                    # all d_j = 0 (ties): uniform exactly
        return np.full(M, 1.0 / M)
    nu, info = scipy.optimize.brentq(phi, 1.0, float(M), xtol=1e-15, rtol=4 * np.finfo(float).eps,
                                     maxiter=200, full_output=True, disp=False)
    if not info.converged:
        raise MetalqrError(f"dirichlet_weights: the root finder did not converge ({info.flag}) for "
                           f"losses={losses!r}, kappa={kappa!r}; please report this input.")
    for _ in range(3):                          # Newton polish (phi is convex and decreasing)
        q = 1.0 / (r + nu)
        step = (np.sum(q) - 1.0) / np.sum(q * q)
        if not np.isfinite(step) or not (1.0 <= nu + step <= M):
            break
        nu += step
    u = 1.0 / (r + nu)
    residual = abs(float(u.sum()) - 1.0)
    if not residual <= 1e-10:
        raise MetalqrError(f"dirichlet_weights: the KKT solution has residual |sum u - 1| = "
                           f"{residual:.3g} for losses={losses!r}, kappa={kappa!r}; please report "
                           f"this input.")
    return u / u.sum()


@dataclass
class TOWResult:  # numpydoc ignore=PR01
    """Result of :func:`tow_weights`.

    Attributes
    ----------
    U : (T, M) ndarray
        The optimised task weights (``>= 0``).
    X : (T+1, S) ndarray
        The optimiser states along the trajectory (``S = D`` for SGD, ``3 D`` for Adam).
    ilqr : ILQRResult
        The iLQR result (``costs[0]`` is the uniform nominal trajectory's cost).
    trials : list of dict
        ``line_search="paper"`` only: every line-search trial, in order, with keys
        ``iteration`` (1-based), ``eps``, ``theta_1`` (the predicted slope ``dJ/d eps`` at
        0), ``change`` (``J(u) - J(u_hat)``, None when not evaluated), ``threshold``
        (``eps theta_1 / 2``) and ``verdict``: ``"accepted"``, ``"cost"`` (change above
        the threshold), ``"negative"`` (a weight ``u_ti < 0``; the trial stops at that
        step), ``"not finite"``; and ``"kept nominal"`` (``eps = 0``) when every halving
        failed.
    n_iterations : int
        iLQR iterations run (``ilqr.n_iterations``).
    stop_reason : str
        Why iLQR stopped (``ilqr.stop_reason``): the codes of
        :class:`~metalqr.ilqr.ILQRResult`, e.g. ``"tolerance"`` or ``"max_iterations"``
        (``n_ilqr`` reached); ``line_search="paper"`` can also give
        ``"not_positive_definite"`` and ``"line_search_failed"`` (nominal kept).
    converged : bool
        Whether iLQR met its stopping test (``ilqr.converged``).
    """

    U: np.ndarray
    X: np.ndarray
    ilqr: object
    trials: list = field(default_factory=list)
    n_iterations: int = field(init=False)
    stop_reason: str = field(init=False)
    converged: bool = field(init=False)

    def __post_init__(self) -> None:
        self.U = as_float_array(self.U, "U", ndim=2, allow_empty=False)
        self.X = as_float_array(self.X, "X", ndim=2, allow_empty=False)
        if self.X.shape[0] != self.U.shape[0] + 1:
            raise ValidationError(f"X must have T+1 = {self.U.shape[0] + 1} rows (one more than U); got "
                                  f"{self.X.shape[0]}.")
        self.n_iterations = int(self.ilqr.n_iterations)       # the shared result vocabulary
        self.stop_reason = str(self.ilqr.stop_reason)
        self.converged = bool(self.ilqr.converged)


@dataclass
class TOWProblem:
    """The trajectory-optimisation problem of one TOW window (Algorithm 1).

    The trajectory-optimisation problem of one TOW window (Algorithm 1 of the TOW paper), in the
    form :func:`metalqr.ilqr.ilqr` takes: ``dynamics(z, u, t)``, ``cost(z, u, t)`` and
    ``derivatives(Z, U)`` (see :func:`tow_weights`).

    Parameters
    ----------
    learner : MAML or ProtoNet
        Gives the tasks' losses, gradients and curvatures.
    batches : sequence of T lists of M :class:`Task`
        The window's mini-batches.
    optimizer : SGD or Adam
        The meta-optimiser whose update is the dynamics (Eq. (90) / (97)).
    D : int
        Number of meta-parameters (the learner's parameter count).
    tau0 : int, >= 0
        Updates done before this window (Adam's bias correction uses ``tau0 + t + 1``).
    beta_u : float, in (0, 1e12]
        Precision of the Gaussian prior on the weights, Eq. (7) (larger values overflow the
        cost and pin every weight to ``mu`` anyway).
    mu : float, in [0, 1e6]
        Prior mean of every weight (``1/M`` in the paper).
    terminal : {"none", "validation"}
        Terminal cost on ``x_{T+1}``: none (Eq. (7) and Algorithm 2's ``V_{T+1} = 0``: the
        last mini-batch's weights then move nothing the cost sees and stay at ``mu``) or the
        validation losses of the window's last mini-batch at ``x_{T+1}``,
        ``1' l_T(x_{T+1})`` (gradient ``sum_j grad l_j``, curvature the sum of the
        Gauss-Newton diagonals, on the ``x`` part of the state).

    Raises
    ------
    ValidationError
        Any argument malformed or inconsistent (``D`` not the learner's parameter count).

    References
    ----------
    TOW paper [nguyen2023tow], Algorithm 1, Eq. (5)-(7) and Appendices G-H.
    """

    learner: object
    batches: Sequence[list[Task]]
    optimizer: object
    D: int
    tau0: int = 0
    beta_u: float = 10.0
    mu: float = 0.2
    terminal: str = "none"
    _cache: dict = field(default_factory=dict, repr=False)
    _gn: dict = field(default_factory=dict, repr=False)
    #: Set by :func:`tow_weights`: until the first derivatives() call (the nominal roll-out,
    #: whose every point the first iLQR iteration linearises), evaluations also compute the
    #: Gauss-Newton diagonals, sharing the learner's adaptation / forward pass
    #: (``learner.batch(..., curvature=True)``). Off for other uses of the problem.
    _prefetch: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        check_learner(self.learner)
        self.batches = check_batches(self.batches)
        check_optimizer(self.optimizer)
        self.D = check_int(self.D, "D", minimum=1)
        if self.D != param_size(self.learner):
            raise ValidationError(f"D must equal the learner's parameter count "
                                  f"{param_size(self.learner)}; got {self.D}.")
        self.tau0 = check_int(self.tau0, "tau0", minimum=0)
        self.beta_u = check_beta_u(self.beta_u)
        self.mu = check_mu_u(self.mu, "mu")
        self.terminal = check_choice(self.terminal, "terminal", TERMINAL_COSTS)
        self._T, self._M = len(self.batches), len(self.batches[0])
        self._S = self.optimizer.state_size(self.D)

    def _check_step(self, zt, u, t):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) or not 0 <= t < self._T:
            raise ValidationError(f"t must be an int step index in [0, {self._T - 1}]; got {t!r}.")
        zt = as_float_array(zt, "zt", shape=(self._S,))
        if u is not None:
            u = as_float_array(u, "u", shape=(self._M,))
        return zt, u

    def evaluate(self, zt: np.ndarray, t: int):
        """Return the losses and gradients of mini-batch ``t`` at state ``zt``.

        The forward pass asks for the dynamics and the cost at the same ``(zt, t)``, and the
        derivatives at the accepted trajectory, so the last evaluation per step ``t`` is
        kept.

        Parameters
        ----------
        zt : (S,) ndarray
            Optimiser state.
        t : int
            Mini-batch index.

        Returns
        -------
        losses : (M,) ndarray
            The tasks' validation losses.
        G : (D, M) ndarray
            Their gradients.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``t`` not a step index of the window, or ``zt`` (or ``u``) of the wrong shape or
            not finite.
        """
        zt, _ = self._check_step(zt, None, t)
        return self._evaluate(zt, t)

    def _evaluate(self, zt, t):
        """Return the losses and gradients of mini-batch ``t`` (cached).

        Losses and gradients of mini-batch ``t`` at ``zt`` (``t = T``: the last mini-batch
        at ``x_{T+1}``, the terminal cost), cached per ``t``.
        """
        key = zt[:self.D].tobytes()
        if self._cache.get(t, (None,))[0] != key:
            batch = self.batches[min(t, self._T - 1)]
            if self._prefetch:
                losses, G, GN = self.learner.batch(zt[:self.D], batch, curvature=True)
                self._gn[t] = (key, GN)
            else:
                losses, G = self.learner.batch(zt[:self.D], batch)[:2]
            self._cache[t] = (key, losses, G)
        return self._cache[t][1:]

    def _curvature(self, zt, t):
        """Return the per-task Gauss-Newton diagonals of mini-batch ``t`` (cached).

        Per-task Gauss-Newton diagonals (D, M) of mini-batch ``t`` at ``zt``, cached per
        ``t`` (``x_1`` is the same in every iteration of a window).
        """
        key = zt[:self.D].tobytes()
        if self._gn.get(t, (None,))[0] != key:
            self._gn[t] = (key, self.learner.curvature(zt[:self.D], self.batches[min(t, self._T - 1)]))
        return self._gn[t][1]

    def terminal_cost(self, zT) -> float:
        """Return the cost of ``x_{T+1}``.

        Cost of ``x_{T+1}``: 0 (``terminal="none"``) or ``1' l_T(x_{T+1})``.

        Parameters
        ----------
        zT : (S,) ndarray
            The final optimiser state.

        Returns
        -------
        float
            0 (``terminal_cost="none"``) or ``1' l_T(x_{T+1})``.

        Raises
        ------
        ValidationError, ValidationTypeError
            With a terminal cost, ``zT`` of the wrong shape or not finite.
        """
        if self.terminal == "none":
            return 0.0
        zT = as_float_array(zT, "zT", shape=(self._S,))
        return float(self._evaluate(zT, self._T)[0].sum())

    def dynamics(self, zt, u, t):
        """Apply one optimiser update with the weighted gradient ``J_t' u`` (Eq. (90) / (97)).

        Parameters
        ----------
        zt : (S,) ndarray
            Optimiser state.
        u : (M,) ndarray
            Task weights.
        t : int
            Mini-batch index.

        Returns
        -------
        (S,) ndarray
            The next state.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``t`` not a step index of the window, or ``zt`` (or ``u``) of the wrong shape or
            not finite.
        """
        zt, u = self._check_step(zt, u, t)
        return self.optimizer.step(zt, self._evaluate(zt, t)[1] @ u, self.tau0 + t + 1)

    def cost(self, zt, u, t):
        """Return the stage cost of Eq. (7), ``1'l(x_t) + beta_u/2 |u_t - mu_u|^2``.

        Parameters
        ----------
        zt : (S,) ndarray
            Optimiser state.
        u : (M,) ndarray
            Task weights.
        t : int
            Mini-batch index.

        Returns
        -------
        float
            The cost.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``t`` not a step index of the window, or ``zt`` (or ``u``) of the wrong shape or
            not finite.
        """
        zt, u = self._check_step(zt, u, t)
        return float(self._evaluate(zt, t)[0].sum() + 0.5 * self.beta_u * np.sum((u - self.mu) ** 2))

    def derivatives(self, Z, U) -> Derivatives:
        """Return the linearised dynamics and quadratised cost along a trajectory.

        Linearised dynamics and quadratised cost (Eq. (92)/(99)-(105), (106)-(108)).

        Parameters
        ----------
        Z : (T+1, S) or (T, S) ndarray
            Optimiser states (only the first ``T`` rows are read).
        U : (T, M) ndarray
            Task weights.

        Returns
        -------
        Derivatives
            Diagonal ``f_x`` (T, S), ``c_xx`` (T, S) and ``cT_xx`` (S,) (the Gauss-Newton
            diagonals), ``f_u`` (T, S, M), zero terminal cost.

        Raises
        ------
        ValidationError
            ``Z`` or ``U`` of the wrong shape or not finite.
        """
        T, M, S, D = self._T, self._M, self._S, self.D
        Z = as_float_array(Z, "Z", ndim=2)
        shapes = ((T + 1, S),) if self.terminal != "none" else ((T + 1, S), (T, S))
        if Z.shape not in shapes:
            raise ValidationError(f"Z must have shape ({T + 1}, {S})"
                                  + (f" (or its first {T} rows)" if len(shapes) == 2 else
                                     " (the terminal cost needs x_{T+1})") + f"; got {Z.shape}.")
        U = as_float_array(U, "U", shape=(T, M))
        f_x, f_u, c_x, c_xx = (np.empty((T, S)), np.empty((T, S, M)), np.zeros((T, S)), np.zeros((T, S)))
        for t in range(T):
            G = self._evaluate(Z[t], t)[1]
            GN = self._curvature(Z[t], t)
            f_x[t], f_u[t] = self.optimizer.linearize(Z[t], G @ U[t], G, GN @ U[t], self.tau0 + t + 1)
            c_x[t, :D] = G.sum(axis=1)
            c_xx[t, :D] = GN.sum(axis=1)
        cT_x, cT_xx = np.zeros(S), np.zeros(S)
        if self.terminal == "validation":
            cT_x[:D] = self._evaluate(Z[T], T)[1].sum(axis=1)
            cT_xx[:D] = self._curvature(Z[T], T).sum(axis=1)
        self._prefetch = False          # later evaluations are line-search trials
        return Derivatives(f_x=f_x, f_u=f_u, c_x=c_x, c_u=self.beta_u * (U - self.mu), c_xx=c_xx,
                           c_uu=np.broadcast_to(self.beta_u * np.eye(M), (T, M, M)).copy(), c_ux=None,
                           cT_x=cT_x, cT_xx=cT_xx)


def tow_weights(learner, z: np.ndarray, batches: Sequence[list[Task]], *, alpha: float | None = None,
                optimizer=None, tau0: int = 0, beta_u: float = 10.0, mu_u: float | None = None,
                n_ilqr: int = 2, value_model: str = "diagonal", constraint: str | None = None,
                tol: float = 0.0, line_search: str = "metalqr", max_halvings: int = 10,
                terminal_cost: str = "none") -> TOWResult:
    """Optimise the task weights of one window by Algorithm 1 of the TOW paper.

    The window has ``T = len(batches)`` mini-batches of ``M`` tasks.

    State: the optimiser state ``z`` (the meta-parameters ``x`` for SGD, ``(x, m, v)`` for
    Adam; see ``metalqr.tow.optimizers``); action: weights ``u`` of the ``M`` tasks of a
    mini-batch; dynamics: one optimiser update with ``g = sum_j u_j grad l_j(x_t)`` (SGD
    Eq. (90), Adam Eq. (97), update count ``tau0 + t + 1``); cost Eq. (7):
    ``1'l(x_t) + beta_u/2 |u_t - mu_u|^2``. Derivatives (Appendix G, H): ``f_z`` and ``f_u``
    from the optimiser's linearisation with the Gauss-Newton diagonal ``sum_j u_j GN_j`` as
    the Hessian, ``c_x = sum_j grad l_j``, ``c_xx ~ diag(sum_j GN_j)`` (zero on ``m, v``),
    ``c_u = beta_u (u - mu_u)``, ``c_uu = beta_u I``. Solved by iLQR from the uniform
    nominal ``u = mu_u`` with ``u >= 0``.

    **Line search** (``line_search``):

    * ``"metalqr"`` (default): :func:`metalqr.ilqr.ilqr` with its step sizes
      ``10**linspace(0, -3, 11)``, acceptance ``J(u) - J(u_hat) <= 0.1 dJ(eps)`` with the
      quadratic model ``dJ(eps) = eps sum k'Q_u + eps^2/2 sum k'Q_uu k``, bounds by box QP
      (``constraint="boxqp"``) or rejection (``"reject"``), and Levenberg-Marquardt
      regularisation raised after a failed line search.
    * ``"paper"``: Algorithm 1 lines 9-19 as printed: unconstrained gains (Algorithm 2, no
      regularisation), ``eps = 1, 1/2, 1/4, ...`` (``eps = 2`` halved before the first
      trial), accepting the first trial with ``J(u) - J(u_hat) <= eps theta_1 / 2`` **and**
      every ``u_ti >= 0`` (line 17; Eq. (72) prints ``<``). ``theta_1`` is the slope
      ``dJ/d eps`` at ``eps = 0``, ``sum_t k_t'q_u,t`` (Appendix F, Eq. (79)-(81)); the
      printed Eq. (74) / Algorithm 2 line 17, ``theta_t = theta_{t+1} - q_u'Q_uu q_u``, and
      Eq. (80), ``k = -Q_uu q_u``, drop the inverse of ``Q_uu`` (with it,
      ``theta_1 = -sum q_u'Q_uu^{-1} q_u < 0`` as Lemma 11 states). After ``max_halvings``
      failed trials ``eps`` is taken as 0: the nominal trajectory is kept (the paper's
      "worst case ... uniform weighting"). A trial stops at the first step with a negative
      weight (the rule rejects it whatever its cost), saving the remaining evaluations.
      Other typos read through: line 20 ``x_1 <- x_T`` is ``x_{T+1}``; line 7's "random"
      nominal actions are the uniform ones of Section 3.1; ``N`` in line 17 is ``T``.

    **Terminal cost** (``terminal_cost``): with ``"none"`` (Eq. (7) and Algorithm 2's
    ``V_{T+1} = 0``), ``u_T`` changes only ``x_{T+1}``, which no cost term sees: its
    gradient is ``beta_u (u_T - mu_u)``, so **the last mini-batch of every window keeps the
    uniform weights** ``mu_u`` (exactly, up to the feedback term, which is 0 there). With
    ``"validation"`` the window's cost gains ``1' l_T(x_{T+1})``, the last mini-batch's
    validation losses after the window, so its weights move too.

    Parameters
    ----------
    learner : MAML or ProtoNet
        Gives the tasks' validation losses, gradients and Gauss-Newton diagonals.
    z : (S,) array_like
        Optimiser state, ``S = D`` (SGD) or ``3 D`` (Adam), ``D`` the learner's parameter count.
    batches : sequence of T >= 1 lists of M >= 1 :class:`Task`
        The window's mini-batches.
    alpha : float, > 0, optional
        Meta step size of plain SGD; give either ``alpha`` or ``optimizer``.
    optimizer : SGD or Adam, optional
        The meta-optimiser whose update is the dynamics.
    tau0 : int, >= 0
        Updates done before this window.
    beta_u : float, in (0, 1e12]
        Prior precision of Eq. (7) (the paper: 10); larger values are refused (they overflow
        the iLQR cost, issue 1).
    mu_u : float, in [0, 1e6], optional
        Prior mean of the weights (default ``1/M``).
    n_ilqr : int, >= 1
        Number of iLQR iterations (the paper: 2).
    value_model : {"diagonal", "full"}
        iLQR's value model (the paper's is diagonal, Section 3.1).
    constraint : {"boxqp", "reject"}, optional
        How ``"metalqr"`` imposes ``u >= 0`` (default ``"boxqp"``); ``"paper"`` rejects
        (``"reject"``, the only value it accepts).
    tol : float, >= 0
        Relative stopping tolerance of iLQR (0: always run ``n_ilqr`` iterations).
    line_search : {"metalqr", "paper"}
    max_halvings : int, in [1, 60]
        ``"paper"``: trials ``eps = 1 ... 2**(1 - max_halvings)`` before ``eps = 0``.
    terminal_cost : {"none", "validation"}

    Returns
    -------
    TOWResult
        The (T, M) weights ``U``, the (T+1, S) optimiser states ``X`` and the iLQR result.

    Raises
    ------
    ValidationError
        Malformed or inconsistent arguments.
    TrainingDivergedError
        The optimised trajectory is not finite (reduce the meta step size).
    MetalqrError
        iLQR's answer failed its checks (negative weights, or a cost above the nominal's).

    Warns
    -----
    TOWFallbackWarning
        iLQR stopped without converging and without accepting any step (e.g. "regularization
        limit ... Q_uu not positive definite", with ``ilqr.gradient_norm`` NaN, or, with
        ``line_search="paper"``, no trial accepted): the returned ``U`` is exactly the uniform
        nominal ``mu_u``, not optimised weights. The message names iLQR's stop reason. (No
        warning when the gradient is exactly 0, e.g. ``T = 1`` without terminal cost: uniform
        is then the optimum.)

    References
    ----------
    TOW paper [nguyen2023tow], Algorithm 1 and Eq. (5)-(7); the linearisation of Appendix G
    and the quadratised cost of Appendix H.

    Examples
    --------
    >>> import numpy as np
    >>> from metalqr.tow import SinusoidTasks, make_learner, tow_weights
    >>> source = SinusoidTasks()
    >>> learner = make_learner("fomaml", source, hidden=8)
    >>> rng = np.random.default_rng(0)
    >>> batches = [source.sample(rng, 3, train=True) for _ in range(2)]   # T = 2, M = 3
    >>> res = tow_weights(learner, learner.init(0), batches, alpha=0.05)
    >>> res.U.shape, bool((res.U >= 0).all())
    ((2, 3), True)
    """
    learner = check_learner(learner)
    batches = check_batches(batches)
    if optimizer is None:
        if alpha is None:
            raise ValidationError("alpha: give the meta step size alpha (SGD) or an optimizer.")
        optimizer = SGD(alpha)
    else:
        check_optimizer(optimizer)
        if alpha is not None:
            raise ValidationError("alpha: give either alpha (plain SGD) or optimizer, not both.")
    D = param_size(learner)
    S = optimizer.state_size(D)
    z = as_float_array(z, "z", ndim=1)
    if z.size != S:
        raise ValidationError(f"z must have length {S} (the {type(optimizer).__name__} state of a learner "
                              f"with {D} parameters); got {z.size}.")
    M = len(batches[0])
    tau0 = check_int(tau0, "tau0", minimum=0)
    beta_u = check_beta_u(beta_u)
    mu = 1.0 / M if mu_u is None else check_mu_u(mu_u)
    n_ilqr = check_int(n_ilqr, "n_ilqr", minimum=1)
    value_model = check_choice(value_model, "value_model", ("diagonal", "full"))
    line_search = check_choice(line_search, "line_search", LINE_SEARCHES)
    if constraint is None:
        constraint = "boxqp" if line_search == "metalqr" else "reject"
    constraint = check_choice(constraint, "constraint", ("boxqp", "reject"))
    if line_search == "paper" and constraint != "reject":
        raise ValidationError("constraint: line_search='paper' imposes u >= 0 by rejecting trials "
                              "(Algorithm 1, line 17); constraint='boxqp' applies to line_search='metalqr' "
                              "only. Omit constraint (or pass 'reject').")
    max_halvings = check_int(max_halvings, "max_halvings", minimum=1, maximum=60)
    terminal_cost = check_choice(terminal_cost, "terminal_cost", TERMINAL_COSTS)
    tol = check_real(tol, "tol", minimum=0.0)
    if value_model == "full":               # dense S x S value matrices and gains over the window
        check_size(float(S) * S * (len(batches) + 3) + float(len(batches)) * M * S, "tow_weights",
                   what="float64 entries (full value model)",
                   alternative="Use value_model='diagonal' (the TOW paper's choice, O(S M^2) per step).")
    problem = TOWProblem(learner, batches, optimizer, D, tau0, beta_u, mu, terminal_cost)
    problem._prefetch = _PREFETCH           # the nominal roll-out also computes the curvature
    U0 = np.full((len(batches), M), mu)
    trials: list = []
    if line_search == "paper":
        res = _paper_ilqr(problem, z, U0, n_ilqr, value_model, max_halvings, tol, trials)
    else:
        res = ilqr(problem.dynamics, problem.cost, z, U0, terminal_cost=problem.terminal_cost,
                   derivatives=problem.derivatives, value_model=value_model, u_min=0.0, constraint=constraint,
                   max_iterations=n_ilqr, tol=tol)
    # Check iLQR's answer before using it (issue 13 C): a finite trajectory, feasible weights,
    # and a cost no worse than the uniform nominal's (iLQR only accepts decreasing steps).
    if not (np.all(np.isfinite(res.X)) and np.all(np.isfinite(res.U)) and np.isfinite(res.cost)):
        raise TrainingDivergedError("tow_weights: the optimised trajectory is not finite; reduce the meta "
                                    "step size (alpha) or raise beta_u.")
    if np.any(res.U < 0.0):
        raise MetalqrError(f"tow_weights: iLQR returned negative weights (min {res.U.min():.3g}) although "
                           f"u >= 0 was imposed ({constraint!r}); please report this input.")
    if res.cost > res.costs[0] + 1e-9 * max(1.0, abs(res.costs[0])):
        raise MetalqrError(f"tow_weights: iLQR's final cost {res.cost:.6g} exceeds the uniform nominal's "
                           f"{res.costs[0]:.6g}; please report this input.")
    if not res.converged and res.gradient_norm != 0.0 and np.array_equal(res.U, U0):   # 0: uniform is optimal
        gnorm = (f"gradient norm {res.gradient_norm:.3g}" if np.isfinite(res.gradient_norm)
                 else "no backward pass completed")
        warnings.warn(f"tow_weights: iLQR accepted no step (stop reason {res.stop_reason}: {res.message}; "
                      f"{gnorm}), so the weights are the uniform nominal mu_u = {mu:.6g}, not "
                      f"TOW's; check the scale of z or raise beta_u.", TOWFallbackWarning, stacklevel=2)
    return TOWResult(res.U, res.X, res, trials)


def _paper_ilqr(problem: TOWProblem, z: np.ndarray, U: np.ndarray, n_ilqr: int, value_model: str,
                max_halvings: int, tol: float, trials: list) -> ILQRResult:
    """Algorithm 1, lines 8-19, as printed (see :func:`tow_weights`); every trial is appended to ``trials``.

    Returns an :class:`~metalqr.ilqr.ILQRResult`.
    """
    T, M = U.shape

    def total(X, U):
        return sum(problem.cost(X[t], U[t], t) for t in range(T)) + problem.terminal_cost(X[T])

    def forward(X, U, K, k, eps):
        """Line 14-16; stops at the first negative weight (returns its step)."""
        Xn, Un = np.empty_like(X), np.empty_like(U)
        Xn[0] = X[0]
        for t in range(T):
            u = U[t] + eps * k[t] + K[t] @ (Xn[t] - X[t])
            if np.any(u < 0.0):
                return None, None, t
            Un[t] = u
            with np.errstate(all="ignore"):
                Xn[t + 1] = problem.dynamics(Xn[t], u, t)
            if not np.all(np.isfinite(Xn[t + 1])):
                return None, None, -2
        return Xn, Un, -1

    X = np.empty((T + 1, z.size))
    X[0] = z
    for t in range(T):                                      # line 8: the nominal (uniform) roll-out
        X[t + 1] = problem.dynamics(X[t], U[t], t)
    J = total(X, U)
    costs, reason, converged, it = [J], "max_iterations", False, 0
    message = f"iteration limit reached (n_ilqr={n_ilqr})"
    K, k, gnorm = np.zeros((T, M, z.size)), np.zeros((T, M)), float("nan")
    for it in range(1, n_ilqr + 1):
        back = backward_pass(problem.derivatives(X, U), U, mu=0.0, value_model=value_model,
                             u_min=None, u_max=None)
        if not back.ok:
            reason = "not_positive_definite"
            message = (f"Q_uu not positive definite at step {back.failed_at} (Algorithm 2 has no "
                       f"regularisation): nominal kept")
            break
        K, k, gnorm = back.K, back.k, back.gradient_norm
        theta1 = back.dV[0]                                   # sum_t k_t'q_u,t = dJ/d eps at 0
        if not theta1 < -tol * max(1.0, abs(J)):
            reason, converged = "tolerance", True
            message = f"stationary (theta_1 = {theta1:.3g})"
            break
        eps, accepted = 2.0, False
        for _ in range(max_halvings):
            eps *= 0.5
            Xn, Un, where = forward(X, U, K, k, eps)
            trial = dict(iteration=it, eps=eps, theta_1=theta1, change=None, threshold=0.5 * eps * theta1)
            if where >= 0:
                trial["verdict"] = "negative"
            elif where == -2:
                trial["verdict"] = "not finite"
            else:
                Jn = total(Xn, Un)
                trial["change"] = Jn - J
                ok = np.isfinite(Jn) and Jn - J <= 0.5 * eps * theta1
                trial["verdict"] = "accepted" if ok else ("cost" if np.isfinite(Jn) else "not finite")
            trials.append(trial)
            if trial["verdict"] == "accepted":
                X, U, J, accepted = Xn, Un, Jn, True
                break
        if not accepted:
            trials.append(dict(iteration=it, eps=0.0, theta_1=theta1, change=0.0, threshold=0.0,
                               verdict="kept nominal"))
            reason = "line_search_failed"
            message = f"no step accepted in {max_halvings} halvings (eps = 0, nominal kept)"
            break
        costs.append(J)
    return ILQRResult(X, U, K, k, J, costs, converged, reason, it, 0.0, "none", gnorm, message)
