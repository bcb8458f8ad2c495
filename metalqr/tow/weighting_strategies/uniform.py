"""The uniform baseline: every task of a mini-batch weighs ``1/M``."""

from __future__ import annotations

import numpy as np

from .base import PerBatchStrategy

__all__ = ["Uniform"]


class Uniform(PerBatchStrategy):
    """Uniform baseline: every task of a mini-batch weighs ``1/M``."""

    name = "uniform"
    description = "every task weighs 1/M (standard meta-learning)"

    def weights(self, losses, w):
        """Return ``1/M`` for every task.

        Parameters
        ----------
        losses : (M,) ndarray
            The tasks' validation losses (unused).
        w : Window
            The window (for ``M``).

        Returns
        -------
        (M,) ndarray
            The uniform weights.
        """
        return np.full(w.M, 1.0 / w.M)
