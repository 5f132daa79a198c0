"""Pure plotting and metric functions: numpy arrays in, matplotlib figures and numbers out (no law, no tasks).

The tasks in :mod:`cf.tasks.plotting` collect the inputs (histograms, scores, training histories) and call
these functions; keeping them free of law makes them unit-testable with hand-made arrays.

* Stack plots: :func:`plot_stack` draws stacked backgrounds, scaled signal lines and data points with Garwood
  (Poisson) error bars, plus a data / MC ratio panel with the MC statistical uncertainty band.
* ML metrics: :func:`roc_curve`, :func:`auc`, :func:`mean_roc` and :func:`confusion_matrix` (weighted, numpy only).
* ML figures: :func:`plot_roc`, :func:`plot_confusion_matrix`, :func:`plot_score_distributions`,
  :func:`plot_loss_curves` and :func:`plot_scan` (a metric per point of a hyperparameter scan).
* Grouping: :func:`top_level_process` and :func:`group_datasets` put datasets into the config's processes.

Figures use the CMS style of mplhep inside a style context and are plain ``matplotlib.figure.Figure`` objects,
drawn without pyplot: importing this module changes no global state (backend, rcParams, loggers).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.style
import mplhep as hep
import numpy as np
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import MaxNLocator

from cf.contract import is_signal
from cf.io import atomic_path

__all__ = [
    "HistComponent",
    "StackResult",
    "auc",
    "confusion_matrix",
    "format_scale",
    "group_datasets",
    "is_signal",
    "mean_roc",
    "plot_confusion_matrix",
    "plot_loss_curves",
    "plot_roc",
    "plot_scan",
    "plot_score_distributions",
    "plot_stack",
    "poisson_interval",
    "roc_curve",
    "save_figure",
    "signal_scale_for",
    "top_level_process",
]

#: Central coverage of the data error bars (one standard deviation).
ONE_SIGMA = 0.682689492137086
#: Largest count whose Poisson interval is solved exactly (above: Wilson-Hilferty approximation).
EXACT_POISSON_LIMIT = 100
#: Label text next to "CMS".
CMS_TEXT = "Private Work"
#: Colors used when a process or class has none.
FALLBACK_COLORS = ("#5790fc", "#f89c20", "#e42536", "#964a8b", "#9c9ca1", "#7a21dd", "#3f90da", "#b9ac70")


# grouping of datasets into the config's processes


@contextlib.contextmanager
def cms_style() -> Iterator[None]:
    """The CMS style of mplhep for the figures made and drawn inside, without its font warnings.

    The style asks for fonts that may be missing; matplotlib's fallback is fine, so its font manager's warnings
    are silenced for the duration (and restored after).
    """
    font_logger = logging.getLogger("matplotlib.font_manager")
    level = font_logger.level
    font_logger.setLevel(logging.ERROR)
    try:
        with matplotlib.style.context(hep.style.CMS):
            yield
    finally:
        font_logger.setLevel(level)


def new_figure(
    figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, layout: Any = None, **subplot_kwargs: Any
) -> tuple[Figure, Any]:
    """A figure (without pyplot, so no global figure registry) and its axes, as ``plt.subplots`` returns them."""
    figure = Figure(figsize=figsize, layout=layout)
    return figure, figure.subplots(nrows, ncols, **subplot_kwargs)


def top_level_process(config_inst: Any, process_inst: Any) -> Any:
    """The process of the config (added with ``config.add_process``) that is ``process_inst`` or its ancestor.

    Raises:
        ValueError: If neither the process nor any of its ancestors is a direct process of the config.
    """
    pending = [process_inst]
    seen: set[str] = set()
    while pending:
        process = pending.pop(0)
        if process.name in seen:
            continue
        seen.add(process.name)
        if config_inst.has_process(process.name, deep=False):
            return config_inst.get_process(process.name, deep=False)
        pending.extend(process.parent_processes)
    top = ", ".join(process.name for process in config_inst.processes)
    raise ValueError(
        f"process '{process_inst.name}' is not below any process of config '{config_inst.name}' ({top})",
    )


def group_datasets(config_inst: Any, dataset_names: Sequence[str]) -> dict[str, list[str]]:
    """Group datasets by the top-level process of their (first) process, in the config's process order.

    Args:
        config_inst: The order config.
        dataset_names: Names of datasets of the config.

    Returns:
        ``{top-level process name: [dataset names in the given order]}``; processes without datasets are left out.
    """
    groups: dict[str, list[str]] = {process.name: [] for process in config_inst.processes}
    for name in dataset_names:
        dataset_inst = config_inst.get_dataset(name)
        groups[top_level_process(config_inst, dataset_inst.processes.get_first()).name].append(name)
    return {process: names for process, names in groups.items() if names}


# statistics


def poisson_interval(counts: np.ndarray, coverage: float = ONE_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """The Garwood (central, frequentist) interval of Poisson means for observed counts.

    The bounds solve ``P(N >= n | lower) = P(N <= n | upper) = (1 - coverage) / 2`` by bisection on the Poisson
    cumulative distribution (counts are rounded to integers; the lower bound of 0 counts is 0). Above
    :data:`EXACT_POISSON_LIMIT` counts the Wilson-Hilferty approximation of the chi-squared quantiles is used
    (relative precision better than 2e-5, i.e. 1e-4 of the error bar).

    Args:
        counts: Observed counts (non-negative).
        coverage: Central coverage of the interval.

    Returns:
        ``(lower, upper)`` bounds on the mean, arrays of the shape of ``counts``.
    """
    n = np.rint(np.asarray(counts, dtype=np.float64)).clip(min=0)
    alpha = 0.5 * (1.0 - coverage)
    lower = np.zeros_like(n)
    upper = np.zeros_like(n)
    flat_n, flat_lo, flat_hi = n.ravel(), lower.ravel(), upper.ravel()
    large = flat_n > EXACT_POISSON_LIMIT
    if large.any():
        z = _normal_quantile(1.0 - alpha)
        k_lo, k_hi = 2 * flat_n[large], 2 * flat_n[large] + 2
        flat_lo[large] = 0.5 * k_lo * (1 - 2 / (9 * k_lo) - z * np.sqrt(2 / (9 * k_lo))) ** 3
        flat_hi[large] = 0.5 * k_hi * (1 - 2 / (9 * k_hi) + z * np.sqrt(2 / (9 * k_hi))) ** 3
    small = ~large
    if small.any():
        ns = flat_n[small].astype(np.int64)
        # upper: P(N <= n | upper) = alpha; lower: P(N >= n | lower) = alpha, i.e. P(N <= n - 1 | lower) = 1 - alpha
        flat_hi[small] = _solve_poisson_cdf(ns, alpha)
        lo = np.zeros(len(ns))
        positive = ns > 0
        lo[positive] = _solve_poisson_cdf(ns[positive] - 1, 1.0 - alpha)
        flat_lo[small] = lo
    return flat_lo.reshape(n.shape), flat_hi.reshape(n.shape)


def _normal_quantile(p: float) -> float:
    """The standard normal quantile by bisection on ``math.erf`` (precise to ~1e-12)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < p:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def _poisson_cdf(k: np.ndarray, lam: np.ndarray, log_factorial: np.ndarray) -> np.ndarray:
    """``P(N <= k)`` for Poisson means ``lam`` (one k per lam), summed in log space."""
    terms = np.arange(log_factorial.size)
    with np.errstate(divide="ignore"):
        log_lam = np.log(lam)[:, None]
    log_terms = np.where(terms[None, :] <= k[:, None], terms * log_lam - lam[:, None] - log_factorial, -np.inf)
    # lam = 0: only the k = 0 term (0 * log 0 := 0) contributes, with probability 1
    log_terms[:, 0] = -lam
    peak = log_terms.max(axis=1, keepdims=True)
    return np.exp(peak[:, 0]) * np.exp(log_terms - peak).sum(axis=1)


