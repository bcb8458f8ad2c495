"""ruff's pydocstyle rules (``D``, numpy convention; pyproject.toml ``[tool.ruff.lint]``) hold
on metalqr/.  CI runs the test suite, so this test is how CI enforces the docstring style."""

import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None,
                    reason='ruff is not installed: pip install -e ".[test]"')
def test_ruff_pydocstyle_passes_on_the_package():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format",
                           "concise", "metalqr"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"ruff check metalqr failed:\n{proc.stdout[-8000:]}{proc.stderr[-2000:]}"


def test_the_ruff_configuration_selects_the_numpy_docstring_rules():
    try:
        import tomllib
    except ImportError:          # Python < 3.11
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "D" in config["select"]
    assert config["pydocstyle"]["convention"] == "numpy"
    # No per-file ignore switches the rules off for the package as a whole.
    assert all(set(codes) <= {"D105"} for pattern, codes in config["per-file-ignores"].items()
               if pattern.startswith("metalqr"))
