"""Batched, checked DARE solver behind ``optimal_gain`` (issue 15; issue 13 C).

References are independent of metalqr's solver: SciPy's ``solve_discrete_are``,
python-control's ``dlqr`` and Newton's method run in extended precision (``np.longdouble``,
Kronecker-form Lyapunov solves by Gaussian elimination written here). Benchmark cases are the
examples of Benner, Laub and Mehrmann's DAREX collection (SPC 95_23, 1995) with a positive
definite R (the same matrices as SciPy's own test-suite), plus cases near the unit circle and
badly scaled versions ``x' = diag(s, 1/s, ...) x`` with s up to 1e6.
"""

from __future__ import annotations

import control
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st

import metalqr
from helpers import random_task, rel
from metalqr.lqr import riccati
from metalqr.lqr.riccati import check_dare_solution, riccati_residual, solve_dare_checked

EPS = np.finfo(float).eps
LD = np.longdouble
HAVE_LD = np.finfo(LD).eps < 1e-18


# --- benchmark cases ---------------------------------------------------------------------

def _darex() -> dict:
    C = {}
    C["gh2251"] = ([[0.63399379, 0.54906824, 0.76253406], [0.5404729, 0.53745766, 0.08731853],
                    [0.27524045, 0.84922129, 0.4681622]], [[0.96861695], [0.05532739], [0.78934047]],
                   np.eye(3), [[1.0]])
    C["darex1"] = ([[4.0, 3], [-4.5, -3.5]], [[1.0], [-1]], [[9.0, 6], [6, 4]], [[1.0]])
    C["darex2"] = ([[0.9512, 0], [0, 0.9048]], [[4.877, 4.877], [-1.1895, 3.569]],
                   [[0.005, 0], [0, 0.02]], [[1 / 3, 0], [0, 3]])
    C["darex5"] = ([[0.0, 1], [0, 0]], [[0.0], [1]], [[1.0, 2], [2, 4]], [[1.0]])
    C["darex6"] = ([[0.998, 0.067, 0, 0], [-.067, 0.998, 0, 0], [0, 0, 0.998, 0.153],
                    [0, 0, -.153, 0.998]],
                   [[0.0033, 0.0200], [0.1000, -.0007], [0.0400, 0.0073], [-.0028, 0.1000]],
                   [[1.87, 0, 0, -0.244], [0, 0.744, 0.205, 0], [0, 0.205, 0.589, 0],
                    [-0.244, 0, 0, 1.048]], np.eye(2))
    C["darex7"] = ([[0.984750, -.079903, 0.0009054, -.0010765],
                    [0.041588, 0.998990, -.0358550, 0.0126840],
                    [-.546620, 0.044916, -.3299100, 0.1931800],
                    [2.662400, -.100450, -.9245500, -.2632500]],
                   [[0.0037112, 0.0007361], [-.0870510, 9.3411e-6], [-1.198440, -4.1378e-4],
                    [-3.192700, 9.2535e-4]], np.eye(4) * 1e-2, np.eye(2))
    C["darex8"] = ([[-0.6, -2.2, -3.6, -5.400018], [1.0, 0.6, 0.8, 3.399982],
                    [0.0, 1.0, 1.8, 3.799982], [0.0, 0.0, 0.0, -0.999982]],
                   [[1.0, -1.0, -1.0, -1.0], [0.0, 1.0, -1.0, -1.0], [0.0, 0.0, 1.0, -1.0],
                    [0.0, 0.0, 0.0, 1.0]],
                   [[2.0, 1, 3, 6], [1, 2, 2, 5], [3, 2, 6, 11], [6, 5, 11, 22]], np.eye(4))
    C["darex9"] = (np.array([[95.4070, 1.9643, 0.3597, 0.0673, 0.0190],
                             [40.8490, 41.3170, 16.0840, 4.4679, 1.1971],
                             [12.2170, 26.3260, 36.1490, 15.9300, 12.3830],
                             [4.1118, 12.8580, 27.2090, 21.4420, 40.9760],
                             [0.1305, 0.5808, 1.8750, 3.6162, 94.2800]]) * 0.01,
                   np.array([[0.0434, -0.0122], [2.6606, -1.0453], [3.7530, -5.5100],
                             [3.6076, -6.6000], [0.4617, -0.9148]]) * 0.01, np.eye(5), np.eye(2))
    C["darex10"] = (np.kron(np.eye(2), np.diag([1.0, 1], k=1)),
                    np.kron(np.eye(2), np.array([[0.0], [0], [1]])),
                    [[1.0, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0],
                     [0, 0, 0, 1, -1, 0], [0, 0, 0, -1, 1, 0], [0, 0, 0, 0, 0, 0]],
                    [[3.0, 0], [0, 1]])
    C["darex11"] = (0.001 * np.array(
        [[870.1, 135.0, 11.59, .5014, -37.22, .3484, 0, 4.242, 7.249],
         [76.55, 897.4, 12.72, 0.5504, -40.16, .3743, 0, 4.53, 7.499],
         [-127.2, 357.5, 817, 1.455, -102.8, .987, 0, 11.85, 18.72],
         [-363.5, 633.9, 74.91, 796.6, -273.5, 2.653, 0, 31.72, 48.82],
         [-960, 1645.9, -128.9, -5.597, 71.42, 7.108, 0, 84.52, 125.9],
         [-664.4, 112.96, -88.89, -3.854, 84.47, 13.6, 0, 144.3, 101.6],
         [-410.2, 693, -54.71, -2.371, 66.49, 12.49, .1063, 99.97, 69.67],
         [-179.9, 301.7, -23.93, -1.035, 60.59, 22.16, 0, 213.9, 35.54],
         [-345.1, 580.4, -45.96, -1.989, 105.6, 19.86, 0, 219.1, 215.2]]),
        0.001 * np.array([[4.7600, -0.5701, -83.6800], [0.8790, -4.7730, -2.7300],
                          [1.4820, -13.1200, 8.8760], [3.8920, -35.1300, 24.8000],
                          [10.3400, -92.7500, 66.8000], [7.2030, -61.5900, 38.3400],
                          [4.4540, -36.8300, 20.2900], [1.9710, -15.5400, 6.9370],
                          [3.7730, -30.2800, 14.6900]]),
        np.diag([50.0, 0, 0, 0, 50, 0, 0, 0, 0]), np.eye(3))
    C["darex12"] = ([[0.0, 1e6], [0, 0]], [[0.0], [1]], np.eye(2), [[1.0]])
    C["darex13"] = (np.array([[16.0, 10, -2], [10, 13, -8], [-2, -8, 7]]) / 9, np.eye(3),
                    1e6 * np.eye(3), 1e6 * np.eye(3))
    C["darex14"] = ([[1 - 1e-8, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]],
                    [[1e-8], [0], [0], [0]], np.diag([0.0, 0, 0, 1]), [[0.25]])
    return {k: tuple(np.asarray(m, dtype=float) for m in v) for k, v in C.items()}


