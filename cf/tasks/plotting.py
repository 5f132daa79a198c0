"""Plotting tasks: ``cf.PlotVariables1D`` (stack plots of the histograms) and ``cf.PlotMLResults``.

Both run in the base environment (matplotlib and mplhep live there, TensorFlow does not); the figures are
drawn by the pure functions of :mod:`cf.plotting`. Every output is written atomically, and every figure
comes with a json file holding the numbers it shows.

    MergeHistograms (per dataset) -> PlotVariables1D (per category and variable: png, pdf, json)
    MLTrainingScores + MLEvaluation + MLTraining -> PlotMLResults (ROC, confusion matrix, scores, loss)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import awkward as ak
import law
import luigi
import numpy as np

from cf.analysis import analysis_setting, get_config, load_analysis
from cf.columnar_util import IDENTITY_COLUMNS, Route
from cf.contract import config_entry, default_datasets
from cf.folds import fold_indices
from cf.hist_util import DEFAULT_FLOW_STRATEGY, flow_yields, select_histogram
from cf.io import dump_json, iter_event_chunks, open_source
from cf.ml import MLModel
from cf.tasks.base import CalibratorsMixin, ConfigTask, ProducersMixin, SelectorMixin, ShiftMixin, function_store_parts
from cf.tasks.histograms import MergeHistograms, MLModelsMixin, VariablesMixin, event_weight_columns, load_histograms
from cf.tasks.ml import (
    MLEvaluation,
    MLModelMixin,
    MLTraining,
    MLTrainingScores,
    event_weights,
    training_functions,
    weight_columns,
)
from cf.tasks.production import ProduceColumns
from cf.tasks.reduction import ReduceEvents
from cf.util import UserError, short_hash, unknown_name_message

__all__ = [
    "DEFAULT_PLOT_VARIABLES",
    "MLClass",
    "PlotMLResults",
    "PlotVariables1D",
    "default_plot_variables",
    "model_classes",
    "plotted_luminosity",
]

logger = logging.getLogger(__name__)

#: Variables plotted when ``--variables`` is not given (those the config has; ``config.x.default_plot_variables``
#: takes precedence).
DEFAULT_PLOT_VARIABLES = ("n_jet", "n_btag", "jet1_pt", "ht", "met_pt", "m_bb")
#: The event weight column of the histograms and of the ML scores.


def default_plot_variables(config_inst: Any) -> tuple[str, ...]:
    """The variables plotted by default.

    They are ``config.x.default_plot_variables``, else those of :data:`DEFAULT_PLOT_VARIABLES` the config has,
    else its first four variables.
    """
    configured = config_entry(config_inst, "default_plot_variables")
    if configured:
        return tuple(configured)
    names = [name for name in DEFAULT_PLOT_VARIABLES if config_inst.has_variable(name)]
    return tuple(names) or tuple(variable.name for variable in list(config_inst.variables)[:4])


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in values]


class PlotVariables1D(
    VariablesMixin,
    MLModelsMixin,
    ProducersMixin,
    SelectorMixin,
    CalibratorsMixin,
    ShiftMixin,
    ConfigTask,
):
    """Stack plots of the config variables: backgrounds stacked, the signal as a line, pseudo-data as points.

    Datasets are grouped into the config's top-level processes (``config.add_process``): those of data are
    the points (Garwood error bars), the signal processes (``x.is_signal`` or tag ``signal``) are lines scaled
    by ``--signal-scale``, all others are stacked, smallest yield at the bottom. A ratio panel shows data over
    the stacked MC with the MC statistical uncertainty. Flow bins are not drawn but are in the json file.

    The MC is normalised to the config's ``luminosity``. Where the data amount to less (``data_luminosity``, e.g.
    the embedded pseudo-data), a plot with data scales the MC to the data's luminosity and says so under the
    category label; the luminosity label is the data's (the json file holds both and the factor, ``mc_scale``).

    Outputs per category and variable: ``plot__cat_<category>__var_<variable>.{png,pdf,json}``.
    """

    variables = law.CSVParameter(
        default=(),
        description=f"variables to plot; default: the config's default_plot_variables, else those of "
        f"{', '.join(DEFAULT_PLOT_VARIABLES)} that exist",
    )
    datasets = law.CSVParameter(default=(), description="datasets to plot; default: all datasets of the config")
    categories = law.CSVParameter(default=("incl",), description="categories to plot; default: incl")
    signal_scale = luigi.FloatParameter(
        default=0.0,
        description="factor applied to the signal lines (shown in the legend); default (0): the power of ten that "
        "brings the signal yield to 10-100%% of the background yield",
    )
    log_y = luigi.BoolParameter(default=False, description="logarithmic y axis")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        if "variables" in params and not params["variables"]:
            config_name = params.get("config") or analysis_setting("default_config")
            params["variables"] = default_plot_variables(get_config(load_analysis(), config_name))
        params = super().modify_param_values(params)
        if "config" not in params:
            return params
        config_inst = get_config(load_analysis(), params["config"])
        if "datasets" in params:
            known = [dataset.name for dataset in config_inst.datasets]
            if not params["datasets"]:
                params["datasets"] = tuple(dataset.name for dataset in default_datasets(config_inst))
            unknown = [name for name in params["datasets"] if name not in known]
            if unknown:
                raise UserError(unknown_name_message("dataset(s)", unknown, known))
            params["datasets"] = tuple(dict.fromkeys(params["datasets"]))
        if "categories" in params:
            known = [category.name for category in config_inst.categories]
            unknown = [name for name in params["categories"] if name not in known]
            if unknown or not params["categories"]:
                if not unknown:
                    raise UserError(f"no --categories given, available: {', '.join(known)}")
                raise UserError(unknown_name_message("category(s)", unknown, known))
        if params.get("signal_scale", 0.0) < 0 or not math.isfinite(params.get("signal_scale", 0.0)):
            raise UserError(
                f"--signal-scale must be a positive number (or 0 for automatic), got {params['signal_scale']}"
            )
        return params

    def store_parts(self) -> list[str]:
        all_datasets = [dataset.name for dataset in default_datasets(self.config_inst)]
        datasets = (
            "datasets__all"
            if set(self.datasets) == set(all_datasets)
            else f"datasets__{short_hash(sorted(self.datasets))}"
        )
        scale = "auto" if self.signal_scale == 0 else f"{self.signal_scale:g}"
        parts = [
            *super().store_parts(),
            self.shift,
            datasets,
            *function_store_parts(self.calibrators, self.selector, self.producers, self.ml_models),
        ]
        return [*parts, f"style__sig_{scale}__{'log' if self.log_y else 'lin'}"]

    def requires(self) -> dict[str, MergeHistograms]:
        # all variables: MergeHistograms' output path does not depend on --variables (see load())
        return {dataset: MergeHistograms.req(self, dataset=dataset, variables=()) for dataset in self.datasets}

    def output(self) -> dict[str, dict[str, dict[str, law.LocalFileTarget]]]:
        return {
            category: {
                variable: {
                    ext: self.target(f"plot__cat_{category}__var_{variable}.{ext}") for ext in ("png", "pdf", "json")
                }
                for variable in self.variables
            }
            for category in self.categories
        }

    def load(self) -> dict[str, dict[str, Any]]:
        """The histograms of each dataset; a clear error when a variable is missing from one of them."""
        histograms = {}
        for dataset, target in self.input().items():
            histograms[dataset] = load_histograms(target.path)
            missing = [name for name in self.variables if name not in histograms[dataset]]
            if missing:
                raise UserError(
                    f"the histograms of dataset '{dataset}' ({target.path}) lack the variable(s) {', '.join(missing)}; "
                    "they were made with another --variables (MergeHistograms' output path does not depend on it): "
                    "remove that file or use another --version",
                )
        return histograms

    def run(self) -> None:
        from cf.plotting import group_datasets, is_signal

        histograms = self.load()
        shifts = {dataset: task.effective_shift for dataset, task in self.requires().items()}
        groups = group_datasets(self.config_inst, list(self.datasets))
        kinds = {}
        for name in groups:
            process_inst = self.config_inst.get_process(name, deep=False)
            kinds[name] = "data" if process_inst.is_data else ("signal" if is_signal(process_inst) else "background")
        outputs = self.output()
        for category in self.categories:
            category_inst = self.config_inst.get_category(category)
            for variable in self.variables:
                numbers = self.plot_numbers(histograms, shifts, groups, kinds, category_inst, variable)
                self.draw(numbers, outputs[category][variable])
                self.publish_message(f"plotted {variable} in category {category}")

    def plot_numbers(
        self,
        histograms: dict[str, dict[str, Any]],
        shifts: dict[str, str],
        groups: dict[str, list[str]],
        kinds: dict[str, str],
        category_inst: Any,
        variable: str,
    ) -> dict[str, Any]:
        """The numbers of one plot (json-serializable): per dataset and per process group."""
        variable_inst = self.config_inst.get_variable(variable)
        datasets: dict[str, Any] = {}
        processes: dict[str, Any] = {}
        edges = None
        for process, names in groups.items():
            process_inst = self.config_inst.get_process(process, deep=False)
            values = variances = None
            under = over = 0.0
            for dataset in names:
                histogram = histograms[dataset][variable]
                v, w2, edges = select_histogram(histogram, category_inst.id, shifts[dataset])
                dataset_under, dataset_over = flow_yields(histogram, category_inst.id, shifts[dataset])
                datasets[dataset] = {
                    "process": process,
                    "shift": shifts[dataset],
                    "sum": float(v.sum()),
                    "variance": float(w2.sum()),
                }
                values = v if values is None else values + v
                variances = w2 if variances is None else variances + w2
                under, over = under + dataset_under, over + dataset_over
            if values is None or variances is None:
                raise ValueError(f"process '{process}' has no datasets")
            processes[process] = {
                "label": process_inst.label,
                "color": _color(process_inst.color1),
                "kind": kinds[process],
                "datasets": names,
                "values": _floats(values),
                "variances": _floats(variances),
                "underflow": under,
                "overflow": over,
                "sum": float(values.sum()),
            }
        luminosity = float(config_entry(self.config_inst, "luminosity").nominal)
        shown_luminosity = plotted_luminosity(self.config_inst, has_data="data" in kinds.values())
        mc_scale = shown_luminosity / luminosity
        for process, entry in processes.items():
            if kinds[process] != "data" and mc_scale != 1.0:
                _scale_entry(entry, mc_scale)
        return {
            "config": self.config,
            "category": {"name": category_inst.name, "id": category_inst.id, "label": category_inst.label},
            "variable": {
                "name": variable,
                "x_title": variable_inst.get_full_x_title(),
                "unit": variable_inst.unit,
                "expression": variable_inst.expression,
            },
            "shift": self.shift,
            "luminosity_pb": shown_luminosity,
            "luminosity_fb": shown_luminosity / 1000.0,
            "mc_luminosity_pb": luminosity,
            "mc_scale": mc_scale,
            "edges": _floats(np.asarray(edges)),
            "flow": str(DEFAULT_FLOW_STRATEGY),
            "processes": processes,
            "datasets": datasets,
            "event_weights": event_weight_columns(self.config_inst, self.shift),
        }

    def draw(self, numbers: dict[str, Any], outputs: dict[str, law.LocalFileTarget]) -> None:
        from cf.plotting import HistComponent, plot_stack, save_figure, signal_scale_for

        def component(name: str) -> HistComponent:
            entry = numbers["processes"][name]
            return HistComponent(
                entry["label"], np.array(entry["values"]), np.array(entry["variances"]), entry["color"]
            )

        processes = numbers["processes"]
        backgrounds = sorted(
            (p for p in processes if processes[p]["kind"] == "background"), key=lambda p: processes[p]["sum"]
        )
        signals = [p for p in processes if processes[p]["kind"] == "signal"]
        data = [p for p in processes if processes[p]["kind"] == "data"]
        data_component = None
        if data:
            values = np.sum([processes[p]["values"] for p in data], axis=0)
            data_component = HistComponent("Data", values)
        scale = self.signal_scale
        if scale == 0:
            background_sum = sum(processes[p]["sum"] for p in backgrounds)
            signal_sum = max((processes[p]["sum"] for p in signals), default=0.0)
            scale = signal_scale_for(background_sum, signal_sum)
        result = plot_stack(
            np.array(numbers["edges"]),
            [component(p) for p in backgrounds],
            [component(p) for p in signals],
            data_component,
            x_label=numbers["variable"]["x_title"],
            y_label="Events / bin",
            signal_scale=scale,
            lumi_fb=numbers["luminosity_fb"],
            com=self.config_inst.campaign.ecm,
            category_label=_category_text(numbers),
            log_y=self.log_y,
        )
        numbers["signal_scale"] = scale
        numbers["stack_order"] = backgrounds
        numbers["background_total"] = _floats(result.background_total)
        numbers["background_variance"] = _floats(result.background_variance)
        numbers["ratio"] = None if result.ratio is None else [None if np.isnan(r) else float(r) for r in result.ratio]
        save_figure(result.figure, {"png": outputs["png"].path, "pdf": outputs["pdf"].path})
        dump_json(outputs["json"].path, numbers)


def plotted_luminosity(config_inst: Any, has_data: bool) -> float:
    """The luminosity in pb^-1 a stack plot shows: that of the data when it is drawn, else the config's.

    The MC is normalised to the config's ``luminosity``; where the data amount to less (``data_luminosity``, e.g. a
    small pseudo-data sample), a plot with data scales the MC down to them, so that data and MC compare bin by bin
    and the data keep their Poisson uncertainties.
    """
    luminosity = float(config_entry(config_inst, "luminosity").nominal)
    data_luminosity = config_entry(config_inst, "data_luminosity")
    if not has_data or data_luminosity is None:
        return luminosity
    return float(data_luminosity.nominal)


def _scale_entry(entry: dict[str, Any], factor: float) -> None:
    """Multiply the yields of a process entry of the plot numbers by ``factor`` (variances by its square)."""
    entry["values"] = [value * factor for value in entry["values"]]
    entry["variances"] = [variance * factor**2 for variance in entry["variances"]]
    for key in ("underflow", "overflow", "sum"):
        entry[key] *= factor


def _category_text(numbers: dict[str, Any]) -> str:
    """The category label of a stack plot, with a second line when the MC is scaled to the data luminosity."""
    text = numbers["category"]["label"] or numbers["category"]["name"]
    if numbers["mc_scale"] != 1.0:
        mc_fb = numbers["mc_luminosity_pb"] / 1000.0
        text += f"\nMC scaled from {mc_fb:.3g} " + r"fb$^{-1}$ to the data"
    return text


def _color(color: Any) -> Any:
    """An order color (an RGB tuple of floats or a string) as something json and matplotlib both take."""
    if color is None or isinstance(color, str):
        return color
    return [float(channel) for channel in color]


# ML results


@dataclass(frozen=True)
class MLClass:
    """One output class of an ML model.

    Attributes:
        name: The class name (e.g. ``hh``).
        datasets: The training datasets of the class.
        score_column: The evaluation column of the class's output node.
        label: A legend label (the label of the datasets' top-level process where they share one).
        color: A color (that of the top-level process), or None.
    """

    name: str
    datasets: tuple[str, ...]
    score_column: str
    label: str
    color: Any = None


def _class_style(config_inst: Any, name: str, datasets: tuple[str, ...]) -> tuple[str, Any]:
    from cf.plotting import top_level_process

    tops = {top_level_process(config_inst, config_inst.get_dataset(d).processes.get_first()) for d in datasets}
    if len(tops) == 1:
        top = tops.pop()
        return top.label or name, _color(top.color1)
    return name, None


def model_classes(model: MLModel, config_inst: Any) -> list[MLClass]:
    """The model's output classes (:meth:`MLModel.output_classes`, the signal first) with their plot style.

    A class whose datasets share one top-level process takes that process's label and color.
    """
    classes = []
    for output_class in model.output_classes():
        label, color = _class_style(config_inst, output_class.name, output_class.datasets)
        classes.append(MLClass(output_class.name, output_class.datasets, output_class.score_column, label, color))
    return classes


@dataclass
class ScoreSample:
    """Scores of a set of events: one row per event.

    Attributes:
        scores: Shape ``(events, classes)``, in the order of :func:`model_classes`.
        labels: The true class index of each event.
        weights: The event weights (``abs`` of the normalization weight).
        folds: The fold of the model that scored each event.
    """

    scores: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    folds: np.ndarray

    def select(self, mask: np.ndarray) -> ScoreSample:
        return ScoreSample(self.scores[mask], self.labels[mask], self.weights[mask], self.folds[mask])


class PlotMLResults(MLModelMixin, ProducersMixin, SelectorMixin, CalibratorsMixin, ConfigTask):
    """Performance plots of a k-fold ML model (``--ml-model``) on its training datasets.

    * ``plot__roc``: ROC curve of the signal class (the model's first class) against all others, per fold on
      the held-out events (the MLEvaluation outputs: each event scored by the one model that did not see it),
      and their mean with a ±1 sigma band; the AUCs are in the legend, the training-event mean dashed.
    * ``plot__confusion``: the confusion matrix of the held-out events (rows: true class, columns: the class
      with the largest score), each row normalised to 1.
    * ``plot__scores``: per output node, each class's score on training (filled) and held-out events (points),
      normalised to unit area (the training-event scores come from ``cf.MLTrainingScores``).
    * ``plot__loss``: training and validation loss per fold from :meth:`MLModel.training_history` (by default
      ``history.json`` in each fold's model directory); not written (an optional output) when the model has no
      history, which is logged.
    * ``ml_results.json``: the AUCs, the confusion matrix, the event counts and whether a history exists.

    Events are weighted with the absolute value of the model's ``weight_column`` (1 where it is absent).
    """

    def store_parts(self) -> list[str]:
        return [*super().store_parts(), *self.function_store_parts()]

    def requires(self) -> dict[str, Any]:
        funcs = training_functions(self.ml_model_inst, self.config_inst, self.param_kwargs)
        datasets = self.training_datasets()
        return {
            "training_scores": MLTrainingScores.req(self),
            "models": MLTraining.req(self, configs=(self.config,), dataset=(), branch=-1, **funcs),
            "evaluation": {dataset: MLEvaluation.req(self, dataset=dataset) for dataset in datasets},
            "events": {dataset: ReduceEvents.req(self, dataset=dataset) for dataset in datasets},
            "columns": {dataset: ProduceColumns.req(self, dataset=dataset) for dataset in datasets},
        }

    def output(self) -> dict[str, Any]:
        outputs: dict[str, Any] = {
            name: {ext: self.target(f"plot__{name}.{ext}") for ext in ("png", "pdf")}
            for name in ("roc", "confusion", "scores")
        }
        outputs["loss"] = {
            ext: law.LocalFileTarget(self.local_path(f"plot__loss.{ext}"), optional=True) for ext in ("png", "pdf")
        }
        outputs["json"] = self.target("ml_results.json")
        return outputs

    # inputs

    def classes(self) -> list[MLClass]:
        return model_classes(self.ml_model_inst, self.config_inst)

    def dataset_labels(self, classes: list[MLClass]) -> dict[str, int]:
        return {dataset: index for index, ml_class in enumerate(classes) for dataset in ml_class.datasets}

    def held_out_scores(self, classes: list[MLClass]) -> ScoreSample:
        """The MLEvaluation scores of the training datasets, with the weight and fold of each event."""
        inputs = self.input()
        labels = self.dataset_labels(classes)
        columns = [ml_class.score_column for ml_class in classes]
        uses = set(IDENTITY_COLUMNS) | {Route(column).column for column in columns}
        parts: list[ScoreSample] = []
        for dataset in self.training_datasets():
            evaluation = inputs["evaluation"][dataset]["collection"].targets
            events = inputs["events"][dataset]["collection"].targets
            produced = inputs["columns"][dataset]["collection"].targets
            for branch in sorted(evaluation):
                sources = [
                    open_source(events[branch]["events"].path),
                    open_source(produced[branch]["columns"].path),
                    open_source(evaluation[branch]["mlcolumns"].path),
                ]
                optional = weight_columns(self.ml_model_inst)
                for chunk, _, _ in iter_event_chunks(sources, uses, self.chunk_size, optional=optional):
                    parts.append(self._sample(chunk, columns, labels[dataset]))
        return _concatenate(parts, len(classes))

    def training_scores(self, classes: list[MLClass]) -> ScoreSample:
        """The MLTrainingScores rows of the events each fold model was trained on."""
        rows = ak.from_parquet(self.input()["training_scores"].path)
        rows = rows[rows.is_training]
        labels = np.full(len(rows), -1, dtype=np.int64)
        for dataset, label in self.dataset_labels(classes).items():
            labels[ak.to_numpy(rows.dataset == dataset)] = label
        if np.any(labels < 0):
            raise ValueError(f"{self.input()['training_scores'].path} has rows of datasets the model does not train on")
        columns = [ml_class.score_column for ml_class in classes]
        return ScoreSample(
            scores=_score_matrix(rows, columns),
            labels=labels,
            weights=np.abs(ak.to_numpy(rows.weight).astype(np.float64)),
            folds=ak.to_numpy(rows.fold).astype(np.int64),
        )

    def _sample(self, chunk: ak.Array, columns: list[str], label: int) -> ScoreSample:
        model = self.ml_model_inst
        weights = np.abs(event_weights(chunk, model.weight_column))
        labels = np.full(len(chunk), label, dtype=np.int64)
        return ScoreSample(_score_matrix(chunk, columns), labels, weights, fold_indices(chunk, model.folds))

    def histories(self) -> dict[int, dict[str, list[float]]]:
        """The training history of each fold (:meth:`MLModel.training_history`; folds without one are left out)."""
        targets = self.input()["models"]["collection"].targets
        histories = {fold: self.ml_model_inst.training_history(target) for fold, target in sorted(targets.items())}
        return {fold: history for fold, history in histories.items() if history is not None}

    # plots

    def run(self) -> None:
        from cf.plotting import (
            auc,
            confusion_matrix,
            mean_roc,
            plot_confusion_matrix,
            plot_loss_curves,
            plot_roc,
            plot_score_distributions,
            roc_curve,
            save_figure,
        )

        model = self.ml_model_inst
        outputs = self.output()
        classes = self.classes()
        held_out = self.held_out_scores(classes)
        training = self.training_scores(classes)
        signal = classes[0]

        # ROC curves per fold on held-out events, their mean, and the mean on training events
        folds = range(model.folds)
        held_curves: list[tuple[np.ndarray, np.ndarray]] = []
        training_curves: list[tuple[np.ndarray, np.ndarray]] = []
        for fold in folds:
            for sample, curves in ((held_out, held_curves), (training, training_curves)):
                part = sample.select(sample.folds == fold)
                curves.append(roc_curve(part.scores[:, 0], part.labels == 0, part.weights))
        held_aucs = [auc(*curve) for curve in held_curves]
        training_aucs = [auc(*curve) for curve in training_curves]
        mean = mean_roc(held_curves)
        training_mean = mean_roc(training_curves)
        all_auc = auc(*roc_curve(held_out.scores[:, 0], held_out.labels == 0, held_out.weights))
        figure = plot_roc(
            [(f"Fold {fold} (AUC = {value:.3f})", *held_curves[fold]) for fold, value in enumerate(held_aucs)],
            mean,
            f"Held-out mean (AUC = {np.mean(held_aucs):.3f} $\\pm$ {np.std(held_aucs):.3f})",
            title=f"{signal.label} vs. rest\nheld-out events",
            model_label=model.cls_name,
            extra=[(f"Training events, mean (AUC = {np.mean(training_aucs):.3f})", training_mean[0], training_mean[1])],
        )
        save_figure(figure, {ext: target.path for ext, target in outputs["roc"].items()})

        # confusion matrix of the held-out events
        predicted = np.argmax(held_out.scores, axis=1)
        matrix = confusion_matrix(held_out.labels, predicted, len(classes), held_out.weights)
        figure = plot_confusion_matrix(
            matrix, [c.label for c in classes], model_label=model.cls_name, events_label="held-out events"
        )
        save_figure(figure, {ext: target.path for ext, target in outputs["confusion"].items()})

        # score distributions, training against held-out
        def by_class(sample: ScoreSample) -> dict[str, tuple[np.ndarray, np.ndarray]]:
            return {
                c.label: (sample.scores[sample.labels == i], sample.weights[sample.labels == i])
                for i, c in enumerate(classes)
                if np.any(sample.labels == i)
            }

        figure = plot_score_distributions(
            [c.label for c in classes],
            [(c.label, c.color) for c in classes],
            by_class(training),
            by_class(held_out),
            model_label=model.cls_name,
        )
        save_figure(figure, {ext: target.path for ext, target in outputs["scores"].items()})

        # loss curves
        histories = self.histories()
        for target in outputs["loss"].values():
            target.remove()
        if histories:
            figure = plot_loss_curves(histories, model_label=model.cls_name)
            save_figure(figure, {ext: target.path for ext, target in outputs["loss"].items()})
        else:
            logger.info(f"ML model '{model.cls_name}' has no training history (see training_history): no loss plot")
            self.publish_message(f"no training history of '{model.cls_name}': the loss plot is skipped")

        results = {
            "model": model.cls_name,
            "config": self.config,
            "folds": model.folds,
            "weights": f"abs({model.weight_column})" if model.weight_column else "1",
            "classes": [
                {"name": c.name, "label": c.label, "datasets": list(c.datasets), "score_column": c.score_column}
                for c in classes
            ],
            "signal_class": signal.name,
            "auc": {
                "held_out": {
                    "per_fold": held_aucs,
                    "mean": float(np.mean(held_aucs)),
                    "std": float(np.std(held_aucs)),
                    "mean_curve": auc(mean[0], mean[1]),
                    "all_events": all_auc,
                },
                "training": {"per_fold": training_aucs, "mean": float(np.mean(training_aucs))},
            },
            "confusion_matrix": {
                "rows": "true class",
                "columns": "class with the largest score",
                "classes": [c.name for c in classes],
                "matrix": [[float(value) for value in row] for row in matrix],
            },
            "n_events": {
                "held_out": {c.name: int(np.sum(held_out.labels == i)) for i, c in enumerate(classes)},
                "training": {c.name: int(np.sum(training.labels == i)) for i, c in enumerate(classes)},
            },
            "history": {"available": bool(histories), "folds": sorted(histories)},
        }
        dump_json(outputs["json"].path, results)


def _score_matrix(events: ak.Array, columns: list[str]) -> np.ndarray:
    if len(events) == 0:
        return np.zeros((0, len(columns)))
    return np.stack([ak.to_numpy(events[Route(column).fields]).astype(np.float64) for column in columns], axis=1)


def _concatenate(parts: list[ScoreSample], n_classes: int) -> ScoreSample:
    if not parts:
        return ScoreSample(np.zeros((0, n_classes)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64))
    return ScoreSample(
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.weights for p in parts]),
        np.concatenate([p.folds for p in parts]),
    )
