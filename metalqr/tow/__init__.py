"""Task weighting by trajectory optimisation (TOW paper): a NumPy few-shot meta-learner
and weighting strategies, the TOW one a thin adapter over :mod:`metalqr.ilqr`.

Work in progress (issue 5): sinusoid regression with first-order MAML and SGD dynamics
are implemented and tested; Adam dynamics, Prototypical Networks, classification task
sources, the ``metalqr tow`` command and ``benchmarks/bench_tow.py`` are not yet.
"""

from .experiment import STRATEGIES, StrategyResult, run_sinusoid_experiment
from .learner import FOMAML
from .mlp import MLP
from .tasks import SinusoidTasks, Task
from .weighting import TOWResult, dirichlet_weights, tow_weights

__all__ = ["run_sinusoid_experiment", "StrategyResult", "STRATEGIES", "MLP", "FOMAML", "SinusoidTasks", "Task", "dirichlet_weights", "tow_weights", "TOWResult"]
