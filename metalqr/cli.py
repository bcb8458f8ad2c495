"""metalqr: LQR meta-policy optimisation (zeroth-order MAML) and task weighting with iLQR.

Designs LQR controllers, meta-learns a policy initialisation over a family of LQR tasks
with the zeroth-order MAML algorithms of Pan, Li & Zhu and reproduces the figures of the
two papers metalqr implements (docs/references.md).

Sub-commands
------------
``metalqr demo``
    Designs LQR controllers for the standard systems and prints a comparison table.
``metalqr reproduce fig1 [--quick]``
    Reproduces Figure 1 of the ZO-MAML paper (see :mod:`metalqr.meta.figure1`).
``metalqr reproduce fig1 --seeds N``
    Figure 1 as mean +- 95% CI over seeds, on Dask (:mod:`metalqr.experiments`).
``metalqr sweep CONFIG``
    A study (grid of runs over seeds and settings) from a TOML file (:mod:`metalqr.experiments`).
``metalqr tow``
    Task weighting with trajectory optimisation (TOW) against its baselines
    (``--source omniglot --omniglot PATH`` for Omniglot).
``metalqr tow-runs PATH``
    Nearest-neighbour scores on the 20 Omniglot one-shot runs (:mod:`metalqr.tow.omniglot`).

A user error (bad option value, damaged checkpoint, output folder in use...) prints one
line ``metalqr: error: <message>`` on stderr and exits with status 2; ``--debug`` shows the
full traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
import traceback
from typing import Callable, Sequence

import numpy as np

from ._version import __version__
from ._checkpoint import FolderLock
from ._report import print_table as _print_table
from ._validation import check_choice, check_int, check_real
from .exceptions import MetalqrError, ValidationError, ValidationTypeError

__all__ = ["main", "demo_table", "build_parser"]

#: Exit status of a user error (bad option, damaged checkpoint, folder in use), as argparse.
EXIT_USAGE = 2
#: Exit status of a run that finished but did not do what it was asked (a stalled setting).
EXIT_FAILED = 1

_PROG_DESCRIPTION = """\
metalqr: LQR meta-policy optimisation (zeroth-order MAML, Pan, Li & Zhu) and task
weighting in meta-learning with trajectory optimisation (TOW, Nguyen, Do & Carneiro).
References: docs/references.md."""

_PROG_EPILOG = """\
examples:
  metalqr reproduce fig1 --quick      quick reproduction of Figure 1 of the ZO-MAML paper
  metalqr demo                        LQR controller design on the standard systems
  metalqr tow --quick                 TOW task weighting on few-shot sinusoid regression
  metalqr <command> --help            options of one command

A user error prints one line 'metalqr: error: ...' and exits with status 2; add --debug
to see the full traceback."""


# --------------------------------------------------------------------------- parsing helpers
class _UsageError(Exception):
    """A command-line error found by argparse (unknown option, bad value...)."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every option's default, unless its help already states it ("default:")."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default:" in text or "%(default)" in text or action.default is argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors raise :class:`UsageError`.

    ArgumentParser whose errors raise :class:`_UsageError` (so :func:`main` prints them on one
    line) and whose help shows defaults; sub-parsers inherit both.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        text = kwargs.get("description")
        if text and "\n" not in text:      # one-paragraph descriptions: wrap them here
            kwargs["description"] = textwrap.fill(text, 88)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse API
        sub = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        hint = f"see 'metalqr {sub} --help'" if sub else "see 'metalqr --help'"
        raise _UsageError(f"{message} ({hint})")


class _SubParser(_Parser):
    """A sub-command's parser that also accepts ``--debug``.

    A sub-command's parser: also accepts ``--debug`` after the sub-command (the decision is
    taken from argv by :func:`main`, so the value is not stored here).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="on an error, show the full Python traceback instead of one line "
                               "(default: off)")


def _option_type(what: str, parse: Callable[[str], object],
                 check: Callable[[object], object]) -> Callable[[str], object]:
    """Return an argparse ``type=`` function that parses and validates.

    An argparse ``type=`` function: ``parse`` the text, then validate it with a
    :mod:`metalqr._validation` check; failures become one-line argparse errors.
    """

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}") from None
        try:
            return check(value)
        except ValidationError as err:
            raise argparse.ArgumentTypeError(str(err).rstrip(".")) from None

    convert.__name__ = what
    return convert


#: Counts (iterations, tasks, samples): integers >= 1.
count_option = _option_type("an integer in [1, 10**9]", int,
                            lambda v: check_int(v, "value", minimum=1, maximum=10**9))
#: Seeds: integers >= 0.
seed_option = _option_type("an integer >= 0", int, lambda v: check_int(v, "value", minimum=0))


def _int_at_least(low: int) -> Callable[[str], int]:
    """Return an argparse ``type=`` function for integers >= ``low`` (no upper bound)."""
    return _option_type(f"an integer >= {low}", int, lambda v: check_int(v, "value", minimum=low))


#: Step sizes, radii, concentrations: finite reals > 0.
positive_option = _option_type("a number > 0", float,
                                 lambda v: check_real(v, "value", minimum=0.0, min_inclusive=False))


def _backend_name(text: str) -> str:
    """Return a roll-out backend name known to metalqr and runnable here."""
    from .rollouts import get_backend, known_backends
    if text not in known_backends():
        close = [n for n in known_backends() if n.startswith(text[:3])] if text else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise argparse.ArgumentTypeError(f"unknown backend {text!r}; choose one of "
                                         f"{', '.join(known_backends())}{hint}")
    try:
        return get_backend(text).name
    except MetalqrError as err:   # unknown name (lists the valid ones) or unavailable here
        raise argparse.ArgumentTypeError(str(err).rstrip(".")) from None


def _output_folder(text: str) -> str:
    """Return an output folder: may exist (as a folder) or not yet."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the output folder must be a non-empty path")
    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder; "
                                         f"choose another output folder")
    return text


