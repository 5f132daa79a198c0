"""Sphinx configuration of the documentation.

Build it as CI does (zero warnings allowed)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

The pages are MyST markdown; the API reference is autodoc of the ``cf`` package (Google docstrings). The pictures
are made at every build by the extension ``cf_figures`` (``docs/_ext``) into ``docs/_generated/figures``: from the
outputs in the store(s) named by ``CF_DOCS_STORE``, or, without it, by running the commands they come from in a
temporary store (a few minutes).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

DOCS_DIR = Path(__file__).resolve().parent
REPO_DIR = DOCS_DIR.parent

# autodoc imports the framework from this checkout; the task modules read law.cfg when they are imported, so
# point law to it when the build runs outside `source setup.sh` (values set by setup.sh are kept)
sys.path.insert(0, str(REPO_DIR))
# the project's own extensions
sys.path.insert(0, str(DOCS_DIR / "_ext"))
os.environ.setdefault("CF_BASE", str(REPO_DIR))
os.environ.setdefault("LAW_CONFIG_FILE", str(REPO_DIR / "law.cfg"))

# -- project ---------------------------------------------------------------------------------------------------------

project = "analysis_template"
author = "the analysis_template developers"
copyright = "the analysis_template developers"
release = importlib.import_module("cf").__version__
version = release

# -- general ---------------------------------------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    # the pictures, made from real outputs of the tasks at every build (see docs/_ext/cf_figures.py)
    "cf_figures",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
# user_guide/examples holds files that pages include and tests run, not pages
exclude_patterns = ["_build", "_generated", "user_guide/examples", "Thumbs.db", ".DS_Store"]
nitpicky = False
language = "en"

# -- MyST ------------------------------------------------------------------------------------------------------------

# anchors for headings up to level 3, so that pages can link to sections: [text](page.md#section-title)
myst_heading_anchors = 3

# -- autodoc and napoleon --------------------------------------------------------------------------------------------

autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "show-inheritance": True,
}
autodoc_typehints = "signature"
# methods without a docstring of their own (run, output, ...) would show law's, which link to law's own docs
autodoc_inherit_docstrings = False
# the framework itself never imports these, but model modules do (through maybe_import); a documented module that
# imports one at the top level must not break the build in the base venv, where they are not installed
autodoc_mock_imports = ["tensorflow", "keras", "onnxruntime", "tf2onnx"]

napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections become field lists, not attribute entries that would collide with autodoc's own
napoleon_use_ivar = True
# the framework's docstrings list the overridable class attributes of models in a section of their own
napoleon_custom_sections = [("Class attributes", "params_style")]

# -- HTML ------------------------------------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"{project} {release}"
html_static_path = ["_static"]
html_css_files = ["cf.css"]
