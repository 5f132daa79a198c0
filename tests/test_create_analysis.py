"""Tests of ``cf_create_analysis``: forking the template into a new, working analysis.

The fast tests check the command's input validation and the copy rules on small synthetic templates. The slow
end-to-end test forks this repository into ``hbt``, sources the fork's ``setup.sh`` in a clean environment that
reuses the already-built venvs, and runs ``law index``, a ``law run --print-output`` and the fork's quick tests.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from cf.create_analysis import TEMPLATE_NAME, CreateAnalysisError, create_analysis

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ROOT / "bin" / "cf_create_analysis"

#: Hermetic quick tests run inside the fork (those that exist); the config tests are required.
FORK_REQUIRED_TESTS = ("tests/test_config.py",)
FORK_OPTIONAL_TESTS = ("tests/test_columnar_util.py", "tests/test_functions.py")
QUICK_MARKERS = "not slow and not sandbox and not network and not slurm"
STEP_TIMEOUT = 300.0


def run_command(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``bin/cf_create_analysis ARGS...`` (captured text output, no check)."""
    return subprocess.run(
        ["bash", str(COMMAND), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def git(*args: str, cwd: Path) -> str:
    """``git ARGS...`` in ``cwd`` with a fixed identity; returns stdout, fails the test on an error."""
    result = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def assert_single_clean_commit(path: Path) -> None:
    assert git("rev-list", "--count", "HEAD", cwd=path).strip() == "1"
    assert git("status", "--porcelain", "--untracked-files=all", cwd=path) == ""


def make_template(root: Path) -> Path:
    """A small template with the cases the copy rules distinguish (not a git checkout)."""
    files = {
        f"{TEMPLATE_NAME}/__init__.py": f'"""The {TEMPLATE_NAME} package."""\n',
        f"{TEMPLATE_NAME}/config/{TEMPLATE_NAME}_config.py": f"from {TEMPLATE_NAME} import config\n",
        "law.cfg": f"[analysis]\ndefault_analysis: {TEMPLATE_NAME}.config.analysis.{TEMPLATE_NAME}\n",
        "setup.sh": 'export ANALYSIS_TEMPLATE_BASE="$PWD"\n',
        "bin/run": f"#!/usr/bin/env bash\necho {TEMPLATE_NAME}\n",
        "data/store/output.txt": f"{TEMPLATE_NAME}\n",
        ".law/index": f"{TEMPLATE_NAME}\n",
        f"{TEMPLATE_NAME}/__pycache__/__init__.cpython-311.pyc": "cache\n",
        "docs/_build/index.html": f"{TEMPLATE_NAME}\n",
        "docs/index.md": f"# {TEMPLATE_NAME}\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "bin" / "run").chmod(0o755)
    (root / "logo.bin").write_bytes(b"\x89PNG\x00\x01" + TEMPLATE_NAME.encode() + b"\x00")
    (root / "docs" / "package").symlink_to(f"../{TEMPLATE_NAME}")
    return root


def listing(path: Path) -> set[str]:
    """All paths below ``path`` except the git metadata, relative and POSIX."""
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if ".git" not in p.relative_to(path).parts}


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return make_template(tmp_path / "template")


@pytest.fixture
def git_template(template: Path) -> Path:
    """The small template as a git checkout with ignored, untracked and deleted-but-tracked files."""
    (template / ".gitignore").write_text("/data/\n/.law/\n__pycache__/\n/docs/_build/\n*.log\n")
    (template / "tracked_then_deleted.txt").write_text("x\n")
    git("init", "-q", cwd=template)
    git("add", "-A", cwd=template)
    git("commit", "-q", "-m", "template", cwd=template)
    (template / "tracked_then_deleted.txt").unlink()
    (template / "untracked.py").write_text(f"import {TEMPLATE_NAME}\n")
    (template / "ignored.log").write_text("log\n")
    # this command's own files are template-only, also when the template is a git checkout
    for name in ("bin/cf_create_analysis", "cf/create_analysis.py", "tests/test_create_analysis.py"):
        (template / name).parent.mkdir(parents=True, exist_ok=True)
        (template / name).write_text(f"{TEMPLATE_NAME}\n")
    return template


# --- the command line: bad input is refused and nothing is written ---


@pytest.mark.parametrize(
    ("name", "short_name", "message"),
    [
        ("1hbt", "hbt", "invalid analysis name '1hbt'"),
        ("h-bt", "hbt", "invalid analysis name 'h-bt'"),
        ("hbt ana", "hbt", "invalid analysis name 'hbt ana'"),
        ("", "hbt", "invalid analysis name ''"),
        ("class", "hbt", "Python keyword"),
        ("cf", "hbt", "'cf': it is reserved"),
        ("ml", "hbt", "'ml': it is reserved"),
        ("inference", "hbt", "'inference': it is reserved"),
        ("tests", "hbt", "'tests': it is reserved"),
        ("docs", "hbt", "'docs': it is reserved"),
        ("sandboxes", "hbt", "'sandboxes': it is reserved"),
        ("law", "hbt", "'law': it is reserved"),
        ("json", "hbt", "'json': it is reserved"),
        (TEMPLATE_NAME, "hbt", "must not contain the template's name"),
        ("my_analysis_template", "hbt", "must not contain the template's name"),
        ("hbt", "h-bt", "invalid short name 'h-bt'"),
        ("hbt", "2hbt", "invalid short name '2hbt'"),
        ("hbt", "", "invalid short name ''"),
        ("hbt", "import", "invalid short name 'import': it is a Python keyword"),
        ("hbt", "cf", "its prefix 'CF_'"),
    ],
)
def test_bad_names_are_refused(tmp_path: Path, name: str, short_name: str, message: str) -> None:
    target = tmp_path / "new"
    result = run_command(name, "--short-name", short_name, "--target", str(target))
    assert result.returncode == 2, result.stderr
    assert "cf_create_analysis: error:" in result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_existing_target_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "hbt"
    target.mkdir()
    (target / "mine.txt").write_text("keep me\n")
    result = run_command("hbt", "--short-name", "hbt", "--target", str(target))
    assert result.returncode == 2
    assert f"the target '{target}' already exists" in result.stderr
    assert listing(target) == {"mine.txt"}
    assert (target / "mine.txt").read_text() == "keep me\n"
    assert [p.name for p in tmp_path.iterdir()] == ["hbt"]  # no temporary directory left behind


def test_existing_file_or_dangling_link_as_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "link").symlink_to(tmp_path / "missing")
    for name in ("file", "link"):
        result = run_command("hbt", "--short-name", "hbt", "--target", str(tmp_path / name))
        assert result.returncode == 2
        assert f"'{tmp_path / name}' already exists" in result.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"file", "link"}


