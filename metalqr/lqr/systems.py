"""Standard discrete-time benchmark systems, as :class:`LQRTask` objects."""

from __future__ import annotations

import numpy as np

from .._validation import check_positive, check_real
from .tasks import LQRTask

__all__ = ["boeing747", "double_integrator", "inverted_pendulum", "standard_systems"]


def boeing747() -> LQRTask:
    """Return the discretised Boeing 747 longitudinal dynamics (4 states, 2 inputs).

    The matrices used in the LQR literature (e.g. Toso et al. 2024, Mohammadi et al.), in the
    units of that published model; ``Q = I``, ``R = I``, ``Psi = I``. Open-loop stable.

    Returns
    -------
    LQRTask
        ``A`` (4, 4), ``B`` (4, 2).

    Examples
    --------
    >>> from metalqr import boeing747
    >>> task = boeing747()
    >>> task.d, task.k
    (4, 2)
    """
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
    """Return the exactly discretised double integrator.

    Exactly discretised double integrator (position, velocity; force input), open-loop
    marginally stable (both eigenvalues at 1).

    The state is ``(position, velocity)`` (m, m/s), the input an acceleration (m/s^2, a
    force on a unit mass), held constant over each period: ``A = [[1, dt], [0, 1]]``,
    ``B = [[dt^2 / 2], [dt]]``; ``Q = I``, ``R = 1``.

    Parameters
    ----------
    dt : float
        Sampling period (s), finite and > 0 (``dt = 0`` would give ``B = 0``: uncontrollable).

    Returns
    -------
    LQRTask
        ``A`` (2, 2), ``B`` (2, 1).

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
    """Return the forward-Euler pendulum linearised about the upright position.

    The state is ``(theta, omega)``: the angle from upright (rad) and the angular velocity
    (rad/s); the input ``u`` is an angular acceleration (rad/s^2, a torque divided by the
    moment of inertia). The linearisation of ``theta'' = (g / length) theta - damping omega
    + u`` stepped by forward Euler: ``A = [[1, dt], [dt g / length, 1 - dt damping]]``,
    ``B = [[0], [dt]]``; ``Q = diag(10, 1)``, ``R = 0.1``. Open-loop unstable.

    Parameters
    ----------
    dt : float
        Step (s), finite and > 0.
    g : float
        Gravitational acceleration (m/s^2), finite and > 0.
    length : float
        Pendulum length (m), finite and > 0.
    damping : float
        Viscous damping coefficient (1/s), finite and >= 0.

    Returns
    -------
    LQRTask
        ``A`` (2, 2), ``B`` (2, 1).

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
    """Return the named standard systems used by the demo, tests and benchmarks.

    Returns
    -------
    dict of str to LQRTask
        ``boeing747``, ``double_integrator`` and ``inverted_pendulum`` at their defaults.
    """
    return {"boeing747": boeing747(), "double_integrator": double_integrator(),
            "inverted_pendulum": inverted_pendulum()}
