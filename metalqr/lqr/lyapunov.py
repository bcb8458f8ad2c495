"""Batched discrete Lyapunov solver ``X = A X A' + W`` (Eq. (1) of the ZO-MAML paper).

Two pure-NumPy kernels, both batched over any leading axes:

* Kronecker solve of ``(I - A (x) A) vec(X) = vec(W)`` for ``d <= KRON_MAX_D``
  (exact up to the conditioning of the linear system);
* squared Smith ("doubling") iteration ``X <- X + A_j X A_j'``, ``A_{j+1} = A_j^2`` for
  larger ``d``, followed by one step of iterative refinement that re-uses the stored powers.
  It needs ``log2(log(eps)/log(rho))`` matrix products (16 at ``rho = 0.999``). In
  :func:`lyapunov_pair` each task of a batch stops squaring once its own powers are negligible.

Both are verified against :func:`scipy.linalg.solve_discrete_lyapunov` in the tests.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .._parallel import map_chunks
from .._validation import as_float_array, format_radius
from ..exceptions import UnstablePolicyError, ValidationError

__all__ = ["dlyap", "spectral_radius_of", "lyapunov_pair", "lyapunov_pair_one", "dlyap_unchecked"]

#: Largest state dimension handled by the Kronecker kernel.
KRON_MAX_D = 6
#: Batches with ``3 <= d <= KRON_MAX_D`` and ``n d^4`` at least this go to the doubling
#: kernel: ``n`` Kronecker solves of order ``d^2`` cost ``O(n d^6)`` and lose to about ten
#: batched squarings beyond it (1000 tasks: 9.9 -> 2.6 ms at d = 4, 27 -> 4.1 ms at d = 6 on
#: the 2-core benchmark machine; same results to 3e-14, see ``benchmarks/bench_lqr_core.py``).
KRON_BATCH_WORK = 10_000
#: Maximum number of doubling steps (2**64 terms of the series).
MAX_DOUBLINGS = 64


def spectral_radius_of(A: np.ndarray) -> np.ndarray:
    """Return the spectral radius of each matrix in the trailing two axes of ``A``.

    Spectral radius of each matrix in the trailing two axes of ``A``; ``inf`` for a matrix with
    non-finite entries (e.g. ``A - B K`` overflowed for a huge finite ``K``).
    """
    finite = np.all(np.isfinite(A), axis=(-2, -1))
    if not np.all(finite):
        safe = np.where(finite[..., None, None], A, 0.0)
        return np.where(finite, spectral_radius_of(safe), np.inf)
    if A.shape[-1] == 1:
        return np.abs(A[..., 0, 0])
    return np.max(np.abs(np.linalg.eigvals(A)), axis=-1)


def _sym(X: np.ndarray) -> np.ndarray:
    return 0.5 * (X + np.swapaxes(X, -1, -2))


def _dlyap_kron(A: np.ndarray, W: np.ndarray) -> np.ndarray:
    d = A.shape[-1]
    dd = d * d
    # Row-major vec: vec(A X A') = (A kron A) vec(X). lhs = I - A kron A, built in place
    # (1 - a on the diagonal equals -a + 1 exactly).
    lhs = (A[..., :, None, :, None] * A[..., None, :, None, :]).reshape(A.shape[:-2] + (dd, dd))
    np.negative(lhs, out=lhs)
    lhs.reshape(lhs.shape[:-2] + (dd * dd,))[..., ::dd + 1] += 1.0
    rhs = W.reshape(W.shape[:-2] + (dd, 1))
    try:
        x = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        # a member's Kronecker matrix is singular to working precision (or overflowed):
        # solve member by member, NaN for those (callers check stability and finiteness)
        x = np.full(rhs.shape, np.nan)
        for i in np.ndindex(*lhs.shape[:-2]):
            try:
                x[i] = np.linalg.solve(lhs[i], rhs[i])
            except np.linalg.LinAlgError:
                pass
    return x.reshape(W.shape)


def _doubling_powers(A: np.ndarray, limit: float = 1e200) -> tuple[list[np.ndarray], np.ndarray]:
    """Powers ``A, A^2, A^4, ...`` until each is negligible (``||A_j||_F^2 < 1e-18``).

    Returns the powers and a boolean mask over the batch: ``True`` where the powers
    vanished (``rho(A) < 1``), ``False`` where they did not within ``MAX_DOUBLINGS``
    squarings or overflowed (``rho(A) >= 1``, to working precision). Powers of
    non-converging members are zeroed so that they cannot poison the others with inf/NaN.
    """
    powers = [A]
    batch = A.shape[:-2]
    done = np.zeros(batch, dtype=bool)
    bad = np.zeros(batch, dtype=bool)
    for _ in range(MAX_DOUBLINGS):
        Aj = powers[-1]
        with np.errstate(over="ignore", invalid="ignore"):
            size = np.sum(Aj * Aj, axis=(-1, -2))
        bad |= ~np.isfinite(size) | (size > limit)
        done |= size < 1e-18
        if np.all(done | bad):
            break
        if np.any(bad):
            Aj = np.where(bad[..., None, None], 0.0, Aj)
            powers[-1] = Aj
        powers.append(Aj @ Aj)
    stable = done & ~bad
    if not np.all(stable):
        powers = [np.where(stable[..., None, None], P, 0.0) for P in powers]
    return powers, stable


def _apply_powers(powers: list[np.ndarray], W: np.ndarray, transpose: bool) -> np.ndarray:
    """Squared Smith iteration with given powers: ``sum_t A^t W A'^t`` (or with A')."""
    X = W
    for Aj in powers[:-1]:
        AjT = np.swapaxes(Aj, -1, -2)
        X = X + (AjT @ X @ Aj if transpose else Aj @ X @ AjT)
    return X


def _refined(powers: list[np.ndarray], A: np.ndarray, W: np.ndarray, transpose: bool) -> np.ndarray:
    """Doubling solve plus one refinement step where the relative residual exceeds 1e-12."""
    X = _apply_powers(powers, W, transpose)
    At = np.swapaxes(A, -1, -2)
    residual = W + (At @ X @ A if transpose else A @ X @ At) - X
    scale = np.linalg.norm(X, axis=(-2, -1))
    if np.any(np.linalg.norm(residual, axis=(-2, -1)) > 1e-12 * scale):
        X = X + _apply_powers(powers, residual, transpose)
    return X


def _symmetrise_if(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        asym = np.max(np.abs(W - np.swapaxes(W, -1, -2)), initial=0.0)
    return _sym(X) if asym <= 1e-12 * max(np.max(np.abs(W), initial=0.0), 1e-300) else X


def lyapunov_pair(A: np.ndarray, W_T: np.ndarray, W: np.ndarray | None = None, verify: bool = True):
    """Both Lyapunov equations of a closed loop, sharing the work (internal kernel).

    Solves ``X_T = A' X_T A + W_T`` and, if ``W`` is given, ``X = A X A' + W`` for a
    batch of matrices ``A`` (shape (n, d, d)). Unstable members (``rho(A) >= 1``) are
    flagged, not solved.

    Returns
    -------
    stable : ndarray of bool, shape (n,)
    X_T, X : ndarray, shape (n, d, d)
        Solutions (zeros where unstable); ``X`` is ``None`` when ``W`` is ``None``. NaN for a
        stable member whose solution overflows float64 or could not be verified (badly
        scaled or strongly non-normal ``A``; see :func:`_verified_solve`): callers raise a
        named error there, never "unstable". With ``verify=False`` the Kronecker kernel's
        solutions are returned unverified (for callers that check their own results, e.g.
        the Newton corrections of :mod:`metalqr.lqr.riccati`, whose right-hand sides are
        tiny indefinite residuals).
    """
    n, d = A.shape[0], A.shape[-1]
    arrays = [A, np.broadcast_to(W_T, A.shape)] + ([] if W is None else [np.broadcast_to(W, A.shape)])
    work = n * (d ** 6 if d <= KRON_MAX_D else 40.0 * d ** 3)
    fn = _lyapunov_pair_serial if verify else partial(_lyapunov_pair_serial, verify=False)
    return map_chunks(fn, arrays, n, work)


def _lyapunov_pair_serial(A: np.ndarray, W_T: np.ndarray, W: np.ndarray | None = None,
                          verify: bool = True):
    n, d = A.shape[0], A.shape[-1]
    if d <= KRON_MAX_D and (d <= 2 or n * d ** 4 < KRON_BATCH_WORK):
        return _lyapunov_pair_kron(A, W_T, W, verify)
    flagged = np.zeros(n, dtype=bool)
    stable, powers = _pair_powers(A, flagged)
    As = np.where(stable[:, None, None], A, 0.0)
    X_T = _pair_refined(powers, As, np.broadcast_to(W_T, A.shape), transpose=True)
    X = None if W is None else _pair_refined(powers, As, np.broadcast_to(W, A.shape),
                                             transpose=False)
    X_T = np.where(stable[:, None, None], _symmetrise_if(X_T, W_T), 0.0)
    if X is not None:
        X = np.where(stable[:, None, None], _symmetrise_if(X, W), 0.0)
    if flagged.any():
        _solve_flagged(A, W_T, W, flagged, stable, X_T, X)
    return stable, X_T, X


def _solve_flagged(A, W_T, W, flagged, stable, X_T, X) -> None:
    """Decide and solve the tasks whose doubling powers overflowed (in place).

    The powers of a badly scaled or strongly non-normal ``A`` with ``rho(A) < 1`` can
    overflow float64 although the solution is representable (e.g. ``A[0, 1] = 1e110`` with
    ``d > 6``): the doubling cannot tell such a task from an unstable one. For exactly the
    ``flagged`` tasks (overflowed, not certified unstable by :func:`_pair_powers`), stability
    is decided by the eigenvalues; a stable one is solved by :func:`_balanced_solve` and marked
    stable, with NaN solutions where no verified float64 solution exists (the callers raise a
    :class:`~metalqr.ValidationError` that says so, never "unstable").
    """
    idx = np.flatnonzero(flagged)
    rho = spectral_radius_of(A[idx])
    for i in idx[rho < 1.0]:
        XT_i = _balanced_solve(A[i], W_T[i], transpose=True)
        X_i = None if X is None else _balanced_solve(A[i], W[i], transpose=False)
        stable[i] = True
        X_T[i] = np.nan if XT_i is None else XT_i
        if X is not None:
            X[i] = np.nan if X_i is None else X_i


#: Largest componentwise relative residual ``|W + M X M' - X| / (|M| |X| |M'| + |W|)`` at which
#: :func:`_balanced_solve` accepts a solution (the doubling reaches about ``1e-16``).
BALANCED_RESIDUAL_TOL = 1e-10


def _doubling_one(M: np.ndarray, W: np.ndarray, limit: float = 1e200) -> np.ndarray | None:
    """``X = M X M' + W`` for one ``M`` by the doubling (a sum of the terms ``M^t W M'^t``).

    Independent of the Kronecker kernel's LU (no cancellation between terms for a
    semidefinite ``W``), so agreement of the two is evidence of accuracy; ``None`` where the
    powers overflow or do not vanish.
    """
    powers, ok = _doubling_powers(M[None], limit)
    if not ok[0]:
        return None
    return _refined(powers, M[None], W[None], transpose=False)[0]


def _schur_one(M: np.ndarray, W: np.ndarray) -> np.ndarray | None:
    """SciPy's Schur-based ``solve_discrete_lyapunov(M, W, method="bilinear")``, or ``None``."""
    import warnings
    from scipy.linalg import solve_discrete_lyapunov
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # ill-conditioning: judged by the caller
            X = solve_discrete_lyapunov(M, W, method="bilinear")
    except (ValueError, np.linalg.LinAlgError):
        return None
    return X if np.isrealobj(X) and np.isfinite(X).all() else None


