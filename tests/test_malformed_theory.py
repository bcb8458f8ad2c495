"""Malformed-input table for metalqr.theory (issue 12): every public name, at least four
malformed inputs each; every case must raise a metalqr error (ValueError/TypeError
subclass) whose message names the argument."""

import dataclasses

import numpy as np
import pytest

import metalqr
from metalqr import theory as th
from helpers import assert_named_error

VE, TE = metalqr.ValidationError, metalqr.ValidationTypeError

TASK = metalqr.LQRTask([[0.5]], [[1.0]], [[1.0]], [[1.0]])
TS = metalqr.TaskSet([metalqr.LQRTask([[0.5, 0.1], [0.0, 0.4]], [[1.0], [0.5]], np.eye(2), [[1.0]]),
                      metalqr.LQRTask([[0.6, 0.0], [0.1, 0.3]], [[0.8], [0.4]], np.eye(2), [[2.0]])])
K0 = np.zeros((1, 2))
C = th.task_constants(TS, K0)
HH = th.h_H(C, C.J_max)
CERT = th.certify(TASK, np.zeros((1, 1)), eta=1e-5, alpha=1e-3, epsilon=0.1, delta=0.1)
SINGULAR_Q = metalqr.LQRTask([[0.5]], [[1.0]], [[0.0]], [[1.0]])
SINGULAR_PSI = metalqr.LQRTask([[0.5]], [[1.0]], [[1.0]], [[1.0]], Psi=[[0.0]])
ZERO_B = metalqr.LQRTask([[0.5]], [[0.0]], [[1.0]], [[1.0]])
NAN, INF = float("nan"), float("inf")

# (public name, argument named in the message, callable, expected exception)
CASES = []


def case(name, word, fn, exc=VE):
    CASES.append(pytest.param(fn, word, exc, id=f"{name}-{word}-{len(CASES)}"))


def c_variants(name, fn):
    """Shared malformed inputs of a function f(c, ...) with a ``variant`` argument."""
    case(name, "c", lambda: fn("not constants"), TE)
    case(name, "c", lambda: fn(None), TE)
    case(name, "c", lambda: fn(TS), TE)
    case(name, "variant", lambda: fn(C, variant="corected"))
    case(name, "variant", lambda: fn(C, variant="Paper"))
    case(name, "variant", lambda: fn(C, variant=1))
    case(name, "variant", lambda: fn(C, variant=None))


def c_only(name, fn):
    case(name, "c", lambda: fn("not constants"), TE)
    case(name, "c", lambda: fn(None), TE)
    case(name, "c", lambda: fn(TS), TE)
    case(name, "c", lambda: fn({"J_max": 1.0}), TE)
    case(name, "c", lambda: fn(CERT), TE)


# --- task_constants / sublevel_constants: tasks, K, gamma and the positive-definite weights
for name, fn, kname in (("task_constants", th.task_constants, "K"),
                        ("sublevel_constants", lambda t, K, **kw: th.sublevel_constants(t, K, **kw), "K0")):
    case(name, "tasks", lambda fn=fn: fn([[0.5]], K0))
    case(name, "tasks", lambda fn=fn: fn(None, K0))
    case(name, kname, lambda fn=fn: fn(TS, np.zeros((2, 1))))           # transposed
    case(name, kname, lambda fn=fn: fn(TS, 1j * np.ones((1, 2))), TE)  # complex
    case(name, kname, lambda fn=fn: fn(TS, [[NAN, 0.0]]))
    case(name, kname, lambda fn=fn: fn(TS, "gain"), TE)
    case(name, kname, lambda fn=fn: fn(TS, np.zeros((2, 1, 2))))      # per-task gains refused
    case(name, kname, lambda fn=fn: fn(TS, np.array([[True, False]])), TE)
    case(name, kname, lambda fn=fn: fn(TS, [[10.0, 10.0]]), metalqr.UnstablePolicyError)
    case(name, "Q", lambda fn=fn: fn(SINGULAR_Q, np.zeros((1, 1))))
    case(name, "Psi", lambda fn=fn: fn(SINGULAR_PSI, np.zeros((1, 1))))
case("sublevel_constants", "gamma", lambda: th.sublevel_constants(TS, K0, 0.0))
case("sublevel_constants", "gamma", lambda: th.sublevel_constants(TS, K0, -1.0))
case("sublevel_constants", "gamma", lambda: th.sublevel_constants(TS, K0, NAN))
case("sublevel_constants", "gamma", lambda: th.sublevel_constants(TS, K0, "1"), TE)

