"""Wrapper tasks: one ``law run`` for a task over several configs, datasets and shifts, as columnflow's.

A wrapper requires one task of the class it wraps per combination of the selected configs, shifts and datasets
and does nothing else (a :class:`law.WrapperTask`)::

    law run cf.ReduceEventsWrapper --version v1 --datasets "tt_*,dy_*" --shifts "*" --calibrators jec

* ``--configs``: names or patterns (fnmatch ``*``, ``?``, ``[...]``, ``^regex$``, ``!negation``; braces are
  expanded) of configs of the analysis; default: ``default_config`` of law.cfg. ``--skip-configs`` leaves some
  of them out.
* ``--datasets``: names or patterns of datasets, looked up in each selected config; default: ``*`` (all). A dataset
  on request (``x.on_request``, e.g. the resonant signals) is selected only by its full name.
  ``--skip-datasets`` leaves some of them out.
* ``--shifts``: names or patterns of shifts of each config; default: ``nominal``. ``--skip-shifts`` leaves some
  of them out.
* Every other parameter of the wrapped task (``--version``, ``--calibrators``, ``--ml-model``, ``--workflow``,
  ...) has the same name on the wrapper and is passed on to every required task (``.req``), whose defaults are
  resolved per config as usual.

Every pattern, also of the ``--skip-*`` flags, must match at least one name (of at least one selected config); an
unknown name or a pattern that matches nothing is one :class:`~cf.util.UserError` that lists the available names,
raised when the wrapper is made, before any task runs. So is an unknown calibrator, selector, producer or model,
since the wrapper makes its required tasks when it is made.

Shifts: a dataset is required only for the shifts that change the wrapped task's output for it, i.e. ``nominal``
and the shifts that its calibrators, selector or producers implement (:meth:`ShiftMixin.implemented_shifts
<cf.tasks.base.ShiftMixin.implemented_shifts>`), and never a shift other than ``nominal`` for data. Such a
combination would store the nominal output again (:attr:`~cf.tasks.base.ShiftMixin.effective_shift`), so it is
left out rather than run twice; a selection that leaves nothing to require at all is an error.
"""

from __future__ import annotations

import inspect
import itertools
import types
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import law
import luigi

from cf.analysis import analysis_setting, get_config, load_analysis
from cf.contract import default_datasets
from cf.tasks.base import AnalysisTask, ConfigTask, DatasetTask, ShiftMixin
from cf.tasks.calibration import CalibrateEvents
from cf.tasks.external import GetDatasetLFNs
from cf.tasks.histograms import CreateHistograms, MergeHistograms
from cf.tasks.ml import MergeMLEvaluation, MLEvaluation
from cf.tasks.production import ProduceColumns
from cf.tasks.reduction import ReduceEvents
from cf.tasks.selection import MergeSelectionStats, SelectEvents
from cf.util import UserError, is_pattern, pattern_matcher

__all__ = [
    "FEATURES",
    "CalibrateEventsWrapper",
    "CreateHistogramsWrapper",
    "GetDatasetLFNsWrapper",
    "MLEvaluationWrapper",
    "MergeHistogramsWrapper",
    "MergeMLEvaluationWrapper",
    "MergeSelectionStatsWrapper",
    "ProduceColumnsWrapper",
    "ReduceEventsWrapper",
    "SelectEventsWrapper",
    "WrapperMixin",
    "wrapper_factory",
]

#: The features that ``enable`` of :func:`wrapper_factory` accepts (columnflow's names).
FEATURES = ("configs", "skip_configs", "datasets", "skip_datasets", "shifts", "skip_shifts")
#: Per selecting feature: the parameter of the wrapped task it sets and the class that task must derive from.
FIELDS: dict[str, tuple[str, type]] = {
    "configs": ("config", ConfigTask),
    "shifts": ("shift", ShiftMixin),
    "datasets": ("dataset", DatasetTask),
}
#: Parameters of the wrapped task that the wrapper sets per requirement, or that are law's internals.
NOT_PORTED = frozenset({"config", "dataset", "shift", "effective_workflow"})

