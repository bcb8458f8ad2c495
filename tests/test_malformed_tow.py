"""Malformed-input table for every public name of :mod:`metalqr.tow` (issue 12).

Each row calls one public function, class or method with one malformed argument and asserts
that a metalqr error (ValueError / TypeError) is raised whose message names the argument.
"""

import numpy as np
import pytest

import metalqr
from helpers import assert_named_error
from metalqr import tow
from metalqr.tow import (MAML, MLP, SGD, Adam, AnyShotTasks, DigitsTasks, HierarchicalClassificationTasks,
                         ImageFolderTasks, ProtoNet, SinusoidTasks, StrategyResult, Task, TOWProblem, TOWResult,
                         dirichlet_weights, make_learner, make_optimizer, plot_curves, plot_weights, run_experiment,
                         run_sinusoid_experiment, save_results, tow_weights, register_strategy, get_strategy,
                         unregister_strategy)
from metalqr.tow.mlp import output_loss, softmax

RNG = np.random.default_rng(0)
NET = MLP(hidden=4)
X = NET.init(0)
SIN = SinusoidTasks()
TASKS = SIN.sample(1, 3)
TASK = TASKS[0]
CLS = HierarchicalClassificationTasks(dim=4, n_way=3)
CTASKS = CLS.sample(2, 2)
PNET = MLP(4, 4, 3, "mse")
PN = ProtoNet(PNET)
PX = PN.init(0)
CNET = MLP(4, 4, 3, "ce")
FO = MAML(NET)
BATCHES = [SIN.sample(3, 2) for _ in range(2)]
PROB = TOWProblem(FO, BATCHES, SGD(0.1), NET.size, mu=0.5)
S2, Y2 = np.ones((3, 1)), np.ones((3, 1))
RES = StrategyResult("uniform", np.array([1.0, 2.0]), 1.0, weights=np.full((2, 1, 2), 0.5),
                     groups=np.ones((2, 1, 2)), curve=[(1, 1.0, 0.1)])
EXP = dict(n_iterations=1, T=1, M=2, n_test=2, n_val=2)
NAN = float("nan")


def case(label, fn, word, *args, **kwargs):
    return pytest.param(fn, word, args, kwargs, id=label)