def _solve_poisson_cdf(k: np.ndarray, goal: float) -> np.ndarray:
    """The mean ``lam`` with ``P(N <= k | lam) = goal`` (the CDF decreases in lam), by bisection."""
    if k.size == 0:
        return np.zeros(0)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, int(k.max()) + 1)))])
    low = np.zeros(len(k))
    high = k + 10.0 * np.sqrt(k + 1.0) + 10.0
    for _ in range(80):
        mid = 0.5 * (low + high)
        above = _poisson_cdf(k, mid, log_factorial) > goal
        low = np.where(above, mid, low)
        high = np.where(above, high, mid)
    return 0.5 * (low + high)


def roc_curve(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve of a discriminant: background efficiency (fpr) against signal efficiency (tpr).

    One point per distinct score value (events with equal scores enter together, so ties lie on a straight
    segment), starting at ``(0, 0)`` and ending at ``(1, 1)``.

    Args:
        scores: The discriminant per event (higher is more signal-like).
        labels: True (or 1) for signal events.
        weights: Optional event weights (pass ``abs`` of physics weights).

    Returns:
        ``(fpr, tpr)``, non-decreasing arrays of equal length.

    Raises:
        ValueError: If the lengths differ or signal or background has no positive total weight.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_signal = np.asarray(labels).astype(bool)
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    if not len(scores) == len(is_signal) == len(weights):
        raise ValueError(
            f"scores, labels and weights differ in length: {len(scores)}, {len(is_signal)}, {len(weights)}"
        )
    order = np.argsort(-scores, kind="mergesort")
    scores, is_signal, weights = scores[order], is_signal[order], weights[order]
    signal = np.cumsum(np.where(is_signal, weights, 0.0))
    background = np.cumsum(np.where(is_signal, 0.0, weights))
    if not (len(scores) and signal[-1] > 0 and background[-1] > 0):
        raise ValueError("a ROC curve needs signal and background events with a positive total weight")
    last_of_value = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tpr = np.r_[0.0, signal[last_of_value] / signal[-1]]
    fpr = np.r_[0.0, background[last_of_value] / background[-1]]
    return fpr, tpr


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The area under a ROC curve (trapezoidal rule; ties count 1/2 as in the Mann-Whitney statistic)."""
    return float(np.trapezoid(np.asarray(tpr, dtype=np.float64), np.asarray(fpr, dtype=np.float64)))


def mean_roc(
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    n_points: int = 201,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean and standard deviation of ROC curves, interpolated on a common background-efficiency grid.

    A curve that rises vertically at zero background efficiency keeps that rise: the grid starts with the
    point ``(0, 0)`` followed by the curves' values at ``fpr = 0`` (their highest signal efficiency there).

    Returns:
        ``(fpr grid, mean tpr, std tpr)`` with ``n_points + 1`` entries, from ``(0, 0)`` to ``(1, 1)``.
    """
    grid = np.linspace(0.0, 1.0, n_points)
    # np.interp takes the last of repeated fpr values: the top of a vertical segment
    stacked = np.stack([np.interp(grid, fpr, tpr) for fpr, tpr in curves])
    return np.r_[0.0, grid], np.r_[0.0, stacked.mean(axis=0)], np.r_[0.0, stacked.std(axis=0)]


def confusion_matrix(
    true_labels: np.ndarray,
    predicted_labels: np.ndarray,
    n_classes: int,
    weights: np.ndarray | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """The (weighted) confusion matrix: rows are the true classes, columns the predicted ones.

    Args:
        true_labels: The true class (0 ... n_classes - 1) of each event.
        predicted_labels: The predicted class of each event (e.g. the argmax of the scores).
        n_classes: The number of classes.
        weights: Optional event weights.
        normalize: Divide each row by its sum (a row without events stays all zero).

    Returns:
        An array of shape ``(n_classes, n_classes)``.
    """
    true_labels = np.asarray(true_labels, dtype=np.int64)
    predicted_labels = np.asarray(predicted_labels, dtype=np.int64)
    weights = np.ones(len(true_labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    for name, values in (("true", true_labels), ("predicted", predicted_labels)):
        if len(values) and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} labels must lie in 0 ... {n_classes - 1}")
    flat = np.bincount(true_labels * n_classes + predicted_labels, weights=weights, minlength=n_classes**2)
    matrix = flat.reshape(n_classes, n_classes)
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals != 0)
    return matrix


# figures


@dataclass
class HistComponent:
    """One histogrammed process of a stack plot.

    Attributes:
        label: The legend label.
        values: The bin contents (visible bins only).
        variances: The variances of the bin contents (None: no MC uncertainty).
        color: Any matplotlib color (None: a fallback color).
    """

    label: str
    values: np.ndarray
    variances: np.ndarray | None = None
    color: Any = None


@dataclass
class StackResult:
    """What :func:`plot_stack` drew, for checks and json dumps.

    Attributes:
        figure: The figure.
        stack_bottoms: Per background (bottom to top), the lower edge of its bars in each bin.
        stack_tops: Per background, the upper edge (bottom + its values).
        background_total: The stacked total of all backgrounds.
        background_variance: Its variance (sum of the components' variances).
        signal_scale: The factor the signals were drawn with.
        ratio: Data / background per bin (NaN where the background is not positive); None without data.
    """

    figure: Figure
    stack_bottoms: list[np.ndarray] = field(default_factory=list)
    stack_tops: list[np.ndarray] = field(default_factory=list)
    background_total: np.ndarray = field(default_factory=lambda: np.zeros(0))
    background_variance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    signal_scale: float = 1.0
    ratio: np.ndarray | None = None


def format_scale(scale: float) -> str:
    r"""A signal scale factor for a legend: ``1000`` -> ``$\times 10^{3}$``, ``50`` -> ``$\times 50$``."""
    if scale <= 0 or not math.isfinite(scale):
        raise ValueError(f"the signal scale must be a positive number, got {scale}")
    exponent = math.log10(scale)
    if scale >= 1000 and abs(exponent - round(exponent)) < 1e-9:
        return rf"$\times 10^{{{round(exponent)}}}$"
    return rf"$\times {scale:g}$"


def signal_scale_for(background_sum: float, signal_sum: float) -> float:
    """A power of ten that makes a signal of ``signal_sum`` events visible next to ``background_sum``.

    It is the largest power of ten with ``scale * signal_sum <= background_sum`` (at least 1), so that the
    scaled signal yield lies between 10% and 100% of the background yield.
    """
    if signal_sum <= 0 or background_sum <= signal_sum:
        return 1.0
    return float(10 ** math.floor(math.log10(background_sum / signal_sum)))


def _draw_stack(ax: Any, edges: np.ndarray, backgrounds: Sequence[HistComponent], result: StackResult) -> list[Any]:
    """Stack the backgrounds (first at the bottom) with the hatched MC uncertainty band; legend handles, top first."""
    bottom = np.zeros(len(edges) - 1)
    variance = np.zeros(len(edges) - 1)
    handles: list[Any] = []
    for i, component in enumerate(backgrounds):
        top = bottom + np.asarray(component.values, dtype=np.float64)
        color = component.color if component.color is not None else FALLBACK_COLORS[i % len(FALLBACK_COLORS)]
        handles.append(
            ax.stairs(top, edges, baseline=bottom, fill=True, color=color, label=component.label, edgecolor="none")
        )
        ax.stairs(top, edges, baseline=bottom, color="black", linewidth=0.6)
        result.stack_bottoms.append(bottom)
        result.stack_tops.append(top)
        if component.variances is not None:
            variance = variance + np.asarray(component.variances, dtype=np.float64)
        bottom = top
    result.background_total, result.background_variance = bottom, variance
    handles = handles[::-1]
    if backgrounds:
        uncertainty = np.sqrt(variance)
        handles.append(
            ax.stairs(
                bottom + uncertainty,
                edges,
                baseline=bottom - uncertainty,
                fill=True,
                facecolor="none",
                edgecolor="#555555",
                hatch="///",
                linewidth=0,
                label="MC stat. unc.",
            )
        )
    return handles


def _draw_ratio(
    rax: Any,
    edges: np.ndarray,
    counts: np.ndarray,
    interval: tuple[np.ndarray, np.ndarray],
    result: StackResult,
    limits: tuple[float, float],
) -> None:
    """Data / MC points with the data errors, and the MC statistical uncertainty as a band around 1."""
    total, variance = result.background_total, result.background_variance
    low, high = interval
    positive = total > 0
    safe_total = np.where(positive, total, 1.0)
    ratio = np.where(positive, counts / safe_total, np.nan)
    relative = np.where(positive, np.sqrt(variance) / safe_total, 0.0)
    result.ratio = ratio
    rax.stairs(1 + relative, edges, baseline=1 - relative, fill=True, color="#bbbbbb", alpha=0.8, linewidth=0)
    rax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    shown = positive & (counts > 0)
    centers = 0.5 * (edges[1:] + edges[:-1])
    errors = [(counts - low)[shown] / total[shown], (high - counts)[shown] / total[shown]]
    rax.errorbar(centers[shown], ratio[shown], yerr=errors, fmt="o", color="black", markersize=5, capsize=0)
    rax.set_ylim(*limits)
    rax.set_ylabel("Data / MC", loc="center")


def _set_y_range(ax: Any, ymax: float, total: np.ndarray, n_legend_rows: int, log_y: bool) -> None:
    """Leave room above the highest bin for the legend (``n_legend_rows`` rows) and the labels."""
    if log_y:
        positive = total[total > 0]
        ymin = 0.5 * float(positive.min()) if positive.size else 0.1
        ymin = max(ymin, 1e-3 * ymax) if ymax > 0 else 0.1
        ax.set_yscale("log")
        decades = math.log10(max(ymax, 10 * ymin) / ymin)
        ax.set_ylim(ymin, ymin * 10 ** (decades * (1.0 + 0.12 * (n_legend_rows + 1))))
    else:
        ax.set_ylim(0.0, max(ymax, 1e-9) * (1.15 + 0.13 * (n_legend_rows + 1)))


def plot_stack(
    edges: np.ndarray,
    backgrounds: Sequence[HistComponent],
    signals: Sequence[HistComponent] = (),
    data: HistComponent | None = None,
    *,
    x_label: str = "",
    y_label: str = "Events / bin",
    signal_scale: float = 1.0,
    lumi_fb: float | None = None,
    com: float | str = 13,
    category_label: str = "",
    log_y: bool = False,
    ratio_limits: tuple[float, float] = (0.4, 1.6),
) -> StackResult:
    """Stacked backgrounds, signal lines (scaled) and data points, with a data / MC ratio panel.

    The backgrounds are stacked in the given order (the first at the bottom) and listed in the legend from
    the top of the stack; their summed statistical uncertainty is a hatched band on the stack and a grey
    band around 1 in the ratio panel. Data points carry Garwood error bars; empty data bins are not drawn.

    Args:
        edges: The bin edges (``len(values) + 1``).
        backgrounds: The stacked processes, bottom first.
        signals: Processes drawn as lines (not stacked), multiplied by ``signal_scale``.
        data: The observed counts (None: no data points and no ratio panel).
        x_label: The x-axis title (e.g. ``variable.get_full_x_title()``).
        y_label: The y-axis title.
        signal_scale: The factor applied to the signals (shown in their legend entries).
        lumi_fb: The integrated luminosity in fb^-1 for the CMS label (None: not shown).
        com: The centre-of-mass energy in TeV.
        category_label: Text drawn in the upper left corner of the plot.
        log_y: Logarithmic y axis.
        ratio_limits: The y range of the ratio panel.

    Returns:
        The figure and the drawn arrays.
    """
    edges = np.asarray(edges, dtype=np.float64)
    n_bins = len(edges) - 1
    for component in (*backgrounds, *signals, *([data] if data is not None else [])):
        if len(component.values) != n_bins:
            raise ValueError(f"'{component.label}' has {len(component.values)} bins, the edges give {n_bins}")
    with cms_style():
        if data is not None:
            figure, (ax, rax) = new_figure(
                (10, 10), 2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06}
            )
        else:
            figure, ax = new_figure((10, 8))
            rax = None
        result = StackResult(figure=figure, signal_scale=signal_scale)
        handles = _draw_stack(ax, edges, backgrounds, result)
        total = result.background_total
        ymax = float(total.max(initial=0.0))

        for i, component in enumerate(signals):
            values = signal_scale * np.asarray(component.values, dtype=np.float64)
            color = component.color if component.color is not None else FALLBACK_COLORS[-1 - i]
            label = component.label + (f" {format_scale(signal_scale)}" if signal_scale != 1 else "")
            handles.append(ax.stairs(values, edges, color=color, linewidth=2.5, label=label))
            ymax = max(ymax, float(values.max(initial=0.0)))

        if data is not None:
            counts = np.asarray(data.values, dtype=np.float64)
            low, high = poisson_interval(counts)
            shown = counts > 0
            centers = 0.5 * (edges[1:] + edges[:-1])
            errors = [(counts - low)[shown], (high - counts)[shown]]
            points = ax.errorbar(
                centers[shown], counts[shown], yerr=errors, fmt="o", color="black", markersize=6, capsize=0
            )
            points.set_label(data.label)
            handles.insert(0, points)
            ymax = max(ymax, float(high[shown].max(initial=0.0)))

        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylabel(y_label)
        # the category label on the first line, the legend below it, both above the highest bin
        legend_top = 0.89 if category_label else 0.97
        _set_y_range(ax, ymax, total, math.ceil(len(handles) / 2) + (1 if category_label else 0), log_y)
        ax.legend(
            handles=handles, loc="upper right", bbox_to_anchor=(0.98, legend_top), ncols=2, fontsize=17, frameon=False
        )
        if category_label:
            ax.text(0.04, 0.96, category_label, transform=ax.transAxes, va="top", ha="left", fontsize=19)
        com_text = f"{com:g}" if isinstance(com, (int, float)) else com
        label_kwargs: dict[str, Any] = {"ax": ax, "text": CMS_TEXT, "data": data is not None, "com": com_text, "loc": 0}
        if lumi_fb is not None:
            label_kwargs.update(lumi=lumi_fb, lumi_format="{0:.3g}")
        hep.cms.label(**label_kwargs)

        if rax is not None and data is not None:
            _draw_ratio(rax, edges, counts, (low, high), result, ratio_limits)
            rax.set_xlabel(x_label)
            ax.set_xlabel("")
            figure.align_ylabels([ax, rax])
        else:
            ax.set_xlabel(x_label)
    return result


def _simulation_label(ax: Any, model_label: str) -> None:
    """The CMS simulation label; the model's name on the right instead of the energy when given."""
    if model_label:
        hep.cms.label(ax=ax, text=CMS_TEXT, data=False, loc=0, rlabel=model_label)
    else:
        hep.cms.label(ax=ax, text=CMS_TEXT, data=False, loc=0, com=13)


def plot_roc(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    mean: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    mean_label: str = "Mean",
    *,
    title: str = "",
    model_label: str = "",
    extra: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
) -> Figure:
    """ROC curves (signal efficiency against background efficiency) with a ±1 sigma band around the mean.

    Args:
        curves: ``(legend label, fpr, tpr)`` per curve, e.g. one per fold with the AUC in the label.
        mean: ``(fpr grid, mean tpr, std tpr)`` from :func:`mean_roc`, drawn thick with its band.
        mean_label: The legend label of the mean curve.
        title: Text in the upper left inside the axes (e.g. the signal class and the events).
        model_label: Text at the top right above the axes (e.g. the model name).
        extra: Further ``(label, fpr, tpr)`` curves drawn dashed (e.g. on the training events).
    """
    with cms_style():
        figure, ax = new_figure((10, 10))
        for i, (label, fpr, tpr) in enumerate(curves):
            ax.plot(fpr, tpr, color=FALLBACK_COLORS[i % len(FALLBACK_COLORS)], linewidth=1.5, label=label)
        for label, fpr, tpr in extra:
            ax.plot(fpr, tpr, color="#555555", linewidth=1.5, linestyle="--", label=label)
        if mean is not None:
            grid, tpr, std = mean
            ax.fill_between(grid, np.clip(tpr - std, 0, 1), np.clip(tpr + std, 0, 1), color="black", alpha=0.15)
            ax.plot(grid, tpr, color="black", linewidth=2.5, label=mean_label)
        ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1, label="Random")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("Background efficiency")
        ax.set_ylabel("Signal efficiency")
        ax.legend(loc="lower right", fontsize=17, frameon=False)
        if title:
            ax.text(0.96, 0.5, title, transform=ax.transAxes, va="center", ha="right", fontsize=19)
        _simulation_label(ax, model_label)
    return figure


