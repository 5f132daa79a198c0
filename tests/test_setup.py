"""Tests of ``setup.sh`` and the venv scripts in ``sandboxes/``, run in fresh shells.

Nothing is built: the real base venv must be up to date (else the tests skip), and the venv-script tests use
temporary requirement files and venv directories whose builds fail fast on purpose (a missing python).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

#: The variables that ``source setup.sh`` exports.
SETUP_VARIABLES = (
    "CF_BASE", "CF_DATA", "CF_SOFTWARE_BASE", "CF_VENV_BASE", "CF_STORE_LOCAL", "CF_JOB_BASE", "LAW_HOME",
    "LAW_CONFIG_FILE", "ARROW_DEFAULT_MEMORY_POOL", "PYTHONPATH", "VIRTUAL_ENV", "PATH",
)  # fmt: skip
#: A bash snippet printing those variables as NAME=value lines after a marker line.
PRINT_VARIABLES = "echo '--- env'; " + "; ".join(f'echo "{name}=${{{name}:-}}"' for name in SETUP_VARIABLES)


def _run(shell: str, script: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shell, "-c", script], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _variables(stdout: str) -> dict[str, str]:
    lines = stdout.split("--- env\n", 1)[1].splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def content_hash(*files: Path) -> str:
    """The hash _setup_venv.sh gives a venv: sha256 of the requirement files (includes after their includer)."""
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


@pytest.fixture(scope="module")
def cf_base() -> Path:
    base = os.environ.get("CF_BASE")
    if not base:
        pytest.skip("CF_BASE is not set: run the tests after 'source setup.sh'")
    return Path(base)


@pytest.fixture(scope="module")
def venv_base(cf_base: Path) -> Path:
    """The real venv base; skips if the cf venv is not built for the current requirements (sourcing would build)."""
    base = Path(os.environ.get("CF_VENV_BASE", cf_base / "data" / "software" / "venvs"))
    stored = base / "cf" / "cf_venv.hash"
    expected = content_hash(cf_base / "sandboxes" / "cf.txt", cf_base / "sandboxes" / "columnar.txt")
    if not stored.is_file() or stored.read_text().strip() != expected:
        pytest.skip(f"the cf venv in {base} is missing or outdated; 'source setup.sh' would (re)build it")
    return base


@pytest.fixture
def fresh_env(cf_base: Path, venv_base: Path) -> dict[str, str]:
    """``os.environ`` without anything setup.sh sets: no CF_* / LAW_* variables, no venv or cf bin on PATH.

    The real venv base is kept as a preset when it is not the default one, so that sourcing never builds.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CF_", "LAW_")) and key not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    drop = {str(cf_base / "bin"), str(venv_base / "cf" / "bin")}
    env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p not in drop)
    if venv_base != cf_base / "data" / "software" / "venvs":
        env["CF_VENV_BASE"] = str(venv_base)
    return env


@pytest.fixture
def law_home(cf_base: Path, tmp_path: Path) -> Path:
    """A temporary LAW_HOME holding a copy of the task index (so that sourcing does not touch the real one)."""
    home = tmp_path / "law_home"
    home.mkdir()
    index = cf_base / ".law" / "index"
    if index.is_file():
        shutil.copy2(index, home / "index")
    return home


# --------------------------------------------------------------------------------------------------------------------
# setup.sh
# --------------------------------------------------------------------------------------------------------------------


