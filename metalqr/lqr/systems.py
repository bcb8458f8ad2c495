"""Standard discrete-time benchmark systems, as :class:`LQRTask` objects."""

from __future__ import annotations

import numpy as np

from .._validation import check_positive, check_real
from .tasks import LQRTask

__all__ = ["boeing747", "double_integrator", "inverted_pendulum", "standard_systems"]


def boeing747() -> LQRTask:
    """Discretised Boeing 747 longitudinal dynamics (4 states, 2 inputs), Q = I, R = I.

    The matrices used in the LQR literature (e.g. Toso et al. 2024, Mohammadi et al.)."""
    A = [[0.99, 0.03, -0.02, -0.32],
         [0.01, 0.47, 4.7, 0.0],
         [0.02, -0.06, 0.4, 0.0],
         [0.01, -0.04, 0.72, 0.99]]
    B = [[0.01, 0.99],
         [-3.44, 1.66],
         [-0.83, 0.44],
         [-0.47, 0.25]]
    return LQRTask(A, B, np.eye(4), np.eye(2))


def double_integrator(dt: float = 0.1) -> LQRTask:
    """Exactly discretised double integrator (position, velocity; force input), open-loop
    marginally stable (both eigenvalues at 1).

    Parameters
    ----------
    dt : float
        Sampling period, finite and > 0 (``dt = 0`` would give ``B = 0``: uncontrollable).

    Raises
    ------
    ValidationError
        If ``dt`` is not a finite positive real number.
    """
    dt = check_positive(dt, "dt")
    A = [[1.0, dt], [0.0, 1.0]]
    B = [[0.5 * dt * dt], [dt]]
    return LQRTask(A, B, np.eye(2), [[1.0]])


def inverted_pendulum(dt: float = 0.05, g: float = 9.81, length: float = 1.0,
                      damping: float = 0.1) -> LQRTask:
    """Forward-Euler pendulum linearised about the upright position (open-loop unstable).

    Parameters
    ----------
    dt : float
        Step, finite and > 0.
    g : float
        Gravitational acceleration, finite and > 0.
    length : float
        Pendulum length, finite and > 0.
    damping : float
        Viscous damping, finite and >= 0.

    Raises
    ------
    ValidationError
        If a parameter is not a finite real number in its range.
    """
    dt = check_positive(dt, "dt")
    g = check_positive(g, "g")
    length = check_positive(length, "length")
    damping = check_real(damping, "damping", minimum=0.0)
    A = [[1.0, dt], [dt * g / length, 1.0 - dt * damping]]
    B = [[0.0], [dt]]
    return LQRTask(A, B, np.diag([10.0, 1.0]), [[0.1]])


def standard_systems() -> dict[str, LQRTask]:
    """The named standard systems used by the demo, tests and benchmarks."""
    return {"boeing747": boeing747(), "double_integrator": double_integrator(),
            "inverted_pendulum": inverted_pendulum()}