DAREX = _darex()


def _scaled(case, s):
    """The case in coordinates x' = S x, S = diag(s, 1/s, s, ...); returns it and S."""
    A, B, Q, R = case
    S = np.array([s if i % 2 == 0 else 1 / s for i in range(A.shape[0])])
    return (S[:, None] * A / S[None, :], S[:, None] * B, Q / S[:, None] / S[None, :], R), S


def _near_unit_circle() -> dict:
    C = {}
    for delta in (1e-4, 1e-7, -1e-7, -1e-4):
        th = 0.3
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        C[f"rotation|lambda|=1{delta:+g}"] = ((1 + delta) * rot, np.array([[1.0], [0.0]]),
                                             np.eye(2), np.array([[1.0]]))
    C["double_integrator_tiny_B"] = (np.array([[1.0, 1.0], [0.0, 1.0]]), np.array([[0.0], [1e-4]]),
                                     np.eye(2), np.array([[1.0]]))
    C["integrator_chain_Q_last"] = (np.eye(3) + np.eye(3, k=1), np.array([[0.0], [0.0], [1.0]]),
                                    np.diag([1.0, 0.0, 0.0]), np.array([[1e-3]]))
    return C


NEAR = _near_unit_circle()


# --- extended-precision reference (Newton / Kleinman-Hewer in long double) --------------

