"""Checks of a task's sandbox before any work starts: its script and requirement files.

A sandbox ``bash::<script>`` of this template sets ``CF_VENV_REQUIREMENTS`` (comma-separated requirement files)
and sources ``sandboxes/_setup_venv.sh``, which builds the venv when it is entered. The files are checked here
when the task is made, with the same rules as the builder (each file exists and starts with ``# version N``;
``-r`` includes too), so that a broken file is one clear line instead of a failure inside law's sandbox setup.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Iterator
from typing import Any

from law.sandbox.base import SandboxProxy

from cf.util import UserError, expand_path

__all__ = ["QuietSandboxProxy", "check_sandbox", "requirement_files", "verbose"]

_REQUIREMENTS_ASSIGNMENT = re.compile(r"""^\s*(?:export\s+)?CF_VENV_REQUIREMENTS=["']?([^"'\n]+)""", re.MULTILINE)
_VERSION_LINE = re.compile(r"# version [0-9]+\s*")
_INCLUDE = re.compile(r"^\s*(?:-r|--requirement)[\s=]+(\S+)", re.MULTILINE)


@functools.cache
def check_sandbox(sandbox: str) -> None:
    """Check a ``bash::`` sandbox's script and requirement files (once per process; other sandboxes pass).

    Raises:
        UserError: If the script is missing, or a requirement file is missing or lacks its ``# version N`` line.
    """
    if not sandbox.startswith("bash::"):
        return
    script = expand_path(sandbox.removeprefix("bash::"))
    if not os.path.isfile(script):
        raise UserError(f"the sandbox script '{script}' does not exist")
    with open(script) as file:
        match = _REQUIREMENTS_ASSIGNMENT.search(file.read())
    if match is None:
        return  # a sandbox of another kind: its own setup checks its files
    for path in requirement_files(match.group(1), script):
        with open(path) as file:
            first_line = file.readline().rstrip("\n")
        if not _VERSION_LINE.fullmatch(first_line):
            raise UserError(
                f"the requirement file '{path}' of sandbox '{script}' must start with a '# version N' line "
                f"(raised to rebuild the venv), found '{first_line}'",
            )


def requirement_files(assignment: str, script: str) -> list[str]:
    """The requirement files of a ``CF_VENV_REQUIREMENTS`` value, with every ``-r`` include, in order.

    Raises:
        UserError: If a file does not exist.
    """
    pending = [expand_path(item.strip()) for item in assignment.split(",") if item.strip()]
    files: list[str] = []
    while pending:
        path = pending.pop(0)
        if not os.path.isfile(path):
            raise UserError(f"the requirement file '{path}' of sandbox '{script}' does not exist")
        files.append(path)
        with open(path) as file:
            includes = _INCLUDE.findall(file.read())
        pending.extend(os.path.join(os.path.dirname(path), include) for include in includes)
    return files


def verbose() -> bool:
    """Whether runs show everything: ``CF_VERBOSE=1`` (law's sandbox banners; TensorFlow's start-up lines)."""
    return os.environ.get("CF_VERBOSE", "0") == "1"


class QuietSandboxProxy(SandboxProxy):
    """law's sandbox proxy without the banners around every sandbox entry, unless ``CF_VERBOSE=1``."""

    @contextlib.contextmanager
    def _run_context(self, cmd: Any = None) -> Iterator[None]:
        if verbose():
            with super()._run_context(cmd):
                yield
        else:
            yield
