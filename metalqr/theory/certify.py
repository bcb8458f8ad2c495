"""Sub-level-set suprema of the constants and the conditions of Theorems 1-2.

Suprema of the constants over the stabilising sub-level set and the step-size, sample-size and
iteration conditions of Lemmas 6-7 and Theorems 1-2 of the ZO-MAML paper, as a report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .._validation import check_positive, check_probability, check_real, format_radius
from ..exceptions import UnstablePolicyError, ValidationError, ValidationTypeError
from ..lqr import spectral_radius
from ..lqr.tasks import as_batch
from ..meta.objective import as_taskset, is_maml_stabilizing, maml_objective, optimal_costs
from .constants import (TaskConstants, _check_definite, _common_gain, _guarded, gradient_domination_lambda, h_c,
                        h_cost, h_Delta, h_G, h_grad, h_H, h_hess, h_r2, h_sample_task, rollout_length_meta, rollout_length_variance,
                        task_constants)

__all__ = ["sublevel_constants", "Certificate", "certify"]


@_guarded
def sublevel_constants(tasks: Any, K0: Any, gamma: float = 1.0) -> TaskConstants:
    """Bound the constants on the whole sub-level set (Definition 2).

    Bounds valid on the whole sub-level set ``S = {K : J_i(K) - J_i* <= gamma (J_i(K0) -
    J_i*)}`` (Definition 2).

    Method (closed form, conservative): on ``S``, ``J_i(K) <= J_i* + gamma Delta_0^i`` so
    ``J_max <= Jbar = max_i (J_i* + gamma Delta_0^i)``; ``||P_K|| <= J(K) / mu`` (as
    ``J = Tr(P Psi) >= mu ||P||``) gives ``||R + B'PB|| <= ||R|| + ||B||^2 Jbar / mu`` and
    ``||B'PA||_F <= ||B||_F ||A|| Jbar / mu``; then ``||K|| <= ||K||_F <= h_c`` and
    ``||A - BK|| <= ||A|| + ||B|| h_c``. Every polynomial of ``constants`` is increasing
    in these quantities (``h_Delta`` decreasing), so evaluating it on the returned object
    gives its supremum (infimum for ``h_Delta``) over ``S``.

    Parameters
    ----------
    tasks : TaskSet or LQRTask
        Task family with positive definite ``Q_i`` and ``Psi_i``.
    K0 : array_like, shape (k, d)
        Gain stabilising every task (defines the sub-level set).
    gamma : float > 0
        Sub-level ratio; ``gamma >= 1`` makes ``S`` contain ``K0``.

    Returns
    -------
    TaskConstants
        Suprema over ``S`` (``J`` holds a lower bound ``J_i*`` of the costs on ``S``).

    Raises
    ------
    ValidationError
        On a malformed task set or gain, a non-positive or non-finite ``gamma``, or
        semidefinite ``Q_i`` / ``Psi_i`` (see :func:`task_constants`).
    UnstablePolicyError
        If ``K0`` does not stabilise some task.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Definition 2 and Appendix A.
    """
    ts = as_taskset(tasks)
    gamma = check_positive(gamma, "gamma")
    K0 = np.array(_common_gain(ts, K0, "K0")[0])
    rho = spectral_radius(ts, K0)
    if np.any(rho >= 1.0):
        i = int(np.argmax(rho))
        raise UnstablePolicyError(f"sublevel_constants needs a K0 that stabilises every task, but K0 does not "
                                  f"stabilise task {i} (spectral radius of A - B K0 is {format_radius(rho[i])} >= 1); "
                                  f"start from metalqr.common_stabilizing_gain(tasks).",
                                  task_index=i, spectral_radius=float(rho[i]))
    c0 = task_constants(ts, K0)
    Jbar = float(np.max(c0.J_star + gamma * (c0.J - c0.J_star)))
    norm_B_F = float(np.max(np.linalg.norm(ts.B, axis=(-2, -1))))
    bounds = replace(c0, J=np.maximum(c0.J_star, 1e-300), J_max=Jbar,
                     RBPB=c0.norm_R + c0.norm_B**2 * Jbar / c0.mu,
                     BPA_F=norm_B_F * c0.norm_A * Jbar / c0.mu)
    Kbar = h_c(bounds)
    norm_A_F = float(np.max(np.linalg.norm(ts.A, axis=(-2, -1))))
    return replace(bounds, norm_K=Kbar, norm_K_F=Kbar, norm_AK=c0.norm_A + c0.norm_B * Kbar,
                   norm_AK_F=norm_A_F + norm_B_F * Kbar)


@dataclass
class Certificate:  # numpydoc ignore=PR01
    """What Lemmas 6-7 and Theorems 1-2 require, evaluated on a task set (see :func:`certify`).

    Attributes
    ----------
    eta, alpha : float
        The inner and outer step sizes given.
    epsilon, delta : float
        The accuracy and failure probability given.
    eta_max, alpha_max : float
        The largest step sizes Theorem 1 allows.
    radius_max : float
        The largest smoothing radius of Lemma 6.
    n_perturbations_min : float
        The fewest perturbations of Lemma 6.
    rollout_length_min : float
        The shortest roll-out of Lemma 6.
    task_batch_min : float
        The smallest task batch of Lemma 7.
    meta_radius_max : float
        The largest smoothing radius of Lemma 7.
    meta_rollout_length_min : float
        The shortest outer roll-out of Lemma 7.
    iterations_min : float
        The iteration count of Theorem 2 (``inf`` when it does not apply).
    psi0 : float
        The initial optimality gap ``L(K0) - L(K*)`` used (an upper bound by default).
    constants : dict
        The constants behind these figures (``h_grad``, ``h_H``, ...).

    Raises
    ------
    ValidationError, ValidationTypeError
        A malformed field (hand-built certificates are checked too).

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Theorems 1-2 and Lemmas 6-7.
    """

    eta: float
    alpha: float
    epsilon: float
    delta: float
    eta_max: float
    alpha_max: float
    radius_max: float
    n_perturbations_min: float
    rollout_length_min: float
    task_batch_min: float
    meta_radius_max: float
    meta_rollout_length_min: float
    iterations_min: float
    psi0: float
    constants: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate the fields of a certificate.

        Validate the fields (filled by :func:`certify`; hand-built ones are checked too):
        real numbers, never NaN, ``>= 0`` (``iterations_min`` may be ``inf``: Theorem 2 does
        not apply when ``eta h_H >= 1``).

        Raises
        ------
        ValidationError
            On a non-real, NaN, negative (or, except ``iterations_min``, infinite) field.
        """
        for name in ("eta", "alpha", "epsilon", "delta", "eta_max", "alpha_max", "radius_max",
                     "n_perturbations_min", "rollout_length_min", "task_batch_min", "meta_radius_max",
                     "meta_rollout_length_min", "psi0"):
            setattr(self, name, check_real(getattr(self, name), f"Certificate.{name}", minimum=0.0))
        N = self.iterations_min
        if not (isinstance(N, (int, float, np.floating, np.integer)) and not isinstance(N, bool)
                and not math.isnan(N) and N >= 0):
            raise ValidationError(f"Certificate.iterations_min must be a number >= 0 (inf allowed); got {N!r}.")
        if not isinstance(self.constants, dict):
            raise ValidationTypeError(f"Certificate.constants must be a dict; got {type(self.constants).__name__}.")

    @property
    def conditions(self) -> dict[str, bool]:
        """The step-size conditions of Theorem 1: ``{"eta <= eta_max": bool, "alpha <= alpha_max": bool}``."""
        return {"eta <= eta_max": self.eta <= self.eta_max,
                "alpha <= alpha_max": self.alpha <= self.alpha_max}

    @property
    def holds(self) -> bool:
        """Whether every condition of :attr:`conditions` holds."""
        return all(self.conditions.values())

    def __str__(self) -> str:
        lines = [f"Theorem 1 / Lemma 6 certificate (epsilon={self.epsilon:g}, delta={self.delta:g})"]
        for name, ok in self.conditions.items():
            lines.append(f"  {'OK ' if ok else 'NO '} {name}")
        lines += [f"  eta_max            = {self.eta_max:.4g}  (given {self.eta:.4g})",
                  f"  alpha_max          = {self.alpha_max:.4g}  (given {self.alpha:.4g})",
                  f"  radius r <=          {self.radius_max:.4g}",
                  f"  perturbations M >=   {self.n_perturbations_min:.4g}",
                  f"  roll-out length l >= {self.rollout_length_min:.4g}  (max of h_l,grad and h_l,var)",
                  "Lemma 7 (meta-gradient within epsilon) / Theorem 2",
                  f"  task batch |T_n| >=  {self.task_batch_min:.4g}",
                  f"  radius r <=          {self.meta_radius_max:.4g}  (h_r^2)",
                  f"  roll-out length l >= {self.meta_rollout_length_min:.4g}  (h^2_l,grad)",
                  f"  iterations N >=      {self.iterations_min:.4g}  (psi0 = {self.psi0:.4g})"]
        lines += [f"  {k} = {v:.4g}" for k, v in self.constants.items()]
        return "\n".join(lines)


