"""The framework tests use ``cf`` alone: no analysis package of the template is imported, statically or at run time.

The analysis packages are the ones a fork renames or drops (``analysis_template``, ``ml``, ``inference``,
``sample``); the framework finds an analysis only through law.cfg, so the fixture analysis must be enough.
"""

from __future__ import annotations

import configparser
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.framework.conftest import LAW_CONFIG
from tests.framework.imports import imported_modules

if TYPE_CHECKING:
    from tests.conftest import LawEnv

FRAMEWORK_TESTS = Path(__file__).resolve().parent
ROOT = FRAMEWORK_TESTS.parent.parent
#: The template's analysis packages, which the framework and its tests must never import.
ANALYSIS_PACKAGES = frozenset({"analysis_template", "ml", "inference", "sample"})
#: The modules of the suite outside tests/framework that the framework tests may import (the shared fixtures).
SHARED_TEST_MODULES = frozenset({"tests.conftest"})


def is_allowed(module: str) -> bool:
    """Whether the framework tests may import ``module``: not an analysis package, no other test module."""
    top = module.split(".", 1)[0]
    if top == "tests":
        return module in {"tests", *SHARED_TEST_MODULES} or module.startswith("tests.framework")
    return top not in ANALYSIS_PACKAGES


def test_framework_tests_import_only_cf_and_the_fixture() -> None:
    files = sorted(FRAMEWORK_TESTS.rglob("*.py"))
    assert FRAMEWORK_TESTS / "fixture_analysis" / "functions.py" in files
    forbidden = [
        f"{path.relative_to(ROOT)}:{line}: {module}"
        for path in files
        for line, module in imported_modules(path, ROOT)
        if not is_allowed(module)
    ]
    assert forbidden == []


def test_cf_imports_no_analysis_package() -> None:
    files = sorted((ROOT / "cf").rglob("*.py"))
    assert ROOT / "cf" / "tasks" / "base.py" in files
    imported = {module for path in files for _, module in imported_modules(path, ROOT)}
    assert {module for module in imported if module.split(".", 1)[0] in ANALYSIS_PACKAGES} == set()


@pytest.mark.parametrize(
    ("module", "allowed"),
    [("cf.tasks.base", True), ("tests.framework.conftest", True), ("tests.conftest", True),
     ("sample.generate", False), ("ml", False), ("tests.test_chain", False), ("mlflow", True)],
)  # fmt: skip
def test_the_import_rule(module: str, allowed: bool) -> None:
    assert is_allowed(module) is allowed


def test_the_fixture_law_cfg_names_only_cf_and_the_fixture() -> None:
    config = configparser.ConfigParser(allow_no_value=True, delimiters=(":", "="), interpolation=None)
    config.read(LAW_CONFIG)
    assert all(module.startswith("cf.tasks.") for module in config["modules"])
    analysis = config["analysis"]
    named = [analysis["default_analysis"]] + [
        name.strip() for key in analysis if key.endswith("_modules") for name in analysis[key].split(",")
    ]
    assert all(name.startswith("tests.framework.fixture_analysis.") for name in named), named


#: Imports every cf module, loads what the fixture law.cfg names, and prints the analysis packages then imported.
LOAD_SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    import cf
    from cf.analysis import load_analysis, load_modules

    for module in pkgutil.walk_packages(cf.__path__, "cf."):
        importlib.import_module(module.name)
    analysis = load_analysis()
    for key in ("calibration_modules", "selection_modules", "production_modules"):
        load_modules(key)
    print(json.dumps({"analysis": analysis.name, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
    """
)


@pytest.mark.slow
def test_loading_the_fixture_analysis_imports_no_analysis_package(fixture_env: LawEnv) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT],
        env=fixture_env.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["analysis"] == "fixture_analysis"
    assert ANALYSIS_PACKAGES.isdisjoint(report["modules"])
