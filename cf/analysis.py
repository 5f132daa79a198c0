"""Loading what law.cfg names: the analysis object and the modules of column functions and models.

The framework never imports the analysis packages by name; it follows the dotted paths in the
``[analysis]`` section of law.cfg, so a fork that renames its packages only edits law.cfg.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import law

from cf.util import UserError, expand_list, import_object, split_outside_braces, unknown_name_message

__all__ = [
    "analysis_setting",
    "get_child",
    "get_config",
    "get_dataset",
    "get_shift",
    "load_analysis",
    "load_modules",
]


def analysis_setting(key: str, default: Any = None) -> Any:
    """A value of law.cfg's ``[analysis]`` section (environment variables expanded)."""
    return law.config.get_expanded("analysis", key, default)


@functools.cache
def load_analysis() -> Any:
    """The order analysis named by ``default_analysis`` in law.cfg (a dotted path to the object)."""
    path = analysis_setting("default_analysis")
    if not path:
        raise UserError("law.cfg has no [analysis] default_analysis (a dotted path such as 'pkg.config.analysis.ana')")
    return import_object(path)


@functools.cache
def load_modules(key: str) -> tuple[str, ...]:
    """Import the modules listed under ``key`` in law.cfg (comma separated, braces expanded).

    Args:
        key: e.g. "calibration_modules", "ml_modules".

    Returns:
        The names of the imported modules.
    """
    names = expand_list(split_outside_braces(str(analysis_setting(key, "") or "")))
    for name in names:
        importlib.import_module(name)
    return tuple(names)


def get_child(parent: Any, kind: str, name: str) -> Any:
    """The ``kind`` ("config", "dataset", "shift", "category", ...) called ``name`` of an order object.

    Raises:
        UserError: If there is none; the message lists the available names.
    """
    if not getattr(parent, f"has_{kind}")(name):
        plural = "categories" if kind == "category" else f"{kind}s"
        available = sorted(child.name for child in getattr(parent, plural))
        parent_kind = type(parent).__name__.lower()
        raise UserError(unknown_name_message(kind, name, available, f"in {parent_kind} '{parent.name}'"))
    return getattr(parent, f"get_{kind}")(name)


def get_config(analysis_inst: Any, name: str) -> Any:
    """The analysis' config ``name``; an unknown name is an error listing the configs."""
    return get_child(analysis_inst, "config", name)


def get_dataset(config_inst: Any, name: str) -> Any:
    """The config's dataset ``name``; an unknown name is an error listing the datasets."""
    return get_child(config_inst, "dataset", name)


def get_shift(config_inst: Any, name: str) -> Any:
    """The config's shift ``name``; an unknown name is an error listing the shifts."""
    return get_child(config_inst, "shift", name)