def test_missing_parent_directory_is_refused(tmp_path: Path) -> None:
    result = run_command("hbt", "--short-name", "hbt", "--target", str(tmp_path / "missing" / "hbt"))
    assert result.returncode == 2
    assert f"parent directory '{tmp_path / 'missing'}' does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_short_name_is_required_and_help_explains_it(tmp_path: Path) -> None:
    result = run_command("hbt", "--target", str(tmp_path / "hbt"))
    assert result.returncode == 2
    assert "--short-name" in result.stderr
    assert list(tmp_path.iterdir()) == []
    help_text = run_command("--help").stdout
    assert "usage: cf_create_analysis" in help_text
    assert "--short-name X" in help_text
    assert "--target DIR" in help_text


def test_command_ignores_a_foreign_cf_package_in_the_working_directory(tmp_path: Path) -> None:
    # python runs isolated: a "cf" package in the current directory must not replace the template's
    (tmp_path / "cf").mkdir()
    (tmp_path / "cf" / "__init__.py").write_text("raise RuntimeError('foreign cf imported')\n")
    result = run_command("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr


# --- the copy rules, on a small template ---


def test_copy_renames_paths_and_text_and_skips_data_caches_and_binaries(template: Path, tmp_path: Path) -> None:
    target = tmp_path / "hbt"
    created = create_analysis("hbt", "xy", target=target, template=template)
    assert created.path == target
    assert listing(target) == {
        "hbt",
        "hbt/__init__.py",
        "hbt/config",
        "hbt/config/hbt_config.py",
        "law.cfg",
        "setup.sh",
        "bin",
        "bin/run",
        "docs",
        "docs/index.md",
        "docs/package",
        "logo.bin",
    }
    assert (target / "law.cfg").read_text() == "[analysis]\ndefault_analysis: hbt.config.analysis.hbt\n"
    assert (target / "hbt/config/hbt_config.py").read_text() == "from hbt import config\n"
    # the upper-case form is the analysis-specific environment prefix: it takes the short name
    assert (target / "setup.sh").read_text() == 'export XY_BASE="$PWD"\n'
    assert os.readlink(target / "docs/package") == "../hbt"
    assert (target / "bin/run").stat().st_mode & stat.S_IXUSR
    # binary files are copied byte for byte and reported
    assert (target / "logo.bin").read_bytes() == (template / "logo.bin").read_bytes()
    assert created.skipped_binary == ("logo.bin",)
    assert (created.n_files, created.n_renamed) == (8, 2)
    assert_single_clean_commit(target)
    assert "short name xy" in git("log", "-1", "--format=%B", cwd=target)
    # the template is untouched and nothing but the target was created next to it
    assert (template / "data/store/output.txt").is_file()
    assert {p.name for p in tmp_path.iterdir()} == {"template", "hbt"}


def test_git_template_copies_tracked_and_untracked_but_not_ignored_files(git_template: Path, tmp_path: Path) -> None:
    target = tmp_path / "hbt"
    create_analysis("hbt", "hbt", target=target, template=git_template)
    files = listing(target)
    assert "untracked.py" in files
    assert (target / "untracked.py").read_text() == "import hbt\n"
    assert ".gitignore" in files
    for absent in ("ignored.log", "data", ".law", "docs/_build", "tracked_then_deleted.txt"):
        assert absent not in files
    # the command's own files stay in the template
    for absent in ("bin/cf_create_analysis", "cf/create_analysis.py", "tests/test_create_analysis.py"):
        assert absent not in files
    assert_single_clean_commit(target)


def test_failure_leaves_nothing_at_the_target(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cf.create_analysis as module

    def broken_init(*args: object) -> None:
        raise CreateAnalysisError("git broke", usage=False)

    monkeypatch.setattr(module, "_init_repository", broken_init)
    with pytest.raises(CreateAnalysisError, match="git broke"):
        create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=template)
    assert {p.name for p in tmp_path.iterdir()} == {"template"}


def test_a_target_that_appears_while_creating_is_kept(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cf.create_analysis as module

    target = tmp_path / "hbt"
    original_init = module._init_repository

    def init_and_race(path: Path, *args: str) -> None:
        original_init(path, *args)
        target.mkdir()  # another process takes the name meanwhile
        (target / "theirs.txt").write_text("theirs\n")

    monkeypatch.setattr(module, "_init_repository", init_and_race)
    with pytest.raises(CreateAnalysisError, match="appeared while creating"):
        create_analysis("hbt", "hbt", target=target, template=template)
    assert listing(target) == {"theirs.txt"}
    assert {p.name for p in tmp_path.iterdir()} == {"template", "hbt"}


def test_default_target_is_next_to_the_template(template: Path, tmp_path: Path) -> None:
    created = create_analysis("hbt", "hbt", template=template)
    assert created.path == tmp_path / "hbt"
    assert (tmp_path / "hbt" / "hbt" / "__init__.py").is_file()


def test_paths_that_would_collide_are_refused(template: Path, tmp_path: Path) -> None:
    (template / "notes").mkdir()
    (template / "notes" / f"{TEMPLATE_NAME}.md").write_text("a\n")
    (template / "notes" / "hbt.md").write_text("b\n")
    with pytest.raises(CreateAnalysisError, match=r"would both become 'notes/hbt\.md'"):
        create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=template)
    assert {p.name for p in tmp_path.iterdir()} == {"template"}


def test_target_inside_the_template_is_refused(template: Path) -> None:
    with pytest.raises(CreateAnalysisError, match="inside the template"):
        create_analysis("hbt", "hbt", target=template / "docs" / "hbt", template=template)
    assert not (template / "docs" / "hbt").exists()


def test_template_package_names_are_reserved(template: Path, tmp_path: Path) -> None:
    (template / "plotting").mkdir()
    (template / "plotting" / "__init__.py").write_text("")
    with pytest.raises(CreateAnalysisError, match="'plotting': it is reserved"):
        create_analysis("plotting", "pl", target=tmp_path / "plotting", template=template)
    assert {p.name for p in tmp_path.iterdir()} == {"template"}


def test_commit_works_without_a_configured_git_identity(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_config = tmp_path / "gitconfig"
    empty_config.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty_config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    target = tmp_path / "hbt"
    create_analysis("hbt", "hbt", target=target, template=template)
    assert (
        git("log", "-1", "--format=%an <%ae>", cwd=target).strip()
        == "cf_create_analysis <cf_create_analysis@localhost>"
    )


# --- end to end: fork this repository and use the fork ---


def clean_env(software: Path) -> dict[str, str]:
    """A minimal environment (like ``env -i``) with the presets that reuse the built venvs, nothing else.

    A rebuild would fail fast instead of downloading (``PIP_NO_INDEX``), and could only replace the links in
    ``software``, never the real venvs.
    """
    return {
        "HOME": os.environ.get("HOME", "/tmp"),
        "PATH": "/usr/bin:/bin",
        "CF_PYTHON": sys.executable,
        "CF_SOFTWARE_BASE": str(software),
        "CF_VENV_BASE": str(software / "venvs"),
        "PIP_NO_INDEX": "1",
    }


def fork_shell(analysis: Path, env: Mapping[str, str], command: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``bash -c 'source setup.sh && COMMAND'`` in ``analysis``; returns the result and its wall time."""
    start = time.perf_counter()
    result = subprocess.run(
        ["bash", "-c", f"source setup.sh && {command}"],
        cwd=analysis,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, (
        f"'{command}' in the fork exited with {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n"
        f"--- stderr ---\n{result.stderr[-4000:]}"
    )
    return result, seconds


@pytest.mark.slow
def test_forked_analysis_sets_up_indexes_and_passes_its_tests(tmp_path: Path) -> None:
    venv_base = Path(os.environ.get("CF_VENV_BASE", ""))
    if not os.environ.get("CF_VENV_BASE") or not (venv_base / "cf" / "cf_venv.hash").is_file():
        pytest.skip("no built base venv: run the tests after 'source setup.sh'")
    # the fork reuses the built venvs through links, so that even a wrongly triggered rebuild cannot touch them
    software = tmp_path / "software"
    (software / "venvs").mkdir(parents=True)
    for venv in venv_base.iterdir():
        if venv.is_dir() and not venv.name.startswith("."):
            (software / "venvs" / venv.name).symlink_to(venv.resolve())

    analysis = tmp_path / "hbt"
    start = time.perf_counter()
    result = run_command("hbt", "--short-name", "hbt", "--target", str(analysis))
    create_seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert f"created analysis 'hbt' in {analysis}" in result.stdout
    assert (analysis / "hbt" / "config" / "analysis.py").is_file()
    assert not (analysis / TEMPLATE_NAME).exists()
    assert_single_clean_commit(analysis)

    grep = subprocess.run(
        ["grep", "-ri", "--exclude-dir=.git", TEMPLATE_NAME, str(analysis)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert grep.returncode == 1, f"'{TEMPLATE_NAME}' is left in the fork:\n{grep.stdout}"

    env = clean_env(software)
    setup, setup_seconds = fork_shell(
        analysis,
        env,
        'echo "CF_BASE=$CF_BASE"; echo "CF_DATA=$CF_DATA"; echo "CF_STORE_LOCAL=$CF_STORE_LOCAL"; '
        'echo "LAW_HOME=$LAW_HOME"; echo "LAW_CONFIG_FILE=$LAW_CONFIG_FILE"; echo "PYTHONPATH=$PYTHONPATH"; '
        'echo "VIRTUAL_ENV=$VIRTUAL_ENV"',
    )
    assert "building venv" not in setup.stdout + setup.stderr
    assert (software / "venvs" / "cf").is_symlink(), "the fork's setup rebuilt the base venv"
    values = dict(line.split("=", 1) for line in setup.stdout.splitlines() if "=" in line)
    assert values == {
        "CF_BASE": str(analysis),
        "CF_DATA": str(analysis / "data"),
        "CF_STORE_LOCAL": str(analysis / "data" / "store"),
        "LAW_HOME": str(analysis / ".law"),
        "LAW_CONFIG_FILE": str(analysis / "law.cfg"),
        "PYTHONPATH": str(analysis),
        "VIRTUAL_ENV": str(software / "venvs" / "cf"),
    }

    index, _ = fork_shell(analysis, env, "law index --verbose")
    for task in ("cf.ProduceColumns", "cf.MLTraining"):
        assert f"- {task}" in index.stdout

    # resolving the parameters imports the renamed analysis object and column-function modules of law.cfg
    output, _ = fork_shell(analysis, env, "law run cf.ProduceColumns --version v1 --print-output 0")
    store = analysis / "data" / "store" / "hbt" / "cf.ProduceColumns"
    assert f"file://{store}/" in output.stdout

    tests = [*FORK_REQUIRED_TESTS, *(name for name in FORK_OPTIONAL_TESTS if (analysis / name).is_file())]
    pytest_run, tests_seconds = fork_shell(
        analysis,
        env,
        f"python -m pytest -q -p no:cacheprovider --basetemp={tmp_path / 'fork_pytest'} -m '{QUICK_MARKERS}' "
        + " ".join(tests),
    )
    assert " passed" in pytest_run.stdout
    assert " failed" not in pytest_run.stdout

    # what the fork's setup and tasks wrote is ignored by its git
    assert git("status", "--porcelain", cwd=analysis) == ""
    print(f"create {create_seconds:.2f} s, setup {setup_seconds:.2f} s, quick tests {tests_seconds:.2f} s")
    shutil.rmtree(analysis, ignore_errors=True)
