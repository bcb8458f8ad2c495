"""Input checks shared by the public API (pure helpers, no numerics beyond checks).

Every public function of metalqr validates its arguments through these helpers, so that
every malformed input raises a :class:`~metalqr.ValidationError` (a ``ValueError``) or a
:class:`~metalqr.ValidationTypeError` (a ``TypeError``) whose message names the argument
and says how to fix it. The helpers never coerce silently: complex, boolean, object and
string arrays are rejected rather than truncated or reinterpreted.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Sequence

import numpy as np

from .exceptions import ValidationError, ValidationTypeError

#: Relative tolerance used for symmetry and semidefiniteness checks.
SYM_RTOL = 1e-8

#: Largest number of float64 entries a single public call may allocate before it must
#: refuse with a clear error (2**31 entries = 16 GiB). Functions compare their own
#: estimate against :func:`check_size`.
MAX_ARRAY_ENTRIES = 2 ** 31


def as_float_array(value: Any, name: str, ndim: int | None = None,
                   shape: tuple[int | None, ...] | None = None, *,
                   allow_empty: bool = True) -> np.ndarray:
    """Convert ``value`` to a finite real float64 array and check its shape.

    ``shape`` may contain ``None`` for free dimensions. Complex, boolean, object and
    string input is rejected (never truncated). Raises :class:`ValidationError` naming
    ``name`` on any problem.
    """
    if isinstance(value, (str, bytes)):
        raise ValidationTypeError(f"{name} must be a real numeric array; got a string {value!r}.")
    _refuse_none_or_masked(value, name)
    raw = _as_raw_array(value, name)
    kind = raw.dtype.kind
    _refuse_non_numeric_dtype(raw, name)
    if kind == "c":
        if raw.size and np.any(np.imag(raw) != 0):
            raise ValidationTypeError(
                f"{name} must be real; got a complex array with non-zero imaginary part. "
                f"metalqr works in real arithmetic: pass the real part explicitly if intended.")
        raise ValidationTypeError(f"{name} must have a real dtype; got {raw.dtype}. Pass "
                                  f"{name}.real if the imaginary part is meant to be zero.")
    if kind == "b":
        raise ValidationTypeError(f"{name} must be a real numeric array; got a boolean array.")
    try:
        arr = np.array(raw, dtype=np.float64)
    except OverflowError:
        raise ValidationError(
            f"{name} contains an integer too large for float64 (|x| > 1.8e308); all entries "
            f"must be finite float64 numbers: rescale {name}.") from None
    except (TypeError, ValueError) as exc:
        raise ValidationTypeError(
            f"{name} must be a real numeric array; got {type(value).__name__} that cannot be "
            f"converted to float64 ({exc}).") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValidationError(f"{name} must be a {ndim}-D array; got {arr.ndim}-D array of shape "
                              f"{arr.shape}.")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValidationError(f"{name} must have shape {want}; got {arr.shape}.")
    if not allow_empty and arr.size == 0:
        raise ValidationError(f"{name} must not be empty; got shape {arr.shape}.")
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValidationError(f"{name} contains {bad} non-finite value(s) (NaN or inf); "
                              f"all entries must be finite.")
    return arr


def check_symmetric(arr: np.ndarray, name: str) -> np.ndarray:
    """Check that ``arr`` holds symmetric matrices and return them exactly symmetrised.

    Check that the trailing two axes of ``arr`` form symmetric matrices; return the exactly
    symmetrised array.
    """
    asym = np.max(np.abs(arr - np.swapaxes(arr, -1, -2)), initial=0.0)
    scale = max(1.0, float(np.max(np.abs(arr), initial=0.0)))
    if asym > SYM_RTOL * scale:
        raise ValidationError(f"{name} must be symmetric; max |{name} - {name}^T| = {asym:.3g}. "
                              f"Pass ({name} + {name}.T) / 2 if the asymmetry is rounding.")
    return 0.5 * (arr + np.swapaxes(arr, -1, -2))


def check_psd(arr: np.ndarray, name: str, *, strict: bool) -> None:
    """Check positive (semi)definiteness of symmetric matrices in the trailing axes."""
    eig = np.linalg.eigvalsh(arr)
    lo = float(np.min(eig))
    scale = max(1.0, float(np.max(np.abs(eig))))
    if strict and lo <= 0.0:
        raise ValidationError(f"{name} must be positive definite; its smallest eigenvalue is "
                              f"{lo:.3g}. Add a multiple of the identity or fix the weights.")
    if not strict and lo < -SYM_RTOL * scale:
        raise ValidationError(f"{name} must be positive semidefinite; its smallest eigenvalue is "
                              f"{lo:.3g}.")


def as_rng(rng: Any, name: str = "rng") -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from a Generator, a seed or ``None``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool):
        raise ValidationTypeError(f"{name} must be a numpy.random.Generator, an int seed >= 0 or "
                                  f"None; got a bool.")
    if isinstance(rng, (int, np.integer)):
        if rng < 0:
            raise ValidationError(f"{name} must be a non-negative int seed; got {rng}.")
        return np.random.default_rng(int(rng))
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.default_rng(rng)
    raise ValidationTypeError(f"{name} must be a numpy.random.Generator, an int seed >= 0 or "
                              f"None; got {type(rng).__name__}.")


def check_positive(value: Any, name: str, *, allow_zero: bool = False, integer: bool = False):
    """Check a positive scalar parameter (step size, count, radius...).

    Returns the value as ``int`` (``integer=True``) or ``float``.
    """
    if integer:
        return check_int(value, name, minimum=0 if allow_zero else 1)
    value = check_real(value, name)
    if value < 0 or (value == 0 and not allow_zero):
        cond = ">= 0" if allow_zero else "> 0"
        raise ValidationError(f"{name} must be finite and {cond}; got {value!r}.")
    return value


def check_real(value: Any, name: str, *, minimum: float | None = None,
               maximum: float | None = None, min_inclusive: bool = True,
               max_inclusive: bool = True) -> float:
    """Check a finite real scalar, optionally within bounds, and return it as ``float``.

    Check a finite real scalar, optionally within ``[minimum, maximum]`` (open ends by
    ``min_inclusive`` / ``max_inclusive``); return it as ``float``.
    """
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise ValidationTypeError(f"{name} must be a real number; got {value!r}.")
    if isinstance(value, complex) or (isinstance(value, np.generic)
                                      and np.iscomplexobj(value)):
        raise ValidationTypeError(f"{name} must be a real number; got complex {value!r}.")
    if isinstance(value, np.ndarray):
        if value.ndim != 0:
            raise ValidationTypeError(f"{name} must be a real scalar; got an array of shape "
                                      f"{value.shape}.")
        value = value.item()
        if isinstance(value, (bool, complex)):
            raise ValidationTypeError(f"{name} must be a real number; got {value!r}.")
    if not isinstance(value, numbers.Real):
        raise ValidationTypeError(f"{name} must be a real number; got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValidationError(f"{name} must be finite; got {value!r}.")
    _check_range(value, name, minimum, maximum, min_inclusive, max_inclusive)
    return value


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int | None = None) -> int:
    """Check an integer scalar and return it as ``int``.

    Check an integer scalar (bools rejected; integral floats such as ``5.0`` rejected too, so
    that a typo like ``1e3`` for a count is seen); return it as ``int``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValidationTypeError(f"{name} must be an integer; got {value!r} "
                                  f"({type(value).__name__}).")
    value = int(value)
    _check_range(value, name, minimum, maximum, True, True)
    return value