_DESCRIPTIONS = {
    "configs": "names or patterns of configs; default: default_config of law.cfg",
    "skip_configs": "names or patterns of configs to leave out of --configs",
    "datasets": "names or patterns of datasets of each config; default: * (all)",
    "skip_datasets": "names or patterns of datasets to leave out of --datasets",
    "shifts": "names or patterns of shifts of each config; default: nominal",
    "skip_shifts": "names or patterns of shifts to leave out of --shifts",
}
_DEFAULTS: dict[str, tuple[str, ...]] = {"datasets": ("*",), "shifts": ("nominal",)}


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the ``patterns`` (see :func:`cf.util.pattern_matcher`)."""
    return pattern_matcher(list(patterns), mode=any)(name)


def check_patterns(patterns: Sequence[str], names: Iterable[str], kind: str, flag: str, where: str) -> None:
    """Refuse the patterns of ``flag`` that match none of ``names``, in one line that lists the names.

    Raises:
        UserError: e.g. ``unknown dataset 'tt' (--datasets) in config c, available: a, b``.
    """
    available = sorted(set(names))
    unmatched = [pattern for pattern in patterns if not any(map(pattern_matcher(pattern), available))]
    if not unmatched:
        return
    names_ = ", ".join(f"'{p}'" for p in unmatched if not is_pattern(p))
    patterns_ = ", ".join(f"'{p}'" for p in unmatched if is_pattern(p))
    parts = [f"unknown {kind} {names_}"] * bool(names_) + [f"no {kind} matches {patterns_}"] * bool(patterns_)
    raise UserError(f"{' and '.join(parts)} ({flag}) in {where}, available: {', '.join(available)}")


def select_names(names: Iterable[str], patterns: Sequence[str], skip: Sequence[str]) -> list[str]:
    """The names that match ``patterns`` and none of ``skip``, sorted with ``nominal`` first."""
    selected = [name for name in names if matches_any(name, patterns) and not matches_any(name, skip)]
    return sorted(selected, key=lambda name: (name != "nominal", name))


def select_configs(patterns: Sequence[str], skip: Sequence[str]) -> list[str]:
    """The names of the analysis' configs selected by ``--configs`` and ``--skip-configs``.

    Raises:
        UserError: For a pattern that matches no config, or when ``--skip-configs`` leaves none.
    """
    analysis_inst = load_analysis()
    names = [config_inst.name for config_inst in analysis_inst.configs]
    where = f"analysis '{analysis_inst.name}'"
    check_patterns(patterns, names, "config", "--configs", where)
    check_patterns(skip, names, "config", "--skip-configs", where)
    selected = select_names(names, patterns, skip)
    if not selected:
        raise UserError(f"--skip-configs {','.join(skip)} leaves none of the configs of --configs {','.join(patterns)}")
    return selected


def select_children(
    config_insts: list[Any], kind: str, patterns: Sequence[str], skip: Sequence[str]
) -> dict[str, list[str]]:
    """Per config, the names of its datasets or shifts (``kind``) selected by ``--<kind>s`` and ``--skip-<kind>s``.

    A pattern must match in at least one of the configs; a config in which it matches nothing adds nothing.

    Raises:
        UserError: For a pattern that matches in none of the configs, or when the skip patterns leave nothing.
    """
    flag = f"--{kind}s"
    names = {config_inst.name: _child_names(config_inst, kind, patterns) for config_inst in config_insts}
    where = f"config{'s' if len(names) > 1 else ''} {', '.join(names)}"
    every_name = [name for children in names.values() for name in children]
    check_patterns(patterns, every_name, kind, flag, where)
    check_patterns(skip, every_name, kind, f"--skip-{kind}s", where)
    selected = {config: select_names(children, patterns, skip) for config, children in names.items()}
    if not any(selected.values()):
        raise UserError(f"--skip-{kind}s {','.join(skip)} leaves none of the {kind}s of {flag} {','.join(patterns)}")
    return selected


def _child_names(config_inst: Any, kind: str, patterns: Sequence[str]) -> list[str]:
    """The names of a config's datasets or shifts; a dataset on request (``x.on_request``) only where named exactly."""
    if kind != "dataset":
        return [child.name for child in getattr(config_inst, f"{kind}s")]
    defaults = {dataset_inst.name for dataset_inst in default_datasets(config_inst)}
    return [d.name for d in config_inst.datasets if d.name in defaults or d.name in patterns]


def has_own_output(task: law.Task) -> bool:
    """Whether ``task`` stores an output of its own shift: nominal, or a shift implemented for its dataset."""
    return not isinstance(task, ShiftMixin) or task.shift in ("nominal", task.effective_shift)