def _add_backend_option(p: argparse.ArgumentParser) -> None:
    """Add ``--backend NAME`` with choices and help from the backend registry.

    ``--backend NAME``: choices and help text from the roll-out backend registry
    (:func:`metalqr.rollouts.known_backends`, :func:`metalqr.rollouts.backend_help`).
    """
    from .rollouts import backend_help, known_backends
    p.add_argument("--backend", type=_backend_name, choices=known_backends(), default=None,
                   metavar="NAME",
                   help="roll-out backend (default: $METALQR_BACKEND, else numba); "
                        + backend_help().replace("%", "%%"))


def _validated_ints(p: argparse.ArgumentParser, minimum: dict[str, int]) -> None:
    """Replace bare ``type=int`` options with validated types.

    Replace bare ``type=int`` options added by :mod:`metalqr.experiments` with validated types
    (``minimum``: option string -> least value) and make their help state the default.
    """
    for action in p._actions:
        if action.type is int:
            low = minimum.get(action.option_strings[-1], 0)
            action.type = _int_at_least(low)
        if action.option_strings[-1:] == ["--seeds"] and "default:" not in (action.help or ""):
            action.help = (action.help or "") + " (default: none, one seed without the engine)"
        if action.help and "(default " in action.help:
            action.help = action.help.replace("(default ", "(default: ")


# --------------------------------------------------------------------------- demo
def demo_table(max_iterations: int = 200) -> list[dict]:
    """Compare controller designs on the standard systems.

    Controller design on the standard systems: DARE vs python-control vs the three
    policy-optimisation methods started from a stabilising, suboptimal gain.

    Parameters
    ----------
    max_iterations : int, default 200
        Most policy-optimisation steps of each method (>= 1; passed to
        :func:`metalqr.policy_optimization`, which stops earlier at its tolerance).

    Returns
    -------
    list of dict
        One row per standard system: sizes, open/closed-loop spectral radii, ``J*``, the
        largest difference between the DARE gain and ``control.dlqr``'s, ``J(K0)`` and the
        relative gap ``(J - J*) / J*`` reached by each method.

    Raises
    ------
    ValidationError
        If ``max_iterations`` is not an integer >= 1.
    """
    import control

    from . import lqr

    max_iterations = check_int(max_iterations, "max_iterations", minimum=1)
    rows = []
    for name, task in lqr.standard_systems().items():
        K_star, P_star = lqr.optimal_gain(task)
        K_ctrl, _, _ = control.dlqr(task.A, task.B, task.Q, task.R)
        rho_ol = float(np.max(np.abs(np.linalg.eigvals(task.A))))
        # A stabilising but suboptimal start: the LQR gain of a much cheaper state weight.
        K0, _ = lqr.optimal_gain(lqr.LQRTask(task.A, task.B, 1e-2 * task.Q + 1e-6 * np.eye(task.d),
                                             1e2 * task.R))
        J_star = lqr.cost(task, K_star)
        row = {"system": name, "d": task.d, "k": task.k, "rho_open_loop": rho_ol,
               "rho_closed_loop": lqr.spectral_radius(task, K_star), "J_star": J_star,
               "max|K*-K_dlqr|": float(np.max(np.abs(K_star - K_ctrl))), "J(K0)": lqr.cost(task, K0)}
        for method, step in (("gd", None), ("natural", None), ("gauss_newton", 0.5)):
            if step is None:
                # Conservative step from the initial curvature (largest Hessian eigenvalue).
                if method == "gd":
                    step = 1.0 / np.max(np.linalg.eigvalsh(lqr.hessian(task, K0)))
                else:
                    ev = lqr.evaluate(task, K0)
                    step = 0.5 / np.linalg.norm(ev.RBPB[0], 2)
            res = lqr.policy_optimization(task, K0, method=method, eta=step,
                                          max_iterations=max_iterations)
            row[f"gap_{method}"] = (res.costs[-1] - J_star) / J_star
        rows.append(row)
    return rows


def _cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    rows = demo_table(args.iterations)
    print(f"LQR controller design on standard systems ({args.iterations} policy-optimisation "
          f"steps from a suboptimal stabilising K0; gap = (J - J*) / J*)")
    _print_table(rows)
    print(f"done in {time.perf_counter() - t0:.2f} s")
    return 0


# --------------------------------------------------------------------------- reproduce
#: Words in a Figure 1 summary's ``stop`` column that mean the setting did not finish as
#: asked (the library reports them; the command line turns them into a non-zero exit).
_FAILED_STOPS = ("stall", "diverg", "worse", "unstable", "fail")


def _failed_settings(summary: Sequence[dict]) -> list[str]:
    """Reasons, one per setting of a Figure 1 run that stalled or failed.

    The library's verdict is used when it gives one (``summary.ok`` / ``summary.failures``
    of :func:`metalqr.meta.reproduce_figure1`); otherwise a row counts as failed when its
    ``stop``/``status`` value names a stall or divergence, or it carries a ``failed`` flag.
    """
    failures = getattr(summary, "failures", None)
    if failures is not None:
        return [] if getattr(summary, "ok", not failures) else [str(f) for f in failures]
    reasons = []
    for row in summary:
        stop = " ".join(str(row.get(key, "")) for key in ("stop", "status", "stop_reason"))
        if bool(row.get("failed", False)) or any(word in stop.lower() for word in _FAILED_STOPS):
            detail = row.get("reason") or f"stop reason {stop.split()[0]!r}"
            where = row.get("iterations")
            ratio = row.get("final_ratio")
            extra = "".join([f" after {where} iterations" if where is not None else "",
                             f" at cost-gap ratio {ratio:.3g}" if isinstance(ratio, float) else ""])
            reasons.append(f"{row.get('setting', '?')}: {detail}{extra}")
    return reasons


#: Measured cold compile time of the roll-out kernels (2-core machine, shared load).
_COMPILE_SECONDS = "about 30 s on 2 cores"