CASES = [
    # dirichlet_weights
    case("dw-nan", dirichlet_weights, "losses", [NAN, 1.0], 1.2, "exploration"),
    case("dw-inf", dirichlet_weights, "losses", [np.inf, 1.0], 1.2, "exploration"),
    case("dw-empty", dirichlet_weights, "losses", [], 1.2, "exploration"),
    case("dw-2d", dirichlet_weights, "losses", [[1.0, 2.0]], 1.2, "exploration"),
    case("dw-complex", dirichlet_weights, "losses", [1j, 2.0], 1.2, "exploration"),
    case("dw-str", dirichlet_weights, "losses", "1,2", 1.2, "exploration"),
    case("dw-bool", dirichlet_weights, "losses", [True, False], 1.2, "exploration"),
    case("dw-kappa1", dirichlet_weights, "kappa", [1.0, 2.0], 1.0, "exploration"),
    case("dw-kappa-small", dirichlet_weights, "kappa", [1.0, 2.0], 0.2, "exploitation"),
    case("dw-kappa-nan", dirichlet_weights, "kappa", [1.0, 2.0], NAN, "exploitation"),
    case("dw-kappa-str", dirichlet_weights, "kappa", [1.0, 2.0], "1.2", "exploitation"),
    case("dw-kappa-bool", dirichlet_weights, "kappa", [1.0, 2.0], True, "exploitation"),
    case("dw-mode", dirichlet_weights, "mode", [1.0, 2.0], 1.2, "explore"),
    case("dw-mode-none", dirichlet_weights, "mode", [1.0, 2.0], 1.2, None),
    case("dw-mode-int", dirichlet_weights, "mode", [1.0, 2.0], 1.2, 1),
    # Task
    case("task-s-1d", Task, "s", np.ones(3), Y2, S2, Y2),
    case("task-s-empty", Task, "s", np.ones((0, 1)), np.ones((0, 1)), S2, Y2),
    case("task-s-nan", Task, "s", np.full((3, 1), NAN), Y2, S2, Y2),
    case("task-s-complex", Task, "s", S2 * 1j, Y2, S2, Y2),
    case("task-sq-width", Task, "sq", S2, Y2, np.ones((3, 2)), np.ones((3, 1))),
    case("task-sq-empty", Task, "sq", S2, Y2, np.ones((0, 1)), np.ones((0, 1))),
    case("task-y-rows", Task, "y", S2, np.ones((2, 1)), S2, Y2),
    case("task-y-float1d", Task, "y", S2, np.ones(3), S2, Y2),
    case("task-y-neg", Task, "y", S2, np.array([0, -1, 1]), S2, np.array([0, 1, 1])),
    case("task-yq-kind", Task, "yq", S2, np.array([0, 1, 1]), S2, Y2),
    case("task-y-nan", Task, "y", S2, np.full((3, 1), NAN), S2, Y2),
    case("task-group-nan", Task, "group", S2, Y2, S2, Y2, NAN),
    case("task-group-str", Task, "group", S2, Y2, S2, Y2, "a"),
    # SinusoidTasks
    case("sin-kshot-neg", SinusoidTasks, "k_shot", k_shot=-2),
    case("sin-kshot-0", SinusoidTasks, "k_shot", k_shot=0),
    case("sin-kshot-float", SinusoidTasks, "k_shot", k_shot=1.5),
    case("sin-kshot-bool", SinusoidTasks, "k_shot", k_shot=True),
    case("sin-kquery-0", SinusoidTasks, "k_query", k_query=0),
    case("sin-split-0", SinusoidTasks, "split", split=0.0),
    case("sin-split-6", SinusoidTasks, "split", split=6.0),
    case("sin-split-nan", SinusoidTasks, "split", split=NAN),
    case("sin-rare-neg", SinusoidTasks, "rare_fraction", rare_fraction=-0.1),
    case("sin-rare-big", SinusoidTasks, "rare_fraction", rare_fraction=1.5),
    case("sin-sample-n0", SIN.sample, "n", 0, 0),
    case("sin-sample-nneg", SIN.sample, "n", 0, -1),
    case("sin-sample-nfloat", SIN.sample, "n", 0, 2.5),
    case("sin-sample-rng-str", SIN.sample, "rng", "x", 2),
    case("sin-sample-rng-neg", SIN.sample, "rng", -1, 2),
    case("sin-sample-train", SIN.sample, "train", 0, 2, "yes"),
    case("sin-sample-huge", SIN.sample, "n", 0, 10**12),
    # HierarchicalClassificationTasks
    case("hc-nway-1", HierarchicalClassificationTasks, "n_way", n_way=1),
    case("hc-nway-str", HierarchicalClassificationTasks, "n_way", n_way="5"),
    case("hc-nway-big", HierarchicalClassificationTasks, "n_way", n_way=10),
    case("hc-kshot", HierarchicalClassificationTasks, "k_shot", k_shot=0),
    case("hc-kquery", HierarchicalClassificationTasks, "k_query", k_query=-1),
    case("hc-alphabets", HierarchicalClassificationTasks, "n_alphabets", n_alphabets=0),
    case("hc-chars", HierarchicalClassificationTasks, "n_chars", n_chars=1),
    case("hc-dim", HierarchicalClassificationTasks, "dim", dim=0),
    case("hc-latent", HierarchicalClassificationTasks, "latent", latent=0),
    case("hc-within", HierarchicalClassificationTasks, "within", within=-1.0),
    case("hc-noise", HierarchicalClassificationTasks, "noise_level", noise_level=NAN),
    case("hc-imbalance-0", HierarchicalClassificationTasks, "imbalance", imbalance=0.0),
    case("hc-imbalance-neg", HierarchicalClassificationTasks, "imbalance", imbalance=-0.5),
    case("hc-imbalance-overflow", HierarchicalClassificationTasks, "imbalance", imbalance=1e5, n_alphabets=200),
    case("hc-train-0", HierarchicalClassificationTasks, "train_fraction", train_fraction=0.0),
    case("hc-train-1", HierarchicalClassificationTasks, "train_fraction", train_fraction=1.0),
    case("hc-seed", HierarchicalClassificationTasks, "rng", rng=-1),
    case("hc-size", HierarchicalClassificationTasks, "alphabets", n_alphabets=10**6, dim=10**4),
    case("hc-sample-n", CLS.sample, "n", 0, 0),
    case("hc-sample-rng", CLS.sample, "rng", 1.5, 2),
    case("hc-sample-train", CLS.sample, "train", 0, 2, 1),
    # AnyShotTasks
    case("any-maxshot-0", AnyShotTasks, "max_shot", max_shot=0),
    case("any-maxshot-neg", AnyShotTasks, "max_shot", max_shot=-3),
    case("any-maxshot-float", AnyShotTasks, "max_shot", max_shot=2.5),
    case("any-maxshot-bool", AnyShotTasks, "max_shot", max_shot=True),
    case("any-nway", AnyShotTasks, "n_way", n_way=0),
    case("any-sample-n", AnyShotTasks().sample, "n", 0, -2),
    # DigitsTasks
    case("dig-nway-1", DigitsTasks, "n_way", n_way=1),
    case("dig-nway-big", DigitsTasks, "n_way", n_way=5),
    case("dig-kshot", DigitsTasks, "k_shot", k_shot=0),
    case("dig-kquery", DigitsTasks, "k_query", k_query=0),
    case("dig-classes-dup", DigitsTasks, "train_classes", train_classes=(0, 0, 1, 2)),
    case("dig-classes-range", DigitsTasks, "train_classes", train_classes=(0, 1, 10)),
    case("dig-classes-str", DigitsTasks, "train_classes", train_classes="0123"),
    case("dig-classes-float", DigitsTasks, "train_classes", train_classes=(1.5, 2, 3)),
    case("dig-sample-n", DigitsTasks().sample, "n", 0, 0),
    # ImageFolderTasks
    case("img-root-int", ImageFolderTasks, "root", 5),
    case("img-root-empty", ImageFolderTasks, "root", ""),
    case("img-root-none", ImageFolderTasks, "root", None),
    case("img-root-bytes", ImageFolderTasks, "root", b"data"),
    case("img-nway", ImageFolderTasks, "n_way", "data", n_way=1),
    case("img-kshot", ImageFolderTasks, "k_shot", "data", k_shot=0),
    case("img-size-0", ImageFolderTasks, "size", "data", size=0),
    case("img-size-huge", ImageFolderTasks, "size", "data", size=5000),
    case("img-split-empty", ImageFolderTasks, "train_split", "data", train_split=""),
    case("img-split-path", ImageFolderTasks, "test_split", "data", test_split="a/b"),
    case("img-classes-split", ImageFolderTasks("data").classes, "split", ""),
    case("img-missing-folder", ImageFolderTasks("/nonexistent-metalqr").classes, "folder", "train"),
    case("img-sample-n", ImageFolderTasks("data").sample, "n", 0, 0),
    # MLP
    case("mlp-nin", MLP, "n_in", n_in=0),
    case("mlp-hidden", MLP, "hidden", hidden=-1),
    case("mlp-hidden-float", MLP, "hidden", hidden=1.5),
    case("mlp-nout", MLP, "n_out", n_out=0),
    case("mlp-loss", MLP, "loss", loss="mae"),
    case("mlp-ce-1class", MLP, "n_out", loss="ce", n_out=1),
    case("mlp-huge", MLP, "hidden", hidden=10**6),
    case("mlp-init-rng", NET.init, "rng", "seed"),
    case("mlp-init-rng-neg", NET.init, "rng", -3),
    case("mlp-predict-xlen", NET.predict, "x", X[:-1], S2),
    case("mlp-predict-xnan", NET.predict, "x", np.full_like(X, NAN), S2),
    case("mlp-predict-swidth", NET.predict, "s", X, np.ones((3, 2))),
    case("mlp-predict-s1d", NET.predict, "s", X, np.ones(3)),
    case("mlp-predict-sempty", NET.predict, "s", X, np.ones((0, 1))),
    case("mlp-grad-yshape", NET.loss_and_grad, "y", X, S2, np.ones((2, 1))),
    case("mlp-grad-ynan", NET.loss_and_grad, "y", X, S2, np.full((3, 1), NAN)),
    case("mlp-grad-xcomplex", NET.loss_and_grad, "x", X * 1j, S2, Y2),
    case("mlp-ce-float-labels", MLP(1, 4, 3, "ce").loss_and_grad, "y", MLP(1, 4, 3, "ce").init(0), S2, np.ones(3)),
    case("mlp-ce-label-range", MLP(1, 4, 3, "ce").loss_and_grad, "y", MLP(1, 4, 3, "ce").init(0), S2,
         np.array([0, 1, 3])),
    case("mlp-hvp-v", NET.hvp, "v", X, S2, Y2, X[:3]),
    case("mlp-hvp-vnan", NET.hvp, "v", X, S2, Y2, np.full_like(X, NAN)),
    case("mlp-vjp-dout", NET.vjp, "dout", X, S2, np.ones((2, 1))),
    case("mlp-vjp-dout-1d", NET.vjp, "dout", X, S2, np.ones(3)),
    case("mlp-gn-s", NET.gauss_newton_diagonal, "s", X, np.full((3, 1), NAN)),
    case("mlp-gn-x", NET.gauss_newton_diagonal, "x", X[:2], S2),
    case("mlp-unpack-x", NET.unpack, "x", X[:-2]),
    # softmax / output_loss
    case("softmax-str", softmax, "z", "abc"),
    case("softmax-nan", softmax, "z", [NAN, 1.0]),
    case("softmax-scalar", softmax, "z", 1.0),
    case("softmax-empty", softmax, "z", []),
    case("softmax-complex", softmax, "z", [1j, 1.0]),
    case("oloss-loss", output_loss, "loss", np.ones((2, 2)), np.ones((2, 2)), "l1"),
    case("oloss-out-1d", output_loss, "out", np.ones(2), np.ones((2, 2)), "mse"),
    case("oloss-y-shape", output_loss, "y", np.ones((2, 2)), np.ones((3, 2)), "mse"),
    case("oloss-ce-range", output_loss, "y", np.ones((2, 2)), np.array([0, 2]), "ce"),
    case("oloss-ce-float", output_loss, "y", np.ones((2, 2)), np.array([0.0, 1.0]), "ce"),
    # MAML
    case("maml-net-str", MAML, "net", "mlp"),
    case("maml-net-none", MAML, "net", None),
    case("maml-gamma-neg", MAML, "gamma", NET, gamma=-0.1),
    case("maml-gamma-nan", MAML, "gamma", NET, gamma=NAN),
    case("maml-inner-0", MAML, "inner_steps", NET, inner_steps=0),
    case("maml-inner-float", MAML, "inner_steps", NET, inner_steps=1.5),
    case("maml-first-order-int", MAML, "first_order", NET, first_order=1),
    case("maml-first-order-str", MAML, "first_order", NET, first_order="yes"),
    case("maml-batch-x", FO.batch, "x", X[:-1], TASKS),
    case("maml-batch-xnan", FO.batch, "x", np.full_like(X, NAN), TASKS),
    case("maml-batch-tasks-str", FO.batch, "tasks", X, "tasks"),
    case("maml-batch-tasks-empty", FO.batch, "tasks", X, []),
    case("maml-batch-tasks-single", FO.batch, "tasks", X, TASK),
    case("maml-batch-tasks-item", FO.batch, "tasks", X, [TASK, 3]),
    case("maml-batch-width", FO.batch, "tasks", X, CTASKS),
    case("maml-batch-curv", FO.batch, "curvature", X, TASKS, "yes"),
    case("maml-curv-tasks", FO.curvature, "tasks", X, None),
    case("maml-eval-x", FO.evaluate, "x", "x", TASKS),
    case("maml-tlg-task", FO.task_loss_and_grad, "task", X, "task"),
    case("maml-adapt-traj", FO.adapt, "trajectory", X, TASK, 1),
    case("maml-ce-regression-task", MAML(CNET).batch, "tasks", CNET.init(0),
         [Task(np.ones((2, 4)), np.ones((2, 3)), np.ones((2, 4)), np.ones((2, 3)))]),
    case("maml-ce-label-range", MAML(MLP(4, 4, 2, "ce")).batch, "tasks", MLP(4, 4, 2, "ce").init(0), CTASKS),
    case("maml-init-rng", FO.init, "rng", "abc"),
    case("maml-pos-gamma", MAML, "gamma", NET, "0.1"),
    case("maml-pos-inner", MAML, "inner_steps", NET, 0.01, 0),
    # ProtoNet
    case("pn-net", ProtoNet, "net", "net"),
    case("pn-method", ProtoNet, "curvature_method", PNET, "hutchinson"),
    case("pn-mc-0", ProtoNet, "mc_samples", PNET, "mc", 0),
    case("pn-mc-float", ProtoNet, "mc_samples", PNET, "mc", 1.5),
    case("pn-batch-regression", PN.batch, "tasks", PX,
         [Task(np.ones((2, 4)), np.ones((2, 1)), np.ones((2, 4)), np.ones((2, 1)))]),
    case("pn-batch-missing-class", PN.batch, "tasks", PX,
         [Task(np.ones((2, 4)), np.array([1, 1]), np.ones((2, 4)), np.array([0, 1]))]),
    case("pn-curv-x", PN.curvature, "x", PX[:4], CTASKS),
    case("pn-curv-huge", PN.curvature, "curvature_method", PX,
         HierarchicalClassificationTasks(n_way=50, k_query=100, n_chars=200, dim=4).sample(0, 1)),
    case("pn-curv-huge-mc", ProtoNet(PNET, "mc", 10**4).curvature, "mc_samples", PX,
         HierarchicalClassificationTasks(n_way=50, k_query=100, n_chars=200, dim=4).sample(0, 1)),
    case("pn-eval-tasks", PN.evaluate, "tasks", PX, [1, 2]),
    # SGD / Adam / make_optimizer
    case("sgd-alpha-0", SGD, "alpha", 0.0),
    case("sgd-alpha-neg", SGD, "alpha", -1.0),
    case("sgd-alpha-nan", SGD, "alpha", NAN),
    case("sgd-alpha-str", SGD, "alpha", "0.1"),
    case("sgd-alpha-bool", SGD, "alpha", True),
    case("sgd-step-g", SGD(0.1).step, "g", np.ones(3), np.ones(2), 1),
    case("sgd-step-tau", SGD(0.1).step, "tau", np.ones(3), np.ones(3), 0),
    case("sgd-step-znan", SGD(0.1).step, "z", np.full(3, NAN), np.ones(3), 1),
    case("sgd-lin-G", SGD(0.1).linearize, "G", np.ones(3), np.ones(3), np.ones((2, 2)), np.ones(3), 1),
    case("sgd-lin-H", SGD(0.1).linearize, "H", np.ones(3), np.ones(3), np.ones((3, 2)), np.ones((2, 2)), 1),
    case("sgd-state-D", SGD(0.1).state_size, "D", 0),
    case("sgd-init-x", SGD(0.1).initial_state, "x", [[1.0]]),
    case("adam-alpha", Adam, "alpha", 0.0),
    case("adam-beta1-1", Adam, "beta1", 1e-3, beta1=1.0),
    case("adam-beta1-neg", Adam, "beta1", 1e-3, beta1=-0.1),
    case("adam-beta2", Adam, "beta2", 1e-3, beta2=1.5),
    case("adam-eps-0", Adam, "eps", 1e-3, eps=0.0),
    case("adam-eps-nan", Adam, "eps", 1e-3, eps=NAN),
    case("adam-step-z", Adam(1e-3).step, "z", np.ones(4), np.ones(1), 1),
    case("adam-step-tau", Adam(1e-3).step, "tau", np.ones(6), np.ones(2), 0),
    case("adam-step-tau-float", Adam(1e-3).step, "tau", np.ones(6), np.ones(2), 1.0),
    case("adam-lin-G", Adam(1e-3).linearize, "G", np.ones(6), np.ones(2), np.ones((3, 1)), np.ones(2), 1),
    case("adam-params-D", Adam(1e-3).params, "z", np.ones(6), 3),
    case("mkopt-name", make_optimizer, "optimizer", "rmsprop", 0.1),
    case("mkopt-name-none", make_optimizer, "optimizer", None, 0.1),
    case("mkopt-name-int", make_optimizer, "optimizer", 3, 0.1),
    case("mkopt-alpha-0", make_optimizer, "alpha", "sgd", 0.0),
    case("mkopt-alpha-nan", make_optimizer, "alpha", "adam", NAN),
    case("mkopt-alpha-str", make_optimizer, "alpha", "adam", "1e-3"),
    # make_learner
    case("mkl-kind", make_learner, "kind", "reptile", SIN),
    case("mkl-kind-none", make_learner, "kind", None, SIN),
    case("mkl-source", make_learner, "source", "fomaml", object()),
    case("mkl-source-str", make_learner, "source", "fomaml", "sinusoid"),
    case("mkl-hidden", make_learner, "hidden", "fomaml", SIN, hidden=0),
    case("mkl-gamma", make_learner, "gamma", "maml", SIN, gamma=-1.0),
    case("mkl-inner", make_learner, "inner_steps", "maml", SIN, inner_steps=0),
    case("mkl-embedding", make_learner, "embedding", "protonet", CLS, embedding=0),
    case("mkl-protonet-regression", make_learner, "kind", "protonet", SIN),
    # TOWProblem and its methods
    case("prob-learner", TOWProblem, "learner", "maml", BATCHES, SGD(0.1), NET.size),
    case("prob-batches-empty", TOWProblem, "batches", FO, [], SGD(0.1), NET.size),
    case("prob-batches-emptybatch", TOWProblem, "batches", FO, [[]], SGD(0.1), NET.size),
    case("prob-batches-uneven", TOWProblem, "batches", FO, [BATCHES[0], BATCHES[1][:1]], SGD(0.1), NET.size),
    case("prob-optimizer", TOWProblem, "optimizer", FO, BATCHES, "sgd", NET.size),
    case("prob-D", TOWProblem, "D", FO, BATCHES, SGD(0.1), NET.size + 1),
    case("prob-D-float", TOWProblem, "D", FO, BATCHES, SGD(0.1), float(NET.size)),
    case("prob-tau0", TOWProblem, "tau0", FO, BATCHES, SGD(0.1), NET.size, -1),
    case("prob-beta", TOWProblem, "beta_u", FO, BATCHES, SGD(0.1), NET.size, beta_u=0.0),
    case("prob-mu", TOWProblem, "mu", FO, BATCHES, SGD(0.1), NET.size, mu=-0.1),
    case("prob-dyn-z", PROB.dynamics, "zt", X[:-1], np.full(2, 0.5), 0),
    case("prob-dyn-u", PROB.dynamics, "u", X, np.full(3, 0.5), 0),
    case("prob-dyn-unan", PROB.dynamics, "u", X, np.array([NAN, 0.5]), 0),
    case("prob-dyn-t", PROB.dynamics, "t", X, np.full(2, 0.5), 2),
    case("prob-cost-t", PROB.cost, "t", X, np.full(2, 0.5), 0.5),
    case("prob-eval-t", PROB.evaluate, "t", X, -1),
    case("prob-der-Z", PROB.derivatives, "Z", np.ones((5, NET.size)), np.full((2, 2), 0.5)),
    case("prob-der-U", PROB.derivatives, "U", np.tile(X, (3, 1)), np.full((2, 3), 0.5)),
    # TOWResult
    case("towres-U", TOWResult, "U", np.ones(3), np.ones((4, 2)), None),
    case("towres-X", TOWResult, "X", np.ones((3, 2)), np.ones(4), None),
    case("towres-rows", TOWResult, "X", np.ones((3, 2)), np.ones((3, 2)), None),
    case("towres-Unan", TOWResult, "U", np.full((3, 2), NAN), np.ones((4, 2)), None),
    # tow_weights
    case("tw-learner", tow_weights, "learner", None, X, BATCHES, alpha=0.1),
    case("tw-z-len", tow_weights, "z", FO, X[:-1], BATCHES, alpha=0.1),
    case("tw-z-nan", tow_weights, "z", FO, np.full_like(X, NAN), BATCHES, alpha=0.1),
    case("tw-z-adam", tow_weights, "z", FO, X, BATCHES, optimizer=Adam(1e-3)),
    case("tw-batches", tow_weights, "batches", FO, X, [], alpha=0.1),
    case("tw-batches-task", tow_weights, "batches", FO, X, TASK, alpha=0.1),
    case("tw-no-step", tow_weights, "alpha", FO, X, BATCHES),
    case("tw-alpha-0", tow_weights, "alpha", FO, X, BATCHES, alpha=0.0),
    case("tw-both", tow_weights, "alpha", FO, X, BATCHES, alpha=0.1, optimizer=SGD(0.1)),
    case("tw-optimizer-str", tow_weights, "optimizer", FO, X, BATCHES, optimizer="adam"),
    case("tw-tau0", tow_weights, "tau0", FO, X, BATCHES, alpha=0.1, tau0=-1),
    case("tw-beta", tow_weights, "beta_u", FO, X, BATCHES, alpha=0.1, beta_u=0.0),
    case("tw-beta-nan", tow_weights, "beta_u", FO, X, BATCHES, alpha=0.1, beta_u=NAN),
    case("tw-mu", tow_weights, "mu_u", FO, X, BATCHES, alpha=0.1, mu_u=-1.0),
    case("tw-nilqr-0", tow_weights, "n_ilqr", FO, X, BATCHES, alpha=0.1, n_ilqr=0),
    case("tw-nilqr-float", tow_weights, "n_ilqr", FO, X, BATCHES, alpha=0.1, n_ilqr=2.0),
    case("tw-value-model", tow_weights, "value_model", FO, X, BATCHES, alpha=0.1, value_model="dense"),
    case("tw-constraint", tow_weights, "constraint", FO, X, BATCHES, alpha=0.1, constraint="clip"),
    case("tw-full-huge", tow_weights, "value_model", MAML(MLP(hidden=300)), MLP(hidden=300).init(0), BATCHES,
         alpha=0.1, value_model="full"),
    case("tw-tol", tow_weights, "tol", FO, X, BATCHES, alpha=0.1, tol=-1.0),
    # run_experiment
    case("re-source", run_experiment, "source", None, FO, **EXP),
    case("re-source-nin", run_experiment, "learner", CLS, FO, **EXP),
    case("re-learner", run_experiment, "learner", SIN, "fomaml", **EXP),
    case("re-learner-loss", run_experiment, "learner", CLS, MAML(MLP(4, 4, 1, "mse")), **EXP),
    case("re-learner-protonet", run_experiment, "learner", SinusoidTasks(), ProtoNet(MLP(1, 4, 3, "mse")), **EXP),
    case("re-strategies-str", run_experiment, "strategies", SIN, FO, "tow", **EXP),
    case("re-strategies-empty", run_experiment, "strategies", SIN, FO, [], **EXP),
    case("re-strategies-unknown", run_experiment, "strategies", SIN, FO, ["random"], **EXP),
    case("re-strategies-dup", run_experiment, "strategies", SIN, FO, ["tow", "tow"], **EXP),
    case("re-iterations", run_experiment, "n_iterations", SIN, FO, **{**EXP, "n_iterations": 0}),
    case("re-iterations-float", run_experiment, "n_iterations", SIN, FO, **{**EXP, "n_iterations": 1e3}),
    case("re-T", run_experiment, "T", SIN, FO, **{**EXP, "T": 0}),
    case("re-M", run_experiment, "M", SIN, FO, **{**EXP, "M": 0}),
    case("re-optimizer", run_experiment, "optimizer", SIN, FO, optimizer="rmsprop", **EXP),
    case("re-alpha", run_experiment, "alpha", SIN, FO, alpha=0.0, **EXP),
    case("re-alpha-inf", run_experiment, "alpha", SIN, FO, alpha=np.inf, **EXP),
    case("re-beta", run_experiment, "beta_u", SIN, FO, beta_u=-1.0, **EXP),
    case("re-kappa", run_experiment, "kappa", SIN, FO, kappa=1.0, **EXP),
    case("re-nilqr", run_experiment, "n_ilqr", SIN, FO, n_ilqr=0, **EXP),
    case("re-ntest", run_experiment, "n_test", SIN, FO, **{**EXP, "n_test": 1}),
    case("re-nval", run_experiment, "n_val", SIN, FO, **{**EXP, "n_val": 0}),
    case("re-seed", run_experiment, "rng", SIN, FO, rng=-1, **EXP),
    case("re-seed-float", run_experiment, "rng", SIN, FO, rng=0.5, **EXP),
    case("re-eval-every", run_experiment, "eval_every", SIN, FO, eval_every=-1, **EXP),
    case("re-progress", run_experiment, "progress", SIN, FO, progress="yes", **EXP),
    case("re-value-model", run_experiment, "value_model", SIN, FO, value_model="dense", **EXP),
    case("re-checkpoint", run_experiment, "checkpoint", SIN, FO, checkpoint=5, **EXP),
    case("re-checkpoint-every", run_experiment, "checkpoint_every", SIN, FO, checkpoint_every=0, **EXP),
    case("re-huge", run_experiment, "run_experiment", SIN, FO, **{**EXP, "n_iterations": 10**9, "T": 100,
                                                                   "M": 100}),
    # run_sinusoid_experiment
    case("rse-learner", run_sinusoid_experiment, "learner", learner="protonet", **EXP),
    case("rse-hidden", run_sinusoid_experiment, "hidden", hidden=0, **EXP),
    case("rse-gamma", run_sinusoid_experiment, "gamma", gamma=-1.0, **EXP),
    case("rse-source", run_sinusoid_experiment, "source", source="sinusoid", **EXP),
    case("rse-strategies", run_sinusoid_experiment, "strategies", ("uniform", "best"), **EXP),
    # StrategyResult
    case("sr-name", StrategyResult, "name", "", np.ones(2), 1.0),
    case("sr-name-int", StrategyResult, "name", 3, np.ones(2), 1.0),
    case("sr-metric-empty", StrategyResult, "metric", "uniform", [], 1.0),
    case("sr-metric-nan", StrategyResult, "metric", "uniform", [NAN, 1.0], 1.0),
    case("sr-seconds", StrategyResult, "seconds", "uniform", np.ones(2), -1.0),
    case("sr-metric-name", StrategyResult, "metric_name", "uniform", np.ones(2), 1.0, "f1"),
    case("sr-settings", StrategyResult, "settings", "uniform", np.ones(2), 1.0, settings=[1]),
    # save_results / plot_curves / plot_weights
    case("save-empty", save_results, "results", [], "out"),
    case("save-item", save_results, "results", [1], "out"),
    case("save-str", save_results, "results", "results", "out"),
    case("save-prefix-int", save_results, "path_prefix", [RES], 5),
    case("save-prefix-empty", save_results, "path_prefix", [RES], ""),
    case("save-prefix-none", save_results, "path_prefix", [RES], None),
    case("plotc-empty", plot_curves, "results", [], "c.png"),
    case("plotc-item", plot_curves, "results", [RES, "x"], "c.png"),
    case("plotc-path", plot_curves, "path", [RES], None),
    case("plotc-title", plot_curves, "title", [RES], "c.png", 5),
    case("plotw-result", plot_weights, "result", "x", "w.png"),
    case("plotw-noweights", plot_weights, "result", StrategyResult("u", np.ones(2), 1.0), "w.png"),
    case("plotw-path", plot_weights, "path", RES, 3),
    case("plotw-bins", plot_weights, "n_bins", RES, "w.png", 0),
    case("plotw-bins-float", plot_weights, "n_bins", RES, "w.png", 2.5),
    # the strategy registry
    case("reg-none", register_strategy, "strategy", None),
    case("reg-str", register_strategy, "strategy", "uniform"),
    case("reg-class", register_strategy, "strategy", type(get_strategy("uniform"))),
    case("reg-dup", register_strategy, "strategy", get_strategy("uniform")),
    case("reg-replace", register_strategy, "replace", get_strategy("uniform"), replace=1),
    case("get-unknown", get_strategy, "strategy", "unifrom"),
    case("get-none", get_strategy, "strategy", None),
    case("get-int", get_strategy, "strategy", 0),
    case("get-case", get_strategy, "strategy", "TOW"),
    case("unreg-unknown", unregister_strategy, "name", "nope"),
    case("unreg-none", unregister_strategy, "name", None),
    case("unreg-int", unregister_strategy, "name", 1),
    case("unreg-empty", unregister_strategy, "name", ""),
    # exponential_moving_average (the paper preset's curve smoothing)
    case("ema-nan", tow.exponential_moving_average, "values", [1.0, NAN], 0.1),
    case("ema-2d", tow.exponential_moving_average, "values", np.ones((2, 2)), 0.1),
    case("ema-str", tow.exponential_moving_average, "values", "abc", 0.1),
    case("ema-factor-0", tow.exponential_moving_average, "factor", [1.0, 2.0], 0.0),
    case("ema-factor-big", tow.exponential_moving_average, "factor", [1.0, 2.0], 1.5),
    case("ema-factor-str", tow.exponential_moving_average, "factor", [1.0, 2.0], "0.1"),
]


