"""Fork the template into a new analysis: ``cf_create_analysis NAME --short-name X [--target DIR] [--template SRC]``.

The new analysis (the fork) is a git repository that shares the template's history, so that framework updates
reach it by a merge, ``git pull --no-rebase upstream main`` (or ``git fetch upstream && git merge upstream/main``):

* History: the fork fetches the template as its remote ``upstream`` (a local repository, by default the checkout
  this module belongs to, or a git URL) and starts its branch ``main`` at the template's committed ``HEAD``. On
  top of it comes one commit that renames the analysis. Work not committed in the template is not part of the
  fork (the command warns when there is some); a template that is no git repository is refused.
* Renaming: in every tracked file outside ``cf/``, every path component and the content of every text file have
  ``analysis_template`` replaced by ``NAME`` (the package, law.cfg's module lists, imports, docs, tests and the
  order analysis object, whose name is also the top directory of the store; the framework's distribution name
  ``cf-template`` in pyproject.toml stays).
  ``ANALYSIS_TEMPLATE``, the upper-case form an analysis-specific environment variable prefix would take,
  becomes the upper-cased short name. Files with a NUL byte in their first 8000 bytes (git's binary heuristic)
  are left unchanged.
* Not renamed: the framework ``cf/`` and this command's own files (``bin/cf_create_analysis`` and its test). The
  renaming commit does not touch them, so that merging framework updates never conflicts there. (In a fork the
  command refuses to run on the fork itself: it has no ``analysis_template`` package.)
* Identity: the renaming commit is the user's; where git has no ``user.name`` or ``user.email`` configured, a
  fallback identity is set for this one commit only, and the command says so.
* Result: ``main`` has no tracking branch, so that a ``git push`` never goes to the template. The fork is built
  in a temporary sibling directory of the target and renamed into place at the end, so a failure leaves nothing
  at the target. An existing target is never overwritten.

Example:
    From a shell where the template's ``setup.sh`` was sourced (``bin/`` is on ``PATH``)::

        cf_create_analysis hbt --short-name hbt            # creates ../hbt next to the template
        cf_create_analysis hbt --short-name hbt --target ~/analyses/hbt --template https://host/template.git
        cd ../hbt && git pull --no-rebase upstream main    # later: bring framework updates into the fork
"""

from __future__ import annotations

import argparse
import contextlib
import keyword
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "COMMAND_FILES",
    "FORK_BRANCH",
    "FRAMEWORK_DIR",
    "TEMPLATE_NAME",
    "UPSTREAM",
    "CreateAnalysisError",
    "CreatedAnalysis",
    "create_analysis",
    "main",
    "template_root",
    "validate_name",
    "validate_short_name",
]

#: The name of the template's analysis package, replaced by the new analysis' name.
TEMPLATE_NAME = "analysis_template"
#: The upper-case form (an analysis-specific environment variable prefix), replaced by the upper-cased short name.
TEMPLATE_PREFIX = TEMPLATE_NAME.upper()
#: The fork's remote that points at the template.
UPSTREAM = "upstream"
#: The fork's branch, started at the template's HEAD.
FORK_BRANCH = "main"
#: The framework's directory: never renamed, so that the renaming commit does not touch it.
FRAMEWORK_DIR = "cf"
#: The files of this command: kept unchanged in a fork (renamed, they would rename the fork's own name).
COMMAND_FILES = frozenset({"bin/cf_create_analysis", "cf/create_analysis.py", "tests/test_create_analysis.py"})

#: The template's top-level directories besides the analysis package (more are found in the template itself).
_TEMPLATE_DIRS = ("cf", "ml", "inference", "sample", "tests", "docs", "bench", "bin", "sandboxes", "data")
#: Packages the framework, its models and its tests import.
_FRAMEWORK_PACKAGES = ("law", "luigi", "order", "scinum", "awkward", "uproot", "coffea", "numpy", "pyarrow")
_OTHER_PACKAGES = ("hist", "pyhf", "tensorflow", "keras", "onnx", "onnxruntime", "pytest")
#: Names that are never a valid analysis name: a package of that name would shadow the one of the template or the
#: framework (the standard library's module names are refused too).
RESERVED_NAMES = frozenset((*_TEMPLATE_DIRS, *_FRAMEWORK_PACKAGES, *_OTHER_PACKAGES))
#: Short names whose upper-case prefix belongs to the framework's or law's environment variables.
RESERVED_SHORT_NAMES = frozenset({"cf", "law", "luigi"})

