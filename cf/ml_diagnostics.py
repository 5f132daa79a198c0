"""Pure functions of the ML input and importance plots: numpy arrays in, numbers and figures out (no law).

The tasks in :mod:`cf.tasks.ml_diagnostics` collect the inputs (the events the training reads, the fold models)
and call these functions.

* Input statistics: :func:`weighted_mean_std`, :func:`weighted_correlation`, :func:`fold_pulls` and
  :func:`feature_edges`.
* Permutation importance: :func:`permutation_importance` of a score function on held-out events, with the
  weighted signal-vs-rest AUC (:func:`signal_auc`) and the weighted cross-entropy (:func:`weighted_cross_entropy`).
* Figures: :func:`plot_feature_distributions`, :func:`plot_matrix` and :func:`plot_importance`, drawn
  like those of :mod:`cf.plotting` (CMS style, no pyplot) and saved with :func:`cf.plotting.save_figure`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mplhep as hep
import numpy as np
from matplotlib.figure import Figure

from cf.plotting import CMS_TEXT, FALLBACK_COLORS, _density, _simulation_label, auc, cms_style, new_figure, roc_curve

__all__ = [
    "FeatureSeries",
    "Importance",
    "feature_edges",
    "permutation_importance",
    "fold_pulls",
    "plot_feature_distributions",
    "plot_importance",
    "plot_matrix",
    "signal_auc",
    "weighted_correlation",
    "weighted_cross_entropy",
    "weighted_mean_std",
]

#: Smallest probability entering the cross-entropy (a score of exactly 0 would give an infinite loss).
PROBABILITY_FLOOR = 1e-7


# input statistics


def weighted_mean_std(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The weighted mean and standard deviation of each column of ``x`` (shape ``(events, features)``).

    Raises:
        ValueError: If the weights do not have a positive sum.
    """
    weights = np.asarray(weights, dtype=np.float64)
    total = weights.sum()
    if not total > 0:
        raise ValueError("weighted statistics need weights with a positive sum")
    mean = weights @ x / total
    variance = weights @ (x - mean) ** 2 / total
    return mean, np.sqrt(np.maximum(variance, 0.0))


