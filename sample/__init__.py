"""Embedded default sample: a deterministic generator of NanoAOD-layout ROOT files."""

from __future__ import annotations

from sample.generate import (
    PROCESS_GENERATORS,
    create_file,
    draw_counts,
    generate_events,
    write_nanoaod,
)
from sample.layouts import LAYOUTS, apply_layout

__all__ = [
    "PROCESS_GENERATORS",
    "LAYOUTS",
    "apply_layout",
    "create_file",
    "draw_counts",
    "generate_events",
    "write_nanoaod",
]
