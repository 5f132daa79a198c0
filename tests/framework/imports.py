"""Static import analysis of Python files (with ``ast``), shared by the framework tests."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

__all__ = ["imported_modules", "top_level_imports"]


def imported_modules(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """The absolute names of the modules a file imports, with their line numbers.

    ``from a import b`` gives ``a`` and, where ``a`` is a top-level package, also ``a.b`` (which may be a module);
    relative imports are resolved against the file's package (its directory below ``root``).

    Args:
        path: The Python file.
        root: The directory its top-level package is in (the repository root).
    """
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = (node.module or "") if node.level == 0 else ".".join(filter(None, [base, node.module]))
            yield node.lineno, module
            if "." not in module:
                yield from ((node.lineno, f"{module}.{alias.name}") for alias in node.names)


def top_level_imports(files: list[Path], root: Path) -> set[str]:
    """The top-level names of all modules the files import (``numpy`` for ``numpy.typing``)."""
    return {module.split(".", 1)[0] for path in files for _, module in imported_modules(path, root)}