def _agree(X: np.ndarray, Y: np.ndarray | None) -> bool:
    """Whether two solutions agree to :data:`AGREE_RTOL` (normwise, both finite)."""
    if Y is None:
        return False
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        # scaled by max |Y|: the Frobenius norm of a representable X of entries ~1e200 overflows
        scale = float(np.max(np.abs(Y), initial=0.0))
        if not (np.isfinite(scale) and np.isfinite(X).all()):
            return False
        scale = scale if scale > 0.0 else 1.0
        diff, size = np.linalg.norm((X - Y) / scale), np.linalg.norm(Y / scale)
    return bool(np.isfinite(diff) and np.isfinite(size) and diff <= AGREE_RTOL * size)


#: Two independent solutions of a badly conditioned task (the doubling's and the Kronecker
#: LU's or SciPy's Schur-based one) must agree to this relative (Frobenius) difference for the
#: doubling's to be accepted. Against exact rational arithmetic on such tasks (d = 3..5,
#: ``||A - BK||_F`` 1e2..7e3) the doubling was off by 1e-11..2e-6, SciPy's by up to 2e-4 and the
#: Kronecker LU's by up to 5e-2 (once with the wrong sign of the cost); at 1e-6 the check
#: refused solvable tasks (one in optimal_gain's own verification).
AGREE_RTOL = 1e-4


