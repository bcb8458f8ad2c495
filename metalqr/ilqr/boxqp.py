"""Box-constrained quadratic programme by projected Newton.

Tassa, Mansard & Todorov 2014, "Control-limited differential dynamic programming", Algorithm 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import check_int, check_real, check_symmetric
from ..exceptions import ValidationError
from ._checks import bounds_array, real_array

__all__ = ["box_qp", "BoxQPResult"]


@dataclass
class BoxQPResult:  # numpydoc ignore=PR01
    """Solution of ``min 0.5 x'Hx + g'x  subject to  lower <= x <= upper``.

    Attributes
    ----------
    x : ndarray (n,)
        The minimiser.
    free : ndarray of bool (n,)
        Components not clamped at a bound at the solution.
    H_free_inv : ndarray (n_free, n_free)
        Inverse of the free block of ``H`` (for the feedback gain).
    ok : bool
        False when the free block of ``H`` is not positive definite.
    residual : float
        First-order optimality residual at ``x``: the norm of the gradient ``Hx + g`` over
        the free components (0 at the exact solution; checked by the backward pass).
    """

    x: np.ndarray
    free: np.ndarray
    H_free_inv: np.ndarray
    ok: bool
    residual: float = float("nan")


def box_qp(H: np.ndarray, g: np.ndarray, lower: np.ndarray, upper: np.ndarray,
           x0: np.ndarray | None = None, max_iterations: int = 100, tol: float = 1e-10) -> BoxQPResult:
    """Solve a small box-constrained QP by projected Newton.

    Projected-Newton solution of a small box-constrained QP ``min 0.5 x'Hx + g'x  subject to
    lower <= x <= upper`` (Tassa, Mansard & Todorov 2014, Algorithm 3).

    At each iteration the variables at a bound whose gradient pushes outward are clamped;
    a Newton step is taken in the free subspace and followed by an Armijo line search
    along the projected arc.

    Parameters
    ----------
    H : (n, n) array
        Symmetric (to rounding), finite, ``n >= 1``.
    g : (n,) array
        Finite linear term.
    lower, upper : scalar or (n,) array
        Bounds; ``-inf``/``inf`` allowed, NaN not, ``lower <= upper``.
    x0 : (n,) array, optional
        Finite starting point (projected into the box).
    max_iterations : int >= 1
        Most projected-Newton iterations.
    tol : float > 0
        Gradient-norm and relative-decrease tolerance.

    Returns
    -------
    BoxQPResult
        ``ok=False`` when the free block of ``H`` is not positive definite.

    Raises
    ------
    ValidationError
        Malformed, non-finite or inconsistent arguments, ``lower > upper`` or a
        non-symmetric ``H``.

    References
    ----------
    Tassa, Mansard and Todorov (2014), "Control-limited differential dynamic
    programming", Algorithm 3; used by the backward pass of the TOW paper [nguyen2023tow],
    Appendix E, with control bounds.
    """
    H = real_array(H, "H", ndim=2)
    n = H.shape[0]
    if n < 1 or H.shape != (n, n):
        raise ValidationError(f"H must be a square (n, n) matrix with n >= 1; got {H.shape}.")
    H = check_symmetric(H, "H")
    g = real_array(g, "g", shape=(n,))
    lower = bounds_array(lower, "lower", n, -np.inf)
    upper = bounds_array(upper, "upper", n, np.inf)
    if np.any(lower > upper):
        i = int(np.argmax(lower > upper))
        raise ValidationError(f"lower must not exceed upper; lower[{i}] = {lower[i]} > "
                              f"upper[{i}] = {upper[i]}.")
    if x0 is not None:
        x0 = real_array(x0, "x0", shape=(n,))
    max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
    tol = check_real(tol, "tol", minimum=0.0, min_inclusive=False)
    return _box_qp(H, g, lower, upper, x0, max_iterations, tol)


def _box_qp(H, g, lower, upper, x0, max_iterations, tol) -> BoxQPResult:
    """:func:`box_qp` without argument checks (the backward pass's checked inputs)."""
    n = g.shape[0]
    x = np.clip(np.zeros(n) if x0 is None else x0, lower, upper)
    free = np.ones(n, dtype=bool)
    inv = np.zeros((0, 0))

    def value(z):
        return 0.5 * z @ H @ z + g @ z

    f = value(x)
    for _ in range(max_iterations):
        grad = g + H @ x
        clamped = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
        free = ~clamped
        if not np.any(free):
            return BoxQPResult(x, free, np.zeros((0, 0)), True, 0.0)
        Hf = H[np.ix_(free, free)]
        try:
            L = np.linalg.cholesky(Hf)
        except np.linalg.LinAlgError:
            return BoxQPResult(x, free, np.zeros((0, 0)), False, float(np.linalg.norm(grad[free])))
        inv = np.linalg.inv(L).T @ np.linalg.inv(L)
        if np.linalg.norm(grad[free]) < tol:
            break
        dx = np.zeros(n)
        # Newton step on the free variables (clamped ones fixed): x_f* = -Hf^{-1}(g_f + H_fc x_c)
        target = -inv @ (g[free] + H[np.ix_(free, clamped)] @ x[clamped])
        dx[free] = target - x[free]
        slope = grad @ dx
        if slope >= -1e-15 * max(1.0, abs(f)):
            break
        step = 1.0
        while step > 1e-12:
            x_new = np.clip(x + step * dx, lower, upper)
            f_new = value(x_new)
            if f_new - f <= 0.1 * step * slope:
                break
            step *= 0.5
        else:
            break
        converged = abs(f - f_new) <= tol * max(1.0, abs(f))
        x, f = x_new, f_new
        if converged:
            break
    grad = g + H @ x
    free = ~(((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0)))
    residual = float(np.linalg.norm(grad[free])) if np.any(free) else 0.0
    if not np.any(free):
        return BoxQPResult(x, free, np.zeros((0, 0)), True, residual)
    Hf = H[np.ix_(free, free)]
    try:
        L = np.linalg.cholesky(Hf)          # the free block must be positive definite
    except np.linalg.LinAlgError:
        return BoxQPResult(x, free, np.zeros((0, 0)), False, residual)
    Linv = np.linalg.inv(L)
    return BoxQPResult(x, free, Linv.T @ Linv, True, residual)