def _compile_kernels(backend: str | None, *, delay: float = 2.0) -> float | None:
    """Compile (or load from the cache) the roll-out kernels before a run.

    Compile (or load from the per-user cache) the compiled roll-out kernels before a run, so
    that progress bars and their ETAs exclude compilation. Says so on stderr, in one line, when
    the cache is cold (or when loading takes longer than ``delay`` seconds); returns the seconds
    spent compiling when it said so, else ``None``.
    """
    from .rollouts.backends import DEFAULT_BACKEND
    if (backend or DEFAULT_BACKEND) != "numba":
        return None
    import threading

    from . import _numba_cache
    from .meta import sample_tasks, zo_maml_gradient
    from .rollouts import get_backend

    root = _numba_cache.installed_root()
    where = f"; cached in {root}" if root else ""
    shown: list[bool] = []
    guard = threading.Lock()

    def announce() -> None:
        with guard:
            if not shown:
                shown.append(True)
                print(f"metalqr: compiling the Numba roll-out kernels ({_COMPILE_SECONDS}, once "
                      f"per installed version{where}) ...", file=sys.stderr, flush=True)

    timer = threading.Timer(delay, announce)
    timer.daemon = True
    if get_backend("numba").kernels_cold():
        announce()
    else:
        timer.start()
    t0 = time.perf_counter()
    try:
        tasks = sample_tasks(2, 1, 1, rng=0)
        for two_point in (False, True):   # every kernel the zeroth-order estimators use
            zo_maml_gradient(tasks, np.zeros((1, 1)), eta=1e-5, n_perturbations=2,
                             inner_perturbations=2, rollout_length=2, rng=0, backend="numba",
                             two_point=two_point)
    finally:
        timer.cancel()
    seconds = time.perf_counter() - t0
    with guard:
        if not shown:
            return None
    print(f"metalqr: kernels compiled in {seconds:.0f} s", file=sys.stderr, flush=True)
    return seconds


def _cmd_reproduce(args: argparse.Namespace) -> int:
    if getattr(args, "seeds", None) is not None:    # multi-seed Figure 1 (experiments engine)
        from .experiments import fig1_seeds_command
        return fig1_seeds_command(args)
    from .meta.figure1 import reproduce_figure1
    with FolderLock(args.output):
        _compile_kernels(args.backend)
        summary = reproduce_figure1(quick=args.quick, output_dir=args.output, rng=args.seed,
                                    n_iterations=args.iterations, backend=args.backend,
                                    progress=not args.no_progress, resume=args.resume)
    failed = _failed_settings(summary or [])
    if failed:
        print(f"metalqr: Figure 1 not reproduced: {'; '.join(failed)} "
              f"(results so far are in {args.output})", file=sys.stderr)
        return EXIT_FAILED
    return 0


#: ``metalqr tow``'s per-source defaults (learner, optimiser, alpha, gamma, windows) and common
#: defaults: one table with the study keys of :mod:`metalqr.experiments` (``kind = "tow"``).
from .experiments import (TOW_IMAGE_SOURCES, TOW_REGRESSION_SOURCES, TOW_RUN_DEFAULTS,  # noqa: E402
                          TOW_SOURCE_DEFAULTS as TOW_DEFAULTS, TOW_SOURCE_OPTIONS, tow_default_net)

#: Options of ``metalqr tow`` used only with ``--source omniglot`` -> OmniglotTasks argument.
TOW_OMNIGLOT_OPTIONS = {"n_way": "--n-way", "k_shot": "--k-shot", "k_query": "--k-query",
                        "rotations": "--rotations", "test_alphabets": "--test-alphabets",
                        "split_seed": "--split-seed", "cross_alphabet": "--cross-alphabet"}


#: Options of ``metalqr tow`` that also apply to other sources (the study keys of the same
#: names; which source takes which: :data:`metalqr.experiments.TOW_SOURCE_OPTIONS`).
_TOW_SHARED_OPTIONS = ("n_way", "k_shot", "k_query")

TOW_MAX_SHOT = TOW_RUN_DEFAULTS["max_shot"]   # any-shot: 1..5 support examples per class (docs/tow.md)
TOW_N_TEST = TOW_RUN_DEFAULTS["n_test"]       # held-out test tasks of a full run


def _tow_source(args: argparse.Namespace):
    """Return the task source named by ``--source`` (with ``--images`` / ``--max-shot``)."""
    from . import tow
    from .exceptions import BackendUnavailableError, ValidationError
    if args.images is not None and args.source != "images":
        raise ValidationError(f"--images is only used with --source images (got --source {args.source}).")
    if args.max_shot is not None and args.source != "anyshot":
        raise ValidationError(f"--max-shot is only used with --source anyshot (got --source {args.source}).")
    # --n-way / --k-shot apply to the sources whose study keys n_way / k_shot apply
    # (TOW_SOURCE_OPTIONS, the same table and the same message as a study); --k-query to every
    # source; the other Omniglot options to --source omniglot only.
    for key, sources in TOW_SOURCE_OPTIONS.items():
        opt = TOW_OMNIGLOT_OPTIONS.get(key)
        if opt is not None and getattr(args, key) is not None and args.source not in sources:
            raise ValidationError(f"{opt} applies only to source {' or '.join(map(repr, sources))}; "
                                  f"source is {args.source!r}. Remove {opt}.")
    if args.source != "omniglot":
        given = [opt for key, opt in TOW_OMNIGLOT_OPTIONS.items()
                 if key not in _TOW_SHARED_OPTIONS and getattr(args, key) not in (None, False)]
        if args.omniglot is not None:
            given.insert(0, "--omniglot")
        if given:
            raise ValidationError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} "
                                  f"only to source 'omniglot'; source is {args.source!r}. Remove "
                                  f"{', '.join(given)}.")
    shape = {key: getattr(args, key) for key in _TOW_SHARED_OPTIONS if getattr(args, key) is not None}
    if args.source == "omniglot":
        if args.omniglot is None:
            raise ValidationError("--source omniglot needs --omniglot PATH (your Omniglot copy: the "
                                  "images_background*.zip files or their folder; docs/omniglot.md).")
        if not os.path.exists(args.omniglot):
            raise ValidationError(f"--omniglot {args.omniglot!r} does not exist; give the Omniglot zips or "
                                  f"their folder (docs/omniglot.md).")
        from .tow.omniglot import OmniglotTasks
        kwargs = {key: getattr(args, key) for key in TOW_OMNIGLOT_OPTIONS
                  if getattr(args, key) not in (None, False)}
        try:
            return OmniglotTasks(args.omniglot, **kwargs)
        except ValidationError as err:
            raise _omniglot_flag_error(err) from None
    if args.source == "sinusoid":
        return tow.SinusoidTasks(**shape)
    if args.source == "classification":
        return tow.HierarchicalClassificationTasks(rng=args.seed, **shape)
    if args.source == "anyshot":
        max_shot = TOW_MAX_SHOT if args.max_shot is None else args.max_shot
        return tow.AnyShotTasks(rng=args.seed, max_shot=max_shot, **shape)
    if args.source == "digits":
        import importlib.util
        if importlib.util.find_spec("sklearn") is None:
            from .tow.tasks import DIGITS_HINT
            raise BackendUnavailableError(DIGITS_HINT)
        return tow.DigitsTasks(**shape)
    if not args.images:
        raise ValidationError("--source images needs --images ROOT (ROOT/train/<class>/*.png, ROOT/test/...).")
    if not os.path.isdir(args.images):
        raise ValidationError(f"--images {args.images!r} is not a folder; expected ROOT/train/<class>/*.png "
                              f"and ROOT/test/<class>/*.png.")
    return tow.ImageFolderTasks(args.images, **shape)


