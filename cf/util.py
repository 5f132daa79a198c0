"""Small helpers used across the framework: lazy imports, brace expansion, hashing, dotted imports."""

from __future__ import annotations

import difflib
import enum
import fnmatch
import hashlib
import importlib
import itertools
import json
import os
import re
import types
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "DotDict",
    "TextEnum",
    "UserError",
    "unknown_name_message",
    "MissingModule",
    "brace_expand",
    "expand_list",
    "expand_path",
    "import_object",
    "is_pattern",
    "is_regex",
    "pattern_matcher",
    "dev_sandbox",
    "maybe_import",
    "short_hash",
    "split_outside_braces",
]


class UserError(ValueError):
    """Bad input from the user (a name, a setting, a file); law runs report it in one line, no traceback."""


def unknown_name_message(kind: str, names: str | Iterable[str], available: Iterable[str], where: str = "") -> str:
    """The one-line message for names that do not exist, with close matches and the available names.

    Example:
        >>> unknown_name_message("producer", "defualt", ["default", "features"])
        "unknown producer 'defualt' (did you mean 'default'?), available: default, features"

    Args:
        kind: What the names name, e.g. ``producer``.
        names: The unknown name or names.
        available: The names that exist.
        where: Where they were looked for, e.g. ``in config 'c'`` (optional).
    """
    unknown = [names] if isinstance(names, str) else list(names)
    choices = list(dict.fromkeys(available))
    hints = [match for name in unknown for match in _close_matches(name, choices)]
    text = f"unknown {kind} {', '.join(repr(name) for name in unknown)}"
    if hints:
        text += f" (did you mean {', '.join(repr(hint) for hint in dict.fromkeys(hints))}?)"
    if where:
        text += f" {where}"
    return f"{text}, available: {', '.join(choices) or '(none)'}"


def _close_matches(name: str, choices: list[str]) -> list[str]:
    """The names that ``name`` abbreviates (at most 3), else the one most similar to it, if any is close."""
    starting = [choice for choice in choices if name and choice.startswith(name)]
    return starting[:3] if starting else difflib.get_close_matches(name, choices, n=1, cutoff=0.6)


class MissingModule(types.ModuleType):
    """Stands in for a module that is not installed; any attribute access raises a clear ImportError."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(name)
        self._reason = reason

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise ImportError(f"module '{self.__name__}' is not available in this environment ({self._reason})")

    def __bool__(self) -> bool:
        return False


class LazyModule(types.ModuleType):
    """Stands in for a module that is imported (with :func:`maybe_import`) on the first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._module: Any = None

    def _load(self) -> Any:
        if self._module is None:
            self._module = maybe_import(self.__name__)
        return self._module

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._load(), attr)

    def __bool__(self) -> bool:
        return bool(self._load())


def lazy_import(name: str) -> Any:
    """Like :func:`maybe_import`, but the import happens on first use, not when the calling module is imported.

    For a package that is installed in the base environment but needed only by some tasks (e.g. onnxruntime,
    0.2 s and 30 MB to import): modules that merely define a model do not pay for it.

    Example:
        >>> ort = lazy_import("onnxruntime")  # doctest: +SKIP
        >>> session = ort.InferenceSession("model.onnx")  # imported here  # doctest: +SKIP
    """
    return LazyModule(name)


