"""Issue 16: one public boundary and one vocabulary.

* every name in every ``__all__`` exists; a package's ``__all__`` is what its ``__init__``
  imports (listed once) and the top level is the union of four packages' ``__all__``;
* no underscore name, and nothing from an underscore module, is imported across packages,
  and what crosses a package boundary is in the target module's (or package's) ``__all__``;
* every public module's non-underscore top-level functions and classes are listed in an
  ``__all__`` (or the name is underscored);
* the result types share ``n_iterations``, ``stop_reason`` and ``converged`` as dataclass
  fields, and one documented vocabulary of ``stop_reason`` codes; random functions take ``rng``; iteration counts are ``n_iterations`` /
  ``max_iterations`` as documented in docs/api/index.rst;
* no import cycle between packages or between modules (AST, lazy imports included), every
  module imports first in a fresh interpreter state, and no ``matplotlib.use(`` in library
  code.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest

import metalqr

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "metalqr"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(p) for p in PKG.rglob("*.py") if p.name != "__main__.py")
PUBLIC_MODULES = [m for m in MODULES if not any(p.startswith("_") for p in m.split(".")[1:])]
PACKAGES = sorted(_module_name(p) for p in PKG.glob("*/__init__.py"))


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:          # an optional third-party dependency
        if err.name and not err.name.startswith("metalqr"):
            pytest.skip(f"{name} needs {err.name}")
        raise


def _package_of(module: str) -> str:
    """``metalqr.lqr.policy`` -> ``metalqr.lqr``; a top-level module is its own node."""
    parts = module.split(".")
    if len(parts) >= 2 and (PKG / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def _imports(path: pathlib.Path):
    """``(line, target module, imported name or None)`` of every metalqr import statement in
    ``path``, those inside functions included (a lazy import is one refactoring away from
    an eager one)."""
    module = _module_name(path)
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_pkg:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("metalqr"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if _module_name_exists(sub):            # ``from . import numba_backend``
                    yield node.lineno, sub, None
                else:
                    yield node.lineno, target, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("metalqr"):
                    yield node.lineno, alias.name, None


def _module_name_exists(name: str) -> bool:
    rel = pathlib.Path(*name.split(".")[1:]) if "." in name else pathlib.Path()
    return (PKG / rel).with_suffix(".py").is_file() or (PKG / rel / "__init__.py").is_file()


# ---- the public boundary ---------------------------------------------------------------------

@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_every_all_exists(name):
    module = _import(name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        return
    assert len(exported) == len(set(exported)), f"{name}.__all__ lists a name twice"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


@pytest.mark.parametrize("name", PACKAGES)
def test_package_all_is_what_its_init_imports(name):
    """One list: ``__all__`` is derived from the ``__init__``'s imports (metalqr._api), so a
    public name imported there cannot be missing from ``__all__`` or vice versa."""
    package = _import(name)
    bound = [n for n, v in vars(package).items() if not n.startswith("_")
             and not isinstance(v, types.ModuleType)]
    assert set(bound) <= set(package.__all__), sorted(set(bound) - set(package.__all__))
    assert not [n for n in package.__all__ if n.startswith("_")]


def test_top_level_is_the_union_of_four_packages():
    from metalqr import exceptions, lqr, meta, rollouts
    union = [*exceptions.__all__, *lqr.__all__, *meta.__all__, *rollouts.__all__]
    assert metalqr.__all__ == union and len(union) == len(set(union))
    for n in union:
        assert getattr(metalqr, n) is getattr(importlib.import_module(
            next(m.__name__ for m in (exceptions, lqr, meta, rollouts) if n in m.__all__)), n)


def _crossings():
    """``(file:line, source module, target module, name)`` of every import that crosses a
    package boundary (the shared top-level infrastructure modules excluded as targets)."""
    for path in sorted(PKG.rglob("*.py")):
        source = _module_name(path)
        for line, target, name in _imports(path):
            if _package_of(target) == _package_of(source) or "." not in target[len("metalqr"):] \
                    or not (PKG / target.split(".")[1]).is_dir():
                continue            # same package, or a top-level module (shared infrastructure)
            yield f"{path.relative_to(ROOT)}:{line}", source, target, name


def test_no_underscore_name_or_module_is_imported_across_packages():
    bad = [f"{where}: {target}{'.' + name if name else ''}"
           for where, _, target, name in _crossings()
           if (name or "").startswith("_") or any(p.startswith("_") for p in target.split(".")[2:])]
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def test_what_crosses_a_package_boundary_is_listed_in_an_all():
    bad = []
    for where, _, target, name in _crossings():
        if name is None or name == "*":
            continue
        module = _import(target)
        if isinstance(getattr(module, name, None), types.ModuleType):
            continue
        package = _import(_package_of(target))
        if name not in getattr(module, "__all__", ()) and name not in getattr(package, "__all__", ()):
            bad.append(f"{where}: {target}.{name}")
    assert not bad, "names imported across packages but in no __all__:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_module_lists_its_public_callables(name):
    """A public module's non-underscore top-level functions and classes are in its own or
    its package's ``__all__``; anything else is underscored."""
    path = (PKG / pathlib.Path(*name.split(".")[1:])) if name != "metalqr" else PKG
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    tree = ast.parse(path.read_text())
    defined = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
               and not n.name.startswith("_")]
    module = _import(name)
    listed = set(getattr(module, "__all__", ())) | set(getattr(_import(_package_of(name)), "__all__", ()))
    unlisted = [n for n in defined if n not in listed]
    assert not unlisted, f"{name}: public but in no __all__ (list them or underscore them): {unlisted}"


