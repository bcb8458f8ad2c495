"""Sphinx configuration of the metalqr documentation site.

Build (warnings are errors, as in CI)::

    pip install -e ".[docs]"
    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-D plot_gallery=0`` skips running the gallery examples (their pages then show the code
without figures).  ``tests/test_docs_site.py`` runs the same build on a copy of docs/.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pathlib
import pkgutil
import re
import sys

DOCS = pathlib.Path(__file__).resolve().parent
#: The checkout whose ``metalqr`` is documented (the test suite builds a copy of docs/ in a
#: temporary folder and points here with ``METALQR_SOURCE_ROOT``).
ROOT = pathlib.Path(os.environ.get("METALQR_SOURCE_ROOT", DOCS.parent)).resolve()
sys.path.insert(0, str(ROOT))          # document this checkout's metalqr, not an installed one
os.environ.setdefault("MPLBACKEND", "Agg")   # the gallery draws off-screen

import metalqr  # noqa: E402

project = "metalqr"
author = "metalqr developers"
copyright = "2026, metalqr developers"
release = version = metalqr.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "gallery/README.rst", "**/.ipynb_checkpoints"]
templates_path = ["_templates"]
html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"metalqr {release}"

# -- autodoc / autosummary -------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"               # the numpydoc Parameters sections carry the types
autodoc_member_order = "bysource"
add_module_names = False

# Every cross-reference (:func:`...`, :class:`...`) in a docstring or page must resolve: a
# broken one would otherwise render as plain text without a word.  Other projects' objects
# are not linked (no intersphinx: the build needs no network).
nitpicky = True
_EXTERNAL = sorted(set(sys.stdlib_module_names) | {
    "numpy", "np", "scipy", "hypothesis", "matplotlib", "numba", "control", "dask", "distributed",
    "cupy", "tqdm", "sklearn"})
nitpick_ignore_regex = [(r"py:.*", r"(%s)(\..*)?" % "|".join(_EXTERNAL))]

# -- numpydoc --------------------------------------------------------------------------------
numpydoc_show_class_members = False      # attributes are documented in the class docstring
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True
# Every numpydoc check (numpydoc.readthedocs.io/en/latest/validation.html) is enforced on
# every documented object -- functions, classes, and the public methods and properties of the
# classes -- except these (tests/test_docstrings.py applies the same list to the public API):
numpydoc_validation_checks = {
    "all",
    "ES01",   # no extended summary: a one-line summary is enough for simple functions
    "SA01",   # no See Also section: cross-references are written in the text where they help
    "EX01",   # no Examples section: required (and run) for the main entry points only, by
              # tests/test_docstrings.py::test_main_entry_points_have_a_runnable_example
    "RT02",   # the Returns entry names the value: numpydoc's own style for several values, and
              # the name carries the shape for a single one (``K_star : ndarray, shape (k, d)``)
}
# Dunder methods are documented by Python's data model; constants and class attributes
# (dataclass fields, ``name`` / ``description`` of the registries' base classes) by their
# ``#:`` comments and their class's Attributes section (see _data_attributes below).
numpydoc_validation_exclude = {r"\.__\w+__$"}


def _patch_numpydoc_lambda_properties() -> None:
    """Work around numpydoc's validator crashing (``StopIteration``) on a property whose
    getter is a lambda (``A = property(lambda self: self._A, doc=...)``, as in
    :class:`metalqr.LQRTask`): it looks for a ``def``/``class`` line that such source lacks.
    The line number only places ``# numpydoc ignore`` comments, so ``None`` is harmless."""
    try:
        from numpydoc import validate
    except ImportError:          # conf.py imported without the docs extra (tests/test_docs_site.py)
        return
    original = validate.Validator.source_file_def_line.fget

    def source_file_def_line(self):
        try:
            return original(self)
        except (StopIteration, RuntimeError):
            return None

    validate.Validator.source_file_def_line = property(source_file_def_line)

    # A dataclass's private (underscore) fields with defaults are internal caches that the
    # generated ``__init__`` happens to accept; they are not API and go undocumented (PR01).
    original_parameters = validate.Validator.signature_parameters.fget

    def signature_parameters(self):
        return tuple(p for p in original_parameters(self) if not p.lstrip("*").startswith("_"))

    validate.Validator.signature_parameters = property(signature_parameters)


