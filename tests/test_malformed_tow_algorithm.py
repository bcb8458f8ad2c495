"""Malformed-input table for the arguments added by issue 17's Algorithm-1 work: the line
search and terminal cost of ``tow_weights`` / ``TOWProblem``, the preset and new options of
``run_experiment``, and the ``metalqr tow`` flags (one line, exit code 2, naming the flag)."""

import numpy as np
import pytest

from helpers import assert_named_error
from metalqr.tow import (MAML, MLP, SGD, DigitsTasks, HierarchicalClassificationTasks, ImageFolderTasks,
                         SinusoidTasks, TOWProblem, make_learner, run_experiment, tow_weights)

NET = MLP(hidden=4)
X = NET.init(0)
SIN = SinusoidTasks()
FO = MAML(NET)
BATCHES = [SIN.sample(3, 2) for _ in range(2)]
EXP = dict(n_iterations=1, T=1, M=2, n_test=2, n_val=2)
NAN = float("nan")
CLS = HierarchicalClassificationTasks(rng=0)
CFO = make_learner("fomaml", CLS, hidden=4)
DIGITS = DigitsTasks()            # 8 x 8 images; sizes only (scikit-learn is not needed until sampling)


def case(id_, fn, word, *args, **kwargs):
    return pytest.param(fn, word, args, kwargs, id=id_)


