"""The ``MLModel`` contract: what an analysis implements to train k-fold models and evaluate them.

A model is a subclass of :class:`MLModel` implementing the abstract methods, made available under a
name with :meth:`MLModel.derive`; the modules defining models are listed in law.cfg ``ml_modules``, and
``--ml-model NAME`` picks one. The API follows columnflow's, so models port by changing imports; the
``training_*`` hooks take the ``config_inst`` of each training config (columnflow passes the analysis).
"""

from __future__ import annotations

import abc
import inspect
import sys
from collections.abc import Sequence
from typing import Any, ClassVar

import awkward as ak
import numpy as np

from cf.util import UserError, short_hash

__all__ = ["MLModel", "combine_fold_outputs", "parse_settings"]


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


class MLModel(abc.ABC):
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

    _registry: ClassVar[dict[str, type[MLModel]]] = {}

    def __init__(
        self,
        analysis_inst: Any,
        *,
        requested_configs: Sequence[str] | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self.analysis_inst = analysis_inst
        self.parameters = self._apply_parameters(dict(parameters or {}))
        if not isinstance(self.folds, int) or self.folds < 2:
            raise UserError(f"ML model '{self.cls_name}': folds must be an integer >= 2, got {self.folds!r}")
        requested = list(requested_configs or [])
        configs = self.training_configs(requested) if requested else requested
        self.config_insts = [analysis_inst.get_config(name) for name in configs]
        if self.single_config and len(self.config_insts) > 1:
            raise UserError(f"ML model '{self.cls_name}' uses a single config, got {configs}")
        self.setup()

    # registry and derivation

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        existing = MLModel._registry.get(cls.__name__)
        if existing is not None and existing.__module__ != cls.__module__:
            raise ValueError(
                f"two ML models are named '{cls.__name__}': in module {existing.__module__} and in {cls.__module__}",
            )
        MLModel._registry[cls.__name__] = cls

    @classmethod
    def derive(cls, name: str, cls_dict: dict[str, Any] | None = None) -> type[MLModel]:
        """Create and register a subclass named ``name`` whose class attributes are ``cls_dict``'s items.

        Raises:
            TypeError: If the new class still lacks an implementation of an abstract method.
        """
        namespace = dict(cls_dict or {})
        namespace.setdefault("__module__", sys._getframe(1).f_globals.get("__name__", cls.__module__))
        derived = type(name, (cls,), namespace)
        missing = sorted(getattr(derived, "__abstractmethods__", ()))
        if missing:
            del MLModel._registry[name]
            raise TypeError(f"ML model '{name}' does not implement the abstract method(s): {', '.join(missing)}")
        return derived

    @classmethod
    def get_cls(cls, name: str) -> type[MLModel]:
        """The registered model class called ``name``; an unknown name lists the available ones."""
        model_cls = MLModel._registry.get(name)
        if model_cls is None or getattr(model_cls, "__abstractmethods__", None):
            available = sorted(n for n, c in MLModel._registry.items() if not getattr(c, "__abstractmethods__", None))
            raise UserError(f"unknown ML model '{name}', available: {', '.join(available) or '(none)'}")
        return model_cls

    @property
    def cls_name(self) -> str:
        """The model's registered name; its output columns are ``"{cls_name}.<name>"``."""
        return type(self).__name__

    def _apply_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        allowed = self.setting_names()
        for key, value in parameters.items():
            if key not in allowed:
                raise UserError(
                    f"unknown setting '{key}' for ML model '{self.cls_name}', allowed: {', '.join(allowed)}",
                )
            setattr(self, key, value)
        return parameters

    @classmethod
    def setting_names(cls) -> list[str]:
        """The attributes ``--ml-model-settings`` may set: public class attributes that are plain values."""
        return sorted(
            name
            for name in dir(cls)
            if not name.startswith("_")
            and not callable(getattr(cls, name))
            and not isinstance(getattr(cls, name, None), property)
            and not isinstance(inspect.getattr_static(cls, name), property)
        )

    @property
    def parameters_repr(self) -> str:
        """A short, stable representation of the settings (empty without settings), used in output paths."""
        return short_hash(self.parameters) if self.parameters else ""

    @property
    def training_parameters_repr(self) -> str:
        """Like ``parameters_repr`` but without the ``evaluation_settings``: the training's output path."""
        training = {k: v for k, v in self.parameters.items() if k not in self.evaluation_settings}
        return short_hash(training) if training else ""

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
        """The sandbox the task runs in, e.g. ``"bash::$CF_BASE/sandboxes/venv_ml_tf.sh"``."""

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

    def setup(self) -> None:  # noqa: B027 (an optional hook, empty by default)
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