_patch_numpydoc_lambda_properties()

# -- myst (the docs/*.md pages) --------------------------------------------------------------
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]
suppress_warnings = [
    # The pages link to benchmarks/ and tests/ files that are not part of the site.
    "myst.xref_missing",
]

# -- sphinx-gallery --------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",          # run every plot_*.py example
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "abort_on_example_error": True,
    "show_memory": False,
    "min_reported_time": 1,
    "reset_modules": ("matplotlib",),
    # "Examples using ..." on each API page (the minigallery of the autosummary templates).
    "doc_module": ("metalqr",),
    "backreferences_dir": "api/generated/backreferences",
}

# -- API completeness ------------------------------------------------------------------------
#: Public modules whose ``__all__`` the API reference must cover (a module absent from this
#: checkout is skipped).  A name counts as covered when a page lists it under any module that
#: exports the same object (``metalqr.lqr.cost`` is ``metalqr.cost``).
API_MODULES = ("metalqr", "metalqr.lqr", "metalqr.meta", "metalqr.rollouts", "metalqr.exceptions",
               "metalqr.ilqr", "metalqr.ilqr.problems", "metalqr.tow", "metalqr.theory",
               "metalqr.tow.studies", "metalqr.testing", "metalqr.experiments")


def _data_attributes() -> set[str]:
    """Exclusion patterns for the exported constants and the data attributes of the exported
    classes: numpydoc validates callables (functions, classes, methods, properties)."""
    out = set()
    for modname in API_MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if obj is None or inspect.ismodule(obj):
                continue
            if not callable(obj):
                out.add(r"\.%s$" % re.escape(name))
            elif inspect.isclass(obj):
                attrs = set(getattr(obj, "__annotations__", {})) | set(getattr(obj, "_fields", ()))
                for klass in obj.__mro__:
                    attrs |= {k for k, v in vars(klass).items()
                              if not callable(v) and not isinstance(v, (property, staticmethod, classmethod))}
                out |= {r"\.%s\.%s$" % (re.escape(obj.__name__), re.escape(a)) for a in attrs
                        if not a.startswith("_")}
    return out


numpydoc_validation_exclude |= _data_attributes()


def _documented_names(api_dir: pathlib.Path = DOCS / "api") -> dict[str, set[str]]:
    """``{module: names}`` listed in autosummary tables (or ``auto*`` directives) under a
    ``.. currentmodule::`` / ``.. module::`` line of ``api_dir/*.rst``."""
    out: dict[str, set[str]] = {}
    for page in sorted(pathlib.Path(api_dir).glob("*.rst")):
        module = None
        in_summary = False
        for line in page.read_text().splitlines():
            m = re.match(r"\.\. (?:current)?module:: (\S+)", line)
            if m:
                module = m.group(1)
                continue
            if line.startswith(".. autosummary::"):
                in_summary = True
                continue
            if in_summary:
                if not line.strip() or line.lstrip().startswith(":"):
                    continue
                if line.startswith(" "):
                    out.setdefault(module, set()).add(line.strip().lstrip("~"))
                    continue
                in_summary = False
            m = re.match(r"\.\. (?:auto|py:)?(?:function|class|data|exception):: (\S+)", line)
            if m and module:
                out.setdefault(module, set()).add(m.group(1))
    return out


def missing_from_api(api_dir: pathlib.Path = DOCS / "api") -> dict[str, list[str]]:
    """``{module: exported names that no API page lists}`` for the modules of
    :data:`API_MODULES` present in this checkout."""
    documented = _documented_names(api_dir)
    covered = set()
    for modname, names in documented.items():
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        covered.update(id(getattr(module, n)) for n in names if hasattr(module, n))
    out = {}
    for modname in API_MODULES:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        where = pathlib.Path(module.__file__).resolve()
        if not where.is_relative_to(ROOT) and "site-packages" not in where.parts:
            continue     # found in another checkout (its editable install), not this one
        missing = sorted(n for n in getattr(module, "__all__", ())
                         if not inspect.ismodule(getattr(module, n, None))   # own section
                         and n not in documented.get(modname, set())
                         and id(getattr(module, n, None)) not in covered)
        if missing:
            out[modname] = missing
    return out


