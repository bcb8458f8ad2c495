"""Task weighting by trajectory optimisation (the TOW paper).

Task weighting by trajectory optimisation (TOW paper): NumPy few-shot meta-learners (first- and
second-order MAML, Prototypical Networks), SGD / Adam meta-optimisers with their linearisations,
offline task sources, and the weighting strategies behind one interface and registry (uniform,
exploration, exploitation, and TOW as a thin adapter over :mod:`metalqr.ilqr`; see
``metalqr.tow.weighting_strategies``).
"""

from .._api import public_names as _public_names
from .experiment import (STRATEGIES, StrategyResult, make_learner, plot_curves, plot_weights, run_experiment,
                         run_sinusoid_experiment, save_results)
from .learner import MAML, ProtoNet
from .mlp import MLP
from .optimizers import SGD, Adam, make_optimizer
from .tasks import (AnyShotTasks, DigitsTasks, HierarchicalClassificationTasks, ImageFolderTasks, SinusoidTasks,
                    Task)
from .weighting import TOWProblem, TOWResult, dirichlet_weights, tow_weights
from .weighting_strategies import (PerBatchStrategy, WeightingStrategy, Window, WindowResult, get_strategy,
                                   register_strategy, strategies, unregister_strategy)
from .convnet import ConvNet
from .omniglot import (PUBLISHED_ONE_SHOT_ERRORS, OmniglotTasks, OneShotResult, OneShotRun, area_resize,
                       embedding_of, evaluate_one_shot_runs, load_omniglot, load_one_shot_runs, modified_hausdorff,
                       one_shot_run_tasks)

from .experiment import PAPER_PRESET, PRESETS, exponential_moving_average
from .weighting import LINE_SEARCHES, TERMINAL_COSTS

__all__ = _public_names(globals())