def weighted_correlation(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted Pearson correlation matrix of the columns of ``x``.

    A constant column (no spread) is uncorrelated with every other one and has 1 on the diagonal, so that the
    matrix is always finite, symmetric and has a unit diagonal.
    """
    mean, std = weighted_mean_std(x, weights)
    weights = np.asarray(weights, dtype=np.float64)
    centred = x - mean
    covariance = (centred * weights[:, None]).T @ centred / weights.sum()
    spread = std > 0
    scale = np.where(spread, std, 1.0)
    correlation = np.where(np.outer(spread, spread), covariance / np.outer(scale, scale), 0.0)
    correlation = np.clip(0.5 * (correlation + correlation.T), -1.0, 1.0)
    np.fill_diagonal(correlation, 1.0)
    return correlation


def feature_edges(values: np.ndarray, bins: int = 30, coverage: float = 0.99) -> np.ndarray:
    """Bin edges for one feature: unit bins around integers for counts, else ``bins`` bins over the central range.

    Args:
        values: The feature's values of all events (all classes together).
        bins: The number of bins of a continuous feature (and the most integers that get one bin each).
        coverage: The central fraction of the events the range of a continuous feature covers (the rest is
            moved into the first and last bin when filling, see :func:`clipped`).
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return np.linspace(0.0, 1.0, bins + 1)
    low, high = float(values.min()), float(values.max())
    if np.all(values == np.round(values)) and high - low < bins:
        return np.arange(low - 0.5, high + 1.5)
    tail = 0.5 * (1.0 - coverage)
    low, high = (float(value) for value in np.quantile(values, [tail, 1.0 - tail]))
    if not high > low:
        low, high = low - 0.5, low + 0.5
    return np.linspace(low, high, bins + 1)


def fold_pulls(x: np.ndarray, weights: np.ndarray, folds: np.ndarray, n_folds: int) -> np.ndarray:
    """How far each fold's weighted mean of each feature lies from that of the other folds, in standard errors.

    The standard error of a weighted mean is ``std * sqrt(sum w^2) / sum w``; a fold without events (or other folds
    without any) gets NaN. With folds that differ only statistically the pulls scatter around 0 with a width of 1.

    Returns:
        Shape ``(features, n_folds)``.
    """
    pulls = np.full((x.shape[1], n_folds), np.nan)
    for fold in range(n_folds):
        inside = folds == fold
        if not (weights[inside].sum() > 0 and weights[~inside].sum() > 0):
            continue
        (mean_in, error_in), (mean_out, error_out) = (_mean_and_error(x[m], weights[m]) for m in (inside, ~inside))
        error = np.hypot(error_in, error_out)
        pulls[:, fold] = np.where(error > 0, (mean_in - mean_out) / np.where(error > 0, error, 1.0), 0.0)
    return pulls


def _mean_and_error(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = weighted_mean_std(x, weights)
    return mean, std * np.sqrt(np.sum(weights**2)) / weights.sum()


def clipped(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The values with those outside the edges moved into the first and last bin (no event is lost)."""
    width = np.diff(edges)
    return np.clip(values, edges[0] + 0.5 * width[0], edges[-1] - 0.5 * width[-1])


# permutation importance


def signal_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """The weighted AUC of the signal score (class 0 in ``labels``) against all other classes."""
    return auc(*roc_curve(scores[:, 0], np.asarray(labels) == 0, weights))


def weighted_cross_entropy(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """The weighted mean of ``-log(score of the true class)``, as a categorical cross-entropy loss."""
    true_scores = np.asarray(scores, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)]
    losses = -np.log(np.clip(true_scores, PROBABILITY_FLOOR, 1.0))
    weights = np.asarray(weights, dtype=np.float64)
    return float(weights @ losses / weights.sum())


@dataclass(frozen=True)
class Importance:
    """The permutation importance of each feature on one fold's held-out events.

    Attributes:
        auc: The weighted signal-vs-rest AUC of the unpermuted events.
        loss: The weighted cross-entropy of the unpermuted events.
        auc_drop: Per feature, the AUC minus the AUC with the feature permuted (mean over the repeats).
        loss_increase: Per feature, the loss with the feature permuted minus the loss (mean over the repeats).
    """

    auc: float
    loss: float
    auc_drop: np.ndarray
    loss_increase: np.ndarray


def permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    loss_weights: np.ndarray,
    *,
    seed: Sequence[int],
    repeats: int = 1,
) -> Importance:
    """How much worse a classifier gets when one feature at a time is shuffled among the events.

    Each feature's column is permuted with its own generator, seeded with ``(*seed, feature index, repeat)``, so
    that a rerun permutes exactly the same way; the other columns stay as they are.

    Args:
        predict: The class scores ``(events, classes)`` of a feature matrix.
        x: The feature matrix of the events, shape ``(events, features)``; unchanged on return.
        labels: The class index of each event (0 is the signal).
        weights: The event weights of the AUC.
        loss_weights: The event weights of the loss (e.g. the training weights).
        seed: The base of the seeds (e.g. ``(permutation seed, fold)``).
        repeats: Permutations per feature; their mean is returned.
    """
    baseline = predict(x)
    base_auc = signal_auc(baseline, labels, weights)
    base_loss = weighted_cross_entropy(baseline, labels, loss_weights)
    n_events, n_features = x.shape
    auc_drop = np.zeros(n_features)
    loss_increase = np.zeros(n_features)
    for feature in range(n_features):
        original = x[:, feature].copy()
        try:
            for repeat in range(repeats):
                generator = np.random.default_rng([*seed, feature, repeat])
                x[:, feature] = original[generator.permutation(n_events)]
                scores = predict(x)
                auc_drop[feature] += (base_auc - signal_auc(scores, labels, weights)) / repeats
                loss_increase[feature] += (weighted_cross_entropy(scores, labels, loss_weights) - base_loss) / repeats
        finally:
            x[:, feature] = original
    return Importance(base_auc, base_loss, auc_drop, loss_increase)


# figures


@dataclass(frozen=True)
class FeatureSeries:
    """One line in every panel of :func:`plot_feature_distributions`.

    Attributes:
        label: The legend label.
        x: The feature matrix of its events, shape ``(events, features)``.
        weights: The event weights.
        color: A matplotlib color (None: the next fallback color).
        linestyle: A matplotlib line style.
    """

    label: str
    x: np.ndarray
    weights: np.ndarray
    color: Any = None
    linestyle: str = "-"


def plot_feature_distributions(
    features: Sequence[str],
    edges: Sequence[np.ndarray],
    series: Sequence[FeatureSeries],
    *,
    title: str = "",
    model_label: str = "",
    columns: int = 4,
) -> Figure:
    """One panel per feature with the weighted distribution of each series, each normalised to unit area.

    Values outside a panel's edges count in its first or last bin.

    Args:
        features: The feature names (the x axis titles).
        edges: The bin edges of each feature (:func:`feature_edges`).
        series: The lines of every panel (e.g. one per class, or one per fold of a class).
        title: The title of the legend in the first panel (e.g. which events are shown).
        model_label: The model's name, put before the title.
        columns: Panels per row.
    """
    rows = -(-len(features) // columns)
    with cms_style():
        figure, axes = new_figure((6.5 * columns, 5.5 * rows), rows, columns, squeeze=False)
        for index, ax in enumerate(axes.flat):
            if index >= len(features):
                ax.set_axis_off()
                continue
            peak = 0.0
            for number, line in enumerate(series):
                color = line.color if line.color is not None else FALLBACK_COLORS[number % len(FALLBACK_COLORS)]
                values = clipped(line.x[:, index], edges[index])
                density, _ = _density(values, line.weights, edges[index])
                ax.stairs(density, edges[index], color=color, linestyle=line.linestyle, linewidth=2, label=line.label)
                peak = max(peak, float(density.max(initial=0.0)))
            ax.set_xlim(edges[index][0], edges[index][-1])
            ax.set_ylim(0.0, 1.35 * max(peak, 1e-12))
            ax.set_xlabel(features[index], fontsize=18)
            ax.set_ylabel("Normalised to unit area", fontsize=14)
            ax.tick_params(labelsize=13)
        first = axes.flat[0]
        legend_title = ", ".join(text for text in (model_label, title) if text)
        first.legend(loc="upper right", fontsize=12, frameon=False, title=legend_title or None, title_fontsize=12)
        # the model's name is in the legend: a small panel has no room for it next to the CMS label
        hep.cms.label(ax=first, text=CMS_TEXT, data=False, loc=0, rlabel="", fontsize=16)
        figure.subplots_adjust(left=0.05, right=0.98, bottom=0.05, top=0.97, wspace=0.3, hspace=0.3)
    return figure


def plot_matrix(
    matrix: np.ndarray,
    columns: Sequence[str],
    rows: Sequence[str],
    *,
    limit: float,
    colorbar_title: str,
    model_label: str = "",
) -> Figure:
    """A matrix as a colour map from ``-limit`` to ``limit`` (red positive, blue negative), the value in each cell.

    Args:
        matrix: Shape ``(rows, columns)``.
        columns: The column names (x tick labels).
        rows: The row names (y tick labels).
        limit: The largest absolute value of the colour scale (larger values get its end colour).
        colorbar_title: The colour bar's title.
        model_label: Text at the top right above the matrix.
    """
    width, height = max(8.0, 0.65 * len(columns) + 5.0), max(8.0, 0.65 * len(rows) + 4.0)
    with cms_style():
        figure, ax = new_figure((width, height), layout="constrained")
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="upper", aspect="auto")
        figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label(colorbar_title)
        for (row, column), value in np.ndenumerate(matrix):
            color = "white" if abs(value) > 0.6 * limit else "black"
            ax.text(column, row, f"{value:.2f}", ha="center", va="center", color=color, fontsize=9)
        ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=13)
        ax.set_yticks(range(len(rows)), rows, fontsize=13)
        ax.minorticks_off()
        ax.tick_params(axis="both", which="both", length=0)
        _simulation_label(ax, model_label)
    return figure


def plot_importance(
    features: Sequence[str],
    mean: np.ndarray,
    spread: np.ndarray,
    *,
    x_title: str,
    title: str = "",
    model_label: str = "",
) -> Figure:
    """Horizontal bars of each feature's importance with error bars, the most important at the top.

    Args:
        features: The feature names.
        mean: The importance of each feature (e.g. the mean AUC drop over the folds).
        spread: Its error bar (e.g. the standard deviation over the folds).
        x_title: The x axis title.
        title: Text in the lower right inside the axes.
        model_label: Text at the top right above the axes.
    """
    order = np.argsort(-np.asarray(mean), kind="stable")
    positions = np.arange(len(features))[::-1]
    with cms_style():
        figure, ax = new_figure((11, max(6.0, 0.5 * len(features) + 3.0)), layout="constrained")
        ax.barh(positions, np.asarray(mean)[order], xerr=np.asarray(spread)[order], color=FALLBACK_COLORS[0],
                error_kw={"ecolor": "black", "capsize": 3})  # fmt: skip
        ax.axvline(0.0, color="#555555", linewidth=1)
        ax.set_yticks(positions, [features[index] for index in order], fontsize=15)
        ax.minorticks_off()
        ax.set_ylim(-0.7, len(features) - 0.3)
        ax.set_xlabel(x_title)
        if title:
            ax.text(0.96, 0.04, title, transform=ax.transAxes, ha="right", va="bottom", fontsize=16)
        _simulation_label(ax, model_label)
    return figure