#: Bytes inspected for a NUL byte to tell binary from text files (as git does).
_BINARY_SNIFF_BYTES = 8000
#: Identity of the renaming commit where git has none configured.
_FALLBACK_USER = ("cf_create_analysis", "cf_create_analysis@localhost")
#: Environment variables that would point git at another repository than the one meant.
_GIT_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: A git URL: ``scheme://...`` or scp-like ``[user@]host:path`` (no slash before the first colon, as git decides).
_GIT_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://|[^/:]+:")


class CreateAnalysisError(Exception):
    """The analysis cannot be created; the message says why and names the offending value or path.

    Attributes:
        usage: True for bad input (names, target, template), False for a failure while creating.
    """

    def __init__(self, message: str, usage: bool = True) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class CreatedAnalysis:
    """What :func:`create_analysis` created.

    Attributes:
        path: The new analysis' directory.
        upstream: The template as the fork's remote ``upstream`` sees it: an absolute path or a URL.
        upstream_branch: The template's branch the fork started from (None if the template's HEAD was detached).
        base: The template's commit the fork's renaming commit sits on.
        n_files: Tracked files (and symbolic links) of the fork.
        n_rewritten: Text files in which the template name was replaced.
        n_renamed: Paths whose name changed.
        skipped_binary: Binary files that mention the template name but were left unchanged.
        uncommitted: Whether the local template had uncommitted changes or untracked files (not in the fork).
        fallback_identity: Whether the renaming commit has the fallback identity (git had none configured).
    """

    path: Path
    upstream: str
    upstream_branch: str | None
    base: str
    n_files: int
    n_rewritten: int
    n_renamed: int
    skipped_binary: tuple[str, ...]
    uncommitted: bool
    fallback_identity: bool


@dataclass(frozen=True)
class _Renaming:
    """Counts of :func:`_rename_work_tree`."""

    n_files: int
    n_rewritten: int
    n_renamed: int
    skipped_binary: tuple[str, ...]


def template_root() -> Path:
    """The repository this module belongs to: the template that is forked by default."""
    return Path(__file__).resolve().parent.parent


def validate_name(name: str, reserved: Iterable[str] = ()) -> None:
    """Check the new analysis' name, which becomes its Python package.

    Args:
        name: The name, e.g. ``"hbt"``.
        reserved: Further names that are taken (e.g. top-level packages found in the template).

    Raises:
        CreateAnalysisError: If the name is not an ASCII identifier, a keyword, the template's own name or a
            name that would shadow a package of the template or the framework.
    """
    _check_identifier(name, "analysis name", "it becomes a Python package, so it must be an identifier")
    if TEMPLATE_NAME in name.lower():
        raise CreateAnalysisError(
            f"invalid analysis name '{name}': it must not contain the template's name '{TEMPLATE_NAME}'"
        )
    taken = RESERVED_NAMES | set(reserved) | set(sys.stdlib_module_names)
    if name in taken or name.lower() in taken:
        raise CreateAnalysisError(
            f"invalid analysis name '{name}': it is reserved, a package '{name}' would shadow the template's, "
            "the framework's or the standard library's module of that name"
        )


def _check_identifier(value: str, what: str, rule: str) -> None:
    """Raise a CreateAnalysisError if ``value`` is not an ASCII identifier or is a Python keyword."""
    if not _IDENTIFIER.fullmatch(value):
        raise CreateAnalysisError(
            f"invalid {what} '{value}': {rule} (letters, digits and underscores, not starting with a digit), e.g. 'hbt'"
        )
    if keyword.iskeyword(value):
        raise CreateAnalysisError(f"invalid {what} '{value}': it is a Python keyword")


def validate_short_name(short_name: str) -> None:
    """Check the short name (an identifier; its upper-case form prefixes analysis-specific variables).

    Raises:
        CreateAnalysisError: If it is not an ASCII identifier, a keyword or a prefix of the framework or law.
    """
    _check_identifier(short_name, "short name", "it must be an identifier")
    if short_name.lower() in RESERVED_SHORT_NAMES:
        raise CreateAnalysisError(
            f"invalid short name '{short_name}': its prefix '{short_name.upper()}_' is used by the framework's "
            "or law's environment variables"
        )


