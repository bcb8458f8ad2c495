"""How a package ``__init__`` states its public API once (private infrastructure).

A package ``__init__`` imports its public names from its modules, and ends with
``__all__ = public_names(globals())``: the import statements are the one list. Submodules
bound as attributes by those imports are left out, unless named in ``modules`` (a
submodule that is itself part of the API, e.g. ``metalqr.ilqr.problems``).
``tests/test_api.py`` checks the result (every name exists, no underscore name crosses a
package boundary, every public module's public callables are listed).
"""

from __future__ import annotations

import types
from typing import Any, Iterable

__all__ = ["public_names"]


def public_names(namespace: dict[str, Any], modules: Iterable[str] = ()) -> list[str]:
    """Return the public names of a package namespace.

    These are the non-underscore names bound in ``namespace`` that are not modules, plus the
    submodules named in ``modules``, in the order they were bound.
    """
    keep = set(modules)
    return [name for name, value in namespace.items()
            if not name.startswith("_")
            and (name in keep or not isinstance(value, types.ModuleType))]
