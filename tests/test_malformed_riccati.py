"""Malformed inputs of the Riccati API (optimal_gain, solve_dare_checked, riccati_residual,
check_dare_solution): each raises a metalqr error that names the argument."""

from __future__ import annotations

import numpy as np
import pytest

import metalqr
from helpers import assert_named_error
from metalqr.lqr.riccati import check_dare_solution, riccati_residual, solve_dare_checked

TASK = metalqr.LQRTask([[1.0, 0.1], [0.0, 1.0]], [[0.0], [0.1]], np.eye(2), [[1.0]])
TS = metalqr.TaskSet([TASK, TASK])
GOOD_P = np.eye(2)

BAD_TASKS = [None, 3.0, "task", np.eye(2), [TASK, TASK], {"A": np.eye(2)}]
BAD_P = [
    ("shape", np.eye(3)),
    ("vector", np.ones(2)),
    ("nan", np.array([[np.nan, 0.0], [0.0, 1.0]])),
    ("inf", np.array([[np.inf, 0.0], [0.0, 1.0]])),
    ("complex", np.eye(2) * (1 + 1j)),
    ("bool", np.eye(2, dtype=bool)),
    ("string", "eye"),
    ("per-task count", np.stack([np.eye(2)] * 3)),
]

CASES = []
for fn in (metalqr.optimal_gain, solve_dare_checked):
    for bad in BAD_TASKS:
        CASES.append((fn.__name__, "task", fn, (bad,)))
for fn in (riccati_residual, check_dare_solution):
    for bad in BAD_TASKS:
        CASES.append((fn.__name__, "task", fn, (bad, GOOD_P)))
    for label, bad in BAD_P:
        CASES.append((f"{fn.__name__}:{label}", "P", fn, (TS, bad)))
    # a per-task stack is refused for a single task
    CASES.append((f"{fn.__name__}:stack-for-single", "P", fn, (TASK, np.stack([np.eye(2)] * 2))))


@pytest.mark.parametrize("label, word, fn, args", CASES, ids=[c[0] + "-" + str(i) for i, c in enumerate(CASES)])
def test_malformed_riccati_inputs(label, word, fn, args):
    assert_named_error(fn, word, *args)


def test_table_size():
    names = {c[2].__name__ for c in CASES}
    assert names == {"optimal_gain", "solve_dare_checked", "riccati_residual", "check_dare_solution"}
    for n in names:
        assert sum(c[2].__name__ == n for c in CASES) >= 4