def _verified_solve(M: np.ndarray, W: np.ndarray, X0: np.ndarray | None) -> np.ndarray | None:
    """Return a verified solution of ``X = M X M' + W`` for one badly scaled or non-normal ``M``.

    ``rho(M) < 1`` assumed. Given ``X0`` (the Kronecker kernel's solution), the doubling's
    solution (:func:`_doubling_one`) is returned if its componentwise residual passes
    :data:`BALANCED_RESIDUAL_TOL` and it agrees to :data:`AGREE_RTOL` with ``X0`` or with
    SciPy's Schur-based solver (:func:`_schur_one`). A small residual alone is not enough:
    a ``d = 3`` closed loop with entries of 5e3 and ``rho = 0.86`` gave a Kronecker ``P_K``
    with residual 1e-11 and cost ``-1.9e17`` (exact, in rational arithmetic: ``+2.19e17``);
    on nine such loops found by Hypothesis the Kronecker solution was off by 2e-6..3e-5
    relative, the doubling's by 1e-11..2e-6. Without ``X0`` (the doubling's powers passed its
    ``1e200`` guard), the doubling is run again up to true overflow (:func:`_doubling_one` with
    ``limit=inf``) and returned if its residual passes and it agrees with SciPy's: for
    ``M = 0.99 I + N`` (N the shift, d = 50..70) both are within 1e-13 of the series summed in
    ``np.longdouble``. Otherwise ``M = D Mb D^-1`` is balanced (:func:`scipy.linalg.matrix_balance`, powers of 2,
    exact) and ``Y = D^-1 X D^-1`` solves ``Y = Mb Y Mb' + D^-1 W D^-1`` by
    :func:`dlyap_unchecked`: accepted with a passing residual if ``Mb`` is moderate
    (``||Mb||_F <= KRON_CHECK_ABOVE sqrt(d)``, the kernels' reliable range), else only if
    the doubling on ``Mb`` agrees with it too. ``None`` where nothing passes (not
    representable in float64, or too ill-conditioned to compute in it).
    """
    from scipy.linalg import matrix_balance
    d = M.shape[-1]
    with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
        if X0 is not None:
            Xd = _doubling_one(M, W)
            if Xd is not None and _residual_ok(M, W, Xd) and (_agree(Xd, X0) or _agree(Xd, _schur_one(M, W))):
                return Xd
        else:
            # the doubling's powers passed its 1e200 guard (the caller's reason to be here):
            # that guard is too conservative for a strongly non-normal stable M (a Jordan-like
            # M = 0.99 I + N with d = 60 has |M^t| up to 8e111 and a representable X, tr 3.7e236)
            Xd = _doubling_one(M, W, limit=np.inf)
            if Xd is not None and _residual_ok(M, W, Xd) and _agree(Xd, _schur_one(M, W)):
                return Xd
        _, (s, _) = matrix_balance(M, permute=False, separate=True)
        outer = s[:, None] * s[None, :]
        Mb = M * s[None, :] / s[:, None]
        Wb = W / outer
        Y = dlyap_unchecked(Mb, Wb, balance=False)
        X = Y * outer
        if not _residual_ok(M, W, X):
            return None
        moderate = float(np.vdot(Mb, Mb)) <= KRON_CHECK_ABOVE ** 2 * d
        if moderate or _agree(Y, _doubling_one(Mb, Wb)):
            return X
    return None


