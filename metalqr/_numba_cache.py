"""Where metalqr's compiled Numba kernels are cached (private infrastructure).

Numba's default for ``cache=True`` functions is the ``__pycache__`` folder next to the
source file, i.e. inside ``site-packages``: ``pip install`` of the same version again
deletes it and the next run recompiles everything (tens of seconds). metalqr therefore
registers one extra cache *locator* that applies **only to functions defined in metalqr's
own modules** and puts their cache under a per-user, per-version folder::

    $METALQR_CACHE_DIR/<version>/numba/      (if METALQR_CACHE_DIR is set)
    $XDG_CACHE_HOME/metalqr/<version>/numba/ (else, XDG_CACHE_HOME defaulting to ~/.cache)

with one sub-folder per installed source folder (as Numba does). Its source stamp is the
SHA-256 of the source file rather than its modification time, so a reinstall of identical
sources reuses the compiled kernels while any change of the source recompiles.

Nothing global is changed: the user's own ``@njit(cache=True)`` functions keep Numba's usual
locations, and when the user sets ``NUMBA_CACHE_DIR`` (Numba's own setting) metalqr's
locator steps aside and that folder is used for metalqr too. If the folder cannot be
created or written, or this Numba version lacks the locator hooks, Numba's default applies.
"""

from __future__ import annotations

import functools
import hashlib
import os

__all__ = ["cache_root", "install", "installed_root", "is_cold"]

_ROOT: str | None = None


def cache_root(version: str) -> str:
    """Return the per-user cache folder of metalqr ``version`` (see the module docstring)."""
    base = os.environ.get("METALQR_CACHE_DIR", "").strip()
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        base = os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".cache"), "metalqr")
    return os.path.join(base, version, "numba")


@functools.lru_cache(maxsize=None)
def _content_stamp(path: str, mtime: float, size: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _locator_class(root: str):
    from numba.core import caching, config

    class MetalqrCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
        """Cache locator for metalqr's own kernels: ``root/<folder>_<sha1 of folder>``."""

        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = os.path.join(root, self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            st = os.stat(self._py_file)
            return _content_stamp(self._py_file, st.st_mtime, st.st_size)

        @classmethod
        def from_function(cls, py_func, py_file):
            if config.CACHE_DIR:          # the user's NUMBA_CACHE_DIR wins
                return None
            module = getattr(py_func, "__module__", None) or ""
            if module != "metalqr" and not module.startswith("metalqr."):
                return None               # not ours: Numba's usual locators
            if not os.path.isfile(py_file):
                return None
            self = cls(py_func, py_file)
            try:
                self.ensure_cache_path()
            except OSError:               # not writable: Numba's default applies
                return None
            return self

    return MetalqrCacheLocator


def install(version: str) -> str | None:
    """Register metalqr's cache locator (idempotent).

    Register metalqr's cache locator (idempotent); must run before any metalqr module that
    defines a cached kernel is imported. Returns the cache folder, or ``None`` when Numba's
    default locations stay in use (``NUMBA_CACHE_DIR`` set, or hooks missing).
    """
    global _ROOT
    try:
        from numba.core import caching, config
        impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl   # renamed in 0.6x
        classes = impl._locator_classes
    except (ImportError, AttributeError):  # pragma: no cover - other Numba layouts
        return None
    if any(getattr(c, "__name__", "") == "MetalqrCacheLocator" for c in classes):
        return _ROOT
    root = cache_root(version)
    try:
        cls = _locator_class(root)
    except AttributeError:  # pragma: no cover - other Numba layouts
        return None
    impl._locator_classes = [cls, *classes]
    _ROOT = None if config.CACHE_DIR else root
    return _ROOT


def installed_root() -> str | None:
    """Return the folder metalqr's kernels are cached in (``None``: Numba's default locations)."""
    return _ROOT


def is_cold(module_file: str) -> bool:
    """Return whether no compiled kernel of ``module_file`` is cached yet.

    Whether no compiled kernel of the source file ``module_file`` is cached yet in metalqr's
    folder (``False`` when Numba's default locations are in use: unknown).
    """
    if _ROOT is None:
        return False
    from numba.core.caching import _CacheLocator
    folder = os.path.join(_ROOT, _CacheLocator.get_suitable_cache_subpath(module_file))
    stem = os.path.splitext(os.path.basename(module_file))[0] + "."
    try:
        return not any(n.startswith(stem) and n.endswith(".nbi") for n in os.listdir(folder))
    except OSError:
        return True
