"""Embedded default sample: a deterministic generator of NanoAOD-layout ROOT files."""

from __future__ import annotations

from analysis_template.sample.generate import (
    PROCESS_GENERATORS,
    create_file,
    draw_counts,
    generate_events,
    write_nanoaod,
)
from analysis_template.sample.layouts import LAYOUTS, apply_layout

__all__ = [
    "PROCESS_GENERATORS",
    "LAYOUTS",
    "apply_layout",
    "create_file",
    "draw_counts",
    "generate_events",
    "write_nanoaod",
]
