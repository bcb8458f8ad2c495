"""The rollout-backend interface and the one registry of backends.

A backend is an instance of a subclass of :class:`Backend` that implements its four
operations (:meth:`~Backend.simulate`, :meth:`~Backend.normals`,
:meth:`~Backend.sphere_points`, :meth:`~Backend.perturbed_gains`) and says whether it can run
here (:meth:`~Backend.available`). Each backend lives in its own module, which registers an
instance with :func:`register_backend` when imported; the registry line in
``metalqr/rollouts/__init__.py`` imports those modules. Adding a backend is therefore one new
file plus one name on that line; every list of names (validation, error messages,
:func:`known_backends`, :func:`available_backends`, the CLI's choices through
:func:`backend_help`) is read from the registry.

The registered backends and their descriptions are listed by :func:`backend_help` (no
hand-kept list here): ``"numpy"`` (the reference), ``"numba"`` (the CPU default) and
``"cupy"`` (CUDA GPUs) ship with metalqr.

All use the counter-based noise of ``metalqr.rollouts.counter_rng``, so the same key gives
the same costs on every backend (to rounding) and the same normals bit for bit.
"""

from __future__ import annotations

import abc
import math
import os

import numpy as np

from .._validation import check_choice
from ..exceptions import BackendUnavailableError, ValidationError, ValidationTypeError

__all__ = ["Backend", "register_backend", "known_backends", "available_backends",
           "get_backend", "check_backend", "backend_help", "DEFAULT_BACKEND", "cupy_available",
           "KNOWN_BACKENDS", "standard_normals", "sphere_points",
           "perturbed_gains"]

#: Backend used when none is named (override with ``METALQR_BACKEND``).
DEFAULT_BACKEND = os.environ.get("METALQR_BACKEND", "numba")


