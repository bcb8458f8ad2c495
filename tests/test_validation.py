"""Malformed input: each case raises a metalqr error (a ValueError) naming the argument."""

import numpy as np
import pytest

import metalqr

I2 = np.eye(2)
A2 = 0.5 * I2
B2 = np.array([[1.0], [0.5]])
R1 = np.array([[1.0]])
OK = dict(A=A2, B=B2, Q=I2, R=R1)


def _task(**kw):
    args = dict(OK)
    args.update(kw)
    return metalqr.LQRTask(**args)


TASK_CASES = [
    ("A not square", dict(A=np.ones((2, 3))), "A"),
    ("A NaN", dict(A=np.array([[np.nan, 0], [0, 0.5]])), "A"),
    ("A string", dict(A="abc"), "A"),
    ("A 3-D", dict(A=np.ones((2, 2, 2))), "A"),
    ("B wrong rows", dict(B=np.ones((3, 1))), "B"),
    ("B inf", dict(B=np.array([[np.inf], [0.0]])), "B"),
    ("B row vector", dict(B=np.array([1.0, 0.5])), "B"),
    ("Q wrong shape", dict(Q=np.eye(3)), "Q"),
    ("Q non-symmetric", dict(Q=np.array([[1.0, 0.5], [0.0, 1.0]])), "Q"),
    ("Q indefinite", dict(Q=np.diag([1.0, -1.0])), "Q"),
    ("R zero (not PD)", dict(R=np.zeros((1, 1))), "R"),
    ("R wrong shape", dict(R=np.eye(2)), "R"),
    ("R non-symmetric", dict(B=np.ones((2, 2)), R=np.array([[1.0, 1.0], [0.0, 1.0]])), "R"),
    ("Psi indefinite", dict(Psi=np.diag([1.0, -0.1])), "Psi"),
    ("Psi wrong shape", dict(Psi=np.eye(3)), "Psi"),
    ("Sigma0 NaN", dict(Sigma0=np.full((2, 2), np.nan)), "Sigma0"),
]


@pytest.mark.parametrize("label, kw, word", TASK_CASES, ids=[c[0] for c in TASK_CASES])
def test_task_validation(label, kw, word):
    with pytest.raises(metalqr.ValidationError, match=rf"\b{word}\b") as info:
        _task(**kw)
    assert isinstance(info.value, ValueError)


def test_taskset_errors():
    t1 = _task()
    t2 = metalqr.LQRTask(A2, np.ones((2, 2)), I2, I2)
    with pytest.raises(metalqr.ValidationError, match=r"tasks\[1\].*\(2, 2\)"):
        metalqr.TaskSet([t1, t2])
    with pytest.raises(metalqr.ValidationError, match="tasks"):
        metalqr.TaskSet([])
    with pytest.raises(metalqr.ValidationError, match=r"tasks\[0\]"):
        metalqr.TaskSet([np.eye(2)])


GAIN_CASES = [
    ("K wrong shape", np.zeros((2, 2)), "K"),
    ("K transposed", np.zeros((2, 1)), "transposed"),
    ("K NaN", np.array([[np.nan, 0.0]]), "K"),
    ("K not numeric", "x", "K"),
]


@pytest.mark.parametrize("label, K, word", GAIN_CASES, ids=[c[0] for c in GAIN_CASES])
@pytest.mark.parametrize("fn", [metalqr.cost, metalqr.gradient, metalqr.spectral_radius,
                                metalqr.hessian, metalqr.natural_gradient])
def test_gain_validation(fn, label, K, word):
    with pytest.raises(metalqr.ValidationError, match=word):
        fn(_task(), K)


def test_other_argument_errors():
    task = _task()
    with pytest.raises(metalqr.ValidationError, match=r"\bX\b"):
        metalqr.hessian_vp(task, np.zeros((1, 2)), np.zeros((2, 2)))
    with pytest.raises(metalqr.ValidationError, match="task"):
        metalqr.cost("not a task", np.zeros((1, 2)))
    with pytest.raises(metalqr.ValidationError, match="method"):
        metalqr.policy_optimization(task, np.zeros((1, 2)), method="newton")
    with pytest.raises(metalqr.ValidationError, match="eta"):
        metalqr.policy_optimization(task, np.zeros((1, 2)), eta=-1.0)
    with pytest.raises(metalqr.ValidationError, match="max_iterations"):
        metalqr.policy_optimization(task, np.zeros((1, 2)), max_iterations=2.5)
    with pytest.raises(metalqr.UnstablePolicyError, match="eta"):
        metalqr.policy_optimization(task, np.zeros((1, 2)), eta=1e3, max_iterations=5)


