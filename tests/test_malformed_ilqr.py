"""Malformed-input table for :mod:`metalqr.ilqr` (issue 12): every public name with at least
four malformed inputs, each asserting a metalqr error (ValueError/TypeError subclass) whose
message names the argument. Memory-safety cases (horizons that disagree) come first."""

from __future__ import annotations

import math
import numba as nb
import numpy as np
import pytest

import metalqr
from metalqr.ilqr import (Derivatives, backward_pass, box_qp, finite_difference_derivatives,
                          ilqr, problems)
from metalqr.ilqr._backward_numba import backward_dense
from metalqr.ilqr.derivatives import fd_dynamics_jacobians, quadratic_cost_derivatives
from metalqr.ilqr._forward_numba import CompiledStep, forward_compiled

from helpers import assert_named_error

VE, TE = metalqr.ValidationError, metalqr.ValidationTypeError
T, D, M = 4, 2, 1
A = np.array([[1.0, 0.1], [0.0, 1.0]])
B = np.array([[0.0], [0.1]])


def dyn(x, u, t):
    return x @ A.T + u @ B.T


def cost(x, u, t):
    return np.sum(x * x, axis=1) + np.sum(u * u, axis=1)


def term(x):
    return 10.0 * np.sum(x * x, axis=1)


X0 = np.array([1.0, 0.0])
U0 = np.zeros((T, M))


def good_derivatives(T=T, D=D, M=M, **over):
    kw = dict(f_x=np.broadcast_to(np.eye(D), (T, D, D)).copy(), f_u=np.ones((T, D, M)) * 0.1,
              c_x=np.zeros((T, D)), c_u=np.zeros((T, M)), c_xx=np.ones((T, D)),
              c_uu=np.broadcast_to(np.eye(M), (T, M, M)).copy(), c_ux=None, cT_x=np.zeros(D),
              cT_xx=np.ones(D))
    kw.update(over)
    return kw


def run_ilqr(**over):
    kw = dict(dynamics=dyn, cost=cost, x0=X0, U0=U0, terminal_cost=term, vectorized=True,
              max_iterations=3)
    kw.update(over)
    return ilqr(**kw)


def traj():
    X = np.zeros((T + 1, D))
    X[0] = X0
    for t in range(T):
        X[t + 1] = dyn(X[t][None], U0[t][None], None)[0]
    return X


@nb.njit
def _good_step(x, u, t):
    return A @ x + B @ u


@nb.njit
def _other_step(x, u, t):
    return 2.0 * x


CASES = []


def case(name, word, fn, exc=VE):
    CASES.append(pytest.param(fn, word, exc, id=f"{name}-{len(CASES)}"))


# ---- memory safety: inconsistent horizons never reach a compiled kernel --------------------
d_long = lambda: Derivatives(**good_derivatives(T=T + 6))
case("backward_pass", "U", lambda: backward_pass(d_long(), U0, mu=0.0, value_model="full",
                                                   u_min=None, u_max=None))
case("backward_pass", "U", lambda: backward_pass(Derivatives(**good_derivatives(T=2)), U0, mu=0.0,
                                                   value_model="full", u_min=None, u_max=None))
case("backward_pass", "U", lambda: backward_pass(Derivatives(**good_derivatives(M=2)), U0, mu=0.0,
                                                   value_model="diagonal", u_min=None, u_max=None))


def _mutated(field, value):
    d = Derivatives(**good_derivatives())
    setattr(d, field, value)
    return d


case("backward_pass", "f_x", lambda: backward_pass(_mutated("f_x", np.ones((T + 3, D, D))), U0,
                                                     mu=0.0, value_model="full", u_min=None,
                                                     u_max=None))
case("backward_pass", "c_x", lambda: backward_pass(_mutated("c_x", np.ones((T - 1, D))), U0, mu=0.0,
                                                     value_model="full", u_min=None, u_max=None))
case("backward_pass", "c_uu", lambda: backward_pass(_mutated("c_uu", np.ones((T, M, M + 1))), U0,
                                                      mu=0.0, value_model="full", u_min=None,
                                                      u_max=None))
case("backward_pass", "cT_xx", lambda: backward_pass(_mutated("cT_xx", np.ones(D + 1)), U0, mu=0.0,
                                                       value_model="full", u_min=None, u_max=None))
case("backward_pass", "c_ux", lambda: backward_pass(_mutated("c_ux", np.ones((T, M, D + 2))), U0,
                                                      mu=0.0, value_model="full", u_min=None,
                                                      u_max=None))
case("backward_pass", "c_uu", lambda: backward_pass(_mutated("c_uu", np.full((T, M, M), np.nan)), U0,
                                                      mu=0.0, value_model="full", u_min=None,
                                                      u_max=None))
case("ilqr", "derivatives", lambda: run_ilqr(derivatives=lambda X, U: d_long()))
case("ilqr", "derivatives", lambda: run_ilqr(derivatives=lambda X, U: Derivatives(
    **good_derivatives(T=T - 1))))
case("ilqr", "derivatives", lambda: run_ilqr(derivatives=lambda X, U: Derivatives(
    **good_derivatives(D=3))))
case("ilqr", "derivatives", lambda: run_ilqr(derivatives=lambda X, U: Derivatives(
    **good_derivatives(M=2))))
case("ilqr", "derivatives", lambda: run_ilqr(derivatives=lambda X, U: dict(good_derivatives())), TE)


