"""The numbers of a fit category, from the merged histograms: yields, shifted yields, effects and data.

:func:`category_shapes` is the one place where histograms become the model's numbers; the combine datacard,
its shapes file and the pyhf workspace are all written from its result, so they agree by construction.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cf.hist_util import select_histogram
from cf.inference.model import InferenceModel, ParameterTransformation, ParameterType
from cf.util import DotDict, UserError

__all__ = ["CategoryShapes", "category_shapes", "poisson_toy", "rebin", "rebin_indices"]

logger = logging.getLogger(__name__)

#: effect_from_shape_if_flat: the largest relative spread of the ratios varied / nominal that counts as flat ...
FLAT_MAX_DEVIATION = 0.1
#: ... and the largest relative distance of one ratio from their mean.
FLAT_MAX_OUTLIER = 0.2
#: asymmetrize_if_large: the smallest |kappa - 1| that is converted.
ASYMMETRIZE_THRESHOLD = 0.2

Histograms = Mapping[str, Mapping[str, Mapping[str, Any]]]


@dataclass
class CategoryShapes:
    """The numbers of one category, as the datacard, the shapes file and pyhf use them.

    Attributes:
        edges: The bin edges of the variable (after merging bins).
        processes: The processes in the fit of this category (signals first; empty ones skipped).
        nominal: Process -> yield per bin (every process of the category, skipped ones too).
        variances: Process -> sum of squared weights per bin.
        shifted: Process -> parameter -> ``(up, down)`` yields per bin, for parameters that act as shapes.
        effects: Process -> parameter -> the effect of parameters that act on the rate, after transformations.
        data: The observed (or pseudo) data per bin.
    """

    edges: np.ndarray
    processes: list[str]
    nominal: dict[str, np.ndarray]
    variances: dict[str, np.ndarray]
    shifted: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    effects: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def rate(self, process: str) -> float:
        return float(np.sum(self.nominal[process]))

    @property
    def observation(self) -> float:
        return float(np.sum(self.data))

    def acts_on(self, parameter: str, process: str) -> bool:
        return parameter in self.shifted.get(process, {}) or parameter in self.effects.get(process, {})

    def parameter_types(self, model: InferenceModel, category: str, parameter: str) -> set[ParameterType]:
        """The types a parameter has on the category's processes (a rate parameter can turn shape per process)."""
        types = set()
        for process in self.processes:
            if parameter in self.shifted.get(process, {}):
                types.add(ParameterType.shape)
            elif parameter in self.effects.get(process, {}):
                types.add(model.get_parameter(parameter, process=process, category=category).type)
        return types


def rebin_indices(edges: Sequence[float] | np.ndarray, new_edges: Sequence[float]) -> list[int]:
    """The indices of ``new_edges`` in ``edges``.

    Raises:
        ValueError: If the new edges are not increasing edges of the binning from its first to its last edge.
    """
    edges = np.asarray(edges, dtype=np.float64)
    indices = []
    for edge in new_edges:
        close = np.flatnonzero(np.isclose(edges, edge, rtol=1e-9, atol=1e-12))
        if not len(close):
            known = ", ".join(f"{value:g}" for value in edges)
            raise ValueError(f"bin edge {edge:g} is not an edge of the variable, its edges: {known}")
        indices.append(int(close[0]))
    if indices[0] != 0 or indices[-1] != len(edges) - 1 or sorted(set(indices)) != indices or len(indices) < 2:
        raise ValueError(
            f"bin edges {list(new_edges)} must increase from the variable's first edge ({edges[0]:g}) to its last "
            f"({edges[-1]:g})",
        )
    return indices


def rebin(values: np.ndarray, edges: np.ndarray, new_edges: Sequence[float]) -> np.ndarray:
    """Sum the bins of ``values`` (binned in ``edges``) into the bins of ``new_edges`` (a subset of ``edges``)."""
    indices = rebin_indices(edges, new_edges)
    return np.add.reduceat(np.asarray(values, dtype=np.float64), indices[:-1])