def _omniglot_flag_error(err: Exception) -> Exception:
    """``err`` with OmniglotTasks' argument name ``path`` replaced by the flag ``--omniglot``."""
    from .exceptions import ValidationError
    text = str(err)
    if isinstance(err, ValidationError) and text.startswith("path"):
        return ValidationError("--omniglot" + text[len("path"):])
    return err


def _test_alphabets_text(value) -> str:
    return str(value) if isinstance(value, int) else ",".join(map(str, value))


def _rotations(text: str) -> tuple:
    """``--rotations 0,90,180,270``: a comma-separated subset of 0, 90, 180, 270."""
    try:
        angles = tuple(int(a) for a in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated angles from 0,90,180,270; "
                                         f"got {text!r}") from None
    bad = [a for a in angles if a not in (0, 90, 180, 270)]
    if bad or len(set(angles)) != len(angles):
        raise argparse.ArgumentTypeError(f"expected distinct angles from 0,90,180,270; got {text!r}")
    return angles


def _test_alphabets(text: str):
    """``--test-alphabets``: a count >= 1 or comma-separated alphabet names."""
    if text.strip().lstrip("+-").isdigit():
        return count_option(text)
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected a count >= 1 or comma-separated alphabet names; "
                                         f"got {text!r}")
    return names


def _cmd_tow_runs(args: argparse.Namespace) -> int:
    from .tow.omniglot import evaluate_one_shot_runs
    if not os.path.exists(args.path):
        raise ValidationError(f"PATH {args.path!r} does not exist; give all_runs.zip or its folder "
                              f"(the 20 one-shot runs of Lake et al. 2015; docs/omniglot.md).")
    t0 = time.perf_counter()
    result = evaluate_one_shot_runs(args.path, None, distance=args.distance, size=args.size)
    print(f"one-shot classification on the runs in {args.path} (nearest neighbour, "
          f"{args.distance} distance" + (f", {args.size} x {args.size} pixels" if args.distance == "euclidean"
                                         else "") + ")")
    print(result.table())
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


#: ``metalqr tow`` settings shared by every source when neither a flag nor ``--preset`` gives them.
TOW_COMMON_DEFAULTS = {k: TOW_RUN_DEFAULTS[k] for k in ("T", "M", "beta_u", "kappa", "n_ilqr", "n_val", "n_test",
                                                        "inner_steps", "value_model", "line_search",
                                                        "terminal_cost", "curve_smoothing")}


#: ``metalqr tow`` options used only by the tow strategy (given without it: refused), by setting.
TOW_ONLY_FLAGS = dict(beta_u="--beta-u", n_ilqr="--n-ilqr", value_model="--value-model",
                      line_search="--line-search", terminal_cost="--terminal-cost")


#: ``metalqr tow`` network defaults: --hidden (MLP), --channels (ConvNet).
TOW_HIDDEN, TOW_CHANNELS = TOW_RUN_DEFAULTS["hidden"], TOW_RUN_DEFAULTS["channels"]


def _tow_net(args: argparse.Namespace) -> str:
    """Return the network of ``metalqr tow``.

    ``--net``, else ``conv`` for ``--preset paper --source omniglot`` (the paper's network is a
    ConvNet), else ``mlp``.
    """
    if args.net is not None:
        return args.net
    return tow_default_net(args.preset, args.source)


def _tow_settings(args: argparse.Namespace) -> dict:
    """Return every ``metalqr tow`` setting, from flags, preset and defaults.

    Every ``metalqr tow`` setting: an explicit flag, else the ``--preset`` value, else the
    source's default (:data:`TOW_DEFAULTS`), else :data:`TOW_COMMON_DEFAULTS`; ``--quick``
    shortens the windows (10) and test tasks (100) unless given.
    """
    from .tow import PRESETS
    preset = PRESETS[args.preset] if args.preset else {}
    out = {}
    for name in ("learner", "optimizer", "alpha", "gamma", "iterations", *TOW_COMMON_DEFAULTS):
        given = getattr(args, name, None)
        if given is not None:
            out[name] = given
        elif name in preset:
            out[name] = preset[name]
        elif name in TOW_DEFAULTS[args.source]:
            out[name] = TOW_DEFAULTS[args.source][name]
        else:
            out[name] = TOW_COMMON_DEFAULTS[name]
    if args.quick and args.iterations is None:
        out["iterations"] = 10
    if args.quick and args.n_test is None:
        out["n_test"] = 100
    return out