def _d_then_mutate(field, value):
    def fn(X, U):
        d = Derivatives(**good_derivatives())
        setattr(d, field, value)
        return d
    return fn


case("ilqr", "c_x", lambda: run_ilqr(derivatives=_d_then_mutate("c_x", np.zeros((T + 5, D)))))
case("ilqr", "c_uu", lambda: run_ilqr(derivatives=_d_then_mutate("c_uu", np.zeros((T, M, M), complex))), TE)
case("backward_dense", "f_x", lambda: backward_dense(
    np.ones((T + 5, D, D)), np.ones((T, D, M)), np.ones((T, D)), np.ones((T, M)), np.ones((T, D, D)),
    np.ones((T, M, M)), np.ones((T, M, D)), np.ones(D), np.ones((D, D)), 0.0, 0.0))
case("backward_dense", "c_uu", lambda: backward_dense(
    np.ones((T, D, D)), np.ones((T, D, M)), np.ones((T, D)), np.ones((T, M)), np.ones((T, D, D)),
    np.ones((T - 2, M, M)), np.ones((T, M, D)), np.ones(D), np.ones((D, D)), 0.0, 0.0))
case("backward_dense", "f_u", lambda: backward_dense(
    np.ones((T, D, D)), np.ones((T, D * M)), np.ones((T, D)), np.ones((T, M)), np.ones((T, D, D)),
    np.ones((T, M, M)), np.ones((T, M, D)), np.ones(D), np.ones((D, D)), 0.0, 0.0))
case("backward_dense", "cT_x", lambda: backward_dense(
    np.ones((T, D, D)), np.ones((T, D, M)), np.ones((T, D)), np.ones((T, M)), np.ones((T, D, D)),
    np.ones((T, M, M)), np.ones((T, M, D)), np.ones(D).astype(np.float32), np.ones((D, D)), 0.0, 0.0))
case("backward_dense", "mu_state", lambda: backward_dense(
    np.ones((T, D, D)), np.ones((T, D, M)), np.ones((T, D)), np.ones((T, M)), np.ones((T, D, D)),
    np.ones((T, M, M)), np.ones((T, M, D)), np.ones(D), np.ones((D, D)), -1.0, 0.0))
_fw = dict(x0=X0, X=np.zeros((T + 1, D)), U=U0, K=np.zeros((T, M, D)), k=np.zeros((T, M)),
           alpha=1.0, lo=np.full(M, -np.inf), hi=np.full(M, np.inf), clip=False)
_fw4 = dict(x0=np.zeros(4), X=np.zeros((T + 1, 4)), U=U0, K=np.zeros((T, M, 4)), k=np.zeros((T, M)),
            alpha=1.0, lo=np.full(M, -np.inf), hi=np.full(M, np.inf), clip=False)
case("forward_compiled", "K", lambda: forward_compiled(_good_step, **{**_fw, "K": np.zeros((2, M, D))}))
case("forward_compiled", "X", lambda: forward_compiled(_good_step, **{**_fw, "X": np.zeros((T, D))}))
case("forward_compiled", "lo", lambda: forward_compiled(_good_step, **{**_fw, "lo": np.zeros(M + 3)}))
case("forward_compiled", "compiled_step", lambda: forward_compiled(lambda x, u, t: x, **_fw), TE)
case("forward_compiled", "k", lambda: forward_compiled(_good_step, **{**_fw, "k": np.zeros((T, M), np.int64)}))

# ---- ilqr ------------------------------------------------------------------------------------
for bad in (None, 3, "dyn", np.eye(2)):
    case("ilqr", "dynamics", lambda bad=bad: run_ilqr(dynamics=bad), TE)
case("ilqr", "dynamics", lambda: run_ilqr(dynamics=lambda x, u, t: np.ones((x.shape[0], D + 1))))
case("ilqr", "dynamics", lambda: run_ilqr(dynamics=lambda x, u, t: x + 1j), TE)
case("ilqr", "dynamics", lambda: run_ilqr(dynamics=lambda x, u, t: np.full(x.shape, "a")), TE)
case("ilqr", "dynamics", lambda: run_ilqr(dynamics=lambda x, u, t: x[0], vectorized=False))
for bad in (None, 1.0, "cost"):
    case("ilqr", "cost", lambda bad=bad: run_ilqr(cost=bad), TE)
