"""Fork the template into a new analysis: ``cf_create_analysis NAME --short-name X [--target DIR]``.

The repository this module lives in is the template. The new analysis is a copy of it in which the analysis
package ``analysis_template`` and every reference to it are renamed, cookiecutter-style and without network:

* Files: those git knows of in the template, ``git ls-files --cached --others --exclude-standard``, i.e. the
  tracked files plus untracked files that are not ignored (so work not yet committed is part of the copy;
  ignored paths such as ``data/``, ``.law/`` and caches never are). Without git metadata (an unpacked archive),
  everything except ``data/``, ``.law/``, ``.git/``, caches and build outputs is copied.
* Renaming: every path component and the content of every text file has ``analysis_template`` replaced by
  ``NAME`` (the package, law.cfg's module lists, imports, docs, tests, the pyproject name and the order analysis
  object, whose name is also the top directory of the store). ``ANALYSIS_TEMPLATE``, the upper-case form an
  analysis-specific environment variable prefix would take, becomes the upper-cased short name (the template's
  environment variables are currently all ``CF_*``, shared with the framework, so none exists yet). Files with a
  NUL byte in their first 8000 bytes (git's binary heuristic) are copied unchanged.
* Not copied: this command itself (``bin/cf_create_analysis``, ``cf/create_analysis.py`` and its test). A fork is
  an analysis, not a template: with ``analysis_template`` renamed in them they would rename the fork's own name.
* Result: a fresh git repository with one commit. It is built in a temporary sibling directory of the target
  and renamed into place at the end, so a failure leaves nothing at the target. An existing target is never
  overwritten.

Example:
    From a shell where the template's ``setup.sh`` was sourced (``bin/`` is on ``PATH``)::

        cf_create_analysis hbt --short-name hbt            # creates ../hbt next to the template
        cf_create_analysis hbt --short-name hbt --target ~/analyses/hbt
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
    "TEMPLATE_NAME",
    "TEMPLATE_ONLY_FILES",
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

#: The files of this command, which belong to the template only and are not copied into a fork.
TEMPLATE_ONLY_FILES = frozenset({"bin/cf_create_analysis", "cf/create_analysis.py", "tests/test_create_analysis.py"})

#: Without git metadata: directories skipped anywhere / only at the top, and file suffixes skipped.
_SKIP_DIRS_ANYWHERE = frozenset(
    [".git", "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".ipynb_checkpoints"]
)
_SKIP_DIRS_TOP = frozenset({"data", ".law", ".whl", ".gl", "build", "dist", ".venv", ".tox", ".nox"})
_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")
_SKIP_PATHS = frozenset({"docs/_build", "docs/api/_generated"})

#: Bytes inspected for a NUL byte to tell binary from text files (as git does).
_BINARY_SNIFF_BYTES = 8000
#: Identity of the initial commit when git has none configured.
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


class CreateAnalysisError(Exception):
    """The analysis cannot be created; the message says why and names the offending value or path.

    Attributes:
        usage: True for bad input (names, target), False for a failure while creating.
    """

    def __init__(self, message: str, usage: bool = True) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class CreatedAnalysis:
    """What :func:`create_analysis` created.

    Attributes:
        path: The new analysis' directory.
        n_files: Files (and symbolic links) copied.
        n_rewritten: Text files in which the template name was replaced.
        n_renamed: Paths whose name changed.
        skipped_binary: Binary files that mention the template name but were copied unchanged.
    """

    path: Path
    n_files: int
    n_rewritten: int
    n_renamed: int
    skipped_binary: tuple[str, ...]


def template_root() -> Path:
    """The repository this module belongs to: the template that is forked."""
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
    if not _IDENTIFIER.fullmatch(name):
        raise CreateAnalysisError(
            f"invalid analysis name '{name}': it becomes a Python package, so it must be an identifier "
            "(letters, digits and underscores, not starting with a digit), e.g. 'hbt'"
        )
    if keyword.iskeyword(name):
        raise CreateAnalysisError(f"invalid analysis name '{name}': it is a Python keyword")
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


def validate_short_name(short_name: str) -> None:
    """Check the short name (an identifier; its upper-case form prefixes analysis-specific variables).

    Raises:
        CreateAnalysisError: If it is not an ASCII identifier, a keyword or a prefix of the framework or law.
    """
    if not _IDENTIFIER.fullmatch(short_name):
        raise CreateAnalysisError(
            f"invalid short name '{short_name}': it must be an identifier (letters, digits and underscores, "
            "not starting with a digit), e.g. 'hbt'"
        )
    if keyword.iskeyword(short_name):
        raise CreateAnalysisError(f"invalid short name '{short_name}': it is a Python keyword")
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


def _is_git_checkout(root: Path) -> bool:
    result = _git(["rev-parse", "--is-inside-work-tree"], root, check=False)
    return result.returncode == 0 and result.stdout.strip() == b"true"


def _git_files(root: Path) -> list[str]:
    """Tracked plus untracked, not ignored files below ``root`` (relative POSIX paths, those that exist)."""
    output = _git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"], root).stdout
    names = dict.fromkeys(os.fsdecode(raw) for raw in output.split(b"\0") if raw)
    # a tracked file deleted in the working tree is listed too, but there is nothing to copy
    return [name for name in names if os.path.lexists(root / name)]


def _walk_files(root: Path) -> list[str]:
    """All files below ``root`` except data, law's home, git metadata, caches and build outputs."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
        top = rel_dir == PurePosixPath(".")
        kept = []
        for dirname in sorted(dirnames):
            rel = (rel_dir / dirname).as_posix()
            skip = (
                dirname in _SKIP_DIRS_ANYWHERE
                or (top and dirname in _SKIP_DIRS_TOP)
                or dirname.endswith(_SKIP_SUFFIXES)
                or rel in _SKIP_PATHS
            )
            if skip:
                continue
            if os.path.islink(os.path.join(dirpath, dirname)):
                files.append(rel)  # a link to a directory is copied as a link, not followed
            else:
                kept.append(dirname)
        dirnames[:] = kept
        files.extend((rel_dir / name).as_posix() for name in sorted(filenames) if not name.endswith(_SKIP_SUFFIXES))
    return files