def _solve_ld(M, b):
    M, b = np.array(M, dtype=LD), np.array(b, dtype=LD).reshape(len(M), -1)
    n = M.shape[0]
    for j in range(n):
        p = j + int(np.argmax(np.abs(M[j:, j])))
        M[[j, p]], b[[j, p]] = M[[p, j]], b[[p, j]]
        f = M[j + 1:, j] / M[j, j]
        M[j + 1:, j:] -= f[:, None] * M[j, j:][None, :]
        b[j + 1:] -= f[:, None] * b[j][None, :]
    x = np.zeros_like(b)
    for j in range(n - 1, -1, -1):
        x[j] = (b[j] - M[j, j + 1:] @ x[j + 1:]) / M[j, j]
    return x


def dare_reference(A, B, Q, R, iterations=5):
    """(P, K) by Newton's method in long double from SciPy's solution."""
    P0 = scipy.linalg.solve_discrete_are(A, B, Q, R)
    A, B, Q, R, P = (np.array(X, dtype=LD) for X in (A, B, Q, R, P0))
    d = A.shape[0]
    for _ in range(iterations):
        K = _solve_ld(R + B.T @ P @ B, B.T @ P @ A)
        AK = A - B @ K
        P = _solve_ld(np.eye(d * d, dtype=LD) - np.kron(AK.T, AK.T),
                      (Q + K.T @ R @ K).reshape(-1)).reshape(d, d)
        P = (P + P.T) / 2
    K = _solve_ld(R + B.T @ P @ B, B.T @ P @ A)
    return P.astype(float), K.astype(float)


def _err(X, ref):
    X, ref = np.asarray(X, float), np.asarray(ref, float)
    return float(np.linalg.norm(X - ref) / max(np.linalg.norm(ref), 1e-300))


def _close(X, ref, tol):
    """||X - ref|| <= tol max(||ref||, 1): relative, or absolute when the reference is ~0
    (an optimal gain can be exactly zero, e.g. DAREX 12 and 15)."""
    return float(np.linalg.norm(np.asarray(X) - ref)) <= tol * max(float(np.linalg.norm(ref)), 1.0)


def _scipy_gain(A, B, Q, R):
    P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    return np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A), P


# --- accuracy -------------------------------------------------------------------------------

@pytest.mark.skipif(not HAVE_LD, reason="long double is not extended precision here")
@pytest.mark.parametrize("name", list(DAREX))
@pytest.mark.parametrize("s", [1.0, 1e3, 1e6])
def test_never_less_accurate_than_scipy_on_darex(name, s):
    """Errors of P and K against an extended-precision Newton reference, measured in the
    original coordinates (so a badly scaled version is judged by its true accuracy): metalqr is
    within a small factor of SciPy's error or at rounding level, and passes its own checks."""
    case = DAREX[name]
    P_ref, K_ref = dare_reference(*case)
    (A, B, Q, R), S = _scaled(case, s)
    sol = solve_dare_checked(metalqr.LQRTask(A, B, Q, R))
    K, P = sol.K[0], sol.P[0]
    K_s, P_s = _scipy_gain(A, B, Q, R)
    unscale_P = S[:, None] * S[None, :]
    e_P, e_Ps = _err(P * unscale_P, P_ref), _err(P_s * unscale_P, P_ref)
    assert e_P <= max(4 * e_Ps, 1e-14), (name, s, e_P, e_Ps)
    if np.linalg.norm(K_ref) > 0:
        e_K, e_Ks = _err(K * S[None, :], K_ref), _err(K_s * S[None, :], K_ref)
        assert e_K <= max(4 * e_Ks, 1e-14), (name, s, e_K, e_Ks)
    else:
        assert np.linalg.norm(K * S[None, :]) <= 1e-14 * max(1.0, np.linalg.norm(P_ref))
    assert sol.residual[0] <= 1e-14 and sol.identity_error[0] <= 1e-8


