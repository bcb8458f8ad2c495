"""metalqr's standard iLQR problems written for trajax (JAX), for ``bench_ilqr.py``.

Same dynamics, time step, horizon, start, goal and cost as ``metalqr.ilqr.problems``
(stage ``s (q |x - goal|^2 + r |u|^2)``, terminal ``q_final |x_T - goal|^2``, read from the
registered :class:`~metalqr.ilqr.problems.StandardProblem`), solved by the vendored
``trajax.optimizers.ilqr`` at trajax's own settings: its defaults (``grad_norm_threshold``
1e-4, ``make_psd=False``, line search from ``alpha_0 = 1``) with the ``maxiter`` of trajax's
own test or benchmark of that problem (acrobot: ``testAcrobotSolve``, 100; pendulum:
``testPendulumReadmeExample``, default 100; cart-pole: ``benchmarks/ilqr_benchmark.py``,
1000). Each solver is wrapped in one ``jax.jit`` as trajax's benchmark utility does.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from trajax import optimizers  # noqa: E402

#: ``maxiter`` of trajax's own test / benchmark of each problem.
TRAJAX_MAXITER = {"acrobot": 100, "pendulum": 100, "cartpole": 1000}


def _acrobot_f(x, u):
    m1, m2, l1, lc1, lc2, I1, I2 = 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0
    g = 9.8
    th1, th2, dth1, dth2 = x[0], x[1], x[2], x[3]
    a = u[0]
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(th2)) + I1 + I2
    d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(th2)) + I2
    phi2 = m2 * lc2 * g * jnp.cos(th1 + th2 - jnp.pi / 2)
    phi1 = (-m2 * l1 * lc2 * dth2**2 * jnp.sin(th2)
            - 2 * m2 * l1 * lc2 * dth2 * dth1 * jnp.sin(th2)
            + (m1 * lc1 + m2 * l1) * g * jnp.cos(th1 - jnp.pi / 2) + phi2)
    ddth2 = ((a + d2 / d1 * phi1 - m2 * l1 * lc2 * dth1**2 * jnp.sin(th2) - phi2)
             / (m2 * lc2**2 + I2 - d2**2 / d1))
    ddth1 = -(d2 * ddth2 + phi1) / d1
    return jnp.array([dth1, dth2, ddth1, ddth2])


def _pendulum_f(x, u):
    return jnp.array([x[1], u[0] - 9.81 * jnp.sin(x[0])])


def _cartpole_f(x, u):
    mc, mp, l, g = 10.0, 1.0, 0.5, 9.81
    th, dx, dth = x[1], x[2], x[3]
    force = 5.0 * jnp.tanh(u[0])
    s, c = jnp.sin(th), jnp.cos(th)
    m11, m12, m22 = mc + mp, mp * l * c, mp * l * l
    r1 = force + mp * l * dth * dth * s
    r2 = -mp * g * l * s
    det = m11 * m22 - m12 * m12
    return jnp.array([dx, dth, (m22 * r1 - m12 * r2) / det, (-m12 * r1 + m11 * r2) / det])


def _euler(f, dt):
    return lambda x, u, t: x + dt * f(x, u)


def _rk4(f, dt):
    def step(x, u, t):
        k1 = f(x, u)
        k2 = f(x + 0.5 * dt * k1, u)
        k3 = f(x + 0.5 * dt * k2, u)
        k4 = f(x + dt * k3, u)
        return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return step


_DYNAMICS = {"acrobot": (_acrobot_f, _euler), "pendulum": (_pendulum_f, _rk4),
             "cartpole": (_cartpole_f, _euler)}


def solver(spec):
    """``(jitted solve(x0) -> (U, obj, iterations), x0)`` for a registered StandardProblem."""
    f, integrator = _DYNAMICS[spec.name]
    dynamics = integrator(f, spec.dt)
    goal = jnp.asarray(spec.goal)
    s = spec.dt if spec.stage_times_dt else 1.0
    q, r, q_final, T, M = spec.q, spec.r, spec.q_final, spec.T, spec.M

    def cost(x, u, t):
        e = x - goal
        stage = s * (q * jnp.dot(e, e) + r * jnp.dot(u, u))
        return jnp.where(t == T, q_final * jnp.dot(e, e), stage)

    maxiter = TRAJAX_MAXITER[spec.name]

    def solve(x0):
        _, U, obj, _, _, _, it = optimizers.ilqr(cost, dynamics, x0, jnp.zeros((T, M)),
                                                 maxiter=maxiter)
        return U, obj, it

    return jax.jit(solve), jax.device_put(jnp.asarray(spec.x0, dtype=jnp.float64))


def block(out):
    return jax.block_until_ready(out)


version = jax.__version__
__all__ = ["solver", "block", "TRAJAX_MAXITER", "version"]
