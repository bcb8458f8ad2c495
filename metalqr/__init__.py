"""metalqr: LQR meta-policy optimisation (ZO-MAML) and trajectory-optimisation task weighting.

The public API is re-exported here; see ``docs/`` for worked examples and
``docs/references.md`` for the two papers.
"""

from ._version import __version__

# Compiled Numba kernels are cached per user and per version (survives a reinstall); this
# must run before the modules that define the kernels are imported. See _numba_cache.
from ._numba_cache import install as _install_kernel_cache

_install_kernel_cache(__version__)
del _install_kernel_cache

# The top-level API is the union of four packages' APIs, each listed once in its own
# ``__all__`` (see metalqr._api): the exceptions, the LQR core, meta-policy optimisation and
# the roll-outs. metalqr.ilqr, metalqr.tow, metalqr.theory, metalqr.experiments and
# metalqr.testing are used through their own namespaces.
from . import exceptions as _exceptions, lqr as _lqr, meta as _meta, rollouts as _rollouts
from .exceptions import *  # noqa: F401,F403
from .lqr import *  # noqa: F401,F403
from .meta import *  # noqa: F401,F403
from .rollouts import *  # noqa: F401,F403

__all__ = [*_exceptions.__all__, *_lqr.__all__, *_meta.__all__, *_rollouts.__all__]