def test_the_scans_see_real_imports():
    """The boundary checks would notice a violation (the scans are not vacuous)."""
    crossings = list(_crossings())
    assert any(t == "metalqr.lqr.policy" and n == "evaluate_batch" for _, _, t, n in crossings)
    assert any(t.startswith("metalqr.rollouts") for _, s, t, _ in crossings if s.startswith("metalqr.meta"))


# ---- one vocabulary --------------------------------------------------------------------------

RESULT_TYPES = ["metalqr.PolicyOptimizationResult", "metalqr.MetaTrainingResult",
                "metalqr.ilqr.ILQRResult", "metalqr.tow.TOWResult"]


@pytest.mark.parametrize("path", RESULT_TYPES)
def test_result_types_share_field_names(path):
    module, _, cls = path.rpartition(".")
    fields = {f.name for f in dataclasses.fields(getattr(importlib.import_module(module), cls))}
    assert {"n_iterations", "stop_reason", "converged"} <= fields, path
    assert "reason" not in fields


def _stop_runs(kind):
    """(limit-reached result, converged result) of each result type, on tiny problems."""
    if kind == "PolicyOptimizationResult":
        task = metalqr.double_integrator()
        K = 0.9 * metalqr.optimal_gain(task)[0]
        return (metalqr.policy_optimization(task, K, method="gd", eta=1e-4, max_iterations=3),
                metalqr.policy_optimization(task, K, method="gauss_newton", eta=0.5,
                                            max_iterations=50))
    if kind == "MetaTrainingResult":
        ts = metalqr.sample_tasks(3, 2, 1, rng=0)
        run = lambda **kw: metalqr.meta_policy_optimization(  # noqa: E731
            ts, np.zeros((1, 2)), alpha=1e-3, eta=1e-5, gradient="exact", progress=False, **kw)
        return run(n_iterations=2), run(n_iterations=50, tol=1e9)
    if kind == "ILQRResult":
        from metalqr.ilqr import ilqr, problems
        prob, _ = problems.linear_quadratic(3, 2, 6, rng=4)
        return ilqr(**prob.kwargs(), max_iterations=1), ilqr(**prob.kwargs(), max_iterations=50)
    from metalqr.tow import MAML, MLP, SinusoidTasks, tow_weights
    rng = np.random.default_rng(5)
    net, src = MLP(hidden=8), SinusoidTasks()
    learner, z = MAML(net, gamma=0.01, first_order=True), net.init(rng)
    batches = [src.sample(rng, 4) for _ in range(3)]
    run = lambda **kw: tow_weights(learner, z, batches, alpha=0.05, line_search="paper",  # noqa: E731
                                   **kw)
    return run(n_ilqr=1), run(n_ilqr=50, tol=1e6)