class Backend(abc.ABC):
    """Interface of a rollout backend.

    Subclasses set :attr:`name` and :attr:`description` and implement the four operations on
    NumPy inputs with NumPy outputs.

    Every backend must give the same numbers as the ``"numpy"`` backend: the same normals
    bit for bit (the counter-based generator of ``metalqr.rollouts.counter_rng``), the
    same costs to rounding, and the same divergence flags; ``tests/test_backends_contract.py``
    checks this for every available backend.
    """

    #: Name under which the backend is registered and selected (``backend="..."``).
    name: str = ""
    #: One line for help texts and documentation.
    description: str = ""
    #: What to do when :meth:`available` is false (appended to the error message).
    install_hint: str = ""

    def available(self) -> bool:
        """Return whether the backend can run on this machine (default: always).

        Whether the backend can run on this machine (default: always).

        Returns
        -------
        bool
            True when :meth:`simulate` and the generators can run here.
        """
        return True

    @abc.abstractmethod
    def simulate(self, A, B, Q, R, L0, G, task_index, K, noise_index, length: int, key: int,
                 ref=None, factor: float = math.inf) -> np.ndarray:
        """Empirical costs of ``N`` roll-outs (Algorithm 1 of the ZO-MAML paper).

        Parameters
        ----------
        A, B, Q, R, L0, G : ndarray, shapes (n, d, d), (n, d, k), (n, d, d), (n, k, k), (n, d, d), (n, d, d)
            Task matrices and noise factors (``L0 L0' = Sigma0``, ``G G' = Psi``, see
            ``metalqr.rollouts._factors.noise_factors``).
        task_index : ndarray of int, shape (N,)
            Task of each roll-out.
        K : ndarray, shape (N, k, d)
            Gain of each roll-out, C-contiguous.
        noise_index : ndarray of int, shape (N,)
            Noise stream of each roll-out (equal indices: common random numbers).
        length : int
            Roll-out length ``l``.
        key : int
            Key of the counter-based generator.
        ref : ndarray, shape (N,), optional
            Reference stage cost of each roll-out for the divergence test
            (``metalqr.rollouts.engine.divergence_reference``), or what this backend's
            :meth:`divergence_reference` returned.
        factor : float
            Divergence factor (``inf``: no test).

        Returns
        -------
        ndarray, shape (N,)
            ``(1/l) sum_t x_t'(Q + K'RK) x_t``; ``inf`` for a diverging roll-out.
        """

    @abc.abstractmethod
    def normals(self, key: int, n: int) -> np.ndarray:
        """Return ``z_0 .. z_{n-1}`` of the counter-based generator with key ``key``.

        ``z_0 .. z_{n-1}`` of the counter-based generator with key ``key``, shape (n,).

        Parameters
        ----------
        key : int
            Key of the counter-based generator.
        n : int
            Number of normals.

        Returns
        -------
        (n,) ndarray
            Standard normals, the same bits on every backend.
        """

    @abc.abstractmethod
    def sphere_points(self, key: int, rows: int, n: int, radius: float) -> np.ndarray:
        """Return ``(rows, n)`` points on the sphere of radius ``radius``.

        ``(rows, n)`` points on the sphere of radius ``radius``: row ``m`` is ``z_{mn} ..
        z_{mn + n - 1}``, normalised.

        Parameters
        ----------
        key : int
            Key of the counter-based generator.
        rows, n : int
            Number of points and their dimension.
        radius : float
            Euclidean norm of every point.

        Returns
        -------
        (rows, n) ndarray
            Row ``m`` is ``z_{mn} .. z_{mn + n - 1}``, normalised to ``radius``.
        """

    @abc.abstractmethod
    def perturbed_gains(self, C: np.ndarray, V: np.ndarray, two_point: bool) -> np.ndarray:
        """Return the perturbed gains ``C[p] + V[p, q]`` (and ``C[p] - V[p, q]``).

        ``C[p] + V[p, q]`` (and ``C[p] - V[p, q]`` with ``two_point``) for ``C`` (P, n) and
        ``V`` (P, Q, n): shape (P, Q, S, n) with ``S = 2`` or ``1``.

        Parameters
        ----------
        C : (P, n) ndarray
            Centres (flattened gains).
        V : (P, Q, n) ndarray
            Perturbations of each centre.
        two_point : bool
            Also return ``C[p] - V[p, q]``.

        Returns
        -------
        (P, Q, S, n) ndarray
            ``S = 2`` with ``two_point`` (``+`` then ``-``), else 1.
        """

    def divergence_reference(self, batch, task_index: np.ndarray, K: np.ndarray):
        """Return this backend's own divergence reference, or ``None`` (the default).

        ``None`` lets the engine compute the reference of each roll-out with the NumPy
        formula, ``tr(Q V) + lambda_max(R) tr(K V K')`` with ``V = Psi + Sigma0``
        (``metalqr.rollouts.engine.divergence_reference``). A backend may instead return an
        array of that formula computed faster (equal to rounding), or an object of its own
        that its :meth:`simulate` accepts as ``ref`` and finishes there (the ``"numba"``
        backend forms ``tr(K V K')`` in its kernel).

        Parameters
        ----------
        batch : metalqr.lqr.tasks.Batch
            The tasks (``n`` of them).
        task_index : ndarray of int, shape (N,)
            Task of each roll-out.
        K : ndarray, shape (N, k, d)
            Gain of each roll-out, C-contiguous.

        Returns
        -------
        None, ndarray of shape (N,), or a backend-specific object
            Passed on as the ``ref`` of :meth:`simulate` (``None``: the engine's NumPy
            reference is passed instead).

        Raises
        ------
        None
            The inputs were validated by the engine; this default raises nothing.
        """
        return None

    def __repr__(self) -> str:
        return f"<metalqr rollout backend {self.name!r}>"


