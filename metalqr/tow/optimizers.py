"""Meta-optimisers as TOW state-transition dynamics and their linearisations
(Appendix G of the TOW paper).

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

from ..exceptions import ValidationError

__all__ = ["SGD", "Adam", "make_optimizer"]


@dataclass(frozen=True)
class SGD:
    """Eq. (90): ``x_{t+1} = x_t - alpha J_t' u_t``; Eq. (92): ``f_x = I - alpha H``, ``f_u = -alpha J_t'``."""

    alpha: float

    def state_size(self, D: int) -> int:
        return D

    def initial_state(self, x: np.ndarray) -> np.ndarray:
        return np.array(x, dtype=float)

    def params(self, z: np.ndarray, D: int) -> np.ndarray:
        return z[:D]

    def step(self, z: np.ndarray, g: np.ndarray, tau: int) -> np.ndarray:
        return z - self.alpha * g

    def linearize(self, z, g, G, H, tau):
        f_z = np.eye(z.size) - self.alpha * H if H.ndim == 2 else 1.0 - self.alpha * H
        return f_z, -self.alpha * G


@dataclass(frozen=True)
class Adam:
    """Eq. (94)-(98) of the TOW paper (``eps`` inside the square root, as printed):
    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``x = x - alpha (m / c1) / sqrt(v / c2 + eps)`` with ``c_i = 1 - b_i^tau`` and ``tau`` the
    1-based update count.

    Linearisation (Eq. (99)-(105), re-derived): with ``s = sqrt(v'/c2 + eps)``,
    ``dx'/dm' = -alpha / (c1 s)`` and ``dx'/dv' = alpha m' / (2 c1 c2 s^3)``. The paper's
    Eq. (102) writes the latter's denominator as ``2 sqrt((1 - b2^t) v)``, which is exact only
    for ``eps = 0``.
    """

    alpha: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def state_size(self, D: int) -> int:
        return 3 * D

    def initial_state(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return np.concatenate([x, np.zeros_like(x), np.zeros_like(x)])

    def params(self, z: np.ndarray, D: int) -> np.ndarray:
        return z[:D]

    def _parts(self, z, g, tau):
        if tau < 1:
            raise ValidationError(f"Adam's update count tau must be >= 1; got {tau}.")
        D = z.size // 3
        x, m, v = z[:D], z[D:2 * D], z[2 * D:]
        m2 = self.beta1 * m + (1 - self.beta1) * g
        v2 = self.beta2 * v + (1 - self.beta2) * g * g
        c1, c2 = 1 - self.beta1**tau, 1 - self.beta2**tau
        s = np.sqrt(v2 / c2 + self.eps)
        return x, m2, v2, c1, c2, s

    def step(self, z: np.ndarray, g: np.ndarray, tau: int) -> np.ndarray:
        x, m2, v2, c1, c2, s = self._parts(z, g, tau)
        return np.concatenate([x - self.alpha * m2 / (c1 * s), m2, v2])

    def linearize(self, z, g, G, H, tau):
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
    """``"sgd"`` or ``"adam"`` with meta step size ``alpha``."""
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValidationError(f"alpha must be a positive finite step size; got {alpha!r}.")
    if name == "sgd":
        return SGD(alpha)
    if name == "adam":
        return Adam(alpha)
    raise ValidationError(f"optimizer must be 'sgd' or 'adam'; got {name!r}.")