def plot_confusion_matrix(
    matrix: np.ndarray,
    class_labels: Sequence[str],
    *,
    model_label: str = "",
    events_label: str = "",
) -> Figure:
    """A row-normalised confusion matrix as a colour map with the fraction in each cell.

    Args:
        matrix: Shape ``(n, n)``: rows the true classes, columns the predicted ones.
        class_labels: The class names (axis tick labels).
        model_label: Text at the top right above the matrix (e.g. the model name).
        events_label: Which events were classified, added to the colour bar title (e.g. ``held-out events``).
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(class_labels)
    with cms_style():
        # room above the axes for the CMS label, which the layout engine does not see
        layout = ConstrainedLayoutEngine(rect=(0.0, 0.0, 1.0, 0.95), w_pad=0.15)
        figure, ax = new_figure((11, 9.5), layout=layout)
        image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0, origin="upper")
        colorbar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        colorbar.set_label("Fraction of true class" + (f" ({events_label})" if events_label else ""))
        for (row, column), value in np.ndenumerate(matrix):
            color = "white" if value > 0.6 else "black"
            ax.text(column, row, f"{value:.3f}", ha="center", va="center", color=color, fontsize=22)
        ax.set_xticks(range(n), class_labels)
        ax.set_yticks(range(n), class_labels, rotation=90, va="center")
        ax.minorticks_off()
        ax.tick_params(axis="both", which="both", length=0)
        ax.set_xlabel("Predicted class (largest score)", loc="center")
        ax.set_ylabel("True class", loc="center")
        _simulation_label(ax, model_label)
    return figure


def _density(values: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A histogram normalised to unit area, and the statistical uncertainty of each bin."""
    sums, _ = np.histogram(values, bins=edges, weights=weights)
    squares, _ = np.histogram(values, bins=edges, weights=weights**2)
    norm = sums.sum() * np.diff(edges)
    if sums.sum() <= 0:
        return np.zeros_like(sums), np.zeros_like(sums)
    return sums / norm, np.sqrt(squares) / norm