def _git_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _git(args: Sequence[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` in ``cwd`` (bytes output); with ``check``, a failure raises CreateAnalysisError."""
    result = subprocess.run(["git", *args], cwd=cwd, env=_git_env(), capture_output=True, check=False)
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).decode(errors="replace").strip()
        raise CreateAnalysisError(f"'git {' '.join(args)}' failed in {cwd}: {output}", usage=False)
    return result


def _git_text(args: Sequence[str], cwd: Path) -> str:
    """The stripped standard output of ``git ARGS`` in ``cwd``; a failure raises CreateAnalysisError."""
    return os.fsdecode(_git(args, cwd).stdout).strip()


def _locate_template(template: str | os.PathLike[str] | None) -> tuple[str, Path | None]:
    """The template's source for git (an absolute path or a URL) and its local directory (None for a URL).

    Raises:
        CreateAnalysisError: If a local template does not exist or is not the top of a git repository.
    """
    if template is None:
        return _local_repository(template_root())
    text = os.fspath(template)
    path = Path(text).expanduser()
    if path.exists():
        return _local_repository(path.resolve())
    if isinstance(template, str) and _GIT_URL.match(text):
        return text, None
    raise CreateAnalysisError(f"the template '{text}' does not exist; give a local git repository or a git URL")


def _local_repository(path: Path) -> tuple[str, Path]:
    """``path`` as a template source if it is the top of a git work tree or a bare repository."""
    for query in ("--show-toplevel", "--absolute-git-dir"):
        result = _git(["rev-parse", query], path, check=False)
        if result.returncode == 0 and Path(os.fsdecode(result.stdout.strip())).resolve() == path:
            return str(path), path
    raise CreateAnalysisError(
        f"the template '{path}' is not the top of a git repository; a fork shares the template's git history, "
        "so clone the template with git (or give --template a git URL)"
    )


def _has_uncommitted_work(root: Path) -> bool:
    """Whether the local template's work tree has changes or untracked files that are not ignored."""
    result = _git(["status", "--porcelain", "--untracked-files=normal"], root, check=False)
    return result.returncode == 0 and bool(result.stdout.strip())


def _resolve_target(root: Path | None, name: str, target: str | os.PathLike[str] | None) -> Path:
    """The absolute target path, checked: absent, its parent an existing directory, outside the template.

    The default is ``NAME`` next to a local template, or in the current directory for a template URL.
    """
    default_parent = root.parent if root is not None else Path.cwd()
    path = Path(target).expanduser() if target is not None else default_parent / name
    path = Path(os.path.abspath(path))
    if os.path.lexists(path):
        raise CreateAnalysisError(f"the target '{path}' already exists; it is never overwritten, choose another one")
    if not path.parent.is_dir():
        raise CreateAnalysisError(f"the target's parent directory '{path.parent}' does not exist")
    if root is not None and (path.resolve() == root or root in path.resolve().parents):
        raise CreateAnalysisError(f"the target '{path}' is inside the template '{root}'; choose a path outside it")
    return path


def _fetch_template(path: Path, source: str) -> tuple[str, str | None]:
    """Make ``path`` a repository with the template as remote ``upstream``, fetched.

    Returns:
        The template's HEAD commit and the branch it is on (None if detached).
    """
    _git(["init", "-q"], path)
    _git(["symbolic-ref", "HEAD", f"refs/heads/{FORK_BRANCH}"], path)
    _git(["remote", "add", UPSTREAM, source], path)
    for refs in ([], ["HEAD"]):  # the branches and tags, then HEAD, which may be detached
        result = _git(["fetch", "-q", UPSTREAM, *refs], path, check=False)
        if result.returncode != 0:
            message = result.stderr.decode(errors="replace").strip().replace("\n", "; ")
            raise CreateAnalysisError(f"cannot fetch the template from '{source}': {message}", usage=False)
    return _git_text(["rev-parse", "FETCH_HEAD^{commit}"], path), _upstream_branch(path)


def _upstream_branch(path: Path) -> str | None:
    """The branch the template's HEAD is on, also set as ``upstream/HEAD``; None if the HEAD is detached."""
    for line in _git_text(["ls-remote", "--symref", UPSTREAM, "HEAD"], path).splitlines():
        ref, _, head = line.partition("\t")
        if head == "HEAD" and ref.startswith("ref: refs/heads/"):
            branch = ref.removeprefix("ref: refs/heads/")
            _git(["remote", "set-head", UPSTREAM, branch], path)
            return branch
    return None


def _check_template_tree(path: Path, commit: str, name: str, source: str) -> None:
    """Check that ``commit`` has the analysis package and no top-level package of the new analysis' name."""
    directories, modules = set(), set()
    for entry in _git(["ls-tree", "-z", commit], path).stdout.split(b"\0"):
        if not entry:
            continue
        info, _, raw_name = entry.partition(b"\t")
        entry_name = os.fsdecode(raw_name)
        if info.split()[1] == b"tree":
            directories.add(entry_name)
        elif entry_name.endswith(".py"):
            modules.add(entry_name.removesuffix(".py"))
    if TEMPLATE_NAME not in directories:
        raise CreateAnalysisError(
            f"'{source}' is no analysis template: its commit {commit[:12]} has no '{TEMPLATE_NAME}' package"
        )
    validate_name(name, reserved=(directories | modules) - {TEMPLATE_NAME})


def _is_renamed(rel: str) -> bool:
    """Whether the renaming applies to the tracked file ``rel``: not to the framework, not to this command."""
    return PurePosixPath(rel).parts[0] != FRAMEWORK_DIR and rel not in COMMAND_FILES


def _rename(text: str, name: str, short_name: str) -> str:
    return text.replace(TEMPLATE_NAME, name).replace(TEMPLATE_PREFIX, short_name.upper())


def _rename_bytes(data: bytes, name: str, short_name: str) -> bytes:
    return data.replace(TEMPLATE_NAME.encode(), name.encode()).replace(
        TEMPLATE_PREFIX.encode(), short_name.upper().encode()
    )


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_SNIFF_BYTES]


def _new_paths(tracked: Sequence[str], name: str, short_name: str) -> dict[str, str]:
    """The new path of every tracked file the renaming applies to; two files that would meet are refused."""
    new_paths = {rel: _rename(rel, name, short_name) for rel in tracked if _is_renamed(rel)}
    owners = {rel: rel for rel in tracked if new_paths.get(rel, rel) == rel}
    for rel, new_rel in new_paths.items():
        if new_rel == rel:
            continue
        if new_rel in owners:
            raise CreateAnalysisError(
                f"'{rel}' and '{owners[new_rel]}' of the template would both become '{new_rel}'", usage=False
            )
        owners[new_rel] = rel
    return new_paths


def _rename_file(path: Path, rel: str, new_rel: str, name: str, short_name: str) -> tuple[bool, bool]:
    """Rewrite the text of the tracked file ``rel`` in the work tree ``path`` and move it to ``new_rel``.

    Returns:
        Whether its text was rewritten, and whether it is a binary file that mentions the template (unchanged).
    """
    src, dst = path / rel, path / new_rel
    if src.is_symlink():
        link = _rename(os.readlink(src), name, short_name)
        if new_rel == rel and link == os.readlink(src):
            return False, False
        src.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(link, dst)
        return False, False
    if not src.is_file():
        _warn(f"'{rel}' is not a regular file (a submodule?), left unchanged")
        return False, False
    data = src.read_bytes()
    binary = _is_binary(data)
    new_data = data if binary else _rename_bytes(data, name, short_name)
    if new_data != data:
        src.write_bytes(new_data)
    if new_rel != rel:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
    return new_data != data, binary and TEMPLATE_NAME.encode() in data


def _remove_empty_parents(path: Path, rel: str) -> None:
    """Remove the directories of ``rel`` below ``path`` that a move left empty."""
    for parent in PurePosixPath(rel).parents:
        if parent.name and (path / parent).is_dir() and not any((path / parent).iterdir()):
            (path / parent).rmdir()


def _rename_work_tree(path: Path, name: str, short_name: str) -> _Renaming:
    """Rename paths and text of the checked-out fork ``path`` (all but the framework's and this command's)."""
    tracked = [os.fsdecode(raw) for raw in _git(["ls-files", "-z"], path).stdout.split(b"\0") if raw]
    n_rewritten, skipped = 0, []
    new_paths = _new_paths(tracked, name, short_name)
    for rel, new_rel in new_paths.items():
        rewritten, binary = _rename_file(path, rel, new_rel, name, short_name)
        n_rewritten += rewritten
        if binary:
            skipped.append(rel)
    moved = [rel for rel, new_rel in new_paths.items() if new_rel != rel]
    for rel in moved:
        _remove_empty_parents(path, rel)
    return _Renaming(len(tracked), n_rewritten, len(moved), tuple(skipped))


def _identity_options(path: Path) -> list[str]:
    """``-c`` options with the fallback identity for ``user.name`` / ``user.email`` where git has none."""
    options = []
    for key, fallback in zip(("user.name", "user.email"), _FALLBACK_USER, strict=True):
        if not _git(["config", "--get", key], path, check=False).stdout.strip():
            options += ["-c", f"{key}={fallback}"]
    return options


def _commit_message(name: str, short_name: str, source: str, base: str, branch: str | None) -> str:
    follow = branch or "BRANCH"
    return (
        f"Create analysis {name} (short name {short_name}) from the analysis template\n\n"
        f"Renames the package {TEMPLATE_NAME} and every reference to it outside {FRAMEWORK_DIR}/ on top of the\n"
        f"template's history; framework updates merge with: git pull --no-rebase {UPSTREAM} {follow}\n\n"
        f"Template: {source} at {base}\n"
    )


def _commit_rename(path: Path, message: str) -> bool:
    """Commit everything in the fork's work tree as the renaming commit.

    Returns:
        Whether the fallback identity was used (git had no ``user.name`` or ``user.email`` configured).
    """
    identity = _identity_options(path)
    # the work tree holds only the checked-out files; --force: a renamed path may match an ignore pattern
    _git(["add", "--all", "--force"], path)
    # the commit is made by this tool: no signing, and no hooks of the user's global configuration
    _git([*identity, "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message], path)
    return bool(identity)


def _build_fork(tmp: Path, source: str, name: str, short_name: str) -> tuple[str, str | None, _Renaming, bool]:
    """Fetch the template into ``tmp``, check out its HEAD as ``main`` and commit the renaming on top.

    Returns:
        The template's commit, its branch (None if detached), the renaming's counts and whether the fallback
        identity was used.
    """
    base, branch = _fetch_template(tmp, source)
    _check_template_tree(tmp, base, name, source)
    _git(["checkout", "-q", "-B", FORK_BRANCH, base], tmp)
    renaming = _rename_work_tree(tmp, name, short_name)
    fallback = _commit_rename(tmp, _commit_message(name, short_name, source, base, branch))
    return base, branch, renaming, fallback


def create_analysis(
    name: str,
    short_name: str,
    target: str | os.PathLike[str] | None = None,
    template: str | os.PathLike[str] | None = None,
) -> CreatedAnalysis:
    """Create a new analysis from the template's committed HEAD (see the module docstring).

    Args:
        name: The analysis name, a Python identifier; the analysis package ``analysis_template`` becomes it.
        short_name: A short identifier; its upper-case form replaces ``ANALYSIS_TEMPLATE``.
        target: The new analysis' directory; default: ``NAME`` next to a local template (in the current
            directory for a template URL). It must not exist.
        template: The template, a local git repository or a git URL; default: the repository this module
            belongs to. It becomes the fork's remote ``upstream``.

    Returns:
        What was created.

    Raises:
        CreateAnalysisError: On bad input (nothing is written) or when fetching, renaming or git fails (nothing
            is left at the target).
    """
    validate_short_name(short_name)
    validate_name(name)  # the cheap checks first, before reading the template
    if shutil.which("git") is None:
        raise CreateAnalysisError("git is not installed, but the new analysis is created as a git repository")
    source, root = _locate_template(template)
    path = _resolve_target(root, name, target)
    uncommitted = root is not None and _has_uncommitted_work(root)

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        base, branch, renaming, fallback = _build_fork(tmp, source, name, short_name)
        _move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CreatedAnalysis(
        path=path,
        upstream=source,
        upstream_branch=branch,
        base=base,
        n_files=renaming.n_files,
        n_rewritten=renaming.n_rewritten,
        n_renamed=renaming.n_renamed,
        skipped_binary=renaming.skipped_binary,
        uncommitted=uncommitted,
        fallback_identity=fallback,
    )


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename the finished ``tmp`` to ``path`` without ever replacing something another process put there.

    ``path`` is first claimed as an empty directory (atomic, fails if anything exists there); the rename then
    replaces only that empty directory. On failure the claim is undone unless someone else filled it.
    """
    try:
        os.mkdir(path)
    except FileExistsError:
        raise CreateAnalysisError(f"the target '{path}' appeared while creating; it is not overwritten") from None
    try:
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # mkdtemp's is private; take the umask's default
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        raise


def _warn(message: str) -> None:
    print(f"cf_create_analysis: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cf_create_analysis",
        description=(
            "Create a new analysis from the template: fetch the template's committed HEAD into a new git "
            f"repository with the template as remote '{UPSTREAM}', and commit on top of it, as one commit, the "
            f"rename of the package '{TEMPLATE_NAME}' and every reference to it outside {FRAMEWORK_DIR}/ to NAME "
            f"('{TEMPLATE_PREFIX}' becomes the upper-cased short name). The fork shares the template's history: "
            f"'git pull --no-rebase {UPSTREAM} {FORK_BRANCH}' in it merges framework updates. Needs no network "
            "for a local template."
        ),
        epilog=(
            "example: cf_create_analysis hbt --short-name hbt   (creates ../hbt; then: cd ../hbt && source setup.sh)"
        ),
    )
    parser.add_argument("name", metavar="NAME", help="analysis name, a Python identifier (lowercase), e.g. hbt")
    parser.add_argument(
        "--short-name",
        "-s",
        required=True,
        metavar="X",
        help=f"short identifier, e.g. hbt; its upper-case form replaces '{TEMPLATE_PREFIX}' (env-variable prefix)",
    )
    parser.add_argument(
        "--target",
        "-t",
        metavar="DIR",
        help=(
            "directory of the new analysis, must not exist (default: NAME next to the template, or in the current "
            "directory for a template URL)"
        ),
    )
    parser.add_argument(
        "--template",
        metavar="SRC",
        help=(
            "the template: a local git repository or a git URL, the fork's remote 'upstream' (default: the "
            "checkout this command belongs to; its committed HEAD is forked)"
        ),
    )
    return parser


def _report(created: CreatedAnalysis, name: str) -> None:
    """Print the warnings about the created analysis and how to go on."""
    if created.uncommitted:
        _warn(
            f"the template {created.upstream} has uncommitted changes or untracked files; the fork is made from "
            f"its last commit {created.base[:12]}, without them"
        )
    if created.fallback_identity:
        name_email = "{} <{}>".format(*_FALLBACK_USER)
        _warn(
            f"git has no user.name / user.email configured: the renaming commit is authored by {name_email} "
            "(set yours with 'git config --global user.email ...')"
        )
    for rel in created.skipped_binary:
        _warn(f"the binary file '{rel}' mentions '{TEMPLATE_NAME}' and was left unchanged")
    branch = created.upstream_branch or "BRANCH"
    detached = "" if created.upstream_branch else "   (the template's HEAD was detached: name its branch)"
    software = os.environ.get("CF_VENV_BASE")
    hint = f"; preset CF_VENV_BASE={software} to share this template's venvs" if software else ""
    print(
        f"created analysis '{name}' in {created.path}: {created.n_files} files, {created.n_rewritten} rewritten, "
        f"{created.n_renamed} renamed, in one commit on top of the template's {created.base[:12]} "
        f"(remote '{UPSTREAM}': {created.upstream})\n"
        f"next: cd {created.path} && source setup.sh   (builds the analysis' own venv on first use{hint})\n"
        f"framework updates: git pull --no-rebase {UPSTREAM} {branch}{detached}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``cf_create_analysis NAME --short-name X [--target DIR] [--template SRC]``.

    Returns:
        The exit code: 0, 1 on a failure while creating, 2 on bad input.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    for label, value in (("name", args.name), ("short name", args.short_name)):
        if value != value.lower() and _IDENTIFIER.fullmatch(value):
            _warn(f"the {label} '{value}' is not lowercase (PEP 8 recommends lowercase package names)")
    try:
        created = create_analysis(args.name, args.short_name, args.target, args.template)
    except CreateAnalysisError as error:
        print(f"cf_create_analysis: error: {error}", file=sys.stderr)
        return 2 if error.usage else 1
    except OSError as error:
        print(f"cf_create_analysis: error: {error}; nothing was created", file=sys.stderr)
        return 1
    _report(created, args.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
