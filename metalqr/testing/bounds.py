"""Checking a stated bound with Hypothesis, and finite-difference checks of gradients.

:func:`check_bound` searches the examples of a strategy for the largest ratio
``quantity / bound`` (Hypothesis' targeted search pushes the ratio up), and when the bound is
violated shrinks the violating example to a minimal one. It returns a :class:`BoundReport`
(interactive use); :func:`assert_bound_holds` raises ``AssertionError`` with the report
(pytest use). Both are derandomised by default, so a run is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, Phase, assume, given, settings, target
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy

from .._validation import as_float_array, as_rng, as_seed, check_callable, check_int, check_positive, check_real
from ..exceptions import ValidationError, ValidationTypeError
from ..lqr import LQRTask, TaskSet

__all__ = ["BoundReport", "check_bound", "assert_bound_holds", "format_example",
           "assert_gradient_matches_fd", "assert_hvp_matches_fd"]


# ---------------------------------------------------------------------------- printing
def _mat(name: str, M: np.ndarray, indent: str) -> str:
    body = np.array2string(np.asarray(M), precision=6, suppress_small=False, max_line_width=100)
    pad = indent + " " * (len(name) + 3)
    return indent + f"{name} = " + body.replace("\n", "\n" + pad)


def format_example(example: Any, indent: str = "  ") -> str:
    """Format an example as readable text.

    Readable text of an example: every matrix of a task, task set, family or array printed in
    full, tuples element by element.

    Parameters
    ----------
    example : Any
        An example drawn from a strategy (LQRTask, TaskSet, MetaFamily, ndarray, tuple...).
    indent : str
        Prefix of every line.

    Returns
    -------
    str
        The text (several lines).
    """
    if isinstance(example, LQRTask):
        lines = [indent + f"LQRTask(d={example.d}, k={example.k})"]
        lines += [_mat(n, getattr(example, n), indent + "  ") for n in ("A", "B", "Q", "R", "Psi", "Sigma0")]
        return "\n".join(lines)
    if isinstance(example, TaskSet):
        parts = [indent + f"TaskSet(n_tasks={len(example)}, d={example.d}, k={example.k})"]
        for i, t in enumerate(example):
            parts.append(indent + f"  task {i}:")
            parts += [_mat(n, getattr(t, n), indent + "    ") for n in ("A", "B", "Q", "R", "Psi", "Sigma0")]
        return "\n".join(parts)
    if hasattr(example, "_fields"):           # NamedTuple, e.g. MetaFamily
        parts = [indent + type(example).__name__ + ":"]
        for name in example._fields:
            value = getattr(example, name)
            if isinstance(value, (LQRTask, TaskSet)):
                parts.append(indent + f"  {name}:")
                parts.append(format_example(value, indent + "    "))
            elif isinstance(value, np.ndarray):
                parts.append(_mat(name, value, indent + "  "))
            else:
                parts.append(indent + f"  {name} = {value!r}")
        return "\n".join(parts)
    if isinstance(example, tuple):
        return "\n".join(format_example(e, indent) if isinstance(e, (LQRTask, TaskSet, tuple))
                         or hasattr(e, "_fields") else
                         (_mat(f"[{i}]", e, indent) if isinstance(e, np.ndarray) else indent + f"[{i}] = {e!r}")
                         for i, e in enumerate(example))
    if isinstance(example, np.ndarray):
        return _mat("X", example, indent)
    return indent + repr(example)


# ---------------------------------------------------------------------------- bounds
@dataclass
class BoundReport:  # numpydoc ignore=PR01
    """Result of :func:`check_bound`.

    Attributes
    ----------
    holds : bool
        No example violated ``quantity <= bound (1 + rtol) + atol``.
    worst_ratio : float
        Largest ``quantity / bound`` seen over all examples (``inf`` where a positive
        quantity above ``atol`` met a zero bound; 0 if none was evaluated).
    worst_example : Any
        The example that gave ``worst_ratio`` (not shrunk).
    counterexample : Any or None
        The minimal violating example after Hypothesis' shrinking (``None`` if the bound held).
    counterexample_bound, counterexample_quantity : float
        ``bound`` and ``quantity`` at the counterexample (NaN if the bound held).
    n_examples : int
        Number of examples evaluated (generation, targeting and shrinking).
    n_rejected : int
        Examples skipped because ``bound`` or ``quantity`` raised one of ``ignore``.
    name : str
        Label used in the text.
    settings : dict
        Every setting that determined the report, so that it describes itself and can be
        rerun: ``name``, ``bound`` and ``quantity`` (the callables' qualified names),
        ``strategy`` (its repr), ``max_examples``, ``rtol``, ``atol``, ``rng`` (how the
        examples were drawn, in words), ``seed`` (the Hypothesis seed, ``None`` when
        derandomised), ``derandomize``, ``ignore`` (exception names), ``phases`` (the
        Hypothesis phases run), ``deadline``, ``database``, ``suppress_health_check``
        (``"all"``) and ``hypothesis_version``. Plain strings, numbers, booleans and lists
        (JSON-serialisable).
    """

    holds: bool
    worst_ratio: float
    worst_example: Any
    counterexample: Any
    counterexample_bound: float
    counterexample_quantity: float
    n_examples: int
    n_rejected: int = 0
    name: str = "bound"
    settings: dict = field(default_factory=dict)

    @property
    def counterexample_ratio(self) -> float:
        """``quantity / bound`` at the shrunk counterexample (NaN if the bound held)."""
        return _ratio(self.counterexample_quantity, self.counterexample_bound)

    def __str__(self) -> str:
        head = (f"{self.name}: {'holds' if self.holds else 'VIOLATED'} on {self.n_examples} examples "
                f"({self.n_rejected} rejected); worst ratio quantity / bound = {self.worst_ratio:.6g}")
        if self.holds:
            return head
        return (head + f"\nshrunk counterexample: quantity = {self.counterexample_quantity:.6g} > bound = "
                f"{self.counterexample_bound:.6g} (ratio {self.counterexample_ratio:.6g})\n"
                + format_example(self.counterexample))


def _ratio(q: float, b: float, atol: float = 0.0) -> float:
    """``q / b``; for ``b = 0``: 0 while ``q <= atol`` (inside the slack), else ``inf``."""
    if math.isnan(q) or math.isnan(b):
        return math.nan
    if b == 0:
        return 0.0 if q <= atol else math.inf
    return q / b


class _Violation(AssertionError):
    pass


def _call(fn: Callable, example: Any, what: str) -> np.ndarray:
    out = fn(*example) if isinstance(example, tuple) and not hasattr(example, "_fields") else fn(example)
    try:
        arr = np.asarray(out, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValidationTypeError(f"{what} must return a real number or array; got {type(out).__name__}.") from None
    if arr.size == 0:
        raise ValidationError(f"{what} returned an empty array; return a float (or one value per task).")
    return arr


def _pair(b: np.ndarray, q: np.ndarray, atol: float) -> tuple[float, float]:
    """Return the (bound, quantity) pair with the largest ratio.

    The (bound, quantity) pair with the largest ratio: elementwise when both return one value
    per task (same size), else the maxima.
    """
    if b.size == q.size and b.size > 1:
        ratios = [_ratio(float(qi), float(bi), atol) for qi, bi in zip(q, b)]
        i = int(np.nanargmax(ratios)) if not all(math.isnan(r) for r in ratios) else 0
        return float(b[i]), float(q[i])
    return float(np.max(b)), float(np.max(q))


def check_bound(bound: Callable, quantity: Callable, strategy: SearchStrategy, *, max_examples: int = 200,
                rtol: float = 1e-9, atol: float = 0.0, rng: Any = None,
                ignore: tuple = (), name: str = "bound") -> BoundReport:
    """Search ``strategy`` for examples where ``quantity(example) > bound(example)``.

    Each example is passed to ``bound`` and ``quantity`` (unpacked when it is a plain tuple,
    such as the ``(task, K)`` pairs of :func:`~metalqr.testing.tasks_and_gains`). Both may
    return one value per task: arrays of the same size are compared elementwise (the worst
    task counts), otherwise each side is reduced by its maximum.
    Hypothesis targets the ratio ``quantity / bound`` (``hypothesis.target``) to push it up,
    and shrinks a violating example to a minimal one.

    Parameters
    ----------
    bound : callable
        The stated upper bound, ``bound(example) -> float``.
    quantity : callable
        The quantity it bounds, ``quantity(example) -> float``.
    strategy : hypothesis SearchStrategy
        Where to search (see ``metalqr.testing.strategies``).
    max_examples : int >= 1
        Hypothesis' budget of valid examples (200 by default).
    rtol, atol : float >= 0
        Slack: a violation is ``quantity > bound (1 + rtol) + atol``.
    rng : int seed >= 0, Generator or None
        Hypothesis's random seed (a Generator gives one draw); ``None`` (default) runs
        derandomised (the same examples every run).
    ignore : tuple of exception types
        Exceptions from ``bound``/``quantity`` that skip an example instead of failing
        (e.g. ``(metalqr.UnstablePolicyError,)``).
    name : str
        Label used in the report.

    Returns
    -------
    BoundReport
        Whether the bound held, the worst ratio and the shrunk counterexample.

    Raises
    ------
    ValidationError
        If an argument is malformed (names it), or no valid example could be drawn (every
        draw rejected by the strategy or skipped through ``ignore``).
    Exception
        Any other exception raised by ``bound`` or ``quantity`` (after shrinking).

    Notes
    -----
    Call it from a plain function or test, not from inside another ``@given`` test.

    Examples
    --------
    Check that no gain beats the optimal cost, ``J(K*) <= J(K)``:

    >>> from metalqr import cost, optimal_gain
    >>> from metalqr.testing import check_bound, tasks_and_gains
    >>> report = check_bound(lambda task, K: cost(task, K),
    ...                      lambda task, K: cost(task, optimal_gain(task)[0]),
    ...                      tasks_and_gains(max_d=2, max_k=1), max_examples=20, rng=0,
    ...                      name="J* <= J(K)")
    >>> report.holds, report.n_examples
    (True, 20)
    """
    check_callable(bound, "bound")
    check_callable(quantity, "quantity")
    if not isinstance(strategy, SearchStrategy):
        raise ValidationTypeError(f"strategy must be a hypothesis SearchStrategy (e.g. from "
                                  f"metalqr.testing.strategies); got {type(strategy).__name__}.")
    max_examples = check_int(max_examples, "max_examples", minimum=1, maximum=10**7)
    rtol = check_real(rtol, "rtol", minimum=0.0)
    atol = check_real(atol, "atol", minimum=0.0)
    seed = as_seed(rng, "rng", allow_none=True)
    if not isinstance(ignore, tuple) or not all(isinstance(e, type) and issubclass(e, BaseException)
                                                for e in ignore):
        raise ValidationTypeError(f"ignore must be a tuple of exception classes; got {ignore!r}.")
    if not isinstance(name, str):
        raise ValidationTypeError(f"name must be a str; got {type(name).__name__}.")

    state = {"worst": 0.0, "worst_ex": None, "n": 0, "rejected": 0, "fail": None}

    def body(example):
        try:
            b_arr = _call(bound, example, "bound")
            q_arr = _call(quantity, example, "quantity")
        except ignore:
            state["rejected"] += 1
            assume(False)
        state["n"] += 1
        b, q = _pair(b_arr, q_arr, atol)
        r = _ratio(q, b, atol)
        if math.isnan(r):
            state["fail"] = (example, b, q)
            raise _Violation(f"bound or quantity is NaN (bound={b}, quantity={q})")
        if r > state["worst"] or state["worst_ex"] is None:
            state["worst"], state["worst_ex"] = r, example
        target(min(r, 1e300), label="quantity / bound")
        if q > b * (1 + rtol) + atol:
            state["fail"] = (example, b, q)
            raise _Violation(f"quantity {q:.6g} > bound {b:.6g}")

    conf = dict(max_examples=max_examples, deadline=None, database=None, derandomize=seed is None,
                print_blob=False, report_multiple_bugs=False,
                phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink),
                suppress_health_check=list(HealthCheck))
    test = settings(**conf)(given(strategy)(body))
    described = _describe_settings(name, bound, quantity, strategy, max_examples, rtol, atol, rng,
                                   seed, ignore, conf)
    if seed is not None:
        from hypothesis import seed as hseed
        test = hseed(seed)(test)
    try:
        test()
        failed = False
    except _Violation:
        failed = True
    except Unsatisfiable:
        raise ValidationError(
            f"check_bound ({name}): no valid example: the strategy rejected every draw or bound/quantity "
            f"raised one of ignore={ignore!r} on all of them ({state['rejected']} skipped). Widen the "
            f"strategy or narrow ignore.") from None
    if not failed:
        return BoundReport(True, state["worst"], state["worst_ex"], None, math.nan, math.nan,
                           state["n"], state["rejected"], name, described)
    ex, b, q = state["fail"]
    if math.isnan(b) or math.isnan(q):
        which = " and ".join(n for n, v in (("bound", b), ("quantity", q)) if math.isnan(v))
        raise ValidationError(f"check_bound ({name}): {which} returned NaN on a valid example "
                              f"(bound={b}, quantity={q}); a bound must be a number for every "
                              f"example the strategy draws. Example: {ex!r}")
    return BoundReport(False, max(state["worst"], _ratio(q, b, atol)), state["worst_ex"], ex, b, q,
                       state["n"], state["rejected"], name, described)


def _qualname(fn: Any) -> str:
    mod = getattr(fn, "__module__", None)
    qn = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{mod}.{qn}" if mod else qn


def _describe_settings(name, bound, quantity, strategy, max_examples, rtol, atol, rng, seed,
                       ignore, conf) -> dict:
    """Build the :attr:`BoundReport.settings` of a :func:`check_bound` call (plain, JSON-serialisable)."""
    import hypothesis
    if seed is None:
        how = "derandomised (rng=None): Hypothesis draws the same examples every run"
    elif isinstance(rng, np.random.Generator):
        how = f"Hypothesis seed {seed}, one draw from the numpy Generator passed as rng"
    else:
        how = f"Hypothesis seed {seed} (rng={seed})"
    text = repr(strategy)
    return {
        "name": name, "bound": _qualname(bound), "quantity": _qualname(quantity),
        "strategy": text if len(text) <= 500 else text[:497] + "...",
        "max_examples": max_examples, "rtol": rtol, "atol": atol, "rng": how, "seed": seed,
        "derandomize": bool(conf["derandomize"]),
        "ignore": [e.__name__ for e in ignore],
        "phases": [p.name for p in conf["phases"]],
        "deadline": conf["deadline"], "database": conf["database"],
        "suppress_health_check": "all", "hypothesis_version": hypothesis.__version__,
    }


def assert_bound_holds(bound: Callable, quantity: Callable, strategy: SearchStrategy, **kwargs) -> BoundReport:
    """Assert that a bound holds (:func:`check_bound` for pytest).

    :func:`check_bound` for pytest: raise ``AssertionError`` with the report (worst ratio,
    shrunk counterexample with its matrices) if the bound is violated.

    Parameters
    ----------
    bound : callable
        As in :func:`check_bound`.
    quantity : callable
        As in :func:`check_bound`.
    strategy : hypothesis SearchStrategy
        As in :func:`check_bound`.
    **kwargs
        More options of :func:`check_bound`.

    Returns
    -------
    BoundReport
        When the bound holds (its ``worst_ratio`` tells how tight it was).

    Raises
    ------
    AssertionError
        If some example violates the bound.
    ValidationError
        If an argument is malformed.
    """
    report = check_bound(bound, quantity, strategy, **kwargs)
    if not report.holds:
        raise AssertionError(str(report))
    return report


# ---------------------------------------------------------------------------- derivatives
def _fd_step(K: np.ndarray, h: float | None) -> float:
    if h is None:
        return float(np.finfo(float).eps ** (1 / 3) * max(1.0, float(np.max(np.abs(K)))))
    return check_positive(h, "h")


def _directions(shape, n_directions, rng):
    size = int(np.prod(shape))
    if n_directions is None and size <= 64:
        for j in range(size):
            E = np.zeros(size)
            E[j] = 1.0
            yield E.reshape(shape)
        return
    n = 20 if n_directions is None else n_directions
    gen = as_rng(rng)
    for _ in range(n):
        X = gen.standard_normal(shape)
        yield X / np.linalg.norm(X)


def assert_gradient_matches_fd(f: Callable, grad: Callable, K: Any, *, h: float | None = None,
                               rtol: float = 1e-5, atol: float = 1e-8, n_directions: int | None = None,
                               rng: Any = 0) -> float:
    """Check a user's gradient formula against central finite differences of ``f``.

    For each direction ``X`` (every unit matrix when ``K`` has at most 64 entries, else
    ``n_directions`` random unit directions), ``(f(K + hX) - f(K - hX)) / 2h`` is compared with
    ``<grad(K), X>``; the check passes when every difference is at most
    ``rtol * ||grad(K)||_F + atol + 100 eps max(|f(K +- hX)|) / h``. The last term is the
    rounding error of the central difference itself, so a gradient near zero at a point
    where ``f`` is large (an optimum) is not a false alarm.

    Parameters
    ----------
    f : callable
        Scalar function of a matrix, ``f(K) -> float``.
    grad : callable
        Its claimed gradient, ``grad(K) -> ndarray`` of ``K``'s shape.
    K : array_like
        Point of the check (for an LQR cost: a stabilising gain, away from the boundary
        by more than ``h``).
    h : float > 0, optional
        Step (default ``eps^(1/3) max(1, max|K|)``).
    rtol, atol : float >= 0
        Tolerances.
    n_directions : int >= 1, optional
        Number of random directions (default: all unit matrices, or 20 if ``K`` is large).
    rng : Generator, int or None
        Seed of the random directions.

    Returns
    -------
    float
        The largest error relative to ``||grad(K)||_F`` (absolute if the gradient is 0).

    Raises
    ------
    AssertionError
        If a directional derivative disagrees (the message gives the direction, both values
        and the point).
    ValidationError
        If an argument is malformed, ``grad(K)`` has the wrong shape, or ``f`` or ``grad``
        returns a non-finite value.
    """
    check_callable(f, "f")
    check_callable(grad, "grad")
    K = as_float_array(K, "K", allow_empty=False)
    step = _fd_step(K, h)
    rtol = check_real(rtol, "rtol", minimum=0.0)
    atol = check_real(atol, "atol", minimum=0.0)
    if n_directions is not None:
        n_directions = check_int(n_directions, "n_directions", minimum=1)
    as_rng(rng)
    G = as_float_array(grad(K), "grad(K)", shape=K.shape)
    scale = float(np.linalg.norm(G))
    worst = 0.0
    for X in _directions(K.shape, n_directions, rng):
        fp, fm = check_real(f(K + step * X), "f(K + h X)"), check_real(f(K - step * X), "f(K - h X)")
        fd = (fp - fm) / (2 * step)
        an = float(np.sum(G * X))
        err = abs(fd - an)
        allowed = rtol * scale + atol + 100 * np.finfo(float).eps * max(abs(fp), abs(fm)) / step
        worst = max(worst, err / scale if scale > 0 else err)
        if err > allowed:
            raise AssertionError(
                f"gradient mismatch along direction\n{np.array2string(X, precision=4)}\n"
                f"finite difference {fd:.10g} vs <grad, X> = {an:.10g} (error {err:.3g}, allowed "
                f"{allowed:.3g}, h = {step:.3g}) at K =\n{np.array2string(K, precision=6)}")
    return worst


def assert_hvp_matches_fd(grad: Callable, hvp: Callable, K: Any, X: Any = None, *, h: float | None = None,
                          rtol: float = 1e-4, atol: float = 1e-8, n_directions: int = 3, rng: Any = 0) -> float:
    """Check a Hessian-vector product against central differences of the gradient.

    ``(grad(K + hX) - grad(K - hX)) / 2h`` vs ``hvp(K, X)`` (Frobenius norms).

    Parameters
    ----------
    grad : callable
        ``grad(K) -> ndarray`` of ``K``'s shape.
    hvp : callable
        ``hvp(K, X) -> ndarray`` of ``K``'s shape, the claimed ``Hess f(K)[X]``.
    K : array_like
        Point of the check.
    X : array_like, optional
        Direction; by default ``n_directions`` random unit directions.
    h : float > 0, optional
        Step (default ``eps^(1/3) max(1, max|K|)``).
    rtol, atol : float >= 0
        Pass when ``||fd - hvp|| <= rtol ||hvp|| + atol`` for every direction.
    n_directions : int >= 1
        Number of random directions when ``X`` is not given.
    rng : Generator, int or None
        Source of the random directions.

    Returns
    -------
    float
        The largest relative error.

    Raises
    ------
    AssertionError
        On a mismatch (direction, both values and the point printed).
    ValidationError
        If an argument is malformed or a callback returns a wrong shape or non-finite values.
    """
    check_callable(grad, "grad")
    check_callable(hvp, "hvp")
    K = as_float_array(K, "K", allow_empty=False)
    step = _fd_step(K, h)
    rtol = check_real(rtol, "rtol", minimum=0.0)
    atol = check_real(atol, "atol", minimum=0.0)
    n_directions = check_int(n_directions, "n_directions", minimum=1)
    if X is None:
        gen = as_rng(rng)
        dirs = []
        for _ in range(n_directions):
            Y = gen.standard_normal(K.shape)
            dirs.append(Y / np.linalg.norm(Y))
    else:
        dirs = [as_float_array(X, "X", shape=K.shape)]
    worst = 0.0
    for Y in dirs:
        fd = (as_float_array(grad(K + step * Y), "grad(K + h X)", shape=K.shape)
              - as_float_array(grad(K - step * Y), "grad(K - h X)", shape=K.shape)) / (2 * step)
        an = as_float_array(hvp(K, Y), "hvp(K, X)", shape=K.shape)
        err = float(np.linalg.norm(fd - an))
        scale = float(np.linalg.norm(an))
        worst = max(worst, err / scale if scale > 0 else err)
        if err > rtol * scale + atol:
            raise AssertionError(
                f"Hessian-vector product mismatch along X =\n{np.array2string(Y, precision=4)}\n"
                f"finite difference\n{np.array2string(fd, precision=8)}\nvs hvp\n"
                f"{np.array2string(an, precision=8)}\n(error {err:.3g}, allowed {rtol * scale + atol:.3g}, "
                f"h = {step:.3g}) at K =\n{np.array2string(K, precision=6)}")
    return worst
