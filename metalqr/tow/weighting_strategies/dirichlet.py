"""The exploration and exploitation baselines, Eq. (12) of the TOW paper.

:func:`metalqr.tow.dirichlet_weights`, with the experiment's ``kappa``.
"""

from __future__ import annotations

from ..weighting import dirichlet_weights
from .base import PerBatchStrategy

__all__ = ["Exploration", "Exploitation"]


class _Dirichlet(PerBatchStrategy):
    """Eq. (12) of the TOW paper with the sign chosen by the strategy's name.

    Eq. (12) with the sign ``s`` chosen by the strategy's ``name`` (the ``mode`` of
    :func:`~metalqr.tow.dirichlet_weights`).
    """

    reads = ("kappa",)

    def weights(self, losses, w):
        return dirichlet_weights(losses, w.options["kappa"], self.name)


class Exploration(_Dirichlet):
    """Exploration baseline, Eq. (12) of the TOW paper with ``s = -1``: harder tasks weigh more."""

    name = "exploration"
    description = "Eq. (12) with s = -1: harder tasks (larger loss) weigh more"


class Exploitation(_Dirichlet):
    """Exploitation baseline, Eq. (12) of the TOW paper with ``s = +1``: familiar tasks weigh more."""

    name = "exploitation"
    description = "Eq. (12) with s = +1: familiar tasks (smaller loss) weigh more"