def _balanced_solve(A: np.ndarray, W: np.ndarray, transpose: bool) -> np.ndarray | None:
    """:func:`_verified_solve` of ``X = M X M' + W`` with ``M = A'`` if ``transpose`` else ``A``."""
    return _verified_solve(A.T if transpose else A, W, None)


#: Tasks of the Kronecker kernels with ``||A||_F > KRON_CHECK_ABOVE sqrt(d)`` have their
#: solution verified by :func:`_verified_solve` (componentwise residual and agreement with the
#: doubling; else balancing; else NaN and a named error from the callers): the Kronecker matrix
#: of a badly scaled or strongly non-normal ``A`` (e.g. ``D A D^-1`` with ``D`` spanning 1e50,
#: d >= 4, or a ``d = 3`` closed loop with entries of 5e3 and spectral radius 0.86) is so
#: ill-conditioned that LU returned costs and gradients wrong by factors of 1-1000, and
#: negative costs. In 3000 random non-normal ``A`` (d = 3..6) the first residual failures
#: appeared at ``||A||_F / sqrt(d) ~ 100``; typical tasks have ``||A||_F / sqrt(d) <= rho(A)``
#: and are not checked.
KRON_CHECK_ABOVE = 10.0


def _residual_ok(M: np.ndarray, W: np.ndarray, X: np.ndarray) -> bool:
    """Whether ``X = M X M' + W`` holds to :data:`BALANCED_RESIDUAL_TOL` componentwise."""
    with np.errstate(over="ignore", invalid="ignore"):
        R = W + M @ X @ M.T - X
        absM = np.abs(M)
        S = absM @ np.abs(X) @ absM.T + np.abs(W)
        return bool(np.isfinite(X).all() and np.isfinite(S).all()
                    and np.all(np.abs(R) <= BALANCED_RESIDUAL_TOL * S))


def _members(mask: np.ndarray):
    """Index tuples of the True entries of a boolean batch mask (``()`` for a 0-d True)."""
    if mask.ndim == 0:
        return [()] if mask else []
    return list(zip(*np.nonzero(mask)))


def _check_large(A: np.ndarray, W: np.ndarray, X: np.ndarray, transpose: bool, mask) -> None:
    """Verify, in place, the Kronecker solutions ``X`` of the members with large entries.

    For each member ``i`` (index tuple over the batch axes) where ``mask`` is True and
    ``||A[i]||_F > KRON_CHECK_ABOVE sqrt(d)``: ``X[i]`` becomes :func:`_verified_solve`'s
    answer (``X[i]`` itself when it passes its checks; NaN if nothing does).
    """
    with np.errstate(invalid="ignore"):
        big = mask & (np.einsum("...ij,...ij->...", A, A) > KRON_CHECK_ABOVE ** 2 * A.shape[-1])
    for i in _members(big):
        Xi = _verified_solve(A[i].T if transpose else A[i], W[i], X[i])
        X[i] = np.nan if Xi is None else Xi


#: A power ``A^(2^j)`` of a task with ``||A^(2^j)||_F^2`` below this is negligible: the terms
#: it would add are below ``1e-18`` relative to the solution (the doubling test above).
_NEGLIGIBLE = 1e-18
#: Probe vectors of the cheap residual check in :func:`_pair_refined`.
_PROBES = 8
_EPS = float(np.finfo(float).eps)