def _score_panel(
    ax: Any,
    node_index: int,
    classes: Sequence[tuple[str, Any]],
    training: Mapping[str, tuple[np.ndarray, np.ndarray]],
    held_out: Mapping[str, tuple[np.ndarray, np.ndarray]],
    edges: np.ndarray,
) -> tuple[float, float]:
    """Draw one node's distributions; the largest and the smallest positive density drawn."""
    centers = 0.5 * (edges[1:] + edges[:-1])
    peak, smallest = 0.0, np.inf
    for class_index, (name, class_color) in enumerate(classes):
        color = class_color if class_color is not None else FALLBACK_COLORS[class_index % len(FALLBACK_COLORS)]
        if name in training:
            scores, weights = training[name]
            density, _ = _density(scores[:, node_index], weights, edges)
            ax.stairs(density, edges, fill=True, alpha=0.3, color=color, label=f"{name} (train)")
            ax.stairs(density, edges, color=color, linewidth=1.5)
            peak = max(peak, float(density.max(initial=0.0)))
            smallest = min(smallest, float(density[density > 0].min(initial=np.inf)))
        if name in held_out:
            scores, weights = held_out[name]
            density, error = _density(scores[:, node_index], weights, edges)
            shown = density > 0
            ax.errorbar(
                centers[shown],
                density[shown],
                yerr=error[shown],
                fmt="o",
                color=color,
                markeredgecolor="black",
                markeredgewidth=0.5,
                markersize=6,
                capsize=0,
                label=f"{name} (held-out)",
            )
            peak = max(peak, float((density + error).max(initial=0.0)))
            smallest = min(smallest, float(density[shown].min(initial=np.inf)))
    return peak, smallest