# --- TaskConstants: hand-built objects are checked
for field, value in (("mu", 0.0), ("sigma_Q", -1.0), ("J_max", NAN), ("norm_B", INF), ("norm_B", -1.0), ("sigma_R", "1"),
                     ("J", np.array([1.0, -1.0])), ("J_star", np.array([1.0])), ("d", 0), ("k", 1.5),
                     ("Sigma_star", np.array([[1.0, 1.0]]))):
    exc = TE if isinstance(value, str) or field == "k" else VE
    case("TaskConstants", field, lambda f=field, v=value: dataclasses.replace(C, **{f: v}), exc)

# --- the constants taking c (and variant)
c_variants("h_G", th.h_G)
c_only("h_c", th.h_c)
c_only("h_Delta", th.h_Delta)
case("h_Delta", "B", lambda: th.h_Delta(th.task_constants(ZERO_B, np.zeros((1, 1)))))
case("h_grad", "B", lambda: th.h_grad(th.task_constants(ZERO_B, np.zeros((1, 1)))))
case("certify", "B", lambda: th.certify(ZERO_B, np.zeros((1, 1)), **GOOD))
c_only("cost_lipschitz", th.cost_lipschitz)
c_only("h_grad", th.h_grad)
c_only("gradient_domination_lambda", th.gradient_domination_lambda)
c_variants("h_cost", th.h_cost)
c_variants("h_hess", th.h_hess)
c_variants("h_H", lambda c, **kw: th.h_H(c, 1.0, **kw))
case("h_H", "J_max_K0", lambda: th.h_H(C, 0.0))
case("h_H", "J_max_K0", lambda: th.h_H(C, -2.0))
case("h_H", "J_max_K0", lambda: th.h_H(C, NAN))
case("h_H", "J_max_K0", lambda: th.h_H(C, None), TE)

# --- eta / h_H_value / epsilon / delta / radius / which
c_variants("h_L_grad", lambda c, **kw: th.h_L_grad(c, 1e-3, HH, **kw))
case("h_L_grad", "eta", lambda: th.h_L_grad(C, -1e-3, HH))
case("h_L_grad", "eta", lambda: th.h_L_grad(C, NAN, HH))
case("h_L_grad", "h_H_value", lambda: th.h_L_grad(C, 1e-3, -1.0))
case("h_L_grad", "h_H_value", lambda: th.h_L_grad(C, 1e-3, INF))

c_only("h_G_meta", lambda c: th.h_G_meta(c, 1e-3, HH))
case("h_G_meta", "eta", lambda: th.h_G_meta(C, -1.0, HH))
case("h_G_meta", "eta", lambda: th.h_G_meta(C, "0.1", HH), TE)
case("h_G_meta", "h_H_value", lambda: th.h_G_meta(C, 1e-3, NAN))
case("h_G_meta", "h_H_value", lambda: th.h_G_meta(C, 1e-3, 1j), TE)

c_variants("h_cost_meta", lambda c, **kw: th.h_cost_meta(c, 1e-3, **kw))
case("h_cost_meta", "eta", lambda: th.h_cost_meta(C, -1e-3))
case("h_cost_meta", "eta", lambda: th.h_cost_meta(C, INF))

for delta in (5, 100, 0.0, 1.0, -0.1, NAN):
    case("bernstein_samples", "delta", lambda d=delta: th.bernstein_samples(0.1, d, 1.0, 1.0, 2, 2))
    case("h_sample_task", "delta", lambda d=delta: th.h_sample_task(0.1, d, C, 1e-3, HH))
    case("rollout_length_variance", "delta", lambda d=delta: th.rollout_length_variance(C, 0.1, d))
for eps in (0.0, -0.1, NAN, INF):
    case("bernstein_samples", "epsilon", lambda e=eps: th.bernstein_samples(e, 0.1, 1.0, 1.0, 2, 2))
    case("h_sample_task", "epsilon", lambda e=eps: th.h_sample_task(e, 0.1, C, 1e-3, HH))
    case("rollout_length_variance", "epsilon", lambda e=eps: th.rollout_length_variance(C, e, 0.1))
    case("h_r2", "epsilon", lambda e=eps: th.h_r2(e, C, 1e-3, HH))
    case("rollout_length_meta", "epsilon", lambda e=eps: th.rollout_length_meta(C, e, 0.05))
    case("rollout_length_bound", "epsilon", lambda e=eps: th.rollout_length_bound(C, e))
