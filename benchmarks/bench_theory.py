"""How conservative are the ZO-MAML paper's certificates? Certified vs empirical values.

Run:  python benchmarks/bench_theory.py [--quick]

For each task family (the Figure 1 families (1,1) and (2,2), and 5 perturbed Boeing 747
tasks) with K0 = a common stabilising gain:

* eta: certified ``eta_max`` (Theorem 1) vs the largest eta keeping K0 MAML-stabilising;
* alpha: certified ``alpha_max`` (Theorem 1) vs the largest alpha for which 30 exact
  meta-gradient steps (eta = 1e-5) keep every iterate MAML-stabilising and decrease L;
* M: certified Lemma 6 sample count (epsilon = 50% of ||grad J_1(K0)||, delta = 0.1) vs the
  smallest M for which the exact-oracle one-point estimate at r = 0.05 meets epsilon in
  90% of 20 seeds;
* r: certified radius vs the 0.05 used in practice;
* l: Lemma 6's h_l,grad at r = 0.05 vs the smallest l for which the exact finite-horizon
  bias of the roll-out cost, times dk/r, is at most epsilon/4 (what h_l,grad must ensure);
  and the derived h_l,var at r = 0.05 (concentration of single roll-outs);
* N: Theorem 2's iteration count, evaluated at alpha = alpha_emp / 2 with the exact L(K*)
  (from L-BFGS on L), vs the exact meta-gradient iterations at that alpha until
  L - L(K*) <= 1e-3 psi0.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import metalqr  # noqa: E402
from _common import print_table  # noqa: E402
from metalqr import theory as th  # noqa: E402


def _bisect_log(ok, lo: float, hi: float, steps: int = 30) -> float:
    """Largest x in [lo, hi] (log scale) with ok(x), assuming ok is monotone (True below)."""
    if not ok(lo):
        return 0.0
    for _ in range(steps):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def empirical_alpha(tasks, K0, eta: float, n_steps: int = 30) -> float:
    def ok(alpha):
        K, L = K0, metalqr.maml_objective(tasks, K0, eta)
        for _ in range(n_steps):
            K = K - alpha * metalqr.maml_gradient(tasks, K, eta)
            if not metalqr.is_maml_stabilizing(tasks, K, eta):
                return False
            L_new = metalqr.maml_objective(tasks, K, eta)
            if L_new > L:
                return False
            L = L_new
        return True
    return _bisect_log(ok, 1e-12, 10.0)


def empirical_M(task, K0, epsilon: float, max_M: int) -> float:
    g = metalqr.gradient(task, K0)
    M = 8
    while M <= max_M:
        errs = [np.linalg.norm(metalqr.zo_gradient(task, K0, n_perturbations=M, radius=0.05, rng=s,
                                                   oracle="exact") - g) for s in range(20)]
        if np.quantile(errs, 0.9) <= epsilon:
            return float(M)
        M *= 2
    return float("inf")


def empirical_l(tasks, K0, epsilon: float, radius: float = 0.05) -> float:
    """Smallest l with (dk/r) max_i |E J_i^(l)(K0) - J_i(K0)| <= epsilon / 4 (doubling, then bisection)."""
    d, k = tasks.d, tasks.k
    J = metalqr.cost(tasks, K0)

    def ok(l):
        return d * k / radius * np.max(np.abs(metalqr.expected_rollout_cost(tasks, K0, int(l)) - J)) <= epsilon / 4
    hi = 1
    while not ok(hi):
        hi *= 2
        if hi > 2**24:
            return float("inf")
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return float(hi)


def maml_optimum(tasks, K0, eta: float, n_iter: int = 20000) -> float:
    """L(K*) by gradient descent with Barzilai-Borwein steps and backtracking into the
    MAML-stabilising set (L is +inf outside it, which defeats SciPy's line searches)."""
    K, L, G = K0, metalqr.maml_objective(tasks, K0, eta), metalqr.maml_gradient(tasks, K0, eta)
    step = 1e-3
    for _ in range(n_iter):
        while True:
            K_new = K - step * G
            L_new = metalqr.maml_objective(tasks, K_new, eta)
            if L_new <= L - 1e-4 * step * np.sum(G * G):
                break
            step /= 2
            if step < 1e-20:
                return float(L)
        G_new = metalqr.maml_gradient(tasks, K_new, eta)
        dK, dG = K_new - K, G_new - G
        K, L, G = K_new, L_new, G_new
        if np.linalg.norm(G) < 1e-11 * max(1.0, abs(L)):
            break
        step = float(np.sum(dK * dK) / max(np.sum(dK * dG), 1e-300))
    return float(L)


def empirical_N(tasks, K0, eta: float, alpha: float, L_star: float, tol: float, cap: int = 200000) -> float:
    K = K0
    for n in range(cap):
        if metalqr.maml_objective(tasks, K, eta) - L_star <= tol:
            return float(n)
        K = K - alpha * metalqr.maml_gradient(tasks, K, eta)
    return float("inf")


def families(quick: bool):
    yield "fig1 (1,1)", metalqr.sample_tasks(5, 1, 1, rng=np.random.default_rng([0, 1, 1]))
    yield "fig1 (2,2)", metalqr.sample_tasks(5, 2, 2, rng=np.random.default_rng([0, 2, 2]))
    if not quick:
        yield "boeing747 x5", metalqr.perturb_tasks(metalqr.boeing747(), 5, heterogeneity=1e-4, rng=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows, rows2 = [], []
    for name, ts in families(args.quick):
        K0 = metalqr.common_stabilizing_gain(ts)
        eta, alpha = 1e-5, 1e-3
        eps = 0.5 * float(np.linalg.norm(metalqr.gradient(ts[0], K0)))
        cert = th.certify(ts, K0, eta=eta, alpha=alpha, epsilon=eps, delta=0.1)
        eta_emp = _bisect_log(lambda e: metalqr.is_maml_stabilizing(ts, K0, e), 1e-12, 10.0)
        alpha_emp = empirical_alpha(ts, K0, eta)
        M_emp = empirical_M(ts[0], K0, eps, 2**16 if args.quick else 2**18)
        rows.append({"family": name, "eta_cert": cert.eta_max, "eta_emp": eta_emp,
                     "eta_ratio": eta_emp / cert.eta_max, "alpha_cert": cert.alpha_max,
                     "alpha_emp": alpha_emp, "alpha_ratio": alpha_emp / cert.alpha_max,
                     "M_cert": cert.n_perturbations_min, "M_emp": M_emp,
                     "M_ratio": cert.n_perturbations_min / M_emp, "r_cert": cert.radius_max,
                     "r_ratio": 0.05 / cert.radius_max})
        l_cert = cert.constants["h_l,grad"] * cert.radius_max / 0.05     # h_l,grad is proportional to 1/r
        d, k = ts.d, ts.k
        l_var = th.rollout_length_variance(th.sublevel_constants(ts, K0), eps * 0.05 / (4 * d * k),
                                           0.1 / cert.n_perturbations_min)
        l_emp = empirical_l(ts, K0, eps)
        L_star = maml_optimum(ts, K0, eta)
        alpha_run = alpha_emp / 2
        psi0 = metalqr.maml_objective(ts, K0, eta) - L_star
        at_run = th.certify(ts, K0, eta=eta, alpha=alpha_run, epsilon=eps, delta=0.1,
                            epsilon0=1e-3 * psi0, L_star=L_star)
        N_emp = empirical_N(ts, K0, eta, alpha_run, L_star, 1e-3 * psi0)
        rows2.append({"family": name, "l_grad_cert(r=0.05)": l_cert, "l_emp": l_emp, "l_ratio": l_cert / l_emp,
                      "l_var_cert(r=0.05)": l_var,
                      "|T|_cert": cert.task_batch_min, "r_meta_cert": cert.meta_radius_max,
                      "h_hess": cert.constants["h_hess"], "alpha_run": alpha_run,
                      "N_cert": at_run.iterations_min, "N_emp": N_emp, "N_ratio": at_run.iterations_min / N_emp})
    print_table(rows, "Certified (Theorem 1 / Lemma 6, suprema over the sub-level set) vs empirical")
    print_table(rows2, "Roll-out length (Lemma 6), Lemma 7 task batch and radius, Theorem 2 iterations")


if __name__ == "__main__":
    main()
