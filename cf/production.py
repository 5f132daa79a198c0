"""``Producer`` and ``@producer`` under columnflow's import path (``columnflow.production``), so ported code changes one word.

The implementation is ``cf.functions``, the one home of calibrators, selectors and producers.
"""

from __future__ import annotations

from cf.functions import Producer, producer

__all__ = ["Producer", "producer"]
