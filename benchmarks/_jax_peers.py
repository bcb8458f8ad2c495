"""Jit-compiled JAX peers of metalqr's LQR core for ``bench_lqr_core.py`` (issue 15).

Imported only when JAX is installed (``pip install .[bench]``); float64 throughout
(``jax_enable_x64``). Every function takes device arrays made once by :func:`to_device` and
blocks until its result is ready, so the timings are of the computation, not the dispatch
queue. The formulas are metalqr's (Proposition 1 and Eq. (2) of the ZO-MAML paper); the bench
compares their results with SciPy before timing them.

* :func:`dare_sda` - batched structure-preserving doubling (vmap over tasks, ``lax.while_loop``
  per task until the increment is below ``1e-15`` relative), then
  ``K = (R + B'PB)^{-1} B'PA``: the same iteration as ``metalqr.lqr._doubling``.
* :func:`cost_grad_kron` - ``P_K`` and ``Sigma_K`` from ``jnp.linalg.solve`` on the Kronecker
  form ``(I - A_K (x) A_K) vec(X) = vec(W)`` (small ``d``), vmap over tasks.
* :func:`cost_grad_doubling` - the same from the squared Smith (doubling) iteration, both
  equations sharing the powers of ``A_K`` (any ``d``), vmap over tasks.
"""

from __future__ import annotations

import jax

# jax/jaxlib 0.10.x (0.10.2 measured here) wedges for ever in ``block_until_ready`` after a few
# hundred to a few thousand calls of the vmapped Kronecker peer (1000 tasks of d = 4; every
# XLA worker thread idle; ``--xla_cpu_multi_thread_eigen=false`` and disabling CPU async
# dispatch only delay it). jax 0.9.2 ran the same 3000 calls to the end, three times out of
# three, on the same machine. The ``bench`` extra pins ``jax[cpu]<0.10``; refuse a newer one
# here rather than hang the benchmark.
if tuple(int(p) for p in jax.__version__.split(".")[:2]) >= (0, 10):
    raise ImportError(f"jax {jax.__version__} hangs in the batched peers (jax 0.10.x, see "
                      f"benchmarks/_jax_peers.py); install the pinned one with "
                      f"pip install '.[bench]' (jax[cpu]<0.10)")

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

__all__ = ["to_device", "dare_sda", "cost_grad_kron", "cost_grad_doubling", "version"]

version = jax.__version__


def to_device(tasks, K=None):
    """The task matrices (and a gain, broadcast to one per task) as float64 device arrays."""
    import numpy as np
    arrays = [jnp.asarray(np.stack([getattr(t, name) for t in tasks]))
              for name in ("A", "B", "Q", "R", "Psi")]
    if K is not None:
        arrays.append(jnp.asarray(np.broadcast_to(K, (len(tasks),) + np.shape(K)).copy()))
    for a in arrays:
        a.block_until_ready()
    return tuple(arrays)


def _sym(X):
    return 0.5 * (X + X.T)


def _sda_one(A, B, Q, R):
    d = A.shape[0]
    G = _sym(B @ jnp.linalg.solve(R, B.T))
    eye = jnp.eye(d)

    def cond(state):
        _, _, H, inc, it = state
        return (inc > 1e-15 * jnp.linalg.norm(H)) & (it < 60)

    def body(state):
        Aj, Gj, Hj, _, it = state
        X = jnp.linalg.solve(eye + Gj @ Hj, jnp.concatenate([Aj, Gj], axis=1))
        inc = _sym(Aj.T @ (Hj @ X[:, :d]))
        AX = Aj @ X
        return AX[:, :d], _sym(Gj + AX[:, d:] @ Aj.T), Hj + inc, jnp.linalg.norm(inc), it + 1

    _, _, P, _, _ = lax.while_loop(cond, body, (A, G, _sym(Q), jnp.inf, 0))
    PB = P @ B
    K = jnp.linalg.solve(R + B.T @ PB, PB.T @ A)
    return K, P


_dare = jax.jit(jax.vmap(_sda_one))


def dare_sda(A, B, Q, R, Psi=None):
    """Batched doubling DARE: ``(K, P)`` of shapes (n, k, d), (n, d, d)."""
    return jax.block_until_ready(_dare(A, B, Q, R))


def _finish(A, B, R, Psi, K, P, S):
    J = jnp.sum(P * Psi)
    BTP = B.T @ P
    E = (R + BTP @ B) @ K - BTP @ A
    return J, 2.0 * E @ S


def _kron_one(A, B, Q, R, Psi, K):
    d = A.shape[0]
    AK = A - B @ K
    M = Q + K.T @ R @ K
    L = jnp.eye(d * d) - jnp.kron(AK, AK)           # row-major vec(A X A') = (A (x) A) vec(X)
    P = jnp.linalg.solve(L.T, M.reshape(-1)).reshape(d, d)
    S = jnp.linalg.solve(L, Psi.reshape(-1)).reshape(d, d)
    return _finish(A, B, R, Psi, K, _sym(P), _sym(S))


def _doubling_one(A, B, Q, R, Psi, K):
    AK = A - B @ K
    M = Q + K.T @ R @ K

    def cond(state):
        Aj, _, _, it = state
        return (jnp.sum(Aj * Aj) >= 1e-18) & (it < 64)

    def body(state):
        Aj, P, S, it = state
        return Aj @ Aj, P + Aj.T @ P @ Aj, S + Aj @ S @ Aj.T, it + 1

    _, P, S, _ = lax.while_loop(cond, body, (AK, M, Psi, 0))
    return _finish(A, B, R, Psi, K, _sym(P), _sym(S))


_kron_batched = jax.jit(jax.vmap(_kron_one))
_doubling_batched = jax.jit(jax.vmap(_doubling_one))
_kron_single = jax.jit(_kron_one)


def cost_grad_kron(A, B, Q, R, Psi, K):
    """``(J, grad)`` per task by Kronecker solves (vmap); shapes (n,), (n, k, d)."""
    return jax.block_until_ready(_kron_batched(A, B, Q, R, Psi, K))


def cost_grad_kron_single(A, B, Q, R, Psi, K):
    """One task's ``(J, grad)`` by a Kronecker solve (arrays of one task, no task axis)."""
    return jax.block_until_ready(_kron_single(A, B, Q, R, Psi, K))


def cost_grad_doubling(A, B, Q, R, Psi, K):
    """``(J, grad)`` per task by the squared Smith iteration (vmap)."""
    return jax.block_until_ready(_doubling_batched(A, B, Q, R, Psi, K))
