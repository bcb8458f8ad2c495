"""Run the python code blocks of README.md and docs/*.md, and the doctests of the package."""

import doctest
import importlib
import pathlib
import pkgutil
import re

import pytest

import metalqr

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_markdown_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    namespace = {"__name__": "__docs__"}   # blocks of one page run in order, like a notebook
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)


def test_doctests():
    failures = 0
    for mod in pkgutil.walk_packages(metalqr.__path__, "metalqr."):
        if mod.name.endswith("__main__"):
            continue
        module = importlib.import_module(mod.name)
        failures += doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed
    assert failures == 0
