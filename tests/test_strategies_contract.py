"""Contract tests for the weighting-strategy interface (issue 16), parametrised over every
registered strategy, plus: bit-identity of run_experiment with the pre-registry training
loop, and a toy strategy registered and run through run_experiment and the CLI."""

import contextlib
import os

import numpy as np
import pytest

import metalqr
from metalqr import cli, tow
from metalqr.tow import (PerBatchStrategy, SGD, Adam, SinusoidTasks, WeightingStrategy, Window, WindowResult,
                         dirichlet_weights, get_strategy, make_learner, register_strategy, run_experiment,
                         strategies, tow_weights, unregister_strategy)

SRC = SinusoidTasks()
LEARNER = make_learner("fomaml", SRC, hidden=6, gamma=0.02)
T, M = 2, 3
SHORT = dict(n_iterations=2, T=T, M=M, alpha=0.01, n_test=4, n_val=3, rng=5, eval_every=1)
OPTIONS = dict(beta_u=10.0, mu_u=1.0 / M, kappa=1.2, n_ilqr=2, value_model="diagonal")


def _fallback_expected(name, opt):
    """TOW through Adam from its initial state: iLQR's Q_uu is indefinite at step 0 beyond any
    regularisation, so tow_weights keeps the uniform nominal weights and says so with a
    TOWFallbackWarning naming the stop reason (asserted here; SGD windows take steps)."""
    if name == "tow" and isinstance(opt, Adam):
        return pytest.warns(metalqr.TOWFallbackWarning,
                            match=r"stop reason regularization_limit: .*Q_uu not positive definite at step 0"
                                  r".*no backward pass completed\), so the weights are the uniform nominal")
    return contextlib.nullcontext()


def _window(opt, seed=0, rng_seed=1):
    rng = np.random.default_rng([seed, 0])
    batches = [SRC.sample(rng, M) for _ in range(T)]
    x0 = LEARNER.init(seed)
    return Window(LEARNER, opt.initial_state(x0), x0.size, batches, opt, 0, np.random.default_rng(rng_seed),
                  OPTIONS)


# --- the contract, for every registered strategy ----------------------------------------------

@pytest.mark.parametrize("name", strategies())
@pytest.mark.parametrize("opt", [SGD(0.01), Adam(1e-3)], ids=["sgd", "adam"])
def test_weights_are_a_probability_vector_per_mini_batch(name, opt):
    s = get_strategy(name)
    assert isinstance(s, WeightingStrategy) and s.name == name and s.description
    w = _window(opt)
    with _fallback_expected(name, opt):
        out = s.window(w)
    assert isinstance(out, WindowResult)
    U = np.asarray(out.U)
    assert U.shape == (T, M)
    assert np.all(np.isfinite(U)) and np.all(U >= 0.0)
    if s.normalised:                  # a probability vector per mini-batch
        np.testing.assert_allclose(U.sum(axis=1), 1.0, rtol=0, atol=1e-9)
    else:                             # TOW: u >= 0 only, prior mean 1/M (Eq. (7)): rows near, not at, 1
        assert np.all(U.sum(axis=1) > 0.0)
    z = np.asarray(out.z)
    assert z.shape == w.z.shape and np.all(np.isfinite(z))
    assert not np.array_equal(z, w.z)              # the window trained the learner


@pytest.mark.parametrize("name", strategies())
def test_deterministic_for_a_fixed_rng(name):
    with _fallback_expected(name, Adam(1e-3)):
        a = get_strategy(name).window(_window(Adam(1e-3), rng_seed=7))
    with _fallback_expected(name, Adam(1e-3)):
        b = get_strategy(name).window(_window(Adam(1e-3), rng_seed=7))
    assert np.array_equal(a.U, b.U) and np.array_equal(a.z, b.z)


