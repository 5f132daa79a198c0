"""``cf.CreateHistograms`` (per file) and ``cf.MergeHistograms`` (per dataset).

Each variable of the config becomes a ``hist.Hist`` with a category axis (the ids in ``category_ids``),
a shift axis and the variable's own axis. Simulated events are weighted with the product of the config's event
weights (``config.x.event_weights``: weight column -> the shift sources that vary it; default:
``normalization_weight`` alone); a histogram of the shift ``<source>_up`` reads ``<column>_up`` instead of the
weight column that source varies, so weight uncertainties need no rerun of the chain. Data events have weight 1.
With ``--ml-models``, the evaluation columns of those models are read too, so the variables their ``setup()``
adds can be filled.
"""

from __future__ import annotations

import pickle
from typing import Any

import awkward as ak
import law
import numpy as np

from cf.analysis import get_config, load_analysis, load_modules
from cf.columnar_util import Route
from cf.contract import CATEGORY_COLUMN, config_entry
from cf.io import atomic_path, open_source
from cf.ml import expand_model_groups, join_model_specs, model_instance, model_spec, split_model_spec, variable_model
from cf.tasks.base import (
    CalibratorsMixin,
    DatasetTask,
    ProducersMixin,
    SelectorMixin,
    ShiftMixin,
    function_store_parts,
)
from cf.tasks.external import DatasetWorkflow
from cf.tasks.ml import MLEvaluation
from cf.tasks.production import ProduceColumns
from cf.tasks.reduction import ReduceEvents
from cf.util import UserError, short_hash, unknown_name_message

__all__ = [
    "CreateHistograms",
    "MLModelsMixin",
    "MergeHistograms",
    "VariablesMixin",
    "event_weight_columns",
    "load_histograms",
    "weight_shifts",
]

#: The event weights of a config without ``x.event_weights``.
SHIFT_DIRECTIONS = ("up", "down")


def _event_weights(config_inst: Any) -> dict[str, tuple[str, ...]]:
    declared = config_entry(config_inst, "event_weights")
    return {str(column): tuple(sources) for column, sources in declared.items()}


def weight_shifts(config_inst: Any) -> set[str]:
    """The shifts that change only the event weights of the histograms (``<source>_up`` / ``_down``)."""
    return {
        f"{source}_{direction}"
        for sources in _event_weights(config_inst).values()
        for source in sources
        for direction in SHIFT_DIRECTIONS
    }


def event_weight_columns(config_inst: Any, shift: str) -> list[str]:
    """The weight columns whose product weighs simulated events in ``shift``: varied where the shift varies them."""
    columns = []
    for column, sources in _event_weights(config_inst).items():
        varied = [
            f"{column}_{direction}" for s in sources for direction in SHIFT_DIRECTIONS if shift == f"{s}_{direction}"
        ]
        columns.append(varied[0] if varied else column)
    return columns


class MLModelsMixin:
    """``--ml-models a,b``: read the evaluation columns of these models (their setup() may add variables).

    A name of a group in the config's ``ml_model_groups`` stands for its members. An item may carry settings of
    its model, ``name[key=value,...]`` (e.g. ``param_dnn[masses=300:500]``): the evaluation with these settings is
    read (training settings train that model first), and the settings' hash is part of the output path.
    """

    ml_models = law.CSVParameter(
        default=(), description="ML models whose evaluation columns are read; name or name[key=value,...]"
    )

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)  # type: ignore[misc]
        if params.get("ml_models"):
            load_modules("ml_modules")
            specs = expand_model_groups(
                get_config(load_analysis(), params["config"]), join_model_specs(params["ml_models"])
            )
            params["ml_models"] = tuple(dict.fromkeys(model_spec(*split_model_spec(spec)) for spec in specs))
            names = [split_model_spec(spec)[0] for spec in params["ml_models"]]
            if len(set(names)) != len(names):
                raise UserError(f"--ml-models names a model twice: {','.join(params['ml_models'])}")
            for spec in params["ml_models"]:
                # runs setup(), which may add variables (e.g. one per evaluated mass)
                model_instance(*split_model_spec(spec), (params["config"],))
        return params

    def function_store_parts(self) -> list[str]:
        return [*super().function_store_parts(), *function_store_parts(ml_models=self.ml_models)]  # type: ignore[misc]


class VariablesMixin:
    """``--variables a,b``: the config variables to histogram (default: all of them)."""

    variables = law.CSVParameter(default=(), description="variables to histogram; default: all of the config")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)  # type: ignore[misc]
        if "variables" not in params:
            return params
        config_inst = get_config(load_analysis(), params["config"])
        requested_models = {split_model_spec(spec)[0] for spec in params.get("ml_models", ())}
        # a variable of an ML model's output exists only for the tasks that name the model, whatever ran before
        known = [name for name in config_inst.variables.names() if variable_model(name) in {None, *requested_models}]
        if not params["variables"]:
            params["variables"] = tuple(known)
        for name in params["variables"]:
            model = variable_model(name)
            if model is not None and model not in requested_models:
                raise UserError(f"variable '{name}' is an output of ML model '{model}': add --ml-models {model}")
        unknown = [name for name in params["variables"] if name not in known]
        if unknown:
            raise UserError(unknown_name_message("variable(s)", unknown, known))
        return params

    def function_store_parts(self) -> list[str]:
        # the variables are part of the output path, so a run with other variables is another output
        return [*super().function_store_parts(), f"vars__{short_hash(sorted(set(self.variables)))}"]  # type: ignore[misc]