def test_from_statespace():
    import control
    sysd = control.ss(A2, B2, np.eye(2), np.zeros((2, 1)), 0.1)
    task = metalqr.LQRTask.from_statespace(sysd, I2, R1)
    assert task.d == 2 and task.k == 1 and np.array_equal(task.A, A2)
    with pytest.raises(metalqr.ValidationError, match="sys.*continuous"):
        metalqr.LQRTask.from_statespace(control.ss(A2, B2, np.eye(2), np.zeros((2, 1))), I2, R1)
    with pytest.raises(metalqr.ValidationError, match="sys"):
        metalqr.LQRTask.from_statespace(A2, I2, R1)


def test_task_is_immutable_and_indexable():
    task = _task()
    with pytest.raises(ValueError):
        task.A[0, 0] = 3.0
    with pytest.raises(AttributeError):
        task.A = np.eye(2)
    ts = metalqr.TaskSet([task, _task(Q=2 * I2), _task(Q=3 * I2)])
    assert len(ts) == 3 and ts[1] == _task(Q=2 * I2) and len(ts[1:]) == 2 and len(ts[[0, 2]]) == 2
    assert [t.Q[0, 0] for t in ts] == [1.0, 2.0, 3.0]
    with pytest.raises(IndexError):
        ts[3]


def test_optimal_gain_unstabilisable():
    # Unstable mode 2.0 not reachable from B.
    task = metalqr.LQRTask(np.diag([0.5, 2.0]), np.array([[1.0], [0.0]]), I2, R1)
    with pytest.raises(metalqr.ValidationError, match="stabilisable"):
        metalqr.optimal_gain(task)


def test_statespace_passed_as_task_points_to_from_statespace():
    control = pytest.importorskip("control")
    sys = control.ss(0.9 * np.eye(2), np.ones((2, 1)), np.eye(2), 0, 1)
    with pytest.raises(metalqr.ValidationTypeError, match=r"LQRTask\.from_statespace"):
        metalqr.optimal_gain(sys)
    task = metalqr.LQRTask.from_statespace(sys, np.eye(2), np.eye(1))
    K, _ = metalqr.optimal_gain(task)
    K_ctrl, _, _ = control.dlqr(sys.A, sys.B, np.eye(2), np.eye(1))
    np.testing.assert_allclose(K, K_ctrl, rtol=1e-9, atol=1e-12)


def test_tow_plots_do_not_switch_the_users_matplotlib_backend(tmp_path):
    """Library plotting draws on its own Agg canvas; matplotlib.use is never called."""
    import subprocess
    import sys
    code = ("import matplotlib; matplotlib.use('pdf'); import metalqr.tow as tow;"
            "src = tow.SinusoidTasks(); lrn = tow.make_learner('maml', src);"
            "res = tow.run_experiment(src, lrn, ['uniform'], n_iterations=1, n_test=5, n_val=5);"
            f"tow.plot_curves(res, {str(tmp_path / 'c.png')!r}); tow.plot_weights(res[0], {str(tmp_path / 'w.png')!r});"
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "pdf"
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "w.png").stat().st_size > 0