@pytest.mark.parametrize("name", list(DAREX))
def test_darex_residual_and_gain_vs_scipy_and_dlqr(name):
    A, B, Q, R = DAREX[name]
    task = metalqr.LQRTask(A, B, Q, R)
    K, P = metalqr.optimal_gain(task)
    P_s = scipy.linalg.solve_discrete_are(A, B, Q, R)
    assert riccati_residual(task, P) <= max(2 * riccati_residual(task, P_s), 4 * EPS)
    K_c, P_c, _ = control.dlqr(A, B, Q, R)
    tol = 1e-7 if name == "darex14" else 1e-10   # darex14: dlqr's own error is 1.8e-8
    assert _close(K, K_c, tol) and rel(P, P_c) <= tol
    assert np.max(np.abs(np.linalg.eigvals(A - B @ K))) < 1


def test_darex15_in_a_taskset():
    """DAREX 15 (shift matrix; d = 40 instead of 100 to keep the suite fast) together with a
    modified copy of itself."""
    A, B, Q, R = np.eye(40, k=1), np.flipud(np.eye(40, 1)), np.eye(40), np.array([[1.0]])
    ts = metalqr.TaskSet([metalqr.LQRTask(A, B, Q, R), metalqr.LQRTask(0.5 * A, B, 2 * Q, R)])
    K, P = metalqr.optimal_gain(ts)
    for i, t in enumerate(ts):
        K_c, P_c, _ = control.dlqr(t.A, t.B, t.Q, t.R)
        assert _close(K[i], K_c, 1e-10) and rel(P[i], P_c) < 1e-10
        P_s = scipy.linalg.solve_discrete_are(t.A, t.B, t.Q, t.R)
        assert riccati_residual(t, P[i]) <= max(2 * riccati_residual(t, P_s), 4 * EPS)


@pytest.mark.parametrize("name", list(NEAR))
def test_near_unit_circle(name):
    A, B, Q, R = NEAR[name]
    task = metalqr.LQRTask(A, B, Q, R)
    sol = solve_dare_checked(task)
    K_c, P_c, _ = control.dlqr(A, B, Q, R)
    P_s = scipy.linalg.solve_discrete_are(A, B, Q, R)
    assert sol.residual[0] <= max(2 * riccati_residual(task, P_s), 1e-14)
    assert _close(sol.K[0], K_c, 1e-7) and rel(sol.P[0], P_c) < 1e-7
    if HAVE_LD:
        P_ref, K_ref = dare_reference(A, B, Q, R)
        assert _err(sol.P[0], P_ref) <= max(4 * _err(P_s, P_ref), 1e-14)
    assert metalqr.spectral_radius(task, sol.K[0]) < 1


@pytest.mark.parametrize("s", [1e2, 1e4, 1e6])
def test_scaled_coordinates_give_the_same_gain(rng, s):
    """x' = S x: K' = K S^-1 and P' = S^-1 P S^-1 to near rounding, for a TaskSet of random
    tasks (issue 13 D's scaling, applied to the Riccati solver)."""
    tasks = [random_task(rng, 4, 2) for _ in range(6)]
    K, P = metalqr.optimal_gain(metalqr.TaskSet(tasks))
    S = np.array([s, 1 / s, s, 1 / s])
    scaled = metalqr.TaskSet([metalqr.LQRTask(S[:, None] * t.A / S[None, :], S[:, None] * t.B,
                                              t.Q / S[:, None] / S[None, :], t.R) for t in tasks])
    K2, P2 = metalqr.optimal_gain(scaled)
    for i in range(len(tasks)):
        assert rel(K2[i] * S[None, :], K[i]) < 1e-12
        assert rel(P2[i] * S[:, None] * S[None, :], P[i]) < 1e-12


