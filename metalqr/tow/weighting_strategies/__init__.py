"""Task-weighting strategies behind one interface, and their registry.

A strategy is a :class:`WeightingStrategy` (``name``, ``description``, one method
``window(w) -> WindowResult``); :func:`run_experiment`, the ``metalqr tow`` CLI and
``benchmarks/bench_tow.py`` read the registry and branch on no name. To add one, write a
module beside these (a :class:`PerBatchStrategy` needs only ``weights(losses, w)``) and add
one ``register_strategy(...)`` line at the end of this file (docs/tow.md).
"""

from __future__ import annotations

import re

from ..._validation import check_bool, check_choice
from ...exceptions import ValidationError, ValidationTypeError
from .base import PerBatchStrategy, WeightingStrategy, Window, WindowResult

__all__ = ["WeightingStrategy", "PerBatchStrategy", "Window", "WindowResult", "register_strategy",
           "unregister_strategy", "strategies", "get_strategy", "describe"]

_REGISTRY: dict[str, WeightingStrategy] = {}


def register_strategy(strategy: WeightingStrategy, *, replace: bool = False) -> WeightingStrategy:
    """Add ``strategy`` to the registry under ``strategy.name``.

    Parameters
    ----------
    strategy : WeightingStrategy
        An instance (not a class) with a non-empty ``name`` of letters, digits, ``_`` and ``-``
        and a ``description`` string.
    replace : bool
        Allow replacing a strategy registered under the same name.

    Returns
    -------
    WeightingStrategy
        ``strategy`` (so the call can decorate an instance's creation).

    Raises
    ------
    ValidationTypeError
        ``strategy`` is not a WeightingStrategy instance.
    ValidationError
        A malformed name or description, or a name already registered (without ``replace``).
    """
    if isinstance(strategy, type) and issubclass(strategy, WeightingStrategy):
        raise ValidationTypeError(f"strategy must be an instance; got the class {strategy.__name__} "
                                  f"(register {strategy.__name__}()).")
    if not isinstance(strategy, WeightingStrategy):
        raise ValidationTypeError(f"strategy must be a metalqr.tow.WeightingStrategy instance; got "
                                  f"{type(strategy).__name__}.")
    name = strategy.name
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValidationError(f"strategy.name must be a non-empty string of letters, digits, '_' or '-' "
                              f"(it is a CLI choice and a file name); got {name!r}.")
    if not isinstance(strategy.description, str):
        raise ValidationTypeError(f"strategy.description must be a str; got {type(strategy.description).__name__}.")
    replace = check_bool(replace, "replace")
    if name in _REGISTRY and not replace:
        raise ValidationError(f"strategy name {name!r} is already registered; pick another name or pass "
                              f"replace=True.")
    _REGISTRY[name] = strategy
    return strategy


def unregister_strategy(name: str) -> WeightingStrategy:
    """Remove and return the strategy registered as ``name``.

    Parameters
    ----------
    name : str
        A registered strategy name.

    Returns
    -------
    WeightingStrategy
        The strategy removed.

    Raises
    ------
    ValidationError
        ``name`` is not registered (the registered names are listed).
    """
    return _REGISTRY.pop(check_choice(name, "name", tuple(_REGISTRY)))


def strategies() -> tuple[str, ...]:
    """Return the names of the registered strategies, in registration order.

    Returns
    -------
    tuple of str
        The names (the built-ins first: ``uniform``, ``exploration``, ``exploitation``,
        ``tow``).
    """
    return tuple(_REGISTRY)


def get_strategy(name: str, argname: str = "strategy") -> WeightingStrategy:
    """Return the registered strategy ``name``.

    Parameters
    ----------
    name : str
        A registered strategy name.
    argname : str
        How an error message names the argument.

    Returns
    -------
    WeightingStrategy
        The registered instance.

    Raises
    ------
    ValidationError
        ``name`` is not registered (the registered names are listed, with a close match).
    """
    return _REGISTRY[check_choice(name, argname, tuple(_REGISTRY))]


def describe() -> str:
    """``name: description`` of every registered strategy, one per line (CLI help, docs)."""
    return "\n".join(f"{s.name}: {s.description}" for s in _REGISTRY.values())


# The built-in strategies (Section 5 of the TOW paper). A new strategy: one module, one line.
from .uniform import Uniform  # noqa: E402
from .dirichlet import Exploitation, Exploration  # noqa: E402
from .tow import TOW  # noqa: E402

register_strategy(Uniform())
register_strategy(Exploration())
register_strategy(Exploitation())
register_strategy(TOW())
