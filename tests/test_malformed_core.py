"""Malformed-input table for the LQR core, the roll-out engine, the zeroth-order estimators
and the MAML objective (issue 12): every case must raise a metalqr error (a ``ValueError``
or ``TypeError``) whose message names the offending argument.

Public names without arguments (``boeing747``, ``standard_systems``, ``available_backends``)
have nothing to malform and are not listed.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import metalqr
from helpers import assert_named_error

NAN, INF = float("nan"), float("inf")

T = metalqr.LQRTask([[0.8, 0.2], [0.0, 0.6]], [[1.0], [0.5]], np.eye(2), [[1.0]])
T2 = metalqr.LQRTask([[0.5, 0.1], [0.0, 0.7]], [[0.5], [1.0]], np.eye(2), [[2.0]])
TS = metalqr.TaskSet([T, T2])
K = np.array([[0.1, 0.1]])
KC = 1j * K
KT = K.T                                   # transposed (d, k)
KNAN = np.array([[NAN, 0.1]])
KBOOL = np.array([[True, False]])
K3 = np.zeros((3, 1, 2))                   # a stack of the wrong length
KBAD = np.array([[0.0, -3.0]])             # A - B K unstable for T
A_OK, B_OK, Q_OK, R_OK = T.A, T.B, T.Q, T.R
KMASKED = np.ma.masked_array([[0.1, 1e9]], mask=[[False, True]])   # the mask would be ignored

CASES: list[tuple] = []


def case(name, fn, word, *args, exc=None, **kwargs):
    CASES.append((name, fn, word, args, kwargs, exc))


def _gain_cases(name, fn, *extra, **kw):
    """The malformed gains every K-taking function must refuse (single task and TaskSet)."""
    case(name, fn, "K", T, KC, *extra, **kw)
    case(name, fn, "K", T, KNAN, *extra, **kw)
    case(name, fn, "K", T, KT, *extra, **kw)
    case(name, fn, "K", T, KBOOL, *extra, **kw)
    case(name, fn, "K", T, "0.1", *extra, **kw)
    case(name, fn, "K", T, np.zeros((1, 1, 2)), *extra, **kw)
    case(name, fn, "K", TS, K3, *extra, **kw)
    case(name, fn, "K", T, [[INF, 0.0]], *extra, **kw)
    case(name, fn, "task", "task", K, *extra, **kw)
    case(name, fn, "task", None, K, *extra, **kw)
    case(name, fn, "K", T, None, *extra, exc=metalqr.ValidationTypeError, **kw)
    case(name, fn, "K", T, KMASKED, *extra, exc=metalqr.ValidationTypeError, **kw)
    case(name, fn, "TaskSet", [T, T2], K, *extra, exc=metalqr.ValidationTypeError, **kw)


# --- LQRTask / TaskSet ------------------------------------------------------------------
L = metalqr.LQRTask
case("LQRTask", L, "A", 1j * np.eye(2), B_OK, Q_OK, R_OK)
case("LQRTask", L, "A", [[NAN, 0], [0, 1]], B_OK, Q_OK, R_OK)
case("LQRTask", L, "A", np.ones((2, 3)), B_OK, Q_OK, R_OK)
case("LQRTask", L, "A", np.ones((2, 2, 2)), B_OK, Q_OK, R_OK)
case("LQRTask", L, "A", "eye", B_OK, Q_OK, R_OK)
case("LQRTask", L, "A", np.eye(2, dtype=bool), B_OK, Q_OK, R_OK)
case("LQRTask", L, "A", np.zeros((0, 0)), B_OK, Q_OK, R_OK)
case("LQRTask", L, "B", A_OK, [[1.0], [0.5], [0.0]], Q_OK, R_OK)
case("LQRTask", L, "B", A_OK, [[1.0 + 1j], [0.5]], Q_OK, R_OK)
case("LQRTask", L, "B", A_OK, [1.0, 0.5], Q_OK, R_OK)
case("LQRTask", L, "B", A_OK, np.zeros((2, 0)), Q_OK, R_OK)
case("LQRTask", L, "Q", A_OK, B_OK, [[1.0, 1.0], [0.0, 1.0]], R_OK)
case("LQRTask", L, "Q", A_OK, B_OK, -np.eye(2), R_OK)
case("LQRTask", L, "Q", A_OK, B_OK, np.eye(3), R_OK)
case("LQRTask", L, "R", A_OK, B_OK, Q_OK, [[0.0]])
case("LQRTask", L, "R", A_OK, B_OK, Q_OK, np.eye(2))
case("LQRTask", L, "R", A_OK, B_OK, Q_OK, "1")
case("LQRTask", L, "R", A_OK, B_OK, Q_OK, [[1j]])
case("LQRTask", L, "Psi", A_OK, B_OK, Q_OK, R_OK, Psi=-np.eye(2))
case("LQRTask", L, "Psi", A_OK, B_OK, Q_OK, R_OK, Psi=np.eye(3))
case("LQRTask", L, "Psi", A_OK, B_OK, Q_OK, R_OK, Psi=[[1, 2], [0, 1]])
case("LQRTask", L, "Sigma0", A_OK, B_OK, Q_OK, R_OK, Sigma0=[[NAN, 0], [0, 1]])
case("LQRTask", L, "Sigma0", A_OK, B_OK, Q_OK, R_OK, Sigma0=np.diag([1.0, -1.0]))
case("LQRTask", L, "Sigma0", A_OK, B_OK, Q_OK, R_OK, Sigma0=1j * np.eye(2))
case("LQRTask", L, "Psi", A_OK, B_OK, Q_OK, R_OK, Psi=np.diag([1e12, -1.0]))       # badly scaled
case("LQRTask", L, "Psi", A_OK, B_OK, Q_OK, R_OK, Psi=[[1.0, 1e-4], [1e-4, 1e-10]])
case("LQRTask", L, "Q", A_OK, B_OK, [[1e10, 0.0], [0.0, -1e-3]], R_OK)
case("LQRTask", L, "Sigma0", A_OK, B_OK, Q_OK, R_OK, Sigma0=[[1.0, 1e-9], [1e-9, 0.0]])
case("LQRTask", L, "A", np.ma.masked_array(A_OK, mask=[[0, 1], [0, 0]]), B_OK, Q_OK, R_OK,
     exc=metalqr.ValidationTypeError)
case("LQRTask", L, "Q", A_OK, B_OK, np.ma.masked_array(Q_OK), R_OK, exc=metalqr.ValidationTypeError)
case("LQRTask", L, "Psi", A_OK, B_OK, Q_OK, R_OK, Psi=np.ma.masked_array(np.eye(2)),
     exc=metalqr.ValidationTypeError)
case("LQRTask", L, "B", A_OK, None, Q_OK, R_OK, exc=metalqr.ValidationTypeError)
case("LQRTask.from_statespace", L.from_statespace, "sys", "not a system", Q_OK, R_OK)
case("LQRTask.from_statespace", L.from_statespace, "sys", np.eye(2), Q_OK, R_OK)


class _ContinuousSys:
    A, B, dt = np.eye(2), np.ones((2, 1)), 0


class _ComplexSys:
    A, B, dt = 1j * np.eye(2), np.ones((2, 1)), 0.1


case("LQRTask.from_statespace", L.from_statespace, "sys", _ContinuousSys(), Q_OK, R_OK)
case("LQRTask.from_statespace", L.from_statespace, "A", _ComplexSys(), Q_OK, R_OK)

case("TaskSet", metalqr.TaskSet, "tasks", [])
case("TaskSet", metalqr.TaskSet, "tasks", 5)
case("TaskSet", metalqr.TaskSet, "tasks", "tasks")
case("TaskSet", metalqr.TaskSet, "tasks", T)
case("TaskSet", metalqr.TaskSet, "tasks", [T, "task"])
case("TaskSet", metalqr.TaskSet, "tasks",
     [T, metalqr.LQRTask(np.eye(3) * 0.5, np.ones((3, 1)), np.eye(3), [[1.0]])])
_get = TS.__getitem__
case("TaskSet[index]", _get, "mask", np.array([True, False, True]))
case("TaskSet[index]", _get, "mask", np.array([True]))
case("TaskSet[index]", _get, "index", 5)
case("TaskSet[index]", _get, "index", -3)
case("TaskSet[index]", _get, "index", 1.0)
case("TaskSet[index]", _get, "index", "0")
case("TaskSet[index]", _get, "index", [0, 7])
case("TaskSet[index]", _get, "index", np.array([[0, 1]]))
case("TaskSet[index]", _get, "index", np.array([0.0, 1.0]))
case("TaskSet[index]", _get, "index", True)
case("TaskSet[index]", _get, "index", slice(5, 9))
case("TaskSet[index]", _get, "index", [])

# --- Lyapunov, policy evaluation, gradients, Hessians -----------------------------------
case("dlyap", metalqr.dlyap, "A", 1j * np.eye(2) * 0.5, np.eye(2))
case("dlyap", metalqr.dlyap, "W", 0.5 * np.eye(2), 1j * np.eye(2))
case("dlyap", metalqr.dlyap, "A", np.ones((2, 3)), np.eye(2))
case("dlyap", metalqr.dlyap, "A", 2.0 * np.eye(2), np.eye(2))
case("dlyap", metalqr.dlyap, "W", 0.5 * np.eye(2), np.eye(3))
case("dlyap", metalqr.dlyap, "A", np.zeros((3, 2, 2)), np.zeros((4, 2, 2)))
case("dlyap", metalqr.dlyap, "A", [[NAN]], [[1.0]])
case("dlyap", metalqr.dlyap, "A", "A", [[1.0]])
case("dlyap", metalqr.dlyap, "A", [0.5, 0.5], [[1.0]])
case("dlyap", metalqr.dlyap, "W", [[0.5]], [[True]])

for _name in ("spectral_radius", "is_stabilizing", "cost", "gradient", "natural_gradient",
              "gauss_newton_direction", "hessian", "evaluate"):
    _gain_cases(_name, getattr(metalqr, _name))
for _name in ("gradient", "natural_gradient", "gauss_newton_direction", "hessian", "evaluate"):
    case(_name, getattr(metalqr, _name), "K", T, KBAD)
case("hessian", metalqr.hessian, "hessian_vp",
     metalqr.LQRTask(0.5 * np.eye(200), np.ones((200, 100)), np.eye(200), np.eye(100)),
     np.zeros((100, 200)))

_gain_cases("hessian_vp", metalqr.hessian_vp, K)
case("hessian_vp", metalqr.hessian_vp, "X", T, K, 1j * K)
case("hessian_vp", metalqr.hessian_vp, "X", T, K, KT)
case("hessian_vp", metalqr.hessian_vp, "X", T, K, KNAN)
case("hessian_vp", metalqr.hessian_vp, "X", T, K, "X")
case("hessian_vp", metalqr.hessian_vp, "X", TS, K, K3)
case("hessian_vp", metalqr.hessian_vp, "K", T, KBAD, K)

# PolicyEvaluation.hessian_vp validates X exactly as metalqr.hessian_vp (before: NaN returned
# silently, a raw numpy ValueError for a transposed X)
_ev1 = metalqr.evaluate(T, K).hessian_vp
_evS = metalqr.evaluate(TS, K).hessian_vp
case("PolicyEvaluation.hessian_vp", _ev1, "X", KNAN)
case("PolicyEvaluation.hessian_vp", _ev1, "X", KT)
case("PolicyEvaluation.hessian_vp", _ev1, "X", 1j * K, exc=metalqr.ValidationTypeError)
case("PolicyEvaluation.hessian_vp", _ev1, "X", KBOOL)
case("PolicyEvaluation.hessian_vp", _ev1, "X", "X")
case("PolicyEvaluation.hessian_vp", _ev1, "X", K[None])           # stack for a single task
case("PolicyEvaluation.hessian_vp", _evS, "X", K3)                # stack of the wrong length
case("PolicyEvaluation.hessian_vp", _evS, "X", np.full((2, 1, 2), INF))
case("PolicyEvaluation.hessian_vp", _evS, "X", np.zeros((2, 2, 1, 2)))

_po = metalqr.policy_optimization
case("policy_optimization", _po, "method", T, K, method="newton")
case("policy_optimization", _po, "method", T, K, method=None)
case("policy_optimization", _po, "eta", T, K, eta=0.0)
case("policy_optimization", _po, "eta", T, K, eta=NAN)
case("policy_optimization", _po, "eta", T, K, eta=-1e-3)
case("policy_optimization", _po, "eta", T, K, eta="0.1")
case("policy_optimization", _po, "max_iterations", T, K, max_iterations=-1)
case("policy_optimization", _po, "max_iterations", T, K, max_iterations=2.5)
case("policy_optimization", _po, "max_iterations", T, K, max_iterations=True)
case("policy_optimization", _po, "tol", T, K, tol=-1.0)
case("policy_optimization", _po, "tol", T, K, tol=NAN)
case("policy_optimization", _po, "K0", T, KT)
case("policy_optimization", _po, "K0", T, KC)
case("policy_optimization", _po, "K0", T, KBAD)
case("policy_optimization", _po, "task", [T], K)

# --- standard systems ---------------------------------------------------------------------
for _bad in (0, 0.0, -0.1, NAN, INF, "0.1", 1j, True, None, [0.1]):
    case("double_integrator", metalqr.double_integrator, "dt", _bad)
_ip = metalqr.inverted_pendulum
case("inverted_pendulum", _ip, "dt", 0.0)
case("inverted_pendulum", _ip, "dt", NAN)
case("inverted_pendulum", _ip, "g", g=INF)
case("inverted_pendulum", _ip, "g", g=-9.81)
case("inverted_pendulum", _ip, "length", length=0.0)
case("inverted_pendulum", _ip, "length", length="1")
case("inverted_pendulum", _ip, "damping", damping=-0.1)
case("inverted_pendulum", _ip, "damping", damping=NAN)

# --- roll-outs ------------------------------------------------------------------------------
_sc = metalqr.simulate_costs
case("simulate_costs", _sc, "length", T, K, length=0)
case("simulate_costs", _sc, "length", T, K, length=2.5)
case("simulate_costs", _sc, "length", T, K, length=True)
case("simulate_costs", _sc, "length", T, K, length=2 ** 50)
case("simulate_costs", _sc, "tasks", "task", K, length=5)
case("simulate_costs", _sc, "K", T, KC, length=5)
case("simulate_costs", _sc, "K", T, KNAN, length=5)
case("simulate_costs", _sc, "K", T, np.zeros((3, 1, 2)), length=5, task_index=[0, 0])
case("simulate_costs", _sc, "task_index", T, K, length=5, task_index=[0.0, 1.0])
case("simulate_costs", _sc, "task_index", T, K, length=5, task_index=[0, 1])
case("simulate_costs", _sc, "task_index", T, K, length=5, task_index=[[0, 0]])
case("simulate_costs", _sc, "task_index", T, K, length=5, task_index=[True, False])
case("simulate_costs", _sc, "task_index", T, K, length=5, task_index="0")
case("simulate_costs", _sc, "n_rollouts", T, K, length=5, n_rollouts=0)
case("simulate_costs", _sc, "n_rollouts", T, K, length=5, n_rollouts=1e3)
case("simulate_costs", _sc, "n_rollouts", T, K, length=5, n_rollouts=3, task_index=[0, 0])
case("simulate_costs", _sc, "n_rollouts", T, np.zeros((2, 1, 2)), length=5, n_rollouts=3)
case("simulate_costs", _sc, "simulate_costs", T, K, length=5, n_rollouts=10 ** 12)
case("simulate_costs", _sc, "simulate_costs", T, K, length=10 ** 9, n_rollouts=10 ** 5)
case("simulate_costs", _sc, "noise_index", T, K, length=5, n_rollouts=2, noise_index=[-1, 0])
case("simulate_costs", _sc, "noise_index", T, K, length=5, n_rollouts=2, noise_index=[0])
case("simulate_costs", _sc, "noise_index", T, K, length=5, n_rollouts=2, noise_index=[0.5, 1])
case("simulate_costs", _sc, "noise_index", T, K, length=5, n_rollouts=1,
     noise_index=[2 ** 62])
case("simulate_costs", _sc, "backend", T, K, length=5, backend="fortran")
case("simulate_costs", _sc, "backend", T, K, length=5, backend=3)
case("simulate_costs", _sc, "rng", T, K, length=5, rng="seed")
case("simulate_costs", _sc, "rng", T, K, length=5, rng=-1)

_erc = metalqr.expected_rollout_cost
case("expected_rollout_cost", _erc, "length", T, K, 0)
case("expected_rollout_cost", _erc, "length", T, K, -5)
case("expected_rollout_cost", _erc, "length", T, K, 5.0)
case("expected_rollout_cost", _erc, "length", T, K, "5")
case("expected_rollout_cost", _erc, "length", T, K, 2 ** 60)
case("expected_rollout_cost", _erc, "K", T, KC, 5)
case("expected_rollout_cost", _erc, "K", T, KT, 5)
case("expected_rollout_cost", _erc, "K", TS, K3, 5)
case("expected_rollout_cost", _erc, "tasks", [T], K, 5)

# --- MAML objective -----------------------------------------------------------------------
for _name in ("maml_objective", "maml_gradient", "first_order_maml_gradient",
              "is_maml_stabilizing", "adapted_gains"):
    _fn = getattr(metalqr, _name)
    case(_name, _fn, "eta", TS, K, -0.1)
    case(_name, _fn, "eta", TS, K, NAN)
    case(_name, _fn, "eta", TS, K, "0.1")
    case(_name, _fn, "eta", TS, K, 1j)
    case(_name, _fn, "K", TS, KC, 0.01)
    case(_name, _fn, "K", TS, KT, 0.01)
    case(_name, _fn, "K", TS, np.zeros((2, 1, 2)), 0.01)      # per-task stack: not a meta-gain
    case(_name, _fn, "tasks", [T, T2], K, 0.01)
    case(_name, _fn, "tasks", None, K, 0.01)
for _name in ("maml_objective", "maml_gradient", "first_order_maml_gradient"):
    _fn = getattr(metalqr, _name)
    case(_name, _fn, "weights", TS, K, 0.01, weights=[1.0])
    case(_name, _fn, "weights", TS, K, 0.01, weights=[-1.0, 2.0])
    case(_name, _fn, "weights", TS, K, 0.01, weights=[0.0, 0.0])
    case(_name, _fn, "weights", TS, K, 0.01, weights=[NAN, 1.0])
for _name in ("maml_gradient", "first_order_maml_gradient", "adapted_gains"):
    case(_name, getattr(metalqr, _name), "K", TS, KBAD, 0.01)

_cgr = metalqr.cost_gap_ratio
case("cost_gap_ratio", _cgr, "J_star", TS, K, [-1.0, 2.0])
case("cost_gap_ratio", _cgr, "J_star", TS, K, [0.0, 0.0])
case("cost_gap_ratio", _cgr, "J_star", TS, K, [1.0])
case("cost_gap_ratio", _cgr, "J_star", TS, K, [NAN, 1.0])
case("cost_gap_ratio", _cgr, "J_star", TS, K, [1j, 1.0])
case("cost_gap_ratio", _cgr, "K", TS, KC, None)
case("cost_gap_ratio", _cgr, "K", TS, K3, None)
case("cost_gap_ratio", _cgr, "tasks", "tasks", K, None)
for _name in ("optimal_costs", "check_meta_learnable", "common_stabilizing_gain"):
    for _bad in (None, 5, "tasks", [T, T2], np.eye(2)):
        case(_name, getattr(metalqr, _name), "tasks", _bad)
_nonstab = metalqr.TaskSet([metalqr.LQRTask(2 * np.eye(2), [[1.0], [1.0]], np.eye(2), [[1.0]]), T])
case("check_meta_learnable", metalqr.check_meta_learnable, "task 0", _nonstab)
case("common_stabilizing_gain", metalqr.common_stabilizing_gain, "task 0", _nonstab)

# --- zeroth-order estimators --------------------------------------------------------------
_zo = metalqr.zo_gradient
_gain_cases("zo_gradient", _zo, oracle="exact")
case("zo_gradient", _zo, "n_perturbations", T, K, n_perturbations=0)
case("zo_gradient", _zo, "n_perturbations", T, K, n_perturbations=10.0)
case("zo_gradient", _zo, "n_perturbations", T, K, n_perturbations=True)
case("zo_gradient", _zo, "radius", T, K, radius=0.0)
case("zo_gradient", _zo, "radius", T, K, radius=NAN)
case("zo_gradient", _zo, "radius", T, K, radius=-0.1)
case("zo_gradient", _zo, "rollout_length", T, K, rollout_length=0)
case("zo_gradient", _zo, "rollout_length", T, K, rollout_length=None)
case("zo_gradient", _zo, "backend", T, K, backend="fortran")
case("zo_gradient", _zo, "backend", T, K, backend="fortran", oracle="exact")
case("zo_gradient", _zo, "backend", T, K, backend="Numba", oracle="exact")
case("zo_gradient", _zo, "oracle", T, K, oracle="exakt")
case("zo_gradient", _zo, "oracle", T, K, oracle=None)
case("zo_gradient", _zo, "two_point", T, K, two_point="yes")
case("zo_gradient", _zo, "two_point", T, K, two_point=1)
case("zo_gradient", _zo, "rng", T, K, rng="seed")
case("zo_gradient", _zo, "rng", T, K, rng=1.5)
case("zo_gradient", _zo, "zo_gradient", T, K, n_perturbations=10 ** 10, oracle="exact")

_zm = metalqr.zo_maml_gradient
case("zo_maml_gradient", _zm, "eta", TS, K, eta=-0.1)
case("zo_maml_gradient", _zm, "eta", TS, K, eta=NAN)
case("zo_maml_gradient", _zm, "eta", TS, K, eta="0.1")
case("zo_maml_gradient", _zm, "K", TS, KC, eta=0.01)
case("zo_maml_gradient", _zm, "K", TS, np.zeros((2, 1, 2)), eta=0.01)
case("zo_maml_gradient", _zm, "K", TS, KT, eta=0.01)
case("zo_maml_gradient", _zm, "tasks", [T, T2], K, eta=0.01)
case("zo_maml_gradient", _zm, "inner_perturbations", TS, K, eta=0.01, inner_perturbations=0)
case("zo_maml_gradient", _zm, "inner_perturbations", TS, K, eta=0.01, inner_perturbations=2.0)
case("zo_maml_gradient", _zm, "task_batch", TS, K, eta=0.01, task_batch=0)
case("zo_maml_gradient", _zm, "task_batch", TS, K, eta=0.01, task_batch=3)
case("zo_maml_gradient", _zm, "task_batch", TS, K, eta=0.01, task_batch=1.0)
case("zo_maml_gradient", _zm, "backend", TS, K, eta=0.01, backend="gpu")
case("zo_maml_gradient", _zm, "backend", TS, K, eta=0.01, backend="gpu", oracle="exact")
case("zo_maml_gradient", _zm, "oracle", TS, K, eta=0.01, oracle="model")
case("zo_maml_gradient", _zm, "radius", TS, K, eta=0.01, radius=INF)
case("zo_maml_gradient", _zm, "n_perturbations", TS, K, eta=0.01, n_perturbations=-1)
case("zo_maml_gradient", _zm, "two_point", TS, K, eta=0.01, two_point=None)
case("zo_maml_gradient", _zm, "zo_maml_gradient", TS, K, eta=0.01, n_perturbations=10 ** 5,
     inner_perturbations=10 ** 5)

_sp = metalqr.sphere_perturbations
case("sphere_perturbations", _sp, "radius", 0, (3, 1, 2), NAN)
case("sphere_perturbations", _sp, "radius", 0, (3, 1, 2), 0.0)
case("sphere_perturbations", _sp, "radius", 0, (3, 1, 2), -1.0)
case("sphere_perturbations", _sp, "radius", 0, (3, 1, 2), INF)
case("sphere_perturbations", _sp, "radius", 0, (3, 1, 2), "1")
case("sphere_perturbations", _sp, "shape", 0, (3,), 0.1)
case("sphere_perturbations", _sp, "shape", 0, (), 0.1)
case("sphere_perturbations", _sp, "shape[1]", 0, (2, -1, 3), 0.1)
case("sphere_perturbations", _sp, "shape[0]", 0, (2.0, 1, 3), 0.1)
case("sphere_perturbations", _sp, "shape[2]", 0, (2, 1, 0), 0.1)
case("sphere_perturbations", _sp, "shape", 0, "ab", 0.1)
case("sphere_perturbations", _sp, "shape", 0, 5, 0.1)
case("sphere_perturbations", _sp, "backend", 0, (3, 1, 2), 0.1, backend="fortran")
case("sphere_perturbations", _sp, "backend", 0, (3, 1, 2), 0.1, backend="NumPy")
case("sphere_perturbations", _sp, "rng", "seed", (3, 1, 2), 0.1)
case("sphere_perturbations", _sp, "sphere_perturbations", 0, (10 ** 6, 10 ** 4, 1, 2), 0.1)


# --- ragged lists, huge ints, dtypes with another meaning (new-user report) ----------------
VTE, VE = metalqr.ValidationTypeError, metalqr.ValidationError
_OBJ = dict(dtype=object)
# (label, fn, word, args, kwargs, exc, words the message must contain)
DTYPE_CASES = [
    ("cost", metalqr.cost, "K", (T, [[0.1, 0.1], [0.1]]), {}, VE, "ragged"),
    ("cost", metalqr.cost, "K", (T, [[10 ** 400, 0]]), {}, VE, "integer too large for float64"),
    ("cost", metalqr.cost, "K", (T, np.zeros((1, 2), "datetime64[s]")), {}, VTE, "datetime64"),
    ("cost", metalqr.cost, "K", (T, np.zeros((1, 2), "timedelta64[s]")), {}, VTE, "timedelta64"),
    ("cost", metalqr.cost, "K", (T, np.array([["0.1", "0.1"]], **_OBJ)), {}, VTE, "string"),
    ("cost", metalqr.cost, "K", (T, np.array([[None, 0.1]], **_OBJ)), {}, VTE, "None"),
    ("cost", metalqr.cost, "K", (T, [[None, 0.1]]), {}, VTE, "None"),
    ("cost", metalqr.cost, "K", (T, np.zeros((1, 2), [("a", float)])), {}, VTE, "structured"),
    ("cost", metalqr.cost, "K", (T, np.zeros((1, 2), "V8")), {}, VTE, "void"),
    ("cost", metalqr.cost, "K", (T, np.array([[True, 0.1]], **_OBJ)), {}, VTE, "bool"),
    ("LQRTask", L, "A", ([[0.5, 0], [0]], B_OK, Q_OK, R_OK), {}, VE, "ragged"),
    ("LQRTask", L, "A", ([[10 ** 400]], [[1]], [[1]], [[1]]), {}, VE,
     "integer too large for float64"),
    ("LQRTask", L, "Q", (A_OK, B_OK, np.eye(2).astype("timedelta64[s]"), R_OK), {}, VTE,
     "timedelta64"),
    ("LQRTask", L, "A", (np.zeros((2, 2), "datetime64[s]"), B_OK, Q_OK, R_OK), {}, VTE,
     "datetime64"),
    ("LQRTask", L, "R", (A_OK, B_OK, Q_OK, np.array([["1"]], **_OBJ)), {}, VTE, "string"),
    ("LQRTask", L, "Psi", (A_OK, B_OK, Q_OK, R_OK), {"Psi": np.array([[1, None], [None, 1]], **_OBJ)},
     VTE, "None"),
    ("dlyap", metalqr.dlyap, "A", ([[0.5, 0], [0]], np.eye(2)), {}, VE, "ragged"),
    ("dlyap", metalqr.dlyap, "A", (np.zeros((2, 2), "datetime64[s]"), np.eye(2)), {}, VTE,
     "datetime64"),
    ("dlyap", metalqr.dlyap, "W", (0.5 * np.eye(2), [[10 ** 400, 0], [0, 1]]), {}, VE,
     "integer too large for float64"),
    ("dlyap", metalqr.dlyap, "A", (np.array([["0.1"]], **_OBJ), [[1.0]]), {}, VTE, "string"),
    ("dlyap", metalqr.dlyap, "A", (np.array([[None]], **_OBJ), [[1.0]]), {}, VTE, "None"),
    ("dlyap", metalqr.dlyap, "A", (np.zeros((1, 1), [("a", float)]), [[1.0]]), {}, VTE,
     "structured"),
    ("dlyap", metalqr.dlyap, "A", ([[[0.5]], [[0.5, 0.1]]], [[1.0]]), {}, VE, "ragged"),
    ("hessian_vp", metalqr.hessian_vp, "X", (T, K, [[1, 2], [1]]), {}, VE, "ragged"),
    ("hessian_vp", metalqr.hessian_vp, "X", (T, K, [[10 ** 400, 1]]), {}, VE,
     "integer too large for float64"),
    ("hessian_vp", metalqr.hessian_vp, "X", (T, K, np.zeros((1, 2), "timedelta64[s]")), {}, VTE,
     "timedelta64"),
    ("hessian_vp", metalqr.hessian_vp, "K", (T, [[0.1], [0.1, 0.1]], K), {}, VE, "ragged"),
]
for _c in DTYPE_CASES:
    case(_c[0], _c[1], _c[2], *_c[3], exc=_c[5], **_c[4])


@pytest.mark.parametrize("label, fn, word, args, kwargs, exc, says", DTYPE_CASES,
                         ids=[f"{c[0]}-{c[6]}-{i}" for i, c in enumerate(DTYPE_CASES)])
def test_ragged_huge_and_odd_dtypes_get_their_own_message(label, fn, word, args, kwargs, exc,
                                                          says):
    err = assert_named_error(fn, word, *args, exc=exc, **kwargs)
    assert says in str(err), str(err)
    assert "non-finite" not in str(err) and "setting an array element" not in str(err)
    if says != "string":
        assert "strings/bytes" not in str(err)


def test_object_arrays_of_real_numbers_are_still_accepted():
    """Object arrays of Python floats/ints and NumPy scalars give the float64 answer."""
    import fractions
    ref = metalqr.cost(T, K)
    for Kobj in (np.array([[0.1, 0.1]], dtype=object),
                 np.array([[np.float32(0.1), np.float64(0.1)]], dtype=object).astype(float),
                 np.array([[fractions.Fraction(1, 10), 0.1]], dtype=object)):
        assert metalqr.cost(T, Kobj) == pytest.approx(ref, rel=1e-6)
    X = metalqr.dlyap(np.array([[np.int64(0)]], dtype=object), [[1.0]])
    assert X[0, 0] == 1.0
    X = metalqr.dlyap(np.array([[np.float16(0.5)]], dtype=object), [[1]])
    assert X[0, 0] == pytest.approx(4.0 / 3.0)

@pytest.mark.parametrize("name, fn, word, args, kwargs, exc", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_malformed_input_raises_a_named_metalqr_error(name, fn, word, args, kwargs, exc):
    assert_named_error(fn, word, *args, exc=exc, **kwargs)


def test_every_public_name_has_at_least_four_cases():
    counts = Counter(c[0] for c in CASES)
    assert len(CASES) >= 250
    thin = {n: c for n, c in counts.items() if c < 4}
    assert not thin, thin


def test_valid_backend_names_are_listed_in_the_error():
    err = assert_named_error(metalqr.zo_gradient, "backend", T, K, backend="numbaa",
                             oracle="exact")
    assert "'numpy', 'numba', 'cupy'" in str(err) and "Did you mean 'numba'" in str(err)


def test_complex_direction_no_longer_gives_zeros():
    """Issue 12: hessian_vp(task, K, 1j K) returned zeros (the imaginary part dropped)."""
    assert_named_error(metalqr.hessian_vp, "X", T, K, 1j * K, exc=metalqr.ValidationTypeError)


def test_taskset_masks_and_index_errors_are_index_errors_too():
    """A wrong-length boolean mask used to be accepted; index errors stay IndexErrors."""
    with pytest.raises(IndexError):
        TS[np.array([True, False, True])]
    assert len(TS[np.array([True, False])]) == 1 and len(TS[[-1]]) == 1
    assert [t for t in TS] == [T, T2]


# --- property tests: random shapes and values never escape as raw exceptions --------------

from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                    st.integers(-3, 3).map(float))
_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)


@given(hnp.arrays(np.float64, _shapes, elements=_values),
       hnp.arrays(np.float64, _shapes, elements=_values),
       hnp.arrays(np.float64, _shapes, elements=_values))
def test_lqrtask_fuzz_builds_or_raises_validation_error(A, B, Q):
    """LQRTask with random shapes and values (NaN, inf, indefinite, empty) either builds a
    task or raises a ValidationError; never a raw NumPy/Python exception."""
    try:
        task = metalqr.LQRTask(A, B, Q, np.eye(B.shape[-1]) if B.ndim == 2 and B.shape[-1] else [[1.0]])
    except metalqr.ValidationError:
        return
    assert task.A.shape == (task.d, task.d) and np.all(np.isfinite(task.A))


@given(hnp.arrays(np.float64, _shapes, elements=_values),
       st.sampled_from(["cost", "gradient", "spectral_radius", "natural_gradient"]))
def test_gain_fuzz_gives_a_number_inf_or_a_metalqr_error(K_, fn):
    """Random gains: a finite result (cost may be inf), or a metalqr ValueError."""
    try:
        out = getattr(metalqr, fn)(TS, K_)
    except (metalqr.ValidationError, metalqr.UnstablePolicyError):
        return
    out = np.asarray(out)
    assert not np.any(np.isnan(out))
    assert fn == "cost" or np.all(np.isfinite(out))


@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5),
                 st.text(max_size=3), st.none()),
       st.lists(st.integers(-2, 4), min_size=0, max_size=4))
def test_sphere_perturbations_fuzz(radius, shape):
    try:
        U = metalqr.sphere_perturbations(0, tuple(shape), radius, backend="numpy")
    except metalqr.ValidationError:
        return
    norms = np.linalg.norm(U.reshape(-1, shape[-2] * shape[-1]), axis=1)
    np.testing.assert_allclose(norms, radius, rtol=1e-12)


@pytest.mark.parametrize("scale", [1e308, 1e200, 1e160])
def test_huge_finite_gains_never_give_raw_errors_or_nan(scale):
    """A - B K overflows for a huge finite K: documented results (inf cost, not stabilising,
    UnstablePolicyError / NotMAMLStabilizingError), never a raw LinAlgError or NaN."""
    import warnings

    T4 = metalqr.LQRTask([[0.8, 0.2], [0.0, 0.6]], [[2.0], [0.5]], np.eye(2), [[1.0]])
    Kh = np.array([[scale, scale]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert metalqr.spectral_radius(T4, Kh) >= 1.0
        assert not metalqr.is_stabilizing(T4, Kh)
        assert metalqr.cost(T4, Kh) == float("inf")
        assert metalqr.expected_rollout_cost(T4, Kh, 5) == float("inf")
        assert metalqr.maml_objective(metalqr.TaskSet([T4, T4]), Kh, 0.01) == float("inf")
        assert not metalqr.is_maml_stabilizing(metalqr.TaskSet([T4, T4]), Kh, 0.01)
        for fn in (metalqr.gradient, metalqr.hessian, metalqr.natural_gradient,
                   metalqr.gauss_newton_direction):
            with pytest.raises(metalqr.UnstablePolicyError):
                fn(T4, Kh)
        with pytest.raises(metalqr.NotMAMLStabilizingError):
            metalqr.maml_gradient(metalqr.TaskSet([T4, T4]), Kh, 0.01)
        for backend in ("numpy", "numba"):
            c = metalqr.simulate_costs(T4, Kh, length=5, n_rollouts=3, backend=backend)
            assert np.all(c == float("inf"))


# --- messages that must say what is wrong (fixnum) ------------------------------------------

def test_none_gain_says_none_not_non_finite():
    # before: "K contains 1 non-finite value(s) (NaN or inf); all entries must be finite."
    with pytest.raises(metalqr.ValidationTypeError) as info:
        metalqr.cost(T, None)
    assert str(info.value) == "K must be a real array of shape (k, d) = (1, 2); got None."
    with pytest.raises(metalqr.ValidationTypeError, match=r"\(1, 2\) or \(2, 1, 2\) .*got None"):
        metalqr.gradient(TS, None)
    with pytest.raises(metalqr.ValidationTypeError, match="^A must be a real numeric array; got None"):
        metalqr.dlyap(None, np.eye(2))


def test_masked_arrays_are_refused_not_silently_unmasked():
    # before: cost(T, KMASKED) used the masked entry 1e9 (the mask was dropped) and returned inf;
    # LQRTask(masked A) used the masked entries
    with pytest.raises(metalqr.ValidationTypeError,
                       match=r"^K is a numpy masked array \(1 masked entry\); metalqr does not honour masks.*"
                             r"K\.filled\(value\)"):
        metalqr.cost(T, KMASKED)
    with pytest.raises(metalqr.ValidationTypeError, match=r"^A is a numpy masked array \(0 masked entries\)"):
        metalqr.LQRTask(np.ma.masked_array(A_OK), B_OK, Q_OK, R_OK)
    # the plain data, passed explicitly, is accepted
    assert metalqr.cost(T, np.asarray(KMASKED)) == metalqr.cost(T, [[0.1, 1e9]])


def test_list_of_tasks_hints_taskset():
    # before: "task must be an LQRTask or a TaskSet; got list. Build one with metalqr.LQRTask(A, B, Q, R)."
    with pytest.raises(metalqr.ValidationTypeError,
                       match=r"got list\. For several tasks wrap them in metalqr\.TaskSet\(\[\.\.\.\]\) "
                             r"\(got a list of 2 LQRTasks\)"):
        metalqr.cost([T, T2], K)
    assert np.allclose(metalqr.cost(metalqr.TaskSet([T, T2]), K), [metalqr.cost(T, K), metalqr.cost(T2, K)])


@pytest.mark.parametrize("eps", [1e-12, 1e-9, 1e-7])
def test_spectral_radius_just_above_one_prints_its_digits(eps):
    # before: "spectral radius of A - B K is 1 >= 1" for rho = 1 + 1e-12
    rho = 1.0 + eps
    task = metalqr.LQRTask([[rho]], [[1.0]], [[1.0]], [[1.0]])
    for fn in (metalqr.gradient, metalqr.evaluate):
        with pytest.raises(metalqr.UnstablePolicyError) as info:
            fn(task, [[0.0]])
        assert f"spectral radius of A - B K is {rho!r} >= 1" in str(info.value)
        assert info.value.spectral_radius == rho
    with pytest.raises(metalqr.UnstablePolicyError, match=f"spectral radius {rho!r},"):
        metalqr.dlyap([[rho]], [[1.0]])
    with pytest.raises(metalqr.NotMAMLStabilizingError, match=f"spectral radius {rho!r}"):
        metalqr.maml_gradient(metalqr.TaskSet([task, task]), [[0.0]], 0.01)


def test_format_radius():
    from metalqr._validation import format_radius
    assert format_radius(1 + 1e-12) == "1.000000000001"
    assert format_radius(1.3) == "1.3" and format_radius(0.5) == "0.5"
    assert format_radius(float("inf")) == "inf"
    assert format_radius(1.0) == "1.0"
