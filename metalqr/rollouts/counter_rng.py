"""Counter-based Gaussian noise shared by every rollout backend.

Normal number ``c`` of a call with key ``key`` is a pure function of ``(key, c)``:

* ``mix(x)`` is the SplitMix64 output function (Steele, Lea & Flood 2014) and the first word
  of number ``c`` is ``h = mix(key + (c + 1) * GAMMA)``;
* ``z_c`` is drawn from ``h`` with the ziggurat method of Marsaglia & Tsang (2000), with 1024
  layers of equal area ``V`` (NumPy's generator uses the same scheme with 256): bits 0-9 of
  ``h`` pick the layer ``i``, bit 10 the sign, bits 12-63 an integer ``a < 2^52``, and
  ``z = +-a W[i]`` whenever ``a < KI[i]`` (the point lies inside the part of the layer under
  the density). That holds for about 99.6% of draws and costs one multiplication; the rest
  (the wedges of the layers, and the tail ``|z| > R`` for the base layer) take further words
  from a SplitMix64 stream seeded with ``h``: ``s <- s + GAMMA``, word ``mix(s)``.

Because ``z_c`` does not depend on the order of generation, NumPy, CuPy (the same
array-module code) and the Numba kernel produce the same numbers, whatever the number of
threads or the chunking: bit for bit on the one-multiplication path, and to the last bit of
``exp`` and ``log`` in the wedges and the tail. Rollout ``n`` of length ``l`` in a
``d``-dimensional task uses the counters ``c = n S + t d + j`` with ``S = (l + 1) d``:
``t = 0`` gives ``x_0``, ``t >= 1`` the noise ``w_{t-1}``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["GAMMA", "block_stride", "normals", "draw_key", "ziggurat_tables", "LAYER_MASK",
           "SIGN_SHIFT", "INT_SHIFT", "UNIFORM_SHIFT", "MIX_SHIFTS", "M1", "M2", "INV_2_53"]

# --- Bit layout, shared by this NumPy/CuPy generator and its Numba twin
# (:mod:`metalqr.rollouts._counter_rng_numba`): change them here and both follow. ------------
#: SplitMix64 increment (Weyl constant): state of number ``c`` is ``key + (c + 1) GAMMA``.
GAMMA = np.uint64(0x9E3779B97F4A7C15)
#: SplitMix64 output-function multipliers and shifts: ``x ^= x >> 30; x *= M1; x ^= x >> 27;
#: x *= M2; x ^= x >> 31``.
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
MIX_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31))
#: Uniforms on (0, 1) from the top 53 bits of a word: ``((w >> 11) + 0.5) 2^-53``.
UNIFORM_SHIFT = np.uint64(11)
INV_2_53 = 1.0 / 9007199254740992.0

#: Number of layers, right edge of the base layer (start of the tail) and the layers' common
#: area ``V = R f(R) + int_R^inf f`` with ``f(x) = exp(-x^2/2)``. ``R`` solves ``x_0 = 0`` for the
#: recursion of :func:`ziggurat_tables` (bisection in double precision; the same procedure
#: gives Marsaglia & Tsang's published R = 3.6541528853610088 for 256 layers).
ZIG_LAYERS = 1024
ZIG_R = 4.038849846109505
ZIG_V = ZIG_R * math.exp(-0.5 * ZIG_R**2) + math.sqrt(math.pi / 2) * math.erfc(ZIG_R / math.sqrt(2))
ZIG_INV_R = 1.0 / ZIG_R
#: Bits 0-9 of the first word pick the ziggurat layer (``h & LAYER_MASK``).
LAYER_MASK = np.uint64(ZIG_LAYERS - 1)
#: Bit 10 is the sign (``(h >> SIGN_SHIFT) & 1``).
SIGN_SHIFT = np.uint64(10)
#: Bits 12-63 are the integer ``a < 2^52`` (``h >> INT_SHIFT``).
INT_SHIFT = np.uint64(12)
_LAYER = LAYER_MASK
_SIGN = SIGN_SHIFT


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marsaglia & Tsang's tables for :data:`ZIG_LAYERS` layers and 52-bit integers: ``(KI, W, F)``.

    Layer ``i >= 1`` is the rectangle ``[0, x_i] x [f(x_i), f(x_{i-1})]`` with
    ``f(x) = exp(-x^2/2)``, ``x_{N-1} = R`` and ``x_{i-1}`` from ``x_{i-1} (f(x_{i-1}) - f(x_i))
    = V``, i.e. ``x_{i-1} = sqrt(-2 log(V / x_i + f(x_i)))``; the base layer is
    ``[0, V / f(R)] x [0, f(R)]`` (rectangle plus tail). ``W[i] = x_i 2^-52`` maps the integer
    to the abscissa, ``KI[i] = (x_{i-1} / x_i) 2^52`` is the acceptance bound and
    ``F[i] = f(x_i)``. Checked in the tests: every layer has area ``V``.
    """
    m, n = 2.0**52, ZIG_LAYERS
    KI, W, F = np.zeros(n, dtype=np.uint64), np.zeros(n), np.zeros(n)
    x = ZIG_R
    q = ZIG_V / math.exp(-0.5 * x * x)
    KI[0] = int(x / q * m)
    W[0], W[n - 1] = q / m, x / m
    F[0], F[n - 1] = 1.0, math.exp(-0.5 * x * x)
    for i in range(n - 2, 0, -1):
        x_prev = math.sqrt(-2.0 * math.log(ZIG_V / x + math.exp(-0.5 * x * x)))
        KI[i + 1] = int(x_prev / x * m)
        x = x_prev
        F[i], W[i] = math.exp(-0.5 * x * x), x / m
    return KI, W, F