def check_probability(value: Any, name: str, *, allow_zero: bool = False,
                      allow_one: bool = False) -> float:
    """Check a probability / confidence level in (0, 1) (ends optional)."""
    return check_real(value, name, minimum=0.0, maximum=1.0, min_inclusive=allow_zero,
                      max_inclusive=allow_one)


def _check_range(value, name, minimum, maximum, min_inclusive, max_inclusive) -> None:
    lo_bad = minimum is not None and (value < minimum or (value == minimum and not min_inclusive))
    hi_bad = maximum is not None and (value > maximum or (value == maximum and not max_inclusive))
    if lo_bad or hi_bad:
        lo = "" if minimum is None else ("[" if min_inclusive else "(") + f"{minimum:g}"
        hi = "" if maximum is None else f"{maximum:g}" + ("]" if max_inclusive else ")")
        if minimum is not None and maximum is not None:
            want = f"in {lo}, {hi}"
        elif minimum is not None:
            want = (">= " if min_inclusive else "> ") + f"{minimum:g}"
        else:
            want = ("<= " if max_inclusive else "< ") + f"{maximum:g}"
        raise ValidationError(f"{name} must be {want}; got {value!r}.")


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``.

    Names of variants, backends, methods, strategies... The error lists the valid ones.
    """
    choices = list(choices)
    if isinstance(value, np.ndarray) or not any(
            type(value) is type(c) and value == c for c in choices):
        valid = ", ".join(repr(c) for c in choices)
        hint = ""
        if isinstance(value, str):
            import difflib
            close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
            if not close:                   # 'TOW' for 'tow': compare ignoring case too
                lower = {str(c).lower(): str(c) for c in choices}
                close = [lower[c] for c in difflib.get_close_matches(value.lower(), list(lower),
                                                                     n=1)]
            if close:
                hint = f" Did you mean {close[0]!r}?"
        raise ValidationError(f"{name} must be one of {valid}; got {value!r}.{hint}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Check a boolean flag (``True``/``False`` or a NumPy bool; not 0/1 or strings)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValidationTypeError(f"{name} must be True or False; got {value!r}.")
    return bool(value)


def check_callable(value: Any, name: str, *, allow_none: bool = False):
    """Check that ``value`` is callable (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    if not callable(value):
        raise ValidationTypeError(f"{name} must be callable; got {type(value).__name__}.")
    return value


def check_size(n_entries: float, name: str, *, what: str, alternative: str,
               limit: float = MAX_ARRAY_ENTRIES) -> None:
    """Refuse a request whose estimated size exceeds ``limit``, before allocating.

    Refuse a request whose estimated size (float64 entries or elementary steps) exceeds
    ``limit``, before allocating or looping.

    The message states the request, the estimate and the alternative.
    """
    if n_entries > limit:
        raise ValidationError(
            f"{name}: this request needs about {n_entries:.3g} {what} "
            f"(about {8 * n_entries / 2**30:.3g} GiB as float64), above metalqr's limit of "
            f"{limit:.3g}. {alternative}")


def check_same_length(arrays: Sequence[tuple[str, Any]], axis_name: str = "length") -> int:
    """Check that the leading axes of named arrays agree; return the common length."""
    lengths = [(name, len(a)) for name, a in arrays]
    first = lengths[0][1]
    for name, n in lengths[1:]:
        if n != first:
            desc = ", ".join(f"{nm}: {ln}" for nm, ln in lengths)
            raise ValidationError(f"{name} has {axis_name} {n} but {lengths[0][0]} has {first}; "
                                  f"they must agree ({desc}).")
    return first


def as_seed(rng: Any, name: str = "rng", *, allow_none: bool = False) -> int | None:
    """Return an int root seed ``>= 0`` from ``rng`` (an int seed, a Generator or ``None``).

    Used by functions that derive several keyed streams (``default_rng([seed, key])``) from one
    root and record it: an int is returned as it is (so ``rng=s`` reproduces the run with
    seed ``s``); a Generator gives one draw from it; ``None`` gives fresh entropy, or stays
    ``None`` with ``allow_none`` (the caller has a meaning for it, e.g. derandomised).
    """
    if rng is None and allow_none:
        return None
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValidationError(f"{name} must be a non-negative int seed; got {rng}.")
        return int(rng)
    return int(as_rng(rng, name).integers(0, 2**63 - 1))


def format_radius(rho: Any) -> str:
    """Format a spectral radius (or eigenvalue modulus) for a message compared with 1.

    ``.6g`` normally; the shortest round-trip ``repr`` within ``1e-6`` of 1, so that
    ``1 + 1e-12`` prints as ``1.000000000001`` and never as a bare ``1`` next to ``>= 1``.
    """
    rho = float(rho)
    return repr(rho) if abs(rho - 1.0) < 1e-6 else f"{rho:.6g}"


def _refuse_none_or_masked(value: Any, name: str) -> None:
    """Refuse ``None`` and NumPy masked arrays for :func:`as_float_array`.

    ``np.asarray(None)`` is a NaN (reported as "non-finite" before) and ``np.asarray`` of a
    masked array drops the mask, so that the masked (invalid) entries would silently be used.
    """
    if value is None:
        raise ValidationTypeError(f"{name} must be a real numeric array; got None.")
    if isinstance(value, np.ma.MaskedArray):
        n_masked = int(np.ma.count_masked(value))
        raise ValidationTypeError(
            f"{name} is a numpy masked array ({n_masked} masked entr{'y' if n_masked == 1 else 'ies'}); "
            f"metalqr does not honour masks and would use the masked entries as they are. Pass "
            f"{name}.filled(value) with the value you mean, or np.asarray({name}) to use the data "
            f"as it is.")


def _as_raw_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value)`` for :func:`as_float_array`, with a named error for ragged input.

    A nested list whose rows have different lengths makes NumPy raise a bare ``ValueError``
    ("setting an array element with a sequence"); a Python int beyond the float64 range is
    kept as an object array here and refused by the float64 conversion.
    """
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except OverflowError:
        raise ValidationError(
            f"{name} contains an integer too large for float64 (|x| > 1.8e308); all entries "
            f"must be finite float64 numbers: rescale {name}.") from None
    except (TypeError, ValueError) as exc:
        text = str(exc)
        if "inhomogeneous" in text or "sequence" in text:
            raise ValidationError(
                f"{name} must be a rectangular real numeric array; got a ragged nested sequence "
                f"(ragged: rows of different lengths). Give every row of {name} the same "
                f"length.") from None
        raise ValidationTypeError(f"{name} must be a real numeric array; got "
                                  f"{type(value).__name__} that NumPy cannot convert ({text}).") from None


def _is_real_element(x: Any) -> bool:
    """Whether one element of an object array is a real number (not a bool, string or None)."""
    import decimal
    if isinstance(x, (bool, np.bool_)):
        return False
    return isinstance(x, (numbers.Real, decimal.Decimal)) or (
        isinstance(x, (np.generic, np.ndarray)) and x.ndim == 0 and x.dtype.kind in "iuf")


def _refuse_non_numeric_dtype(raw: np.ndarray, name: str) -> None:
    """Refuse dtypes that convert to float64 with a wrong meaning (or not at all).

    datetime64 / timedelta64 (converted silently to epoch counts), strings and bytes,
    structured and raw-void dtypes, and object arrays holding anything but real numbers
    (strings such as ``"0.1"``, ``None``, bools, complex numbers, nested sequences): each
    gets its own :class:`ValidationTypeError` naming ``name``. Object arrays of Python or
    NumPy real numbers are accepted (converted by :func:`as_float_array`).
    """
    kind = raw.dtype.kind
    if kind in "mM":
        what = "datetime64" if kind == "M" else "timedelta64"
        raise ValidationTypeError(
            f"{name} must be a real numeric array; got a {what} array (dtype {raw.dtype}), "
            f"which metalqr would read as raw epoch counts. Convert {name} to float "
            f"explicitly in the unit you mean, e.g. {name}.astype('{what}[s]').astype(float).")
    if kind in "US":
        raise ValidationTypeError(f"{name} must be a real numeric array; got an array of "
                                  f"strings/bytes (dtype {raw.dtype}). Convert the text to "
                                  f"numbers first (e.g. np.asarray({name}, dtype=float)).")
    if kind == "V":
        if raw.dtype.names:
            raise ValidationTypeError(
                f"{name} must be a plain real numeric array; got a structured array with fields "
                f"{list(raw.dtype.names)} (dtype {raw.dtype}). Pass one field, e.g. "
                f"{name}[{raw.dtype.names[0]!r}].")
        raise ValidationTypeError(f"{name} must be a real numeric array; got raw bytes (void "
                                  f"dtype {raw.dtype}).")
    if kind == "O":
        for x in raw.flat:
            if _is_real_element(x):
                continue
            if x is None:
                what = "None"
            elif isinstance(x, (str, bytes)):
                what = f"a string {x!r}"
            elif isinstance(x, (bool, np.bool_)):
                what = f"a bool {x!r}"
            elif isinstance(x, (complex, np.complexfloating)):
                what = f"a complex number {x!r}"
            else:
                what = f"a {type(x).__name__}"
            raise ValidationTypeError(
                f"{name} must be a real numeric array; its object-dtype entries must be real "
                f"numbers but one is {what}. Pass {name} with numeric entries (floats or ints).")