@pytest.mark.parametrize("name", strategies())
def test_run_experiment_records_its_weights(name):
    r, = run_experiment(SRC, LEARNER, [name], **SHORT)
    assert r.name == name and r.weights.shape == (SHORT["n_iterations"], T, M)
    assert np.all(r.weights >= 0.0)
    if get_strategy(name).normalised:
        np.testing.assert_allclose(r.weights.sum(axis=2), 1.0, rtol=0, atol=1e-9)
    again, = run_experiment(SRC, LEARNER, [name], **SHORT)
    assert np.array_equal(r.weights, again.weights) and np.array_equal(r.params, again.params)


def test_bad_names_list_the_registered_ones():
    for fn in (lambda: run_experiment(SRC, LEARNER, ["unifrom"], **SHORT), lambda: get_strategy("unifrom")):
        with pytest.raises(metalqr.ValidationError) as info:
            fn()
        assert all(n in str(info.value) for n in strategies())
    with pytest.raises(metalqr.ValidationError, match="Did you mean 'uniform'"):
        get_strategy("unifrom")


def test_cli_choices_are_the_registry(capsys):
    with pytest.raises(SystemExit):
        cli.main(["tow", "--help"])
    out = capsys.readouterr().out
    for n in strategies():
        assert n in out and get_strategy(n).description.split(":")[0] in " ".join(out.split())
    assert cli.main(["tow", "--strategies", "nope", "--quick"]) == 2
    err = capsys.readouterr().err
    assert all(n in err for n in strategies())


# --- bit-identity with the training loop before the registry (name branches) ---------------------

def _reference(name, opt_name, **kw):
    """The pre-registry loop of run_experiment (commit dc74bed), reimplemented: window k draws
    T mini-batches from default_rng([seed, k]); baselines weight and step per mini-batch;
    TOW follows tow_weights' trajectory. Returns (params, weights)."""
    opt = tow.make_optimizer(opt_name, kw["alpha"])
    z = opt.initial_state(LEARNER.init(kw["rng"]))
    D = LEARNER.net.size
    Us = []
    for k in range(kw["n_iterations"]):
        rng = np.random.default_rng([kw["rng"], k])
        batches = [SRC.sample(rng, M) for _ in range(T)]
        if name == "tow":
            res = tow_weights(LEARNER, z, batches, optimizer=opt, tau0=k * T, beta_u=10.0, n_ilqr=2,
                              value_model="diagonal")
            z, U = res.X[-1], res.U
        else:
            U = np.empty((T, M))
            for t, batch in enumerate(batches):
                losses, G, _ = LEARNER.batch(z[:D], batch)
                U[t] = np.full(M, 1.0 / M) if name == "uniform" else dirichlet_weights(losses, 1.2, name)
                z = opt.step(z, G @ U[t], k * T + t + 1)
        Us.append(U)
    return z[:D], np.array(Us)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_builtins_are_bit_identical_to_the_pre_registry_loop(opt_name):
    names = ("uniform", "exploration", "exploitation", "tow")
    kw = dict(SHORT, n_iterations=3)
    results = run_experiment(SRC, LEARNER, names, optimizer=opt_name, **kw)
    for r in results:
        params, U = _reference(r.name, opt_name, **kw)
        assert np.array_equal(r.params, params), r.name
        assert np.array_equal(r.weights, U), r.name
        assert np.array_equal(r.metric, LEARNER.evaluate(params, SRC.sample(
            np.random.default_rng([kw["rng"], 10**6]), kw["n_test"], train=False))), r.name
    # the strategies really differ (the comparison above could not pass by accident)
    assert len({r.params.tobytes() for r in results}) == len(names)


# --- a toy strategy: one class, one registry call ----------------------------------------------------

class RandomDirichlet(PerBatchStrategy):
    """Weights drawn from Dir(1, ..., 1) with the window's rng (uses the rng, ignores losses)."""
    name = "toy-random"
    description = "toy: weights drawn from a flat Dirichlet"

    def weights(self, losses, w):
        return w.rng.dirichlet(np.ones(w.M))


