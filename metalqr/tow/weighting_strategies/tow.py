"""TOW, Algorithm 1 of the TOW paper, as a weighting strategy.

TOW, Algorithm 1 of the TOW paper: iLQR over the window's T mini-batches
(:func:`metalqr.tow.tow_weights`); the learner follows the optimised trajectory.
"""

from __future__ import annotations

from ..weighting import tow_weights
from .base import Window, WindowResult, WeightingStrategy

__all__ = ["TOW"]


class TOW(WeightingStrategy):
    """TOW, Algorithm 1 of the TOW paper: weights from iLQR over the window's mini-batches."""

    name = "tow"
    normalised = False          # Algorithm 1 imposes u >= 0 only
    reads = ("beta_u", "n_ilqr", "value_model", "line_search", "terminal_cost", "gauss_newton")
    description = ("Algorithm 1: weights from iLQR over the window (beta_u, n_ilqr, value_model, line_search, "
                   "terminal_cost)")

    def window(self, w: Window) -> WindowResult:
        """Optimise the window's weights by :func:`metalqr.tow.tow_weights` and follow them.

        Parameters
        ----------
        w : Window
            The window; reads the options ``beta_u``, ``n_ilqr`` and ``value_model``.

        Returns
        -------
        WindowResult
            The last state of the optimised trajectory and the (T, M) weights.
        """
        o = w.options
        res = tow_weights(w.learner, w.z, w.batches, optimizer=w.optimizer, tau0=w.tau0, beta_u=o["beta_u"],
                          n_ilqr=o["n_ilqr"], value_model=o["value_model"],
                          line_search=o.get("line_search", "metalqr"),
                          terminal_cost=o.get("terminal_cost", "none"))
        return WindowResult(res.X[-1], res.U)
