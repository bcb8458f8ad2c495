"""Meta-policy optimisation for LQR (the ZO-MAML paper).

Studies: grids of meta-training runs (LQR meta-policy optimisation, ``kind = "zo_maml"``, or TOW
task-weighting strategies, ``kind = "tow"``) over seeds and settings, executed serially or on Dask
(an embedded LocalCluster or an existing cluster, e.g. SLURM through dask-jobqueue), stored one file
per run in a resumable result store, aggregated across seeds (mean and 95% confidence interval,
curves with bands). See ``docs/experiments.md``.

>>> from metalqr.experiments import Study
>>> study = Study.grid(base={"d": 1, "k": 1, "n_iterations": 3}, grid={"alpha": [1e-3, 1e-4]},
...                    seeds=2, name="demo")
>>> len(study)
4
"""

from .._api import public_names as _public_names
from ._aggregate import (CURVE_COLUMNS, METRICS, TOW_CURVE_COLUMNS, TOW_METRICS, curves, mean_ci,
                         plot_curves, summary_table, write_report)
from ._cli import (add_fig1_arguments, add_sweep_parser, fig1_main, fig1_seeds_command,
                   figure1_study, sweep_main)
from ._config import (BACKENDS, ESTIMATORS, FAMILIES, KINDS, RUN_DEFAULTS, TOW_IMAGE_SOURCES,
                      TOW_REGRESSION_SOURCES, TOW_RUN_DEFAULTS, TOW_SOURCE_DEFAULTS,
                      TOW_SOURCE_OPTIONS, TOW_SOURCES, Study, load_study, normalize_run, run_id,
                      study_from_dict, tow_default_net)
from ._engine import (StudyReport, dask_available, limit_threads, local_cluster, run_cost, run_study,
                      thread_limits)
from ._runner import build_tasks, comparable, execute_run, run_rng
from ._store import ResultStore
from ._tow import execute_tow_run

__all__ = _public_names(globals())
