"""Recorded outputs of the guide's commands: what the pages show under "It prints".

A test that runs the commands of a listing passes what they printed to :func:`check_transcript`. The output is
normalized (the paths of the test's store and data directory become ``$CF_STORE_LOCAL`` / ``$CF_DATA``, durations
become ``<t>``, lines wider than :data:`WIDTH` are wrapped) and compared with the committed file
``docs/user_guide/examples/outputs/<listing>.txt`` that the page includes. Two things may differ between runs
without failing the check: the order of consecutive ``done:`` lines (independent tasks run in any order) and
decimal numbers within :data:`RELATIVE_TOLERANCE` (a loss or a score computed on another CPU). TensorFlow's C++
log lines (with a time stamp and a thread id, e.g. ``E0000 00:00:1796042533.586487 9328 node_def_util.cc:682] ...``)
are left out: they are the runtime's chatter, different in every run. Any other change
fails the test with a diff; ``CF_UPDATE_DOCS_OUTPUTS=1`` rewrites the files instead.

The listing's commands are checked too: the runs must be exactly the commands the listing shows.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "user_guide" / "examples"
OUTPUTS = EXAMPLES / "outputs"
README = ROOT / "README.md"
#: The widest line a listing may have (the pages' code boxes fit 100 characters).
WIDTH = 100
#: Continuation lines of a wrapped output line start with this.
INDENT = "    "
#: Decimal numbers (losses, scores) may differ by this much from the recorded ones.
RELATIVE_TOLERANCE = 0.05
#: Set to 1 to rewrite the recorded outputs from the current run.
UPDATE_VARIABLE = "CF_UPDATE_DOCS_OUTPUTS"

_DURATION = re.compile(r"\(\d+(?:\.\d+)? s\)")
#: Keras' line per epoch: "27/27 - 1s - 29ms/step - loss: 0.5268"
_KERAS_EPOCH = re.compile(r"\s*\d+/\d+ - .*/step")
_KERAS_DURATION = re.compile(r"\b\d+(?:\.\d+)?(?:ms|us|µs|s)(?=[ /]|$)")
_NUMBER = re.compile(r"(-?\d+\.\d+)")
#: TensorFlow's (absl's) C++ log lines, and absl's note that they go to stderr.
_TF_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] |^WARNING: All log messages before absl::")


# the commands of a listing


def shell_commands(text: str) -> list[tuple[str, ...]]:
    """The commands of a shell listing: continuation lines joined, comments, blanks and ``$`` prompts removed."""
    commands = []
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip().removeprefix("$ ")
        if line and not line.startswith("#"):
            commands.append(tuple(shlex.split(line, comments=True)))
    return commands


def readme_blocks(text: str | None = None) -> list[str]:
    """The contents of the README's fenced code blocks, in order."""
    text = README.read_text() if text is None else text
    return re.findall(r"^```[\w-]*\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def chained_commands(block: str) -> list[tuple[str, ...]]:
    """The commands of a block that chains them with ``&&`` (over several lines), e.g. the README's first one."""
    tokens = shlex.split(block.replace("\\\n", " "), comments=True)
    commands: list[tuple[str, ...]] = [()]
    for token in tokens:
        if token == "&&":
            commands.append(())
        else:
            commands[-1] = (*commands[-1], token)
    return [command for command in commands if command]


def readme_law_commands() -> list[tuple[str, ...]]:
    """The ``law run`` commands of the README's first command (the part after ``source setup.sh``)."""
    return [command for command in chained_commands(readme_blocks()[0]) if command[:2] == ("law", "run")]


def listing_commands(listing: str) -> list[tuple[str, ...]]:
    """The commands of ``examples/<listing>.sh``, or of the README's first command for ``getting_started``."""
    if listing == "getting_started":
        return readme_law_commands()
    return shell_commands((EXAMPLES / f"{listing}.sh").read_text())


# normalizing and wrapping


def normalize(output: str, replacements: Mapping[str, str]) -> list[str]:
    """The lines of ``output`` with paths replaced (longest first), durations as ``<t>``, no trailing blanks."""
    for path in sorted(replacements, key=len, reverse=True):
        output = output.replace(path, replacements[path])
    lines = []
    for raw in output.splitlines():
        if _TF_LOG.match(raw):
            continue
        line = _DURATION.sub("(<t> s)", raw)
        if _KERAS_EPOCH.match(line):
            line = _KERAS_DURATION.sub("<t>", line)
        lines.append(line.rstrip())
    return lines


def wrap(line: str, width: int = WIDTH) -> list[str]:
    """``line`` in pieces of at most ``width`` characters; the continuations start with :data:`INDENT`.

    A piece ends before a space (which is dropped) when there is one in the second half of the piece, else after
    the last ``/``, else at ``width``.
    """
    pieces = []
    while len(line) > width:
        start = len(INDENT) + 1 if pieces else 1
        space = line.rfind(" ", start, width + 1)
        slash = line.rfind("/", start, width)
        if space >= width // 2:
            pieces.append(line[:space].rstrip())
            line = INDENT + line[space + 1 :]
        elif slash > 0:
            pieces.append(line[: slash + 1])
            line = INDENT + line[slash + 1 :]
        else:
            pieces.append(line[:width])
            line = INDENT + line[width:]
    pieces.append(line)
    return pieces


def transcript(runs: Sequence[subprocess.CompletedProcess[str]], replacements: Mapping[str, str]) -> str:
    """What the commands printed (stdout, then stderr), normalized and wrapped, a blank line between commands."""
    parts = []
    for run in runs:
        output = run.stdout + (("\n" if run.stdout and not run.stdout.endswith("\n") else "") + run.stderr)
        lines = [piece for line in normalize(output, replacements) for piece in wrap(line)]
        parts.append("\n".join(lines).strip("\n"))
    return "\n\n".join(parts) + "\n"


# comparing


def _entries(text: str) -> list[str]:
    """The logical lines of a transcript (wrapped lines joined, whitespace removed), consecutive ``done:`` sorted."""
    entries: list[str] = []
    for line in text.splitlines():
        if line.startswith(INDENT) and entries:
            entries[-1] += line
        else:
            entries.append(line)
    entries = [re.sub(r"\s+", "", entry) for entry in entries]
    ordered: list[str] = []
    block: list[str] = []
    for entry in [*entries, ""]:
        if entry.startswith("done:"):
            block.append(entry)
            continue
        ordered += sorted(block)
        block = []
        ordered.append(entry)
    return ordered[:-1]


def _close(expected: str, actual: str) -> bool:
    """Whether two entries are equal, decimal numbers within :data:`RELATIVE_TOLERANCE`."""
    expected_parts, actual_parts = _NUMBER.split(expected), _NUMBER.split(actual)
    if len(expected_parts) != len(actual_parts):
        return False
    for index, (want, got) in enumerate(zip(expected_parts, actual_parts, strict=True)):
        if index % 2 == 0:
            if want != got:
                return False
        elif not math.isclose(float(want), float(got), rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-3):
            return False
    return True


def same_transcript(expected: str, actual: str) -> bool:
    """Whether two transcripts show the same output (see the module docstring for what may differ)."""
    want, got = _entries(expected), _entries(actual)
    return len(want) == len(got) and all(_close(w, g) for w, g in zip(want, got, strict=True))


def check_transcript(
    listing: str,
    runs: Sequence[subprocess.CompletedProcess[str]],
    replacements: Mapping[str, str],
    check_commands: bool = True,
) -> None:
    """Compare what ``runs`` printed with ``outputs/<listing>.txt`` (or rewrite it with CF_UPDATE_DOCS_OUTPUTS=1).

    Args:
        listing: The name of the listing: ``examples/<listing>.sh``, or ``getting_started`` (the README's command).
        runs: The completed ``law run`` processes of the listing's commands, in order.
        replacements: Paths of the run's environment and the variable each is shown as.
        check_commands: Whether the runs must be the listing's commands (False for a script that is no listing).
    """
    if check_commands:
        ran = [tuple(run.args) for run in runs]
        shown = listing_commands(listing)
        assert ran == shown, f"the runs recorded for '{listing}' are not its commands:\n{ran}\n{shown}"
    path = OUTPUTS / f"{listing}.txt"
    actual = transcript(runs, replacements)
    expected = path.read_text() if path.is_file() else ""
    if same_transcript(expected, actual):
        return
    if os.environ.get(UPDATE_VARIABLE) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            f"{path.relative_to(ROOT)} (recorded)",
            "this run",
        ),
    )
    pytest.fail(
        f"the output of '{listing}' differs from the one the docs show; if the change is right, rerun with "
        f"{UPDATE_VARIABLE}=1 to record it:\n{diff}",
    )