def _pair_powers(A: np.ndarray, flagged: np.ndarray | None = None):
    """Powers ``A^(2^j)`` of a batch, each task only as far as it needs them (issue 15).

    Same stability decision as :func:`_doubling_powers` (``||A^(2^j)||_F^2 < 1e-18`` within
    ``MAX_DOUBLINGS`` squarings, no overflow), but per task: a task whose power is negligible
    drops out of the later squarings and applications, and a power ``A_j`` with
    ``||A_j||_F^2 < 1e-9`` is not squared at all, since ``||A_j^2||_F <= ||A_j||_F^2`` already
    certifies the next one negligible. For 10 tasks of ``d = 200`` with ``rho`` in [0.3, 0.95]
    this skips about a sixth of the products of the shared doubling.

    If ``flagged`` (bool, shape (n,)) is given, the tasks whose powers overflowed without
    proving ``rho(A) >= 1`` are set ``True`` in it: ``|tr(A_j)| <= d rho(A)^(2^j)``, so
    ``|tr(A_j)| > d`` plus a bound on the rounding error of the computed ``A_j`` (tracked
    through the squarings) proves ``rho(A) > 1``. That holds for a typical unstable task; a
    stable one whose powers overflow (badly scaled, strongly non-normal) is never proved
    unstable and is flagged for :func:`_solve_flagged`.

    Returns
    -------
    stable : ndarray of bool, shape (n,)
    powers : list of (idx, Aj)
        ``Aj`` (shape (len(idx), d, d)) is ``A^(2^j)`` of the tasks ``idx`` that still need it
        (``idx`` is ``None`` for all tasks); unstable tasks never appear.
    """
    n, d = A.shape[0], A.shape[-1]
    stable = np.zeros(n, dtype=bool)
    bad = np.zeros(n, dtype=bool)
    powers = []
    idx, Aj = np.arange(n), A
    err = np.zeros(n)       # bound on ||computed A_j - A^(2^j)||_F (A itself is exact)
    for _ in range(MAX_DOUBLINGS):
        with np.errstate(over="ignore", invalid="ignore"):
            size = np.einsum("nij,nij->n", Aj, Aj)
        worse = ~np.isfinite(size) | (size > 1e200)
        bad[idx[worse]] = True
        if flagged is not None and worse.any():
            w = np.flatnonzero(worse)
            with np.errstate(over="ignore", invalid="ignore"):
                diag = np.diagonal(Aj[w], axis1=-2, axis2=-1)
                margin = d + 2.0 * (np.sqrt(d) * err[w] + d * _EPS * np.abs(diag).sum(axis=-1))
                proved = np.abs(diag.sum(axis=-1)) > margin
            flagged[idx[w[~proved]]] = True
        small = ~worse & (size < _NEGLIGIBLE)
        stable[idx[small]] = True
        use = ~worse & ~small                      # tasks that apply this power
        if not np.any(use):
            break
        powers.append((idx[use], Aj[use]))
        square = use & (size >= np.sqrt(_NEGLIGIBLE))
        stable[idx[use & ~square]] = True          # next power certified negligible
        if not np.any(square):
            break
        idx, Aj = idx[square], Aj[square]
        if flagged is not None:     # ||A^2 - B^2|| <= (2||B|| + e) e; the product adds d eps ||B||^2
            with np.errstate(over="ignore", invalid="ignore"):   # inf: nothing proved
                nrm = np.sqrt(size[square])
                err = (2.0 * nrm + err[square]) * err[square] + 1.01 * d * _EPS * nrm * nrm
        Aj = Aj @ Aj
    # a task that was still squaring after MAX_DOUBLINGS steps is neither stable nor flagged
    # bad above: it stays ``False`` in ``stable``, as in :func:`_doubling_powers`
    stable &= ~bad
    if not np.all(stable):
        keep = stable
        powers = [(i[keep[i]], P[keep[i]]) for i, P in powers]
        powers = [(i, P) for i, P in powers if i.size]
    full = [(None if i.size == n else i, P) for i, P in powers]
    return stable, full


def _pair_apply(powers, W: np.ndarray, transpose: bool) -> np.ndarray:
    """Squared Smith iteration on the tasks of each power only.

    ``X <- X + A_j X A_j'`` (or ``A_j' X A_j``) for each power of :func:`_pair_powers`.
    """
    X = np.array(W, dtype=float, copy=True)
    for idx, Aj in powers:
        AjT = np.swapaxes(Aj, -1, -2)
        if idx is None:
            X += (AjT @ X) @ Aj if transpose else (Aj @ X) @ AjT
        else:
            Xi = X[idx]
            X[idx] = Xi + ((AjT @ Xi) @ Aj if transpose else (Aj @ Xi) @ AjT)
    return X


def _pair_refined(powers, A: np.ndarray, W: np.ndarray, transpose: bool) -> np.ndarray:
    """Doubling solve plus one refinement step where the relative residual exceeds 1e-12.

    The residual ``R = W + A X A' - X`` is first estimated from ``_PROBES`` fixed Gaussian
    probe vectors ``V`` (``E ||R V||_F^2 = p ||R||_F^2``; matrix-vector work only). Only where
    the estimate exceeds a tenth of the tolerance is the full residual formed (two products)
    and, above the tolerance, one refinement step applied as in :func:`_refined`. An
    underestimate by 10x has probability about 1e-7 for the worst (rank-one) residual.
    """
    X = _pair_apply(powers, W, transpose)
    d = A.shape[-1]
    V = np.random.default_rng(15).standard_normal((d, _PROBES))
    At = np.swapaxes(A, -1, -2)
    with np.errstate(over="ignore", invalid="ignore"):
        RV = W @ V + (At @ (X @ (A @ V)) if transpose else A @ (X @ (At @ V))) - X @ V
        est = np.sqrt(np.einsum("nij,nij->n", RV, RV) / _PROBES)
        scale = np.linalg.norm(X, axis=(-2, -1))
    check = np.flatnonzero(~(est <= 1e-13 * scale))
    if check.size:
        Ac, Atc, Xc = A[check], At[check], X[check]
        with np.errstate(over="ignore", invalid="ignore"):   # W of an unstable member may be inf
            residual = W[check] + (Atc @ Xc @ Ac if transpose else Ac @ Xc @ Atc) - Xc
            over = np.linalg.norm(residual, axis=(-2, -1)) > 1e-12 * scale[check]
        if np.any(over):
            # refine the whole chunk (a zero residual where it is not needed adds nothing)
            full = np.zeros_like(X)
            full[check[over]] = residual[over]
            X = X + _pair_apply(powers, full, transpose)
    return X