# from histograms to numbers


class _CategoryLoader:
    """Sums the histograms of datasets over the configs of one category, merging bins and handling flow."""

    def __init__(self, model: InferenceModel, category: DotDict, histograms: Histograms) -> None:
        self.model = model
        self.category = category
        self.histograms = histograms
        self.configs = model.category_configs(category.name)
        self.config_insts = {config_inst.name: config_inst for config_inst in model.config_insts}
        self.edges: np.ndarray | None = None

    def load(self, datasets_of: Mapping[str, Sequence[str]], shift_of: Mapping[str, str]) -> tuple[np.ndarray, ...]:
        """Summed ``(values, variances)`` of the datasets per config, each config read at its shift."""
        values = variances = None
        for config in self.configs:
            v, w = self._load_config(config, datasets_of[config], shift_of[config])
            values = v if values is None else values + v
            variances = w if variances is None else variances + w
        assert values is not None
        assert variances is not None
        return values, variances

    def _load_config(self, config: str, datasets: Sequence[str], shift: str) -> tuple[np.ndarray, np.ndarray]:
        data = self.category.config_data[config]
        category_id = self.config_insts[config].get_category(data.category).id
        values = variances = None
        for dataset in datasets:
            try:
                histogram = self.histograms[config][dataset][shift]
            except KeyError:
                raise UserError(
                    f"no histogram of dataset '{dataset}' (config '{config}') for shift '{shift}'"
                ) from None
            v, w, edges = select_histogram(histogram, category_id, shift, self.category.flow_strategy)
            if self.category.bin_edges:
                v, w = rebin(v, edges, self.category.bin_edges), rebin(w, edges, self.category.bin_edges)
                edges = np.asarray(self.category.bin_edges, dtype=np.float64)
            if self.edges is None:
                self.edges = edges
            elif not np.array_equal(edges, self.edges):
                raise UserError(f"the binning of category '{self.category.name}' differs between datasets or configs")
            values = v if values is None else values + v
            variances = w if variances is None else variances + w
        assert values is not None
        assert variances is not None
        return values, variances


def category_shapes(model: InferenceModel, category_name: str, histograms: Histograms) -> CategoryShapes:
    """The numbers of a category from the merged histograms of its variable(s).

    Per process: the histograms of its datasets summed over the category's configs, times its ``scale``, bins
    <= 0 set to the category's ``empty_bin_value``; for each parameter, the shifted yields (shape) or the effect
    (rate) after its transformations; the data, or the sum of the ``data_from_processes`` (with the category's
    ``data_toy_seed``: a Poisson toy of that sum).

    Args:
        model: The inference model, resolved against its configs.
        category_name: The model category.
        histograms: Config -> dataset -> shift -> the merged ``hist.Hist`` of the category's variable in that
            config (axes category, shift, variable), as ``cf.MergeHistograms`` writes them.

    Raises:
        UserError: If a needed histogram is missing, the binnings differ or a parameter cannot be applied.
    """
    if not model.config_insts:
        raise ValueError("category_shapes needs a model resolved against its configs")
    category = model.get_category(category_name)
    loader = _CategoryLoader(model, category, histograms)
    nominal_shift = dict.fromkeys(loader.configs, "nominal")
    result = CategoryShapes(edges=np.zeros(0), processes=[], nominal={}, variances={})
    for process in model.category_processes(category_name):
        datasets = {config: process.config_data[config].mc_datasets for config in loader.configs}
        raw, sumw2 = loader.load(datasets, nominal_shift)
        values = _fill_empty(raw * process.scale, category.empty_bin_value)
        result.nominal[process.name] = values
        result.variances[process.name] = _fill_empty_variances(
            raw * process.scale, sumw2 * process.scale**2, category.empty_bin_value
        )
        if process.skip_if_empty and not np.sum(raw) > 0:
            logger.info(f"process '{process.name}' has no positive yield in category '{category_name}': left out")
            continue
        result.processes.append(process.name)
        for parameter in process.parameters:
            _apply_parameter(result, loader, category, process, parameter, datasets)
    result.edges = loader.edges if loader.edges is not None else np.zeros(0)
    if category.data_from_processes:
        zeros = np.zeros(len(result.edges) - 1)
        expected = sum((result.nominal[name] for name in model.data_processes(category_name)), zeros)
        seed = category.data_toy_seed
        result.data = expected if seed is None else poisson_toy(expected, seed, category_name)
    else:
        data_datasets = {config: category.config_data[config].data_datasets for config in loader.configs}
        result.data = loader.load(data_datasets, nominal_shift)[0]
    return result