case("ilqr", "cost", lambda: run_ilqr(cost=lambda x, u, t: np.ones((x.shape[0], 1))))
case("ilqr", "cost", lambda: run_ilqr(cost=lambda x, u, t: np.sum(x)))
# user callbacks that raise: wrapped, naming the callback (issue 4)
case("ilqr", "dynamics", lambda: run_ilqr(dynamics=lambda x, u, t: x[:, 5]))
case("ilqr", "dynamics", lambda: run_ilqr(dynamics=lambda x, u, t: 1 / 0))
case("ilqr", "cost", lambda: run_ilqr(cost=lambda x, u, t: np.sum(x, axis=1) / 0.0 + 1 // 0))
case("ilqr", "cost", lambda: run_ilqr(cost=lambda x, u, t: {}[t]))
case("ilqr", "terminal_cost", lambda: run_ilqr(terminal_cost=lambda x: x[:, 7]))
case("ilqr", "terminal_cost", lambda: run_ilqr(terminal_cost=lambda x: math.log(-1.0)))
# horizon too large (issue 2)
case("ilqr", "horizon", lambda: run_ilqr(U0=np.zeros((10**9, M))))
case("ilqr", "cost", lambda: run_ilqr(cost=lambda x, u, t: np.ones(x.shape[0]) * 1j), TE)
case("ilqr", "cost", lambda: run_ilqr(cost=lambda x, u, t: np.ones(2), vectorized=False,
                                      dynamics=lambda x, u, t: x, terminal_cost=lambda x: 0.0))
case("ilqr", "terminal_cost", lambda: run_ilqr(terminal_cost="x"), TE)
case("ilqr", "terminal_cost", lambda: run_ilqr(terminal_cost=lambda x: 0.0))
case("ilqr", "terminal_cost", lambda: run_ilqr(terminal_cost=lambda x: np.ones((1, 2))))
case("ilqr", "terminal_cost", lambda: run_ilqr(terminal_cost=lambda x: np.ones(1, complex)), TE)
for bad, exc in ((X0 + 1j, TE), ("1", TE), (np.ones((2, 2)), VE), (np.zeros(0), VE),
                 ([np.nan, 0.0], VE), ([np.inf, 0.0], VE), ([[1.0], [1.0, 2.0]], TE),
                 (np.array([True, False]), TE), (None, TE)):
    case("ilqr", "x0", lambda bad=bad: run_ilqr(x0=bad), exc)
for bad, exc in ((np.zeros(T), VE), (np.zeros((0, 1)), VE), (np.full((T, M), np.nan), VE),
                 (np.zeros((T, M), complex) + 1j, TE), ("U", TE), (np.zeros((T, 0)), VE)):
    case("ilqr", "U0", lambda bad=bad: run_ilqr(U0=bad), exc)
case("ilqr", "derivatives", lambda: run_ilqr(derivatives=5), TE)
for bad in (1, "yes", None, 0.0):
    case("ilqr", "vectorized", lambda bad=bad: run_ilqr(vectorized=bad), TE)
for bad, exc in ((-1, VE), (2.5, TE), ("10", TE), (True, TE), (None, TE)):
    case("ilqr", "max_iterations", lambda bad=bad: run_ilqr(max_iterations=bad), exc)
for bad, exc in ((-1.0, VE), (np.nan, VE), ("a", TE), (1j, TE), (np.inf, VE)):
    case("ilqr", "tol", lambda bad=bad: run_ilqr(tol=bad), exc)
for bad in ("Full", "banded", None, 1, "dense"):
    case("ilqr", "value_model", lambda bad=bad: run_ilqr(value_model=bad))
for bad, exc in ((np.nan, VE), (np.zeros(M + 2), VE), (1j, TE), ("0", TE), (np.inf, VE)):
    case("ilqr", "u_min", lambda bad=bad: run_ilqr(u_min=bad), exc)
for bad, exc in ((np.nan, VE), (np.zeros((M, 2)), VE), (-np.inf, VE), ([None], VE)):
    case("ilqr", "u_max", lambda bad=bad: run_ilqr(u_max=bad), exc)
case("ilqr", "u_min", lambda: run_ilqr(u_min=1.0, u_max=-1.0))
for bad in ("clip", None, "Reject", 0):
    case("ilqr", "constraint", lambda bad=bad: run_ilqr(constraint=bad))
for bad, exc in ((-1.0, VE), (np.nan, VE), (np.inf, VE), ("x", TE), (1e11, VE)):
    case("ilqr", "regularization", lambda bad=bad: run_ilqr(regularization=bad), exc)
for bad in ("states", "both", None, "state+control"):
    case("ilqr", "regularization_type", lambda bad=bad: run_ilqr(regularization_type=bad))
for bad, exc in (([], VE), ([0.5, 0.0], VE), ([2.0], VE), ("abc", TE), ([[1.0]], TE),
                 ([np.nan], VE), ([1j], TE), (0.5, TE)):
    case("ilqr", "line_search", lambda bad=bad: run_ilqr(line_search=bad), exc)
for bad, exc in ((0.0, VE), (1.0, VE), (-0.1, VE), (np.nan, VE), ("a", TE)):
    case("ilqr", "accept_ratio", lambda bad=bad: run_ilqr(accept_ratio=bad), exc)
case("ilqr", "callback", lambda: run_ilqr(callback=5), TE)
case("ilqr", "callback", lambda: run_ilqr(callback="stop"), TE)
case("ilqr", "callback", lambda: run_ilqr(callback=lambda *a: np.ones(3)), TE)
case("ilqr", "callback", lambda: run_ilqr(callback=lambda *a: "no"), TE)
for bad, exc in ((0.0, VE), (-1e-6, VE), (1.0, VE), ("a", TE), (np.nan, VE)):
    case("ilqr", "fd_step", lambda bad=bad: run_ilqr(fd_step=bad), exc)
case("ilqr", "compiled_step", lambda: run_ilqr(compiled_step=lambda x, u, t: x), TE)
case("ilqr", "compiled_step", lambda: run_ilqr(compiled_step=_other_step))
case("ilqr", "compiled_step", lambda: run_ilqr(compiled_step=5), TE)
case("ilqr", "compiled_step", lambda: run_ilqr(compiled_step="numba"), TE)
# size guards: refused before allocating, naming the estimate and the alternative
_big = 100_000
case("ilqr", "value_model", lambda: ilqr(lambda x, u, t: x, lambda x, u, t: 0.0, np.zeros(_big),
                                         np.zeros((2, 1)), value_model="full",
                                         derivatives=lambda X, U: None))
case("ilqr", "finite differences", lambda: ilqr(lambda x, u, t: x, lambda x, u, t: 0.0,
                                                np.zeros(2000), np.zeros((5, 1)),
                                                value_model="diagonal"))
case("ilqr", "U0", lambda: run_ilqr(u_min=1.0, constraint="reject"))
case("ilqr", "x0", lambda: run_ilqr(dynamics=lambda x, u, t: x * np.inf))

# ---- finite differences ----------------------------------------------------------------------
_fd = lambda **kw: finite_difference_derivatives(**{**dict(dynamics=dyn, cost=cost,
                                                            terminal_cost=term, X=traj(), U=U0,
                                                            vectorized=True), **kw})
for arg in ("dynamics", "cost", "terminal_cost"):
    case("finite_difference_derivatives", arg, lambda arg=arg: _fd(**{arg: None}), TE)
    case("finite_difference_derivatives", arg, lambda arg=arg: _fd(**{arg: "f"}), TE)
case("finite_difference_derivatives", "X", lambda: _fd(X=np.zeros((T, D))))
case("finite_difference_derivatives", "X", lambda: _fd(X=traj() + 1j), TE)
case("finite_difference_derivatives", "X", lambda: _fd(X=np.full((T + 1, D), np.inf)))
case("finite_difference_derivatives", "U", lambda: _fd(U=np.full((T, M), np.nan)))
case("finite_difference_derivatives", "U", lambda: _fd(U=np.zeros(T)))
case("finite_difference_derivatives", "vectorized", lambda: _fd(vectorized="no"), TE)
case("finite_difference_derivatives", "step", lambda: _fd(step=0.0))
case("finite_difference_derivatives", "step", lambda: _fd(step=1.0))
case("finite_difference_derivatives", "cost", lambda: _fd(cost=lambda x, u, t: np.ones((len(x), 2))))
case("finite_difference_derivatives", "dynamics", lambda: _fd(dynamics=lambda x, u, t: x[:, :1]))
case("finite_difference_derivatives", "terminal_cost", lambda: _fd(terminal_cost=lambda x: 1.0))
_fj = lambda **kw: fd_dynamics_jacobians(**{**dict(dynamics=dyn, X=traj(), U=U0, vectorized=True), **kw})
case("fd_dynamics_jacobians", "dynamics", lambda: _fj(dynamics=3), TE)
case("fd_dynamics_jacobians", "X", lambda: _fj(X=np.zeros((T + 2, D))))
case("fd_dynamics_jacobians", "U", lambda: _fj(U="u"), TE)
case("fd_dynamics_jacobians", "step", lambda: _fj(step=-1.0))
case("fd_dynamics_jacobians", "vectorized", lambda: _fj(vectorized=None), TE)
_qc = lambda **kw: quadratic_cost_derivatives(**{**dict(X=traj(), U=U0, goal=np.zeros(D), q=1.0,
                                                        r=1.0, q_final=1.0), **kw})
case("quadratic_cost_derivatives", "goal", lambda: _qc(goal=np.zeros(D + 1)))
case("quadratic_cost_derivatives", "q", lambda: _qc(q=np.nan))
case("quadratic_cost_derivatives", "r", lambda: _qc(r=1j), TE)
case("quadratic_cost_derivatives", "q_final", lambda: _qc(q_final="1"), TE)
case("quadratic_cost_derivatives", "X", lambda: _qc(X=np.zeros((T + 3, D))))

# ---- Derivatives -----------------------------------------------------------------------------
case("Derivatives", "f_u", lambda: Derivatives(**good_derivatives(f_u=np.ones((T, D)))))
case("Derivatives", "f_x", lambda: Derivatives(**good_derivatives(f_x=np.ones((T + 1, D, D)))))
case("Derivatives", "c_x", lambda: Derivatives(**good_derivatives(c_x=np.ones((T, D + 1)))))
case("Derivatives", "c_u", lambda: Derivatives(**good_derivatives(c_u=np.ones(T))))
case("Derivatives", "c_xx", lambda: Derivatives(**good_derivatives(c_xx=np.ones((T, D, D + 1)))))
case("Derivatives", "c_uu", lambda: Derivatives(**good_derivatives(c_uu=np.ones((T, M, M), complex) * 1j)), TE)
case("Derivatives", "c_ux", lambda: Derivatives(**good_derivatives(c_ux=np.ones((T, D, M + 1)))))
case("Derivatives", "cT_x", lambda: Derivatives(**good_derivatives(cT_x="zero")), TE)
case("Derivatives", "cT_xx", lambda: Derivatives(**good_derivatives(cT_xx=np.ones((D, D + 1)))))
case("Derivatives", "f_u", lambda: Derivatives(**good_derivatives(f_u=np.ones((0, D, M)))))
case("Derivatives.check", "f_u", lambda: Derivatives(**good_derivatives()).check(T=T + 1))
case("Derivatives.check", "f_u", lambda: Derivatives(**good_derivatives()).check(D=D + 1))
case("Derivatives.check", "f_u", lambda: Derivatives(**good_derivatives()).check(M=M + 1))
case("Derivatives.check", "cT_x", lambda: Derivatives(**good_derivatives(
    cT_x=np.array([np.nan, 0.0]))).check(finite=True))

# ---- backward_pass, BackwardResult -----------------------------------------------------------
_bp = lambda **kw: backward_pass(**{**dict(d=Derivatives(**good_derivatives()), U=U0, mu=0.0,
                                           value_model="full", u_min=None, u_max=None), **kw})
case("backward_pass", "d", lambda: _bp(d=good_derivatives()), TE)
case("backward_pass", "d", lambda: _bp(d=None), TE)
case("backward_pass", "U", lambda: _bp(U=np.zeros(T)))
case("backward_pass", "U", lambda: _bp(U=np.zeros((T, M)) + 1j), TE)
for bad, exc in ((-1.0, VE), (np.nan, VE), ("0", TE), (None, TE)):
    case("backward_pass", "mu", lambda bad=bad: _bp(mu=bad), exc)
case("backward_pass", "value_model", lambda: _bp(value_model="banded"))
case("backward_pass", "value_model", lambda: _bp(value_model=None))
case("backward_pass", "reg_type", lambda: _bp(reg_type="both"))
case("backward_pass", "reg_type", lambda: _bp(reg_type="State"))
case("backward_pass", "compiled", lambda: _bp(compiled="yes"), TE)
case("backward_pass", "u_min", lambda: _bp(u_min=np.ones(M), u_max=np.zeros(M)))
case("backward_pass", "u_min", lambda: _bp(u_min=np.zeros(M + 1)))
case("backward_pass", "u_max", lambda: _bp(u_max=np.nan))
case("backward_pass", "k_warm", lambda: _bp(u_max=1.0, k_warm=np.zeros((T + 1, M))))
case("backward_pass", "k_warm", lambda: _bp(u_max=1.0, k_warm=np.full((T, M), np.inf)))
_res = lambda: _bp()
for bad, exc in ((-1.0, VE), (np.nan, VE), ("a", TE), (1j, TE)):
    case("BackwardResult.expected_change", "eps", lambda bad=bad: _res().expected_change(bad), exc)

# ---- box_qp ----------------------------------------------------------------------------------
_H = np.array([[2.0, 0.5], [0.5, 1.0]])
_qp = lambda **kw: box_qp(**{**dict(H=_H, g=np.ones(2), lower=-np.ones(2), upper=np.ones(2)), **kw})
case("box_qp", "H", lambda: _qp(H=np.array([[2.0, 1.0], [0.0, 1.0]])))
case("box_qp", "H", lambda: _qp(H=np.ones((2, 3))))
case("box_qp", "H", lambda: _qp(H=_H + 1j), TE)
case("box_qp", "H", lambda: _qp(H=np.full((2, 2), np.nan)))
case("box_qp", "H", lambda: _qp(H=np.zeros((0, 0))))
case("box_qp", "g", lambda: _qp(g=np.ones(3)))
case("box_qp", "g", lambda: _qp(g=[np.inf, 0.0]))
case("box_qp", "lower", lambda: _qp(lower=np.array([2.0, -1.0])))
case("box_qp", "lower", lambda: _qp(lower=np.array([np.nan, -1.0])))
case("box_qp", "lower", lambda: _qp(lower=np.zeros(3)))
case("box_qp", "upper", lambda: _qp(upper="1"), TE)
case("box_qp", "upper", lambda: _qp(upper=-np.inf))
case("box_qp", "x0", lambda: _qp(x0=np.zeros(5)))
case("box_qp", "max_iterations", lambda: _qp(max_iterations=0))
case("box_qp", "max_iterations", lambda: _qp(max_iterations=1.5), TE)
case("box_qp", "tol", lambda: _qp(tol=0.0))
case("box_qp", "tol", lambda: _qp(tol=-1.0))

# ---- problems ----------------------------------------------------------------------------------
for make in (problems.acrobot, problems.pendulum, problems.cartpole):
    nm = make.__name__
    for bad, exc in ((0, VE), (2.5, TE), (True, TE), (-3, VE), (10 ** 9, VE)):
        case(nm, "T", lambda make=make, bad=bad: make(T=bad), exc)
    for bad, exc in ((0.0, VE), (np.nan, VE), ("a", TE), (-0.1, VE), (2.0, VE)):
        case(nm, "dt", lambda make=make, bad=bad: make(dt=bad), exc)
_lq = lambda **kw: problems.linear_quadratic(**{**dict(D=2, M=1, T=3, rng=0), **kw})
for arg in ("D", "M", "T"):
    case("linear_quadratic", arg, lambda arg=arg: _lq(**{arg: 0}))
    case("linear_quadratic", arg, lambda arg=arg: _lq(**{arg: 2.0}), TE)
case("linear_quadratic", "rng", lambda: _lq(rng=-1))
case("linear_quadratic", "rng", lambda: _lq(rng="seed"), TE)
case("linear_quadratic", "diagonal", lambda: _lq(diagonal="yes"), TE)
case("linear_quadratic", "diagonal", lambda: _lq(diagonal=True))
case("linear_quadratic", "linear_quadratic", lambda: _lq(D=100_000, T=2))
_mats = lambda: problems.linear_quadratic(2, 1, 3, rng=0)[1]
case("finite_horizon_lqr", "mats", lambda: problems.finite_horizon_lqr([1, 2]), TE)
case("finite_horizon_lqr", "mats", lambda: problems.finite_horizon_lqr({k: v for k, v in _mats().items() if k != "R"}))
case("finite_horizon_lqr", "mats['R']", lambda: problems.finite_horizon_lqr({**_mats(), "R": -np.ones((3, 1, 1))}))
case("finite_horizon_lqr", "mats['A']", lambda: problems.finite_horizon_lqr({**_mats(), "A": np.ones((4, 2, 2))}))
case("finite_horizon_lqr", "mats['B']", lambda: problems.finite_horizon_lqr({**_mats(), "B": np.ones((3, 2))}))
case("finite_horizon_lqr", "mats['Q']", lambda: problems.finite_horizon_lqr({**_mats(), "Q": np.tile(np.array([[1.0, 1.0], [0.0, 1.0]]), (4, 1, 1))}))
case("finite_horizon_lqr", "mats['x0']", lambda: problems.finite_horizon_lqr({**_mats(), "x0": np.ones(2) * 1j}), TE)
_dq = lambda **kw: problems.diagonal_quadratic(**{**dict(D=3, M=2, T=2), **kw})
for arg in ("D", "M", "T"):
    case("diagonal_quadratic", arg, lambda arg=arg: _dq(**{arg: 0}))
    case("diagonal_quadratic", arg, lambda arg=arg: _dq(**{arg: "3"}), TE)
for bad, exc in ((0.0, VE), (np.nan, VE), ("a", TE), (-1.0, VE)):
    case("diagonal_quadratic", "lr", lambda bad=bad: _dq(lr=bad), exc)
for bad, exc in ((-1.0, VE), (np.inf, VE), (1j, TE), (None, TE)):
    case("diagonal_quadratic", "beta", lambda bad=bad: _dq(beta=bad), exc)
case("diagonal_quadratic", "rng", lambda: _dq(rng=-5))
case("diagonal_quadratic", "diagonal_quadratic", lambda: _dq(D=10 ** 9, M=10))
_pb = lambda **kw: problems.Problem(**{**dict(name="p", dynamics=dyn, cost=cost, terminal_cost=term,
                                              x0=X0, U0=U0), **kw})
case("Problem", "name", lambda: _pb(name=5), TE)
case("Problem", "dynamics", lambda: _pb(dynamics=None), TE)
case("Problem", "terminal_cost", lambda: _pb(terminal_cost=0.0), TE)
case("Problem", "x0", lambda: _pb(x0=X0 * 1j), TE)
case("Problem", "U0", lambda: _pb(U0=np.zeros(3)))
case("Problem", "vectorized", lambda: _pb(vectorized="y"), TE)
case("Problem", "reference", lambda: _pb(reference="51"), TE)
case("Problem", "compiled_step", lambda: _pb(compiled_step=lambda x, u, t: x), TE)
case("Problem", "derivatives", lambda: _pb(derivatives=1), TE)
for bad in ("yes", 1, None, 0.0):
    case("Problem.kwargs", "compiled", lambda bad=bad: _pb().kwargs(compiled=bad), TE)
for bad, exc in ((0.0, VE), (-0.1, VE), ("0.1", TE), (np.inf, VE), (True, TE)):
    case("Problem", "dt", lambda bad=bad: _pb(dt=bad), exc)
for bad in ([("max_iterations", 5)], {1: 2}, "tol=1e-6", None):
    case("Problem", "solver_options", lambda bad=bad: _pb(solver_options=bad), TE)

# ---- the registry of standard problems (issue 16) ---------------------------------------------
for bad, exc in (("acrobat", VE), ("", VE), (None, VE), (3, VE), ("Acrobot", VE)):
    case("standard_problem", "name", lambda bad=bad: problems.standard_problem(bad), exc)
    case("standard_problem_spec", "name", lambda bad=bad: problems.standard_problem_spec(bad), exc)
for bad, exc in ((0, VE), (2.5, TE), (-1, VE), ("50", TE)):
    case("standard_problem", "T", lambda bad=bad: problems.standard_problem("acrobot", T=bad), exc)
for bad, exc in ((0.0, VE), (1.5, VE), (np.nan, VE), ("0.1", TE)):
    case("standard_problem", "dt", lambda bad=bad: problems.standard_problem("pendulum", dt=bad), exc)
for bad in (None, "acrobot", problems.acrobot(), {"name": "x"}):
    case("register_problem", "spec", lambda bad=bad: problems.register_problem(bad), TE)
_adyn = problems.acrobot().dynamics
case("standard dynamics", "x", lambda: _adyn(np.zeros((3, 2)), np.zeros((3, 1)), np.arange(3)))
case("standard dynamics", "u", lambda: _adyn(np.zeros((3, 4)), np.zeros((2, 1)), np.arange(3)))
case("standard dynamics", "x", lambda: _adyn(np.zeros(4), np.zeros(1), 0))
case("standard dynamics", "u", lambda: _adyn(np.zeros((3, 4)), np.zeros((3, 2)), np.arange(3)))
case("standard dynamics", "t", lambda: _adyn(np.zeros((3, 4)), np.zeros((3, 1)), np.arange(2)))
case("standard dynamics", "t", lambda: _adyn(np.zeros((3, 4)), np.zeros((3, 1)), "now"))
case("register_problem", "already registered",
     lambda: problems.register_problem(problems.standard_problem_spec("acrobot")))
_acro = problems.standard_problem_spec("acrobot")
_sp = lambda **kw: problems.StandardProblem(**{**_acro.__dict__, **kw})
for bad in ("my problem", 5, "", "1st"):
    case("StandardProblem", "name", lambda bad=bad: _sp(name=bad), TE)
for field in ("step", "batch", "forward"):
    for bad in (None, lambda x, u, t, dt: x, _acro.step.py_func, "step"):
        case("StandardProblem", field, lambda field=field, bad=bad: _sp(**{field: bad}), TE)
case("StandardProblem", "x0", lambda: _sp(x0=()))
case("StandardProblem", "x0", lambda: _sp(x0=(np.nan, 0.0, 0.0, 0.0)))
case("StandardProblem", "x0", lambda: _sp(x0=(1j, 0.0, 0.0, 0.0)), TE)
case("StandardProblem", "x0", lambda: _sp(x0="abcd"), TE)
case("StandardProblem", "goal", lambda: _sp(goal=(0.0, 0.0)))
case("StandardProblem", "goal", lambda: _sp(goal=(np.inf, 0.0, 0.0, 0.0)))
case("StandardProblem", "goal", lambda: _sp(goal=None), TE)
case("StandardProblem", "goal", lambda: _sp(goal=((0.0,) * 4,)))
for bad, exc in ((0, VE), (1.5, TE), ("1", TE), (-2, VE)):
    case("StandardProblem", "M", lambda bad=bad: _sp(M=bad), exc)
for field in ("q", "r", "q_final"):
    for bad, exc in ((-1.0, VE), (np.nan, VE), (np.inf, VE), ("1", TE)):
        case("StandardProblem", field, lambda field=field, bad=bad: _sp(**{field: bad}), exc)
for bad in ("yes", 1, None, 0.0):
    case("StandardProblem", "stage_times_dt", lambda bad=bad: _sp(stage_times_dt=bad), TE)
for bad, exc in ((0, VE), (0.5, TE), (10 ** 8, VE), (None, TE)):
    case("StandardProblem", "T", lambda bad=bad: _sp(T=bad), exc)
for bad, exc in ((0.0, VE), (2.0, VE), (np.nan, VE), (None, TE)):
    case("StandardProblem", "dt", lambda bad=bad: _sp(dt=bad), exc)
for bad in ("51", None, 1j, True):
    case("StandardProblem", "reference", lambda bad=bad: _sp(reference=bad), TE)
for bad in (None, 5, b"x", ["trajax"]):
    case("StandardProblem", "reference_source", lambda bad=bad: _sp(reference_source=bad), TE)
for bad in (None, [1], {2: 3}, "tol"):
    case("StandardProblem", "solver_options", lambda bad=bad: _sp(solver_options=bad), TE)
for bad in (None, 3, ["s"], b"s"):
    case("StandardProblem", "summary", lambda bad=bad: _sp(summary=bad), TE)
_cs = lambda **kw: CompiledStep(**{**dict(step=_acro.step, forward=_acro.forward, params=(0.1,),
                                          dims=(4, 1)), **kw})
for field in ("step", "forward"):
    for bad in (None, lambda x, u, t: x, _acro.step.py_func, 1.0):
        case("CompiledStep", field, lambda field=field, bad=bad: _cs(**{field: bad}), TE)
for bad in ([0.1], (0.1, "a"), (True,), 0.1, ((0.1,),)):
    case("CompiledStep", "params", lambda bad=bad: _cs(params=bad), TE)
for bad in ((4,), (0, 1), (4.0, 1), None, (True, 1)):
    case("CompiledStep", "dims", lambda bad=bad: _cs(dims=bad), TE)
_acs = problems.acrobot().compiled_step
case("CompiledStep", "compiled_step", lambda: _acs(np.zeros(2), np.zeros(1), 0))
case("CompiledStep", "compiled_step", lambda: _acs(np.zeros(4), np.zeros(2), 0))
case("CompiledStep", "compiled_step", lambda: _acs(np.zeros((1, 4)), np.zeros(1), 0))
case("CompiledStep", "compiled_step", lambda: _acs(np.zeros(5), np.zeros(1), 0))
case("forward_compiled", "compiled_step", lambda: forward_compiled(_acs, **_fw))
case("forward_compiled", "K", lambda: forward_compiled(problems.acrobot().compiled_step,
                                                       **{**_fw4, "K": np.zeros((2, 1, 4))}))
case("ilqr", "compiled_step", lambda: run_ilqr(compiled_step=problems.acrobot().compiled_step))


@pytest.mark.parametrize("fn, word, exc", CASES)
def test_malformed_input_raises_named_error(fn, word, exc):
    assert_named_error(fn, word, exc=exc)


def test_table_size():
    names = {p.id.rsplit("-", 1)[0] for p in CASES}
    counts = {n: sum(p.id.rsplit("-", 1)[0] == n for p in CASES) for n in names}
    assert len(CASES) >= 150
    assert min(counts.values()) >= 4, counts


def test_dense_value_model_size_guard_message_states_size_estimate_and_alternative():
    err = assert_named_error(lambda: ilqr(lambda x, u, t: x, lambda x, u, t: 0.0, np.zeros(100_000),
                                          np.zeros((2, 1)), value_model="full",
                                          derivatives=lambda X, U: None), "value_model")
    msg = str(err)
    assert "D = 100000" in msg and "GiB" in msg and "value_model='diagonal'" in msg


# ---- property tests: random shapes never reach a kernel unchecked -------------------------------
from hypothesis import given, strategies as st  # noqa: E402

_dims = st.integers(min_value=1, max_value=4)


@given(T=_dims, D=_dims, M=_dims, dT=st.integers(-2, 2), dD=st.integers(-1, 1),
       dM=st.integers(-1, 1), diag=st.booleans(), model=st.sampled_from(["full", "diagonal"]),
       bounded=st.booleans())
def test_backward_pass_random_shapes_run_or_raise_named_error(T, D, M, dT, dD, dM, diag, model,
                                                              bounded):
    rng = np.random.default_rng(T * 100 + D * 10 + M)
    Td, Dd, Md = max(T + dT, 1), max(D + dD, 1), max(M + dM, 1)
    kw = good_derivatives(T=Td, D=Dd, M=Md)
    kw["f_u"] = rng.standard_normal((Td, Dd, Md))
    if not diag:
        kw["f_x"] = rng.standard_normal((Td, Dd, Dd))
    d = Derivatives(**kw)
    U = rng.uniform(-0.5, 0.5, (T, M))       # feasible for the bounds below
    lim = dict(u_min=-1.0, u_max=1.0) if bounded else dict(u_min=None, u_max=None)
    if (Td, Md) != (T, M):
        assert_named_error(lambda: backward_pass(d, U, mu=0.0, value_model=model, **lim), "U")
        return
    res = backward_pass(d, U, mu=0.0, value_model=model, **lim)
    assert res.ok and res.K.shape == (T, M, Dd) and np.all(np.isfinite(res.K))
    assert res.expected_change(1.0) <= 1e-12     # the local model never predicts an increase


@given(logscale=st.floats(min_value=0.0, max_value=120.0), a=st.floats(0.5, 3.0),
       b=st.floats(0.1, 10.0), r=st.floats(0.1, 10.0))
def test_fd_derivatives_accurate_at_any_state_scale(logscale, a, b, r):
    # f = a x + b u, c = x^2 + r u^2 at |x| = 10**logscale and u = 0: f_u = b, c_uu = 2 r.
    x = 10.0 ** logscale
    X = np.array([[x], [a * x]])
    d = finite_difference_derivatives(lambda x, u, t: a * x + b * u,
                                      lambda x, u, t: x[:, 0] ** 2 + r * u[:, 0] ** 2,
                                      lambda x: x[:, 0] ** 2, X, np.zeros((1, 1)), vectorized=True)
    assert d.f_u[0, 0, 0] == pytest.approx(b, rel=1e-6)
    assert d.f_x[0, 0, 0] == pytest.approx(a, rel=1e-6)
    assert d.c_uu[0, 0, 0] == pytest.approx(2 * r, rel=1e-5)
    assert d.c_x[0, 0] == pytest.approx(2 * x, rel=1e-6)
    assert abs(d.c_u[0, 0]) <= 1e-6 * max(1.0, x)


@given(T=_dims, D=_dims, M=_dims, Dout=_dims, vec=st.booleans(),
       model=st.sampled_from(["full", "diagonal"]), x0=st.floats(-3, 3))
def test_ilqr_random_shapes_run_or_raise_named_error(T, D, M, Dout, vec, model, x0):
    def dyn(x, u, t):
        x2, u2 = np.atleast_2d(x), np.atleast_2d(u)
        out = np.tile(0.9 * x2[:, :1] + np.sum(u2, axis=1, keepdims=True), (1, Dout))
        return out if vec else out[0]

    def cost(x, u, t):
        c = np.sum(np.atleast_2d(x) ** 2, axis=1) + np.sum(np.atleast_2d(u) ** 2, axis=1)
        return c if vec else float(c[0])

    def term(x):
        c = np.sum(np.atleast_2d(x) ** 2, axis=1)
        return c if vec else float(c[0])

    run = lambda: ilqr(dyn, cost, np.full(D, x0), np.zeros((T, M)), terminal_cost=term,
                       vectorized=vec, value_model=model, max_iterations=5)
    if Dout != D:
        assert_named_error(run, "dynamics")
        return
    res = run()
    assert res.X.shape == (T + 1, D) and res.U.shape == (T, M)
    # the reported cost is the total cost of the returned (X, U), and X the roll-out of U,
    # both recomputed here (not the solver's own acceptance bookkeeping)
    first = lambda v: float(np.ravel(v)[0])
    X = [np.full(D, x0)]
    for t in range(T):
        X.append(np.ravel(dyn(X[-1][None], res.U[t][None], np.array([t])))[:D])
    assert np.allclose(res.X, np.array(X), rtol=1e-12, atol=1e-12)
    J = sum(first(cost(res.X[t][None], res.U[t][None], np.array([t]))) for t in range(T))
    assert np.isfinite(res.cost) and res.cost == pytest.approx(J + first(term(res.X[-1][None])), rel=1e-12)


@given(n=st.integers(1, 5), seed=st.integers(0, 10 ** 6), inf_lo=st.booleans(), inf_hi=st.booleans())
def test_box_qp_matches_scipy_on_random_boxes(n, seed, inf_lo, inf_hi):
    import scipy.optimize
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, n))
    H = G @ G.T + 0.1 * np.eye(n)
    g = rng.standard_normal(n) * 3
    lo = np.full(n, -np.inf) if inf_lo else -np.abs(rng.standard_normal(n))
    hi = np.full(n, np.inf) if inf_hi else np.abs(rng.standard_normal(n))
    res = box_qp(H, g, lo, hi)
    bounds = [(None if np.isinf(a) else a, None if np.isinf(b) else b) for a, b in zip(lo, hi)]
    ref = scipy.optimize.minimize(lambda z: 0.5 * z @ H @ z + g @ z, np.zeros(n),
                                  jac=lambda z: H @ z + g, bounds=bounds, method="L-BFGS-B",
                                  options={"ftol": 1e-15, "gtol": 1e-12})
    assert res.ok and np.all(res.x >= lo) and np.all(res.x <= hi)
    f = lambda z: 0.5 * z @ H @ z + g @ z
    assert f(res.x) <= f(ref.x) + 1e-9 * max(1.0, abs(f(ref.x)))
