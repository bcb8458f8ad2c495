"""The exploration and exploitation baselines, Eq. (12) of the TOW paper
(:func:`metalqr.tow.dirichlet_weights`, with the experiment's ``kappa``)."""

from __future__ import annotations

from ..weighting import dirichlet_weights
from .base import PerBatchStrategy


class Exploration(PerBatchStrategy):
    name = "exploration"
    reads = ("kappa",)
    description = "Eq. (12) with s = -1: harder tasks (larger loss) weigh more"

    def weights(self, losses, w):
        return dirichlet_weights(losses, w.options["kappa"], "exploration")


class Exploitation(PerBatchStrategy):
    name = "exploitation"
    reads = ("kappa",)
    description = "Eq. (12) with s = +1: familiar tasks (smaller loss) weigh more"

    def weights(self, losses, w):
        return dirichlet_weights(losses, w.options["kappa"], "exploitation")
