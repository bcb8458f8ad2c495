"""A small fully connected regression network with hand-written forward/backward passes.

Parameters live in one flat vector ``x`` (the TOW state). Layout: ``W1 (h, n_in), b1 (h),
W2 (h, h), b2 (h), W3 (n_out, h), b3 (n_out)``, tanh hidden activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MLP"]


@dataclass(frozen=True)
class MLP:
    """Two-hidden-layer tanh MLP ``n_in -> h -> h -> n_out`` on flat parameter vectors."""

    n_in: int = 1
    hidden: int = 40
    n_out: int = 1

    @property
    def shapes(self):
        h = self.hidden
        return [(h, self.n_in), (h,), (h, h), (h,), (self.n_out, h), (self.n_out,)]

    @property
    def size(self) -> int:
        return int(sum(np.prod(s) for s in self.shapes))

    def init(self, rng) -> np.ndarray:
        """Glorot-uniform weights, zero biases."""
        rng = np.random.default_rng(rng)
        parts = []
        for shape in self.shapes:
            if len(shape) == 2:
                lim = np.sqrt(6.0 / (shape[0] + shape[1]))
                parts.append(rng.uniform(-lim, lim, shape).ravel())
            else:
                parts.append(np.zeros(shape))
        return np.concatenate(parts)

    def unpack(self, x: np.ndarray):
        out, pos = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append(x[pos:pos + n].reshape(shape))
            pos += n
        return out

    def _forward(self, x, s):
        W1, b1, W2, b2, W3, b3 = self.unpack(x)
        a1 = np.tanh(s @ W1.T + b1)
        a2 = np.tanh(a1 @ W2.T + b2)
        return a1, a2, a2 @ W3.T + b3

    def predict(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Network output for inputs ``s`` (n, n_in)."""
        return self._forward(x, s)[2]

    def loss_and_grad(self, x: np.ndarray, s: np.ndarray, y: np.ndarray):
        """Mean squared error ``mean_n |f(s_n) - y_n|^2`` and its gradient w.r.t. ``x``."""
        W1, b1, W2, b2, W3, b3 = self.unpack(x)
        a1, a2, out = self._forward(x, s)
        n = s.shape[0]
        r = out - y
        loss = float(np.sum(r * r) / n)
        dout = 2.0 * r / n
        dz2 = (dout @ W3) * (1 - a2 * a2)
        dz1 = (dz2 @ W2) * (1 - a1 * a1)
        grad = np.concatenate([(dz1.T @ s).ravel(), dz1.sum(0), (dz2.T @ a1).ravel(), dz2.sum(0),
                               (dout.T @ a2).ravel(), dout.sum(0)])
        return loss, grad

    def gauss_newton_diagonal(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Diagonal of the Gauss-Newton matrix of the MSE loss, ``(2/n) sum_n J_n^2`` with
        ``J_n = d f(s_n) / d x`` (exact Hessian diagonal minus the residual term; single output)."""
        W1, b1, W2, b2, W3, b3 = self.unpack(x)
        a1, a2, _ = self._forward(x, s)
        n = s.shape[0]
        dz2 = W3[0][None, :] * (1 - a2 * a2)                      # (n, h): d out / d z2
        dz1 = (dz2 @ W2) * (1 - a1 * a1)                          # (n, h)
        sq = lambda a: np.sum(a * a, axis=0)
        parts = [np.einsum("ni,nj->ij", dz1**2, s**2).ravel(), sq(dz1),
                 np.einsum("ni,nj->ij", dz2**2, a1**2).ravel(), sq(dz2),
                 sq(a2).ravel(), np.full(1, float(n))]
        return 2.0 / n * np.concatenate(parts)