def plot_score_distributions(
    nodes: Sequence[str],
    classes: Sequence[tuple[str, Any]],
    training: Mapping[str, tuple[np.ndarray, np.ndarray]],
    held_out: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    bins: int = 20,
    model_label: str = "",
    log_y: bool = True,
) -> Figure:
    """Per output node, the score of each true class on training (filled) and held-out events (points).

    Every distribution is normalised to unit area, so that overtraining shows as a difference in shape.

    Args:
        nodes: The output nodes (one panel each, the x axis titled ``"<node> score"``).
        classes: ``(class name, color)`` of the true classes.
        training: ``{class name: (scores of shape (events, nodes), weights)}`` on training events.
        held_out: The same on held-out events.
        bins: Bins between 0 and 1.
        model_label: Text at the top right above each panel (e.g. the model name).
        log_y: Logarithmic y axes.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    with cms_style():
        figure, axes = new_figure((10 * len(nodes), 9), 1, len(nodes), squeeze=False)
        for node_index, (node, ax) in enumerate(zip(nodes, axes[0], strict=True)):
            peak, smallest = _score_panel(ax, node_index, classes, training, held_out, edges)
            ax.set_xlim(0.0, 1.0)
            ax.set_xlabel(f"{node} score")
            ax.set_ylabel("Normalised to unit area")
            if log_y and peak > 0:
                ax.set_yscale("log")
                low = max(0.5 * smallest, peak * 1e-4) if np.isfinite(smallest) else peak * 1e-4
                # a third of the height above the highest point for the legend
                ax.set_ylim(low, peak * (peak / low) ** 0.6)
            else:
                ax.set_ylim(0.0, max(peak, 1e-9) * 1.6)
            ax.legend(loc="upper center", ncols=2, fontsize=16, frameon=False)
            _simulation_label(ax, model_label)
        figure.tight_layout()
    return figure


def plot_loss_curves(histories: Mapping[int, Mapping[str, Sequence[float]]], *, model_label: str = "") -> Figure:
    """Training (solid) and validation (dashed) loss against the epoch, one colour per fold.

    Args:
        histories: ``{fold: {"loss": [...], "val_loss": [...]}}`` (Keras ``History.history``).
        model_label: Text at the top right above the axes (e.g. the model name).
    """
    with cms_style():
        figure, ax = new_figure((10, 8))
        # the legend's first column lists the training curves, the second the validation curves
        columns: dict[str, list[Any]] = {"loss": [], "val_loss": []}
        for fold, history in sorted(histories.items()):
            color = FALLBACK_COLORS[fold % len(FALLBACK_COLORS)]
            for key, style, kind in (("loss", "-", "training"), ("val_loss", "--", "validation")):
                values = history.get(key)
                if values:
                    epochs = np.arange(1, len(values) + 1)
                    label = f"Fold {fold} {kind}"
                    (line,) = ax.plot(epochs, values, linestyle=style, color=color, linewidth=2, label=label)
                    columns[key].append(line)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        low, high = ax.get_ylim()
        n_rows = max(len(lines) for lines in columns.values())
        ax.set_ylim(low, low + (high - low) * (1.1 + 0.1 * n_rows))
        handles = columns["loss"] + columns["val_loss"] if columns["val_loss"] else columns["loss"]
        ax.legend(handles=handles, loc="upper right", ncols=2 if columns["val_loss"] else 1, fontsize=16, frameon=False)
        _simulation_label(ax, model_label)
    return figure


def plot_scan(
    labels: Sequence[str],
    fold_values: Sequence[Sequence[float]],
    *,
    metric: str,
    best: int,
    model_label: str = "",
) -> Figure:
    """A metric per point of a hyperparameter scan: each fold's value (small markers) and their mean ± std.

    Args:
        labels: One label per point (its settings), written under the x axis.
        fold_values: Per point, the metric of each fold.
        metric: The metric's name (the y axis title).
        best: The index of the best point, drawn in another colour.
        model_label: Text at the top right above the axes (e.g. the model name).
    """
    with cms_style():
        figure, ax = new_figure((max(10.0, 1.2 * len(labels) + 4.0), 9), layout="constrained")
        points = np.arange(len(labels))
        for point, values in zip(points, fold_values, strict=True):
            folds = np.asarray(values, dtype=np.float64)
            color = FALLBACK_COLORS[2] if point == best else FALLBACK_COLORS[0]
            ax.plot(np.full(len(folds), point), folds, "o", color=color, alpha=0.4, markersize=6)
            ax.errorbar(point, folds.mean(), yerr=folds.std(), fmt="s", color=color, markersize=10, capsize=6)
        ax.plot([], [], "o", color="grey", alpha=0.4, label="Folds")
        ax.errorbar([], [], yerr=[], fmt="s", color=FALLBACK_COLORS[0], capsize=6, label="Mean ± std over folds")
        ax.errorbar([], [], yerr=[], fmt="s", color=FALLBACK_COLORS[2], capsize=6, label="Best point")
        ax.set_xticks(points, labels, rotation=30, ha="right", fontsize=14)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.tick_params(axis="x", which="minor", bottom=False, top=False)
        ax.set_ylabel(metric)
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.35 * (high - low))
        ax.legend(loc="upper right", fontsize=16, frameon=False)
        _simulation_label(ax, model_label)
    return figure


def save_figure(figure: Figure, paths: Mapping[str, str | os.PathLike[str]], dpi: int = 120) -> None:
    """Save a figure once per format (``{"png": path, "pdf": path}``), each atomically.

    The figure is drawn in the CMS style of mplhep (the style its functions create figures in). Each file is
    written to a hidden sibling and renamed into place (:func:`cf.io.atomic_path`), so a killed
    process never leaves a partial plot.
    """
    # fonts are looked up when drawing: inside the style the figure was made with
    with cms_style():
        for file_format, path in paths.items():
            with atomic_path(path) as tmp_path:
                figure.savefig(tmp_path, format=file_format, dpi=dpi)