def _sym_if_unguarded(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """:func:`_symmetrise_if` for a caller that already holds ``np.errstate``."""
    absW = np.abs(W)
    asym = np.abs(W - np.swapaxes(W, -1, -2)).max(initial=0.0)
    return _sym(X) if asym <= 1e-12 * max(absW.max(initial=0.0), 1e-300) else X


def _schur_stable_2x2(A: np.ndarray) -> np.ndarray:
    """Test ``rho(A) < 1`` for real 2 x 2 matrices by the Schur-Cohn (Jury) test.

    ``rho(A) < 1`` for real 2 x 2 matrices by the Schur-Cohn (Jury) test on the characteristic
    polynomial ``z^2 - t z + det``: ``|det| < 1`` and ``|t| < 1 + det`` (``p(1) > 0``, ``p(-1) >
    0``). Exact at the boundary where eigenvalues are (e.g. ``diag(1, 0.5)`` is unstable) and
    free of the ``sqrt(eps)`` error of the closed-form eigenvalues at a double root; ``False``
    for non-finite entries. A tenth of the cost of ``eigvals`` on a batch.
    """
    a, b, c, e = A[..., 0, 0], A[..., 0, 1], A[..., 1, 0], A[..., 1, 1]
    t, det = a + e, a * e - b * c
    return (np.abs(det) < 1.0) & (np.abs(t) < 1.0 + det)


#: Batches of ``d = 2`` with at least this many members (and ``W`` given) use the compiled
#: kernel :func:`metalqr.lqr._lyap_numba.pair_2x2` when Numba is installed.
NUMBA_MIN_BATCH = 64
_NUMBA_PAIR = []


def _numba_pair():
    """Return the compiled ``d = 2`` kernel, or ``None`` without Numba (looked up once)."""
    if not _NUMBA_PAIR:
        import importlib.util
        if importlib.util.find_spec("numba") is None:
            _NUMBA_PAIR.append(None)
        else:
            from ._lyap_numba import pair_2x2
            _NUMBA_PAIR.append(pair_2x2)
    return _NUMBA_PAIR[0]


def _lyapunov_pair_kron(A: np.ndarray, W_T: np.ndarray, W: np.ndarray | None = None,
                        verify: bool = True):
    """Solve the Lyapunov pairs by the Kronecker kernel.

    The Kronecker kernel of :func:`lyapunov_pair` (``d <= KRON_MAX_D``) with its per-call
    overhead cut for small batches (issue 15, small-task latency): one ``errstate`` for the
    whole call, stability from ``eigvals`` when every entry is finite (the Schur-Cohn test
    :func:`_schur_stable_2x2` for ``d = 2``), no masking when every member is stable, and both
    equations in one batched solve. Same results as before (stability decided by ``rho(A) < 1``,
    members with ``rho >= 1`` zeroed and flagged).
    """
    n, d = A.shape[0], A.shape[-1]
    if d == 2 and W is not None and n >= NUMBA_MIN_BATCH and np.isfinite(A).all():
        kernel = _numba_pair()
        if kernel is not None:
            return _pair_2x2_compiled(kernel, A, W_T, W, verify)
    with np.errstate(over="ignore", invalid="ignore"):
        if d == 1:
            stable = np.abs(A[:, 0, 0]) < 1.0
        elif d == 2:
            stable = _schur_stable_2x2(A)
        elif np.isfinite(A).all():
            stable = np.abs(np.linalg.eigvals(A)).max(axis=-1) < 1.0
        else:
            stable = spectral_radius_of(A) < 1.0
        all_stable = bool(stable.all())
        As = A if all_stable else np.where(stable[:, None, None], A, 0.0)
        AsT = np.swapaxes(As, -1, -2)
        if W is None:
            X_T, X = _dlyap_kron(AsT, W_T), None
        else:
            both = _dlyap_kron(np.concatenate([AsT, As]),
                               np.concatenate([np.broadcast_to(W_T, A.shape),
                                               np.broadcast_to(W, A.shape)]))
            X_T, X = both[:n], both[n:]
        X_T = _sym_if_unguarded(X_T, W_T)
        if X is not None:
            X = _sym_if_unguarded(X, W)
        if verify:
            _check_large(A, np.broadcast_to(W_T, A.shape), X_T, True, stable)
            if X is not None:
                _check_large(A, np.broadcast_to(W, A.shape), X, False, stable)
        if not all_stable:
            X_T = np.where(stable[:, None, None], X_T, 0.0)
            X = None if X is None else np.where(stable[:, None, None], X, 0.0)
    return stable, X_T, X


_EYES: dict[int, np.ndarray] = {}


def _pair_2x2_compiled(kernel, A, W_T, W, verify: bool = True):
    """Solve the Lyapunov pairs of a batch of 2 x 2 members by the compiled kernel.

    :func:`_lyapunov_pair_kron` for a batch of 2 x 2 members by the compiled kernel (same
    stability test, same symmetrisation rule).
    """
    n = A.shape[0]
    W_T = np.ascontiguousarray(np.broadcast_to(W_T, A.shape))
    W = np.ascontiguousarray(np.broadcast_to(W, A.shape))
    X_T, X = np.empty_like(W_T), np.empty_like(W)
    stable = np.empty(n, dtype=np.bool_)
    with np.errstate(over="ignore", invalid="ignore"):
        kernel(np.ascontiguousarray(A), W_T, W, X_T, X, stable)
        X_T = _sym_if_unguarded(X_T, W_T)
        X = _sym_if_unguarded(X, W)
    if verify:
        _check_large(A, W_T, X_T, True, stable)
        _check_large(A, W, X, False, stable)
    return stable, X_T, X


def lyapunov_pair_one(A: np.ndarray, W_T: np.ndarray, W: np.ndarray | None = None):
    """Solve the Lyapunov pair for one small closed loop.

    :func:`lyapunov_pair` for ONE closed loop ``A`` of shape (d, d) with ``d <= KRON_MAX_D``
    (internal fast path of the single-task cost and gradient, issue 15).

    Same maths and the same decisions as the batched Kronecker kernel: stable iff
    ``rho(A) < 1`` (``eigvals``; the Schur-Cohn test for ``d = 2``); ``X_T`` from ``(I - A (x) A)' vec(X_T) = vec(W_T)`` and
    ``X`` from ``(I - A (x) A) vec(X) = vec(W)`` (one Kronecker matrix, its transpose being
    the Kronecker matrix of ``A'``); ``X_T`` symmetrised when ``W_T`` is symmetric to
    ``1e-12`` relative, ``X`` always (``W`` must be exactly symmetric: a validated ``Psi``).
    Non-finite ``A`` or larger ``d`` go to the batched kernel. The caller holds
    ``np.errstate(over="ignore", invalid="ignore")``.

    Returns
    -------
    stable : bool
    X_T, X : ndarray, shape (d, d)
        Zeros when not stable; ``X`` is ``None`` when ``W`` is ``None``.
    """
    d = A.shape[0]
    if d > KRON_MAX_D or not np.isfinite(A).all():
        stable, X_T, X = _lyapunov_pair_kron(A[None], W_T[None], None if W is None else W[None])
        return bool(stable[0]), X_T[0], None if X is None else X[0]
    if d == 1:
        stable = abs(A[0, 0]) < 1.0
    elif d == 2:
        t, det = A[0, 0] + A[1, 1], A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]
        stable = abs(det) < 1.0 and abs(t) < 1.0 + det
    else:
        stable = np.abs(np.linalg.eigvals(A)).max() < 1.0
    if not stable:
        Z = np.zeros((d, d))
        return False, Z, None if W is None else Z.copy()
    dd = d * d
    eye = _EYES.get(dd)
    if eye is None:
        eye = _EYES.setdefault(dd, np.eye(dd))
    L = eye - (A[:, None, :, None] * A[None, :, None, :]).reshape(dd, dd)
    try:
        X_T = np.linalg.solve(L.T, W_T.reshape(dd)).reshape(d, d)
    except np.linalg.LinAlgError:       # singular to working precision or overflowed: checked below
        X_T = np.full((d, d), np.nan)
    WT_T = W_T.T
    if np.abs(W_T - WT_T).max() <= 1e-12 * max(np.abs(W_T).max(), 1e-300):
        X_T = 0.5 * (X_T + X_T.T)
    large = float(np.vdot(A, A)) > KRON_CHECK_ABOVE ** 2 * d   # ||A||_F, cheaper than max |A_ij|
    if large:
        X_T = X_T.copy()
        _check_large(A[None], W_T[None], X_T[None], True, np.ones(1, dtype=bool))
    if W is None:
        return True, X_T, None
    try:
        X = np.linalg.solve(L, W.reshape(dd)).reshape(d, d)
    except np.linalg.LinAlgError:
        X = np.full((d, d), np.nan)
    X = 0.5 * (X + X.T)
    if large:
        _check_large(A[None], W[None], X[None], False, np.ones(1, dtype=bool))
    return True, X_T, X