def test_unwritable_checkpoint_path_is_a_checkpoint_error(tmp_path):
    """A checkpoint that cannot be written gives one CheckpointError naming the path,
    not a FileNotFoundError on an internal temporary name."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    bad = str(blocker / "sub" / "ck.ckpt")              # a folder below a regular file
    ts = metalqr.perturb_tasks(metalqr.double_integrator(), 2, rng=0)
    K0 = metalqr.common_stabilizing_gain(ts)
    with pytest.raises(metalqr.CheckpointError, match=r"ck\.ckpt"):
        metalqr.meta_policy_optimization(ts, K0, alpha=1e-3, eta=1e-4, n_iterations=2,
                                         checkpoint=bad, checkpoint_every=1, progress=False)


def test_gradient_check_at_an_optimum_is_not_a_false_alarm():
    """At K* the gradient is ~0 while J is ~30: the finite difference's own rounding
    (eps |J| / h) must be allowed for; a 1% wrong gradient away from K* is still caught."""
    mt = pytest.importorskip("metalqr.testing")
    task = metalqr.boeing747()
    K, _ = metalqr.optimal_gain(task)
    f = lambda G: metalqr.cost(task, G)          # noqa: E731
    g = lambda G: metalqr.gradient(task, G)      # noqa: E731
    mt.assert_gradient_matches_fd(f, g, K)
    with pytest.raises(AssertionError, match="gradient mismatch"):
        mt.assert_gradient_matches_fd(f, lambda G: 1.01 * g(G), K + 1e-2)


def test_study_size_store_and_nan_bound_are_refused(tmp_path):
    experiments = pytest.importorskip("metalqr.experiments")
    mt = pytest.importorskip("metalqr.testing")
    with pytest.raises(metalqr.ValidationError, match="seeds"):
        experiments.Study.grid(base={}, grid={}, seeds=10**12)
    with pytest.raises(metalqr.ValidationError, match="runs"):
        experiments.Study.grid(base={}, grid={"alpha": [1e-3] * 1000, "eta": [1e-4] * 1000},
                               seeds=2)
    with pytest.raises(metalqr.ValidationError, match="does not exist"):
        experiments.summary_table(str(tmp_path / "no-such-store"))
    with pytest.raises(metalqr.ValidationError, match="NaN"):
        mt.check_bound(lambda t: float("nan"), lambda t: 1.0, mt.lqr_tasks(), max_examples=5)


@pytest.mark.parametrize("bad, exc", [
    (-1, metalqr.ValidationError), (1.5, metalqr.ValidationTypeError),
    ("0", metalqr.ValidationTypeError), (True, metalqr.ValidationTypeError),
    ([1, 2], metalqr.ValidationTypeError), (np.float64(3.0), metalqr.ValidationTypeError),
])
def test_as_seed_malformed(bad, exc):
    from helpers import assert_named_error
    from metalqr._validation import as_seed
    assert_named_error(as_seed, "rng", bad, "rng", exc=exc)


def test_as_seed_keeps_an_int_and_draws_once_from_a_generator():
    from metalqr._validation import as_seed
    assert as_seed(7, "rng") == 7 and as_seed(np.int64(7), "rng") == 7
    assert as_seed(None, "rng", allow_none=True) is None
    assert isinstance(as_seed(None, "rng"), int)
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    s = as_seed(g1, "rng")
    assert s == as_seed(g2, "rng") and 0 <= s < 2**63 and g1.integers(10**9) == g2.integers(10**9)


def test_policy_evaluation_hessian_needs_its_input_matrix():
    from helpers import assert_named_error
    task = metalqr.double_integrator()
    ev = metalqr.evaluate(task, metalqr.optimal_gain(task)[0])
    bare = metalqr.PolicyEvaluation(ev.K, ev.AK, ev.P, ev.Sigma, ev.E, ev.RBPB, ev.Psi)
    assert_named_error(bare.hessian_vp, "B", np.zeros_like(ev.K))


# --- new-user report: ragged lists, huge ints, object arrays (property tests) ---------------
from hypothesis import given as _given, strategies as _st  # noqa: E402

from metalqr._validation import as_float_array as _as_float_array  # noqa: E402

_reals = _st.one_of(_st.floats(-1e300, 1e300, allow_nan=False), _st.integers(-10 ** 300, 10 ** 300))


@_given(_st.lists(_st.lists(_reals, min_size=1, max_size=4), min_size=2, max_size=4))
def test_nested_lists_are_converted_or_refused_as_ragged(rows):
    """A nested list of reals gives the float64 array (same as its object-dtype array) when
    rectangular, and a ValidationError naming the argument and "ragged" otherwise."""
    if len({len(r) for r in rows}) == 1:
        arr = _as_float_array(rows, "M")
        assert arr.dtype == np.float64 and arr.shape == (len(rows), len(rows[0]))
        assert np.array_equal(arr, _as_float_array(np.array(rows, dtype=object), "M"))
        assert np.array_equal(arr, np.array([[float(x) for x in r] for r in rows]))
    else:
        with pytest.raises(metalqr.ValidationError, match=r"M must be a rectangular.*ragged"):
            _as_float_array(rows, "M")


@_given(_st.integers(2, 4), _st.sampled_from([None, "0.1", b"1", True, 1j, [1.0]]))
def test_object_array_with_one_non_number_is_refused(n, bad):
    """One non-real entry anywhere in an object array is refused with a type error naming it."""
    arr = np.full((n, n), 0.5, dtype=object)
    arr[n - 1, 0] = bad
    with pytest.raises(metalqr.ValidationTypeError, match=r"^M must be a real numeric array"):
        _as_float_array(arr, "M")