def maybe_import(name: str) -> Any:
    """Import a module if it is installed, otherwise return a placeholder that fails only when used.

    This lets a model module be imported in the base environment (for ``law index`` and task
    definitions) while its heavy dependencies (TensorFlow, onnxruntime) only exist in its sandbox.

    Example:
        >>> tf = maybe_import("tensorflow")  # doctest: +SKIP
        >>> bool(tf)  # False outside the TF sandbox  # doctest: +SKIP
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        return MissingModule(name, str(error))


def import_object(dotted: str) -> Any:
    """Import ``"package.module:attribute"`` or ``"package.module.attribute"`` and return the attribute."""
    if ":" in dotted:
        module_name, attr = dotted.split(":", 1)
    else:
        module_name, _, attr = dotted.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"'{dotted}' is not a dotted import path like 'package.module:attribute'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module '{module_name}' has no attribute '{attr}' (from '{dotted}')") from None


_BRACE_PATTERN = re.compile(r"\{([^{}]*)\}")


def brace_expand(pattern: str) -> list[str]:
    """Expand shell-like braces: ``"ml.{test,dnn}"`` -> ``["ml.test", "ml.dnn"]``.

    Several brace groups expand to their product; text without braces is returned as one item.
    """
    parts = _BRACE_PATTERN.split(pattern)
    # split() alternates literal text and brace contents
    choices = [[part] if i % 2 == 0 else part.split(",") for i, part in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def split_outside_braces(text: str, separator: str = ",") -> list[str]:
    """Split ``text`` at separators that are not inside braces: ``"a,b.{c,d}"`` -> ``["a", "b.{c,d}"]``."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == separator and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def expand_list(values: Iterable[str]) -> list[str]:
    """Brace-expand and strip every item of a list, dropping empty items."""
    return [item.strip() for value in values for item in brace_expand(value) if item.strip()]


def expand_path(path: str) -> str:
    """Expand environment variables and ``~`` in a path; an undefined variable is an error."""
    expanded = os.path.expanduser(os.path.expandvars(path))
    if "$" in expanded:
        raise UserError(f"path '{path}' references an undefined environment variable (expanded to '{expanded}')")
    return expanded


def dev_sandbox(sandbox: str) -> str:
    """The sandbox itself: columnflow's development variants of sandboxes do not exist here (ported code keeps it).

    Example:
        >>> dev_sandbox("bash::$CF_BASE/sandboxes/venv_ml_tf.sh")
        'bash::$CF_BASE/sandboxes/venv_ml_tf.sh'
    """
    return sandbox


def short_hash(value: Any, length: int = 10) -> str:
    """A stable short hash of a JSON-serialisable value (dict keys are sorted)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class TextEnum(str, enum.Enum):
    """An enum of texts that prints as its value (``str(FlowStrategy.move) == "move"``), like 3.11's ``StrEnum``."""

    def __str__(self) -> str:
        return self.value


class DotDict(dict):
    """A dict whose items are also attributes (``d.key``)."""

    def __getattr__(self, attr: str) -> Any:
        try:
            return self[attr]
        except KeyError:
            raise AttributeError(attr) from None

    def __setattr__(self, attr: str, value: Any) -> None:
        self[attr] = value


def is_regex(pattern: str) -> bool:
    """Whether a name pattern is a regular expression: it starts with ``^`` and ends with ``$``."""
    return pattern.startswith("^") and pattern.endswith("$")


def is_pattern(pattern: str) -> bool:
    """Whether a name pattern is an fnmatch pattern (it has one of ``*?[``)."""
    return any(char in pattern for char in "*?[")


def pattern_matcher(
    pattern: str | Iterable[str], mode: Callable[[Iterable[bool]], bool] = any
) -> Callable[[str], bool]:
    """A test of names against a pattern, as columnflow's ``pattern_matcher``.

    A pattern is a plain name, an fnmatch pattern (``tt_*``) or a regular expression (``^tt_(sl|dl)$``); a
    leading ``!`` inverts it. Several patterns are combined with ``mode`` (``any`` or ``all``).

    Example:
        >>> matches = pattern_matcher(["tt_*", "!*_dl"], mode=all)
        >>> matches("tt_sl"), matches("tt_dl")
        (True, False)
    """
    if not isinstance(pattern, str):
        matchers = [pattern_matcher(item) for item in pattern]
        return lambda name: mode(matcher(name) for matcher in matchers)
    if pattern.startswith("!"):
        inner = pattern_matcher(pattern[1:])
        return lambda name: not inner(name)
    if is_regex(pattern):
        regex = re.compile(pattern)
        return lambda name: regex.match(name) is not None
    return lambda name: fnmatch.fnmatchcase(name, pattern)
