"""Tests of ``cf_create_analysis``: forking the template into a new, working analysis that shares its history.

The fast tests check the command's input validation, the renaming rules and the fork's git history on small
synthetic templates (git repositories), and that a framework change committed to a clone of this repository
merges into a fork of it without conflicts. The slow end-to-end test forks this repository into ``hbt``, sources
the fork's ``setup.sh`` in a clean environment that reuses the already-built venvs, and runs ``law index``, a
``law run --print-output`` and the fork's quick tests.
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

from cf.create_analysis import COMMAND_FILES, TEMPLATE_NAME, UPSTREAM, CreateAnalysisError, create_analysis

ROOT = Path(__file__).resolve().parent.parent
COMMAND = ROOT / "bin" / "cf_create_analysis"

#: Hermetic quick tests run inside the fork (those that exist); the config tests are required.
FORK_REQUIRED_TESTS = ("tests/test_config.py",)
FORK_OPTIONAL_TESTS = ("tests/test_columnar_util.py", "tests/test_functions.py")
QUICK_MARKERS = "not slow and not sandbox and not network and not slurm"
STEP_TIMEOUT = 300.0
#: The tests that fork this repository need the template; in a fork (no analysis package) they skip.
needs_template_checkout = pytest.mark.skipif(
    not (ROOT / TEMPLATE_NAME).is_dir(), reason="this checkout is a fork, not the template"
)


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


def commit_all(repository: Path, message: str = "template") -> str:
    """Commit every change and untracked, not ignored file of ``repository``; returns the new HEAD commit."""
    git("add", "-A", cwd=repository)
    git("commit", "-q", "-m", message, cwd=repository)
    return git("rev-parse", "HEAD", cwd=repository).strip()


def assert_fork_of(path: Path, template: str, base: str) -> None:
    """``path`` is a clean fork: branch main, one renaming commit on ``base``, remote upstream at ``template``.

    The renaming commit leaves the framework ``cf/`` and the command's own files unchanged.
    """
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=path).strip() == "main"
    assert git("rev-list", "--parents", "-n", "1", "HEAD", cwd=path).split()[1:] == [base]
    assert f"{UPSTREAM}\t{template} (fetch)" in git("remote", "-v", cwd=path)
    assert git("status", "--porcelain", "--untracked-files=all", cwd=path) == ""
    untouched = git("diff", "--name-only", "HEAD^", "HEAD", "--", "cf", *COMMAND_FILES, cwd=path)
    assert untouched == "", f"the renaming commit changed the framework or the command:\n{untouched}"
    # no tracking branch: a plain "git push" must not go to the template
    tracking = subprocess.run(
        ["git", "config", "--get", "branch.main.remote"], cwd=path, capture_output=True, check=False
    )
    assert tracking.returncode == 1, f"the fork's main tracks a remote: {tracking.stdout!r}"


def write_template_files(root: Path) -> Path:
    """The files of a small template with the cases the renaming distinguishes (no git repository yet)."""
    files = {
        ".gitignore": "/data/\n/.law/\n__pycache__/\n/docs/_build/\n*.log\n",
        f"{TEMPLATE_NAME}/__init__.py": f'"""The {TEMPLATE_NAME} package."""\n',
        f"{TEMPLATE_NAME}/config/{TEMPLATE_NAME}_config.py": f"from {TEMPLATE_NAME} import config\n",
        "law.cfg": f"[analysis]\ndefault_analysis: {TEMPLATE_NAME}.config.analysis.{TEMPLATE_NAME}\n",
        "setup.sh": 'export ANALYSIS_TEMPLATE_BASE="$PWD"\n',
        "bin/run": f"#!/usr/bin/env bash\necho {TEMPLATE_NAME}\n",
        "cf/__init__.py": f'"""The framework; e.g. $CF_BASE/{TEMPLATE_NAME}/corrections."""\n',
        "data/store/output.txt": f"{TEMPLATE_NAME}\n",
        ".law/index": f"{TEMPLATE_NAME}\n",
        f"{TEMPLATE_NAME}/__pycache__/__init__.cpython-311.pyc": "cache\n",
        "docs/_build/index.html": f"{TEMPLATE_NAME}\n",
        "docs/index.md": f"# {TEMPLATE_NAME}\n",
    }
    files.update(dict.fromkeys(COMMAND_FILES, f"{TEMPLATE_NAME} ANALYSIS_TEMPLATE\n"))
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "bin" / "run").chmod(0o755)
    (root / "logo.bin").write_bytes(b"\x89PNG\x00\x01" + TEMPLATE_NAME.encode() + b"\x00")
    (root / "docs" / "package").symlink_to(f"../{TEMPLATE_NAME}")
    return root


def make_template(root: Path) -> Path:
    """The small template as a git repository: everything committed but the ignored data, caches and builds."""
    write_template_files(root)
    git("init", "-q", "--initial-branch=main", cwd=root)
    commit_all(root)
    return root


def head(repository: Path) -> str:
    return git("rev-parse", "HEAD", cwd=repository).strip()


def listing(path: Path) -> set[str]:
    """All paths below ``path`` except the git metadata, relative and POSIX."""
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if ".git" not in p.relative_to(path).parts}


@pytest.fixture
def template(tmp_path: Path) -> Path:
    return make_template(tmp_path / "template")


@pytest.fixture
def dirty_template(template: Path) -> Path:
    """The small template with uncommitted work: a deleted tracked file, a changed one, untracked files."""
    (template / "tracked_then_deleted.txt").write_text("x\n")
    commit_all(template, "a file deleted later")
    (template / "tracked_then_deleted.txt").unlink()
    (template / "law.cfg").write_text("[analysis]\n# changed, not committed\n")
    (template / "untracked.py").write_text(f"import {TEMPLATE_NAME}\n")
    (template / "ignored.log").write_text("log\n")
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


# --- the renaming rules and the history, on a small template ---


def test_fork_renames_paths_and_text_on_top_of_the_template_history(template: Path, tmp_path: Path) -> None:
    target = tmp_path / "hbt"
    created = create_analysis("hbt", "xy", target=target, template=template)
    assert created.path == target
    assert listing(target) == {
        ".gitignore",
        "hbt",
        "hbt/__init__.py",
        "hbt/config",
        "hbt/config/hbt_config.py",
        "law.cfg",
        "setup.sh",
        "bin",
        "bin/run",
        "bin/cf_create_analysis",
        "cf",
        "cf/__init__.py",
        "cf/create_analysis.py",
        "docs",
        "docs/index.md",
        "docs/package",
        "logo.bin",
        "tests",
        "tests/test_create_analysis.py",
    }
    assert (target / "law.cfg").read_text() == "[analysis]\ndefault_analysis: hbt.config.analysis.hbt\n"
    assert (target / "hbt/config/hbt_config.py").read_text() == "from hbt import config\n"
    # the upper-case form is the analysis-specific environment prefix: it takes the short name
    assert (target / "setup.sh").read_text() == 'export XY_BASE="$PWD"\n'
    assert os.readlink(target / "docs/package") == "../hbt"
    assert (target / "bin/run").stat().st_mode & stat.S_IXUSR
    # the framework and the command's own files are the template's, byte for byte
    for name in ("cf/__init__.py", *COMMAND_FILES):
        assert (target / name).read_bytes() == (template / name).read_bytes(), name
    # binary files are left unchanged and reported
    assert (target / "logo.bin").read_bytes() == (template / "logo.bin").read_bytes()
    assert created.skipped_binary == ("logo.bin",)
    assert (created.n_files, created.n_renamed) == (13, 2)
    # the history: the template's HEAD plus one renaming commit, the template as remote upstream
    assert (created.base, created.upstream, created.upstream_branch) == (head(template), str(template), "main")
    assert not created.uncommitted
    assert_fork_of(target, str(template), head(template))
    assert "short name xy" in git("log", "-1", "--format=%B", cwd=target)
    # the template is untouched and nothing but the target was created next to it
    assert git("status", "--porcelain", cwd=template) == ""
    assert (template / "data/store/output.txt").is_file()
    assert {p.name for p in tmp_path.iterdir()} == {"template", "hbt"}


def test_fork_is_made_from_the_committed_head_only(dirty_template: Path, tmp_path: Path) -> None:
    target = tmp_path / "hbt"
    created = create_analysis("hbt", "hbt", target=target, template=dirty_template)
    assert created.uncommitted
    files = listing(target)
    assert "tracked_then_deleted.txt" in files  # committed: its deletion is not
    assert (target / "law.cfg").read_text() == "[analysis]\ndefault_analysis: hbt.config.analysis.hbt\n"
    for absent in ("untracked.py", "ignored.log", "data", ".law", "docs/_build"):
        assert absent not in files
    assert_fork_of(target, str(dirty_template), head(dirty_template))


def test_command_reports_the_upstream_the_upgrade_and_uncommitted_work(dirty_template: Path, tmp_path: Path) -> None:
    target = tmp_path / "hbt"
    result = run_command("hbt", "-s", "hbt", "--target", str(target), "--template", str(dirty_template))
    assert result.returncode == 0, result.stderr
    assert f"remote 'upstream': {dirty_template}" in result.stdout
    assert "framework updates: git pull --no-rebase upstream main" in result.stdout
    base = head(dirty_template)[:12]
    assert f"has uncommitted changes or untracked files; the fork is made from its last commit {base}" in result.stderr
    assert "git has no user.name" not in result.stderr


def test_template_can_be_a_git_url(template: Path, tmp_path: Path) -> None:
    url = f"file://{template}"
    created = create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=url)
    assert (created.upstream, created.upstream_branch, created.uncommitted) == (url, "main", False)
    assert_fork_of(created.path, url, head(template))


def test_fork_of_a_detached_template_starts_at_its_head(template: Path, tmp_path: Path) -> None:
    git("checkout", "-q", "--detach", cwd=template)
    (template / "docs" / "index.md").write_text("# detached\n")
    detached = commit_all(template, "a commit on no branch")
    created = create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=template)
    assert (created.base, created.upstream_branch) == (detached, None)
    assert_fork_of(created.path, str(template), detached)
    assert (created.path / "docs" / "index.md").read_text() == "# detached\n"


def largest_renamed_module(template: Path) -> str:
    """The largest Python file of the template's analysis package that names the package (the fork rewrites it)."""
    modules = git("ls-files", "--", f"{TEMPLATE_NAME}/*.py", cwd=template).split()
    named = [name for name in modules if TEMPLATE_NAME in (template / name).read_text()]
    assert named, f"no module of {TEMPLATE_NAME} names the package"
    return max(named, key=lambda name: (template / name).stat().st_size)