@pytest.mark.parametrize("path", RESULT_TYPES)
def test_result_types_share_stop_reason_codes(path):
    """One vocabulary of stop_reason values (docs/api/index.rst, "Stop reasons"): a reached
    limit is "max_iterations" and a met tolerance "tolerance" (converged) in every result
    type; codes are short snake_case, never sentences (iLQR's sentence is ``message``)."""
    limit, done = _stop_runs(path.rpartition(".")[2])
    assert (limit.stop_reason, limit.converged) == ("max_iterations", False), limit.stop_reason
    assert (done.stop_reason, done.converged) == ("tolerance", True), done.stop_reason
    assert done.n_iterations < 50
    for res in (limit, done):
        assert res.stop_reason.isidentifier() and res.stop_reason == res.stop_reason.lower()
    if hasattr(limit, "ilqr"):                # TOWResult copies its iLQR result's fields
        for res in (limit, done):
            assert (res.n_iterations, res.stop_reason, res.converged) == \
                (res.ilqr.n_iterations, res.ilqr.stop_reason, res.ilqr.converged)
    if path.endswith("ILQRResult"):
        assert "max_iterations=1" in limit.message and "below tol" in done.message


def test_documented_stop_reason_codes_are_the_ones_the_solvers_give():
    """Every code assigned in the solvers is listed in docs/api/index.rst and vice versa."""
    import re
    doc = (ROOT / "docs" / "api" / "index.rst").read_text()
    section = doc[doc.index("**Stop reasons.**"):doc.index("**Randomness.**")]
    documented = set(re.findall(r'^ +- ``"([a-z_]+)"``', section, flags=re.M))
    given = set()
    for rel in ("lqr/optimization.py", "ilqr/solver.py", "meta/training.py", "tow/weighting.py"):
        src = (PKG / rel).read_text()
        given |= set(re.findall(r'(?:reason|stop_reason)(?:, \w+)* = "([a-z_]+)"', src))
        given |= set(re.findall(r'result\("([a-z_]+)"\)', src))
    assert given and given == documented, (sorted(given - documented), sorted(documented - given))


def _public_callables():
    seen = set()
    for name in PUBLIC_MODULES:
        if name == "metalqr.cli" or ".experiments" in name:
            continue          # command lines (--seed) and study configs (a TOML ``seed`` key)
        module = _import(name)
        for n in getattr(module, "__all__", ()):
            obj = getattr(module, n)
            if id(obj) in seen or not callable(obj):
                continue
            seen.add(id(obj))
            try:
                sig = inspect.signature(obj)
            except (TypeError, ValueError):
                continue
            yield f"{name}.{n}", sig


def test_random_functions_take_rng_and_counts_are_named_consistently():
    bad = []
    for where, sig in _public_callables():
        for p in sig.parameters:
            if p in ("seed", "iterations", "step_size", "reason", "what"):
                bad.append(f"{where}({p}=)")
    assert not bad, "drifted argument names (use rng, n_iterations / max_iterations, eta, ...): " + \
        ", ".join(bad)


def test_evaluate_has_no_internal_keyword_and_its_type_is_exported():
    assert list(inspect.signature(metalqr.evaluate).parameters) == ["task", "K"]
    task = metalqr.LQRTask([[0.9, 0.2], [0.0, 0.8]], [[0.0], [1.0]], [[1.0, 0.0], [0.0, 1.0]],
                           [[1.0]])
    K = [[0.1, 0.2]]
    ev = metalqr.evaluate(task, K)
    assert isinstance(ev, metalqr.PolicyEvaluation) and metalqr.lqr.PolicyEvaluation is metalqr.PolicyEvaluation
    X = [[0.3, -0.5]]
    H = ev.hessian_vp(X)                  # shaped as metalqr.hessian_vp: (k, d)
    assert H == pytest.approx(metalqr.hessian_vp(task, K, X), rel=1e-12)


def test_policy_optimization_reports_why_it_stopped():
    task = metalqr.double_integrator()
    K_star, _ = metalqr.optimal_gain(task)
    res = metalqr.policy_optimization(task, 0.9 * K_star, method="gauss_newton", eta=0.5,
                                      max_iterations=50)
    assert res.converged and res.stop_reason == "tolerance" and res.n_iterations < 50
    res = metalqr.policy_optimization(task, 0.9 * K_star, method="gd", eta=1e-4, max_iterations=3)
    assert not res.converged and res.stop_reason == "max_iterations" and res.n_iterations == 3
    assert len(res.costs) == 4