def dlyap_unchecked(A: np.ndarray, W: np.ndarray, balance: bool = True) -> np.ndarray:
    """Kernel of :func:`dlyap` without validation (``rho(A) < 1`` assumed).

    ``A`` and ``W`` must already broadcast to a common batch shape. When ``balance`` is True,
    a badly scaled member (for ``d > KRON_MAX_D`` doubling powers that overflow float64, for
    the Kronecker kernel entries above :data:`KRON_CHECK_ABOVE` with a failed residual check)
    is solved by :func:`_balanced_solve`; NaN where that finds no verified float64 solution
    (the caller raises).
    """
    A, W = np.broadcast_arrays(A, W)
    if A.shape[-1] <= KRON_MAX_D:
        X = _dlyap_kron(A, W)
        if balance:
            _check_large(A, W, X, False, np.ones(A.shape[:-2], dtype=bool))
    else:
        powers, ok = _doubling_powers(A)
        X = _refined(powers, A, W, transpose=False)
        if not np.all(ok):      # powers overflowed (badly scaled A): no plausible partial sum
            X = np.where(ok[..., None, None], X, np.nan)
            if balance:         # solve those after balancing (NaN where that fails its check)
                for i in _members(~ok):
                    Xi = _balanced_solve(A[i], W[i], transpose=False)
                    if Xi is not None:
                        X[i] = Xi
    return _symmetrise_if(X, W)


