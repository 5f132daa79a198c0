"""The ``MLModel`` contract: what an analysis implements to train k-fold models and evaluate them.

A model is a subclass of :class:`MLModel` implementing the abstract methods, made available under a
name with :meth:`MLModel.derive`; the modules defining models are listed in law.cfg ``ml_modules``, and
``--ml-model NAME`` picks one. The API follows columnflow's, so models port by changing imports; the
``training_*`` hooks take the ``config_inst`` of each training config (columnflow passes the analysis).
"""

from __future__ import annotations

import abc
import functools
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import awkward as ak
import numpy as np

from cf.columnar_util import Route, set_ak_column
from cf.contract import DEFAULT_WEIGHT_COLUMN, config_entry
from cf.registry import RegisteredModel, parse_settings, setting, settings_text, split_settings
from cf.util import UserError

__all__ = [
    "MLModel",
    "OutputClass",
    "combine_fold_outputs",
    "held_out_outputs",
    "expand_model_groups",
    "join_model_specs",
    "model_instance",
    "model_spec",
    "model_spec_store_name",
    "parse_settings",
    "setting",
    "split_model_spec",
    "variable_model",
]


def combine_fold_outputs(
    fold_outputs: Sequence[np.ndarray],
    fold_indices: np.ndarray,
    events_used_in_training: bool,
) -> np.ndarray:
    """Combine the outputs of the fold models per event, without leaking training events.

    Args:
        fold_outputs: One array per fold model, each with the outputs for all events (same shape).
        fold_indices: The fold of each event.
        events_used_in_training: Whether the events belong to a dataset the model trained on.

    Returns:
        For training datasets, each event's output from the one model that did not train on its fold;
        for other datasets, the mean over all fold models.
    """
    stacked = np.stack([np.asarray(output) for output in fold_outputs])
    if not events_used_in_training:
        return stacked.mean(axis=0)
    return stacked[np.asarray(fold_indices), np.arange(stacked.shape[1])]


def held_out_outputs(
    predictors: Sequence[Callable[[np.ndarray], np.ndarray]],
    inputs: np.ndarray,
    fold_indices: np.ndarray,
    events_used_in_training: bool,
) -> np.ndarray:
    """What :func:`combine_fold_outputs` gives, running each fold model only on the events it scores.

    For training datasets, fold model ``i`` predicts only the events of fold ``i`` (a ``1 / folds`` share of
    the work); for other datasets every model predicts every event and the outputs are averaged.

    Args:
        predictors: One function per fold model, mapping inputs (rows are events) to its outputs.
        inputs: The inputs of at least one event.
        fold_indices: The fold of each event.
        events_used_in_training: Whether the events belong to a dataset the model trained on.
    """
    if not events_used_in_training:
        return combine_fold_outputs([predict(inputs) for predict in predictors], fold_indices, False)
    fold_indices = np.asarray(fold_indices)
    outputs: np.ndarray | None = None
    for fold, predict in enumerate(predictors):
        in_fold = fold_indices == fold
        if not in_fold.any():
            continue
        predicted = np.asarray(predict(inputs[in_fold]))
        if outputs is None:
            outputs = np.empty((len(inputs), *predicted.shape[1:]), dtype=predicted.dtype)
        outputs[in_fold] = predicted
    if outputs is None:
        raise ValueError("held_out_outputs needs the inputs of at least one event")
    return outputs


@dataclass(frozen=True)
class OutputClass:
    """One output class of a classifier.

    Attributes:
        name: The class name, e.g. ``hh``.
        datasets: The training datasets of the class.
        score_column: The evaluation column with the class's score, e.g. ``dnn.score_hh``.
    """

    name: str
    datasets: tuple[str, ...]
    score_column: str


