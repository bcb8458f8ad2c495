"""What users install: the README's two set-up commands, .ci/run, the installed copy under
test, the console script, the version, the licence and the references stay consistent."""

import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import metalqr

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = pathlib.Path(metalqr.__file__).resolve().parent
INSTALLED_RUN = os.environ.get("METALQR_TEST_INSTALLED", "") not in ("", "0")


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Set-up commands.*?```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README.md must have a '## Set-up commands' section with a code block"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def _ci_text():
    return (ROOT / ".ci" / "run").read_text()


def _env_for_package():
    """Environment for a subprocess that imports the metalqr under test (source tree or
    installed copy), from any working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE.parent), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert cmds[0].startswith("pip install . ") and "metalqr reproduce fig1 --quick" in cmds[0]
    assert '".[test]"' in cmds[1] and "pytest" in cmds[1]
    assert cmds[1] in _ci_text()


def test_readme_test_command_runs_pytest_outside_the_source_root():
    """`python -m pytest` puts the current directory first on sys.path: run from the
    repository root it would test the source tree, not what `pip install` installed."""
    cmd = _readme_commands()[1]
    before_pytest = cmd.split("python -m pytest")[0]
    assert re.search(r"\bcd\s+tests\b", before_pytest), cmd


def test_ci_installs_and_runs_everything_against_the_installed_copy():
    ci = _ci_text()
    lines = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert any(re.fullmatch(r"export METALQR_TEST_INSTALLED=1", ln) for ln in lines)
    assert ci.index("METALQR_TEST_INSTALLED=1") < ci.index(_readme_commands()[1])
    pytest_lines = [ln for ln in lines if "pytest" in ln]
    assert pytest_lines and all(" -m " not in ln.split("pytest", 1)[1] for ln in pytest_lines), (
        "CI must run the whole suite, slow tests included")
    assert "python3 -m venv" in ci


def test_install_instructions_work_from_a_clone():
    """metalqr is not on a package index: every install line installs the clone (`.`)."""
    # (docs/tow.md and the messages of metalqr.tow / metalqr.rollouts belong to other areas)
    for page in [ROOT / "README.md", ROOT / "docs" / "python_control.md", ROOT / "docs" / "references.md"]:
        for line in page.read_text().splitlines():
            assert not re.search(r"pip install\s+['\"]?metalqr\b", line), f"{page.name}: {line}"


@pytest.mark.skipif(not INSTALLED_RUN, reason="only when .ci/run tests the installed copy "
                    "(METALQR_TEST_INSTALLED=1)")
def test_suite_imports_the_installed_copy_not_the_source_tree():
    assert ROOT not in PACKAGE.parents, (
        f"metalqr was imported from the source tree ({PACKAGE}), not from the installed copy")
    assert importlib.metadata.version("metalqr") == metalqr.__version__
    source = {p.relative_to(ROOT / "metalqr").as_posix() for p in (ROOT / "metalqr").rglob("*.py")}
    installed = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    assert source <= installed, f"not installed: {sorted(source - installed)}"


@pytest.mark.skipif(not INSTALLED_RUN, reason="only when .ci/run tests the installed copy")
def test_installed_console_script():
    exe = shutil.which("metalqr")
    assert exe, "the `metalqr` console script is not on PATH after pip install"
    res = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"metalqr {metalqr.__version__}"


def test_version_is_stated_once_and_agrees():
    text = (ROOT / "pyproject.toml").read_text()
    found = re.findall(r'^version\s*=\s*"([^"]+)"', text, re.M)
    assert found == [metalqr.__version__]


def test_licence_file_matches_the_metadata():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "metalqr developers" in licence
    assert re.search(r'^license\s*=\s*"MIT"', (ROOT / "pyproject.toml").read_text(), re.M)


def test_references_cite_both_papers_and_docs_do_not_point_outside_the_clone():
    refs = (ROOT / "docs" / "references.md").read_text()
    for needle in ("arXiv:2503.00385", "arXiv:2301.01400", "Pan", "Nguyen",
                   "Model-Agnostic Meta-Policy Optimization via Zeroth-Order Estimation",
                   "Task Weighting in Meta-learning with Trajectory Optimisation"):
        assert needle in refs, needle
    for name in ("README.md", "docs/references.md", "docs/python_control.md"):
        text = (ROOT / name).read_text()
        assert "shared/papers" not in text and not re.search(r"\d{3}_[0-9a-f]{16}\.txt", text), name


def test_fast_subset_is_documented_and_the_slow_marker_is_used():
    assert 'python -m pytest -m "not slow"' in (ROOT / "README.md").read_text()
    assert re.search(r"^\s*slow:", (ROOT / "setup.cfg").read_text(), re.M)
    used = [p.name for p in (ROOT / "tests").glob("test_*.py") if "mark.slow" in p.read_text()]
    assert used, "no test is marked slow"


def test_public_api_exports_exist():
    for name in metalqr.__all__:
        assert hasattr(metalqr, name), name


@pytest.mark.slow
def test_console_demo_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "metalqr", "demo", "--iterations", "20"],
                         capture_output=True, text=True, check=True, cwd=tmp_path,
                         env=_env_for_package(), timeout=300).stdout
    assert "boeing747" in out and "gap_gauss_newton" in out


# --------------------------------------------------------------------------- kernel cache
def test_kernel_cache_folder_is_per_user_and_per_version(monkeypatch, tmp_path):
    from metalqr import _numba_cache
    monkeypatch.delenv("METALQR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _numba_cache.cache_root("9.9") == str(tmp_path / "xdg" / "metalqr" / "9.9" / "numba")
    monkeypatch.setenv("METALQR_CACHE_DIR", str(tmp_path / "mine"))
    assert _numba_cache.cache_root("9.9") == str(tmp_path / "mine" / "9.9" / "numba")


def test_metalqr_kernels_use_the_per_user_cache_and_user_functions_do_not(tmp_path):
    """Only metalqr's own kernels move to the per-user folder; a user's cached function
    keeps Numba's location; NUMBA_CACHE_DIR, when the user sets it, wins for both."""
    user_mod = tmp_path / "user_mod.py"
    user_mod.write_text("import numba\n@numba.njit(cache=True)\ndef f(x):\n    return x + 1\n")
    probe = (
        "import sys, metalqr\n"
        "from metalqr import _numba_cache\n"
        "from metalqr.rollouts import _numba_kernel as numba_kernel\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import user_mod\n"
        "print(_numba_cache.installed_root())\n"
        "print(numba_kernel.simulate_costs_numba.__module__)\n"
        "print([d._cache.cache_path for d in vars(numba_kernel).values()"
        " if hasattr(d, '_cache') and hasattr(d._cache, 'cache_path')][0])\n"
        "print(user_mod.f._cache.cache_path)\n")
    env = _env_for_package()
    env["METALQR_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("NUMBA_CACHE_LOCATOR_CLASSES", None)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300, check=True).stdout.splitlines()
    root = str(tmp_path / "cache" / metalqr.__version__ / "numba")
    assert out[0] == root
    assert out[2].startswith(root + os.sep), out
    assert not out[3].startswith(str(tmp_path / "cache")), out   # the user's function: untouched
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba_dir")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300, check=True).stdout.splitlines()
    assert out[0] == "None"
    assert out[2].startswith(str(tmp_path / "numba_dir")) and out[3].startswith(str(tmp_path / "numba_dir"))


@pytest.mark.slow
def test_compiled_kernels_survive_a_reinstall_of_the_same_sources(tmp_path):
    """A reinstall rewrites every file (new modification times, __pycache__ gone): the
    kernels compiled before it are loaded from the per-user cache, not recompiled; a
    changed source is recompiled."""
    probe_src = "import numba\n@numba.njit(cache=True)\ndef plus_one(x):\n    return x + 1\n"
    site = tmp_path / "site"

    def install(src=probe_src):
        if site.exists():
            shutil.rmtree(site)
        shutil.copytree(PACKAGE, site / "metalqr", ignore=shutil.ignore_patterns("__pycache__"))
        (site / "metalqr" / "_cache_probe.py").write_text(src)

    env = dict(os.environ, PYTHONPATH=str(site), METALQR_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("NUMBA_CACHE_DIR", None)
    env.pop("NUMBA_CACHE_LOCATOR_CLASSES", None)
    run = ("import metalqr, metalqr._cache_probe as p\n"
           "assert p.plus_one(1) == 2\n"
           "s = p.plus_one.stats\n"
           "print(sum(s.cache_hits.values()), sum(s.cache_misses.values()), s.cache_path)\n")

    def hits_misses():
        out = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=300, check=True).stdout.split()
        assert out[2].startswith(str(tmp_path / "cache" / metalqr.__version__))
        return int(out[0]), int(out[1])

    install()
    assert hits_misses() == (0, 1)          # first run: compiled
    assert hits_misses() == (1, 0)          # second run: loaded
    install()                               # reinstall of the same sources
    assert hits_misses() == (1, 0)
    install(probe_src.replace("x + 1", "1 + x"))   # changed source: recompiled
    assert hits_misses() == (0, 1)
    # A kernel inlines functions and constants of OTHER modules (e.g. the counter-based
    # generator's bit layout): a change of any metalqr source, not only the kernel's own
    # file, must recompile it. Before, the stamp was the kernel file's hash alone, and a
    # changed constant elsewhere left the stale compiled kernel in use.
    probe_dep = ("import numba\nfrom metalqr._cache_dep import OFFSET\n"
                 "@numba.njit(cache=True)\ndef plus_one(x):\n    return x + OFFSET\n")
    install(probe_dep)
    (site / "metalqr" / "_cache_dep.py").write_text("OFFSET = 1\n")
    assert hits_misses() == (0, 1)
    assert hits_misses() == (1, 0)
    (site / "metalqr" / "_cache_dep.py").write_text("OFFSET = 1  # changed elsewhere\n")
    assert hits_misses() == (0, 1)          # stale kernel not served


def test_package_stamp_covers_every_source_file(tmp_path):
    from metalqr import _numba_cache
    pkg = tmp_path / "metalqr"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    first = _numba_cache.package_stamp.__wrapped__(str(pkg))
    assert first == _numba_cache.package_stamp.__wrapped__(str(pkg))     # deterministic
    assert first == _numba_cache.package_stamp.__wrapped__(PACKAGE)      # copies agree
    consts = pkg / "rollouts" / "counter_rng.py"
    consts.write_text(consts.read_text() + "\n")
    assert _numba_cache.package_stamp.__wrapped__(str(pkg)) != first
    (pkg / "notes.txt").write_text("not a source")                        # only .py counts
    consts.write_text(consts.read_text()[:-1])
    assert _numba_cache.package_stamp.__wrapped__(str(pkg)) == first
