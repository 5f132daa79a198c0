"""``Calibrator`` and ``@calibrator`` under columnflow's import path (``columnflow.calibration``), so ported code changes one word.

The implementation is ``cf.functions``, the one home of calibrators, selectors and producers.
"""

from __future__ import annotations

from cf.functions import Calibrator, calibrator

__all__ = ["Calibrator", "calibrator"]
