"""Generic iLQR trajectory optimiser (TOW paper Section 2.1, Appendix E, Algorithms 1-2).

Generic iLQR trajectory optimiser (TOW paper Section 2.1, Appendix E, Algorithms 1-2, corrected),
with dense or diagonal value models and box-constrained controls.
"""

from .._api import public_names as _public_names
from . import problems
from .backward import BackwardResult, backward_pass
from .boxqp import BoxQPResult, box_qp
from .derivatives import Derivatives, finite_difference_derivatives
from ._forward_numba import CompiledStep
from .solver import DEFAULT_LINE_SEARCH, ILQRResult, ilqr

__all__ = _public_names(globals(), modules=("problems",))
