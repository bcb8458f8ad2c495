"""A small fully connected network with hand-written forward/backward passes.

Parameters live in one flat vector ``x`` (the TOW state). Layout: ``W1 (h, n_in), b1 (h),
W2 (h, h), b2 (h), W3 (n_out, h), b3 (n_out)``, tanh hidden activations.

Losses: mean squared error (``"mse"``, regression) and softmax cross-entropy (``"ce"``,
labels as integers). Besides the loss gradient the network provides the exact
Hessian-vector product (Pearlmutter's R-operator, used by second-order MAML), per-output
Jacobian rows (used by Prototypical Networks) and Gauss-Newton diagonals (TOW's curvature,
Appendix H of the TOW paper: ``J' H_out J`` with the output Hessian of the loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._validation import as_float_array, as_rng, check_choice, check_int, check_size
from ..exceptions import ValidationError, ValidationTypeError

__all__ = ["MLP", "softmax", "output_loss"]

Loss = Literal["mse", "ce"]
_LAYOUTS: dict = {}


def softmax(z: np.ndarray) -> np.ndarray:
    """Softmax along the last axis of a finite real array ``z`` (..., C), C >= 1."""
    z = as_float_array(z, "z", allow_empty=False)
    if z.ndim < 1:
        raise ValidationError("z must have at least one axis (the classes); got a scalar.")
    return _softmax(z)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def output_loss(out: np.ndarray, y: np.ndarray, loss: Loss):
    """Return the loss, its output gradient and its output Hessian operator.

    Loss value, its gradient w.r.t. the outputs ``out`` (n, C), and a function applying the
    per-sample output Hessian: ``hess(V)`` for ``V`` (..., n, C). MSE: ``mean_n |out_n -
    y_n|^2`` with real targets ``y`` (n, C); CE: ``mean_n -log softmax(out_n)[y_n]`` with
    integer labels ``y`` (n,) in ``[0, C)``.

    Raises
    ------
    ValidationError
        Unknown ``loss``, or ``out`` / ``y`` malformed or of mismatched shapes.
    """
    loss = check_choice(loss, "loss", ("mse", "ce"))
    out = as_float_array(out, "out", ndim=2, allow_empty=False)
    y = _check_targets(y, "y", out.shape[0], out.shape[1], loss)
    return _output_loss(out, y, loss)


def _check_targets(y, name: str, n: int, C: int, loss: str) -> np.ndarray:
    if loss == "mse":
        y = as_float_array(y, name, ndim=2)
        if y.shape != (n, C):
            raise ValidationError(f"{name} must have shape ({n}, {C}) (one real target row per input); "
                                  f"got {y.shape}.")
        return y
    raw = np.asarray(y)
    if raw.ndim != 1 or raw.dtype.kind not in "iu":
        raise ValidationTypeError(f"{name} must be a 1-D array of integer class labels for loss 'ce'; "
                                  f"got dtype {raw.dtype}, shape {raw.shape}.")
    if raw.shape[0] != n:
        raise ValidationError(f"{name} must have {n} labels (one per input); got {raw.shape[0]}.")
    if raw.size and (raw.min() < 0 or raw.max() >= C):
        raise ValidationError(f"{name} labels must be in [0, {C - 1}] (n_out = {C} classes); got range "
                              f"[{raw.min()}, {raw.max()}].")
    return raw


def _output_loss(out, y, loss):
    n = out.shape[0]
    if loss == "mse":
        r = out - y
        return float(np.sum(r * r) / n), 2.0 * r / n, lambda V: 2.0 * V / n
    if loss == "ce":
        p = _softmax(out)
        idx = np.arange(n)
        value = float(-np.mean(np.log(np.maximum(p[idx, y], 1e-300))))
        dout = p.copy()
        dout[idx, y] -= 1.0
        return value, dout / n, lambda V: p * (V - np.sum(p * V, axis=-1, keepdims=True)) / n
    raise ValidationError(f"loss must be 'mse' or 'ce'; got {loss!r}.")


@dataclass(frozen=True)
class MLP:
    """Two-hidden-layer tanh MLP ``n_in -> h -> h -> n_out`` on flat parameter vectors.

    Parameters
    ----------
    n_in, hidden, n_out : int, >= 1
        Input, hidden and output widths (``n_out >= 2`` for ``loss="ce"``).
    loss : {"mse", "ce"}
        Mean squared error (regression) or softmax cross-entropy (integer labels).

    Raises
    ------
    ValidationError
        A width < 1, an unknown loss, or more than ``2**31`` parameters.
    """

    n_in: int = 1
    hidden: int = 40
    n_out: int = 1
    loss: Loss = "mse"

    def __post_init__(self) -> None:
        for name in ("n_in", "hidden", "n_out"):
            object.__setattr__(self, name, check_int(getattr(self, name), name, minimum=1))
        check_choice(self.loss, "loss", ("mse", "ce"))
        if self.loss == "ce" and self.n_out < 2:
            raise ValidationError(f"n_out must be >= 2 (classes) for loss 'ce'; got {self.n_out}.")
        h = float(self.hidden)
        check_size(h * (self.n_in + h + self.n_out + 2) + self.n_out, "MLP", what="parameters",
                   alternative="Use a smaller hidden width.")

    def _x(self, x) -> np.ndarray:
        x = as_float_array(x, "x", ndim=1)
        if x.size != self.size:
            raise ValidationError(f"x must have length {self.size} (this MLP's parameter count); got {x.size}.")
        return x

    def _s(self, s, name: str = "s") -> np.ndarray:
        s = as_float_array(s, name, ndim=2, allow_empty=False)
        if s.shape[1] != self.n_in:
            raise ValidationError(f"{name} must have shape (n, {self.n_in}) (n_in = {self.n_in}); got {s.shape}.")
        return s

    @property
    def shapes(self):
        """Shapes of the six parameter blocks ``W1, b1, W2, b2, W3, b3`` (list of tuples)."""
        h = self.hidden
        return [(h, self.n_in), (h,), (h, h), (h,), (self.n_out, h), (self.n_out,)]

    @property
    def size(self) -> int:
        """Number of parameters ``D`` (the length of the flat vector ``x``)."""
        return int(sum(np.prod(s) for s in self.shapes))

    def init(self, rng) -> np.ndarray:
        """Draw initial parameters: Glorot-uniform weights, zero biases.

        Parameters
        ----------
        rng : numpy.random.Generator, int seed >= 0 or None
            Source of randomness.

        Returns
        -------
        x : (size,) ndarray
            The flat parameter vector.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``rng`` not a Generator, a non-negative int or None.
        """
        rng = as_rng(rng)
        parts = []
        for shape in self.shapes:
            if len(shape) == 2:
                lim = np.sqrt(6.0 / (shape[0] + shape[1]))
                parts.append(rng.uniform(-lim, lim, shape).ravel())
            else:
                parts.append(np.zeros(shape))
        return np.concatenate(parts)

    @property
    def _layout(self):
        out, pos = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append((pos, pos + n, shape))
            pos += n
        return out

    def unpack(self, x: np.ndarray):
        """Return views of the six parameter blocks of the flat vector ``x``.

        Parameters
        ----------
        x : (size,) array_like
            Flat parameter vector (finite, real).

        Returns
        -------
        list of ndarray
            ``W1, b1, W2, b2, W3, b3``, shaped as :attr:`shapes`.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``x`` not a finite real vector of length :attr:`size`.
        """
        return self._unpack(self._x(x))

    def _unpack(self, x: np.ndarray):
        layout = _LAYOUTS.get(self)
        if layout is None:
            layout = _LAYOUTS[self] = self._layout
        return [x[a:b].reshape(shape) for a, b, shape in layout]

    def _forward(self, x, s):
        W1, b1, W2, b2, W3, b3 = self._unpack(x)
        a1 = np.tanh(s @ W1.T + b1)
        a2 = np.tanh(a1 @ W2.T + b2)
        return a1, a2, a2 @ W3.T + b3

    def predict(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Return the network output.

        Parameters
        ----------
        x : (size,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Inputs.

        Returns
        -------
        (n, n_out) ndarray
            Outputs (regression values or logits).

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        """
        return self._forward(self._x(x), self._s(s))[2]

    def vjp(self, x: np.ndarray, s: np.ndarray, dout: np.ndarray) -> np.ndarray:
        """Return vector-Jacobian products by back-propagation.

        ``sum_n dout_n' d out_n / d x`` for ``dout`` (n, n_out), or a batch of them (..., n,
        n_out) -> (..., D): Jacobian rows by batched back-propagation.

        Parameters
        ----------
        x : (size,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Inputs.
        dout : (n, n_out) or (..., n, n_out) array_like
            Output cotangents.

        Returns
        -------
        (size,) or (..., size) ndarray
            The products, one per cotangent.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        """
        x, s = self._x(x), self._s(s)
        dout = as_float_array(dout, "dout")
        if dout.ndim < 2 or dout.shape[-2:] != (s.shape[0], self.n_out):
            raise ValidationError(f"dout must have shape (..., {s.shape[0]}, {self.n_out}) to match s and "
                                  f"n_out; got {dout.shape}.")
        return self._vjp(x, s, dout)

    def _vjp(self, x, s, dout):
        W1, b1, W2, b2, W3, b3 = self._unpack(x)
        a1, a2, _ = self._forward(x, s)
        lead, (n, C) = dout.shape[:-2], dout.shape[-2:]
        R = int(np.prod(lead))
        h = self.hidden
        nz = np.any(dout.reshape(R, n, C) != 0.0, axis=-1)
        if R > 1 and 2 * int(nz.sum()) <= R * n:           # rows of one or few samples (GN rows)
            return self._vjp_sparse(x, s, dout.reshape(R, n, C), nz, a1, a2).reshape(*lead, -1)
        dout2 = dout.reshape(R * n, C)                     # 2-D products: one BLAS call each
        dz2 = (dout2 @ W3).reshape(R, n, h) * (1 - a2 * a2)
        dz1 = (dz2.reshape(R * n, h) @ W2).reshape(R, n, h) * (1 - a1 * a1)
        outer = lambda d, a: (np.swapaxes(d, 1, 2).reshape(-1, n) @ a).reshape(R, -1)
        g = np.concatenate([outer(dz1, s), dz1.sum(1), outer(dz2, a1), dz2.sum(1),
                            outer(dout2.reshape(R, n, C), a2), dout2.reshape(R, n, C).sum(1)], axis=-1)
        return g.reshape(*lead, -1)

    def _vjp_sparse(self, x, s, dout, nz, a1, a2):
        """Return :meth:`_vjp` for rows that each touch few samples.

        :meth:`_vjp` for rows that each touch few samples: one back-propagation per (row,
        sample) pair with a nonzero cotangent, summed per row (the dense sums in another
        order).
        """
        W1, b1, W2, b2, W3, b3 = self._unpack(x)
        R = dout.shape[0]
        rows, samples = np.nonzero(nz)
        counts = nz.sum(axis=1)
        c = int(counts[0])
        if c > 0 and np.all(counts == c):          # c pairs in every row: batched products per row
            dp = dout[rows, samples].reshape(R, c, -1)
            m = samples.reshape(R, c)
            dz2 = (dp @ W3) * (1 - a2[m] * a2[m])                              # (R, c, h)
            dz1 = (dz2 @ W2) * (1 - a1[m] * a1[m])
            outer = lambda d, a: np.matmul(np.swapaxes(d, 1, 2), a).reshape(R, -1)
            return np.concatenate([outer(dz1, s[m]), dz1.sum(1), outer(dz2, a1[m]), dz2.sum(1),
                                   outer(dp, a2[m]), dp.sum(1)], axis=1)
        out = np.zeros((R, self.size))
        step = max(1, 4_000_000 // self.size)
        for i in range(0, rows.size, step):
            r, m = rows[i:i + step], samples[i:i + step]
            dp = dout[r, m]                                                    # (P, C)
            dz2 = (dp @ W3) * (1 - a2[m] * a2[m])
            dz1 = (dz2 @ W2) * (1 - a1[m] * a1[m])
            P = len(m)
            g = np.concatenate([(dz1[:, :, None] * s[m][:, None, :]).reshape(P, -1), dz1,
                                (dz2[:, :, None] * a1[m][:, None, :]).reshape(P, -1), dz2,
                                (dp[:, :, None] * a2[m][:, None, :]).reshape(P, -1), dp], axis=1)
            starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
            out[r[starts]] += np.add.reduceat(g, starts, axis=0)
        return out

    def loss_and_grad(self, x: np.ndarray, s: np.ndarray, y: np.ndarray):
        """Return the network's loss on ``(s, y)`` and its gradient with respect to ``x``.

        Parameters
        ----------
        x : (size,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Inputs.
        y : (n, n_out) real targets (``"mse"``) or (n,) int labels (``"ce"``)
            Targets.

        Returns
        -------
        loss : float
            Mean squared error or mean cross-entropy.
        grad : (size,) ndarray
            Its gradient.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        """
        x, s = self._x(x), self._s(s)
        return self._loss_and_grad(x, s, _check_targets(y, "y", s.shape[0], self.n_out, self.loss))

    def _loss_and_grad(self, x, s, y):
        value, dout, _ = _output_loss(self._forward(x, s)[2], y, self.loss)
        return value, self._vjp(x, s, dout)

    def hvp(self, x: np.ndarray, s: np.ndarray, y: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Return the exact Hessian-vector product of the loss.

        Exact Hessian-vector product ``Hess_x loss(s, y; x) v`` (size,) by the R-operator
        (Pearlmutter 1994): forward-mode derivative of the backward pass along ``v``
        (size,).

        Parameters
        ----------
        x : (size,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Inputs.
        y : (n, n_out) real targets or (n,) int labels
            Targets.
        v : (size,) array_like
            The direction.

        Returns
        -------
        (size,) ndarray
            ``Hess_x loss v``.

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        """
        x, s = self._x(x), self._s(s)
        y = _check_targets(y, "y", s.shape[0], self.n_out, self.loss)
        v = as_float_array(v, "v", shape=(self.size,))
        return self._hvp(x, s, y, v)

    def _hvp(self, x, s, y, v):
        W1, b1, W2, b2, W3, b3 = self._unpack(x)
        V1, c1, V2, c2, V3, c3 = self._unpack(v)
        a1, a2, out = self._forward(x, s)
        _, dout, hess = _output_loss(out, y, self.loss)
        g1, g2 = 1 - a1 * a1, 1 - a2 * a2
        Ra1 = g1 * (s @ V1.T + c1)
        Ra2 = g2 * (Ra1 @ W2.T + a1 @ V2.T + c2)
        Rout = Ra2 @ W3.T + a2 @ V3.T + c3
        Rdout = hess(Rout)
        back2 = dout @ W3
        dz2 = back2 * g2
        Rdz2 = (Rdout @ W3 + dout @ V3) * g2 - 2 * back2 * a2 * Ra2
        back1 = dz2 @ W2
        Rdz1 = (Rdz2 @ W2 + dz2 @ V2) * g1 - 2 * back1 * a1 * Ra1
        return np.concatenate([(Rdz1.T @ s).ravel(), Rdz1.sum(0), (Rdz2.T @ a1 + dz2.T @ Ra1).ravel(),
                               Rdz2.sum(0), (Rdout.T @ a2 + dout.T @ Ra2).ravel(), Rdout.sum(0)])

    def gauss_newton_diagonal(self, x: np.ndarray, s: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Return the diagonal of the Gauss-Newton matrix of the loss.

        Diagonal of the Gauss-Newton matrix ``sum_n J_n' H_n J_n`` of the loss, with ``J_n =
        d out_n / d x`` and ``H_n`` the output Hessian of the loss (``2/n I`` for MSE,
        ``(diag p_n - p_n p_n') / n`` for softmax cross-entropy, which needs no labels).
        Exact Hessian diagonal for MSE minus the residual term.

        Parameters
        ----------
        x : (size,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Inputs.
        y : array_like, optional
            Accepted for symmetry with :meth:`loss_and_grad` and ignored.

        Returns
        -------
        (size,) ndarray
            The Gauss-Newton diagonal (non-negative).

        Raises
        ------
        ValidationError, ValidationTypeError
            A malformed argument, named.
        """
        return self._gauss_newton_diagonal(self._x(x), self._s(s))

    def _gauss_newton_diagonal(self, x, s, y=None):
        W1, b1, W2, b2, W3, b3 = self._unpack(x)
        a1, a2, out = self._forward(x, s)
        n, C = out.shape
        if self.loss == "mse":
            H = np.broadcast_to(2.0 / n * np.eye(C), (n, C, C))
        else:
            p = _softmax(out)
            H = (np.einsum("nc,cd->ncd", p, np.eye(C)) - p[:, :, None] * p[:, None, :]) / n
        # d out_c / d z2_i = W3[c, i] (1 - a2_i^2);  d out_c / d z1 = (d out_c / d z2) W2 (1 - a1^2)
        Jz2 = W3[None, :, :] * (1 - a2 * a2)[:, None, :]            # (n, C, h)
        Jz1 = (Jz2 @ W2) * (1 - a1 * a1)[:, None, :]                # (n, C, h)
        q2 = np.einsum("nci,ncd,ndi->ni", Jz2, H, Jz2)              # J_z' H J_z per unit
        q1 = np.einsum("nci,ncd,ndi->ni", Jz1, H, Jz1)
        hdiag = np.einsum("ncc->nc", H)
        parts = [(q1.T @ (s * s)).ravel(), q1.sum(0), (q2.T @ (a1 * a1)).ravel(), q2.sum(0),
                 (hdiag.T @ (a2 * a2)).ravel(), hdiag.sum(0)]
        return np.concatenate(parts)
