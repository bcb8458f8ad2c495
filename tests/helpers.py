"""Random task and gain generators shared by the tests (fixed seeds, no hidden state)."""

from __future__ import annotations

import numpy as np

import metalqr


def random_spd(rng: np.random.Generator, n: int, lo: float = 0.5, hi: float = 2.0) -> np.ndarray:
    """Random symmetric positive definite matrix with eigenvalues in [lo, hi]."""
    Qm, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Qm * rng.uniform(lo, hi, n)) @ Qm.T


def random_task(rng: np.random.Generator, d: int, k: int, rho: float | None = None) -> metalqr.LQRTask:
    """Random task; A scaled to spectral radius ``rho`` (uniform in [0.3, 1.2] if None)."""
    A = rng.standard_normal((d, d))
    target = rng.uniform(0.3, 1.2) if rho is None else rho
    A *= target / max(np.max(np.abs(np.linalg.eigvals(A))), 1e-12)
    B = rng.standard_normal((d, k))
    return metalqr.LQRTask(A, B, random_spd(rng, d), random_spd(rng, k), Psi=random_spd(rng, d))


def stabilizing_gain(rng: np.random.Generator, task, scale: float = 0.1):
    """K* plus a random perturbation, shrunk until it stabilises with margin (rho <= 0.98)."""
    K_star, _ = metalqr.optimal_gain(task)
    U = rng.standard_normal(K_star.shape)
    U *= scale * max(np.linalg.norm(K_star), 1.0) / np.linalg.norm(U)
    for _ in range(60):
        rho = metalqr.spectral_radius(task, K_star + U)
        if np.max(rho) <= 0.98:
            return K_star + U
        U *= 0.7
    return K_star


def rel(a, b) -> float:
    """Relative Frobenius error ||a - b|| / max(||b||, tiny)."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def assert_named_error(fn, word: str, *args, exc=None, **kwargs):
    """Call ``fn(*args, **kwargs)`` and assert it raises a metalqr error (``exc``, default
    :class:`metalqr.MetalqrError`) that is a ``ValueError`` or ``TypeError`` and whose
    message names ``word`` (the argument). Returns the exception."""
    import re

    import pytest

    exc = metalqr.MetalqrError if exc is None else exc
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    err = info.value
    assert isinstance(err, metalqr.MetalqrError), f"not a metalqr error: {err!r}"
    assert isinstance(err, (ValueError, TypeError)), f"not a ValueError/TypeError: {err!r}"
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", str(err)), (
        f"message does not name {word!r}: {err}")
    return err
