"""Roll-outs grouped by task into fixed-size blocks.

The layout both rollout kernels use so that each step is a product with task-wide matrices (one per
block) rather than per roll-out.
"""

from __future__ import annotations

import numpy as np

__all__ = ["task_blocks"]


def task_blocks(task_index: np.ndarray, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Group roll-outs by task into blocks of ``lanes``.

    Roll-outs grouped by task into blocks of ``lanes`` (the last block of a task padded with
    ``-1``): ``(block_task, block_rows)`` of shapes ``(nblocks,)`` and ``(nblocks, lanes)``.
    """
    task_index = np.asarray(task_index, dtype=np.int64)
    order = np.argsort(task_index, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(task_index[order]) != 0])
    rows, block_task = [], []
    for group in np.split(order, starts[1:]):
        padded = np.full(-(-len(group) // lanes) * lanes, -1, dtype=np.int64)
        padded[:len(group)] = group
        rows.append(padded.reshape(-1, lanes))
        block_task += [task_index[group[0]]] * rows[-1].shape[0]
    return np.asarray(block_task, dtype=np.int64), np.concatenate(rows)
