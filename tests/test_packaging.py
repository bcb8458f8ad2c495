"""The README's two set-up commands, .ci/run and the console script stay consistent."""

import pathlib
import re
import subprocess
import sys

import metalqr

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Set-up commands.*?```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README.md must have a '## Set-up commands' section with a code block"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert "[test]" in cmds[1] and "pytest" in cmds[1]
    assert "metalqr reproduce fig1 --quick" in cmds[0]
    assert cmds[1] in (ROOT / ".ci" / "run").read_text()


def test_public_api_exports_exist():
    for name in metalqr.__all__:
        assert hasattr(metalqr, name), name


def test_console_demo_runs():
    out = subprocess.run([sys.executable, "-m", "metalqr", "demo", "--iterations", "20"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert "boeing747" in out and "gap_gauss_newton" in out
