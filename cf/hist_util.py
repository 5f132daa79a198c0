"""Reading the merged histograms: one category and shift of a variable, with one policy for the flow bins.

A histogram of ``cf.CreateHistograms`` has the axes ``category`` (the category ids), ``shift`` (the shift names)
and the variable. Plots, datacards and pyhf workspaces all take their numbers from :func:`select_histogram`,
so a plotted stack and a datacard of the same category show the same yields.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cf.util import TextEnum, UserError

__all__ = ["DEFAULT_FLOW_STRATEGY", "FlowStrategy", "flow_yields", "select_histogram"]

logger = logging.getLogger(__name__)


class FlowStrategy(TextEnum):
    """What happens to the under- and overflow of a histogram when its bins are read.

    Attributes:
        ignore: Left out.
        warn: Left out, with a warning naming the fraction.
        remove: Left out (columnflow also zeroes them in its files; here shapes files have no flow bins).
        move: Added to the first / last bin, so that the yields are the category's totals (the default here).
    """

    ignore = "ignore"
    warn = "warn"
    remove = "remove"
    move = "move"


#: The flow policy of plots and of inference categories that set none.
DEFAULT_FLOW_STRATEGY = FlowStrategy.move


def select_histogram(
    histogram: Any,
    category_id: int,
    shift: str,
    flow: FlowStrategy | str = DEFAULT_FLOW_STRATEGY,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One category and shift of a merged histogram: ``(values, variances, edges)`` of the visible bins.

    With the ``move`` flow strategy the underflow is added to the first bin and the overflow to the last one,
    so the yields are the totals of the category; otherwise the flow bins are left out (``warn`` logs their
    share). A category without entries gives zeros.

    Raises:
        UserError: If the histogram has no entry for the shift (its task ran another one).
    """
    axis = histogram.axes[-1]
    edges = np.asarray(axis.edges, dtype=np.float64)
    values, variances = _with_flow(histogram, category_id, shift)
    strategy = FlowStrategy(flow)
    if strategy is FlowStrategy.warn:
        _warn_flow(values, axis, category_id, shift)
    move = strategy is FlowStrategy.move
    return _visible(values, axis, move), _visible(variances, axis, move), edges


def flow_yields(histogram: Any, category_id: int, shift: str) -> tuple[float, float]:
    """``(underflow, overflow)`` of one category and shift (0 where the axis has no such bin)."""
    axis = histogram.axes[-1]
    values, _ = _with_flow(histogram, category_id, shift)
    under = float(values[0]) if axis.traits.underflow else 0.0
    over = float(values[-1]) if axis.traits.overflow else 0.0
    return under, over


def _with_flow(histogram: Any, category_id: int, shift: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and variances including the flow bins; zeros for a category without entries."""
    import hist

    axis = histogram.axes[-1]
    shifts = list(histogram.axes["shift"])
    if shift not in shifts:
        raise UserError(f"the histogram of '{axis.name}' has no shift '{shift}', only: {', '.join(shifts) or '(none)'}")
    if category_id not in list(histogram.axes["category"]):
        return np.zeros(axis.extent), np.zeros(axis.extent)
    view = histogram[{"category": hist.loc(category_id), "shift": hist.loc(shift)}]
    values = np.asarray(view.values(flow=True), dtype=np.float64)
    variances = view.variances(flow=True)
    variances = values.copy() if variances is None else np.asarray(variances, dtype=np.float64)
    return values, variances


def _visible(values: np.ndarray, axis: Any, move_flow: bool) -> np.ndarray:
    traits = axis.traits
    start = 1 if traits.underflow else 0
    stop = len(values) - (1 if traits.overflow else 0)
    visible = values[start:stop].copy()
    if move_flow and traits.underflow:
        visible[0] += values[0]
    if move_flow and traits.overflow:
        visible[-1] += values[-1]
    return visible


def _warn_flow(values: np.ndarray, axis: Any, category_id: int, shift: str) -> None:
    total = float(np.sum(values))
    flow = (values[0] if axis.traits.underflow else 0.0) + (values[-1] if axis.traits.overflow else 0.0)
    if flow and total:
        logger.warning(
            f"{100 * flow / total:.1f}% of the yield of '{axis.name}' (category id {category_id}, shift {shift}) lies "
            "in its flow bins and is left out (flow_strategy 'move' keeps it)",
        )
