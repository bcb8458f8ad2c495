"""Thread-level parallelism over a leading batch axis for NumPy kernels.

NumPy releases the GIL inside ``matmul``, so a stack of many small matrices can be split
into contiguous chunks that run on all cores. The number of threads is
``METALQR_NUM_THREADS`` if set, else ``os.cpu_count()``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

__all__ = ["num_threads", "map_chunks"]


def num_threads() -> int:
    """Threads used by batched kernels (``METALQR_NUM_THREADS`` or the CPU count)."""
    env = os.environ.get("METALQR_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, os.cpu_count() or 1)


@lru_cache(maxsize=4)
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="metalqr")


def map_chunks(fn: Callable[..., tuple], arrays: Sequence[np.ndarray], n: int,
               work: float, min_work: float = 2e6) -> tuple:
    """Apply ``fn`` to contiguous chunks of the leading axis in parallel.

    Apply ``fn(*chunk_arrays) -> tuple of arrays`` to contiguous chunks of the leading axis
    (length ``n``) in parallel and concatenate the results along that axis.

    Runs serially when ``work`` (an estimate of the flop count) is below ``min_work`` or
    only one thread is available: the result is identical either way.
    """
    threads = min(num_threads(), n)
    if threads <= 1 or work < min_work:
        return fn(*arrays)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    parts = list(_pool(threads).map(lambda ab: fn(*(a[ab[0]:ab[1]] for a in arrays)),
                                    zip(bounds[:-1], bounds[1:])))
    return tuple(None if parts[0][i] is None else np.concatenate([p[i] for p in parts])
                 for i in range(len(parts[0])))