def _template_files(root: Path) -> list[str]:
    files = _git_files(root) if _is_git_checkout(root) else _walk_files(root)
    return [name for name in files if name not in TEMPLATE_ONLY_FILES]


def _top_level_packages(root: Path, files: Iterable[str]) -> set[str]:
    """Names of the template's top-level directories and modules, except the analysis package itself."""
    names = set()
    for name in files:
        first = PurePosixPath(name).parts[0]
        if first.endswith(".py"):
            names.add(first.removesuffix(".py"))
        elif first != TEMPLATE_NAME and (root / first).is_dir():
            names.add(first)
    return names


def _rename(text: str, name: str, short_name: str) -> str:
    return text.replace(TEMPLATE_NAME, name).replace(TEMPLATE_PREFIX, short_name.upper())


def _rename_bytes(data: bytes, name: str, short_name: str) -> bytes:
    return data.replace(TEMPLATE_NAME.encode(), name.encode()).replace(
        TEMPLATE_PREFIX.encode(), short_name.upper().encode()
    )


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_SNIFF_BYTES]


def _resolve_target(root: Path, name: str, target: str | os.PathLike[str] | None) -> Path:
    """The absolute target path, checked: absent, its parent an existing directory, outside the template."""
    path = Path(target).expanduser() if target is not None else root.parent / name
    path = Path(os.path.abspath(path))
    if os.path.lexists(path):
        raise CreateAnalysisError(f"the target '{path}' already exists; it is never overwritten, choose another one")
    if not path.parent.is_dir():
        raise CreateAnalysisError(f"the target's parent directory '{path.parent}' does not exist")
    if path.resolve() == root or root in path.resolve().parents:
        raise CreateAnalysisError(f"the target '{path}' is inside the template '{root}'; choose a path outside it")
    return path


def _copy_files(
    root: Path, files: Sequence[str], destination: Path, name: str, short_name: str
) -> tuple[int, int, list[str]]:
    """Copy ``files`` from ``root`` to ``destination``, renaming paths and text; returns the counts.

    Returns:
        The number of rewritten text files, of renamed paths and the binary files mentioning the template.
    """
    n_rewritten, n_renamed, skipped_binary = 0, 0, []
    written: dict[str, str] = {}
    for rel in files:
        new_rel = _rename(rel, name, short_name)
        if new_rel in written:
            raise CreateAnalysisError(
                f"'{rel}' and '{written[new_rel]}' of the template would both become '{new_rel}'", usage=False
            )
        written[new_rel] = rel
        n_renamed += new_rel != rel
        src, dst = root / rel, destination / new_rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(_rename(os.readlink(src), name, short_name), dst)
            continue
        if not src.is_file():
            _warn(f"'{rel}' is not a regular file (a submodule?), skipped")
            continue
        data = src.read_bytes()
        if _is_binary(data):
            if TEMPLATE_NAME.encode() in data:
                skipped_binary.append(rel)
        else:
            new_data = _rename_bytes(data, name, short_name)
            n_rewritten += new_data != data
            data = new_data
        dst.write_bytes(data)
        shutil.copymode(src, dst)
    return n_rewritten, n_renamed, skipped_binary