def test_batched_equals_single_and_scipy(rng):
    tasks = [random_task(rng, 3, 2) for _ in range(7)]
    K, P = metalqr.optimal_gain(metalqr.TaskSet(tasks))
    assert K.shape == (7, 2, 3) and P.shape == (7, 3, 3)
    for i, t in enumerate(tasks):
        K1, P1 = metalqr.optimal_gain(t)
        assert K1.shape == (2, 3) and P1.shape == (3, 3)
        assert rel(K1, K[i]) < 1e-13 and rel(P1, P[i]) < 1e-13
        K_s, P_s = _scipy_gain(t.A, t.B, t.Q, t.R)
        assert rel(K[i], K_s) < 1e-10 and rel(P[i], P_s) < 1e-10
        assert np.array_equal(P[i], P[i].T)


def test_identity_cost_of_optimal_gain_equals_trace(rng):
    """J(K*) from metalqr.cost (Lyapunov) equals Tr(P* Psi) (Proposition 1), and P* = P_{K*}."""
    ts = metalqr.TaskSet([random_task(rng, 5, 2) for _ in range(5)])
    K, P = metalqr.optimal_gain(ts)
    J = metalqr.cost(ts, K)
    assert np.allclose(J, np.einsum("nij,nji->n", P, ts.Psi), rtol=1e-11, atol=0)
    ev = metalqr.evaluate(ts, K)
    assert np.all(np.linalg.norm(ev.P - P, axis=(1, 2)) <= 1e-11 * np.linalg.norm(P, axis=(1, 2)))
    assert np.all(np.linalg.eigvalsh(P)[:, 0] > 0)


@pytest.mark.skipif(not HAVE_LD, reason="long double is not extended precision here")
def test_regression_newton_in_correction_form_keeps_accuracy():
    """An ill-conditioned random task (||P|| ~ 7e5) from the benchmark: Newton in the direct
    form P <- P_K lowered the residual 10x but raised the error of P from 2e-11 to 1e-8, the
    identity check then refused it and SciPy's less accurate answer (1e-9) was returned.
    In correction form (P <- P + X, X = A_K' X A_K + Res) the refined answer is kept."""
    A = np.array([[0.134587, 0.535259], [0.418533, -0.854426]])
    B = np.array([[0.987264], [0.349906]])
    Q = np.array([[1.068092, -0.149965], [-0.149965, 0.889451]])
    R = np.array([[1.54698]])
    P_ref, K_ref = dare_reference(A, B, Q, R)
    sol = solve_dare_checked(metalqr.LQRTask(A, B, Q, R))
    K_s, P_s = _scipy_gain(A, B, Q, R)
    assert sol.method[0] != "scipy"
    assert _err(sol.P[0], P_ref) <= min(1e-10, 4 * _err(P_s, P_ref))
    assert _err(sol.K[0], K_ref) <= max(4 * _err(K_s, K_ref), 1e-14)


# --- hard and impossible tasks -------------------------------------------------------------

def test_undetectable_unstable_mode_Q_zero():
    """A = 2, Q = 0: the doubling iterate stays at the non-stabilising P = 0, the checks reject
    it and SciPy's answer P = 3, K = 1.5 (A - BK = 0.5) is checked and returned."""
    task = metalqr.LQRTask([[2.0]], [[1.0]], [[0.0]], [[1.0]])
    sol = solve_dare_checked(task)
    assert sol.method[0] == "scipy"
    assert sol.P[0, 0, 0] == pytest.approx(3.0, rel=1e-13)
    assert sol.K[0, 0, 0] == pytest.approx(1.5, rel=1e-13)
    ts = metalqr.TaskSet([metalqr.LQRTask([[0.5]], [[1.0]], [[1.0]], [[1.0]]), task])
    K, P = metalqr.optimal_gain(ts)
    assert K[1, 0, 0] == pytest.approx(1.5, rel=1e-13)
    # scalar check of task 0: P = 1 + 0.25 P - 0.25 P^2/(1 + P)
    p = P[0, 0, 0]
    assert p == pytest.approx(1 + 0.25 * p - 0.25 * p * p / (1 + p), rel=1e-14)