def variable_axis(variable: Any) -> Any:
    """The ``hist`` axis of an order variable (regular or with explicit edges)."""
    import hist

    label = variable.get_full_x_title()
    if variable.even_binning:
        return hist.axis.Regular(variable.n_bins, variable.x_min, variable.x_max, name=variable.name, label=label)
    return hist.axis.Variable(variable.bin_edges, name=variable.name, label=label)


def empty_histogram(variable: Any) -> Any:
    import hist

    return hist.Hist(
        hist.axis.IntCategory([], name="category", growth=True, label="category id"),
        hist.axis.StrCategory([], name="shift", growth=True, label="shift"),
        variable_axis(variable),
        storage=hist.storage.Weight(),
    )


def fill_histogram(histogram: Any, variable: Any, events: ak.Array, shift: str, weights: np.ndarray) -> None:
    """Fill one variable for every (event, category) pair, with the event's weight."""
    values = Route(variable.expression).apply(events, variable.null_value)
    if values.ndim != 1:
        raise UserError(
            f"variable '{variable.name}': expression '{variable.expression}' gives a list per event; "
            "select one object, e.g. 'Jet.pt[:,0]'",
        )
    categories = events[CATEGORY_COLUMN]
    counts = ak.to_numpy(ak.num(categories, axis=1))
    histogram.fill(
        category=ak.to_numpy(ak.flatten(categories)),
        shift=shift,
        **{variable.name: np.repeat(ak.to_numpy(values), counts)},
        weight=np.repeat(weights, counts),
    )


def dump_histograms(path: str, histograms: dict[str, Any]) -> None:
    with atomic_path(path) as tmp_path, open(tmp_path, "wb") as f:
        pickle.dump(histograms, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_histograms(path: str) -> dict[str, Any]:
    """The ``{variable name: hist.Hist}`` of a CreateHistograms or MergeHistograms output."""
    with open(path, "rb") as f:
        return pickle.load(f)


class WeightShiftsMixin(ShiftMixin):
    """Histograms have their own output for the shifts that change only the event weights."""

    def implemented_shifts(self) -> set[str]:
        return super().implemented_shifts() | weight_shifts(self.config_inst)  # type: ignore[attr-defined]


class HistogramParameters(
    VariablesMixin,
    MLModelsMixin,
    ProducersMixin,
    SelectorMixin,
    CalibratorsMixin,
    WeightShiftsMixin,
):
    """The parameters of the histogram tasks: variables, ML models, the column functions and the shift."""


class CreateHistograms(HistogramParameters, DatasetWorkflow):
    """Histograms of the config variables for the events of one file (a pickled dict of ``hist.Hist``)."""

    def input_requirements(self) -> dict[str, Any]:
        reqs: dict[str, Any] = {"events": ReduceEvents.req(self), "columns": ProduceColumns.req(self)}
        reqs["ml"] = {}
        for spec in self.ml_models:
            name, settings = split_model_spec(spec)
            reqs["ml"][spec] = MLEvaluation.req(self, ml_model=name, ml_model_settings=settings)
        return reqs

    def output(self) -> law.LocalFileTarget:
        return self.target(f"hists_{self.branch}.pickle")

    def run(self) -> None:
        inputs = self.input()
        sources = [open_source(inputs["events"]["events"].path), open_source(inputs["columns"]["columns"].path)]
        sources += [open_source(inputs["ml"][spec]["mlcolumns"].path) for spec in self.ml_models]
        variables = [self.config_inst.get_variable(name) for name in self.variables]
        weight_columns = (
            [] if self.dataset_inst.is_data else event_weight_columns(self.config_inst, self.effective_shift)
        )
        uses = {Route(variable.expression).column for variable in variables} | {CATEGORY_COLUMN, *weight_columns}
        histograms = {variable.name: empty_histogram(variable) for variable in variables}
        for events, _, _ in self.iter_chunks(sources, uses):
            weights = np.ones(len(events))
            for column in weight_columns:
                weights = weights * ak.to_numpy(events[column])
            for variable in variables:
                fill_histogram(histograms[variable.name], variable, events, self.effective_shift, weights)
        dump_histograms(self.output().path, histograms)


class MergeHistograms(HistogramParameters, DatasetTask):
    """The histograms of all files of a dataset, summed."""

    def requires(self) -> Any:
        return CreateHistograms.req(self)

    def output(self) -> law.LocalFileTarget:
        return self.target("hists.pickle")

    def run(self) -> None:
        merged: dict[str, Any] = {}
        for target in self.input()["collection"].targets.values():
            for name, histogram in load_histograms(target.path).items():
                merged[name] = merged[name] + histogram if name in merged else histogram
        dump_histograms(self.output().path, merged)