ZIG_KI, ZIG_W, ZIG_F = ziggurat_tables()


def block_stride(length: int, d: int) -> int:
    """Numbers reserved per rollout: ``(length + 1) * d``."""
    return (length + 1) * d


def draw_key(rng: np.random.Generator) -> int:
    """Return a fresh 64-bit key from the caller's generator (one draw per engine call)."""
    return int(rng.integers(0, 2**63, dtype=np.int64))


def _mix(x):
    """SplitMix64 output function on a uint64 array."""
    s1, s2, s3 = MIX_SHIFTS
    x = (x ^ (x >> s1)) * M1
    x = (x ^ (x >> s2)) * M2
    return x ^ (x >> s3)


def _uniform(xp, w):
    """Uniform on (0, 1) from 64-bit words (top 53 bits, centred: never 0 or 1)."""
    return ((w >> UNIFORM_SHIFT).astype(xp.float64) + 0.5) * INV_2_53


_TABLES: dict[str, tuple] = {}

#: ``W`` with the sign folded in: entry ``i + 1024 s`` is ``(-1)^s W[i]``, so that bits 0-10 of
#: the first word (layer and sign) index it and ``a W_signed`` has the bits of ``+-(a W)``.
ZIG_W_SIGNED = np.concatenate([ZIG_W, -ZIG_W])
LAYER_SIGN_MASK = np.uint64(2 * ZIG_LAYERS - 1)
assert int(LAYER_MASK) + 1 == ZIG_LAYERS == 1 << int(SIGN_SHIFT)    # sign bit right above layer
#: Counters per pass of the NumPy generator: its dozen or so work arrays stay in L2.
NORMALS_BLOCK = 1 << 14


def _tables(xp):
    name = xp.__name__
    if name not in _TABLES:
        _TABLES[name] = (xp.asarray(ZIG_KI), xp.asarray(ZIG_W), xp.asarray(ZIG_F),
                         xp.asarray(ZIG_W_SIGNED))
    return _TABLES[name]


def _tail(xp, s):
    """Draw from the normal tail by Marsaglia's method.

    Marsaglia's tail method, ``R + xx`` with ``xx = -log(U1) / R`` accepted when ``-2 log(U2) >
    xx^2``, for each seed in ``s`` (advanced in place, two words a try).
    """
    out = xp.empty(s.shape[0])
    pending = xp.arange(s.shape[0])
    while pending.size:
        s[pending] += GAMMA
        xx = -xp.log(_uniform(xp, _mix(s[pending]))) * ZIG_INV_R
        s[pending] += GAMMA
        yy = -xp.log(_uniform(xp, _mix(s[pending])))
        ok = yy + yy > xx * xx
        out[pending[ok]] = ZIG_R + xx[ok]
        pending = pending[~ok]
    return out