def test_issue13_repeated_eigenvalue_not_stabilisable_names_task_0():
    """Issue 13 B input: A = 2I, B = [1, 1]' is not stabilisable (w = [1, -1] is a left
    eigenvector with w'B = 0), next to a stable task."""
    bad = metalqr.LQRTask(2 * np.eye(2), [[1.0], [1.0]], np.eye(2), [[1.0]])
    good = metalqr.LQRTask(0.5 * np.eye(2), [[1.0], [0.0]], np.eye(2), [[1.0]])
    with pytest.raises(metalqr.ValidationError, match=r"task 0.*not stabilisable") as info:
        metalqr.optimal_gain(metalqr.TaskSet([bad, good]))
    assert "task 1" not in str(info.value)
    with pytest.raises(metalqr.ValidationError, match=r"task 1.*not stabilisable"):
        metalqr.optimal_gain(metalqr.TaskSet([good, bad]))


def test_defective_unstable_block_not_stabilisable():
    A = np.array([[1.5, 1.0, 0.0], [0.0, 1.5, 0.0], [0.0, 0.0, 0.2]])
    B = np.array([[0.0], [0.0], [1.0]])
    with pytest.raises(metalqr.ValidationError, match="not stabilisable"):
        metalqr.optimal_gain(metalqr.LQRTask(A, B, np.eye(3), [[1.0]]))


def test_uncontrollable_mode_on_unit_circle_not_stabilisable():
    task = metalqr.LQRTask(np.diag([1.0, 0.5]), [[0.0], [1.0]], np.eye(2), [[1.0]])
    with pytest.raises(metalqr.ValidationError, match=r"not stabilisable.*\|lambda\| = 1"):
        metalqr.optimal_gain(task)


def test_unobservable_mode_on_unit_circle_has_no_stabilising_solution():
    """lambda = 1 controllable but not seen by Q: no stabilising solution exists."""
    task = metalqr.LQRTask(np.diag([1.0, 0.5]), [[1.0], [1.0]], np.diag([0.0, 1.0]), [[1.0]])
    with pytest.raises(metalqr.ValidationError, match="unit circle"):
        metalqr.optimal_gain(task)


def test_sda_failure_falls_back_to_checked_scipy(monkeypatch, rng):
    ts = metalqr.TaskSet([random_task(rng, 3, 1) for _ in range(4)])
    K0, P0 = metalqr.optimal_gain(ts)

    def broken_sda(A, G, H, **kw):
        n = A.shape[0]
        return np.zeros_like(H), np.zeros(n, dtype=bool), np.full(n, 60)

    monkeypatch.setattr(riccati, "sda", broken_sda)
    sol = solve_dare_checked(ts)
    assert list(sol.method) == ["scipy"] * 4
    assert rel(sol.K, K0) < 1e-10 and rel(sol.P, P0) < 1e-10


def test_wrong_answers_are_refused_with_task_index(monkeypatch, rng):
    """Neither a wrong doubling answer nor a wrong SciPy answer is accepted unchecked."""
    ts = metalqr.TaskSet([random_task(rng, 3, 1) for _ in range(3)])
    real_sda = riccati.sda

    def wrong_on_task_2(A, G, H, **kw):
        out, conv, its = real_sda(A, G, H, **kw)
        if A.shape[0] == 3:
            out = out.copy()
            out[2] *= 1.0 + 1e-6
        return out, conv, its

    monkeypatch.setattr(riccati, "sda", wrong_on_task_2)
    monkeypatch.setattr(riccati, "REFINE_TOL", np.inf)          # no Newton repair
    sol = solve_dare_checked(ts)
    assert list(sol.method) == ["sda", "sda", "scipy"]
    monkeypatch.setattr(riccati.scipy.linalg, "solve_discrete_are",
                        lambda A, B, Q, R: 1.01 * np.eye(A.shape[0]))
    with pytest.raises(metalqr.ValidationError, match=r"task 2.*residual") as info:
        metalqr.optimal_gain(ts)
    assert "SciPy" in str(info.value)