#: name -> backend, filled by the backend modules (imported by ``metalqr/rollouts/__init__.py``,
#: which Python runs before any module of the package, so the registry is complete whenever
#: this module is used). This module imports no backend: no import cycle.
_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add ``backend`` to the registry under ``backend.name``.

    Called by each backend module when imported; a second registration under the same name
    replaces the first.

    Parameters
    ----------
    backend : Backend
        An instance of a :class:`Backend` subclass whose ``name`` is a non-empty identifier
        (letters, digits, ``_``) and whose ``description`` is a non-empty string.

    Returns
    -------
    Backend
        ``backend`` itself.

    Raises
    ------
    ValidationTypeError
        If ``backend`` is not a :class:`Backend` instance (e.g. the class rather than an
        instance).
    ValidationError
        If its name is not a non-empty identifier or its description is empty.
    """
    if not isinstance(backend, Backend):
        hint = (" (a class: pass an instance, e.g. MyBackend())"
                if isinstance(backend, type) else "")
        raise ValidationTypeError(f"backend must be an instance of "
                                  f"metalqr.rollouts.Backend; got {type(backend).__name__}"
                                  f"{hint}.")
    name = backend.name
    if not isinstance(name, str) or not name.isidentifier():
        raise ValidationError(f"backend.name must be a non-empty identifier (letters, digits, "
                              f"_); got {name!r}.")
    if not isinstance(backend.description, str) or not backend.description:
        raise ValidationError(f"backend.description must be a non-empty string (it is shown in "
                              f"the CLI help); got {backend.description!r} for {name!r}.")
    _REGISTRY[name] = backend
    return backend


def _registry() -> dict[str, Backend]:
    return _REGISTRY


def known_backends() -> tuple[str, ...]:
    """Return the names of every registered backend, whether or not it can run here.

    Names of every registered backend, whether or not it can run here.

    Returns
    -------
    tuple of str
        In registration order.
    """
    return tuple(_registry())


def available_backends() -> list[str]:
    """Return the names of the registered backends that can run on this machine.

    Names of the registered backends that can run on this machine.

    Returns
    -------
    list of str
        In registration order (``"numpy"`` is always there).
    """
    return [name for name, b in _registry().items() if b.available()]


def backend_help() -> str:
    """Return one line per registered backend (name, availability, description).

    One line per registered backend (name, availability, description): for the CLI's
    ``--backend`` help and the documentation.

    Returns
    -------
    str
        The lines, for the CLI's ``--backend`` help and the documentation.
    """
    return "; ".join(f"{name}{'' if b.available() else ' (unavailable here)'}: {b.description}"
                     for name, b in _registry().items())


def __getattr__(name):           # KNOWN_BACKENDS is read from the registry on first access
    if name == "KNOWN_BACKENDS":
        return known_backends()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def cupy_available() -> bool:
    """Return whether CuPy imports and sees at least one CUDA device.

    Whether CuPy imports and sees at least one CUDA device.

    Returns
    -------
    bool
        False without CuPy or without a device.
    """
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, CUDARuntimeError, ...
        return False


def check_backend(backend, name: str = "backend") -> str:
    """Validate a backend name against the registry and return the resolved name.

    Validate a backend name against the registry (``None`` gives ``DEFAULT_BACKEND``, itself
    checked, as it may come from ``METALQR_BACKEND``); return the resolved name. An unknown name
    raises a :class:`~metalqr.ValidationError` listing the registered ones.

    Parameters
    ----------
    backend : str or None
        A registered name; ``None`` gives ``DEFAULT_BACKEND`` (itself checked, as it may come
        from ``METALQR_BACKEND``).
    name : str
        How the message names the argument.

    Returns
    -------
    str
        The resolved name.

    Raises
    ------
    ValidationError, ValidationTypeError
        An unknown name (the registered ones are listed) or not a string.
    """
    if backend is None:
        return check_choice(DEFAULT_BACKEND, "the METALQR_BACKEND environment variable (the "
                            "default backend)", known_backends())
    return check_choice(backend, name, known_backends())


def get_backend(name: str | None = None) -> Backend:
    """Return the registered backend called ``name``.

    ``None`` gives ``DEFAULT_BACKEND``.

    Parameters
    ----------
    name : str, optional
        A registered name (``None`` gives ``DEFAULT_BACKEND``).

    Returns
    -------
    Backend
        The registered instance.

    Raises
    ------
    ValidationError
        For an unknown name (the message lists the registered ones).
    BackendUnavailableError
        For a backend that cannot run here (e.g. ``"cupy"`` without CuPy or a CUDA device).
    """
    name = check_backend(name)
    backend = _registry()[name]
    if not backend.available():
        raise BackendUnavailableError(f"backend {name!r} cannot run on this machine. "
                                      f"{backend.install_hint}".rstrip())
    return backend


def standard_normals(key: int, n: int, backend: str | None = None) -> np.ndarray:
    """Return ``z_0 .. z_{n-1}`` of the counter-based generator (the same on every backend)."""
    return get_backend(backend).normals(key, n)


def sphere_points(key: int, rows: int, n: int, radius: float,
                  backend: str | None = None) -> np.ndarray:
    """Return ``(rows, n)`` points uniform on a sphere from the counter-based generator.

    ``(rows, n)`` points uniform on the sphere of radius ``radius`` in ``R^n``: row ``m`` is
    ``z_{mn} .. z_{mn + n - 1}`` of the counter-based generator with key ``key``, normalised.
    The same points on every backend (to rounding).
    """
    return get_backend(backend).sphere_points(key, rows, n, radius)


def perturbed_gains(C: np.ndarray, V: np.ndarray, two_point: bool,
                    backend: str | None = None) -> np.ndarray:
    """Return the perturbed gains ``C[p] + V[p, q]`` (and ``C[p] - V[p, q]``).

    Gains ``C[p] + V[p, q]`` (and ``C[p] - V[p, q]``) for centres ``C`` of shape ``(P, n)`` and
    perturbations ``V`` of shape ``(P, Q, n)``: an array ``(P, Q, S, n)``, ``S = 2`` with
    ``two_point``.
    """
    return get_backend(backend).perturbed_gains(C, V, two_point)
