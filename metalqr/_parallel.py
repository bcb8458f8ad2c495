"""Thread-level parallelism over a leading batch axis for NumPy kernels.

NumPy releases the GIL inside ``matmul``, so a stack of many small matrices can be split
into contiguous chunks that run on all cores. The number of threads is
``METALQR_NUM_THREADS`` if set, else ``os.cpu_count()``.

While the chunks run on metalqr's threads, the BLAS library's own threads are limited to one
(through ``threadpoolctl`` when it is installed): each chunk's ``matmul`` spinning up BLAS
threads of its own oversubscribes the cores, and on a loaded machine OpenBLAS then runs
10-20x slower (issue 15: 10 tasks of ``d = 200``, cost + gradient, 3-6 s instead of 0.3 s at
load 8 on 2 cores). Results are the same either way.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np

__all__ = ["num_threads", "map_chunks", "blas_single_thread"]


def num_threads() -> int:
    """Threads used by batched kernels (``METALQR_NUM_THREADS`` or the CPU count)."""
    env = os.environ.get("METALQR_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, os.cpu_count() or 1)


_CONTROLLER: list = []


def blas_single_thread():
    """Limit the BLAS libraries to one thread (a context manager).

    Context manager that limits the BLAS libraries to one thread (threadpoolctl), or a no-op
    without threadpoolctl. The controller is looked up once, at the first parallel call (after
    NumPy's BLAS is loaded).
    """
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
            _CONTROLLER.append(ThreadpoolController())
        except Exception:               # not installed, or an unknown BLAS layout
            _CONTROLLER.append(None)
    if _CONTROLLER[0] is None:
        return nullcontext()
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


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
    with blas_single_thread():
        parts = list(_pool(threads).map(lambda ab: fn(*(a[ab[0]:ab[1]] for a in arrays)),
                                        zip(bounds[:-1], bounds[1:])))
    return tuple(None if parts[0][i] is None else np.concatenate([p[i] for p in parts])
                 for i in range(len(parts[0])))
