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
* r: certified radius vs the 0.05 used in practice.
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


def families(quick: bool):
    yield "fig1 (1,1)", metalqr.sample_tasks(5, 1, 1, rng=np.random.default_rng([0, 1, 1]))
    yield "fig1 (2,2)", metalqr.sample_tasks(5, 2, 2, rng=np.random.default_rng([0, 2, 2]))
    if not quick:
        yield "boeing747 x5", metalqr.perturb_tasks(metalqr.boeing747(), 5, heterogeneity=1e-4, rng=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rows = []
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
    print_table(rows, "Certified (Theorem 1 / Lemma 6, suprema over the sub-level set) vs empirical")


if __name__ == "__main__":
    main()
