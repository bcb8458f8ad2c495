"""Reuse of the large output arrays of the roll-out backends between estimator calls.

An Algorithm 2 meta-gradient at (M, M') = (20, 10) allocates two 1.76 MB arrays (the inner
perturbations and the inner gains) and frees them at the end; glibc returns such memory to
the operating system, so every call page-faults it in again: about 900 faults, 2 of the
8 ms of one core the whole estimate takes on the development machine. :func:`empty` hands
out an array of a previously allocated buffer whose every user is gone (a caching
allocator, as CuPy's memory pool), else a new one.

A buffer is reused only when nothing but the pool refers to it: its reference count (views
hold a reference to it) shows no other owner. At most :data:`MAX_BYTES` are kept, oldest
dropped first.
"""

from __future__ import annotations

import sys
import threading

import numpy as np

__all__ = ["empty", "MAX_BYTES", "MIN_BYTES"]

#: Largest total size of the buffers kept (bytes).
MAX_BYTES = 64 << 20
#: Smaller requests are plain ``np.empty`` (the allocator keeps those itself), and so are
#: requests above a quarter of :data:`MAX_BYTES` (NumPy backs those by huge pages; their
#: page faults are small next to the work that fills them).
MIN_BYTES = 1 << 18

_LOCK = threading.Lock()
_BUFFERS: list[np.ndarray] = []
#: References to a pooled buffer that are not a user's: the list's and getrefcount's argument.
_OWN_REFS = 2


def empty(shape: tuple[int, ...]) -> np.ndarray:
    """Return a float64 array of ``shape`` from the buffer pool.

    Return a float64 array of ``shape`` (uninitialised), from a free pooled buffer when one of
    the same size exists.
    """
    n = 1
    for s in shape:
        n *= int(s)
    if not MIN_BYTES <= 8 * n <= MAX_BYTES // 4:     # small: malloc's; large: not kept
        return np.empty(shape)
    with _LOCK:
        for i in range(len(_BUFFERS)):         # by index: a loop variable is a reference
            if _BUFFERS[i].size == n and sys.getrefcount(_BUFFERS[i]) == _OWN_REFS:
                return _BUFFERS[i].reshape(shape)
        buf = np.empty(n)
        _BUFFERS.append(buf)
        total = sum(b.nbytes for b in _BUFFERS)
        while total > MAX_BYTES and len(_BUFFERS) > 1:
            total -= _BUFFERS.pop(0).nbytes
        return buf.reshape(shape)
