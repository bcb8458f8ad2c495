"""
iLQR: pendulum swing-up
=======================

:func:`metalqr.ilqr.ilqr` swings a torque-driven pendulum (``m = l = 1``, ``g = 9.81``,
RK4, ``dt = 0.01`` s) from hanging down (``theta = 0``) to upright (``theta = pi``) over
3 s (``T = 300`` steps), starting from zero torque.  The problem comes from the registry of
standard problems, :func:`metalqr.ilqr.problems.pendulum`, with analytic derivatives and a
compiled forward pass.  The left panel is the trajectory, the right one the total cost per
accepted iteration against the problem's reference value.
"""

import matplotlib.pyplot as plt
import numpy as np

from metalqr.ilqr import ilqr, problems

prob = problems.pendulum()                    # T = 300, dt = 0.01 s
res = ilqr(**prob.kwargs(), **prob.solver_options)
print(f"cost {res.cost:.3f} (reference {prob.reference}) after {res.n_iterations} "
      f"iterations; final angle {res.X[-1, 0]:.3f} rad")

t = prob.dt * np.arange(res.X.shape[0])
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
ax1.plot(t, res.X[:, 0], label=r"angle $\theta$ (rad)")
ax1.plot(t, res.X[:, 1], label=r"angular velocity $\dot\theta$ (rad/s)")
ax1.step(t[:-1], res.U[:, 0], where="post", label="torque $u$ (N m)")
ax1.axhline(np.pi, color="grey", lw=0.8, ls=":")
ax1.set_xlabel("time (s)")
ax1.set_title("swing-up trajectory")
ax1.legend(fontsize="small")
ax2.semilogy(res.costs, marker=".", label="iLQR")
ax2.axhline(prob.reference, color="grey", ls="--", label="reference")
ax2.set_xlabel("accepted iteration")
ax2.set_ylabel("total cost")
ax2.set_title("convergence")
ax2.legend()
fig.tight_layout()