case("bernstein_samples", "epsilon", lambda: th.bernstein_samples(1e-200, 0.1, 1.0, 1.0, 2, 2))  # overflow
case("bernstein_samples", "sigma2", lambda: th.bernstein_samples(0.1, 0.1, -1.0, 1.0, 2, 2))
case("bernstein_samples", "bound", lambda: th.bernstein_samples(0.1, 0.1, 1.0, NAN, 2, 2))
case("bernstein_samples", "sigma2", lambda: th.bernstein_samples(0.1, 0.1, 0.0, 0.0, 2, 2))
case("bernstein_samples", "d1", lambda: th.bernstein_samples(0.1, 0.1, 1.0, 1.0, 0, 2))
case("bernstein_samples", "d2", lambda: th.bernstein_samples(0.1, 0.1, 1.0, 1.0, 2, 2.0), TE)
case("h_sample_task", "c", lambda: th.h_sample_task(0.1, 0.1, None, 1e-3, HH), TE)
case("h_sample_task", "eta", lambda: th.h_sample_task(0.1, 0.1, C, -1.0, HH))
case("h_sample_task", "h_H_value", lambda: th.h_sample_task(0.1, 0.1, C, 1e-3, -HH))
case("h_r2", "c", lambda: th.h_r2(0.1, "c", 1e-3, HH), TE)
case("h_r2", "eta", lambda: th.h_r2(0.1, C, NAN, HH))
case("h_r2", "h_H_value", lambda: th.h_r2(0.1, C, 1e-3, "big"), TE)
case("rollout_length_meta", "radius", lambda: th.rollout_length_meta(C, 0.1, 0.0))
case("rollout_length_meta", "radius", lambda: th.rollout_length_meta(C, 0.1, -0.05))
case("rollout_length_meta", "c", lambda: th.rollout_length_meta(TS, 0.1, 0.05), TE)
case("rollout_length_variance", "c", lambda: th.rollout_length_variance(1.0, 0.1, 0.1), TE)
case("rollout_length_bound", "which", lambda: th.rollout_length_bound(C, 0.1, "costs"))
case("rollout_length_bound", "which", lambda: th.rollout_length_bound(C, 0.1, "variance"))
case("rollout_length_bound", "which", lambda: th.rollout_length_bound(C, 0.1, None))
case("rollout_length_bound", "c", lambda: th.rollout_length_bound(None, 0.1), TE)

# --- certify
GOOD = dict(eta=1e-5, alpha=1e-3, epsilon=0.1, delta=0.1)
for word, value, exc in (("eta", 0.0, VE), ("eta", -1e-3, VE), ("eta", NAN, VE), ("eta", "1e-3", TE),
                         ("alpha", 0.0, VE), ("alpha", INF, VE), ("alpha", [1e-3], TE),
                         ("epsilon", -0.1, VE), ("epsilon", 0.0, VE),
                         ("delta", 0.0, VE), ("delta", 1.0, VE), ("delta", 5.0, VE), ("delta", NAN, VE),
                         ("gamma", 0.5, VE), ("gamma", NAN, VE), ("epsilon0", 0.0, VE), ("epsilon0", -1.0, VE),
                         ("L_star", NAN, VE), ("L_star", "0", TE), ("L_star", 1e6, VE)):
    case("certify", word, lambda w=word, v=value: th.certify(TASK, np.zeros((1, 1)), **{**GOOD, w: v}), exc)
case("certify", "Q", lambda: th.certify(SINGULAR_Q, np.zeros((1, 1)), **GOOD))
case("certify", "Psi", lambda: th.certify(SINGULAR_PSI, np.zeros((1, 1)), **GOOD))
case("certify", "K0", lambda: th.certify(TASK, np.zeros((2, 2)), **GOOD))
case("certify", "K0", lambda: th.certify(TASK, [[NAN]], **GOOD))
case("certify", "K0", lambda: th.certify(TASK, [[100.0]], **GOOD))            # not MAML-stabilising
case("certify", "tasks", lambda: th.certify("tasks", np.zeros((1, 1)), **GOOD))

# --- Certificate: hand-built reports are checked
for field, value in (("eta", -1.0), ("eta_max", NAN), ("alpha", "x"), ("psi0", -0.5),
                     ("iterations_min", NAN), ("iterations_min", -1.0), ("constants", [1, 2])):
    exc = TE if isinstance(value, (str, list)) else VE
    case("Certificate", field, lambda f=field, v=value: dataclasses.replace(CERT, **{f: v}), exc)


@pytest.mark.parametrize("fn, word, exc", CASES)
def test_malformed_theory_input_raises_named_error(fn, word, exc):
    assert_named_error(fn, word, exc=exc)


def test_every_public_name_has_at_least_four_cases():
    names = [n for n in th.__all__ if callable(getattr(th, n))]
    counts = {n: sum(1 for p in CASES if p.id.startswith(n + "-")) for n in names}
    assert all(v >= 4 for v in counts.values()), {n: v for n, v in counts.items() if v < 4}
    assert len(CASES) >= 120, len(CASES)
