"""``Selector`` and ``@selector`` under columnflow's import path (``columnflow.selection``), so ported code changes one word.

The implementation is ``cf.functions``, the one home of calibrators, selectors and producers.
"""

from __future__ import annotations

from cf.functions import SelectionResult, Selector, selector

__all__ = ["Selector", "SelectionResult", "selector"]