@needs_template_checkout
def test_framework_update_merges_into_a_fork_without_conflicts(tmp_path: Path) -> None:
    template = tmp_path / "template"
    git("clone", "-q", str(ROOT), str(template), cwd=tmp_path)
    # a checkout at a detached HEAD (a CI checkout of one commit, a git worktree) clones without a branch
    git("checkout", "-q", "-B", "main", cwd=template)
    created = create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=template)
    fork = created.path
    assert_fork_of(fork, str(template), head(template))
    # the template changes a framework file and an analysis file that the fork renamed and rewrote
    framework_file = template / "cf" / "__init__.py"
    framework_file.write_text(framework_file.read_text() + "# a framework update\n")
    analysis_file = largest_renamed_module(template)
    (template / analysis_file).write_text((template / analysis_file).read_text() + "# a template update\n")
    update = commit_all(template, "framework update")

    git("pull", "-q", "--no-rebase", "--no-ff", "--no-edit", UPSTREAM, str(created.upstream_branch), cwd=fork)
    assert git("diff", "--name-only", "--diff-filter=U", cwd=fork) == ""
    assert git("status", "--porcelain", cwd=fork) == ""
    assert git("rev-list", "--parents", "-n", "1", "HEAD", cwd=fork).split()[2] == update  # a merge commit
    assert git("diff", "--name-only", "HEAD", update, "--", "cf", cwd=fork) == ""  # the framework is upstream's
    assert (fork / "cf" / "__init__.py").read_text().endswith("# a framework update\n")
    renamed = fork / analysis_file.replace(TEMPLATE_NAME, "hbt")
    assert renamed.read_text().endswith("# a template update\n")
    assert f"from {TEMPLATE_NAME}" not in renamed.read_text()