def test_newton_refinement_repairs_a_perturbed_solution(monkeypatch, rng):
    task = random_task(rng, 4, 2)
    K0, P0 = metalqr.optimal_gain(task)
    real_sda = riccati.sda
    monkeypatch.setattr(riccati, "sda", lambda A, G, H, **kw: (lambda o: (o[0] * (1 + 1e-5),) + o[1:])(
        real_sda(A, G, H, **kw)))
    sol = solve_dare_checked(task)
    assert sol.method[0] == "sda+newton"
    assert rel(sol.P[0], P0) < 1e-12 and sol.residual[0] < 1e-14


# --- the checks themselves can fail ---------------------------------------------------------

def test_check_dare_solution_detects_each_fault():
    task = metalqr.boeing747()
    K, P = metalqr.optimal_gain(task)
    good = check_dare_solution(task, P)
    assert good.ok[0] and good.why == [""] and good.residual[0] < 1e-14
    assert rel(good.K[0], K) < 1e-14
    bad = check_dare_solution(task, P * (1 + 1e-7))
    assert not bad.ok[0] and "residual" in bad.why[0]
    neg = check_dare_solution(task, -P)
    assert not neg.ok[0]
    zero = check_dare_solution(metalqr.LQRTask([[2.0]], [[1.0]], [[0.0]], [[1.0]]), [[0.0]])
    assert not zero.ok[0] and "stabilise" in zero.why[0] and zero.rho[0] == pytest.approx(2.0)


def test_identity_check_uses_psi(rng):
    """A P that is right except in its trace against Psi fails the identity check: take the
    true P and add a small symmetric term; with RESIDUAL_TOL relaxed only the identity
    check (and the residual figure) can notice."""
    task = random_task(rng, 3, 1)
    _, P = metalqr.optimal_gain(task)
    c = check_dare_solution(task, P + 1e-6 * np.linalg.norm(P) * np.eye(3))
    assert not c.ok[0] and c.identity_error[0] > 1e-8


def test_identity_check_catches_a_faulty_lyapunov_solve(monkeypatch, rng):
    """Tr(P Psi) - J(K) = Tr(Res Sigma_K): a gap the residual cannot explain (here a
    Lyapunov solve 1e-7 off) is refused, and optimal_gain then names the task."""
    ts = metalqr.TaskSet([random_task(rng, 3, 1) for _ in range(3)])
    _, P = metalqr.optimal_gain(ts)
    assert np.all(check_dare_solution(ts, P).ok)
    real = riccati._closed_loop_covariance
    monkeypatch.setattr(riccati, "_closed_loop_covariance",
                        lambda AK, Psi: (lambda st, S: (st, S * (1 + 1e-7)))(*real(AK, Psi)))
    c = check_dare_solution(ts, P)
    assert not np.any(c.ok) and all("Lyapunov cost" in w for w in c.why)
    assert np.allclose(c.identity_error, 1e-7, rtol=1e-3)
    with pytest.raises(metalqr.ValidationError, match=r"task 0.*Lyapunov cost"):
        metalqr.optimal_gain(ts)


# --- property test ---------------------------------------------------------------------------

@given(st.integers(1, 6), st.integers(1, 3), st.integers(0, 2**31 - 1), st.floats(0.1, 1.6))
def test_property_gains_agree_with_scipy(d, k, seed, rho):
    rng = np.random.default_rng(seed)
    tasks = [random_task(rng, d, k, rho=rho) for _ in range(3)]
    sol = solve_dare_checked(metalqr.TaskSet(tasks))
    for i, t in enumerate(tasks):
        K_s, P_s = _scipy_gain(t.A, t.B, t.Q, t.R)
        assert _close(sol.K[i], K_s, 1e-9) and rel(sol.P[i], P_s) < 1e-9
        assert sol.residual[i] <= max(2 * riccati_residual(t, P_s), 1e-14)
        assert metalqr.spectral_radius(t, sol.K[i]) < 1


