"""A small convolutional network in NumPy (convolution as 9 shifted matrix products) with the interface of :class:`~metalqr.tow.MLP`.

``blocks`` blocks of [3 x 3 convolution with zero padding 1, bias, ReLU, 2 x 2 max-pooling
(floor)] followed by a linear layer to ``n_out``: the "Conv-4" embedding of Prototypical
Networks / MAML on Omniglot, shrunk to run on a CPU. Parameters live in one flat vector ``x``.
Inputs are flattened square images ``(n, side**2)``.

Provided: ``predict``, ``vjp`` (batched cotangents, as the MLP: Jacobian rows for ProtoNet's
exact and Monte-Carlo Gauss-Newton curvature), ``loss_and_grad`` (first-order MAML) and
``gauss_newton_diagonal`` (exact, from per-sample Jacobian rows). ReLU and max-pooling are
piecewise linear, so these are exact wherever no pre-activation is exactly 0 and no pooling
window has a tie. The Hessian-vector product of second-order MAML is not provided.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validation import as_float_array, check_choice, check_int
from ..exceptions import ValidationError
from .mlp import output_loss, softmax

__all__ = ["ConvNet"]

_CHUNK = 4_000_000           # float64 entries of one layer's activations per vjp chunk
_PAIR_CHUNK = 200_000        # the same for the per-(row, sample) path (cache-sized: 3x faster than 4e6)


@dataclass(frozen=True)
class ConvNet:
    """A small convolutional network for square grey images.

    ``side x side`` grey images -> ``blocks`` x [conv 3x3 (``channels``), ReLU, max-pool 2] ->
    linear ``n_out``.

    Parameters
    ----------
    n_in : int
        ``side**2`` (a square image, flattened row by row).
    channels : int
        Feature maps of every convolution.
    blocks : int
        Number of conv blocks; the side halves (floor) at each, and must stay >= 1.
    n_out : int
        Output (embedding or logit) size.
    loss : {"mse", "ce"}
        Loss of :meth:`loss_and_grad`.

    Raises
    ------
    ValidationError, ValidationTypeError
        A size out of range, ``n_in`` not a square number, or too many blocks for the image.
    """

    n_in: int = 784
    channels: int = 16
    blocks: int = 3
    n_out: int = 64
    loss: str = "mse"

    def __post_init__(self):
        check_int(self.n_in, "n_in", minimum=1)
        side = int(round(np.sqrt(self.n_in)))
        if side * side != self.n_in:
            raise ValidationError(f"n_in must be a square number (side**2 pixels); got {self.n_in}.")
        check_int(self.channels, "channels", minimum=1)
        check_int(self.blocks, "blocks", minimum=1)
        check_int(self.n_out, "n_out", minimum=1)
        check_choice(self.loss, "loss", ("mse", "ce"))
        if side >> self.blocks < 1:
            raise ValidationError(f"blocks = {self.blocks} halves the {side} x {side} image below 1 pixel; "
                                  f"use at most {side.bit_length() - 1}.")

    # ------------------------------------------------------------------ layout
    @property
    def side(self) -> int:
        """Image side in pixels (``n_in = side**2``)."""
        return int(round(np.sqrt(self.n_in)))

    @property
    def shapes(self):
        """Shapes of the parameter blocks, in the order of the flat vector (list of tuples)."""
        c, shapes, cin = self.channels, [], 1
        for _ in range(self.blocks):
            shapes += [(c, cin * 9), (c,)]
            cin = c
        final = self.side >> self.blocks
        return shapes + [(self.n_out, c * final * final), (self.n_out,)]

    @property
    def size(self) -> int:
        """Number of parameters ``D`` (the length of the flat vector ``x``)."""
        return int(sum(np.prod(s) for s in self.shapes))

    def init(self, rng) -> np.ndarray:
        """Draw initial parameters: He-normal kernels, Glorot-uniform output layer, zero biases.

        Parameters
        ----------
        rng : numpy.random.Generator or int or None
            Source of randomness (an int is a seed).

        Returns
        -------
        x : (D,) ndarray
            The flat parameter vector, ``D =`` :attr:`size`.
        """
        rng = np.random.default_rng(rng)
        parts = []
        shapes = self.shapes
        for i, shape in enumerate(shapes):
            if len(shape) == 1:
                parts.append(np.zeros(shape))
            elif i < len(shapes) - 2:
                parts.append(rng.standard_normal(shape).ravel() * np.sqrt(2.0 / shape[1]))
            else:
                lim = np.sqrt(6.0 / (shape[0] + shape[1]))
                parts.append(rng.uniform(-lim, lim, shape).ravel())
        return np.concatenate(parts)

    def unpack(self, x: np.ndarray):
        """Split the flat parameter vector into its blocks (views, shapes of :attr:`shapes`).

        Parameters
        ----------
        x : (D,) ndarray
            Flat parameter vector (not checked: the learners check it).

        Returns
        -------
        list of ndarray
            One view of ``x`` per block, shaped as :attr:`shapes`.
        """
        out, pos = [], 0
        for shape in self.shapes:
            n = int(np.prod(shape))
            out.append(x[pos:pos + n].reshape(shape))
            pos += n
        return out

    # ------------------------------------------------------------------ passes
    def _forward(self, x, s):
        P = self.unpack(x)
        A = s.reshape(len(s), self.side, self.side, 1)
        cache = []
        for b in range(self.blocks):
            W, bias = P[2 * b], P[2 * b + 1]
            n, H, Wd, C = A.shape
            c = W.shape[0]
            Wk = W.reshape(c, C, 3, 3)
            Ap = np.pad(A, ((0, 0), (1, 1), (1, 1), (0, 0)))
            Z = np.broadcast_to(bias, (n, H, Wd, c)).copy()
            for i in range(3):                   # convolution as 9 shifted matrix products
                for j in range(3):
                    Z += Ap[:, i:i + H, j:j + Wd] @ Wk[:, :, i, j].T
            Rl = np.maximum(Z, 0.0)
            H2, W2 = H // 2, Wd // 2
            win = Rl[:, :2 * H2, :2 * W2].reshape(n, H2, 2, W2, 2, c).transpose(0, 1, 3, 5, 2, 4)
            win = win.reshape(n, H2, W2, c, 4)
            arg = np.argmax(win, axis=-1)[..., None]
            A = np.take_along_axis(win, arg, axis=-1)[..., 0]                   # (n, H2, W2, c)
            mask = np.arange(4) == arg                                          # the maximum of each window
            cache.append((Ap, Z, mask, (n, H, Wd, C)))
        feat = A.reshape(len(s), -1)
        out = feat @ P[-2].T + P[-1]
        return cache, feat, out

    def predict(self, x: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Return the network output.

        Parameters
        ----------
        x : (D,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Flattened images.

        Returns
        -------
        (n, n_out) ndarray
            Outputs (regression values or logits).

        Notes
        -----
        The arguments are not checked here: this is the fast path the learners call after
        checking them (:meth:`check_input` checks a batch of images).
        """
        return self._forward(x, s)[2]

    def vjp(self, x: np.ndarray, s: np.ndarray, dout: np.ndarray) -> np.ndarray:
        """Return vector-Jacobian products by back-propagation.

        ``sum_n dout_n' d out_n / d x`` for ``dout`` (n, n_out), or a batch (..., n, n_out)
        -> (..., D), by back-propagation (chunked over the batch to bound memory).

        Parameters
        ----------
        x : (D,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Flattened images.
        dout : (n, n_out) or (..., n, n_out) array_like
            Output cotangents.

        Returns
        -------
        (D,) or (..., D) ndarray
            The products, one per cotangent.

        Notes
        -----
        The arguments are not checked here: this is the fast path the learners call after
        checking them (:meth:`check_input` checks a batch of images).
        """
        cache, feat, _ = self._forward(x, s)
        return self._vjp_from(x, cache, feat, dout)

    def _vjp_from(self, x, cache, feat, dout):
        """:meth:`vjp` from a forward pass's ``cache`` and ``feat``."""
        lead, (n, C) = dout.shape[:-2], dout.shape[-2:]
        R = int(np.prod(lead))
        dout = dout.reshape(R, n, C)
        nz = np.any(dout != 0.0, axis=-1)                                   # (R, n): samples each row touches
        if R > 1 and 2 * int(nz.sum()) <= R * n:
            return self._vjp_sparse(x, cache, feat, dout, nz).reshape(*lead, -1)
        per_row = n * self.side * self.side * self.channels
        step = max(1, _CHUNK // max(per_row, 1))
        g = np.concatenate([self._backward(x, cache, feat, dout[i:i + step]) for i in range(0, R, step)])
        return g.reshape(*lead, -1)

    def _vjp_sparse(self, x, cache, feat, dout, nz):
        """Return the vjp of rows that each touch few samples.

        Jacobian rows of one sample, as in the Gauss-Newton diagonals. One back-propagation
        per (row, sample) pair with a nonzero cotangent instead of one per row through the
        whole batch, summed per row. The same sums as :meth:`_backward` in another order
        (equal to rounding).
        """
        R = dout.shape[0]
        rows, samples = np.nonzero(nz)                                      # row-major: rows sorted
        out = np.zeros((R, self.size))
        step = max(1, min(_CHUNK, _PAIR_CHUNK) // max(self.side * self.side * self.channels, 1))
        for i in range(0, rows.size, step):
            r, m = rows[i:i + step], samples[i:i + step]
            g = self._backward_pairs(x, cache, feat, dout[r, m], m)
            starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
            out[r[starts]] += np.add.reduceat(g, starts, axis=0)
        return out

    def _backward_pairs(self, x, cache, feat, dp, m):
        """Per-pair parameter gradients (P, D) of cotangents ``dp`` (P, n_out) on samples ``m`` (P,)."""
        P = self.unpack(x)
        Np = len(m)
        grads = [None] * len(P)
        grads[-2] = (dp[:, :, None] * feat[m][:, None, :]).reshape(Np, -1)
        grads[-1] = dp
        final = self.side >> self.blocks
        dA = (dp @ P[-2]).reshape(Np, final, final, self.channels)
        for b in reversed(range(self.blocks)):
            Ap, Z, mask, (_, H, Wd, Cin) = cache[b]
            Ap, Z, mask = Ap[m], Z[m], mask[m]
            W = P[2 * b]
            c = W.shape[0]
            Wk = W.reshape(c, Cin, 3, 3)
            H2, W2 = H // 2, Wd // 2
            dwin = dA[..., None] * mask                                         # (P, H2, W2, c, 4)
            dZ = np.zeros((Np, H, Wd, c))
            dZ[:, :2 * H2, :2 * W2] = dwin.reshape(Np, H2, W2, c, 2, 2).transpose(0, 1, 4, 2, 5, 3) \
                .reshape(Np, 2 * H2, 2 * W2, c)
            dZ *= Z > 0
            dZr = dZ.reshape(Np, H * Wd, c)
            dZt = dZr.transpose(0, 2, 1)
            gW = np.empty((Np, c, Cin, 3, 3))
            for i in range(3):
                for j in range(3):
                    gW[:, :, :, i, j] = np.matmul(dZt, Ap[:, i:i + H, j:j + Wd].reshape(Np, H * Wd, Cin))
            grads[2 * b] = gW.reshape(Np, -1)
            grads[2 * b + 1] = dZr.sum(1)
            if b == 0:
                break
            dAp = np.zeros((Np, H + 2, Wd + 2, Cin))
            for i in range(3):
                for j in range(3):
                    dAp[:, i:i + H, j:j + Wd] += dZ @ Wk[:, :, i, j]
            dA = dAp[:, 1:-1, 1:-1]
        return np.concatenate(grads, axis=-1)

    def _backward(self, x, cache, feat, dout):
        P = self.unpack(x)
        R, n, _ = dout.shape
        grads = [None] * len(P)
        grads[-2] = np.einsum("rno,nf->rof", dout, feat).reshape(R, -1)
        grads[-1] = dout.sum(1)
        final = self.side >> self.blocks
        dA = (dout.reshape(R * n, -1) @ P[-2]).reshape(R, n, final, final, self.channels)
        for b in reversed(range(self.blocks)):
            Ap, Z, mask, (_, H, Wd, Cin) = cache[b]
            W = P[2 * b]
            c = W.shape[0]
            Wk = W.reshape(c, Cin, 3, 3)
            H2, W2 = H // 2, Wd // 2
            dwin = dA[..., None] * mask                                         # (R, n, H2, W2, c, 4)
            dZ = np.zeros((R, n, H, Wd, c))
            dZ[:, :, :2 * H2, :2 * W2] = dwin.reshape(R, n, H2, W2, c, 2, 2).transpose(0, 1, 2, 5, 3, 6, 4) \
                .reshape(R, n, 2 * H2, 2 * W2, c)
            dZ *= Z > 0
            dZr = dZ.reshape(R, n * H * Wd, c)
            gW = np.empty((R, c, Cin, 3, 3))
            for i in range(3):
                for j in range(3):
                    sl = Ap[:, i:i + H, j:j + Wd].reshape(n * H * Wd, Cin)
                    gW[:, :, :, i, j] = np.matmul(dZr.transpose(0, 2, 1), sl)
            grads[2 * b] = gW.reshape(R, -1)
            grads[2 * b + 1] = dZr.sum(1)
            if b == 0:
                break
            dAp = np.zeros((R, n, H + 2, Wd + 2, Cin))
            for i in range(3):
                for j in range(3):
                    dAp[:, :, i:i + H, j:j + Wd] += dZ @ Wk[:, :, i, j]
            dA = dAp[:, :, 1:-1, 1:-1]
        return np.concatenate(grads, axis=-1)

    def loss_and_grad(self, x: np.ndarray, s: np.ndarray, y: np.ndarray):
        """Return the network's loss on ``(s, y)`` and its gradient with respect to ``x``.

        Parameters
        ----------
        x : (D,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Flattened images.
        y : (n, n_out) real targets (``"mse"``) or (n,) int labels (``"ce"``)
            Targets.

        Returns
        -------
        loss : float
            Mean squared error or mean cross-entropy.
        grad : (D,) ndarray
            Its gradient.

        Notes
        -----
        The arguments are not checked here: this is the fast path the learners call after
        checking them (:meth:`check_input` checks a batch of images).
        """
        cache, feat, out = self._forward(x, s)          # one forward pass, reused by the backward one
        value, dout, _ = output_loss(out, y, self.loss)
        return value, self._backward(x, cache, feat, dout[None])[0]

    def _linearize(self, x: np.ndarray, s: np.ndarray):
        """Return the outputs for inputs ``s`` and their vjp from one forward pass.

        Outputs (n, n_out) and ``dout (..., n, n_out) -> (..., D)``: what :meth:`predict` then
        :meth:`vjp` compute, with one forward pass instead of two.
        """
        cache, feat, out = self._forward(x, s)
        return out, lambda dout: self._vjp_from(x, cache, feat, dout)

    def hvp(self, x, s, y, v):
        """Refuse: the network has no Hessian-vector product.

        Parameters
        ----------
        x, s, y, v : ndarray
            As for :meth:`metalqr.tow.MLP.hvp`.

        Raises
        ------
        metalqr.ValidationError
            Always: use first-order MAML or ProtoNet on this network.
        """
        raise ValidationError("ConvNet has no Hessian-vector product: second-order MAML is not available on it; "
                              "use first-order MAML (learner 'fomaml') or ProtoNet.")

    def gauss_newton_diagonal(self, x: np.ndarray, s: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """Return the exact diagonal of the Gauss-Newton matrix of the loss.

        Diagonal of ``sum_n J_n' H_n J_n`` (``J_n = d out_n / d x``, ``H_n`` the output
        Hessian of the loss: ``2/n I`` for MSE, ``(diag p_n - p_n p_n') / n`` for CE),
        exact, from ``n * n_out`` back-propagated rows ``e_n (H_n^{1/2})_k``.

        Parameters
        ----------
        x : (D,) array_like
            Flat parameter vector.
        s : (n, n_in) array_like
            Flattened images.
        y : array_like, optional
            Accepted for symmetry with :meth:`loss_and_grad` and ignored.

        Returns
        -------
        (D,) ndarray
            The Gauss-Newton diagonal (non-negative).

        Notes
        -----
        The arguments are not checked here: this is the fast path the learners call after
        checking them (:meth:`check_input` checks a batch of images).
        """
        out = self.predict(x, s)
        n, C = out.shape
        if self.loss == "mse":
            L = np.broadcast_to(np.sqrt(2.0 / n) * np.eye(C), (n, C, C))
        else:
            p = softmax(out)
            H = (np.einsum("nc,cd->ncd", p, np.eye(C)) - p[:, :, None] * p[:, None, :]) / n
            w, V = np.linalg.eigh(H)
            L = V * np.sqrt(np.clip(w, 0.0, None))[:, None, :]          # H_n = L_n L_n'
        rows = np.zeros((n, C, n, C))
        rows[np.arange(n), :, np.arange(n), :] = np.swapaxes(L, 1, 2)   # row (m, k): sample m, column k of L_m
        Jrows = self.vjp(x, s, rows.reshape(n * C, n, C))
        return np.sum(Jrows * Jrows, axis=0)

    def check_input(self, s) -> np.ndarray:
        """Validate a batch of flattened images.

        Parameters
        ----------
        s : (n, n_in) array_like
            Flattened images (finite, real).

        Returns
        -------
        (n, n_in) ndarray
            ``s`` as float64.

        Raises
        ------
        ValidationError, ValidationTypeError
            ``s`` not a finite real matrix with ``n_in`` columns.
        """
        return as_float_array(s, "s", ndim=2, shape=(None, self.n_in))
