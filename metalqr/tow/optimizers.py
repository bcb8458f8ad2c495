"""Meta-optimisers as TOW state-transition dynamics and their linearisations (Appendix G of the TOW paper).

The TOW state ``z`` is the optimiser's full state: ``x`` for SGD, ``(x, m, v)`` stacked for
Adam. ``step(z, g, tau)`` applies one update with the weighted gradient ``g = J' u``;
``linearize(z, g, G, H, tau)`` returns ``(f_z, f_u)`` for ``G = J'`` (D x M) and ``H`` the
Hessian of ``u' l(x)``: a (D, D) matrix gives the exact Jacobian, a (D,) vector (a
Gauss-Newton diagonal) gives the diagonal of ``f_z`` used by the diagonal value model (the
off-diagonal blocks of Adam's Jacobian are dropped there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import as_float_array, check_choice, check_int, check_real
from ..exceptions import ValidationError

OPTIMIZERS = ("sgd", "adam")


class _Optimizer:
    """Argument checks shared by :class:`SGD` and :class:`Adam`."""

    def state_size(self, D: int) -> int:
        """Length of the optimiser state for ``D >= 1`` parameters."""
        return self._k * check_int(D, "D", minimum=1)

    def params(self, z: np.ndarray, D: int) -> np.ndarray:
        """Return the meta-parameters ``x`` (D,) inside the state ``z``."""
        D = check_int(D, "D", minimum=1)
        return self._z(z, D * self._k)[:D]

    def _z(self, z, size: int | None = None) -> np.ndarray:
        z = as_float_array(z, "z", ndim=1, allow_empty=False)
        if z.size % self._k or (size is not None and z.size != size):
            want = f"length {size}" if size is not None else f"a length divisible by {self._k}"
            raise ValidationError(f"z must be a {type(self).__name__} state of {want} ({self._k} x the "
                                  f"parameter count); got length {z.size}.")
        return z

    def _args(self, z, g, tau):
        z = self._z(z)
        D = z.size // self._k
        g = as_float_array(g, "g", shape=(D,))
        tau = check_int(tau, "tau", minimum=1)
        return z, g, tau, D

    def _lin_args(self, z, g, G, H, tau):
        z, g, tau, D = self._args(z, g, tau)
        G = as_float_array(G, "G", ndim=2)
        if G.shape[0] != D or G.shape[1] < 1:
            raise ValidationError(f"G must have shape ({D}, M>=1) (one gradient column per task); got {G.shape}.")
        H = as_float_array(H, "H")
        if H.shape not in ((D,), (D, D)):
            raise ValidationError(f"H must be a ({D},) Hessian diagonal or a ({D}, {D}) Hessian; got {H.shape}.")
        return z, g, G, H, tau

__all__ = ["SGD", "Adam", "make_optimizer"]


@dataclass(frozen=True)
class SGD(_Optimizer):
    """Plain SGD as TOW dynamics, Eq. (90) and (92) of the TOW paper.

    Eq. (90) of the TOW paper: ``x_{t+1} = x_t - alpha J_t' u_t``; Eq. (92): ``f_x = I - alpha
    H``, ``f_u = -alpha J_t'``.

    Parameters
    ----------
    alpha : float, > 0
        Meta step size.

    Raises
    ------
    ValidationError, ValidationTypeError
        ``alpha`` not a finite positive real number.

    Notes
    -----
    Methods take ``z`` (D,) the state, ``g`` (D,) the weighted gradient, ``G`` (D, M) the
    task gradients, ``H`` (D,) or (D, D) the Hessian (diagonal) of ``u'l`` and ``tau >= 1``
    the 1-based update count.

    References
    ----------
    TOW paper [nguyen2023tow], Appendix G, Eq. (90) (the update) and Eq. (92) (its
    linearisation).
    """

    alpha: float
    _k = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_real(self.alpha, "alpha", minimum=0.0, min_inclusive=False))

    def initial_state(self, x: np.ndarray) -> np.ndarray:
        """Return the state for meta-parameters ``x``: ``x`` itself.

        Parameters
        ----------
        x : (D,) array_like
            Meta-parameters (finite, real).

        Returns
        -------
        (D,) ndarray
            A copy of ``x``.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``x`` not a non-empty finite real vector.
        """
        return as_float_array(x, "x", ndim=1, allow_empty=False).copy()

    def step(self, z: np.ndarray, g: np.ndarray, tau: int) -> np.ndarray:
        """Apply one update, Eq. (90) of the TOW paper.

        Parameters
        ----------
        z : (D,) array_like
            The state (the meta-parameters).
        g : (D,) array_like
            The weighted gradient ``J' u``.
        tau : int >= 1
            The 1-based update count (unused by SGD; checked).

        Returns
        -------
        (D,) ndarray
            ``z - alpha g``.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed or inconsistent argument, named.
        """
        z, g, tau, _ = self._args(z, g, tau)
        return z - self.alpha * g

    def linearize(self, z, g, G, H, tau):
        """Return the Jacobians ``(f_z, f_u)`` of one update, Eq. (92) of the TOW paper.

        Parameters
        ----------
        z : (D,) array_like
            The state.
        g : (D,) array_like
            The weighted gradient.
        G : (D, M) array_like
            The task gradients ``J'`` (one column per task).
        H : (D,) or (D, D) array_like
            The Hessian of ``u' l(x)``, or its (Gauss-Newton) diagonal.
        tau : int >= 1
            The 1-based update count.

        Returns
        -------
        f_z : (D, D) or (D,) ndarray
            ``I - alpha H`` (a diagonal when ``H`` is one).
        f_u : (D, M) ndarray
            ``-alpha G``.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed or inconsistent argument, named.
        """
        z, g, G, H, tau = self._lin_args(z, g, G, H, tau)
        f_z = np.eye(z.size) - self.alpha * H if H.ndim == 2 else 1.0 - self.alpha * H
        return f_z, -self.alpha * G


@dataclass(frozen=True)
class Adam(_Optimizer):
    """Adam as TOW dynamics, Eq. (94)-(98) of the TOW paper.

    Eq. (94)-(98) of the TOW paper (``eps`` inside the square root, as printed): ``m = b1 m +
    (1-b1) g``, ``v = b2 v + (1-b2) g^2``, ``x = x - alpha (m / c1) / sqrt(v / c2 + eps)`` with
    ``c_i = 1 - b_i^tau`` and ``tau`` the 1-based update count.

    Linearisation (Eq. (99)-(105), re-derived): with ``s = sqrt(v'/c2 + eps)``,
    ``dx'/dm' = -alpha / (c1 s)`` and ``dx'/dv' = alpha m' / (2 c1 c2 s^3)``. The paper's
    Eq. (102) writes the latter's denominator as ``2 sqrt((1 - b2^t) v)``, which is exact only
    for ``eps = 0``.

    Parameters
    ----------
    alpha : float, > 0
        Meta step size.
    beta1, beta2 : float in [0, 1)
        Decay rates of the first and second moments.
    eps : float, > 0
        Added to ``v / c2`` inside the square root.

    Raises
    ------
    ValidationError, ValidationTypeError
        A parameter out of range or not a real number.

    References
    ----------
    TOW paper [nguyen2023tow], Appendix G, Eq. (94)-(98) (the update) and Eq. (99)-(105)
    (its linearisation).
    """

    alpha: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    _k = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_real(self.alpha, "alpha", minimum=0.0, min_inclusive=False))
        for name in ("beta1", "beta2"):
            object.__setattr__(self, name, check_real(getattr(self, name), name, minimum=0.0, maximum=1.0,
                                                      max_inclusive=False))
        object.__setattr__(self, "eps", check_real(self.eps, "eps", minimum=0.0, min_inclusive=False))

    def initial_state(self, x: np.ndarray) -> np.ndarray:
        """Return the state ``(x, m = 0, v = 0)`` for meta-parameters ``x``.

        Parameters
        ----------
        x : (D,) array_like
            Meta-parameters (finite, real).

        Returns
        -------
        (3 D,) ndarray
            ``x`` followed by zero first and second moments.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``x`` not a non-empty finite real vector.
        """
        x = as_float_array(x, "x", ndim=1, allow_empty=False)
        return np.concatenate([x, np.zeros_like(x), np.zeros_like(x)])

    def _parts(self, z, g, tau):
        D = z.size // 3
        x, m, v = z[:D], z[D:2 * D], z[2 * D:]
        m2 = self.beta1 * m + (1 - self.beta1) * g
        v2 = self.beta2 * v + (1 - self.beta2) * g * g
        c1, c2 = 1 - self.beta1**tau, 1 - self.beta2**tau
        s = np.sqrt(v2 / c2 + self.eps)
        return x, m2, v2, c1, c2, s

    def step(self, z: np.ndarray, g: np.ndarray, tau: int) -> np.ndarray:
        """Apply one update, Eq. (94)-(98) of the TOW paper.

        Parameters
        ----------
        z : (3 D,) array_like
            The state ``(x, m, v)``.
        g : (D,) array_like
            The weighted gradient ``J' u``.
        tau : int >= 1
            The 1-based update count (bias correction).

        Returns
        -------
        (3 D,) ndarray
            The next state ``(x', m', v')``.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed or inconsistent argument, named.
        """
        z, g, tau, _ = self._args(z, g, tau)
        x, m2, v2, c1, c2, s = self._parts(z, g, tau)
        return np.concatenate([x - self.alpha * m2 / (c1 * s), m2, v2])

    def linearize(self, z, g, G, H, tau):
        """Return the Jacobians ``(f_z, f_u)`` of one update, Eq. (99)-(105) of the TOW paper.

        Parameters
        ----------
        z : (3 D,) array_like
            The state ``(x, m, v)``.
        g : (D,) array_like
            The weighted gradient.
        G : (D, M) array_like
            The task gradients ``J'`` (one column per task).
        H : (D,) or (D, D) array_like
            The Hessian of ``u' l(x)``, or its (Gauss-Newton) diagonal.
        tau : int >= 1
            The 1-based update count.

        Returns
        -------
        f_z : (3 D, 3 D) or (3 D,) ndarray
            The state Jacobian; for a diagonal ``H``, its diagonal (off-diagonal blocks
            dropped).
        f_u : (3 D, M) ndarray
            The control Jacobian.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed or inconsistent argument, named.
        """
        z, g, G, H, tau = self._lin_args(z, g, G, H, tau)
        x, m2, v2, c1, c2, s = self._parts(z, g, tau)
        b1, b2 = self.beta1, self.beta2
        a = -self.alpha / (c1 * s)                            # d x' / d m'
        b = self.alpha * m2 / (2 * c1 * c2 * s**3)           # d x' / d v'
        w = a * (1 - b1) + 2 * b * (1 - b2) * g               # d x' / d g
        f_u = np.concatenate([w[:, None] * G, (1 - b1) * G, (2 * (1 - b2) * g)[:, None] * G])
        D = x.size
        if H.ndim == 1:                                       # diagonal model
            return np.concatenate([1.0 + w * H, np.full(D, b1), np.full(D, b2)]), f_u
        f_z = np.zeros((3 * D, 3 * D))
        I = np.eye(D)
        f_z[:D, :D] = I + w[:, None] * H
        f_z[:D, D:2 * D] = a * b1 * I
        f_z[:D, 2 * D:] = b * b2 * I
        f_z[D:2 * D, :D] = (1 - b1) * H
        f_z[D:2 * D, D:2 * D] = b1 * I
        f_z[2 * D:, :D] = (2 * (1 - b2) * g)[:, None] * H
        f_z[2 * D:, 2 * D:] = b2 * I
        return f_z, f_u


def make_optimizer(name: str, alpha: float):
    """Return the meta-optimiser ``name`` with meta step size ``alpha``.

    Parameters
    ----------
    name : {"sgd", "adam"}
        The optimiser.
    alpha : float, > 0
        Meta step size.

    Returns
    -------
    SGD or Adam
        The optimiser (Adam with its default ``beta1``, ``beta2``, ``eps``).

    Raises
    ------
    ValidationError
        Unknown name (the valid ones are listed) or ``alpha`` not a finite positive number.
    """
    name = check_choice(name, "optimizer", OPTIMIZERS)
    alpha = check_real(alpha, "alpha", minimum=0.0, min_inclusive=False)
    return SGD(alpha) if name == "sgd" else Adam(alpha)