@pytest.mark.parametrize("A, Q", [
    (np.diag([1.0, 0.5, 0.3]), np.diag([0.0, 1.0, 1.0])),
    (np.block([[np.array([[0.0, 1.0], [-1.0, 0.0]]), np.zeros((2, 2))],
               [np.zeros((2, 2)), np.diag([0.5, 0.2])]]), np.diag([0.0, 0.0, 1.0, 1.0])),
])
def test_unobservable_unit_circle_mode_is_refused_not_returned(A, Q):
    # Found by a new user: Q blind to a mode of A on the unit circle, B = ones. SciPy's DARE
    # answer passed every check (the Lyapunov test found A - BK* "stable": ||Sigma|| 3e17)
    # and optimal_gain returned a K* that is_stabilizing() rejects (eigenvalue exactly 1).
    d = A.shape[0]
    task = metalqr.LQRTask(A, np.ones((d, 1)), Q, np.eye(1))
    with pytest.raises(metalqr.ValidationError, match="unobservable mode on the unit circle"):
        metalqr.optimal_gain(task)


@pytest.mark.parametrize("q", [1e-6, 1e-12])
def test_weakly_observed_unit_mode_still_has_its_stabilising_solution(q):
    # the same task with the mode seen by Q, however weakly: a stabilising solution exists
    # (rho(A - BK*) = 1 - O(sqrt(q))) and must be returned, checked against SciPy
    import scipy.linalg
    A, B, Q, R = np.diag([1.0, 0.5, 0.3]), np.ones((3, 1)), np.diag([q, 1.0, 1.0]), np.eye(1)
    task = metalqr.LQRTask(A, B, Q, R)
    K, P = metalqr.optimal_gain(task)
    assert metalqr.is_stabilizing(task, K)
    P_s = scipy.linalg.solve_discrete_are(A, B, Q, R)
    assert np.linalg.norm(P - P_s) <= 1e-6 * np.linalg.norm(P_s)


@pytest.mark.parametrize("s", [1e170, 1e-200, 1e300])
def test_optimal_gain_is_invariant_to_scaling_q_and_r_together(s):
    # Found by a new user: Q and R both scaled by 1e170 (or 1e-200) failed with "no checked
    # stabilising solution" although K* does not change and P* scales by s. Right values:
    # the unscaled task's K* and s times its P*.
    t = metalqr.sample_tasks(1, 4, 2, rng=0)[0]
    K0, P0 = metalqr.optimal_gain(t)
    K, P = metalqr.optimal_gain(metalqr.LQRTask(t.A, t.B, s * t.Q, s * t.R, Psi=t.Psi))
    assert np.abs(K - K0).max() <= 1e-12 * np.abs(K0).max()
    assert np.abs(P / s - P0).max() <= 1e-12 * np.abs(P0).max()


def test_optimal_value_matrix_that_overflows_is_a_named_error():
    # K* exists, but P* ~ 1e308 x ||P*(Q/c, R/c)|| does not fit in float64
    t = metalqr.LQRTask(np.array([[0.999]]), np.array([[0.01]]), np.eye(1), np.eye(1))
    P0 = metalqr.optimal_gain(t)[1]                  # about 1 / (1 - 0.999^2) = 500
    s = 2.0 ** np.floor(np.log2(0.25 * np.finfo(float).max / max(np.abs(t.Q).max(), np.abs(t.R).max())))
    assert np.abs(P0).max() > np.finfo(float).max / s       # so s P* overflows
    big = metalqr.LQRTask(t.A, t.B, s * t.Q, s * t.R, Psi=t.Psi)
    with pytest.raises(metalqr.ValidationError, match="overflows float64.*scale Q and R down"):
        metalqr.optimal_gain(big)
