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
from collections.abc import Sequence
from typing import Any, ClassVar

import awkward as ak
import numpy as np
from law.util import create_hash

from cf.columnar_util import Route
from cf.registry import RegisteredModel
from cf.util import UserError

__all__ = ["MLModel", "combine_fold_outputs", "expand_model_groups", "model_instance", "parse_settings"]


def _parse_value(text: str) -> Any:
    if ":" in text:
        return tuple(_parse_value(part) for part in text.split(":"))
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_settings(items: Sequence[str] | str) -> dict[str, Any]:
    """Parse ``--ml-model-settings`` items ``key=value`` into typed values.

    Values become int, float, bool (``true`` / ``false``), a tuple (``64:64``), or stay a string.

    Example:
        >>> parse_settings(["epochs=3", "layers=64:32", "lr=0.01", "batch_norm=false"])
        {'epochs': 3, 'layers': (64, 32), 'lr': 0.01, 'batch_norm': False}
    """
    if isinstance(items, str):
        items = [item for item in items.split(",") if item]
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"ML model setting '{item}' is not of the form key=value")
        settings[key.strip()] = _parse_value(value.strip())
    return settings


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


class MLModel(RegisteredModel, abc.ABC):
    """Base class of all ML models.

    Set the class attributes in a subclass, through ``derive(name, cls_dict={...})`` or, for one run, with
    ``--ml-model-settings key=value``.

    Class attributes:
        folds: Number of folds (>= 2); fold ``i``'s model is trained on all other folds.
        single_config: Whether the model trains on exactly one config.
        store_name: Optional name of the model's output directory (default: ``cls_name``).
        evaluation_settings: Names of settings that only change the evaluation (e.g. the inference backend):
            they are left out of the training's output path, so changing them does not retrain.
        preparation_producer_in_ml_evaluation: Whether the :meth:`preparation_producer` also runs before
            ``evaluate`` (columnflow's flag).

    Attributes:
        analysis_inst: The order analysis.
        config_insts: The configs the model is used with (``training_configs`` decides for training).
        parameters: Settings from ``--ml-model-settings`` (they also override class attributes).
    """

    folds: ClassVar[int] = 2
    single_config: ClassVar[bool] = False
    store_name: ClassVar[str | None] = None
    evaluation_settings: ClassVar[frozenset[str]] = frozenset()
    preparation_producer_in_ml_evaluation: ClassVar[bool] = True

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
        self.parameters = self.apply_settings(dict(parameters or {}))
        if not isinstance(self.folds, int) or self.folds < 2:
            raise UserError(f"ML model '{self.cls_name}': folds must be an integer >= 2, got {self.folds!r}")
        requested = list(requested_configs or [])
        configs = list(dict.fromkeys(self.training_configs(requested))) if requested else requested
        self.config_insts = [analysis_inst.get_config(name) for name in configs]
        if self.single_config and len(self.config_insts) > 1:
            raise UserError(f"ML model '{self.cls_name}' uses a single config, got {configs}")
        self.setup()

    def __str__(self) -> str:
        return f"{self.cls_name}__{self.parameters_repr}" if self.parameters_repr else self.cls_name

    @staticmethod
    def _format_value(value: Any) -> str:
        """A setting's value as text in the parameter pairs (columnflow's format: tuples joined by ``_``)."""
        if isinstance(value, (list, tuple)):
            return "_".join(MLModel._format_value(item) for item in value)
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float):
            return f"{value}" if value >= 0.01 else f"{value:.2e}"
        return str(value)

    def parameter_pairs(self, only_significant: bool = False) -> list[tuple[str, Any]]:
        """The settings as sorted ``(name, value)`` pairs.

        Args:
            only_significant: Leave out the settings that cannot change the training (``evaluation_settings``).
        """
        pairs = sorted(self.parameters.items())
        return [(k, v) for k, v in pairs if k not in self.evaluation_settings] if only_significant else pairs

    def _parameters_hash(self, only_significant: bool) -> str:
        pairs = self.parameter_pairs(only_significant=only_significant)
        if not pairs:
            return ""
        return create_hash("__".join(f"{name}_{self._format_value(value)}" for name, value in pairs))

    @property
    def parameters_repr(self) -> str:
        """The hash of the joined parameter pairs (columnflow's form; empty without settings), in output paths."""
        return self._parameters_hash(only_significant=False)

    @property
    def training_parameters_repr(self) -> str:
        """Like ``parameters_repr`` but of the significant pairs only: the training's output path."""
        return self._parameters_hash(only_significant=True)

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


def _first_parameter(method: Any) -> str:
    return next(iter(inspect.signature(method).parameters), "")


def _frozen(value: Any) -> Any:
    """Sequences as tuples (hashable), other values unchanged."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


def expand_model_groups(config_inst: Any, names: Sequence[str]) -> tuple[str, ...]:
    """The model names with every group of ``config.x.ml_model_groups`` replaced by its members (each name once).

    Example: with ``config.x.ml_model_groups = {"classifiers": ("test_model", "dnn")}``, ``("classifiers",)``
    becomes ``("test_model", "dnn")``.
    """
    groups = config_inst.x("ml_model_groups", {})
    expanded: list[str] = []
    for name in names:
        expanded.extend(groups.get(name, (name,)))
    return tuple(dict.fromkeys(expanded))


@functools.cache
def model_instance(name: str, settings: tuple[str, ...], configs: tuple[str, ...]) -> MLModel:
    """The registered model ``name`` for the configs, with typed ``key=value`` settings (one per process).

    The model modules of law.cfg ``ml_modules`` are imported first; ``setup()`` runs once per process.
    """
    from cf.analysis import load_analysis, load_modules

    load_modules("ml_modules")
    model_cls = MLModel.get_cls(name)
    return model_cls(load_analysis(), requested_configs=list(configs), parameters=parse_settings(list(settings)))