def _slow_path(xp, h):
    """Return the normals that missed the one-multiplication test.

    The normals whose first word ``h`` missed the one-multiplication test (the wedge test, the
    tail, and fresh tries with the stream seeded at ``h``); see the module docstring and
    ``_slow_normal`` in :mod:`metalqr.rollouts._counter_rng_numba` (its Numba twin), the same
    algorithm.
    """
    KI, W, F, _ = _tables(xp)
    out = xp.empty(h.shape[0])
    pending = xp.arange(h.shape[0])
    s = h.copy()
    while pending.size:
        idx = (h & _LAYER).astype(xp.int64)
        a = h >> INT_SHIFT
        x = a.astype(xp.float64) * W[idx]
        accept = a < KI[idx]
        wedge = xp.flatnonzero(~accept & (idx > 0))
        if wedge.size:
            s[wedge] += GAMMA
            i = idx[wedge]
            y = F[i] + (F[i - 1] - F[i]) * _uniform(xp, _mix(s[wedge]))
            accept[wedge] = y < xp.exp(-0.5 * x[wedge] * x[wedge])
        tail = xp.flatnonzero(~accept & (idx == 0))
        if tail.size:
            x[tail] = _tail(xp, s[tail])
            accept[tail] = True
        x = xp.where((h >> _SIGN) & np.uint64(1), -x, x)
        out[pending[accept]] = x[accept]
        keep = ~accept
        pending, s = pending[keep], s[keep] + GAMMA
        h = _mix(s)
    return out


def _normals_flat(xp, key: int, index, out):
    """Fill ``out`` with the normals whose fast test accepts.

    ``out[j] = z_{index[j]}`` for 1-D ``index`` (uint64) and ``out`` (float64) where the
    ziggurat's one-multiplication test accepts, with in-place operations (two work arrays
    besides the look-ups); returns the positions and first words of the other draws, for
    :func:`_slow_path`.
    """
    KI, _, _, WS = _tables(xp)
    s1, s2, s3 = MIX_SHIFTS
    h = index + np.uint64(1)
    h *= GAMMA
    h += np.uint64(key)
    t = h >> s1                         # SplitMix64 output function, in place
    h ^= t
    h *= M1
    xp.right_shift(h, s2, out=t)
    h ^= t
    h *= M2
    xp.right_shift(h, s3, out=t)
    h ^= t
    xp.bitwise_and(h, LAYER_SIGN_MASK, out=t)
    i = t.view(xp.int64)                # layer + 1024 sign (< 2048: the view is exact)
    xp.take(WS, i, out=out)
    xp.bitwise_and(i, np.int64(LAYER_MASK), out=i)
    kb = xp.take(KI, i)
    xp.right_shift(h, INT_SHIFT, out=t)  # a < 2^52, exact in float64
    slow = xp.flatnonzero(t >= kb)
    xp.multiply(out, t, out=out)        # +-W[i] a: the bits of +-(a W[i])
    return slow, h[slow]


def normals(xp, key: int, index):
    """Return standard normals ``z_c`` for a uint64 array of counters ``index`` (array module ``xp``).

    With NumPy the counters are processed :data:`NORMALS_BLOCK` at a time, so that the
    work arrays stay in cache, and the ~0.4% of draws beyond the ziggurat's fast test are
    completed together at the end (10.5 -> about 5 ns a number for a million counters);
    with CuPy in one pass. Either way ``z_c`` depends on ``(key, c)`` only.
    """
    index = xp.asarray(index)
    flat = index.reshape(-1)
    out = xp.empty(flat.shape[0], dtype=xp.float64)
    step = NORMALS_BLOCK if xp is np else max(1, flat.shape[0])
    where, words = [], []
    for s in range(0, flat.shape[0], step):
        w, h = _normals_flat(xp, key, flat[s:s + step], out[s:s + step])
        where.append(w + s)
        words.append(h)
    if len(where) > 1:
        where, words = xp.concatenate(where), xp.concatenate(words)
    elif where:
        where, words = where[0], words[0]
    if len(where):                      # the rare slow draws, all in one pass
        out[where] = _slow_path(xp, words)
    return out.reshape(index.shape)
