"""The framework as a package: ``pyproject.toml`` builds a wheel of ``cf`` alone, which installs and imports anywhere.

The wheel is built from a copy of the checkout (an in-tree build would write ``build/`` and an ``.egg-info`` into
it) with ``pip wheel --no-deps --no-build-isolation --no-index``: offline, with the venv's setuptools, which must
be as new as ``[build-system] requires`` says (the build tests skip otherwise, naming the version found).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tail
from tests.framework.imports import top_level_imports

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")

ROOT = Path(__file__).resolve().parents[2]
#: The distribution name of the framework.
DISTRIBUTION = "cf-template"
#: What the copy of the checkout leaves out: the data, hidden entries (.git, caches), build outputs.
NOT_COPIED = ("data", ".*", "__pycache__", "build", "dist", "*.egg-info", "_build")
#: pip of the venv the tests run in, and its options for working offline (nothing to download).
PIP = (sys.executable, "-m", "pip")
OFFLINE = ("--no-deps", "--no-index", "-q")
#: The analysis packages of the template, which the wheel must not contain.
ANALYSIS_PACKAGES = ("analysis_template", "ml", "inference", "sample")


@dataclass(frozen=True)
class Built:
    """A wheel and the copy of the checkout it was built from."""

    wheel: Path
    source: Path


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def required_setuptools() -> tuple[int, ...]:
    """The lowest setuptools version that ``[build-system] requires`` allows, e.g. ``(77,)``."""
    (requirement,) = pyproject()["build-system"]["requires"]
    match = re.fullmatch(r"setuptools>=([\d.]+)", requirement)
    assert match, f"expected 'setuptools>=N' in [build-system] requires, got '{requirement}'"
    return tuple(int(part) for part in match.group(1).split("."))


def installed_setuptools() -> tuple[int, ...]:
    """The version of the setuptools that a ``--no-build-isolation`` build uses; () if there is none."""
    try:
        return tuple(int(part) for part in re.findall(r"\d+", version("setuptools"))[:3])
    except PackageNotFoundError:
        return ()


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``command``; a non-zero exit fails the test with the output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"'{' '.join(command)}' exited with {result.returncode}:\n{tail(result.stdout + result.stderr)}")
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The wheel of a copy of the checkout."""
    required, found = required_setuptools(), installed_setuptools()
    if found < required:
        pytest.skip(
            f"setuptools {'.'.join(map(str, found)) or '(none)'} cannot build the package offline, pyproject.toml "
            f"requires >= {'.'.join(map(str, required))}: pin a newer setuptools in sandboxes/cf.txt",
        )
    root = tmp_path_factory.mktemp("package")
    source = root / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_COPIED))
    run([*PIP, "wheel", *OFFLINE, "--no-build-isolation", "--wheel-dir", str(root / "wheels"), str(source)])
    (wheel,) = (root / "wheels").glob("*.whl")
    return Built(wheel=wheel, source=source)


def version_of_source(source: Path) -> str:
    """``cf.__version__`` as written in the source's ``cf/__init__.py``."""
    match = re.search(r'^__version__ = "([^"]+)"$', (source / "cf" / "__init__.py").read_text(), re.MULTILINE)
    assert match, "cf/__init__.py defines no __version__"
    return match.group(1)


def test_the_wheel_holds_cf_with_its_data_files_and_no_analysis_package(built: Built) -> None:
    cf_version = version_of_source(built.source)
    assert built.wheel.name == f"cf_template-{cf_version}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
        metadata = wheel.read(f"cf_template-{cf_version}.dist-info/METADATA").decode()
    assert {name.split("/", 1)[0] for name in names} == {"cf", f"cf_template-{cf_version}.dist-info"}
    # every file of the framework (modules and data files such as the batch bootstrap script), nothing else
    expected = {
        path.relative_to(built.source).as_posix() for path in (built.source / "cf").rglob("*") if path.is_file()
    }
    assert {"cf/__init__.py", "cf/tasks/base.py", "cf/tasks/remote_bootstrap.sh"} <= expected
    assert {name for name in names if name.startswith("cf/")} == expected
    assert all(not name.startswith(ANALYSIS_PACKAGES) for name in names)
    assert f"Name: {DISTRIBUTION}\n" in metadata
    assert f"Version: {cf_version}\n" in metadata


def test_the_installed_wheel_imports_from_another_directory(built: Built, tmp_path: Path) -> None:
    target = tmp_path / "site"
    run([*PIP, "install", *OFFLINE, "--target", str(target), str(built.wheel)])
    env = {**os.environ, "PYTHONPATH": str(target)}
    script = (
        "import os, cf, cf.tasks.base, cf.tasks.remote; "
        "print(cf.__file__, os.path.isfile(cf.tasks.remote.BOOTSTRAP_FILE))"
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = run([sys.executable, "-c", script], env=env, cwd=workdir)
    module_file, bootstrap_found = result.stdout.split()
    assert Path(module_file) == target / "cf" / "__init__.py"
    assert bootstrap_found == "True"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The normalized distribution name of a requirement such as ``"typing_extensions>=4.16"``."""
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match, f"not a requirement: '{requirement}'"
    return _normalized(match.group())


def test_pyproject_declares_every_package_cf_imports() -> None:
    project = pyproject()["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    declared = {requirement_name(requirement) for requirement in requirements}
    imported = top_level_imports(sorted((ROOT / "cf").rglob("*.py")), ROOT) - set(sys.stdlib_module_names) - {"cf"}
    distributions = packages_distributions()
    undeclared = {
        module: distributions.get(module, ["(not installed)"])
        for module in sorted(imported)
        if not declared & {_normalized(name) for name in distributions.get(module, [])}
    }
    assert undeclared == {}
    assert {"law", "order", "awkward", "uproot"} <= declared