@_guarded
def certify(tasks: Any, K0: Any, *, eta: float, alpha: float, epsilon: float, delta: float,
            gamma: float = 1.0, epsilon0: float | None = None, L_star: float | None = None) -> Certificate:
    """Certify Theorems 1-2 and Lemmas 6-7 on a task set.

    Evaluate the step-size conditions of Theorem 1, the estimation conditions of Lemmas 6 and 7
    and the iteration count of Theorem 2 on a task set, with suprema over the sub-level set from
    :func:`sublevel_constants`.

    * Theorem 1: ``eta <= min(sqrt(1 / (4 (hg^2 k^2 + hg^2 hH^2 + hH^2))), 1 / (4 hg))`` and
      ``alpha <= 1 / (2 phi_2 hg)`` with ``phi_2 = (k^2 + eta^2 hH^2)(2 + 2 hg^2 eta^2)``.
    * Lemma 6 (gradient estimate within ``epsilon`` w.p. ``1 - 2 delta``):
      ``r <= min(1 / hcost, h_Delta, epsilon / (4 hg))``;
      ``M >= 32 min(d,k)/eps^2 (sigma_r^2 + B_r eps / (12 sqrt(min(d,k)))) log((d+k)/delta)``
      with ``B_r = (dk/r)(1 + r hcost) Jbar + hg r + hG`` and
      ``sigma_r^2 = ((dk/r)(1 + r hcost) Jbar)^2 + (r hg + hG)^2`` at the largest admissible
      ``r``; ``l >= max(h_l,grad, h_l,var)`` with
      ``h_l,grad = 16 d^2 k^2 Jbar^2 (||Q|| + ||R|| ||K||^2) / (eps r mu sigma_Q^2)`` and
      ``h_l,var`` = :func:`rollout_length_variance` at accuracy ``eps r / (4 d k)`` and
      confidence ``delta / M`` (derived; the paper cites Fazel et al. Lemma 32).

    * Lemma 7 (meta-gradient within ``epsilon``): task batch :func:`h_sample_task`, radius
      :func:`h_r2` and outer roll-out length :func:`rollout_length_meta` at that radius.
    * Theorem 2: ``N >= 8 / (alpha lambda (1 - eta^2 hH^2)) log(2 psi0 / epsilon0)`` with
      ``lambda = min_i lambda_i`` (Lemma 3) and ``psi0 = L(K0) - L(K*)``. ``L(K*)`` is
      ``L_star`` when given, otherwise the lower bound ``mean_i J_i(K_i*) <= L(K*)``, which
      over-estimates ``psi0`` and so keeps ``N`` conservative. ``N`` is ``inf`` when
      ``eta hH >= 1`` (the theorem does not apply).

    Here ``hg = h_grad``, ``hH = h_H``, ``hG`` the corrected ``h_G``, ``hcost`` the relative
    cost constant (derived form, see :func:`metalqr.theory.h_cost`).

    Parameters
    ----------
    tasks : TaskSet or LQRTask
        Task family; every ``Q_i`` and ``Psi_i`` must be positive definite (the constants
        divide by ``sigma_min(Q)`` and ``sigma_min(Psi)``; with ``Q = 0`` they are infinite,
        so no certificate exists and a :class:`~metalqr.ValidationError` names ``Q``).
    K0 : array_like, shape (k, d)
        Initial meta-policy, MAML-stabilising for ``eta`` (Definition 1).
    eta : float > 0
        Inner (adaptation) step size.
    alpha : float > 0
        Outer (meta) step size.
    epsilon : float > 0
        Gradient-estimation accuracy (Lemmas 6-7).
    delta : float in (0, 1)
        Failure probability (Lemma 6 holds w.p. ``1 - 2 delta``).
    gamma : float >= 1
        Sub-level ratio of the set over which suprema are taken (must contain ``K0``).
    epsilon0 : float > 0, optional
        Target accuracy of Theorem 2 (default ``epsilon``).
    L_star : float, optional
        ``L(K*)`` if known; at most ``L(K0)``.

    Returns
    -------
    Certificate
        The conditions, the bounds and the constants behind them; ``holds`` says whether
        the step sizes satisfy Theorem 1.

    Raises
    ------
    ValidationError
        On malformed or out-of-range arguments (each named), semidefinite ``Q_i``/``Psi_i``,
        an ``L_star`` above ``L(K0)``, or if ``K0`` is not MAML-stabilising for ``eta``.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Theorems 1-2 and Lemmas 6-7 (with the corrected
    constants of docs/theory.md).
    """
    ts = as_taskset(tasks)
    eta = check_positive(eta, "eta")
    alpha = check_positive(alpha, "alpha")
    epsilon = check_positive(epsilon, "epsilon")
    delta = check_probability(delta, "delta")
    gamma = check_real(gamma, "gamma", minimum=1.0)
    eps0 = epsilon if epsilon0 is None else check_positive(epsilon0, "epsilon0")
    if L_star is not None:
        L_star = check_real(L_star, "L_star")
    K0 = _common_gain(ts, K0, "K0")[0]
    _check_definite(as_batch(ts))
    if not is_maml_stabilizing(ts, K0, eta):
        raise ValidationError(f"K0 must be MAML-stabilising for eta = {eta:g} to be certified "
                              f"(Definition 1); reduce eta or start from a stabilising gain.")
    c = sublevel_constants(ts, K0, gamma)
    hg, hH, hG = h_grad(c), h_H(c, c.J_max), h_G(c)
    k, d = c.k, c.d
    eta_max = min(math.sqrt(1.0 / (4 * (hg**2 * k**2 + hg**2 * hH**2 + hH**2))), 1.0 / (4 * hg))
    phi2 = (k**2 + eta**2 * hH**2) * (2 + 2 * hg**2 * eta**2)
    alpha_max = 1.0 / (2 * phi2 * hg)
    hD = h_Delta(c)
    hcost = h_cost(c)            # relative constant; min_i J_i over S is J_min here
    r = min(1.0 / hcost, hD, epsilon / (4 * hg))
    m = min(d, k)
    Br = (d * k / r) * (1 + r * hcost) * c.J_max + hg * r + hG
    sig2 = ((d * k / r) * (1 + r * hcost) * c.J_max) ** 2 + (r * hg + hG) ** 2
    M = 32 * m / epsilon**2 * (sig2 + Br * epsilon / (12 * math.sqrt(m))) * math.log((d + k) / delta)
    ell_grad = (16 * d**2 * k**2 * c.J_max**2 * (c.norm_Q + c.norm_R * c.norm_K**2)
                / (epsilon * r * c.mu * c.sigma_Q**2))
    # (iii) of Lemma 6's proof: each roll-out's deviation enters scaled by dk/r; union bound over M
    ell_var = rollout_length_variance(c, epsilon * r / (4 * d * k), delta / M)
    ell = max(ell_grad, ell_var)
    r_meta = h_r2(epsilon, c, eta, hH)
    L0 = maml_objective(ts, K0, eta)
    given = L_star is not None
    if L_star is None:
        L_star = float(np.mean(optimal_costs(ts)))
    psi0 = L0 - L_star
    if psi0 < 0:
        if given and psi0 < -1e-12 * max(abs(L0), 1.0):
            raise ValidationError(f"L_star = {L_star:.6g} exceeds L(K0) = {L0:.6g}: pass the meta-objective at "
                                  "a MAML optimum (or omit it to use the lower bound mean_i J_i*).")
        psi0 = 0.0           # K0 optimal up to rounding
    lam = float(np.min(gradient_domination_lambda(c)))
    contraction = 1.0 - eta**2 * hH**2
    if contraction <= 0:
        N = math.inf
    elif psi0 <= eps0 / 2:
        N = 0.0
    else:
        N = 8.0 / (alpha * lam * contraction) * math.log(2 * psi0 / eps0)
        if not math.isfinite(N):
            N = math.inf
    return Certificate(
        eta=eta, alpha=alpha, epsilon=epsilon, delta=delta, eta_max=eta_max, alpha_max=alpha_max,
        radius_max=r, n_perturbations_min=M, rollout_length_min=ell,
        task_batch_min=h_sample_task(epsilon, delta, c, eta, hH), meta_radius_max=r_meta,
        meta_rollout_length_min=rollout_length_meta(c, epsilon, r_meta), iterations_min=N, psi0=psi0,
        constants={"Jbar_max": c.J_max, "h_grad": hg, "h_H": hH, "h_G": hG, "h_Delta": hD,
                   "h_cost": hcost, "h_hess": h_hess(c), "lambda": lam, "h_l,grad": ell_grad,
                   "h_l,var": ell_var})