def _init_repository(path: Path, name: str, short_name: str, origin: str) -> None:
    """``git init`` in ``path`` and commit everything in it as the one initial commit."""
    _git(["init", "-q"], path)
    identity = []
    for key, fallback in zip(("user.name", "user.email"), _FALLBACK_USER, strict=True):
        if not _git(["config", "--get", key], path, check=False).stdout.strip():
            identity += ["-c", f"{key}={fallback}"]
    _git(["add", "-A"], path)
    message = f"Create analysis {name} (short name {short_name}) from the analysis template\n\nTemplate: {origin}\n"
    # the initial commit is made by this tool: no signing, and no hooks of the user's global configuration
    _git([*identity, "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify", "-m", message], path)


def _origin(root: Path) -> str:
    """The template's location and commit, for the initial commit message."""
    if not _is_git_checkout(root):
        return f"{root} (not a git checkout)"
    head = _git(["rev-parse", "--short", "HEAD"], root, check=False).stdout.decode().strip() or "no commit"
    dirty = _git(["status", "--porcelain", "--untracked-files=normal"], root, check=False).stdout.strip()
    return f"{root} at {head}" + (" with uncommitted changes" if dirty else "")


def create_analysis(
    name: str,
    short_name: str,
    target: str | os.PathLike[str] | None = None,
    template: str | os.PathLike[str] | None = None,
) -> CreatedAnalysis:
    """Create a new analysis from the template (see the module docstring for what is copied and renamed).

    Args:
        name: The analysis name, a Python identifier; the analysis package ``analysis_template`` becomes it.
        short_name: A short identifier; its upper-case form replaces ``ANALYSIS_TEMPLATE``.
        target: The new analysis' directory; default: ``NAME`` next to the template. It must not exist.
        template: The template's directory; default: the repository this module belongs to.

    Returns:
        What was created.

    Raises:
        CreateAnalysisError: On bad input (nothing is written) or when copying or git fails (nothing is left at
            the target).
    """
    root = Path(template).resolve() if template is not None else template_root()
    if not (root / TEMPLATE_NAME).is_dir():
        raise CreateAnalysisError(f"'{root}' is no analysis template: it has no '{TEMPLATE_NAME}' package")
    validate_short_name(short_name)
    validate_name(name)  # the cheap checks first, before listing the template
    if shutil.which("git") is None:
        raise CreateAnalysisError("git is not installed, but the new analysis is created as a git repository")
    files = _template_files(root)
    validate_name(name, reserved=_top_level_packages(root, files))
    path = _resolve_target(root, name, target)

    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        n_rewritten, n_renamed, skipped = _copy_files(root, files, tmp, name, short_name)
        _init_repository(tmp, name, short_name, _origin(root))
        _move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CreatedAnalysis(path, len(files), n_rewritten, n_renamed, tuple(skipped))


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
            "Create a new analysis from this repository (the template): copy the files git knows of (tracked and "
            f"untracked-but-not-ignored), rename the package '{TEMPLATE_NAME}' and every reference to it to NAME, "
            f"replace '{TEMPLATE_PREFIX}' by the upper-cased short name, and commit the result as a fresh git "
            "repository. Needs no network."
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
        help="directory of the new analysis, must not exist (default: NAME next to the template)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``cf_create_analysis NAME --short-name X [--target DIR]``; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    for label, value in (("name", args.name), ("short name", args.short_name)):
        if value != value.lower() and _IDENTIFIER.fullmatch(value):
            _warn(f"the {label} '{value}' is not lowercase (PEP 8 recommends lowercase package names)")
    try:
        created = create_analysis(args.name, args.short_name, args.target)
    except CreateAnalysisError as error:
        print(f"cf_create_analysis: error: {error}", file=sys.stderr)
        return 2 if error.usage else 1
    except OSError as error:
        print(f"cf_create_analysis: error: {error}; nothing was created", file=sys.stderr)
        return 1
    for rel in created.skipped_binary:
        _warn(f"the binary file '{rel}' mentions '{TEMPLATE_NAME}' and was copied unchanged")
    software = os.environ.get("CF_VENV_BASE")
    hint = f"; preset CF_VENV_BASE={software} to share this template's venvs" if software else ""
    print(
        f"created analysis '{args.name}' in {created.path}: {created.n_files} files, "
        f"{created.n_rewritten} rewritten, {created.n_renamed} renamed, one git commit\n"
        f"next: cd {created.path} && source setup.sh   (builds the analysis' own venv on first use{hint})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