CASES = [
    # tow_weights: line_search, max_halvings, terminal_cost, constraint with the paper's rule
    case("tw-ls-unknown", tow_weights, "line_search", FO, X, BATCHES, alpha=0.1, line_search="tassa"),
    case("tw-ls-typo", tow_weights, "line_search", FO, X, BATCHES, alpha=0.1, line_search="papr"),
    case("tw-ls-none", tow_weights, "line_search", FO, X, BATCHES, alpha=0.1, line_search=None),
    case("tw-ls-int", tow_weights, "line_search", FO, X, BATCHES, alpha=0.1, line_search=1),
    case("tw-ls-boxqp", tow_weights, "constraint", FO, X, BATCHES, alpha=0.1, line_search="paper",
         constraint="boxqp"),
    case("tw-halvings-0", tow_weights, "max_halvings", FO, X, BATCHES, alpha=0.1, line_search="paper",
         max_halvings=0),
    case("tw-halvings-float", tow_weights, "max_halvings", FO, X, BATCHES, alpha=0.1, max_halvings=2.0),
    case("tw-halvings-big", tow_weights, "max_halvings", FO, X, BATCHES, alpha=0.1, max_halvings=61),
    case("tw-halvings-bool", tow_weights, "max_halvings", FO, X, BATCHES, alpha=0.1, max_halvings=True),
    case("tw-terminal-unknown", tow_weights, "terminal_cost", FO, X, BATCHES, alpha=0.1, terminal_cost="val"),
    case("tw-terminal-none", tow_weights, "terminal_cost", FO, X, BATCHES, alpha=0.1, terminal_cost=None),
    case("tw-terminal-bool", tow_weights, "terminal_cost", FO, X, BATCHES, alpha=0.1, terminal_cost=True),
    case("tw-terminal-float", tow_weights, "terminal_cost", FO, X, BATCHES, alpha=0.1, terminal_cost=0.0),
    # TOWProblem: terminal, and the terminal cost's state
    case("tp-terminal-unknown", TOWProblem, "terminal", FO, BATCHES, SGD(0.1), NET.size, terminal="loss"),
    case("tp-terminal-none", TOWProblem, "terminal", FO, BATCHES, SGD(0.1), NET.size, terminal=None),
    case("tp-terminal-int", TOWProblem, "terminal", FO, BATCHES, SGD(0.1), NET.size, terminal=1),
    case("tp-terminal-case", TOWProblem, "terminal", FO, BATCHES, SGD(0.1), NET.size, terminal="Validation"),
    case("tp-zT-len", TOWProblem(FO, BATCHES, SGD(0.1), NET.size, terminal="validation").terminal_cost, "zT",
         X[:-1]),
    case("tp-zT-nan", TOWProblem(FO, BATCHES, SGD(0.1), NET.size, terminal="validation").terminal_cost, "zT",
         np.full_like(X, NAN)),
    case("tp-zT-str", TOWProblem(FO, BATCHES, SGD(0.1), NET.size, terminal="validation").terminal_cost, "zT",
         "x"),
    case("tp-derivs-T-rows", TOWProblem(FO, BATCHES, SGD(0.1), NET.size, terminal="validation").derivatives, "Z",
         np.tile(X, (2, 1)), np.full((2, 2), 0.5)),
    # run_experiment: preset, line_search, terminal_cost, curve_smoothing
    case("re-preset-unknown", run_experiment, "preset", SIN, FO, **EXP, preset="icml"),
    case("re-preset-case", run_experiment, "preset", SIN, FO, **EXP, preset="Paper"),
    case("re-preset-int", run_experiment, "preset", SIN, FO, **EXP, preset=1),
    case("re-preset-true", run_experiment, "preset", SIN, FO, **EXP, preset=True),
    case("re-preset-bad-M", run_experiment, "M", CLS, CFO, n_iterations=1, n_test=2, n_val=2, preset="paper",
         M=0),
    case("re-preset-bad-alpha", run_experiment, "alpha", CLS, CFO, n_iterations=1, n_test=2, n_val=2,
         preset="paper", alpha=-1.0),
    # the paper preset on a regression source; TOW-only settings without the tow strategy
    case("re-preset-regression", run_experiment, "preset", SIN, FO, **EXP, preset="paper"),
    case("re-tow-only-terminal", run_experiment, "terminal_cost", SIN, FO, ["uniform"], **EXP,
         terminal_cost="validation"),
    case("re-tow-only-ls", run_experiment, "line_search", SIN, FO, ["exploration"], **EXP, line_search="paper"),
    case("re-tow-only-vm", run_experiment, "value_model", SIN, FO, ["uniform"], **EXP, value_model="full"),
    case("re-tow-only-nilqr", run_experiment, "n_ilqr", SIN, FO, ["uniform"], **EXP, n_ilqr=3),
    case("re-tow-only-beta", run_experiment, "beta_u", SIN, FO, ["exploitation"], **EXP, beta_u=1.0),
    case("re-ls", run_experiment, "line_search", SIN, FO, **EXP, line_search="armijo"),
    case("re-ls-int", run_experiment, "line_search", SIN, FO, **EXP, line_search=0),
    case("re-terminal", run_experiment, "terminal_cost", SIN, FO, **EXP, terminal_cost="test"),
    case("re-terminal-int", run_experiment, "terminal_cost", SIN, FO, **EXP, terminal_cost=1),
    case("re-smooth-0", run_experiment, "curve_smoothing", SIN, FO, **EXP, curve_smoothing=0.0),
    case("re-smooth-big", run_experiment, "curve_smoothing", SIN, FO, **EXP, curve_smoothing=2.0),
    case("re-smooth-nan", run_experiment, "curve_smoothing", SIN, FO, **EXP, curve_smoothing=NAN),
    case("re-smooth-str", run_experiment, "curve_smoothing", SIN, FO, **EXP, curve_smoothing="0.1"),
    # make_learner: net (and the ConvNet's channels)
    case("ml-net-unknown", make_learner, "net", "protonet", DIGITS, net="cnn"),
    case("ml-net-typo", make_learner, "net", "protonet", DIGITS, net="comv"),
    case("ml-net-case", make_learner, "net", "protonet", DIGITS, net="Conv"),
    case("ml-net-none", make_learner, "net", "protonet", DIGITS, net=None),
    case("ml-net-int", make_learner, "net", "protonet", DIGITS, net=1),
    case("ml-conv-sinusoid", make_learner, "net", "fomaml", SIN, net="conv"),
    case("ml-conv-vectors", make_learner, "net", "protonet", HierarchicalClassificationTasks(), net="conv"),
    case("ml-conv-1px", make_learner, "net", "protonet", ImageFolderTasks(".", size=1), net="conv"),
    case("ml-conv-maml", make_learner, "net", "maml", DIGITS, net="conv"),
    case("ml-channels-0", make_learner, "channels", "protonet", DIGITS, net="conv", channels=0),
    case("ml-channels-float", make_learner, "channels", "protonet", DIGITS, net="conv", channels=2.5),
    case("ml-channels-bool", make_learner, "channels", "protonet", DIGITS, net="conv", channels=True),
    case("ml-channels-str", make_learner, "channels", "protonet", DIGITS, net="conv", channels="8"),
]