def check_api_coverage(app, env, docnames=None):  # noqa: ARG001 - Sphinx event signature
    """Warn (an error under ``-W``) for every exported name missing from the API pages."""
    from sphinx.util import logging

    log = logging.getLogger("metalqr.api")
    for modname, missing in missing_from_api().items():
        if missing:
            log.warning("the API reference does not list %s of %s (add them to a docs/api/*.rst "
                        "autosummary under '.. currentmodule:: %s')", ", ".join(missing), modname,
                        modname, type="metalqr", subtype="api")


# -- constants: their ``#:`` doc comment, not the docstring of their type ---------------------

def _attribute_doc(package: str, attr: str) -> list[str] | None:
    """The ``#:`` comment above ``attr = ...`` in ``package`` or one of its modules that
    defines the same object; None if there is none."""
    from sphinx.pycode import ModuleAnalyzer

    pkg = importlib.import_module(package)
    target = getattr(pkg, attr)
    names = [package] + [m.name for m in pkgutil.walk_packages(getattr(pkg, "__path__", []),
                                                                package + ".")]
    for modname in names:
        try:
            module = importlib.import_module(modname)
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:       # noqa: BLE001 - a module without source: look elsewhere
            continue
        if getattr(module, attr, None) is target and ("", attr) in docs:
            return list(docs[("", attr)])
    return None


def document_constants(app, what, name, obj, options, lines):  # noqa: ARG001 - event signature
    """Give an exported constant (``STRATEGIES``, ...) the ``#:`` comment of its definition
    instead of the docstring of its type (``tuple``), and warn where there is none."""
    if what != "data":
        return
    own = " ".join(" ".join(lines).split())
    inherited = " ".join((inspect.getdoc(type(obj)) or "").split())
    if own and own != inherited:
        return
    from sphinx.util import logging

    package, attr = name.rsplit(".", 1)
    doc = _attribute_doc(package, attr)
    if doc is None:
        logging.getLogger("metalqr.api").warning(
            "%s has no '#:' doc comment above its definition", name, type="metalqr",
            subtype="constant")
        doc = []
    lines[:] = doc


# -- cross-references by their short name -----------------------------------------------------

def resolve_short_names(app, env, node, contnode):
    """Resolve a Python reference that names a documented object by a shorter path
    (``:func:`available_backends``` in :mod:`metalqr.rollouts`, documented as
    ``metalqr.available_backends``) when exactly one object matches, like Sphinx's own
    ``.name`` search.  Anything else stays a (nitpicky) warning."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "").lstrip("~.")
    if not target or any(part.startswith("_") for part in target.split(".")):
        return None
    domain = env.get_domain("py")
    kinds = set(domain.objtypes_for_role(node.get("reftype", "obj")) or ())
    matches = {name: obj for name, obj in domain.objects.items()
               if name.endswith("." + target) and not obj.aliased and obj.objtype in kinds}
    if not matches and "." in target:
        # A full path to where an object is defined (``metalqr.rollouts.backends.register_backend``)
        # resolves to the page of the same object under its public name.
        try:
            wanted = pkgutil.resolve_name(target)
        except (ImportError, AttributeError, ValueError):
            wanted = None
        if wanted is not None and not isinstance(wanted, (int, float, str, tuple)):
            tail = target.rsplit(".", 1)[1]
            for name, obj in domain.objects.items():
                if name.endswith("." + tail) and obj.objtype in kinds and not obj.aliased:
                    try:
                        if pkgutil.resolve_name(name) is wanted:
                            matches[name] = obj
                    except (ImportError, AttributeError, ValueError):
                        continue
    # One object re-exported under several paths counts once (same page and anchor).
    places = {(obj.docname, obj.node_id) for obj in matches.values()}
    if len(places) != 1:
        return None
    from sphinx.util.nodes import make_refnode

    name, obj = sorted(matches.items(), key=lambda item: len(item[0]))[0]
    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name)


def setup(app):
    app.connect("missing-reference", resolve_short_names)
    app.connect("env-before-read-docs", check_api_coverage)
    app.connect("autodoc-process-docstring", document_constants, priority=400)