# ---- import structure ------------------------------------------------------------------------

def _graph(node_of):
    edges: dict[str, dict[str, str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        source = node_of(_module_name(path))
        for line, target, _ in _imports(path):
            dest = node_of(target)
            if dest != source:
                edges.setdefault(source, {}).setdefault(dest, f"{path.relative_to(ROOT)}:{line}")
    return edges


def _cycles(edges):
    """Every back edge found by a depth-first search, as the cycle it closes."""
    state, found = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                found.append(" -> ".join(f"{a} ({edges[a][b]})" for a, b in zip(cycle, cycle[1:]))
                             + f" -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycle_between_packages():
    edges = _graph(_package_of)
    assert "metalqr.lqr" in edges["metalqr.meta"] and "metalqr.ilqr" in edges["metalqr.tow"]
    assert not _cycles(edges), "import cycles between packages:\n" + "\n".join(_cycles(edges))


def test_no_import_cycle_between_modules():
    edges = _graph(lambda m: m)
    assert edges["metalqr.meta.objective"]
    assert not _cycles(edges), "import cycles between modules:\n" + "\n".join(_cycles(edges))


def test_cycle_detector_finds_a_cycle():
    assert _cycles({"a": {"b": "x:1"}, "b": {"c": "y:2"}, "c": {"a": "z:3"}})
    assert not _cycles({"a": {"b": "x:1"}, "b": {"c": "y:2"}})


_ISOLATED = r'''
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for key in [k for k in sys.modules if k == "metalqr" or k.startswith("metalqr.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and not err.name.startswith("metalqr"):
            continue                        # an optional dependency
        failed.append(name + ": " + traceback.format_exc(limit=3))
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=3))
print("\n".join(failed))
sys.exit(1 if failed else 0)
'''


def test_every_module_imports_first():
    """Each module imported first, in a fresh interpreter state (every ``metalqr`` module
    dropped from ``sys.modules`` before it), works: no hidden dependency on import order.
    One interpreter for all modules keeps it fast; the third-party imports it reuses cannot
    hide a metalqr cycle. Two interpreters share the modules (the CI machine has 2 cores)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", _ISOLATED, *MODULES[i::2]], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outs)


def test_main_module_imports_first_in_a_fresh_process():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-m", "metalqr", "--version"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0 and metalqr.__version__ in out.stdout, out.stderr


def test_library_code_never_switches_the_matplotlib_backend():
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in sorted(PKG.rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1)
                 if "matplotlib.use(" in line.replace(" ", "") or ".use(\"Agg\")" in line]
    assert not offenders, "matplotlib.use( in library code: " + ", ".join(offenders)


def test_a_registered_backend_reaches_meta_training_without_other_edits(monkeypatch):
    """The backend seam: meta-training, Figure 1 and study configs check a backend name
    against the registry, not against a hard-coded list."""
    from metalqr.experiments import normalize_run
    from metalqr.rollouts import backends as backends_mod
    from metalqr.rollouts.numpy_backend import NumpyBackend

    calls = []

    class Toy(NumpyBackend):
        name = "toy"
        description = "NumPy under another name (test)"

        def simulate(self, *args, **kwargs):
            calls.append(1)
            return super().simulate(*args, **kwargs)

    monkeypatch.setattr(backends_mod, "_REGISTRY", dict(backends_mod._registry()))
    backends_mod.register_backend(Toy())
    tasks = metalqr.sample_tasks(2, 1, 1, rng=0)
    res = metalqr.meta_policy_optimization(tasks, np.zeros((1, 1)), alpha=1e-3, eta=1e-5,
                                           n_iterations=1, rng=0, backend="toy", progress=False,
                                           n_perturbations=2, inner_perturbations=2,
                                           rollout_length=60)
    assert calls and res.settings["backend"] == "toy"
    assert normalize_run({"d": 1, "k": 1, "backend": "toy"})["backend"] == "toy"
    with pytest.raises(metalqr.ValidationError, match="backend"):
        metalqr.meta_policy_optimization(tasks, np.zeros((1, 1)), alpha=1e-3, eta=1e-5,
                                         n_iterations=1, backend="toyy", progress=False)
