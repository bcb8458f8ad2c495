"""Roll-outs grouped by task into fixed-size blocks.

The layout both rollout kernels use so that each step is a product with task-wide matrices (one per
block) rather than per roll-out.
"""

from __future__ import annotations

import numpy as np

__all__ = ["task_blocks", "fitted_lanes"]


def fitted_lanes(task_index: np.ndarray, lanes: int, multiple: int = 8) -> int:
    """Return a block width for :func:`task_blocks` with little padding.

    Block width for :func:`task_blocks` with little padding: at most ``lanes``, and just wide
    enough for the largest task's roll-outs split into ``ceil(n / lanes)`` equal blocks, rounded
    up to a ``multiple`` (a SIMD width) unless that would exceed ``lanes``.

    With 20 roll-outs a task (the adapted roll-outs of a (20, 10) meta-gradient) and
    ``lanes = 128`` this gives 24 rather than 128 lanes, a sixth of the padded work.
    """
    task_index = np.asarray(task_index, dtype=np.int64)
    lanes = max(1, int(lanes))
    if task_index.size == 0:
        return lanes
    n = int(np.bincount(task_index).max())
    blocks = -(-n // lanes)
    width = -(-n // blocks)
    width = -(-width // multiple) * multiple
    return min(lanes, width)


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
