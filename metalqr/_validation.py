"""Input checks shared by the public API (pure helpers, no numerics beyond checks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .exceptions import ValidationError

#: Relative tolerance used for symmetry and semidefiniteness checks.
SYM_RTOL = 1e-8


def as_float_array(value: Any, name: str, ndim: int | None = None,
                   shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """Convert ``value`` to a finite float64 array and check its shape.

    ``shape`` may contain ``None`` for free dimensions. Raises
    :class:`ValidationError` naming ``name`` on any problem.
    """
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} must be a real numeric array; got {type(value).__name__} "
                              f"that cannot be converted to float64 ({exc}).") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValidationError(f"{name} must be a {ndim}-D array; got {arr.ndim}-D array of shape "
                              f"{arr.shape}.")
    if shape is not None:
        if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
            raise ValidationError(f"{name} must have shape {want}; got {arr.shape}.")
    if arr.size and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValidationError(f"{name} contains {bad} non-finite value(s) (NaN or inf); "
                              f"all entries must be finite.")
    return arr


def check_symmetric(arr: np.ndarray, name: str) -> np.ndarray:
    """Check that the trailing two axes of ``arr`` form symmetric matrices; return the
    exactly symmetrised array."""
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


def as_rng(rng: Any) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from a Generator, a seed or ``None``."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise ValidationError(f"rng must be a numpy.random.Generator, an int seed or None; got "
                          f"{type(rng).__name__}.")


def check_positive(value: Any, name: str, *, allow_zero: bool = False, integer: bool = False):
    """Check a positive scalar parameter (step size, count, radius...)."""
    if integer:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValidationError(f"{name} must be an integer; got {value!r}.")
    else:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValidationError(f"{name} must be a real number; got {value!r}.") from None
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        cond = ">= 0" if allow_zero else "> 0"
        raise ValidationError(f"{name} must be finite and {cond}; got {value!r}.")
    return value