@pytest.mark.parametrize("fn,word,args,kwargs", CASES)
def test_malformed_input_raises_named_metalqr_error(fn, word, args, kwargs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_named_error(fn, word, *args, **kwargs)


def test_every_public_name_has_at_least_four_cases():
    by_name = {}
    for p in CASES:
        fn = p.values[0]
        owner = getattr(fn, "__self__", None)
        key = f"{type(owner).__name__}.{fn.__name__}" if owner is not None else fn.__name__
        by_name[key] = by_name.get(key, 0) + 1
    classes_and_functions = {"dirichlet_weights", "Task", "SinusoidTasks", "HierarchicalClassificationTasks",
                             "AnyShotTasks", "DigitsTasks", "ImageFolderTasks", "MLP", "MAML",
                             "ProtoNet", "SGD", "Adam", "make_optimizer", "make_learner", "TOWProblem",
                             "TOWResult", "tow_weights", "run_experiment", "run_sinusoid_experiment",
                             "StrategyResult", "save_results", "plot_curves", "plot_weights", "softmax",
                             "output_loss", "register_strategy", "get_strategy", "unregister_strategy",
                             "exponential_moving_average"}
    mine = ("experiment", "learner", "mlp", "optimizers", "tasks", "weighting")   # omniglot/convnet: own tests
    public = {n for n in tow.__all__
              if getattr(getattr(tow, n), "__module__", "").rsplit(".", 1)[-1] in mine}
    assert public <= classes_and_functions
    for name in classes_and_functions:
        assert by_name.get(name, 0) >= 4, (name, by_name.get(name, 0))
    assert len(CASES) >= 200


# --- property tests: random shapes and values either work or raise a named ValidationError ----

from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                     elements=st.floats(allow_nan=True, allow_infinity=True, width=64))