class MLModel(RegisteredModel, abc.ABC):
    """Base class of all ML models.

    Set the class attributes in a subclass or through ``derive(name, cls_dict={...})``; the attributes declared
    with :func:`setting` may also be changed for one run with ``--ml-model-settings key=value``.

    Class attributes:
        folds: Number of folds (a setting, >= 2); fold ``i``'s model is trained on all other folds.
        weight_column: The column that weighs the events in the framework's tables and plots of the model
            (``cf.MLTrainingScores``, ``cf.PlotMLResults``; absolute values, 1 where the column is absent); None
            weighs every event 1. The model's ``train`` decides its own training weights.
        classes: The output classes of a classifier, the signal first: ``(name, dataset names)`` pairs; the
            evaluation writes one score per class into :meth:`score_column`. Needed by ``cf.PlotMLResults``.
        single_config: Whether the model trains on exactly one config.
        store_name: Optional name of the model's output directory (default: ``cls_name``).
        evaluation_settings: Names of settings that only change the evaluation (e.g. the inference backend):
            they are left out of the training's output path, so changing them does not retrain.
        preparation_producer_in_ml_evaluation: Whether the :meth:`preparation_producer` also runs before
            ``evaluate`` (columnflow's flag).
        training_only_settings: Names of settings that change only the fit, not the prepared training events
            (e.g. the layers, the learning rate): trainings that differ only in them share the outputs of
            ``cf.PrepareMLEvents`` / ``cf.MergeMLEvents`` (a scan prepares the events once).
        scan_metric: The :meth:`training_metrics` entry whose mean over the folds ranks the points of
            ``cf.MLTrainingScan`` (default ``val_loss``).
        scan_metric_higher_is_better: Whether a larger ``scan_metric`` is better (False: lower is better).
        wants_gpu: Whether the training wants a GPU: ``cf.MLTraining`` batch jobs then request one by default
            (``--job-gpus``).

    Attributes:
        analysis_inst: The order analysis.
        config_insts: The configs the model is used with (``training_configs`` decides for training).
        settings: The settings given for this run, checked and typed (columnflow calls them ``parameters``);
            each one also replaces the class attribute on this instance.
    """

    folds: ClassVar[int] = setting(2, "number of folds; fold i's model is trained on all other folds", minimum=2)
    weight_column: ClassVar[str | None] = DEFAULT_WEIGHT_COLUMN
    classes: ClassVar[tuple[tuple[str, tuple[str, ...]], ...]] = ()
    single_config: ClassVar[bool] = False
    store_name: ClassVar[str | None] = None
    evaluation_settings: ClassVar[frozenset[str]] = frozenset()
    preparation_producer_in_ml_evaluation: ClassVar[bool] = True
    training_only_settings: ClassVar[frozenset[str]] = frozenset()
    scan_metric: ClassVar[str] = "val_loss"
    scan_metric_higher_is_better: ClassVar[bool] = False
    wants_gpu: ClassVar[bool] = False

    kind: ClassVar[str] = "ML model"
    _registry: ClassVar[dict[str, type[RegisteredModel]]] = {}

    def __init__(
        self,
        analysis_inst: Any,
        *,
        requested_configs: Sequence[str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self.analysis_inst = analysis_inst
        self.settings = self.apply_settings(dict(parameters or {}))
        requested = list(requested_configs or [])
        configs = list(dict.fromkeys(self.training_configs(requested))) if requested else requested
        self.config_insts = [analysis_inst.get_config(name) for name in configs]
        if self.single_config and len(self.config_insts) > 1:
            raise UserError(f"ML model '{self.cls_name}' uses a single config, got {configs}")
        self.setup()

    def __str__(self) -> str:
        return f"{self.cls_name}__{self.settings_repr}" if self.settings_repr else self.cls_name

    @property
    def parameters(self) -> dict[str, Any]:
        """The settings given to this instance (columnflow's name for :attr:`settings`)."""
        return self.settings

    def parameter_pairs(self, only_significant: bool = False) -> list[tuple[str, Any]]:
        """The settings as sorted ``(name, value)`` pairs (columnflow's API).

        Args:
            only_significant: Leave out the settings that cannot change the training (``evaluation_settings``).
        """
        pairs = sorted(self.settings.items())
        return [(k, v) for k, v in pairs if k not in self.evaluation_settings] if only_significant else pairs

    @property
    def parameters_repr(self) -> str:
        """Columnflow's name for :attr:`settings_repr`."""
        return self.settings_repr

    @property
    def training_settings_repr(self) -> str:
        """Like ``settings_repr`` but without the ``evaluation_settings``: the training's output path."""
        return self.settings_hash(self.settings, leave_out=self.evaluation_settings)

    @property
    def accepts_scheduler_messages(self) -> bool:
        """Whether training and evaluation react to messages of a central luigi scheduler.

        The template runs law with its local scheduler, which sends none; a model may still say True (ported code),
        and :meth:`get_scheduler_messages` then returns what the task received.
        """
        return False

    def get_scheduler_messages(self, task: Any) -> dict[str, Any]:
        """Key-value messages the task received from a central scheduler (none with the local scheduler)."""
        messages: dict[str, Any] = {}
        queue = getattr(task, "scheduler_messages", None)
        while getattr(task, "accepts_messages", False) and queue is not None and not queue.empty():
            key, _, value = str(queue.get()).partition("=")
            messages[key.strip()] = value.strip()
        return messages

    @property
    def used_columns(self) -> dict[Any, set[Route]]:
        """Per config, the routes the model reads."""
        return {config_inst: {Route(column) for column in self.uses(config_inst)} for config_inst in self.config_insts}

    @property
    def produced_columns(self) -> dict[Any, set[Route]]:
        """Per config, the routes the evaluation writes."""
        return {
            config_inst: {Route(column) for column in self.produces(config_inst)} for config_inst in self.config_insts
        }

    @property
    def used_datasets(self) -> dict[Any, set[Any]]:
        """Per config, the datasets the model trains on."""
        return {config_inst: set(self.datasets(config_inst)) for config_inst in self.config_insts}

    @property
    def config_inst(self) -> Any:
        """The one config of the model; an error when it has several."""
        if len(self.config_insts) != 1:
            names = [config.name for config in self.config_insts]
            raise RuntimeError(f"ML model '{self.cls_name}' has {len(names)} configs ({names}); use config_insts")
        return self.config_insts[0]

    # the contract

    @abc.abstractmethod
    def sandbox(self, task: Any) -> str:
        """The sandbox the task runs in, e.g. ``"bash::$CF_BASE/sandboxes/venv_ml_tf.sh"``.

        An empty string runs the task in the base environment (no sandbox process), for models whose software
        is installed there, such as ONNX Runtime.
        """

    @abc.abstractmethod
    def datasets(self, config_inst: Any) -> set[Any]:
        """The order datasets the model trains on in this config."""

    @abc.abstractmethod
    def uses(self, config_inst: Any) -> set[Any]:
        """The columns (route strings) the model reads, for training and evaluation."""

    @abc.abstractmethod
    def produces(self, config_inst: Any) -> set[Any]:
        """The columns the evaluation writes, normally ``"{cls_name}.<name>"``."""

    @abc.abstractmethod
    def output(self, task: Any) -> Any:
        """The target(s) of fold ``task.branch``'s trained model, e.g. a directory per fold."""

    @abc.abstractmethod
    def open_model(self, target: Any) -> Any:
        """Load one fold's model from what ``output`` returned for that fold."""

    @abc.abstractmethod
    def train(self, task: Any, input: Any, output: Any) -> None:
        """Train fold ``task.branch``'s model on the events in ``input`` and save it to ``output``."""

    @abc.abstractmethod
    def evaluate(
        self,
        task: Any,
        events: ak.Array,
        models: list[Any],
        fold_indices: np.ndarray,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        """Add the model outputs to ``events``; only the ``produces`` columns are kept afterwards."""

    # what the framework reads of a classifier (plots, training-score tables)

    def class_names(self) -> list[str]:
        """The names of the output classes, in the order of :attr:`classes` (the signal first)."""
        return [name for name, _ in self.classes]

    def score_column(self, class_name: str) -> str:
        """The evaluation column of one class's score, ``"{cls_name}.score_{class_name}"``."""
        return f"{self.cls_name}.score_{class_name}"

    def class_index(self, dataset_name: str) -> int | None:
        """The index of the class a dataset belongs to; None for a dataset the model does not train on."""
        for index, (_, dataset_names) in enumerate(self.classes):
            if dataset_name in dataset_names:
                return index
        return None

    def output_classes(self) -> list[OutputClass]:
        """The output classes with their datasets and score columns, from :attr:`classes`.

        Raises:
            UserError: If the model declares no classes (the framework then cannot tell which score belongs to
                which datasets).
        """
        if not self.classes:
            raise UserError(
                f"ML model '{self.cls_name}' declares no output classes: set its 'classes' to (name, dataset names) "
                "pairs, the signal first, with one score column per class (see score_column)",
            )
        return [OutputClass(name, tuple(names), self.score_column(name)) for name, names in self.classes]

    def set_class_scores(self, events: ak.Array, scores: np.ndarray) -> ak.Array:
        """Write column ``i`` of ``scores`` (shape ``(events, classes)``) into the score column of class ``i``."""
        for node, name in enumerate(self.class_names()):
            events = set_ak_column(events, self.score_column(name), scores[:, node], value_type=np.float32)
        return events

    def add_score_variables(self, binning: tuple[int, float, float] = (20, 0.0, 1.0)) -> None:
        """Add one variable per output class (``score_column``) to each config that lacks it, for histograms."""
        for config_inst in self.config_insts:
            for name in self.class_names():
                column = self.score_column(name)
                if not config_inst.has_variable(column):
                    config_inst.add_variable(
                        name=column,
                        expression=column,
                        binning=binning,
                        x_title=f"{self.cls_name} {name} score",
                    )

    def training_history(self, target: Any) -> dict[str, list[float]] | None:
        """The per-epoch metrics of one fold's training (``{"loss": [...], "val_loss": [...]}``), None if unknown.

        By default ``history.json`` in the fold's output directory (what ``output`` returned): write it in
        ``train`` to get the loss plot of ``cf.PlotMLResults``, or override this method.
        """
        path = os.path.join(getattr(target, "path", str(target)), "history.json")
        if not os.path.isfile(path):
            return None
        with open(path) as file:
            return json.load(file)

    def training_metrics(self, target: Any) -> dict[str, float] | None:
        """The held-out metrics of one fold's training (``{"val_loss": 0.41, ...}``), None if unknown.

        By default the numbers in ``metrics.json`` in the fold's output directory (what ``output`` returned),
        else the smallest ``val_loss`` of :meth:`training_history`. ``cf.MLTrainingScan`` tabulates them per fold
        and ranks its points by :attr:`scan_metric`; override this method to report other numbers.
        """
        path = os.path.join(getattr(target, "path", str(target)), "metrics.json")
        if os.path.isfile(path):
            with open(path) as file:
                metrics = json.load(file)
            return {key: float(value) for key, value in metrics.items() if _is_number(value)}
        history = self.training_history(target) or {}
        return {"val_loss": float(min(history["val_loss"]))} if history.get("val_loss") else None

    # optional: the input features, read by cf.PlotMLInputs and cf.PlotMLImportance (cf.tasks.ml_diagnostics)

    def input_features(self) -> list[str]:
        """The names of the input features, one per column of :meth:`input_matrix`."""
        raise NotImplementedError

    def input_matrix(self, events: ak.Array) -> np.ndarray:
        """The input features of the events, shape ``(events, features)``, in physical units.

        What the network receives before any scaling it does itself, with missing objects already replaced as
        the model replaces them, so that the plotted distributions and correlations are those the network sees.
        """
        raise NotImplementedError

    def predict_inputs(self, fold_model: Any, x: np.ndarray) -> np.ndarray:
        """The class scores, shape ``(events, classes)``, of one fold's model (``open_model``).

        ``x`` holds rows of :meth:`input_matrix`, some of whose columns the importance plot permutes.
        """
        raise NotImplementedError

    def training_weights(self, weights: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
        """The per-event weights ``train`` applies, from the ``weight_column`` values and the class indices.

        None (the default) when the model does not declare them; the input plots then show no class weights.
        """
        return None

    # optional hooks

    def setup(self) -> None:
        """Called once the configs are known; may add variables (e.g. of the outputs) to the configs."""

    def requires(self, task: Any) -> Any:
        """Extra requirements of the training task; their outputs arrive in ``input["model"]``."""
        return {}

    def training_configs(self, requested_configs: Sequence[str]) -> list[str]:
        """The configs to train on, given the requested ones."""
        return list(requested_configs)

    def training_calibrators(self, config_inst: Any, requested_calibrators: Sequence[str]) -> list[str]:
        """The calibrators whose output the training reads in this config."""
        return list(requested_calibrators)

    def training_selector(self, config_inst: Any, requested_selector: str) -> str:
        """The selector whose output the training reads in this config."""
        return requested_selector

    def training_producers(self, config_inst: Any, requested_producers: Sequence[str]) -> list[str]:
        """The producers whose columns the training reads in this config."""
        return list(requested_producers)

    def evaluation_producers(self, config_inst: Any, requested_producers: Sequence[str]) -> list[str]:
        """The producers whose columns the evaluation reads in this config."""
        return list(requested_producers)

    def preparation_producer(self, config_inst: Any) -> str | None:
        """A producer run on the events before the model's columns are taken (training and, by default, evaluation).

        Its columns need not be stored: e.g. features computed on the fly. None (the default) runs nothing.
        """
        return None

    def hook_target(self, hook: str, config_inst: Any) -> Any:
        """What a hook receives first: the ``config_inst`` (the ML guide's style) or the ``analysis_inst``.

        Hooks written in columnflow's code style name their first parameter ``analysis_inst``; both styles work.
        """
        return self.analysis_inst if _first_parameter(getattr(self, hook)) == "analysis_inst" else config_inst

    def resolved_preparation_producer(self, config_inst: Any) -> str | None:
        """:meth:`preparation_producer` for ``config_inst`` (called in either style, see :meth:`hook_target`)."""
        return self.preparation_producer(self.hook_target("preparation_producer", config_inst))

    def resolved_hook(self, hook: str, config_inst: Any, requested: Any) -> Any:
        """The value of a ``training_*`` / ``evaluation_producers`` hook, evaluated once per config and request.

        Tasks ask for the same values many times (parameters, requirements, output paths); the hook runs once, and a
        value it returned resolves to itself, so a hook that extends the request (``requested + ["x"]``) never adds
        twice when a task passes the resolved values on to another task.

        Args:
            hook: The hook's name (``training_calibrators``, ``training_selector``, ``training_producers`` or
                ``evaluation_producers``).
            config_inst: The config.
            requested: The requested value (a name or a sequence of names).

        Returns:
            The hook's value: a tuple for sequences, a string for the selector.
        """
        cache: dict[tuple[str, str, Any], Any] = self.__dict__.setdefault("_resolved_hooks", {})
        key = (hook, config_inst.name, _frozen(requested))
        if key not in cache:
            argument = list(requested) if isinstance(requested, (list, tuple)) else requested
            value = _frozen(getattr(self, hook)(self.hook_target(hook, config_inst), argument))
            cache[key] = value
            cache.setdefault((hook, config_inst.name, value), value)
        return cache[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _first_parameter(method: Any) -> str:
    return next(iter(inspect.signature(method).parameters), "")


def _frozen(value: Any) -> Any:
    """Sequences as tuples (hashable), other values unchanged."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def variable_model(variable_name: str) -> str | None:
    """The ML model whose output a variable shows (``dnn.score_hh`` -> ``dnn``), None for other variables.

    A model's ``setup`` may add such variables to the configs; tasks show them only when they name the model
    (``--ml-models``), so what a task sees never depends on which models ran before in the process.
    """
    from cf.analysis import load_modules

    load_modules("ml_modules")
    prefix, dot, _ = variable_name.partition(".")
    return prefix if dot and MLModel.has_cls(prefix) else None


def expand_model_groups(config_inst: Any, names: Sequence[str]) -> tuple[str, ...]:
    """The model names with every group of ``config.x.ml_model_groups`` replaced by its members (each name once).

    Example: with ``config.x.ml_model_groups = {"classifiers": ("test_model", "dnn")}``, ``("classifiers",)``
    becomes ``("test_model", "dnn")``.
    """
    groups = config_entry(config_inst, "ml_model_groups")
    expanded: list[str] = []
    for name in names:
        expanded.extend(groups.get(name, (name,)))
    return tuple(dict.fromkeys(expanded))


def join_model_specs(items: Sequence[str]) -> tuple[str, ...]:
    """The items of a comma-separated ``--ml-models`` list, with the commas inside ``[...]`` joined back.

    Example: ``("param_dnn[masses=300:500", "exclude_mass=400]", "dnn")`` (as a CSV parameter splits
    ``param_dnn[masses=300:500,exclude_mass=400],dnn``) becomes ``("param_dnn[masses=300:500,exclude_mass=400]",
    "dnn")``.
    """
    joined: list[str] = []
    open_brackets = 0
    for item in items:
        if open_brackets > 0:
            joined[-1] += f",{item}"
        else:
            joined.append(item)
        open_brackets += item.count("[") - item.count("]")
    return tuple(joined)


def split_model_spec(spec: str) -> tuple[str, tuple[str, ...]]:
    """The name and the ``key=value`` settings of an ``--ml-models`` item ``name`` or ``name[key=value,...]``.

    Raises:
        UserError: For an item with unbalanced brackets or text after the closing one.
    """
    name, bracket, rest = spec.partition("[")
    if not bracket:
        if "]" in spec:
            raise UserError(f"ML model '{spec}': a ']' without '[' (write name[key=value,...])")
        return spec.strip(), ()
    if not rest.endswith("]") or "[" in rest or rest.count("]") != 1:
        raise UserError(f"ML model '{spec}' is not of the form name[key=value,...]")
    items = [item.strip() for item in rest[:-1].split(",") if item.strip()]
    return name.strip(), tuple(items)


def model_spec(name: str, settings: Sequence[str]) -> str:
    """The canonical ``--ml-models`` item of a model and its settings: the settings checked, typed and sorted.

    Raises:
        UserError: For an unknown model, an undeclared setting or a value the declaration refuses.
    """
    checked = MLModel.get_cls(name).checked_settings(split_settings(list(settings)))
    return f"{name}[{','.join(settings_text(checked))}]" if checked else name


def model_spec_store_name(spec: str) -> str:
    """The part of an output path that names an ``--ml-models`` item: ``name`` or ``name__<settings hash>``.

    The hash is that of the model's evaluation output path (:meth:`MLModel.settings_repr`).
    """
    name, settings = split_model_spec(spec)
    if not settings:
        return name
    from cf.analysis import load_modules

    load_modules("ml_modules")
    return f"{name}__{MLModel.settings_hash(MLModel.get_cls(name).checked_settings(split_settings(list(settings))))}"


@functools.cache
def model_instance(name: str, settings: tuple[str, ...], configs: tuple[str, ...]) -> MLModel:
    """The registered model ``name`` for the configs, with its ``key=value`` settings (one per process).

    The model modules of law.cfg ``ml_modules`` are imported first; ``setup()`` runs once per process.
    """
    from cf.analysis import load_analysis, load_modules

    load_modules("ml_modules")
    model_cls = MLModel.get_cls(name)
    return model_cls(load_analysis(), requested_configs=list(configs), parameters=split_settings(list(settings)))