def test_executing_setup_fails_and_says_it_must_be_sourced(cf_base: Path, fresh_env: dict[str, str]) -> None:
    result = subprocess.run(
        ["bash", str(cf_base / "setup.sh")], env=fresh_env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "must be sourced" in result.stderr
    assert "source setup.sh" in result.stderr


def test_source_from_another_directory_sets_the_environment(
    cf_base: Path, venv_base: Path, fresh_env: dict[str, str], tmp_path: Path
) -> None:
    result = _run(
        "bash", f"source {cf_base}/setup.sh || exit 1; pwd; command -v law; {PRINT_VARIABLES}", fresh_env, tmp_path
    )
    assert result.returncode == 0, result.stderr
    cwd, law_path = result.stdout.splitlines()[:2]
    assert cwd == str(tmp_path)  # sourcing does not change the directory
    values = _variables(result.stdout)
    data = cf_base / "data"
    assert values["CF_BASE"] == str(cf_base)
    assert values["CF_DATA"] == str(data)
    if "CF_VENV_BASE" not in fresh_env:
        assert values["CF_SOFTWARE_BASE"] == str(data / "software")
        assert values["CF_VENV_BASE"] == str(data / "software" / "venvs")
    assert values["CF_STORE_LOCAL"] == str(data / "store")
    assert values["CF_JOB_BASE"] == str(data / "jobs")
    assert values["LAW_HOME"] == str(cf_base / ".law")
    assert values["LAW_CONFIG_FILE"] == str(cf_base / "law.cfg")
    assert values["ARROW_DEFAULT_MEMORY_POOL"] == "system"
    assert values["PYTHONPATH"] == str(cf_base)
    assert values["VIRTUAL_ENV"] == str(venv_base / "cf")
    path = values["PATH"].split(os.pathsep)
    assert path[:2] == [str(venv_base / "cf" / "bin"), str(cf_base / "bin")]
    assert law_path == str(venv_base / "cf" / "bin" / "law")


def test_preset_values_are_respected_and_resourcing_adds_no_duplicates(
    cf_base: Path, venv_base: Path, fresh_env: dict[str, str], law_home: Path, tmp_path: Path
) -> None:
    env = {
        **fresh_env,
        "CF_DATA": str(tmp_path / "data"),
        "CF_SOFTWARE_BASE": str(tmp_path / "software"),
        "CF_VENV_BASE": str(venv_base),
        "CF_JOB_BASE": str(tmp_path / "jobs"),
        "LAW_HOME": str(law_home),
        "PYTHONPATH": "/some/where",
        "ARROW_DEFAULT_MEMORY_POOL": "jemalloc",
    }
    script = f"source {cf_base}/setup.sh || exit 1; source {cf_base}/setup.sh || exit 1; {PRINT_VARIABLES}"
    result = _run("bash", script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    values = _variables(result.stdout)
    assert values["CF_DATA"] == str(tmp_path / "data")
    assert values["CF_SOFTWARE_BASE"] == str(tmp_path / "software")
    assert values["CF_VENV_BASE"] == str(venv_base)
    assert values["CF_STORE_LOCAL"] == str(tmp_path / "data" / "store")  # derived from the preset CF_DATA
    assert values["CF_JOB_BASE"] == str(tmp_path / "jobs")
    assert values["LAW_HOME"] == str(law_home)
    assert values["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"
    assert values["PYTHONPATH"] == f"{cf_base}:/some/where"
    path = values["PATH"].split(os.pathsep)
    assert path.count(str(cf_base / "bin")) == 1
    assert path.count(str(venv_base / "cf" / "bin")) == 1
    assert (law_home / "index").is_file()
    assert not (tmp_path / "data").exists()  # sourcing only exports paths, it creates no data directories


def test_warm_resource_is_fast(cf_base: Path, fresh_env: dict[str, str], law_home: Path, tmp_path: Path) -> None:
    env = {**fresh_env, "LAW_HOME": str(law_home)}
    script = (
        f"source {cf_base}/setup.sh || exit 1; start=$(date +%s.%N); source {cf_base}/setup.sh || exit 1; "
        'end=$(date +%s.%N); echo "$start $end"'
    )
    result = _run("bash", script, env, tmp_path)
    assert result.returncode == 0, result.stderr
    start, end = map(float, result.stdout.split()[-2:])
    # the warm path only hashes a few small files: no venv build, no 'law index'
    assert end - start < 2.0
    assert "building" not in result.stdout + result.stderr


def test_source_with_zsh(
    cf_base: Path, venv_base: Path, fresh_env: dict[str, str], law_home: Path, tmp_path: Path
) -> None:
    zsh = shutil.which("zsh")
    if zsh is None:
        pytest.skip("zsh is not installed")
    env = {**fresh_env, "LAW_HOME": str(law_home)}
    result = _run(zsh, f"source {cf_base}/setup.sh || exit 1; {PRINT_VARIABLES}", env, tmp_path)
    assert result.returncode == 0, result.stderr
    values = _variables(result.stdout)
    assert values["CF_BASE"] == str(cf_base)
    assert values["VIRTUAL_ENV"] == str(venv_base / "cf")
    executed = subprocess.run([zsh, str(cf_base / "setup.sh")], env=env, capture_output=True, text=True, check=False)
    assert executed.returncode != 0
    assert "must be sourced" in executed.stderr


def _fake_python(directory: Path, version: str = "3.8.10") -> Path:
    """A ``python3`` that reports an old version and fails the version check."""
    directory.mkdir(parents=True, exist_ok=True)
    python = directory / "python3"
    python.write_text(f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Python {version}"; exit 0; fi\nexit 1\n')
    python.chmod(0o755)
    return python


def test_setup_with_old_python_fails_cleanly(
    cf_base: Path, fresh_env: dict[str, str], law_home: Path, tmp_path: Path
) -> None:
    fake = _fake_python(tmp_path / "old_python")
    env = {**fresh_env, "LAW_HOME": str(law_home), "PATH": f"{fake.parent}:{fresh_env['PATH']}"}
    result = _run("bash", f'source {cf_base}/setup.sh; echo "rc=$? CF_BASE=${{CF_BASE:-}}"', env, tmp_path)
    assert result.stdout.strip().endswith("rc=1 CF_BASE=")  # fails before exporting anything
    assert "Python >= 3.10 is required, found 'Python 3.8.10'" in result.stderr
    # CF_PYTHON is the documented way out: it is the python that is checked (and that builds the venvs)
    env["CF_PYTHON"] = shutil.which("python3", path=fresh_env["PATH"]) or "python3"
    result = _run("bash", f'source {cf_base}/setup.sh; echo "rc=$?"', env, tmp_path)
    assert result.stdout.strip().endswith("rc=0"), result.stderr


# --------------------------------------------------------------------------------------------------------------------
# _setup_venv.sh and _build_venv.sh
# --------------------------------------------------------------------------------------------------------------------


def _setup_venv(
    cf_base: Path, tmp_path: Path, requirements: str, **extra: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Sources _setup_venv.sh for a fake sandbox ``fake`` in a temporary CF_VENV_BASE."""
    venv_base = tmp_path / "venvs"
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"CF_REINSTALL_SOFTWARE", "CF_PYTHON"}},
        "CF_BASE": str(cf_base),
        "CF_VENV_BASE": str(venv_base),
        "CF_VENV_NAME": "fake",
        "CF_VENV_REQUIREMENTS": requirements,
        **extra,
    }
    script = f'source {cf_base}/sandboxes/_setup_venv.sh; rc=$?; echo "rc=$rc VIRTUAL_ENV=$VIRTUAL_ENV"; exit $rc'
    return _run("bash", script, env, tmp_path), venv_base / "fake"


@pytest.fixture
def requirements(tmp_path: Path) -> tuple[Path, Path]:
    """A requirement file including another one with ``-r``."""
    directory = tmp_path / "reqs"
    directory.mkdir()
    main, included = directory / "main.txt", directory / "included.txt"
    main.write_text("# version 1\n-r included.txt\nsome-package==1.0\n")
    included.write_text("# version 3\nother-package==2.0\n")
    return main, included


def test_requirement_file_without_version_line_fails_before_installing(cf_base: Path, tmp_path: Path) -> None:
    requirement = tmp_path / "unversioned.txt"
    requirement.write_text("some-package==1.0\n")
    result, venv = _setup_venv(cf_base, tmp_path, str(requirement), CF_PYTHON="/nonexistent/python")
    assert result.returncode != 0
    assert f"requirement file '{requirement}' must start with a '# version N' line" in result.stderr
    assert "Python" not in result.stderr  # the build (with its python check) was never started
    assert not venv.parent.exists()


def test_included_file_without_version_line_fails(
    cf_base: Path, tmp_path: Path, requirements: tuple[Path, Path]
) -> None:
    main, included = requirements
    included.write_text("other-package==2.0\n")
    result, venv = _setup_venv(cf_base, tmp_path, str(main), CF_PYTHON="/nonexistent/python")
    assert result.returncode != 0
    assert f"requirement file '{included}' must start" in result.stderr
    assert not venv.parent.exists()


def test_missing_requirement_file_fails_before_installing(
    cf_base: Path, tmp_path: Path, requirements: tuple[Path, Path]
) -> None:
    main, _ = requirements
    missing = tmp_path / "missing.txt"
    # the missing file is not the last one of the list: the whole list fails anyway
    result, venv = _setup_venv(cf_base, tmp_path, f"{missing},{main}", CF_PYTHON="/nonexistent/python")
    assert result.returncode != 0
    assert f"requirement file '{missing}' does not exist" in result.stderr
    assert "Python" not in result.stderr
    assert not venv.parent.exists()


def test_content_hash_covers_included_files(cf_base: Path, tmp_path: Path, requirements: tuple[Path, Path]) -> None:
    main, included = requirements
    venv = tmp_path / "venvs" / "fake"
    (venv / "bin").mkdir(parents=True)
    old_hash = content_hash(main, included)
    (venv / "cf_venv.hash").write_text(old_hash + "\n")
    # an up-to-date venv is only activated (a trailing comma in the list is harmless)
    result, _ = _setup_venv(cf_base, tmp_path, f"{main},", CF_PYTHON="/nonexistent/python")
    assert result.returncode == 0, result.stderr
    assert f"VIRTUAL_ENV={venv}" in result.stdout
    assert result.stderr == ""
    # changing only the included file triggers a rebuild, which here fails fast on the missing python
    included.write_text("# version 3\nother-package==2.1\n")
    result, _ = _setup_venv(cf_base, tmp_path, str(main), CF_PYTHON="/nonexistent/python")
    assert result.returncode != 0
    assert f"Python >= 3.10 is required to build '{venv}', but '/nonexistent/python' is" in result.stderr
    assert (venv / "cf_venv.hash").read_text().strip() == old_hash  # the failed build did not touch the old venv
    assert (venv / "bin").is_dir()
    # an unchanged hash with CF_REINSTALL_SOFTWARE=1 rebuilds too
    (venv / "cf_venv.hash").write_text(content_hash(main, included) + "\n")
    result, _ = _setup_venv(cf_base, tmp_path, str(main), CF_PYTHON="/nonexistent/python", CF_REINSTALL_SOFTWARE="1")
    assert result.returncode != 0
    assert "Python >= 3.10 is required to build" in result.stderr


def test_build_venv_with_old_python_fails_cleanly(
    cf_base: Path, tmp_path: Path, requirements: tuple[Path, Path]
) -> None:
    main, _ = requirements
    venv = tmp_path / "venvs" / "fake"
    env = {**os.environ, "CF_PYTHON": "/bin/false"}
    result = subprocess.run(
        ["bash", str(cf_base / "sandboxes" / "_build_venv.sh"), str(venv), "0123456789abcdef", str(main)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cf: Python >= 3.10 is required to build '{venv}', but '/bin/false' is" in result.stderr
    assert not venv.exists()
    fake = _fake_python(tmp_path / "old_python")
    env["CF_PYTHON"] = str(fake)
    result = subprocess.run(
        ["bash", str(cf_base / "sandboxes" / "_build_venv.sh"), str(venv), "0123456789abcdef", str(main)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"but '{fake}' is Python 3.8.10" in result.stderr
    assert not venv.exists()


def test_venv_rebuilds_from_a_shell_where_it_is_active(cf_base: Path, tmp_path: Path) -> None:
    """After a requirement change, the python on PATH is the venv's own: the rebuild uses its base interpreter."""
    venv = tmp_path / "venvs" / "fake"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    requirements = tmp_path / "empty.txt"
    requirements.write_text("# version 1\n")
    env = {**os.environ, "CF_PYTHON": str(venv / "bin" / "python")}
    result = subprocess.run(
        ["bash", str(cf_base / "sandboxes" / "_build_venv.sh"), str(venv), "0123456789abcdef", str(requirements)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (venv / "cf_venv.hash").read_text().strip() == "0123456789abcdef"
    assert (venv / "bin" / "python").exists()
