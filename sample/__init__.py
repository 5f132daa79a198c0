"""Embedded default sample: a deterministic generator of NanoAOD-layout ROOT files.

The names below are imported on first use: the analysis' config reads only ``sample.physics`` (cross sections,
resonance masses), and every ``law run`` imports the config, so the generator and uproot's writer stay out of the
runs that do not generate files (~0.3 s).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PROCESS_GENERATORS",
    "LAYOUTS",
    "apply_layout",
    "create_file",
    "draw_counts",
    "generate_events",
    "write_nanoaod",
]

#: The module that defines each name of ``__all__``.
_MODULES = dict.fromkeys(__all__, "sample.generate") | {
    "LAYOUTS": "sample.layouts",
    "apply_layout": "sample.layouts",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module 'sample' has no attribute '{name}'")
    return getattr(importlib.import_module(_MODULES[name]), name)