def test_template_without_git_is_refused(tmp_path: Path) -> None:
    template = write_template_files(tmp_path / "template")
    with pytest.raises(CreateAnalysisError, match="is not the top of a git repository; a fork shares the template"):
        create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=template)
    missing = tmp_path / "missing"
    with pytest.raises(CreateAnalysisError, match=f"the template '{missing}' does not exist"):
        create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=missing)
    assert {p.name for p in tmp_path.iterdir()} == {"template"}


def test_subdirectory_of_a_template_is_refused(template: Path, tmp_path: Path) -> None:
    with pytest.raises(CreateAnalysisError, match="is not the top of a git repository"):
        create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=template / TEMPLATE_NAME)
    assert {p.name for p in tmp_path.iterdir()} == {"template"}


def test_a_fork_is_no_template(template: Path, tmp_path: Path) -> None:
    fork = create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=template).path
    with pytest.raises(CreateAnalysisError, match=f"is no analysis template: .* has no '{TEMPLATE_NAME}' package"):
        create_analysis("zz", "zz", target=tmp_path / "zz", template=fork)
    assert {p.name for p in tmp_path.iterdir()} == {"template", "hbt"}


def test_failure_leaves_nothing_at_the_target(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cf.create_analysis as module

    def broken_commit(*args: object) -> bool:
        raise CreateAnalysisError("git broke", usage=False)

    monkeypatch.setattr(module, "_commit_rename", broken_commit)
    with pytest.raises(CreateAnalysisError, match="git broke"):
        create_analysis("hbt", "hbt", target=tmp_path / "hbt", template=template)
    assert {p.name for p in tmp_path.iterdir()} == {"template"}


def test_a_target_that_appears_while_creating_is_kept(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cf.create_analysis as module

    target = tmp_path / "hbt"
    original_commit = module._commit_rename

    def commit_and_race(path: Path, message: str) -> bool:
        fallback = original_commit(path, message)
        target.mkdir()  # another process takes the name meanwhile
        (target / "theirs.txt").write_text("theirs\n")
        return fallback

    monkeypatch.setattr(module, "_commit_rename", commit_and_race)
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
    commit_all(template)
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
    commit_all(template)
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
    result = run_command("hbt", "-s", "hbt", "--target", str(target), "--template", str(template))
    assert result.returncode == 0, result.stderr
    fallback = "cf_create_analysis <cf_create_analysis@localhost>"
    assert f"git has no user.name / user.email configured: the renaming commit is authored by {fallback}" in (
        result.stderr
    )
    assert git("log", "-1", "--format=%an <%ae>", cwd=target).strip() == fallback
    # only the one commit: the fork's configuration gets no identity
    assert "user." not in git("config", "--local", "--list", cwd=target)


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
@needs_template_checkout
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
    template_head = head(ROOT)  # others may commit meanwhile: the fork starts here or later
    start = time.perf_counter()
    result = run_command("hbt", "--short-name", "hbt", "--target", str(analysis))
    create_seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert f"created analysis 'hbt' in {analysis}" in result.stdout
    assert "framework updates: git pull --no-rebase upstream" in result.stdout
    assert (analysis / "hbt" / "config" / "analysis.py").is_file()
    assert not (analysis / TEMPLATE_NAME).exists()
    base = git("rev-parse", "HEAD^", cwd=analysis).strip()
    assert_fork_of(analysis, str(ROOT), base)
    git("merge-base", "--is-ancestor", template_head, base, cwd=analysis)

    # the name is left only in the framework (never renamed, see test_framework_update_merges...) and the command
    grep = subprocess.run(
        [
            "grep",
            "-ri",
            "--exclude-dir=.git",
            "--exclude-dir=cf",
            *(f"--exclude={Path(name).name}" for name in COMMAND_FILES),
            TEMPLATE_NAME,
            str(analysis),
        ],
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