@pytest.fixture
def toy():
    s = register_strategy(RandomDirichlet())
    try:
        yield s
    finally:
        unregister_strategy(s.name)
    assert s.name not in strategies()


def test_toy_strategy_runs_through_run_experiment(toy):
    assert strategies()[-1] == toy.name
    out = run_experiment(SRC, LEARNER, ["uniform", toy.name], **SHORT)
    r = out[1]
    assert r.name == toy.name and r.weights.shape == (SHORT["n_iterations"], T, M)
    np.testing.assert_allclose(r.weights.sum(axis=2), 1.0, atol=1e-12)
    assert not np.allclose(r.weights, 1.0 / M)                      # really its own weights
    assert np.array_equal(out[0].weights, np.full_like(out[0].weights, 1.0 / M))
    # reproducible, and independent of which other strategies run
    alone, = run_experiment(SRC, LEARNER, [toy.name], **SHORT)
    assert np.array_equal(alone.weights, r.weights)
    # default: every registered strategy, the toy included
    assert [x.name for x in run_experiment(SRC, LEARNER, None, **dict(SHORT, n_iterations=1))] == list(strategies())


def test_toy_strategy_runs_through_the_cli(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["tow", "--source", "sinusoid", "--strategies", "uniform", toy.name, "--iterations", "2", "--T", "2",
            "--M", "3", "--n-test", "4", "--n-val", "3", "--hidden", "5", "--no-progress", "--output", "out"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert toy.name in out
    assert os.path.exists(os.path.join("out", f"tow_sinusoid_weights_{toy.name}.png"))


def test_registry_refuses_malformed_strategies(toy):
    with pytest.raises(metalqr.ValidationError, match="already registered"):
        register_strategy(RandomDirichlet())
    with pytest.raises(metalqr.ValidationTypeError, match="instance"):
        register_strategy(RandomDirichlet)

    class Spaced(RandomDirichlet):
        name = "has space"
    with pytest.raises(metalqr.ValidationError, match="strategy.name"):
        register_strategy(Spaced())
    assert register_strategy(RandomDirichlet(), replace=True).name == toy.name


def test_wrong_weight_shape_is_refused(toy, monkeypatch):
    monkeypatch.setattr(RandomDirichlet, "weights", lambda self, losses, w: np.ones(w.M + 1) / (w.M + 1))
    with pytest.raises(ValueError):
        run_experiment(SRC, LEARNER, [toy.name], **SHORT)

    class Bad(WeightingStrategy):
        name = "toy-bad"

        def window(self, w):
            return WindowResult(w.z, np.full((w.T + 1, w.M), 1.0 / w.M))
    register_strategy(Bad())
    try:
        with pytest.raises(metalqr.ValidationError, match="toy-bad.*shape"):
            run_experiment(SRC, LEARNER, ["toy-bad"], **SHORT)
    finally:
        unregister_strategy("toy-bad")


# --- optimisers are checked by what they carry, not by their type -------------------------------------

class WrappedSGD:
    """Not an SGD subclass: an optimiser known only by its methods."""

    def __init__(self, alpha):
        self._sgd = SGD(alpha)

    def __getattr__(self, attr):
        return getattr(self._sgd, attr)


def test_tow_weights_accepts_any_optimiser_with_state_size_and_linearize():
    w = _window(SGD(0.01))
    a = tow_weights(LEARNER, w.z, w.batches, optimizer=SGD(0.01))
    b = tow_weights(LEARNER, w.z, w.batches, optimizer=WrappedSGD(0.01))
    assert np.array_equal(a.U, b.U) and np.array_equal(a.X, b.X)

    class NoLinearize:
        state_size = initial_state = step = staticmethod(lambda *a: None)
    with pytest.raises(metalqr.ValidationTypeError, match="optimizer.*linearize"):
        tow_weights(LEARNER, w.z, w.batches, optimizer=NoLinearize())