@pytest.mark.parametrize("fn,word,args,kwargs", CASES)
def test_malformed_input_raises_named_metalqr_error(fn, word, args, kwargs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_named_error(fn, word, *args, **kwargs)


CLI_CASES = [
    (["--preset", "icml"], "--preset"), (["--preset"], "--preset"), (["--line-search", "armijo"], "--line-search"),
    (["--line-search"], "--line-search"), (["--terminal-cost", "loss"], "--terminal-cost"),
    (["--terminal-cost", "1"], "--terminal-cost"), (["--value-model", "dense"], "--value-model"),
    (["--value-model", ""], "--value-model"), (["--inner-steps", "0"], "--inner-steps"),
    (["--inner-steps", "2.5"], "--inner-steps"), (["--inner-steps", "-1"], "--inner-steps"),
    (["--inner-steps", "x"], "--inner-steps"), (["--curve-smoothing", "0"], "--curve-smoothing"),
    (["--curve-smoothing", "1.5"], "--curve-smoothing"), (["--curve-smoothing", "nan"], "--curve-smoothing"),
    (["--curve-smoothing", "x"], "--curve-smoothing"),
    (["--preset", "paper", "--M", "0"], "--M"), (["--preset", "paper", "--alpha", "-1"], "--alpha"),
    (["--preset", "paper", "--beta-u", "0"], "--beta-u"), (["--preset", "paper", "--n-test", "1"], "--n-test"),
    (["--net", "cnn"], "--net"), (["--net"], "--net"), (["--net", ""], "--net"), (["--net", "CONV"], "--net"),
    (["--net", "conv"], "--net"), (["--net", "conv", "--source", "classification"], "--net"),
    (["--net", "conv", "--source", "anyshot"], "--net"),
    (["--net", "conv", "--source", "digits", "--learner", "maml"], "--net"),
    (["--net", "conv", "--source", "digits", "--hidden", "8"], "--hidden"),
    (["--channels", "4"], "--channels"), (["--channels", "0"], "--channels"), (["--channels", "x"], "--channels"),
    (["--preset", "paper"], "--preset"), (["--preset", "paper", "--source", "sinusoid"], "--source sinusoid"),
    (["--strategies", "uniform", "--terminal-cost", "validation"], "--terminal-cost"),
    (["--strategies", "uniform", "--line-search", "paper"], "--line-search"),
    (["--strategies", "uniform", "--value-model", "full"], "--value-model"),
    (["--source", "classification", "--gamma", "0.5"], "--gamma"),
    (["--source", "anyshot", "--learner", "protonet", "--gamma", "0"], "--gamma"),
]


@pytest.mark.parametrize("argv,word", CLI_CASES)
def test_tow_command_rejects_bad_new_flags_with_one_line(argv, word, capsys, tmp_path):
    from metalqr.cli import main
    try:
        code = main(["tow", *argv, "--output", str(tmp_path / "never")])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert not (tmp_path / "never").exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and word in err


def test_inner_steps_with_protonet_is_refused(capsys, tmp_path):
    from metalqr.cli import main
    code = main(["tow", "--source", "classification", "--learner", "protonet", "--inner-steps", "5",
                 "--output", str(tmp_path / "never")])
    assert code == 2 and "--inner-steps" in capsys.readouterr().err


def test_table_size():
    assert len(CASES) + len(CLI_CASES) >= 50
