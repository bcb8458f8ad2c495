"""Run configurations and studies: the schema, its validation, grid expansion, run ids."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from typing import Any, Iterable, Mapping

from .._validation import check_choice, check_int, check_positive, check_real
from ..exceptions import ValidationError, ValidationTypeError
from ..rollouts.backends import check_backend, known_backends

__all__ = ["RUN_DEFAULTS", "TOW_RUN_DEFAULTS", "TOW_SOURCE_DEFAULTS", "KINDS", "TOW_SOURCES", "FAMILIES", "ESTIMATORS",
           "TOW_IMAGE_SOURCES", "TOW_REGRESSION_SOURCES", "TOW_SOURCE_OPTIONS", "tow_default_net",
           "BACKENDS", "normalize_run", "run_id", "Study", "load_study"]

#: Kinds of run: ``"zo_maml"`` (default), meta-training of an LQR policy (Algorithm 3 of the
#: ZO-MAML paper, :func:`metalqr.meta_policy_optimization`); ``"tow"``, one weighting
#: strategy of the TOW paper on a few-shot task source (:func:`metalqr.tow.run_experiment`).
KINDS = ("zo_maml", "tow")

#: Task families: ``"random"`` is the generator of Section 6 of the ZO-MAML paper
#: (:func:`metalqr.sample_tasks`); the others perturb a standard system
#: (:func:`metalqr.perturb_tasks` around :func:`metalqr.standard_systems`).
FAMILIES = ("random", "boeing747", "double_integrator", "inverted_pendulum")
#: ``"one_point"`` / ``"two_point"``: Algorithm 2 (zeroth order); ``"exact"``: the exact
#: meta-gradient; ``"first_order"``: first-order MAML.
ESTIMATORS = ("one_point", "two_point", "exact", "first_order")
#: Roll-out backends (``None``: metalqr's default).
#: ``None`` (the default backend) and the registered roll-out backends when metalqr was
#: imported; a run's ``backend`` is checked against the registry itself.
BACKENDS = (None, *known_backends())
INITIAL_GAINS = ("zero", "common")

#: Every key of a run and its default. ``heterogeneity = None`` means the family's default
#: (0.25 for ``"random"``, 1e-3 around a standard system); ``d``/``k`` apply to ``"random"``.
RUN_DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "family": "random",
    "n_tasks": 5,
    "d": 1,
    "k": 1,
    "heterogeneity": None,
    "K0": "common",
    "alpha": 1e-3,
    "eta": 1e-5,
    "n_iterations": 300,
    "estimator": "one_point",
    "n_perturbations": 100,          # M
    "inner_perturbations": 100,      # M'
    "radius": 0.05,                  # r
    "rollout_length": "auto",        # l ("auto": from the closed-loop mixing time, >= 50)
    "backend": None,
    "guard": "rollouts",             # step-safety guard of Algorithm 3 (metalqr GUARDS)
    "outer_update": "plain",         # outer update rule (metalqr OUTER_UPDATES)
    "max_backtracks": 20,            # guard: step halvings before an update is rejected
    "max_consecutive_rejections": 25,  # guard: rejected updates in a row before "stalled"
    "tol": 0.0,
}
#: Short names accepted in study files (``M = 20`` is ``n_perturbations = 20``).
ALIASES = {"M": "n_perturbations", "M_prime": "inner_perturbations", "r": "radius",
           "l": "rollout_length", "iterations": "n_iterations"}
#: Task sources of TOW runs, as ``metalqr tow --source``: skewed sinusoid regression
#: (:class:`metalqr.tow.SinusoidTasks`), synthetic alphabets
#: (:class:`metalqr.tow.HierarchicalClassificationTasks`, its world seeded by the run's seed, as
#: ``metalqr tow``), their any-shot variant (:class:`metalqr.tow.AnyShotTasks`, same seeding),
#: scikit-learn's 8x8 digits (:class:`metalqr.tow.DigitsTasks`, needs scikit-learn), an image
#: folder (:class:`metalqr.tow.ImageFolderTasks`, needs ``data``: its root) and Omniglot
#: (:class:`metalqr.tow.OmniglotTasks`, needs ``data``: your copy of Omniglot).
TOW_SOURCES = ("sinusoid", "classification", "anyshot", "digits", "images", "omniglot")
TOW_LEARNERS = ("fomaml", "maml", "protonet")
#: TOW sources whose inputs are square grey images (``net = "conv"`` needs one).
TOW_IMAGE_SOURCES = ("digits", "images", "omniglot")
#: TOW sources of regression tasks (a ``preset``, made for classification, is refused on them).
TOW_REGRESSION_SOURCES = ("sinusoid",)
#: Options of a TOW run that only some sources take, and those sources (the arguments of
#: their task classes; a key given for another source is refused, naming key and source).
TOW_SOURCE_OPTIONS = {
    "data": ("images", "omniglot"),
    "n_way": ("classification", "anyshot", "digits", "images", "omniglot"),
    "k_shot": ("sinusoid", "classification", "digits", "images", "omniglot"),
    "max_shot": ("anyshot",),
}
#: Every key of a TOW run (``kind = "tow"``) and its default, those of ``metalqr tow`` (which
#: reads them from here). ``"auto"`` takes the source's default (:data:`TOW_SOURCE_DEFAULTS`);
#: ``net = "auto"`` is ``"conv"`` for ``preset = "paper"`` on Omniglot, else ``"mlp"``;
#: ``eval_every = "auto"`` is ``max(1, n_iterations // 20)``; ``None`` for
#: ``k_shot``/``k_query``/``n_way`` is the source's own default. With a ``preset``
#: (:data:`metalqr.tow.PRESETS`), every key it sets and the run does not give takes the
#: preset's value; a key given explicitly overrides it (recorded in the run's
#: ``tow_settings["preset_overrides"]``, as ``metalqr tow --preset``).
TOW_RUN_DEFAULTS: dict[str, Any] = {
    "kind": "tow",
    "seed": 0,
    "source": "sinusoid",
    "data": None,                    # images / omniglot: the dataset's folder (or zips)
    "k_shot": None,
    "k_query": None,
    "n_way": None,                   # classification sources
    "max_shot": 5,                   # anyshot: support examples per class from 1..max_shot
    "preset": None,                  # "paper": the TOW paper's Section 5.1 (metalqr.tow.PRESETS)
    "strategy": "uniform",           # one registered strategy (metalqr.tow.strategies())
    "learner": "auto",               # fomaml (sinusoid) / protonet (classification sources)
    "net": "auto",                   # "mlp" or "conv" (image sources; metalqr.tow.make_learner)
    "hidden": 40,                    # net "mlp": hidden width
    "channels": 8,                   # net "conv": feature maps of every convolution
    "gamma": "auto",                 # MAML's inner step size
    "inner_steps": 1,                # MAML's inner steps
    "optimizer": "auto",
    "alpha": "auto",                 # meta step size
    "n_iterations": "auto",          # training windows
    "T": 5,                          # mini-batches per window
    "M": 5,                          # tasks per mini-batch
    "beta_u": 10.0,                  # strategy "tow": prior precision, Eq. (7)
    "n_ilqr": 2,                     # strategy "tow": iLQR iterations per window
    "value_model": "diagonal",       # strategy "tow": iLQR value model
    "kappa": 1.2,                    # exploration / exploitation: Dirichlet concentration
    "line_search": "metalqr",        # strategy "tow": metalqr.tow.LINE_SEARCHES
    "terminal_cost": "none",         # strategy "tow": metalqr.tow.TERMINAL_COSTS
    "curve_smoothing": None,         # EMA factor in (0, 1] of the saved curve (settings only)
    "n_test": 600,
    "n_val": 100,
    "eval_every": "auto",
}
TOW_ALIASES = {"iterations": "n_iterations"}
_ZO = ("one_point", "two_point")
_NOT_APPLICABLE = ("d", "k", "n_perturbations", "inner_perturbations", "radius", "rollout_length",
                   "backend", "heterogeneity")


def _keys(kind: str) -> tuple[dict[str, Any], dict[str, str]]:
    return (TOW_RUN_DEFAULTS, TOW_ALIASES) if kind == "tow" else (RUN_DEFAULTS, ALIASES)


def _source_hint(key: str) -> str:
    """Return the hint for a TOW task source written as a key (``digits = 3``, ``images``)."""
    if key not in TOW_SOURCES:
        return ""
    return (f" Did you mean source = {key!r}? ({key!r} is a TOW task source: give source = {key!r}"
            + (" and data = ROOT (its folder)" if key in TOW_SOURCE_OPTIONS["data"] else "")
            + " in a run of kind = 'tow'.)")


def _check_key(key: Any, where: str, kind: str | None = "zo_maml") -> str:
    """Return a run key resolved through the aliases of ``kind``.

    ``None``: any kind's key is accepted as written; used before a run's kind is known.
    """
    if not isinstance(key, str):
        raise ValidationTypeError(f"{where}: keys must be strings; got {key!r}.")
    if kind is None:
        if key == "kind" or any(key in d or key in a for d, a in map(_keys, KINDS)):
            return key
        valid = sorted(set(RUN_DEFAULTS) | set(TOW_RUN_DEFAULTS) | set(ALIASES) | set(TOW_ALIASES))
        import difflib
        close = difflib.get_close_matches(key, valid, n=1)
        hint = _source_hint(key) or (f" Did you mean {close[0]!r}?" if close else "")
        raise ValidationError(f"{where}: unknown run key {key!r}; valid keys are "
                              f"{', '.join(valid)}.{hint}")
    defaults, aliases = _keys(kind)
    key = aliases.get(key, key)
    valid = list(defaults) if kind == "tow" else ["kind", *defaults]
    if key not in defaults and not (key == "kind" and kind == "zo_maml"):
        import difflib
        close = difflib.get_close_matches(key, valid + list(aliases), n=1)
        hint = _source_hint(key) or (f" Did you mean {close[0]!r}?" if close else "")
        other = [k for k in KINDS if k != kind and key in _keys(k)[0]]
        if other:
            hint += f" ({key!r} is a key of kind = {other[0]!r} runs; this run has kind {kind!r}.)"
        raise ValidationError(f"{where}: unknown run key {key!r} for a run of kind {kind!r}; valid "
                              f"keys are {', '.join(valid)} (aliases "
                              f"{', '.join(aliases) or 'none'}).{hint}")
    return key


def _run_kind(run: Mapping[str, Any]) -> str:
    return check_choice(run.get("kind", "zo_maml"), "kind", KINDS)


def normalize_run(run: Mapping[str, Any], where: str = "run") -> dict[str, Any]:
    """Validate a run's settings and return its full configuration.

    Validate a run's settings and return the full configuration (every key of
    :data:`RUN_DEFAULTS`, or of :data:`TOW_RUN_DEFAULTS` for ``kind = "tow"``, in that order,
    defaults filled in, aliases resolved; a zo_maml configuration does not store its default
    ``kind``).

    Parameters
    ----------
    run : mapping
        Run settings; ``kind`` (one of :data:`KINDS`, default ``"zo_maml"``) selects the keys
        that apply (a key of the other kind is refused, naming its kind).
    where : str
        How the run is named in error messages (e.g. ``"runs[3]"``).

    Returns
    -------
    dict
        The full configuration.

    Raises
    ------
    ValidationError, ValidationTypeError
        Unknown key (the message lists the valid ones) or a bad value (named).
    """
    if not isinstance(run, Mapping):
        raise ValidationTypeError(f"{where} must be a mapping of run settings; got "
                                  f"{type(run).__name__}.")
    kind = _run_kind(run)
    if kind == "tow":
        return _normalize_tow(run, where)
    given: dict[str, Any] = {}
    for key, value in run.items():
        if key == "kind":    # "zo_maml" is the default: not stored (ids of older stores kept)
            continue
        k = _check_key(key, where)
        if k in given:
            raise ValidationError(f"{where}: key {k!r} given twice (directly and as an alias).")
        given[k] = value
    # a normalised configuration holds None for settings that do not apply: accept it back
    given = {k: v for k, v in given.items() if not (v is None and k in _NOT_APPLICABLE)}
    c = {**RUN_DEFAULTS, **given}
    out: dict[str, Any] = {}
    out["seed"] = check_int(c["seed"], "seed", minimum=0)
    out["family"] = check_choice(c["family"], "family", FAMILIES)
    out["n_tasks"] = check_positive(c["n_tasks"], "n_tasks", integer=True)
    out["d"] = check_positive(c["d"], "d", integer=True)
    out["k"] = check_positive(c["k"], "k", integer=True)
    if out["family"] != "random" and ("d" in given or "k" in given):
        raise ValidationError(f"{where}: d and k apply only to family 'random'; family "
                              f"{out['family']!r} has its own dimensions. Remove d/k.")
    if out["family"] != "random":
        out["d"] = out["k"] = None
    h = c["heterogeneity"]
    out["heterogeneity"] = None if h is None else check_positive(h, "heterogeneity", allow_zero=True)
    out["K0"] = check_choice(c["K0"], "K0", INITIAL_GAINS)
    out["alpha"] = check_positive(c["alpha"], "alpha")
    out["eta"] = check_positive(c["eta"], "eta", allow_zero=True)
    out["n_iterations"] = check_positive(c["n_iterations"], "n_iterations", integer=True)
    out["estimator"] = check_choice(c["estimator"], "estimator", ESTIMATORS)
    zo = out["estimator"] in _ZO
    for key in ("n_perturbations", "inner_perturbations", "radius", "rollout_length", "backend"):
        if not zo and key in given:
            raise ValidationError(f"{where}: {key} applies only to the zeroth-order estimators "
                                  f"{_ZO}; estimator is {out['estimator']!r}. Remove {key}.")
    out["n_perturbations"] = check_positive(c["n_perturbations"], "n_perturbations", integer=True) if zo else None
    out["inner_perturbations"] = (check_positive(c["inner_perturbations"], "inner_perturbations",
                                                 integer=True) if zo else None)
    out["radius"] = check_positive(c["radius"], "radius") if zo else None
    if not zo:
        out["rollout_length"] = None
    elif isinstance(c["rollout_length"], str):
        out["rollout_length"] = check_choice(c["rollout_length"], "rollout_length", ("auto",))
    else:
        out["rollout_length"] = check_positive(c["rollout_length"], "rollout_length", integer=True)
    out["backend"] = (None if c["backend"] is None else check_backend(c["backend"], "backend")) if zo else None
    from ..meta.training import GUARDS, OUTER_UPDATES
    out["guard"] = check_choice(c["guard"], "guard", GUARDS)
    out["outer_update"] = check_choice(c["outer_update"], "outer_update", OUTER_UPDATES)
    out["max_backtracks"] = check_int(c["max_backtracks"], "max_backtracks", minimum=0)
    out["max_consecutive_rejections"] = check_positive(c["max_consecutive_rejections"],
                                                       "max_consecutive_rejections", integer=True)
    out["tol"] = check_positive(c["tol"], "tol", allow_zero=True)
    return out


_CLASSIFICATION_DEFAULTS = dict(learner="protonet", optimizer="adam", alpha=1e-3, gamma=0.1, iterations=100)
#: Per-source defaults of a TOW run's ``"auto"`` keys (learner, meta-optimiser, meta step size,
#: MAML's inner step, training windows): those of ``metalqr tow`` (``metalqr.cli.TOW_DEFAULTS``
#: is this table).
TOW_SOURCE_DEFAULTS = {
    "sinusoid": dict(learner="fomaml", optimizer="adam", alpha=3e-3, gamma=0.02, iterations=500),
    **{source: dict(_CLASSIFICATION_DEFAULTS) for source in TOW_SOURCES if source != "sinusoid"},
}
#: Keys of a TOW run that ``"auto"`` (or leaving them out) resolves.
_TOW_AUTO = ("learner", "net", "gamma", "optimizer", "alpha", "n_iterations", "eval_every")


def _tow_defaults(source: str) -> dict[str, Any]:
    return TOW_SOURCE_DEFAULTS[source]


def tow_default_net(preset: str | None, source: str) -> str:
    """Return the network of a TOW run that does not name one.

    As ``metalqr tow`` without ``--net``: ``"conv"`` for ``preset = "paper"`` on
    ``"omniglot"`` (the TOW paper's network is a ConvNet), else ``"mlp"``.

    Parameters
    ----------
    preset : str or None
        The run's preset (:data:`metalqr.tow.PRESETS`).
    source : str
        The run's source (:data:`TOW_SOURCES`).

    Returns
    -------
    str
        ``"mlp"`` or ``"conv"``.

    Raises
    ------
    ValidationError
        ``source`` not one of :data:`TOW_SOURCES`, or ``preset`` neither None nor a string.
    """
    source = check_choice(source, "source", TOW_SOURCES)
    if preset is not None and not isinstance(preset, str):
        raise ValidationTypeError(f"preset must be a preset's name or None; got {preset!r}.")
    return "conv" if preset == "paper" and source == "omniglot" else "mlp"


def _normalize_tow(run: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Normalise a TOW run (``kind = "tow"``).

    :func:`normalize_run` of a TOW run (``kind = "tow"``): every key of
    :data:`TOW_RUN_DEFAULTS`, resolved as ``metalqr tow`` resolves its flags: a key given
    explicitly, else the preset's value, else the source's default, else the common default.
    A key that does not apply to the run (an option of another source, ``hidden`` with
    ``net = "conv"``, ``inner_steps`` with ProtoNet, ...) is refused when given and stored as
    ``None``.
    """
    from .. import tow
    from ..tow.experiment import NETS
    given: dict[str, Any] = {}
    for key, value in run.items():
        k = _check_key(key, where, "tow")
        if k in given:
            raise ValidationError(f"{where}: key {k!r} given twice (directly and as an alias).")
        given[k] = value
    # None (and "auto" where it means a default) is "not given": a normalised run is a fixed point
    given = {k: v for k, v in given.items()
             if v is not None and not (k in _TOW_AUTO and isinstance(v, str) and v == "auto")}
    out: dict[str, Any] = {"kind": "tow"}
    out["seed"] = check_int(given.get("seed", 0), "seed", minimum=0)
    out["source"] = source = check_choice(given.get("source", "sinusoid"), "source", TOW_SOURCES)
    for key, sources in TOW_SOURCE_OPTIONS.items():
        if key in given and source not in sources:
            raise ValidationError(f"{where}: {key} applies only to source "
                                  f"{' or '.join(map(repr, sources))}; source is {source!r}. "
                                  f"Remove {key}.")
    preset = given.get("preset")
    if preset is not None:
        preset = check_choice(preset, "preset", tuple(tow.PRESETS))
        if source in TOW_REGRESSION_SOURCES:
            classification = ", ".join(s for s in TOW_SOURCES if s not in TOW_REGRESSION_SOURCES)
            raise ValidationError(
                f"{where}: preset {preset!r} is the TOW paper's Omniglot classification setting, for "
                f"the classification sources ({classification}); source {source!r} is a regression, "
                f"where its MAML inner step (gamma=0.1, 5 steps) diverges: remove preset and give "
                f"the settings you want explicitly.")
    preset_values = tow.PRESETS[preset] if preset is not None else {}
    auto = _tow_defaults(source)

    def pick(key: str) -> Any:
        """Return the key given, else the preset's value, else the source's, else the default."""
        if key in given:
            return given[key]
        if key in preset_values:
            return preset_values[key]
        default = TOW_RUN_DEFAULTS[key]
        if isinstance(default, str) and default == "auto":
            return auto["iterations" if key == "n_iterations" else key]
        return default

    if source in ("images", "omniglot"):
        data = given.get("data")
        if data is None:
            what = ("your Omniglot copy: the images_background*.zip files or their folder; "
                    "docs/omniglot.md" if source == "omniglot"
                    else "the root of ROOT/train/<class>/*.png and ROOT/test/<class>/*.png")
            raise ValidationError(f"{where}: source {source!r} needs data = PATH ({what}).")
        if not isinstance(data, str) or not data:
            raise ValidationTypeError(f"{where}: data must be a non-empty path string; got "
                                      f"{data!r}.")
        out["data"] = data
    else:
        out["data"] = None
    out["k_shot"] = None if "k_shot" not in given else check_positive(given["k_shot"], "k_shot",
                                                                      integer=True)
    out["k_query"] = None if "k_query" not in given else check_positive(given["k_query"], "k_query",
                                                                        integer=True)
    out["n_way"] = None if "n_way" not in given else check_int(given["n_way"], "n_way", minimum=2)
    out["max_shot"] = (check_positive(pick("max_shot"), "max_shot", integer=True)
                       if source == "anyshot" else None)
    out["preset"] = preset
    out["strategy"] = check_choice(given.get("strategy", "uniform"), "strategy", tow.strategies())
    out["learner"] = learner = check_choice(pick("learner"), "learner", TOW_LEARNERS)
    if learner == "protonet" and source in TOW_REGRESSION_SOURCES:
        raise ValidationError(f"{where}: learner 'protonet' needs a classification source; use "
                              f"learner 'fomaml' or 'maml' with source {source!r}.")
    if "net" in given:
        net = check_choice(given["net"], "net", NETS)
    else:
        net = tow_default_net(preset, source)
    out["net"] = net
    if net == "conv":
        if "hidden" in given:
            raise ValidationError(f"{where}: hidden is the MLP's width; with net 'conv' give "
                                  f"channels instead (or net = 'mlp'). Remove hidden.")
        if source not in TOW_IMAGE_SOURCES:
            raise ValidationError(f"{where}: net 'conv' needs a source of images "
                                  f"({', '.join(TOW_IMAGE_SOURCES)}); source {source!r} gives "
                                  f"feature vectors: use net = 'mlp'.")
        if learner == "maml":
            raise ValidationError(f"{where}: net 'conv' has no Hessian-vector product, so learner "
                                  f"'maml' (second order) is not available on it; use learner "
                                  f"'fomaml' or 'protonet', or net = 'mlp'.")
    elif "channels" in given:
        raise ValidationError(f"{where}: channels applies to net 'conv' (source of images); the "
                              f"MLP's width is hidden. Remove channels or set net = 'conv'.")
    out["hidden"] = check_positive(pick("hidden"), "hidden", integer=True) if net == "mlp" else None
    out["channels"] = (check_positive(pick("channels"), "channels", integer=True)
                       if net == "conv" else None)
    out["gamma"] = check_positive(pick("gamma"), "gamma", allow_zero=True)
    if learner == "protonet" and "inner_steps" in given:
        raise ValidationError(f"{where}: inner_steps applies to MAML (learner 'fomaml' or 'maml'); "
                              f"ProtoNet has no inner loop. Remove inner_steps.")
    out["inner_steps"] = (None if learner == "protonet"
                          else check_positive(pick("inner_steps"), "inner_steps", integer=True))
    out["optimizer"] = check_choice(pick("optimizer"), "optimizer", ("sgd", "adam"))
    out["alpha"] = check_positive(pick("alpha"), "alpha")
    out["n_iterations"] = check_positive(pick("n_iterations"), "n_iterations", integer=True)
    out["T"] = check_positive(pick("T"), "T", integer=True)
    out["M"] = check_positive(pick("M"), "M", integer=True)
    out["beta_u"] = check_real(pick("beta_u"), "beta_u", minimum=0.0, min_inclusive=False,
                               maximum=1e12)
    out["n_ilqr"] = check_positive(pick("n_ilqr"), "n_ilqr", integer=True)
    out["value_model"] = check_choice(pick("value_model"), "value_model", ("diagonal", "full"))
    out["kappa"] = check_real(pick("kappa"), "kappa", minimum=1.0, min_inclusive=False)
    out["line_search"] = check_choice(pick("line_search"), "line_search", tuple(tow.LINE_SEARCHES))
    out["terminal_cost"] = check_choice(pick("terminal_cost"), "terminal_cost",
                                        tuple(tow.TERMINAL_COSTS))
    smoothing = pick("curve_smoothing")
    out["curve_smoothing"] = None if smoothing is None else check_real(
        smoothing, "curve_smoothing", minimum=0.0, maximum=1.0, min_inclusive=False)
    out["n_test"] = check_int(pick("n_test"), "n_test", minimum=2)
    out["n_val"] = check_int(pick("n_val"), "n_val", minimum=2)
    if "eval_every" not in given:
        out["eval_every"] = max(1, out["n_iterations"] // 20)
    else:
        out["eval_every"] = check_positive(given["eval_every"], "eval_every", integer=True)
    return out


def canonical_json(obj: Any) -> str:
    """Sorted, compact JSON (floats as Python reprs, exact)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_id(config: Mapping[str, Any], version: str | None = None) -> str:
    """Return the identifier of a run.

    Identifier of a run: the first 16 hex digits of the sha256 of its full, normalised
    configuration (canonical JSON) and the metalqr version.

    Parameters
    ----------
    config : mapping
        The run's settings (normalised first by :func:`normalize_run`).
    version : str, optional
        The metalqr version (default: this one).

    Returns
    -------
    str
        16 hex digits.

    Raises
    ------
    ValidationError, ValidationTypeError
        A bad setting (see :func:`normalize_run`).
    """
    if version is None:
        from .._version import __version__ as version
    cfg = normalize_run(config)
    return hashlib.sha256(canonical_json({"config": cfg, "metalqr": version}).encode()).hexdigest()[:16]


def setting_key(config: Mapping[str, Any]) -> str:
    """Return the configuration without its seed (runs of one setting differ only by seed)."""
    return canonical_json({k: v for k, v in config.items() if k != "seed"})


def _as_list(value: Any, where: str) -> list:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValidationError(f"{where} is an empty list; give at least one value.")
        return list(value)
    return [value]


#: Most runs one study may hold (each is a file in the store and a task on the cluster).
MAX_STUDY_RUNS = 1_000_000


def _seeds(value: Any) -> list[int]:
    if isinstance(value, (int,)) and not isinstance(value, bool):
        n = check_int(value, "seeds", minimum=1, maximum=MAX_STUDY_RUNS)
        return list(range(n))
    if isinstance(value, (list, tuple)) and value:
        return [check_int(s, "seeds", minimum=0) for s in value]
    raise ValidationTypeError(f"seeds must be a count (seeds 0..N-1) or a non-empty list of "
                              f"int seeds; got {value!r}.")


class Study:
    """A study: a list of runs (full configurations), each identified by :func:`run_id`.

    Build it with :meth:`grid` (base settings x the Cartesian product of ``grid`` values,
    for each of ``runs``, for each seed), from a TOML file with :func:`load_study`, or from
    explicit ``runs``.

    Parameters
    ----------
    runs : iterable of mapping
        Run settings (keys of :data:`RUN_DEFAULTS`); missing keys take their defaults.
    name : str
        Name of the study (labels, file names).

    Raises
    ------
    ValidationError
        Bad settings (the message names the key), or two identical runs.

    Examples
    --------
    Two settings of the step size, two seeds each:

    >>> from metalqr.experiments import Study
    >>> study = Study.grid(base={"n_iterations": 3, "estimator": "exact", "n_tasks": 2},
    ...                    grid={"alpha": [1e-3, 1e-4]}, seeds=2, name="demo")
    >>> len(study), [config["alpha"] for run_id, config in study]
    (4, [0.001, 0.0001, 0.001, 0.0001])
    """

    def __init__(self, runs: Iterable[Mapping[str, Any]], name: str = "study") -> None:
        if not isinstance(name, str):
            raise ValidationTypeError(f"name must be a string; got {type(name).__name__}.")
        import re
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ValidationError(f"name must be a non-empty file-name-safe string (letters, "
                                  f"digits, '.', '_', '-'); got {name!r}.")
        if isinstance(runs, (str, bytes, Mapping)) or not isinstance(runs, Iterable):
            raise ValidationTypeError(f"runs must be a list of run settings (mappings); got "
                                      f"{type(runs).__name__}.")
        self.name = name
        self.runs: list[dict[str, Any]] = [normalize_run(r, f"runs[{i}]") for i, r in enumerate(runs)]
        if not self.runs:
            raise ValidationError("runs is empty: a study needs at least one run.")
        self.ids: list[str] = [run_id(r) for r in self.runs]
        seen: dict[str, int] = {}
        for i, rid in enumerate(self.ids):
            if rid in seen:
                raise ValidationError(f"runs[{i}] repeats runs[{seen[rid]}] (same configuration); "
                                      f"each run of a study must differ (e.g. by seed).")
            seen[rid] = i

    def __len__(self) -> int:
        return len(self.runs)

    def __iter__(self):
        return iter(zip(self.ids, self.runs))

    def __repr__(self) -> str:
        return f"Study(name={self.name!r}, {len(self)} runs)"

    @classmethod
    def grid(cls, base: Mapping[str, Any] | None = None, grid: Mapping[str, Any] | None = None,
             runs: Iterable[Mapping[str, Any]] | None = None, seeds: Any = 1,
             name: str = "study") -> "Study":
        """Expand ``seeds x runs x product(grid)`` over ``base``.

        Parameters
        ----------
        base : mapping, optional
            Settings shared by every run.
        grid : mapping key -> list, optional
            Every combination of these values (a scalar counts as a one-value list).
        runs : list of mapping, optional
            Explicit variants (e.g. ``{"d": 20, "k": 10, "alpha": 1e-5}``); each is crossed
            with the grid.
        seeds : int or list of int
            ``N`` gives seeds ``0..N-1``. Ignored if ``grid`` has a ``seed`` key.
        name : str
            Name of the study.

        Returns
        -------
        Study
            One run per seed, variant and grid combination.

        Raises
        ------
        ValidationError, ValidationTypeError
            Bad settings (the message names the key), or two identical runs.
        """
        def resolve(mapping: Any, where: str) -> dict[str, Any]:
            # keys checked here against every kind's (a run's kind is known once merged)
            if not isinstance(mapping, Mapping):
                raise ValidationTypeError(f"{where} must be a mapping; got {type(mapping).__name__}.")
            out: dict[str, Any] = {}
            for key, value in mapping.items():
                k = _check_key(key, where, None)
                if any(_same_key(k, o) for o in out):
                    raise ValidationError(f"{where}: key {k!r} given twice (directly and as an "
                                          f"alias).")
                out[k] = value
            return out

        base = resolve(base or {}, "base")
        grid = resolve(grid or {}, "grid")
        if runs is not None and (isinstance(runs, (str, bytes, Mapping))
                                 or not isinstance(runs, Iterable)):
            raise ValidationTypeError(f"runs must be a list of mappings; got {type(runs).__name__}.")
        variants = [{}] if runs is None else list(runs)
        if not variants:
            raise ValidationError("runs is an empty list; omit it or give at least one variant.")
        variants = [resolve(v, f"runs[{i}]") for i, v in enumerate(variants)]
        seed_list = None if ("seed" in grid or "seed" in base) else _seeds(seeds)
        keys = list(grid)
        values = [_as_list(grid[k], f"grid[{k!r}]") for k in keys]
        n_runs = len(seed_list or [None]) * len(variants) * math.prod(len(v) for v in values)
        if n_runs > MAX_STUDY_RUNS:
            raise ValidationError(f"seeds x runs x grid: this study has {n_runs:.3g} runs, above "
                                  f"metalqr's limit of {MAX_STUDY_RUNS} runs a study; split it "
                                  f"into several studies on one store.")
        out = []
        for seed in (seed_list or [None]):
            for v in variants:
                for combo in itertools.product(*values):
                    run = _layer(base, v, dict(zip(keys, combo)))
                    if seed is not None:
                        run["seed"] = seed
                    out.append(run)
        return cls(out, name=name)


def _same_key(a: str, b: str) -> bool:
    """Return whether keys ``a`` and ``b`` name one setting.

    Whether keys ``a`` and ``b`` name one setting under some kind's aliases (``M`` and
    ``n_perturbations`` for zo_maml runs; ``iterations`` and ``n_iterations`` for all).
    """
    return a == b or any(aliases.get(a, a) == aliases.get(b, b) for aliases in (ALIASES, TOW_ALIASES))


def _layer(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge layers of settings, a later layer's key replacing an earlier one's.

    Merge settings, a later layer's key replacing an earlier one's (alias or not), so that a
    run's ``n_iterations`` overrides base's ``iterations``.
    """
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            for old in [o for o in out if _same_key(o, key)]:
                del out[old]
            out[key] = value
    return out


_TOP_KEYS = ("study", "base", "grid", "runs")
_STUDY_KEYS = ("name", "seeds")


def study_from_dict(doc: Mapping[str, Any], default_name: str = "study") -> Study:
    """Build a :class:`Study` from a parsed study file (see ``docs/experiments.md``).

    Parameters
    ----------
    doc : mapping
        The parsed file: sections ``study``, ``base``, ``grid``, ``runs``.
    default_name : str
        The study's name when ``doc`` gives none.

    Returns
    -------
    Study
        The expanded study.

    Raises
    ------
    ValidationError, ValidationTypeError
        An unknown section or key (the valid ones are listed) or a bad value.
    """
    if not isinstance(doc, Mapping):
        raise ValidationTypeError(f"a study must be a mapping; got {type(doc).__name__}.")
    for key in doc:
        check_choice(key, "study file section", _TOP_KEYS)
    head = doc.get("study", {})
    if not isinstance(head, Mapping):
        raise ValidationTypeError("[study] must be a table.")
    for key in head:
        check_choice(key, "[study] key", _STUDY_KEYS)
    return Study.grid(base=doc.get("base"), grid=doc.get("grid"), runs=doc.get("runs"),
                      seeds=head.get("seeds", 1), name=head.get("name", default_name))


def load_study(path: str | os.PathLike) -> Study:
    """Read a study from a TOML file.

    Parameters
    ----------
    path : str or os.PathLike
        The study file (format: ``docs/experiments.md``).

    Returns
    -------
    Study
        The study (its name defaults to the file's stem).

    Raises
    ------
    ValidationError
        The file cannot be read or parsed (line and column named), or holds an unknown
        section or key (the valid ones are listed) or a bad value.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ValidationError("reading a study file on Python 3.10 needs tomli: pip install "
                                  "'metalqr[distributed]' (or tomli).") from None
    if not isinstance(path, (str, os.PathLike)):
        raise ValidationTypeError(f"study file path must be a str or path; got "
                                  f"{type(path).__name__}.")
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ValidationError(f"study file {path!r} cannot be read ({exc}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"study file {path!r} is not valid TOML: {exc}.") from None
    name = os.path.splitext(os.path.basename(path))[0] or "study"
    return study_from_dict(doc, default_name=name)