def poisson_toy(expected: np.ndarray, seed: int, category_name: str) -> np.ndarray:
    """Poisson-distributed counts around ``expected``, reproducible from the seed and the category's name.

    The name enters the seed so that categories with the same seed draw independent toys.
    """
    rng = np.random.default_rng([seed, zlib.crc32(category_name.encode())])
    return rng.poisson(np.clip(expected, 0.0, None)).astype(np.float64)


def _fill_empty(values: np.ndarray, empty_bin_value: float) -> np.ndarray:
    """Bins <= 0 get ``empty_bin_value`` (0: they are set to zero)."""
    return np.where(values > 0, values, empty_bin_value)


def _fill_empty_variances(values: np.ndarray, variances: np.ndarray, empty_bin_value: float) -> np.ndarray:
    """The variances of filled bins are the fill value (as in columnflow); bins set to zero keep theirs."""
    if not empty_bin_value:
        return variances
    return np.where(values > 0, variances, empty_bin_value)


def _apply_parameter(
    result: CategoryShapes,
    loader: _CategoryLoader,
    category: DotDict,
    process: DotDict,
    parameter: DotDict,
    datasets: Mapping[str, Sequence[str]],
) -> None:
    """Store the parameter's shifted yields (acting as shape) or effect (acting on the rate) for the process."""
    nominal = result.nominal[process.name]
    trafos = list(parameter.transformations)

    def shifted_yields() -> tuple[np.ndarray, np.ndarray]:
        shifts = {
            direction: {
                config: f"{parameter.config_data[config].shift_source}_{direction}" for config in loader.configs
            }
            for direction in ("up", "down")
        }
        up, down = (loader.load(datasets, shifts[direction])[0] * process.scale for direction in ("up", "down"))
        return _fill_empty(up, category.empty_bin_value), _fill_empty(down, category.empty_bin_value)

    if parameter.type.is_shape:
        if trafos and trafos[0].from_rate:
            down_factor, up_factor = _two_sided(parameter.effect)
            up, down = nominal * up_factor, nominal * down_factor
        else:
            up, down = shifted_yields()
        result.shifted.setdefault(process.name, {})[parameter.name] = _shape_trafos(nominal, up, down, trafos)
        return
    effect = parameter.effect
    if trafos and trafos[0].from_shape:
        up, down = shifted_yields()
        if trafos[0] is ParameterTransformation.effect_from_shape_if_flat and not (
            _is_flat(nominal, up) and _is_flat(nominal, down)
        ):
            shape_trafos = [t for t in trafos[1:] if t is ParameterTransformation.symmetrize]
            result.shifted.setdefault(process.name, {})[parameter.name] = _shape_trafos(nominal, up, down, shape_trafos)
            return
        total = float(np.sum(nominal))
        effect = (float(np.sum(down)) / total, float(np.sum(up)) / total)
    result.effects.setdefault(process.name, {})[parameter.name] = _rate_trafos(effect, trafos)


def _two_sided(effect: Any) -> tuple[float, float]:
    """``(down, up)`` factors of a rate effect: ``kappa`` -> ``(2 - kappa, kappa)``."""
    if isinstance(effect, tuple):
        return effect
    return 2.0 - float(effect), float(effect)


