"""Argument checks of :mod:`metalqr.ilqr` built on :mod:`metalqr._validation` (private).

The helpers here add what the iLQR package needs beyond the shared ones: arrays that may
hold ``inf`` (control bounds, derivatives at a diverged trajectory), ragged input turned
into a named error, and checks of what user callbacks return.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import as_float_array, check_real
from ..exceptions import ValidationError, ValidationTypeError

__all__ = ["real_array", "bounds_array", "callback_output", "step_sizes", "optional_real"]


def _shape_text(shape) -> str:
    return "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"


def real_array(value: Any, name: str, *, ndim: int | None = None,
               shape: tuple[int | None, ...] | None = None, finite: bool = True,
               allow_empty: bool = True) -> np.ndarray:
    """Return ``value`` as a real float64 array.

    A real float64 array named ``name``; ragged, complex, boolean, string and object input is a
    :class:`~metalqr.ValidationTypeError`. ``finite=False`` admits NaN and inf entries (the
    caller decides what to do with them).
    """
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise ValidationTypeError(f"{name} must be a real numeric array; got "
                                  f"{type(value).__name__}.")
    if not isinstance(value, np.ndarray):
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise ValidationTypeError(f"{name} must be a real numeric array with a regular "
                                      f"shape; got {type(value).__name__} ({exc}).") from None
    if finite:
        return as_float_array(value, name, ndim, shape, allow_empty=allow_empty)
    if value.dtype.kind not in "fiu":
        value = as_float_array(value, name)       # raises the dtype error (or converts objects)
    arr = np.asarray(value, dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValidationError(f"{name} must be a {ndim}-D array; got {arr.ndim}-D array of shape "
                              f"{arr.shape}.")
    if shape is not None and (arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape))):
        raise ValidationError(f"{name} must have shape {_shape_text(shape)}; got {arr.shape}.")
    if not allow_empty and arr.size == 0:
        raise ValidationError(f"{name} must not be empty; got shape {arr.shape}.")
    return arr


def bounds_array(value: Any, name: str, M: int, default: float) -> np.ndarray:
    """Control bounds as an (M,) float array from ``None`` (``default``, +-inf), a scalar or an (M,) array.

    NaN is refused, and so is a lower bound of +inf or an upper bound of -inf.
    """
    if value is None:
        return np.full(M, default)
    arr = real_array(value, name, finite=False)
    if arr.ndim == 0:
        arr = np.full(M, float(arr))
    elif arr.shape != (M,):
        raise ValidationError(f"{name} must be a scalar or have shape ({M},) (one bound per "
                              f"control); got shape {arr.shape}.")
    else:
        arr = arr.copy()
    if np.any(np.isnan(arr)):
        raise ValidationError(f"{name} must not contain NaN; use -inf/inf (or None) for no bound.")
    if np.any(arr == -default):
        raise ValidationError(f"{name} must not contain {-default}: no control could satisfy it.")
    return arr


def callback_output(value: Any, name: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Check what a user callback returned.

    A real array of ``shape`` (entries may be non-finite; the solver treats those as a failed
    trial). ``what`` describes the call.
    """
    if type(value) is np.ndarray and value.dtype == np.float64 and value.shape == shape:
        return value                                   # the common case, checked cheaply
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValidationTypeError(f"{name} must return a real array of shape {shape} {what}; "
                                  f"got {type(value).__name__} ({exc}).") from None
    if arr.dtype.kind not in "fiu":
        if arr.dtype.kind == "c":
            raise ValidationTypeError(f"{name} returned a complex array {what}; it must return "
                                      f"real values (shape {shape}).")
        if arr.dtype.kind == "O":
            try:
                arr = arr.astype(np.float64)
            except (ValueError, TypeError):
                raise ValidationTypeError(f"{name} must return a real array of shape {shape} "
                                          f"{what}; got dtype object.") from None
        else:
            raise ValidationTypeError(f"{name} must return a real array of shape {shape} {what}; "
                                      f"got dtype {arr.dtype}.")
    if arr.shape != shape:
        if arr.size == int(np.prod(shape)) and shape == ():
            arr = arr.reshape(())
        else:
            raise ValidationError(f"{name} must return shape {shape} {what}; got shape "
                                  f"{arr.shape}.")
    return np.asarray(arr, dtype=np.float64)


def step_sizes(value: Any, name: str) -> tuple[float, ...]:
    """Line-search step sizes: a non-empty sequence of reals in (0, 1]."""
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1:
        raise ValidationTypeError(f"{name} must be a non-empty 1-D sequence of step sizes in "
                                  f"(0, 1], e.g. (1.0, 0.5, 0.25); got {value!r}.")
    arr = real_array(value, name, ndim=1, allow_empty=False)
    if np.any(arr <= 0) or np.any(arr > 1):
        raise ValidationError(f"{name} must contain step sizes in (0, 1]; got {arr.tolist()}.")
    return tuple(float(a) for a in arr)


def optional_real(value: Any, name: str, **kw) -> float | None:
    """``None`` or a real scalar checked by :func:`metalqr._validation.check_real`."""
    return None if value is None else check_real(value, name, **kw)
