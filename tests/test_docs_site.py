"""The documentation site (docs/): Sphinx + numpydoc API reference, the docs/*.md pages and
the gallery build with warnings as errors, and the API reference lists the public API.

The full build (``python -m sphinx -W --keep-going -b html docs docs/_build/html``, gallery
examples run) needs the ``docs`` extra; without it the build test is skipped.
"""

import importlib.util
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GALLERY = sorted((DOCS / "gallery").glob("plot_*.py"))
PAGES = sorted(DOCS.glob("*.md"))
DOCS_PACKAGES = ("sphinx", "numpydoc", "myst_parser", "sphinx_gallery")
MISSING = [name for name in DOCS_PACKAGES if importlib.util.find_spec(name) is None]


def _conf():
    """docs/conf.py as a module (it imports without Sphinx)."""
    spec = importlib.util.spec_from_file_location("metalqr_docs_conf", DOCS / "conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               METALQR_SOURCE_ROOT=str(ROOT), MPLBACKEND="Agg")
    return env


# ---- without Sphinx ------------------------------------------------------------------------

def test_api_reference_lists_every_exported_name():
    assert _conf().missing_from_api() == {}


def test_api_coverage_check_notices_a_missing_name(tmp_path):
    conf = _conf()
    api = tmp_path / "api"
    shutil.copytree(DOCS / "api", api)
    page = api / "ilqr.rst"
    text = page.read_text()
    assert "\n   ilqr\n" in text
    page.write_text(text.replace("\n   ilqr\n", "\n", 1))
    assert conf.missing_from_api(api) == {"metalqr.ilqr": ["ilqr"]}


def test_every_markdown_page_is_in_the_toctree():
    index = (DOCS / "index.rst").read_text()
    assert PAGES, "docs/*.md pages expected"
    for page in PAGES:
        assert f"\n   {page.stem}\n" in index, f"docs/index.rst does not list {page.name}"


@pytest.mark.parametrize("script", GALLERY, ids=[p.name for p in GALLERY])
def test_gallery_example_has_a_sphinx_gallery_header(script):
    source = script.read_text()
    assert source.startswith('"""\n'), "a gallery example starts with its title docstring"
    title, underline = source.splitlines()[1:3]
    assert title and set(underline) == {"="} and len(underline) >= len(title)


# ---- the build -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build a copy of docs/ (gallery examples run) with warnings as errors; return the
    HTML folder and the build's wall time."""
    if MISSING:
        pytest.skip(f"the docs build needs {', '.join(MISSING)}: pip install -e \".[docs]\"")
    work = tmp_path_factory.mktemp("docs")
    src = work / "docs"
    shutil.copytree(DOCS, src, ignore=shutil.ignore_patterns(
        "_build", "generated", "auto_examples", "sg_execution_times.rst", "__pycache__"))
    out = work / "html"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(work / "doctrees"), str(src), str(out)],
                          capture_output=True, text=True, cwd=work, env=_env(), timeout=600)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"sphinx -W failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return out, seconds


@pytest.mark.slow
def test_site_builds_with_warnings_as_errors(site):
    out, seconds = site
    assert (out / "index.html").is_file()
    print(f"docs build: {seconds:.1f} s, {len(list(out.rglob('*.html')))} HTML pages")


@pytest.mark.slow
@pytest.mark.parametrize("name, sections", [
    ("metalqr.meta_policy_optimization", ("Parameters", "Returns", "Raises")),
    ("metalqr.optimal_gain", ("Parameters", "Returns", "Raises")),
    ("metalqr.ilqr.ilqr", ("Parameters", "Returns", "Raises")),
])
def test_api_pages_of_the_main_entry_points(site, name, sections):
    page = site[0] / "api" / "generated" / f"{name}.html"
    assert page.is_file(), f"no API page {page.name}"
    html = page.read_text()
    assert name.rsplit(".", 1)[1] in html
    for section in sections:       # numpydoc rendered the sections (a field list per section)
        assert f">{section}" in html, f"{page.name} has no rendered {section} section"


@pytest.mark.slow
def test_every_exported_name_has_an_api_page(site):
    conf = _conf()
    pages = "".join(p.read_text() for p in (site[0] / "api").glob("*.html"))   # inline entries
    for modname, names in conf._documented_names().items():
        for name in names:
            assert ((site[0] / "api" / "generated" / f"{modname}.{name}.html").is_file()
                    or f'id="{modname}.{name}"' in pages), f"{modname}.{name} has no entry"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_markdown_pages_are_in_the_site(site, page):
    html = site[0] / f"{page.stem}.html"
    assert html.is_file()
    first_heading = next(ln for ln in page.read_text().splitlines() if ln.startswith("# "))
    words = [w for w in first_heading[2:].replace("`", " ").split() if w.isalpha()]
    assert all(w in html.read_text() for w in words[:3])


@pytest.mark.slow
@pytest.mark.parametrize("script", GALLERY, ids=[p.name for p in GALLERY])
def test_gallery_examples_ran_and_drew_a_figure(site, script):
    out = site[0]
    assert (out / "auto_examples" / f"{script.stem}.html").is_file()
    assert (out / "_images" / f"sphx_glr_{script.stem}_001.png").is_file(), (
        f"{script.name} drew no figure")


@pytest.mark.slow
@pytest.mark.parametrize("name, example", [
    ("metalqr.meta_policy_optimization", "plot_figure1_curve"),
    ("metalqr.ilqr.ilqr", "plot_ilqr_pendulum"),
    ("metalqr.tow.run_sinusoid_experiment", "plot_tow_weights"),
])
def test_api_pages_link_the_gallery_examples_that_use_them(site, name, example):
    html = (site[0] / "api" / "generated" / f"{name}.html").read_text()
    assert "Examples using" in html and f"{example}.html" in html