def dlyap(A: Any, W: Any) -> np.ndarray:
    """Solve the discrete Lyapunov equation ``X = A X A' + W``.

    Parameters
    ----------
    A : array_like, shape (..., d, d)
        Matrices with spectral radius < 1 (batched over leading axes).
    W : array_like, shape (..., d, d)
        Right-hand sides, broadcast against ``A``.

    Returns
    -------
    X : ndarray, shape broadcast(A, W)
        The unique solution ``X = sum_t A^t W (A')^t``. Symmetric whenever ``W`` is.

    Raises
    ------
    ValidationError
        On wrong shapes or non-finite input, or when the solution overflows float64 or no
        solution passes metalqr's checks (powers of ``A`` beyond the doubling solver's guard,
        ``d > 6``, are not by themselves an error: such an ``A`` is solved again by the
        doubling up to true overflow, cross-checked against SciPy's Schur-based solver, and
        else balanced by a diagonal similarity): no infinite, NaN or truncated solution is
        ever returned.
    UnstablePolicyError
        If some ``A`` has spectral radius >= 1 (the series diverges; no solution is
        returned). The message names the batch index and the spectral radius.

    Notes
    -----
    With ``A = (A_i - B_i K)'`` and ``W = Q_i + K'R_i K`` this gives ``P_K`` of
    Proposition 1; with ``A = A_i - B_i K`` and ``W = Psi`` the state covariance
    ``Sigma_K`` of Eq. (1) of the ZO-MAML paper.

    References
    ----------
    ZO-MAML paper [pan2025zomaml], Eq. (1) and Proposition 1 (the two Lyapunov equations).

    Examples
    --------
    >>> import numpy as np, metalqr
    >>> X = metalqr.dlyap(np.array([[0.5]]), np.array([[1.0]]))
    >>> float(X[0, 0])  # 1 / (1 - 0.25)
    1.3333333333333333
    """
    A = as_float_array(A, "A")
    W = as_float_array(W, "W")
    for name, M in (("A", A), ("W", W)):
        if M.ndim < 2 or M.shape[-1] != M.shape[-2] or M.shape[-1] == 0:
            raise ValidationError(f"{name} must have shape (..., d, d) with square trailing axes; "
                                  f"got {M.shape}.")
    if A.shape[-1] != W.shape[-1]:
        raise ValidationError(f"A and W must have the same d; got A {A.shape} and W {W.shape}.")
    try:
        batch = np.broadcast_shapes(A.shape[:-2], W.shape[:-2])
    except ValueError:
        raise ValidationError(f"the leading (batch) axes of A {A.shape[:-2]} and W {W.shape[:-2]} "
                              f"do not broadcast.") from None
    rho = spectral_radius_of(A)
    if np.any(rho >= 1.0):
        idx = np.unravel_index(int(np.argmax(rho)), rho.shape) if rho.ndim else ()
        where = f"A[{', '.join(map(str, idx))}]" if idx else "A"
        raise UnstablePolicyError(
            f"dlyap needs spectral radius < 1; {where} has spectral radius {format_radius(np.max(rho))}, "
            f"so X = A X A' + W has no convergent solution.",
            task_index=int(np.ravel_multi_index(idx, rho.shape)) if idx else None,
            spectral_radius=float(np.max(rho)))
    d = A.shape[-1]
    with np.errstate(over="ignore", invalid="ignore"):
        X = dlyap_unchecked(np.broadcast_to(A, batch + (d, d)), np.broadcast_to(W, batch + (d, d)))
    if not np.all(np.isfinite(X)):
        bad = np.argwhere(~np.isfinite(X).all(axis=(-2, -1)).reshape(batch or (1,)))
        where = f" (batch index {tuple(int(i) for i in bad[0])})" if batch else ""
        raise ValidationError(
            f"no solution X of X = A X A' + W{where} could be computed and verified in float64: "
            f"X (or the powers of A summed to form it) exceeds the float64 range (about 1.8e308), "
            f"or the equation is too ill-conditioned (A strongly non-normal or badly scaled) for "
            f"any solution to pass metalqr's residual and cross-checks (largest |A| entry "
            f"{float(np.max(np.abs(A))):.3g}, |W| {float(np.max(np.abs(W))):.3g}, spectral radius "
            f"{format_radius(np.max(rho))}). If A is badly scaled, balance it by a diagonal "
            f"similarity D A D^-1 (W -> D W D); if X itself is huge, scale W down.")
    return X
