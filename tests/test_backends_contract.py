"""The rollout-backend contract (issue 16), checked for every backend of the registry that can
run here, plus the CuPy backend's own code with NumPy standing in for CuPy when no GPU is
present: agreement with the NumPy reference, sphere norms, common random numbers, same seed
same bits, divergence flags; and the registry itself (one place, read by every check)."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

import metalqr
from metalqr.lqr.tasks import as_batch
from metalqr.rollouts import backends as backends_mod
from metalqr.rollouts.counter_rng import GAMMA, INT_SHIFT, LAYER_MASK, ZIG_KI, _mix, normals
from metalqr.rollouts.cupy_backend import CupyBackend
from metalqr.rollouts.engine import DIVERGENCE_FACTOR, divergence_reference, noise_factors
from metalqr.rollouts.numpy_backend import NumpyBackend
from helpers import random_task, stabilizing_gain


class _ProxyXP:
    """NumPy under another name (no ``asnumpy``, no ``cuda``): the CuPy backend's code runs
    on the CPU."""

    def __getattr__(self, name):
        return getattr(np, name)


def _cases():
    cases = [pytest.param(name, id=name) for name in metalqr.available_backends()]
    if "cupy" not in metalqr.available_backends():
        cases.append(pytest.param("cupy-on-numpy", id="cupy-on-numpy"))
    return cases


def _backend(name):
    if name == "cupy-on-numpy":
        return CupyBackend(xp=_ProxyXP())
    return backends_mod.get_backend(name)


REFERENCE = NumpyBackend()


def _family(seed=0, d=3, k=2, n=3):
    rng = np.random.default_rng(seed)
    tasks = metalqr.TaskSet([random_task(rng, d, k, rho=0.8) for _ in range(n)])
    Ks = np.stack([stabilizing_gain(rng, t, scale=0.05) for t in tasks])
    return tasks, Ks, rng


def _simulate(backend, tasks, K, ti, noise_index, length, key, watch=True):
    batch = as_batch(tasks)
    L0, G = noise_factors(batch.Sigma0, batch.Psi, batch.Q)
    ref = divergence_reference(batch, ti, K)
    return backend.simulate(batch.A, batch.B, batch.Q, batch.R, L0, G, ti,
                            np.ascontiguousarray(K), noise_index, length, key, ref,
                            DIVERGENCE_FACTOR if watch else math.inf)


@pytest.mark.slow
@pytest.mark.parametrize("name", _cases())
def test_costs_agree_with_the_numpy_reference(name):
    be = _backend(name)
    tasks, Ks, rng = _family(1, d=4, k=2)
    ti = rng.permutation(np.arange(301) % 3)
    K = Ks[ti] + 0.01 * rng.standard_normal((301, 2, 4))
    ni = np.arange(301)
    ref = _simulate(REFERENCE, tasks, K, ti, ni, 30, 12345)
    got = _simulate(be, tasks, K, ti, ni, 30, 12345)
    assert got.shape == (301,) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=0)
    other = _simulate(be, tasks, K, ti, ni, 30, 12346)           # another key: other noise
    assert np.all(other != got)


@pytest.mark.parametrize("name", _cases())
def test_normals_same_seed_same_bits_as_the_reference_generator(name):
    """Bit for bit on the one-multiplication path, to the last bit of exp/log on the slow
    path; the same call twice gives the same bits; another key gives other numbers."""
    be = _backend(name)
    n = 200_000
    a = be.normals(77, n)
    np.testing.assert_array_equal(a, be.normals(77, n))
    c = np.arange(n, dtype=np.uint64)
    b = normals(np, 77, c)
    h = _mix(np.uint64(77) + (c + np.uint64(1)) * GAMMA)
    slow = (h >> INT_SHIFT) >= ZIG_KI[(h & LAYER_MASK).astype(np.int64)]
    assert 0.002 * n < slow.sum() < 0.01 * n
    np.testing.assert_array_equal(a[~slow], b[~slow])
    assert np.max(np.abs(a - b) / np.abs(b)) < 1e-14
    assert np.mean(be.normals(78, n) == a) < 1e-3
    assert be.normals(5, 0).shape == (0,)


@pytest.mark.parametrize("name", _cases())
def test_sphere_points_have_the_radius_and_the_reference_directions(name):
    be = _backend(name)
    U = be.sphere_points(9, 500, 7, 0.25)
    assert U.shape == (500, 7)
    np.testing.assert_allclose(np.linalg.norm(U, axis=1), 0.25, rtol=1e-14)
    np.testing.assert_allclose(U, REFERENCE.sphere_points(9, 500, 7, 0.25), rtol=1e-13,
                               atol=1e-16)
    z = normals(np, 9, np.arange(7 * 3, 7 * 4, dtype=np.uint64))  # row 3 = z_21 .. z_27
    np.testing.assert_allclose(U[3], 0.25 * z / np.linalg.norm(z), rtol=1e-13)


@pytest.mark.parametrize("name", _cases())
@pytest.mark.parametrize("two_point", [True, False])
def test_perturbed_gains_are_centre_plus_minus_perturbation(name, two_point):
    be = _backend(name)
    rng = np.random.default_rng(3)
    C, V = rng.standard_normal((4, 6)), rng.standard_normal((4, 5, 6))
    out = be.perturbed_gains(C, V, two_point)
    assert out.shape == (4, 5, 2 if two_point else 1, 6)
    np.testing.assert_array_equal(out[:, :, 0], C[:, None] + V)
    if two_point:
        np.testing.assert_array_equal(out[:, :, 1], C[:, None] - V)


@pytest.mark.parametrize("name", _cases())
def test_common_random_numbers(name):
    """Roll-outs with the same noise index, task and gain see identical noise (identical
    costs, wherever they sit in the batch); other indices give other costs."""
    be = _backend(name)
    tasks, Ks, rng = _family(2, d=3, k=1)
    ti = np.array([0, 1, 0, 2, 0, 0])
    K = Ks[ti]
    ni = np.array([5, 5, 5, 7, 9, 5])
    c = _simulate(be, tasks, K, ti, ni, 25, 99)
    assert c[0] == c[2] == c[5] and c[0] != c[4]
    # the same (task, gain, noise index) alone in a call: the same cost to rounding
    alone = _simulate(be, tasks, K[:1], ti[:1], ni[:1], 25, 99)
    assert alone[0] == pytest.approx(c[0], rel=1e-12)


@pytest.mark.parametrize("name", _cases())
def test_divergence_flags_match_the_reference(name):
    """A mixed batch: the roll-outs of the unstable task (spectral radius 1.5) are inf, the
    stable ones keep the costs of a run without the divergence test."""
    be = _backend(name)
    bad = metalqr.LQRTask([[1.0, 0.2], [0.0, 1.2]], [[0.0], [1.0]], np.eye(2), [[1.0]])
    good = metalqr.LQRTask([[0.5, 0.1], [0.0, 0.4]], [[0.0], [1.0]], np.eye(2), [[1.0]])
    ts = metalqr.TaskSet([bad, good])
    ti = np.arange(40) % 2
    K = np.where(ti[:, None, None] == 0, np.array([[0.0, -0.3]]), np.array([[0.0, 0.1]]))
    c = _simulate(be, ts, K, ti, np.arange(40), 60, 4)
    plain = _simulate(REFERENCE, ts, K, ti, np.arange(40), 60, 4, watch=False)
    np.testing.assert_array_equal(np.isinf(c), ti == 0)
    np.testing.assert_allclose(c[ti == 1], plain[ti == 1], rtol=1e-10)
    assert np.all(np.isfinite(plain))       # no test: large but finite, not flagged


# --- the registry -------------------------------------------------------------------------

def test_registry_is_the_one_list_of_names():
    names = metalqr.rollouts.known_backends()
    assert set(names) >= {"numpy", "numba", "cupy"}
    assert tuple(backends_mod.KNOWN_BACKENDS) == names
    assert set(metalqr.available_backends()) <= set(names)
    for name in names:
        be = backends_mod._registry()[name]
        assert isinstance(be, backends_mod.Backend) and be.name == name and be.description
        assert name in backends_mod.backend_help()
    with pytest.raises(metalqr.ValidationError, match="backend") as err:
        metalqr.simulate_costs(metalqr.boeing747(), np.zeros((2, 4)), length=5,
                               backend="fortran")
    for name in names:
        assert name in str(err.value)


def test_a_new_backend_is_one_registration(monkeypatch):
    """A backend registered under a new name is known, available, validated and used by the
    public functions with no other change."""
    calls = []

    class Toy(NumpyBackend):
        name = "toy"
        description = "NumPy under another name (test)"

        def simulate(self, *args, **kwargs):
            calls.append(args[7].shape)
            return super().simulate(*args, **kwargs)

    monkeypatch.setattr(backends_mod, "_REGISTRY", dict(backends_mod._registry()))
    backends_mod.register_backend(Toy())
    assert "toy" in metalqr.rollouts.known_backends() and "toy" in metalqr.available_backends()
    task = metalqr.boeing747()
    K = np.zeros((2, 4))
    a = metalqr.simulate_costs(task, K, length=10, n_rollouts=8, rng=1, backend="toy")
    b = metalqr.simulate_costs(task, K, length=10, n_rollouts=8, rng=1, backend="numpy")
    np.testing.assert_array_equal(a, b)
    assert calls == [(8, 2, 4)]


def test_an_unavailable_backend_is_a_clear_error(monkeypatch):
    class Missing(NumpyBackend):
        name = "missing"
        description = "never available (test)"
        install_hint = "Install the missing thing."

        def available(self):
            return False

    monkeypatch.setattr(backends_mod, "_REGISTRY", dict(backends_mod._registry()))
    backends_mod.register_backend(Missing())
    assert "missing" not in metalqr.available_backends()
    assert "missing (unavailable here)" in backends_mod.backend_help()
    with pytest.raises(metalqr.BackendUnavailableError, match="missing.*Install the missing"):
        metalqr.simulate_costs(metalqr.boeing747(), np.zeros((2, 4)), length=5,
                               backend="missing")


def test_backend_interface_is_enforced():
    class Incomplete(backends_mod.Backend):
        name = "incomplete"

        def simulate(self, *args, **kwargs):
            return None

    with pytest.raises(TypeError):
        Incomplete()                         # normals, sphere_points, perturbed_gains missing


# --- malformed inputs of the registry's public functions (table-driven) ------------------

class _Nameless(NumpyBackend):
    name = ""


class _BadName(NumpyBackend):
    name = "has space"


class _NoDescription(NumpyBackend):
    name = "nodesc"
    description = ""


class _IntName(NumpyBackend):
    name = 3


MALFORMED = [
    ("get_backend", backends_mod.get_backend, "backend", ("fortran",)),
    ("get_backend", backends_mod.get_backend, "backend", ("NUMPY",)),
    ("get_backend", backends_mod.get_backend, "backend", (3,)),
    ("get_backend", backends_mod.get_backend, "backend", (["numpy"],)),
    ("get_backend", backends_mod.get_backend, "backend", ("",)),
    ("check_backend", backends_mod.check_backend, "backend", ("numbaa",)),
    ("check_backend", backends_mod.check_backend, "backend", (b"numpy",)),
    ("check_backend", backends_mod.check_backend, "backend", (1.5,)),
    ("check_backend", backends_mod.check_backend, "engine", ("x",), {"name": "engine"}),
    ("register_backend", backends_mod.register_backend, "backend", (object(),)),
    ("register_backend", backends_mod.register_backend, "backend", (NumpyBackend,)),
    ("register_backend", backends_mod.register_backend, "backend", ("numpy",)),
    ("register_backend", backends_mod.register_backend, "backend.name", (_Nameless(),)),
    ("register_backend", backends_mod.register_backend, "backend.name", (_BadName(),)),
    ("register_backend", backends_mod.register_backend, "backend.name", (_IntName(),)),
    ("register_backend", backends_mod.register_backend, "backend.description",
     (_NoDescription(),)),
    ("simulate_costs", metalqr.simulate_costs, "backend", (metalqr.boeing747(), np.zeros((2, 4))),
     {"length": 5, "backend": "gpu"}),
    ("simulate_costs", metalqr.simulate_costs, "backend", (metalqr.boeing747(), np.zeros((2, 4))),
     {"length": 5, "backend": 0}),
    ("simulate_costs", metalqr.simulate_costs, "backend", (metalqr.boeing747(), np.zeros((2, 4))),
     {"length": 5, "backend": "Numba"}),
    ("simulate_costs", metalqr.simulate_costs, "backend", (metalqr.boeing747(), np.zeros((2, 4))),
     {"length": 5, "backend": ("numpy",)}),
]


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: f"{c[0]}-{c[2]}-{c[3][-1]!r:.20}")
def test_malformed_backend_arguments_raise_named_errors(case, monkeypatch):
    from helpers import assert_named_error

    monkeypatch.setattr(backends_mod, "_REGISTRY", dict(backends_mod._registry()))
    _, fn, word, args, *kw = case
    assert_named_error(fn, word, *args, **(kw[0] if kw else {}))


def _rollouts_import_graph():
    """Edges module -> module of metalqr.rollouts from every import statement (also those
    inside functions: a lazy import is one refactoring away from an eager one)."""
    import ast
    import pathlib

    root = pathlib.Path(backends_mod.__file__).parent
    mods = {p.stem for p in root.glob("*.py") if p.stem != "__init__"}
    graph = {m: set() for m in mods}
    for m in mods:
        for node in ast.walk(ast.parse((root / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                targets = [node.module] if node.module else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith("metalqr.rollouts."):
                targets = [node.module.split(".")[2]]
            else:
                continue
            graph[m] |= {t.split(".")[0] for t in targets if t.split(".")[0] in mods}
    return graph


def test_no_import_cycle_among_rollout_modules():
    """Issue 16: backends -> numba_kernel -> engine -> backends was a latent cycle. No cycle
    now, lazy imports included (depth-first search for a back edge)."""
    graph = _rollouts_import_graph()
    assert graph["_numba_kernel"] and "backends" in graph["engine"]     # the graph is real
    state = {}

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph[m]):
            assert state.get(t) != "open", "import cycle: " + " -> ".join(path + [m, t])
            if t not in state:
                visit(t, path + [m])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize("module", ["_numba_kernel", "engine", "backends", "numpy_backend",
                                    "numba_backend", "cupy_backend", "_counter_rng_numba",
                                    "_array_kernel", "_factors"])
def test_every_rollout_module_imports_first_in_a_fresh_process(module):
    """Each module imports on its own in a fresh process, and the registry is then complete."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(metalqr.__file__)))
    code = (f"import metalqr.rollouts.{module}; import metalqr; "
            f"print(metalqr.rollouts.known_backends())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "numpy" in out.stdout and "numba" in out.stdout and "cupy" in out.stdout
