"""Counter-based Gaussian noise shared by every rollout backend.

Normal number ``c`` of a call with key ``key`` is a pure function of ``(key, c)``:

* ``mix(x)`` is the SplitMix64 output function (Steele, Lea & Flood 2014) and
  ``U(c) = ((mix(key + (c + 1) * GAMMA) >> 11) + 0.5) * 2^-53`` is uniform on (0, 1);
* ``z_c = Phi^{-1}(U(c))`` with Wichura's algorithm AS241 (PPND16, accurate to about
  1e-16; checked against :func:`scipy.special.ndtri` in the tests). It needs only a
  rational function for 85% of draws, against a log, a sqrt and a sine or cosine per
  number for Box-Muller.

Because ``z_c`` does not depend on the order of generation, NumPy, CuPy (the same
array-module code) and the Numba kernel produce the same numbers, whatever the number of
threads or the chunking. Rollout ``n`` of length ``l`` in a ``d``-dimensional task uses the
counters ``c = n S + t d + j`` with ``S = (l + 1) d``: ``t = 0`` gives ``x_0``, ``t >= 1`` the
noise ``w_{t-1}``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GAMMA", "block_stride", "normals", "uniforms", "draw_key", "AS241"]

GAMMA = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
INV_2_53 = 1.0 / 9007199254740992.0

#: Coefficients of AS241 (Wichura 1988), highest degree first, denominators with leading 1 last.
AS241 = {
    "a": (2509.0809287301226727, 33430.575583588128105, 67265.770927008700853,
          45921.953931549871457, 13731.693765509461125, 1971.5909503065514427,
          133.14166789178437745, 3.387132872796366608),
    "b": (5226.495278852545925, 28729.085735721942674, 39307.89580009271061,
          21213.794301586595867, 5394.1960214247511077, 687.1870074920579083,
          42.313330701600911252, 1.0),
    "c": (7.7454501427834140764e-4, 0.0227238449892691845833, 0.24178072517745061177,
          1.27045825245236838258, 3.64784832476320460504, 5.7694972214606914055,
          4.6303378461565452959, 1.42343711074968357734),
    "d": (1.05075007164441684324e-9, 5.475938084995344946e-4, 0.0151986665636164571966,
          0.14810397642748007459, 0.68976733498510000455, 1.6763848301838038494,
          2.05319162663775882187, 1.0),
    "e": (2.01033439929228813265e-7, 2.71155556874348757815e-5, 0.0012426609473880784386,
          0.026532189526576123093, 0.29656057182850489123, 1.7848265399172913358,
          5.4637849111641143699, 6.6579046435011037772),
    "f": (2.04426310338993978564e-15, 1.4215117583164458887e-7, 1.8463183175100546818e-5,
          7.868691311456132591e-4, 0.0148753612908506148525, 0.13692988092273580531,
          0.59983220655588793769, 1.0),
}


def block_stride(length: int, d: int) -> int:
    """Numbers reserved per rollout: ``(length + 1) * d``."""
    return (length + 1) * d


def draw_key(rng: np.random.Generator) -> int:
    """A fresh 64-bit key from the caller's generator (one draw per engine call)."""
    return int(rng.integers(0, 2**63, dtype=np.int64))


def uniforms(xp, key: int, index):
    """``U(index)`` for a uint64 array of counters (array module ``xp``)."""
    x = np.uint64(key) + (index + np.uint64(1)) * GAMMA
    x = (x ^ (x >> np.uint64(30))) * M1
    x = (x ^ (x >> np.uint64(27))) * M2
    x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(xp.float64) + 0.5) * INV_2_53


def _horner(coeffs, r):
    acc = coeffs[0] * r + coeffs[1]
    for c in coeffs[2:]:
        acc = acc * r + c
    return acc


def ndtri_array(xp, p):
    """AS241 inverse normal CDF for an array of probabilities in (0, 1)."""
    q = p - 0.5
    r_c = 0.180625 - q * q
    central = q * _horner(AS241["a"], r_c) / _horner(AS241["b"], r_c)
    tail_p = xp.minimum(p, 1.0 - p)
    r = xp.sqrt(-xp.log(tail_p))
    near = _horner(AS241["c"], r - 1.6) / _horner(AS241["d"], r - 1.6)
    far = _horner(AS241["e"], r - 5.0) / _horner(AS241["f"], r - 5.0)
    tail = xp.where(r <= 5.0, near, far)
    tail = xp.where(q < 0, -tail, tail)
    return xp.where(xp.abs(q) <= 0.425, central, tail)


def normals(xp, key: int, index):
    """Standard normals ``z_c`` for a uint64 array of counters ``index``."""
    return ndtri_array(xp, uniforms(xp, key, index))
