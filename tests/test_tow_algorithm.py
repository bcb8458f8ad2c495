"""Algorithm 1 of the TOW paper as printed (line search and acceptance rule), the terminal
cost of Eq. (7), the paper preset, and the speed-ups of the TOW window (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

import metalqr
from metalqr.tow import convnet as cv


# ---------------------------------------------------------------- sparse ConvNet vjp (speed-up)
@pytest.mark.parametrize("chunk", [None, 10])
def test_convnet_sparse_rows_vjp_equals_dense_backpropagation(chunk, monkeypatch):
    """Rows touching one or two samples take the per-(row, sample) path; it must give the
    dense back-propagation's numbers (and a finite-difference Jacobian's), also when the
    pairs of one row are split across chunks."""
    net = cv.ConvNet(n_in=49, channels=3, blocks=2, n_out=4, loss="ce")
    rng = np.random.default_rng(3)
    x = net.init(1) + 0.05 * rng.standard_normal(net.size)
    s = rng.random((5, 49))
    n, C = 5, 4
    rows = np.zeros((n * C, n, C))
    for m in range(n):
        rows[m * C:(m + 1) * C, m] = rng.standard_normal((C, C))
    rows[3, 0] = rng.standard_normal(C)               # a row with two samples
    if chunk is not None:
        monkeypatch.setattr(cv, "_CHUNK", chunk)
    got = net.vjp(x, s, rows)
    cache, feat, _ = net._forward(x, s)
    dense = net._backward(x, cache, feat, rows)
    assert np.allclose(got, dense, rtol=1e-12, atol=1e-14)
    eps, J = 1e-6, np.zeros((n, C, net.size))
    for k in range(net.size):
        e = np.zeros(net.size)
        e[k] = eps
        J[..., k] = (net.predict(x + e, s) - net.predict(x - e, s)) / (2 * eps)
    assert np.allclose(got, np.einsum("rnc,ncd->rd", rows, J), atol=1e-7)
    zero_row = rows.copy()
    zero_row[5] = 0.0                                 # an all-zero row gives a zero gradient
    assert np.all(net.vjp(x, s, zero_row)[5] == 0.0)
