"""The ``MLModel`` contract: what an analysis implements to train k-fold models and evaluate them.

A model is a subclass of :class:`MLModel` implementing the abstract methods, made available under a
name with :meth:`MLModel.derive`; the modules defining models are listed in law.cfg ``ml_modules``, and
``--ml-model NAME`` picks one. The API follows columnflow's, so models port by changing imports; the
``training_*`` hooks take the ``config_inst`` of each training config (columnflow passes the analysis).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import awkward as ak
import numpy as np

from cf.registry import RegisteredModel
from cf.util import UserError

__all__ = ["MLModel", "combine_fold_outputs", "model_instance", "parse_settings"]


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

    Attributes:
        analysis_inst: The order analysis.
        config_insts: The configs the model is used with (``training_configs`` decides for training).
        parameters: Settings from ``--ml-model-settings`` (they also override class attributes).
    """

    folds: ClassVar[int] = 2
    single_config: ClassVar[bool] = False
    store_name: ClassVar[str | None] = None
    evaluation_settings: ClassVar[frozenset[str]] = frozenset()

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
        configs = self.training_configs(requested) if requested else requested
        self.config_insts = [analysis_inst.get_config(name) for name in configs]
        if self.single_config and len(self.config_insts) > 1:
            raise UserError(f"ML model '{self.cls_name}' uses a single config, got {configs}")
        self.setup()

    @property
    def cls_name(self) -> str:
        """The model's registered name; its output columns are ``"{cls_name}.<name>"``."""
        return type(self).__name__

    @property
    def parameters_repr(self) -> str:
        """A short, stable representation of the settings (empty without settings), used in output paths."""
        return self.settings_hash(self.parameters)

    @property
    def training_parameters_repr(self) -> str:
        """Like ``parameters_repr`` but without the ``evaluation_settings``: the training's output path."""
        training = {k: v for k, v in self.parameters.items() if k not in self.evaluation_settings}
        return self.settings_hash(training)

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


@functools.cache
def model_instance(name: str, settings: tuple[str, ...], configs: tuple[str, ...]) -> MLModel:
    """The registered model ``name`` for the configs, with typed ``key=value`` settings (one per process).

    The model modules of law.cfg ``ml_modules`` are imported first; ``setup()`` runs once per process.
    """
    from cf.analysis import load_analysis, load_modules

    load_modules("ml_modules")
    model_cls = MLModel.get_cls(name)
    return model_cls(load_analysis(), requested_configs=list(configs), parameters=parse_settings(list(settings)))