def _cmd_tow(args: argparse.Namespace) -> int:
    import glob
    import os

    from . import tow
    from ._checkpoint import FolderLock
    from .exceptions import ValidationError
    cfg = _tow_settings(args)
    pick = cfg.__getitem__
    iterations, n_test = cfg["iterations"], cfg["n_test"]
    learner_kind = pick("learner")
    if learner_kind == "protonet" and args.source == "sinusoid":
        raise ValidationError("--learner protonet needs a classification source; use --learner fomaml or maml "
                              "with --source sinusoid.")
    if args.preset == "paper" and args.source in TOW_REGRESSION_SOURCES:
        classification = ", ".join(s for s in sorted(TOW_DEFAULTS) if s not in TOW_REGRESSION_SOURCES)
        raise ValidationError(f"--preset paper is the TOW paper's Omniglot classification setting, for the "
                              f"classification sources ({classification}); "
                              f"--source {args.source} is a regression, where its MAML inner step (gamma=0.1, 5 "
                              f"steps) diverges: drop --preset and give the flags you want explicitly.")
    tow_only = [TOW_ONLY_FLAGS[k] for k in TOW_ONLY_FLAGS if getattr(args, k) is not None]
    if tow_only and "tow" not in args.strategies:
        raise ValidationError(f"{', '.join(tow_only)} apply only to the tow strategy, which --strategies "
                              f"{' '.join(args.strategies)} does not include; add tow to --strategies or drop "
                              f"{', '.join(tow_only)}.")
    if args.inner_steps is not None and learner_kind == "protonet":
        raise ValidationError("--inner-steps applies to MAML (--learner fomaml or maml); ProtoNet has no inner loop.")
    if args.gamma is not None and learner_kind == "protonet":
        raise ValidationError("--gamma is MAML's inner step size (--learner fomaml or maml); ProtoNet has no inner "
                              "loop.")
    with_tow = "tow" in args.strategies
    shown = {k: v for k, v in cfg.items()
             if not (learner_kind == "protonet" and k in ("gamma", "inner_steps"))
             and not (not with_tow and k in TOW_ONLY_FLAGS)}
    tow_opt = lambda name: pick(name) if with_tow else None     # noqa: E731
    net = _tow_net(args)
    if net == "conv" and args.hidden is not None:
        raise ValidationError("--hidden is the MLP's width; with --net conv give --channels instead (or use --net mlp).")
    if net == "mlp" and args.channels is not None:
        raise ValidationError("--channels applies to --net conv; the MLP's width is --hidden.")
    if net == "conv" and learner_kind == "maml":
        raise ValidationError("--net conv has no Hessian-vector product, so --learner maml (second order) is not "
                              "available on it; use --learner fomaml or protonet, or --net mlp.")
    if net == "conv" and args.source not in TOW_IMAGE_SOURCES:
        raise ValidationError(f"--net conv needs a source of images ({', '.join(TOW_IMAGE_SOURCES)}); --source "
                              f"{args.source} gives feature vectors: use --net mlp.")
    hidden = TOW_HIDDEN if args.hidden is None else args.hidden
    channels = TOW_CHANNELS if args.channels is None else args.channels
    source = _tow_source(args)
    learner = tow.make_learner(learner_kind, source, net=net, hidden=hidden, channels=channels, gamma=pick("gamma"),
                               inner_steps=pick("inner_steps"))
    print(f"network: {net} ({type(learner.net).__name__}, {learner.net.size} parameters"
          + (f", {channels} channels x {learner.net.blocks} blocks)" if net == "conv" else f", {hidden} hidden)"))
    print(f"settings{f' (--preset {args.preset}; flags override it)' if args.preset else ''}: "
          + ", ".join(f"{k}={v}" for k, v in shown.items()))
    ckpt = os.path.join(args.output, f"checkpoints_{args.source}")
    eval_every = max(1, iterations // 20)
    t0 = time.perf_counter()
    with FolderLock(args.output):       # a second run into this folder stops here with a clear error
        if not args.resume:             # a fresh run must not pick up an older one's state
            for path in glob.glob(os.path.join(ckpt, "*.ckpt")):
                os.remove(path)
        try:
            results = tow.run_experiment(source, learner, args.strategies, n_iterations=iterations, T=pick("T"),
                                         M=pick("M"), optimizer=pick("optimizer"), alpha=pick("alpha"),
                                         beta_u=tow_opt("beta_u"), kappa=pick("kappa"), n_ilqr=tow_opt("n_ilqr"),
                                         n_test=n_test, n_val=pick("n_val"), rng=args.seed, eval_every=eval_every,
                                         progress=not args.no_progress, checkpoint=ckpt,
                                         value_model=tow_opt("value_model"), line_search=tow_opt("line_search"),
                                         terminal_cost=tow_opt("terminal_cost"), curve_smoothing=pick("curve_smoothing"),
                                         preset=args.preset)
        except ValidationError as err:
            if args.source == "omniglot":
                raise _omniglot_flag_error(err) from None
            raise
        command = (f"metalqr tow --source {args.source}" + (f" --preset {args.preset}" if args.preset else "")
                   + (f" --images {args.images}" if args.images else "")
                   + (f" --max-shot {source.max_shot}" if args.source == "anyshot" else "")
                   + ("".join(f" --{key.replace('_', '-')} {getattr(args, key)}"
                              for key in _TOW_SHARED_OPTIONS if getattr(args, key) is not None)
                      if args.source != "omniglot" else "")
                   + (f" --omniglot {args.omniglot} --n-way {source.n_way} --k-shot {source.k_shot}"
                      f" --k-query {source.k_query} --rotations {','.join(map(str, source.rotations))}"
                      f" --test-alphabets {_test_alphabets_text(source.test_alphabets)}"
                      f" --split-seed {source.split_seed}"
                      + (" --cross-alphabet" if source.cross_alphabet else "")
                      if args.source == "omniglot" else "")
                   + f" --learner {learner_kind} --optimizer {pick('optimizer')} --alpha {pick('alpha')!r}"
                   + (f" --gamma {pick('gamma')!r}" if learner_kind != "protonet" else "")
                   + f" --iterations {iterations} --T {pick('T')} --M {pick('M')}"
                   + (f" --beta-u {pick('beta_u')!r}" if with_tow else "") + f" --kappa {pick('kappa')!r}"
                   + (f" --n-ilqr {pick('n_ilqr')}" if with_tow else "")
                   + f" --n-test {n_test} --n-val {pick('n_val')} --net {net}"
                   + (f" --channels {channels}" if net == "conv" else f" --hidden {hidden}")
                   + (f" --inner-steps {pick('inner_steps')}" if learner_kind != "protonet" else "")
                   + (f" --value-model {pick('value_model')} --line-search {pick('line_search')}"
                      f" --terminal-cost {pick('terminal_cost')}" if with_tow else "")
                   + (f" --curve-smoothing {pick('curve_smoothing')!r}" if pick("curve_smoothing") else "")
                   + f" --strategies {' '.join(args.strategies)} --seed {args.seed}")
        for r in results:
            r.settings.update(command=command, source_name=args.source, learner_kind=learner_kind, net=net,
                              hidden=hidden if net == "mlp" else None,
                              channels=channels if net == "conv" else None,
                              gamma=pick("gamma") if learner_kind != "protonet" else None, quick=bool(args.quick),
                              cli_preset=args.preset)
            preset_net = _tow_net(argparse.Namespace(net=None, preset=args.preset, source=args.source))
            if args.preset and net != preset_net:       # the preset's network, overridden by --net
                r.settings["preset_overrides"] = dict(r.settings["preset_overrides"], net=[preset_net, net])
        prefix = os.path.join(args.output, f"tow_{args.source}")
        table = tow.save_results(results, prefix)["table"]
        tow.plot_curves(results, prefix + "_curves.png",
                        f"{args.source}, {learner_kind}, T={pick('T')} x M={pick('M')}, seed {args.seed}")
        for r in results:
            if r.name != "uniform":
                tow.plot_weights(r, f"{prefix}_weights_{r.name}.png")
    print(f"TOW task weighting on {args.source} ({learner_kind}, {pick('optimizer')} alpha={pick('alpha'):g}, "
          f"{iterations} windows of T={pick('T')} x M={pick('M')} tasks, {n_test} test tasks, seed {args.seed}; "
          f"mean {results[0].metric_name} +- 95% CI; seconds = training time, strategies interleaved)")
    _print_table([{k: v for k, v in row.items() if not k.startswith("setting_")} for row in table])
    print(f"wrote {prefix}_table.csv, {prefix}_curves.csv/.png, {prefix}.json and weight plots "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the ``metalqr`` argument parser.

    The ``metalqr`` argument parser (sub-commands ``demo``, ``reproduce``, ``sweep``, ``tow``,
    ``tow-runs``).
    """
    parser = _Parser(prog="metalqr", description=_PROG_DESCRIPTION, epilog=_PROG_EPILOG)
    parser.add_argument("--version", action="version", version=f"metalqr {__version__}",
                        help="print the version and exit")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show the full Python traceback instead of one line "
                             "(also METALQR_DEBUG=1; default: off)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>",
                                title="commands", parser_class=_SubParser)
    p = sub.add_parser("demo", help="design controllers for standard systems and print a table",
                       description="LQR controller design on the standard systems: the DARE "
                       "gain, python-control's dlqr and three policy-optimisation methods "
                       "(gradient, natural gradient, Gauss-Newton) from a suboptimal "
                       "stabilising gain.")
    p.add_argument("--iterations", type=count_option, default=200, metavar="N",
                   help="policy-optimisation steps of each method (integer >= 1)")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("reproduce", help="reproduce Figure 1 of the ZO-MAML paper",
                       description="Reproduce Figure 1 of the ZO-MAML paper (Pan, Li & Zhu; "
                       "docs/references.md): the cost-gap ratio along Algorithm 3 with "
                       "zeroth-order meta-gradients on three random 5-task families. Writes "
                       "fig1.csv, summary.csv and fig1.png into --output. Exits with status 1 "
                       "if a setting stalls, naming it and the reason.")
    p.add_argument("figure", choices=["fig1"], help="which figure (only fig1)")
    p.add_argument("--quick", action="store_true",
                   help="short run: 300 iterations for d=1 and d=2, 60 for (d, k) = (20, 10) "
                        "with M = M' = 20 and the two-point estimator")
    p.add_argument("--output", type=_output_folder, default=os.path.join("results", "fig1"),
                   metavar="DIR",
                   help="output folder (CSV, PNG, checkpoints); one run at a time per folder")
    p.add_argument("--seed", type=seed_option, default=0, metavar="S",
                   help="seed of the task families and of the estimators (integer >= 0)")
    p.add_argument("--iterations", type=count_option, default=None, metavar="N",
                   help="override every setting's number of iterations (integer >= 1; "
                        "default: 1200, or the --quick settings' 300 / 60)")
    _add_backend_option(p)
    p.add_argument("--no-progress", action="store_true", help="disable progress bars")
    p.add_argument("--resume", action="store_true",
                   help="resume from the checkpoints in --output (same seed and settings)")
    from .experiments import add_fig1_arguments, add_sweep_parser
    add_fig1_arguments(p)      # --seeds N and the engine options
    _validated_ints(p, {"--seeds": 1, "--workers": 1, "--retries": 0})
    p.set_defaults(func=_cmd_reproduce)
    p = add_sweep_parser(sub)
    p.description = ("Run a study (a grid of meta-training runs over seeds and settings, "
                     "read from a TOML file; docs/experiments.md) serially or on Dask, store "
                     "one file per run in a resumable result store and write summary.csv and "
                     "curves.csv/.png (mean +- 95% CI across seeds). Exits with status 1 if "
                     "some runs did not finish (rerun to retry only those).")
    p.description = textwrap.fill(p.description, 88)
    _validated_ints(p, {"--workers": 1, "--retries": 0})
    # --- metalqr tow -----------------------------------------------------------------------
    count, count2, seed = _int_at_least(1), _int_at_least(2), seed_option
    step = positive_option
    nonneg = _option_type("a finite number >= 0", float,
                          lambda v: check_real(v, "value", minimum=0.0))
    kappa = _option_type("a finite number > 1", float,
                         lambda v: check_real(v, "value", minimum=1.0, min_inclusive=False))
    p = sub.add_parser("tow", help="TOW task weighting vs the other registered weighting strategies",
                       description="Train one learner with each task-weighting strategy on the same task "
                                   "stream (TOW paper, Section 5, at CPU scale) and write a table, curves "
                                   "with 95% bands, weight plots and a JSON with every setting.")

    per_source = lambda key: ", ".join(f"{k} {v[key]:g}" if isinstance(v[key], float) else f"{k} {v[key]}"
                                       for k, v in TOW_DEFAULTS.items())
    p.add_argument("--source", choices=sorted(TOW_DEFAULTS), default="sinusoid",
                   help="task source (default: %(default)s)")
    p.add_argument("--images", default=None, metavar="ROOT",
                   help="root of an image-folder dataset, ROOT/{train,test}/<class>/*.png (only with "
                        "--source images; default: none)")
    p.add_argument("--omniglot", default=None, metavar="PATH",
                   help="your Omniglot copy: images_background*.zip files or their folder (only with "
                        "--source omniglot; docs/omniglot.md; default: none)")
    p.add_argument("--n-way", type=count2, default=None, metavar="N",
                   help="classes per task, >= 2 (sources "
                        f"{', '.join(TOW_SOURCE_OPTIONS['n_way'])}; default: the source's, 5 "
                        "for omniglot)")
    p.add_argument("--k-shot", type=count, default=None, metavar="K",
                   help="support examples per class (per task for sinusoid), >= 1 (sources "
                        f"{', '.join(TOW_SOURCE_OPTIONS['k_shot'])}; default: the source's, 1 "
                        "for omniglot)")
    p.add_argument("--k-query", type=count, default=None, metavar="K",
                   help="query examples per class (per task for sinusoid), >= 1 (every source; "
                        "default: the source's, 5 for omniglot)")
    p.add_argument("--rotations", type=_rotations, default=None, metavar="ANGLES",
                   help="--source omniglot: comma-separated rotations, each a class of its own, "
                        "e.g. 0,90,180,270 (default: 0, no augmentation)")
    p.add_argument("--test-alphabets", type=_test_alphabets, default=None, metavar="N|NAMES",
                   help="--source omniglot: held-out alphabets, a count or comma-separated names "
                        "(default: 3)")
    p.add_argument("--split-seed", type=seed, default=None, metavar="S",
                   help="--source omniglot: seed of the train/test alphabet split, >= 0 (default: 0)")
    p.add_argument("--cross-alphabet", action="store_true",
                   help="--source omniglot: draw a task's classes from all the split's characters "
                        "(default: off, one alphabet per task as in the paper)")
    p.add_argument("--max-shot", type=count, default=None,
                   help=f"--source anyshot: support examples per class drawn from 1..MAX_SHOT "
                        f"(default: {TOW_MAX_SHOT}, as in docs/tow.md)")
    p.add_argument("--learner", choices=["fomaml", "maml", "protonet"], default=None,
                   help=f"meta-learner (default per source: {per_source('learner')})")
    from .tow import PAPER_PRESET as pp
    paper = lambda key: f"; --preset paper: {pp[key]:g}" if isinstance(pp[key], float) else \
        f"; --preset paper: {pp[key]}"
    p.add_argument("--optimizer", choices=["sgd", "adam"], default=None,
                   help=f"meta-optimiser, the TOW dynamics (default per source: {per_source('optimizer')}; "
                        f"{paper('optimizer')[2:]})")
    p.add_argument("--alpha", type=step, default=None,
                   help=f"meta step size > 0 (default per source: {per_source('alpha')}{paper('alpha')})")
    p.add_argument("--gamma", type=nonneg, default=None,
                   help=f"inner (adaptation) step size >= 0 of MAML (default per source: {per_source('gamma')}; "
                        f"{paper('gamma')[2:]})")
    p.add_argument("--iterations", type=count, default=None,
                   help=f"training windows >= 1 (default per source: {per_source('iterations')}; "
                        f"10 with --quick)")
    cd = TOW_COMMON_DEFAULTS
    p.add_argument("--preset", choices=["paper"], default=None,
                   help="start from the TOW paper's configuration (Section 5.1: M=10, T=5, Adam alpha=1e-4, "
                        "MAML gamma=0.1 with 5 inner steps, 2 iLQR iterations, beta_u=10, mu_u=1/M, kappa=1.2, "
                        "Algorithm 1's line search, 1000 test tasks, curves on 100 validation tasks with an EMA "
                        "of factor 0.1), for the classification sources (refused on --source sinusoid); "
                        "explicit flags override it (default: none)")
    p.add_argument("--T", type=count, default=None,
                   help=f"mini-batches per TOW window, >= 1 (default: {cd['T']}{paper('T')})")
    p.add_argument("--M", type=count, default=None,
                   help=f"tasks per mini-batch, >= 1 (default: {cd['M']}{paper('M')})")
    p.add_argument("--beta-u", type=step, default=None,
                   help=f"TOW prior precision beta_u > 0 of Eq. (7) (default: {cd['beta_u']:g}{paper('beta_u')})")
    p.add_argument("--kappa", type=kappa, default=None,
                   help="Dirichlet concentration > 1 of the exploration/exploitation baselines, Eq. (12) "
                        f"(default: {cd['kappa']:g}{paper('kappa')})")
    p.add_argument("--n-ilqr", type=count, default=None,
                   help=f"iLQR iterations per TOW window, >= 1 (default: {cd['n_ilqr']}, as in the paper)")
    p.add_argument("--n-test", type=count2, default=None,
                   help=f"held-out test tasks, >= 2 (default: {TOW_N_TEST}{paper('n_test')}; 100 with --quick)")
    p.add_argument("--n-val", type=count2, default=None,
                   help=f"validation tasks for the learning curves, >= 2 (default: {cd['n_val']}{paper('n_val')})")
    p.add_argument("--inner-steps", type=count, default=None,
                   help=f"MAML inner (adaptation) steps, >= 1 (default: {cd['inner_steps']}"
                        f"{paper('inner_steps')})")
    p.add_argument("--value-model", choices=["diagonal", "full"], default=None,
                   help="TOW's iLQR value model: its diagonal (Section 3.1) or the full matrix (Appendix B) "
                        f"(default: {cd['value_model']})")
    p.add_argument("--line-search", choices=["metalqr", "paper"], default=None,
                   help="TOW's line search: metalqr's (Tassa et al. step sizes, box-QP bounds, regularisation) "
                        "or Algorithm 1's as printed (eps halving, (1/2) eps theta_1 test, rejecting any u < 0) "
                        f"(default: {cd['line_search']}{paper('line_search')})")
    p.add_argument("--terminal-cost", choices=["none", "validation"], default=None,
                   help="TOW's terminal cost on x_{T+1}: none (Eq. (7): the last mini-batch keeps uniform "
                        "weights) or the last mini-batch's validation losses "
                        f"(default: {cd['terminal_cost']})")
    p.add_argument("--curve-smoothing", type=_option_type("a number in (0, 1]", float,
                                                          lambda v: check_real(v, "value", minimum=0.0, maximum=1.0,
                                                                               min_inclusive=False)),
                   default=None, metavar="F",
                   help="exponential-moving-average factor of the saved/plotted validation curve "
                        f"(default: none{paper('curve_smoothing')})")
    p.add_argument("--net", type=_option_type("mlp or conv", str, lambda v: check_choice(v, "--net", ("mlp", "conv"))), default=None, metavar="{mlp,conv}",
                   help="network of the learner: mlp (one hidden layer of --hidden units) or conv (the small "
                        "NumPy ConvNet: 3 blocks of 3x3 convolution with --channels maps, ReLU, 2x2 max-pooling; "
                        f"image sources only: {', '.join(TOW_IMAGE_SOURCES)}; not with --learner maml) "
                        "(default: conv with --preset paper --source omniglot, mlp otherwise)")
    p.add_argument("--hidden", type=count, default=None,
                   help=f"hidden width of the MLP, --net mlp only (default: {TOW_HIDDEN})")
    p.add_argument("--channels", type=count, default=None,
                   help=f"feature maps of every convolution, --net conv only (default: {TOW_CHANNELS})")
    from .tow.weighting_strategies import get_strategy, strategies as registered_strategies
    names = list(registered_strategies())
    p.add_argument("--strategies", nargs="+", default=names, choices=names,
                   help="weighting strategies to compare (default: all registered): "
                        + "; ".join(f"{n} = {get_strategy(n).description}" for n in names))
    p.add_argument("--seed", type=seed, default=0, help="random seed >= 0 (default: %(default)s)")
    p.add_argument("--output", default="results/tow", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="short run: 10 windows and 100 test tasks unless given (default: off)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar (default: shown)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --output (saved every 10 windows); the settings "
                        "and seed must be those of the interrupted run (default: start afresh)")
    p.set_defaults(func=_cmd_tow)
    # --- metalqr tow-runs ------------------------------------------------------------------
    p = sub.add_parser("tow-runs", help="score nearest-neighbour one-shot classification on the "
                                        "20 Omniglot runs",
                       description="Nearest-neighbour one-shot classification on the 20 one-shot "
                                   "runs of Lake et al. (2015) (all_runs.zip or its folder; "
                                   "docs/omniglot.md), printed next to the published error rates.")
    p.add_argument("path", metavar="PATH", help="all_runs.zip or the folder holding the runs")
    p.add_argument("--distance", choices=["euclidean", "modified_hausdorff"], default="euclidean",
                   help="distance between raw-pixel images, or the modified Hausdorff distance "
                        "between ink-point clouds (default: %(default)s)")
    p.add_argument("--size", type=count, default=28, metavar="N",
                   help="image side for the euclidean distance, 1..105 (default: %(default)s)")
    p.set_defaults(func=_cmd_tow_runs)
    return parser


def _iterable(value) -> list:
    try:
        return list(value)
    except TypeError:
        return [None]          # not iterable: reported as a wrong argv


def _uniform_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Drop per-instance ``error`` overrides of sub-parsers.

    Drop per-instance ``error`` overrides of sub-parsers, so that every sub-command reports a
    usage error the same way (one line ``metalqr: error: ...``, status 2).
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if isinstance(sub, _Parser):
                    vars(sub).pop("error", None)
    return parser


def _wants_debug(argv: Sequence[str]) -> bool:
    words = list(argv)
    if "--" in words:
        words = words[:words.index("--")]
    return "--debug" in words or os.environ.get("METALQR_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``metalqr`` console script.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 on success, 2 for a user error (printed as one line
        ``metalqr: error: <message>`` on stderr; ``--debug`` or ``METALQR_DEBUG=1`` re-raise
        it with its traceback; a file-system error about a path, such as an output folder
        that cannot be created, counts as a user error), 1 when a run finished without doing what it was asked (a
        stalled Figure 1 setting), 130 when interrupted. ``--help`` and ``--version`` exit
        through ``SystemExit(0)`` as usual.
    """
    if argv is None:
        argv = sys.argv[1:]
    elif isinstance(argv, (str, bytes)) or not all(isinstance(a, str) for a in _iterable(argv)):
        raise ValidationTypeError(f"argv must be a list of strings such as ['demo', '--iterations', "
                                  f"'20']; got {argv!r}.")
    argv = list(argv)
    debug = _wants_debug(argv)
    try:
        args = _uniform_errors(build_parser()).parse_args(argv)
        return int(args.func(args))
    except _UsageError as err:
        if debug:
            traceback.print_exc()
        print(f"metalqr: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except MetalqrError as err:
        if debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"metalqr: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        if debug or err.filename is None:     # not about a path the user gave: a bug
            raise
        where = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        print(f"metalqr: error: cannot use {where!r}: {err.strerror or err} "
              f"(--debug shows the traceback)", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if debug:
            raise
        print("metalqr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