def _is_flat(nominal: np.ndarray, varied: np.ndarray) -> bool:
    """Whether the bin-wise ratio varied / nominal is flat (bins with a nominal yield only)."""
    mask = nominal > 0
    if not mask.any():
        return True
    ratios = varied[mask] / nominal[mask]
    mean = float(np.mean(ratios))
    if mean == 0:
        return False
    spread = float(np.std(ratios)) / abs(mean)
    outlier = float(np.max(np.abs(ratios - mean))) / abs(mean)
    return spread <= FLAT_MAX_DEVIATION and outlier <= FLAT_MAX_OUTLIER


def _rate_trafos(effect: Any, trafos: Sequence[ParameterTransformation]) -> Any:
    for trafo in trafos:
        if trafo is ParameterTransformation.symmetrize and isinstance(effect, tuple):
            down, up = effect
            if min(effect) <= 1.0 <= max(effect):
                shift = 0.5 * (down + up) - 1.0
                effect = (down - shift, up - shift)
        elif trafo is ParameterTransformation.asymmetrize and isinstance(effect, float):
            effect = (2.0 - effect, effect)
        elif trafo is ParameterTransformation.asymmetrize_if_large and isinstance(effect, float):
            if abs(effect - 1.0) >= ASYMMETRIZE_THRESHOLD:
                effect = (2.0 - effect, effect)
        elif trafo in (
            ParameterTransformation.flip_smaller_if_one_sided,
            ParameterTransformation.flip_larger_if_one_sided,
        ) and isinstance(effect, tuple):
            effect = _flip_one_sided(effect, larger=trafo is ParameterTransformation.flip_larger_if_one_sided)
    return effect


def _flip_one_sided(effect: tuple[float, float], larger: bool) -> tuple[float, float]:
    """Mirror (``e -> 2 - e``) the value closer to (or, ``larger``, farther from) 1 of a one-sided effect."""
    if min(effect) <= 1.0 <= max(effect):
        return effect
    distances = [abs(value - 1.0) for value in effect]
    index = distances.index(max(distances) if larger else min(distances))
    values = list(effect)
    values[index] = 2.0 - values[index]
    return values[0], values[1]


def _shape_trafos(
    nominal: np.ndarray,
    up: np.ndarray,
    down: np.ndarray,
    trafos: Sequence[ParameterTransformation],
) -> tuple[np.ndarray, np.ndarray]:
    up, down = up.astype(np.float64, copy=True), down.astype(np.float64, copy=True)
    for trafo in trafos:
        n, u, d = float(np.sum(nominal)), float(np.sum(up)), float(np.sum(down))
        if trafo is ParameterTransformation.symmetrize and min(u, d) <= n <= max(u, d) and u and d:
            shift = 0.5 * (u + d) - n
            up, down = up * (u - shift) / u, down * (d - shift) / d
        elif trafo is ParameterTransformation.normalize and u and d:
            up, down = up * n / u, down * n / d
        elif trafo in (ParameterTransformation.envelope, ParameterTransformation.envelope_if_one_sided):
            up, down = _envelope(
                nominal, up, down, one_sided_only=trafo is ParameterTransformation.envelope_if_one_sided
            )
        elif trafo is ParameterTransformation.envelope_enforce_two_sided:
            size = np.maximum(np.abs(up - nominal), np.abs(down - nominal))
            up, down = nominal + size, nominal - size
    return up, down


def _envelope(
    nominal: np.ndarray, up: np.ndarray, down: np.ndarray, one_sided_only: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per bin, the larger deviation mirrored onto the smaller one's side."""
    diff_up, diff_down = up - nominal, down - nominal
    up_larger = np.abs(diff_up) > np.abs(diff_down)
    down_larger = np.abs(diff_down) > np.abs(diff_up)
    if one_sided_only:
        same_side = diff_up * diff_down > 0
        up_larger &= same_side
        down_larger &= same_side
    new_up = np.where(down_larger, nominal - diff_down, up)
    new_down = np.where(up_larger, nominal - diff_up, down)
    return new_up, new_down