@given(_arrays, _arrays, _arrays, _arrays)
def test_task_constructor_fuzz(s, y, sq, yq):
    try:
        task = Task(s, y, sq, yq)
    except metalqr.ValidationError as err:
        assert any(w in str(err) for w in ("s", "y", "sq", "yq"))
        return
    assert task.s.ndim == 2 and np.all(np.isfinite(task.s)) and task.y.shape[0] == task.s.shape[0]


@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 3), st.sampled_from(["mse", "ce"]),
       st.integers(1, 4), st.integers(0, 2**16))
def test_learner_on_random_shapes_is_finite_or_refused(n_in, hidden, n_out, loss, n, seed):
    """Random widths and task shapes: MAML's batch either returns finite losses/gradients of
    the documented shapes or raises a ValidationError (never a raw NumPy error)."""
    rng = np.random.default_rng(seed)
    try:
        net = MLP(n_in, hidden, n_out, loss)
    except metalqr.ValidationError as err:
        assert "n_out" in str(err)
        return
    width = n_in + int(rng.integers(0, 2))                  # sometimes a mismatched width
    labels = lambda k: rng.integers(0, n_out + int(rng.integers(0, 2)), k)
    y = rng.standard_normal((n, n_out)) if loss == "mse" else labels(n)
    yq = rng.standard_normal((n, n_out)) if loss == "mse" else labels(n)
    task = Task(rng.standard_normal((n, width)), y, rng.standard_normal((n, width)), yq)
    learner = MAML(net, gamma=0.1, first_order=bool(seed % 2))
    try:
        losses, G, GN = learner.batch(net.init(seed), [task], curvature=True)
    except metalqr.ValidationError as err:
        assert "tasks" in str(err)
        return
    assert losses.shape == (1,) and G.shape == (net.size, 1) and GN.shape == (net.size, 1)
    assert np.all(np.isfinite(losses)) and np.all(np.isfinite(G)) and np.all(GN >= 0)