class WrapperMixin:
    """The behaviour of every class made by :func:`wrapper_factory`; see the module docstring.

    Attributes:
        wrapped_task: The class of the required tasks.
        wrapper_features: The enabled features (see :data:`FEATURES`).
    """

    wrapped_task: ClassVar[type[AnalysisTask]]
    wrapper_features: ClassVar[frozenset[str]]

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)  # type: ignore[misc]
        if all(feature in params for feature in cls.wrapper_features):
            if "configs" in cls.wrapper_features and not params["configs"]:
                params["configs"] = (analysis_setting("default_config"),)
            cls.wrapper_combinations(params)  # refuses bad names and patterns before anything runs
        return params

    @classmethod
    def wrapper_combinations(cls, params: dict[str, Any]) -> list[dict[str, str]]:
        """The parameters of every required task: one dict per combination of the enabled fields.

        Args:
            params: The wrapper's parameter values.

        Returns:
            Dicts with the keys ``config``, ``shift``, ``dataset`` (those that are enabled, in this order).
        """
        features = cls.wrapper_features
        configs = (
            select_configs(params["configs"], params.get("skip_configs", ()))
            if "configs" in features
            else [params["config"]]
        )
        config_insts = [get_config(load_analysis(), name) for name in configs]
        children = {
            kind: select_children(config_insts, kind, params[f"{kind}s"], params.get(f"skip_{kind}s", ()))
            for kind in ("shift", "dataset")
            if f"{kind}s" in features
        }
        combinations = []
        for config in configs:
            axes = {"config": [config]} if "configs" in features else {}
            axes.update({kind: selected[config] for kind, selected in children.items()})
            combinations += [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
        return combinations

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # made now, so that a bad parameter of the wrapped task fails before anything runs
        self._wrapped_tasks = self.wrapped_requirements()

    def wrapped_requirements(self) -> dict[tuple[str, ...], law.Task]:
        """The required tasks, keyed by their (config, shift, dataset) values of the enabled fields.

        Raises:
            UserError: When no combination is left (e.g. only shifts that no dataset implements).
        """
        requirements = {}
        for values in self.wrapper_combinations(self.param_kwargs):  # type: ignore[attr-defined]
            task = self.wrapped_task.req(self, **values)
            if has_own_output(task):
                requirements[tuple(values.values())] = task
        if not requirements:
            shifts = ",".join(self.param_kwargs.get("shifts", ()))  # type: ignore[attr-defined]
            raise UserError(
                f"nothing to require: no selected dataset has the shifts {shifts} (--shifts) in "
                f"{self.wrapped_task.get_task_family()}; data has only nominal, and a shift needs a calibrator, "
                "selector or producer that implements it",
            )
        return requirements

    def requires(self) -> dict[tuple[str, ...], law.Task]:
        return self._wrapped_tasks


def check_features(base_cls: type, require_cls: type, enable: Sequence[str]) -> None:
    """Refuse unknown features and features that do not fit the classes (see :func:`wrapper_factory`)."""
    unknown = [feature for feature in enable if feature not in FEATURES]
    if unknown:
        raise ValueError(f"unknown feature(s) {', '.join(unknown)}, known: {', '.join(FEATURES)}")
    lonely = [feature for feature in enable if feature.startswith("skip_") and feature[5:] not in enable]
    if lonely:
        raise ValueError(f"feature(s) {', '.join(lonely)} need(s) {', '.join(f[5:] for f in lonely)} enabled too")
    if not issubclass(base_cls, AnalysisTask):
        raise TypeError(f"base_cls must derive from AnalysisTask, {base_cls.__name__} does not")
    for feature, (field, level) in FIELDS.items():
        if feature in enable and not issubclass(require_cls, level):
            raise TypeError(f"feature '{feature}': {require_cls.__name__} has no --{field} ({level.__name__})")
        if feature in enable and issubclass(base_cls, level):
            raise TypeError(f"feature '{feature}': base_cls {base_cls.__name__} must not have --{field} itself")
        if feature not in enable and issubclass(require_cls, level) and not issubclass(base_cls, level):
            raise TypeError(
                f"{require_cls.__name__} needs --{field}: enable '{feature}' or use a base_cls with it "
                f"({level.__name__})",
            )


def feature_parameters(enable: Sequence[str]) -> dict[str, law.CSVParameter]:
    """The wrapper's own parameters of the enabled features."""
    return {
        feature: law.CSVParameter(
            default=_DEFAULTS.get(feature, ()),
            brace_expand=True,
            description=_DESCRIPTIONS[feature],
        )
        for feature in enable
    }


def ported_parameters(require_cls: type[law.Task], taken: set[str]) -> dict[str, luigi.Parameter]:
    """The parameters of ``require_cls`` that the wrapper takes over: all but ``taken`` ones and :data:`NOT_PORTED`."""
    skipped = taken | NOT_PORTED | set(require_cls.interactive_params)
    return {
        name: param
        for name, param in require_cls.get_params()
        if name not in skipped and param.visibility != luigi.parameter.ParameterVisibility.PRIVATE
    }


def wrapper_factory(
    base_cls: type[AnalysisTask],
    require_cls: type[AnalysisTask],
    enable: Sequence[str],
    cls_name: str | None = None,
    attributes: dict[str, Any] | None = None,
    docs: str | None = None,
) -> type[law.WrapperTask]:
    """A wrapper task class that requires ``require_cls`` for the selected configs, datasets and shifts.

    As columnflow's ``wrapper_factory``: the features in ``enable`` add the parameters of the same names
    (``configs``, ``datasets`` and ``shifts``, each with an optional ``skip_*``); the other parameters of
    ``require_cls`` are ported and passed on. The class is registered in the namespace of ``require_cls``.

    Example:
        >>> MyTaskWrapper = wrapper_factory(  # doctest: +SKIP
        ...     base_cls=AnalysisTask, require_cls=MyTask, enable=["configs", "datasets", "skip_datasets"]
        ... )

    Args:
        base_cls: The base class; it must not have the parameters the features select (e.g. no ``--config``
            with ``configs``) and must have those that ``require_cls`` needs and no feature selects.
        require_cls: The wrapped task class.
        enable: Features from :data:`FEATURES`.
        cls_name: The class name; default: the name of ``require_cls`` plus ``Wrapper``.
        attributes: Further class attributes.
        docs: The class docstring; default: one naming the wrapped task.

    Returns:
        The new class, defined in the calling module.

    Raises:
        ValueError: For an unknown feature or a ``skip_*`` without its feature.
        TypeError: When a feature does not fit ``base_cls`` or ``require_cls``.
    """
    check_features(base_cls, require_cls, enable)
    taken = {name for name, _ in base_cls.get_params()} | {name for name, _ in law.WrapperTask.get_params()}
    name = cls_name or f"{require_cls.__name__}Wrapper"
    caller = inspect.currentframe().f_back  # type: ignore[union-attr]
    namespace = {
        "__module__": caller.f_globals["__name__"] if caller else __name__,
        "__doc__": docs or f"Requires ``{require_cls.get_task_family()}`` for several configs, datasets and shifts.",
        "task_namespace": require_cls.task_namespace,
        "wrapped_task": require_cls,
        "wrapper_features": frozenset(enable),
        "exclude_params_repr_empty": {feature for feature in enable if feature.startswith("skip_")},
        **ported_parameters(require_cls, taken | set(enable)),
        **feature_parameters(enable),
        **(attributes or {}),
    }
    bases = (WrapperMixin, base_cls, law.WrapperTask)
    wrapper: Any = types.new_class(name, bases, exec_body=lambda body: body.update(namespace))  # law's metaclass
    return wrapper


CalibrateEventsWrapper = wrapper_factory(AnalysisTask, CalibrateEvents, FEATURES)
SelectEventsWrapper = wrapper_factory(AnalysisTask, SelectEvents, FEATURES)
MergeSelectionStatsWrapper = wrapper_factory(AnalysisTask, MergeSelectionStats, FEATURES)
ReduceEventsWrapper = wrapper_factory(AnalysisTask, ReduceEvents, FEATURES)
ProduceColumnsWrapper = wrapper_factory(AnalysisTask, ProduceColumns, FEATURES)
MLEvaluationWrapper = wrapper_factory(AnalysisTask, MLEvaluation, FEATURES)
MergeMLEvaluationWrapper = wrapper_factory(AnalysisTask, MergeMLEvaluation, FEATURES)
CreateHistogramsWrapper = wrapper_factory(AnalysisTask, CreateHistograms, FEATURES)
MergeHistogramsWrapper = wrapper_factory(AnalysisTask, MergeHistograms, FEATURES)
GetDatasetLFNsWrapper = wrapper_factory(
    AnalysisTask, GetDatasetLFNs, ("configs", "skip_configs", "datasets", "skip_datasets")
)
