"""Where metalqr's compiled Numba kernels are cached (private infrastructure).

Numba's default for ``cache=True`` functions is the ``__pycache__`` folder next to the
source file, i.e. inside ``site-packages``: ``pip install`` of the same version again
deletes it and the next run recompiles everything (tens of seconds). metalqr therefore
registers one extra cache *locator* that applies **only to functions defined in metalqr's
own modules** and puts their cache under a per-user, per-version folder::

    $METALQR_CACHE_DIR/<version>/numba/      (if METALQR_CACHE_DIR is set)
    $XDG_CACHE_HOME/metalqr/<version>/numba/ (else, XDG_CACHE_HOME defaulting to ~/.cache)

with one sub-folder per installed source folder (as Numba does). Its source stamp is the
SHA-256 of ALL of metalqr's ``.py`` files (:func:`package_stamp`) rather than the kernel
file's modification time, so a reinstall of identical sources reuses the compiled kernels
while any change of metalqr's sources recompiles them (a kernel inlines functions and
constants of other modules: a stamp of its own file alone served stale kernels).

Nothing global is changed: the user's own ``@njit(cache=True)`` functions keep Numba's usual
locations, and when the user sets ``NUMBA_CACHE_DIR`` (Numba's own setting) metalqr's
locator steps aside and that folder is used for metalqr too. If the folder cannot be
created or written, or this Numba version lacks the locator hooks, Numba's default applies.
"""

from __future__ import annotations

import functools
import hashlib
import os

__all__ = ["cache_root", "install", "installed_root", "is_cold", "package_stamp", "PACKAGE_DIR"]

_ROOT: str | None = None


def cache_root(version: str) -> str:
    """Return the per-user cache folder of metalqr ``version`` (see the module docstring)."""
    base = os.environ.get("METALQR_CACHE_DIR", "").strip()
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
        base = os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".cache"), "metalqr")
    return os.path.join(base, version, "numba")


#: The metalqr package folder (its ``.py`` files make up every kernel's source stamp).
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@functools.lru_cache(maxsize=None)
def package_stamp(package_dir: str = PACKAGE_DIR) -> str:
    """Return the SHA-256 of every ``.py`` file of the package (names and contents, sorted).

    A compiled kernel depends on more than its own file: Numba inlines the functions and
    freezes the module-level constants it calls from other modules (e.g. the counter-based
    generator's bit layout in ``rollouts/counter_rng.py``, its Numba twin, the iLQR problems).
    A stamp of the kernel's file alone would keep serving a stale kernel after a change of
    one of those; a stamp of the whole package recompiles every kernel after any change of
    metalqr's sources (never for a reinstall of the same sources). About 1.3 MB, read once
    a process.
    """
    digest = hashlib.sha256()
    for folder, subfolders, files in os.walk(package_dir):
        subfolders[:] = sorted(f for f in subfolders if f != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, package_dir).replace(os.sep, "/").encode())
                digest.update(b"\0")
                with open(path, "rb") as fh:
                    digest.update(fh.read())
                digest.update(b"\0")
    return digest.hexdigest()


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
            return package_stamp()

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
