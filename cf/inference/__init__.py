"""Statistical models of the analysis: combine datacards and pyhf workspaces from the merged histograms.

An *inference model* says which histograms enter the fit and how: categories (a config category, a variable
and the data), processes (a config process, its MC datasets, signal or background), nuisance parameters
(``lnN`` rate uncertainties and ``shape`` uncertainties from the config's shifts), parameter groups and the
MC statistical uncertainties. It is defined by a function that fills it, made a registered model with the
:func:`inference_model` decorator, and chosen on the command line with ``--inference-model NAME``::

    @inference_model(calibrators=("jec",))
    def my_model(self: InferenceModel) -> None:
        self.add_category("sr", config_variable="dnn.score_hh")
        self.add_process("HH", config_process="hh_ggf_bbtautau", is_signal=True)
        self.add_process("tt", config_process="tt")
        self.add_parameter("lumi", type="lnN", effect=1.023)
        self.add_parameter("jec", type="shape", config_shift_source="jec")

A variant with other settings is ``my_model.derive("my_model_x10", cls_dict={"signal_scale": 10.0})``.

The rest of this module turns merged histograms into the model's numbers (:class:`CategoryShapes`), renders
a combine datacard (:func:`render_datacard`), writes / reads the ROOT shapes file, builds the equivalent
pyhf (HistFactory) workspace (:func:`build_pyhf_spec`) and computes asymptotic CLs upper limits on the
signal strength (:func:`compute_limits`).
"""

from __future__ import annotations

import abc
import contextlib
import enum
import logging
import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from cf.registry import RegisteredModel
from cf.util import UserError

__all__ = [
    "CategoryShapes",
    "InferenceCategory",
    "InferenceModel",
    "InferenceParameter",
    "InferenceProcess",
    "ParameterType",
    "build_pyhf_spec",
    "category_shapes",
    "compute_limits",
    "format_number",
    "inference_model",
    "lnn_effect",
    "read_shapes_file",
    "rebin",
    "render_datacard",
    "select_histogram",
    "shapes_file_histograms",
    "validate_pyhf_spec",
    "write_shapes_file",
]

logger = logging.getLogger(__name__)

#: Names of categories, processes and parameters: they become combine bin / process / nuisance names.
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: The name of the observed data histogram in the shapes file (fixed by combine).
DATA_NAME = "data_obs"
#: Interpolation of the pyhf modifiers that matches combine: lnN is exactly log-normal (code1), shapes are
#: interpolated with a polynomial and extrapolated linearly (code4p), like combine's vertical template morphing.
PYHF_MODIFIER_SETTINGS: dict[str, dict[str, str]] = {
    "normsys": {"interpcode": "code1"},
    "histosys": {"interpcode": "code4p"},
}
#: The smallest total yield of a bin in the pyhf fits (a bin without any MC would make the likelihood infinite).
PYHF_MIN_BIN_YIELD = 1e-9


class ParameterType(str, enum.Enum):
    """The kinds of nuisance parameters.

    Attributes:
        lnN: A log-normal rate uncertainty: a factor ``kappa`` (``1.023`` for 2.3 %) or an asymmetric pair
            ``(kappa_down, kappa_up)``; combine ``lnN``, pyhf ``normsys``.
        shape: A shape (and rate) uncertainty from the up / down histograms of a config shift source
            (``jec`` -> shifts ``jec_up`` / ``jec_down``); combine ``shape``, pyhf ``histosys``.
    """

    lnN = "lnN"
    shape = "shape"


@dataclass
class InferenceCategory:
    """A category of the fit: one combine datacard, one pyhf channel.

    Attributes:
        name: The datacard bin / pyhf channel name.
        config_category: The config category whose events are histogrammed.
        config_variable: The config variable whose histogram is fitted.
        config_data_datasets: The data datasets of the observation (default: every data dataset of the config).
        data_from_processes: Instead of data, observe the sum of expected processes (Asimov-like pseudo data):
            True for all background processes, or the names of the model processes to sum.
        mc_stats: Whether the MC statistical uncertainty is modelled (None: the model's ``mc_stats``).
        bin_edges: Merge the variable's bins into these (a subset of its edges, from its first to its last
            edge), e.g. to avoid bins without MC events; empty: the variable's binning.
    """

    name: str
    config_category: str
    config_variable: str
    config_data_datasets: tuple[str, ...] = ()
    data_from_processes: bool | tuple[str, ...] = False
    mc_stats: bool | None = None
    bin_edges: tuple[float, ...] = ()

    @property
    def has_real_data(self) -> bool:
        return not self.data_from_processes


@dataclass
class InferenceProcess:
    """A process of the fit.

    Attributes:
        name: The datacard / pyhf sample name.
        config_process: The config process.
        config_mc_datasets: The MC datasets whose histograms are summed (default: the config's MC datasets of
            the process or of one of its subprocesses).
        is_signal: Whether the process is signal (scaled by the signal strength); None: the config process'
            ``is_signal`` aux flag.
    """

    name: str
    config_process: str
    config_mc_datasets: tuple[str, ...] = ()
    is_signal: bool | None = None


@dataclass
class InferenceParameter:
    """A nuisance parameter.

    Attributes:
        name: The nuisance name (shared names are fully correlated).
        type: ``lnN`` or ``shape``.
        processes: The model processes it affects (empty: all).
        categories: The model categories it acts in (empty: all).
        effect: For ``lnN``: ``kappa`` or ``(kappa_down, kappa_up)``.
        config_shift_source: For ``shape``: the config shift source, whose ``<source>_up`` and
            ``<source>_down`` shifts give the varied histograms.
    """

    name: str
    type: ParameterType
    processes: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    effect: float | tuple[float, float] | None = None
    config_shift_source: str | None = None

    @property
    def shifts(self) -> tuple[str, str]:
        """The ``(up, down)`` config shifts of a shape parameter."""
        if self.config_shift_source is None:
            raise ValueError(f"parameter '{self.name}' has no shift source")
        return f"{self.config_shift_source}_up", f"{self.config_shift_source}_down"

    def acts_on(self, category: str, process: str) -> bool:
        """Whether the parameter affects ``process`` in ``category``."""
        return (not self.categories or category in self.categories) and (
            not self.processes or process in self.processes
        )

    @property
    def kappas(self) -> tuple[float, float]:
        """``(kappa_down, kappa_up)`` of an lnN parameter; a symmetric ``kappa`` has ``kappa_down = 1 / kappa``."""
        if isinstance(self.effect, tuple):
            return float(self.effect[0]), float(self.effect[1])
        if self.effect is None:
            raise ValueError(f"parameter '{self.name}' has no effect")
        return 1.0 / float(self.effect), float(self.effect)


def lnn_effect(number: Any, names: Sequence[str] = ()) -> float | tuple[float, float]:
    """The lnN effect of the uncertainties of a ``scinum.Number`` (e.g. the config's luminosity or a cross section).

    The relative uncertainties of the named sources (default: all) are added in quadrature per direction.

    Args:
        number: The number with its uncertainties.
        names: The uncertainty sources to use.

    Returns:
        ``1 + relative uncertainty`` when symmetric, else ``(1 - relative down, 1 + relative up)``.

    Raises:
        UserError: If a name is not an uncertainty of the number or the number is not positive.

    Example:
        >>> from scinum import Number
        >>> lnn_effect(Number(5.0, {"lumi": 0.023j}))
        1.023
    """
    uncertainties: dict[str, tuple[float, float]] = dict(number.uncertainties)
    unknown = [name for name in names if name not in uncertainties]
    if unknown:
        raise UserError(f"unknown uncertainty source(s) {', '.join(unknown)}, available: {', '.join(uncertainties)}")
    nominal = float(number.nominal)
    if not nominal > 0:
        raise UserError(f"an lnN effect needs a positive nominal value, got {nominal}")
    selected = [uncertainties[name] for name in (names or list(uncertainties))]
    up = math.hypot(*(float(u) for u, _ in selected)) / nominal if selected else 0.0
    down = math.hypot(*(float(d) for _, d in selected)) / nominal if selected else 0.0
    if math.isclose(up, down, rel_tol=1e-9, abs_tol=1e-12):
        return round(1.0 + up, 12)
    return round(1.0 - down, 12), round(1.0 + up, 12)


def _check_name(kind: str, name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise UserError(f"{kind} name {name!r} is invalid: use letters, digits and '_', starting with a letter")


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class InferenceModel(RegisteredModel, abc.ABC):
    """Base class of all inference models: a registry by name and the methods that fill a model.

    Define a model with the :func:`inference_model` decorator (or subclass and implement :meth:`build`); the
    modules defining models are listed in law.cfg ``inference_modules``.

    Set the class attributes in the decorator, through ``derive(name, cls_dict={...})``, or for one run with
    ``--inference-model-settings key=value``.

    Class attributes:
        calibrators: The calibrators of the histograms (None: the config's default). Shape parameters need
            calibrators (or selector / producers) that implement their shifts, e.g. ``("jec",)`` for ``jec``;
            otherwise the task refuses to run instead of writing up / down histograms equal to nominal.
        selector: The selector (None: the config's default).
        producers: The producers (None: the config's default).
        ml_models: The ML models whose evaluation columns are read (None: the models named by the variables,
            ``dnn.score_hh`` -> ``dnn``).
        mc_stats: Whether MC statistical uncertainties are modelled (combine ``autoMCStats``, pyhf ``staterror``
            on the backgrounds, as combine's default excludes the signal).
        mc_stats_threshold: combine's ``autoMCStats`` event threshold.
        signal_scale: A factor on the signal yields (test the sensitivity to a larger cross section).
        clip_negative_bins: Set negative bin yields (negative generator weights in sparse bins) to zero.
        poi: The name of the signal strength (combine's default is ``r``).

    Attributes:
        config_inst: The config the model was resolved against (None for a model without a config).
        settings: The settings given at instantiation (they override class attributes).
        categories: The categories, in the order they were added.
        processes: The processes, signals first (then in the order they were added).
        parameters: The nuisance parameters, in the order they were added.
        parameter_groups: Group name -> parameter names.
    """

    calibrators: ClassVar[tuple[str, ...] | None] = None
    selector: ClassVar[str | None] = None
    producers: ClassVar[tuple[str, ...] | None] = None
    ml_models: ClassVar[tuple[str, ...] | None] = None
    mc_stats: ClassVar[bool] = True
    mc_stats_threshold: ClassVar[float] = 10.0
    signal_scale: ClassVar[float] = 1.0
    clip_negative_bins: ClassVar[bool] = True
    poi: ClassVar[str] = "r"

    kind: ClassVar[str] = "inference model"
    _registry: ClassVar[dict[str, type[RegisteredModel]]] = {}

    def __init__(self, config_inst: Any = None, settings: Mapping[str, Any] | None = None) -> None:
        self.config_inst = config_inst
        self.settings = self.apply_settings(dict(settings or {}))
        self.categories: list[InferenceCategory] = []
        self._processes: list[InferenceProcess] = []
        self.parameters: list[InferenceParameter] = []
        self.parameter_groups: dict[str, tuple[str, ...]] = {}
        self.build()
        if config_inst is not None:
            self._resolve(config_inst)
        self._check()

    @property
    def name(self) -> str:
        return type(self).__name__

    def apply_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        settings = super().apply_settings(settings)
        if not (isinstance(self.signal_scale, (int, float)) and self.signal_scale > 0):
            raise UserError(f"inference model '{self.name}': signal_scale must be positive, got {self.signal_scale!r}")
        return settings

    @property
    def settings_repr(self) -> str:
        """A short stable hash of the settings (empty without settings), used in output paths."""
        return self.settings_hash(self.settings)

    # filling the model

    @abc.abstractmethod
    def build(self) -> None:
        """Fill the model with ``add_category``, ``add_process``, ``add_parameter`` and ``add_parameter_group``."""

    def add_category(
        self,
        name: str,
        *,
        config_variable: str,
        config_category: str | None = None,
        config_data_datasets: Iterable[str] = (),
        data_from_processes: bool | Iterable[str] = False,
        mc_stats: bool | None = None,
        bin_edges: Iterable[float] = (),
    ) -> InferenceCategory:
        """Add a category (see :class:`InferenceCategory`); ``config_category`` defaults to ``name``."""
        _check_name("category", name)
        if any(category.name == name for category in self.categories):
            raise UserError(f"inference model '{self.name}': category '{name}' is added twice")
        from_processes = data_from_processes if isinstance(data_from_processes, bool) else tuple(data_from_processes)
        datasets = _as_tuple(config_data_datasets)
        if datasets and from_processes:
            raise UserError(f"category '{name}': give either config_data_datasets or data_from_processes, not both")
        category = InferenceCategory(
            name=name,
            config_category=config_category or name,
            config_variable=config_variable,
            config_data_datasets=datasets,
            data_from_processes=from_processes,
            mc_stats=mc_stats,
            bin_edges=tuple(float(edge) for edge in bin_edges),
        )
        self.categories.append(category)
        return category

    def add_process(
        self,
        name: str,
        *,
        config_process: str | None = None,
        config_mc_datasets: Iterable[str] = (),
        is_signal: bool | None = None,
    ) -> InferenceProcess:
        """Add a process (see :class:`InferenceProcess`); ``config_process`` defaults to ``name``."""
        _check_name("process", name)
        if name == DATA_NAME or any(process.name == name for process in self._processes):
            raise UserError(f"inference model '{self.name}': process '{name}' is added twice or reserved")
        process = InferenceProcess(
            name=name,
            config_process=config_process or name,
            config_mc_datasets=_as_tuple(config_mc_datasets),
            is_signal=is_signal,
        )
        self._processes.append(process)
        return process

    def add_parameter(
        self,
        name: str,
        *,
        type: ParameterType | str,
        processes: str | Iterable[str] = (),
        categories: str | Iterable[str] = (),
        effect: float | tuple[float, float] | None = None,
        config_shift_source: str | None = None,
    ) -> InferenceParameter:
        """Add a nuisance parameter (see :class:`InferenceParameter`).

        Raises:
            UserError: For an unknown type, a missing / bad effect (lnN) or shift source (shape).
        """
        _check_name("parameter", name)
        if any(parameter.name == name for parameter in self.parameters):
            raise UserError(f"inference model '{self.name}': parameter '{name}' is added twice")
        try:
            parameter_type = ParameterType(type)
        except ValueError:
            allowed = ", ".join(t.value for t in ParameterType)
            raise UserError(f"parameter '{name}': unknown type '{type}', allowed: {allowed}") from None
        if parameter_type == ParameterType.lnN:
            values = effect if isinstance(effect, tuple) else (effect,)
            if (
                effect is None
                or len(values) not in {1, 2}
                or not all(isinstance(v, (int, float)) and v > 0 for v in values)
            ):
                raise UserError(f"lnN parameter '{name}' needs an effect kappa > 0 or (kappa_down, kappa_up)")
            if config_shift_source is not None:
                raise UserError(f"lnN parameter '{name}' takes no config_shift_source")
        elif not config_shift_source:
            raise UserError(f"shape parameter '{name}' needs a config_shift_source (e.g. 'jec')")
        elif effect is not None:
            raise UserError(f"shape parameter '{name}' takes no effect (it comes from the shifted histograms)")
        parameter = InferenceParameter(
            name=name,
            type=parameter_type,
            processes=_as_tuple(processes),
            categories=_as_tuple(categories),
            effect=tuple(float(v) for v in effect) if isinstance(effect, tuple) else effect,  # type: ignore[arg-type]
            config_shift_source=config_shift_source,
        )
        self.parameters.append(parameter)
        return parameter

    def add_parameter_group(self, name: str, parameters: Iterable[str]) -> None:
        """Add a group of parameters (combine ``<name> group = ...``, e.g. to freeze them together)."""
        _check_name("parameter group", name)
        self.parameter_groups[name] = tuple(parameters)

    # access

    @property
    def processes(self) -> list[InferenceProcess]:
        """The processes, signals first, each group in the order they were added."""
        return [p for p in self._processes if p.is_signal] + [p for p in self._processes if not p.is_signal]

    @property
    def signal_processes(self) -> list[InferenceProcess]:
        return [process for process in self.processes if process.is_signal]

    @property
    def background_processes(self) -> list[InferenceProcess]:
        return [process for process in self.processes if not process.is_signal]

    def process_index(self, name: str) -> int:
        """The combine process index: ``0, -1, -2, ...`` for signals, ``1, 2, ...`` for backgrounds."""
        signals = [p.name for p in self.signal_processes]
        if name in signals:
            return -signals.index(name)
        backgrounds = [p.name for p in self.background_processes]
        if name not in backgrounds:
            self.get_process(name)  # raises the UserError listing the processes
        return backgrounds.index(name) + 1

    def _get(self, kind: str, name: str, items: Sequence[Any]) -> Any:
        for item in items:
            if item.name == name:
                return item
        available = ", ".join(item.name for item in items) or "(none)"
        raise UserError(f"unknown {kind} '{name}' in inference model '{self.name}', available: {available}")

    def get_category(self, name: str) -> InferenceCategory:
        return self._get("category", name, self.categories)

    def get_process(self, name: str) -> InferenceProcess:
        return self._get("process", name, self._processes)

    def get_parameter(self, name: str) -> InferenceParameter:
        return self._get("parameter", name, self.parameters)

    def category_parameters(self, category: str) -> list[InferenceParameter]:
        """The parameters acting on at least one process in ``category``."""
        return [p for p in self.parameters if any(p.acts_on(category, q.name) for q in self.processes)]

    def shape_parameters(self, category: str, process: str) -> list[InferenceParameter]:
        """The shape parameters of ``process`` in ``category``."""
        return [p for p in self.parameters if p.type == ParameterType.shape and p.acts_on(category, process)]

    def uses_mc_stats(self, category: InferenceCategory) -> bool:
        return self.mc_stats if category.mc_stats is None else category.mc_stats

    def data_processes(self, category: InferenceCategory) -> list[str]:
        """The processes summed into the pseudo data of a ``data_from_processes`` category."""
        if category.data_from_processes is True:
            return [p.name for p in self.background_processes]
        return list(category.data_from_processes or ())

    @property
    def required_ml_models(self) -> tuple[str, ...]:
        """The ML models to read: ``ml_models``, or those named by the variables (``dnn.score_hh`` -> ``dnn``)."""
        if self.ml_models is not None:
            return tuple(self.ml_models)
        names: list[str] = []
        for category in self.categories:
            prefix = category.config_variable.split(".")[0] if "." in category.config_variable else ""
            if prefix and prefix not in names:
                names.append(prefix)
        return tuple(names)

    def dataset_shifts(self) -> dict[str, tuple[str, ...]]:
        """Every dataset the model reads with its shifts: nominal, plus for MC the shifts of its shape parameters."""
        shifts: dict[str, list[str]] = {}
        for process in self.processes:
            needed = ["nominal"]
            for category in self.categories:
                for parameter in self.shape_parameters(category.name, process.name):
                    needed += [s for s in parameter.shifts if s not in needed]
            for dataset in process.config_mc_datasets:
                shifts.setdefault(dataset, [])
                shifts[dataset] += [s for s in needed if s not in shifts[dataset]]
        for category in self.categories:
            for dataset in category.config_data_datasets:
                shifts.setdefault(dataset, ["nominal"])
        return {dataset: tuple(values) for dataset, values in shifts.items()}

    def required_shifts(self) -> set[str]:
        """The shifts of all shape parameters."""
        return {shift for p in self.parameters if p.type == ParameterType.shape for shift in p.shifts}

    # validation

    def _check(self) -> None:
        """Checks that need no config: the names the parameters and groups refer to exist, a signal exists."""
        where = f"inference model '{self.name}'"
        if not self.categories:
            raise UserError(f"{where} has no categories")
        if not self._processes:
            raise UserError(f"{where} has no processes")
        process_names = [p.name for p in self._processes]
        category_names = [c.name for c in self.categories]
        for parameter in self.parameters:
            for kind, names, known in (
                ("processes", parameter.processes, process_names),
                ("categories", parameter.categories, category_names),
            ):
                unknown = [n for n in names if n not in known]
                if unknown:
                    raise UserError(
                        f"parameter '{parameter.name}' of {where}: unknown {kind} {', '.join(unknown)}, "
                        f"available: {', '.join(known)}",
                    )
        parameter_names = [p.name for p in self.parameters]
        for group, members in self.parameter_groups.items():
            unknown = [n for n in members if n not in parameter_names]
            if unknown:
                raise UserError(
                    f"parameter group '{group}' of {where}: unknown parameter(s) {', '.join(unknown)}, "
                    f"available: {', '.join(parameter_names) or '(none)'}",
                )
        for category in self.categories:
            if category.data_from_processes and category.data_from_processes is not True:
                unknown = [n for n in self.data_processes(category) if n not in process_names]
                if unknown:
                    raise UserError(
                        f"category '{category.name}' of {where}: unknown data process(es) {', '.join(unknown)}, "
                        f"available: {', '.join(process_names)}",
                    )
        if self.config_inst is not None and not self.signal_processes:
            raise UserError(f"{where} has no signal process (pass is_signal=True to add_process)")

    def _resolve(self, config_inst: Any) -> None:
        """Check every config name and fill the defaults (datasets, signal flags) from the config."""
        self._setup_ml_variables(config_inst)
        self._resolve_categories(config_inst)
        self._resolve_processes(config_inst)
        self._resolve_parameters(config_inst)

    def _unknown(self, kind: str, name: str, available: Iterable[str]) -> UserError:
        where = f"in inference model '{self.name}' (config '{self.config_inst.name}')"
        return UserError(f"unknown {kind} '{name}' {where}, available: {', '.join(sorted(available)) or '(none)'}")

    def _resolve_categories(self, config_inst: Any) -> None:
        data_names = [dataset.name for dataset in config_inst.datasets if dataset.is_data]
        for category in self.categories:
            if not config_inst.has_category(category.config_category):
                raise self._unknown("category", category.config_category, (c.name for c in config_inst.categories))
            if not config_inst.has_variable(category.config_variable):
                raise self._unknown("variable", category.config_variable, (v.name for v in config_inst.variables))
            if category.bin_edges:
                edges = np.asarray(config_inst.get_variable(category.config_variable).bin_edges, dtype=np.float64)
                try:
                    rebin_indices(edges, category.bin_edges)
                except ValueError as error:
                    raise UserError(f"category '{category.name}' of inference model '{self.name}': {error}") from None
            if category.data_from_processes:
                continue
            if not category.config_data_datasets:
                if not data_names:
                    raise UserError(
                        f"config '{config_inst.name}' has no data dataset for category '{category.name}'; "
                        "use data_from_processes=True for pseudo data",
                    )
                category.config_data_datasets = tuple(sorted(data_names))
            for name in category.config_data_datasets:
                if name not in data_names:
                    raise self._unknown("data dataset", name, data_names)

    def _resolve_processes(self, config_inst: Any) -> None:
        mc_datasets = [dataset for dataset in config_inst.datasets if not dataset.is_data]
        mc_names = [dataset.name for dataset in mc_datasets]
        for process in self._processes:
            if not config_inst.has_process(process.config_process):
                raise self._unknown("process", process.config_process, (p.name for p in config_inst.processes))
            process_inst = config_inst.get_process(process.config_process)
            if not process.config_mc_datasets:
                process.config_mc_datasets = tuple(
                    dataset.name
                    for dataset in mc_datasets
                    if any(p == process_inst or process_inst.has_process(p) for p in dataset.processes)
                )
                if not process.config_mc_datasets:
                    raise UserError(
                        f"process '{process.name}' of inference model '{self.name}': no MC dataset of config process "
                        f"'{process.config_process}', MC datasets: {', '.join(mc_names)}",
                    )
            for name in process.config_mc_datasets:
                if name not in mc_names:
                    raise self._unknown("MC dataset", name, mc_names)
            if process.is_signal is None:
                process.is_signal = bool(process_inst.x("is_signal", False))

    def _resolve_parameters(self, config_inst: Any) -> None:
        shift_names = [shift.name for shift in config_inst.shifts]
        for parameter in self.parameters:
            if parameter.type != ParameterType.shape:
                continue
            for shift in parameter.shifts:
                if shift not in shift_names:
                    raise UserError(
                        f"shape parameter '{parameter.name}' of inference model '{self.name}': unknown shift "
                        f"'{shift}' (from shift source '{parameter.config_shift_source}') in config "
                        f"'{config_inst.name}', available: {', '.join(shift_names)}",
                    )

    def _setup_ml_variables(self, config_inst: Any) -> None:
        """Let the ML models named by the variables add their output variables to the config (their setup())."""
        wanted = {c.config_variable for c in self.categories if not config_inst.has_variable(c.config_variable)}
        prefixes = sorted({name.split(".")[0] for name in wanted if "." in name} | set(self.ml_models or ()))
        if not prefixes:
            return
        from cf.analysis import load_modules
        from cf.ml import MLModel, model_instance

        load_modules("ml_modules")
        for prefix in prefixes:
            if prefix in MLModel.names():
                model_instance(prefix, (), (config_inst.name,))  # its setup() adds the score variables
            elif self.ml_models and prefix in self.ml_models:
                MLModel.get_cls(prefix)  # raises the UserError listing the ML models


def inference_model(
    func: Callable[[InferenceModel], None] | None = None,
    *,
    name: str | None = None,
    base: type[InferenceModel] = InferenceModel,
    **cls_dict: Any,
) -> Any:
    """Register an inference model whose :meth:`~InferenceModel.build` is the decorated function.

    Usable bare (``@inference_model``) or with class attributes (``@inference_model(calibrators=("jec",))``).
    The model is registered under ``name`` (default: the function's name) and is a class, so that variants
    can be derived from it with ``derive(name, cls_dict)``.

    Args:
        func: ``func(self)`` fills the model (``self.add_category(...)`` ...).
        name: The registered name.
        base: The class to derive from.
        cls_dict: Class attributes of the model (see :class:`InferenceModel`).

    Returns:
        The new model class (or, with arguments, the decorator making it).
    """

    def decorator(build: Callable[[InferenceModel], None]) -> type[InferenceModel]:
        namespace = {
            **cls_dict,
            "build": build,
            "__doc__": build.__doc__,
            "__module__": build.__module__,
            "__qualname__": name or build.__name__,
        }
        return base.derive(name or build.__name__, cls_dict=namespace)

    return decorator(func) if func is not None else decorator


# the numbers of a category


@dataclass
class CategoryShapes:
    """The histograms of one category, as the datacard, the shapes file and pyhf use them.

    Attributes:
        edges: The bin edges of the variable.
        nominal: Process -> yield per bin.
        variances: Process -> sum of squared weights per bin (the MC statistical uncertainty squared).
        shifted: Process -> parameter -> ``(up, down)`` yields per bin, for the shape parameters.
        data: The observed (or pseudo) data per bin.
    """

    edges: np.ndarray
    nominal: dict[str, np.ndarray]
    variances: dict[str, np.ndarray]
    shifted: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    data: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def rate(self, process: str) -> float:
        return float(np.sum(self.nominal[process]))

    @property
    def observation(self) -> float:
        return float(np.sum(self.data))


def select_histogram(histogram: Any, category_id: int, shift: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One category and shift of a merged histogram: ``(values, variances, edges)``, flow bins folded in.

    The underflow is added to the first bin and the overflow to the last one, so the yields are the totals of
    the category. A category without entries gives zeros.

    Raises:
        UserError: If the histogram has no entry for the shift (its task ran another one).
    """
    import hist

    axis = histogram.axes[2]
    edges = np.asarray(axis.edges, dtype=np.float64)
    shifts = list(histogram.axes["shift"])
    if shift not in shifts:
        raise UserError(f"the histogram of '{axis.name}' has no shift '{shift}', only: {', '.join(shifts) or '(none)'}")
    if category_id not in list(histogram.axes["category"]):
        zeros = np.zeros(len(edges) - 1)
        return zeros, zeros.copy(), edges
    view = histogram[{"category": hist.loc(category_id), "shift": hist.loc(shift)}]
    values = np.asarray(view.values(flow=True), dtype=np.float64)
    variances = np.asarray(view.variances(flow=True), dtype=np.float64)
    return _fold_flow(values, axis), _fold_flow(variances, axis), edges


def rebin_indices(edges: np.ndarray, new_edges: Sequence[float]) -> list[int]:
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


def _fold_flow(values: np.ndarray, axis: Any) -> np.ndarray:
    traits = axis.traits
    start = 1 if traits.underflow else 0
    stop = len(values) - (1 if traits.overflow else 0)
    folded = values[start:stop].copy()
    if traits.underflow:
        folded[0] += values[0]
    if traits.overflow:
        folded[-1] += values[-1]
    return folded


def category_shapes(
    model: InferenceModel,
    category_name: str,
    histograms: Mapping[str, Mapping[str, Any]],
) -> CategoryShapes:
    """The numbers of a category from the merged histograms of its variable.

    Args:
        model: The (resolved) inference model.
        category_name: The model category.
        histograms: Dataset -> shift -> the merged ``hist.Hist`` of the category's variable (axes category,
            shift, variable), as ``cf.MergeHistograms`` writes them.

    Returns:
        Per process the summed histograms of its datasets (negative bins set to zero if the model clips them,
        signals multiplied by ``signal_scale``), the shifted ones of its shape parameters, and the data (or the
        pseudo data of ``data_from_processes``).

    Raises:
        UserError: If a needed histogram is missing or the binnings differ.
    """
    if model.config_inst is None:
        raise ValueError("category_shapes needs a model resolved against a config")
    category = model.get_category(category_name)
    category_id = model.config_inst.get_category(category.config_category).id
    edges_seen: list[np.ndarray] = []

    def load(datasets: Sequence[str], shift: str) -> tuple[np.ndarray, np.ndarray]:
        values: np.ndarray | None = None
        variances: np.ndarray | None = None
        for dataset in datasets:
            try:
                histogram = histograms[dataset][shift]
            except KeyError:
                raise UserError(f"no histogram of dataset '{dataset}' for shift '{shift}'") from None
            v, w, edges = select_histogram(histogram, category_id, shift)
            if category.bin_edges:
                v, w = rebin(v, edges, category.bin_edges), rebin(w, edges, category.bin_edges)
                edges = np.asarray(category.bin_edges, dtype=np.float64)
            if edges_seen and not np.array_equal(edges, edges_seen[0]):
                raise UserError(f"the binning of '{category.config_variable}' differs between the datasets")
            edges_seen.append(edges)
            values = v if values is None else values + v
            variances = w if variances is None else variances + w
        assert values is not None
        assert variances is not None
        return values, variances

    def finish(values: np.ndarray, process: InferenceProcess) -> np.ndarray:
        if model.clip_negative_bins:
            values = np.clip(values, 0.0, None)
        return values * model.signal_scale if process.is_signal else values

    nominal: dict[str, np.ndarray] = {}
    variances: dict[str, np.ndarray] = {}
    shifted: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for process in model.processes:
        values, sumw2 = load(process.config_mc_datasets, "nominal")
        nominal[process.name] = finish(values, process)
        variances[process.name] = sumw2 * (model.signal_scale**2 if process.is_signal else 1.0)
        for parameter in model.shape_parameters(category.name, process.name):
            up, down = (finish(load(process.config_mc_datasets, shift)[0], process) for shift in parameter.shifts)
            shifted.setdefault(process.name, {})[parameter.name] = (up, down)
    if category.data_from_processes:
        data = np.sum([nominal[name] for name in model.data_processes(category)], axis=0)
    else:
        data = load(category.config_data_datasets, "nominal")[0]
    return CategoryShapes(edges=edges_seen[0], nominal=nominal, variances=variances, shifted=shifted, data=data)


# combine datacards and shapes files


def format_number(value: float, digits: int = 10) -> str:
    """A number for a datacard: ``digits`` significant digits, no trailing zeros (``1.023``, ``0.5``, ``12``)."""
    text = f"{value:.{digits}g}"
    return "0" if text in {"-0", "0"} else text


def _lnn_text(kappas: tuple[float, float], symmetric: bool) -> str:
    down, up = kappas
    return format_number(up, 6) if symmetric else f"{format_number(down, 6)}/{format_number(up, 6)}"


def render_datacard(model: InferenceModel, category_name: str, shapes: CategoryShapes, shapes_file: str) -> str:
    """The combine text datacard of one category.

    Processes are the model's (signals first with indices ``0, -1, ...``, backgrounds ``1, 2, ...``), rates and
    the observation are the integrals of ``shapes``; columns are aligned.

    Args:
        model: The inference model.
        category_name: The model category (the datacard's bin).
        shapes: The category's numbers.
        shapes_file: The shapes file as the datacard refers to it (relative to the datacard).

    Returns:
        The datacard text.
    """
    category = model.get_category(category_name)
    processes = model.processes
    parameters = model.category_parameters(category.name)
    rule = "-" * 80

    lines = [
        (
            f"# inference model '{model.name}', category '{category.name}': config category "
            f"'{category.config_category}', variable '{category.config_variable}'"
        ),
        "imax 1  number of channels",
        f"jmax {len(processes) - 1}  number of processes minus 1",
        f"kmax {len(parameters)}  number of nuisance parameters",
        rule,
        f"shapes * * {shapes_file} $CHANNEL/$PROCESS $CHANNEL/$PROCESS__$SYSTEMATIC",
        rule,
    ]
    observation = [["bin", category.name], ["observation", format_number(shapes.observation)]]
    lines += _aligned(observation)
    lines.append(rule)

    rows: list[list[str]] = [
        ["bin", "", *(category.name for _ in processes)],
        ["process", "", *(p.name for p in processes)],
        ["process", "", *(str(model.process_index(p.name)) for p in processes)],
        ["rate", "", *(format_number(shapes.rate(p.name)) for p in processes)],
    ]
    n_table = len(rows)
    for parameter in parameters:
        values = []
        for process in processes:
            if not parameter.acts_on(category.name, process.name):
                values.append("-")
            elif parameter.type == ParameterType.lnN:
                values.append(_lnn_text(parameter.kappas, not isinstance(parameter.effect, tuple)))
            else:
                values.append("1")
        rows.append([parameter.name, parameter.type.value, *values])
    table = _aligned(rows, merge_first=True)
    lines += table[:n_table]
    if parameters:
        lines.append(rule)
        lines += table[n_table:]

    extra = []
    names = {p.name for p in parameters}
    for group, members in model.parameter_groups.items():
        present = [m for m in members if m in names]
        if present:
            extra.append(f"{group} group = {' '.join(present)}")
    if model.uses_mc_stats(category):
        threshold = model.mc_stats_threshold
        extra.append(f"* autoMCStats {format_number(float(threshold))}")
    if extra:
        lines.append(rule)
        lines += extra
    return "\n".join(lines) + "\n"


def _aligned(rows: list[list[str]], merge_first: bool = False) -> list[str]:
    """Left-aligned columns, two spaces apart.

    With ``merge_first`` the first two cells form the label column (``name type`` of a nuisance, or a table
    label with an empty second cell), so that the value columns of the rate table and the nuisances line up.
    """
    if merge_first:
        name_width = max(len(row[0]) for row in rows)
        rows = [[row[0].ljust(name_width) + (" " + row[1] if row[1] else ""), *row[2:]] for row in rows]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(len(row) for row in rows))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _hist_1d(edges: np.ndarray, values: np.ndarray, variances: np.ndarray, name: str) -> Any:
    import hist

    histogram = hist.Hist(
        hist.axis.Variable(edges, name=name, underflow=False, overflow=False), storage=hist.storage.Weight()
    )
    view = histogram.view()
    view.value = values
    view.variance = variances
    return histogram


def shapes_file_histograms(model: InferenceModel, category_name: str, shapes: CategoryShapes) -> dict[str, Any]:
    """The histograms of the category's shapes file, keyed by their path in the file.

    ``<category>/<process>`` (nominal), ``<category>/<process>__<parameter>Up`` / ``Down`` and
    ``<category>/data_obs``, as the datacard's ``shapes`` line maps them.
    """
    category = model.get_category(category_name)
    variable = category.config_variable
    result: dict[str, Any] = {}
    for process in model.processes:
        name = process.name
        result[f"{category.name}/{name}"] = _hist_1d(
            shapes.edges, shapes.nominal[name], shapes.variances[name], variable
        )
        for parameter, (up, down) in shapes.shifted.get(name, {}).items():
            for suffix, values in (("Up", up), ("Down", down)):
                # the shifted histograms carry the nominal variances: only their yields enter the fit
                path = f"{category.name}/{name}__{parameter}{suffix}"
                result[path] = _hist_1d(shapes.edges, values, shapes.variances[name], variable)
    result[f"{category.name}/{DATA_NAME}"] = _hist_1d(shapes.edges, shapes.data, np.asarray(shapes.data), variable)
    return result


def write_shapes_file(path: str, model: InferenceModel, category_name: str, shapes: CategoryShapes) -> None:
    """Write the category's shapes file with uproot, atomically (temporary sibling, then renamed)."""
    import uproot

    from cf.io import atomic_path

    with atomic_path(path) as tmp_path, uproot.recreate(tmp_path) as file:
        for key, histogram in shapes_file_histograms(model, category_name, shapes).items():
            file[key] = histogram


def read_shapes_file(path: str, model: InferenceModel, category_name: str) -> CategoryShapes:
    """Read a category's numbers back from its shapes file (uproot).

    Raises:
        UserError: If a histogram the model needs is missing from the file.
    """
    import uproot

    category = model.get_category(category_name)
    with uproot.open(path) as file:

        def get(key: str) -> Any:
            full = f"{category.name}/{key}"
            if full not in file:
                raise UserError(f"shapes file '{path}' has no histogram '{full}'")
            return file[full]

        nominal: dict[str, np.ndarray] = {}
        variances: dict[str, np.ndarray] = {}
        shifted: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        edges = np.zeros(0)
        for process in model.processes:
            histogram = get(process.name)
            edges = np.asarray(histogram.axis().edges(), dtype=np.float64)
            nominal[process.name] = np.asarray(histogram.values(), dtype=np.float64)
            variances[process.name] = np.asarray(histogram.variances(), dtype=np.float64)
            for parameter in model.shape_parameters(category.name, process.name):
                up = np.asarray(get(f"{process.name}__{parameter.name}Up").values(), dtype=np.float64)
                down = np.asarray(get(f"{process.name}__{parameter.name}Down").values(), dtype=np.float64)
                shifted.setdefault(process.name, {})[parameter.name] = (up, down)
        data = np.asarray(get(DATA_NAME).values(), dtype=np.float64)
    return CategoryShapes(edges=edges, nominal=nominal, variances=variances, shifted=shifted, data=data)


# pyhf


def rough_limit_estimate(model: InferenceModel, shapes: Mapping[str, CategoryShapes]) -> float:
    """A rough scale of the limit on the signal strength: ``2 sqrt(max(B, 1)) / S`` in the most sensitive bin.

    Raises:
        UserError: If the signal has no expected events in any bin.
    """
    best = math.inf
    for category_shapes_ in shapes.values():
        signal = np.sum([category_shapes_.nominal[p.name] for p in model.signal_processes], axis=0)
        background = np.sum([category_shapes_.nominal[p.name] for p in model.background_processes], axis=0)
        for s, b in zip(np.atleast_1d(signal), np.atleast_1d(background), strict=True):
            if s > 0:
                best = min(best, 2.0 * math.sqrt(max(b, 1.0)) / s)
    if not math.isfinite(best):
        raise UserError(f"inference model '{model.name}': the signal has no expected events in any category")
    return best


def build_pyhf_spec(
    model: InferenceModel,
    shapes: Mapping[str, CategoryShapes],
    poi_upper_bound: float | None = None,
) -> dict[str, Any]:
    """The pyhf (HistFactory) workspace of the model: the same numbers and uncertainties as its datacards.

    Channels are the categories, samples the processes; the signal strength is a ``normfactor`` on the
    signals, lnN parameters are ``normsys`` (hi = kappa_up, lo = kappa_down), shape parameters ``histosys``
    (the up / down yields) and MC statistics one ``staterror`` per channel on the backgrounds (combine's
    ``autoMCStats`` default, which excludes the signal). Parameters of the same name are correlated.

    Args:
        model: The inference model.
        shapes: Category name -> its numbers.
        poi_upper_bound: The upper bound of the signal strength (default: 100 times :func:`rough_limit_estimate`,
            at least 10), so that the fits reach the limit even for a tiny signal.

    Returns:
        The workspace spec (json-serializable).
    """
    channels, observations = [], []
    for category in model.categories:
        numbers = shapes[category.name]
        samples = []
        for process in model.processes:
            modifiers: list[dict[str, Any]] = []
            if process.is_signal:
                modifiers.append({"name": model.poi, "type": "normfactor", "data": None})
            for parameter in model.parameters:
                if not parameter.acts_on(category.name, process.name):
                    continue
                if parameter.type == ParameterType.lnN:
                    down, up = parameter.kappas
                    modifiers.append({"name": parameter.name, "type": "normsys", "data": {"hi": up, "lo": down}})
                else:
                    up_values, down_values = numbers.shifted[process.name][parameter.name]
                    modifiers.append(
                        {
                            "name": parameter.name,
                            "type": "histosys",
                            "data": {"hi_data": _floats(up_values), "lo_data": _floats(down_values)},
                        }
                    )
            if model.uses_mc_stats(category) and not process.is_signal:
                errors = np.sqrt(np.clip(numbers.variances[process.name], 0.0, None))
                modifiers.append({"name": f"staterror_{category.name}", "type": "staterror", "data": _floats(errors)})
            samples.append(
                {"name": process.name, "data": _floats(numbers.nominal[process.name]), "modifiers": modifiers}
            )
        channels.append({"name": category.name, "samples": samples})
        observations.append({"name": category.name, "data": _floats(numbers.data)})
    if poi_upper_bound is None:
        poi_upper_bound = max(10.0, 100.0 * rough_limit_estimate(model, shapes))
    measurement = {
        "name": model.name,
        "config": {"poi": model.poi, "parameters": [{"name": model.poi, "bounds": [[0.0, float(poi_upper_bound)]]}]},
    }
    return {"channels": channels, "observations": observations, "measurements": [measurement], "version": "1.0.0"}


def _floats(values: np.ndarray) -> list[float]:
    return [float(value) for value in np.asarray(values, dtype=np.float64)]


@contextlib.contextmanager
def _quiet_pyhf_schema() -> Iterator[None]:
    """Silence the one known warning of pyhf 0.7.6's schema validation (on every workspace and model)."""
    with warnings.catch_warnings():
        # pyhf 0.7.6 resolves its schema references with jsonschema's deprecated RefResolver
        warnings.filterwarnings("ignore", message="jsonschema.RefResolver is deprecated", category=DeprecationWarning)
        yield


def validate_pyhf_spec(spec: Mapping[str, Any]) -> Any:
    """Validate the spec against pyhf's workspace schema and return the ``pyhf.Workspace``.

    Raises:
        UserError: If the spec does not follow the schema (the message names the first violation).
    """
    import pyhf

    with _quiet_pyhf_schema():
        try:
            pyhf.schema.validate(dict(spec), "workspace.json")
            return pyhf.Workspace(dict(spec))
        except pyhf.exceptions.InvalidSpecification as error:
            raise UserError(f"the pyhf workspace does not follow the schema: {error}") from None


def _pyhf_model(workspace: Any) -> Any:
    """The pyhf model of a workspace with combine-like interpolation and yields clipped at zero.

    Per sample and bin, the yields are clipped at zero (a shape variation of a sparse MC histogram could
    otherwise make them negative), and each bin's total at a tiny positive value, so that the likelihood
    stays finite for every parameter value the fits try.
    """
    return workspace.model(
        modifier_settings=PYHF_MODIFIER_SETTINGS,
        clip_sample_data=0.0,
        clip_bin_data=PYHF_MIN_BIN_YIELD,
    )


def _spec_limit_scale(spec: Mapping[str, Any], poi: str) -> float:
    """``2 sqrt(max(B, 1)) / S`` in the most sensitive bin of the spec (S: samples with the POI normfactor)."""
    best = math.inf
    for channel in spec["channels"]:
        signal = np.zeros(len(channel["samples"][0]["data"]))
        background = np.zeros_like(signal)
        for sample in channel["samples"]:
            is_signal = any(m["type"] == "normfactor" and m["name"] == poi for m in sample["modifiers"])
            if is_signal:
                signal += np.asarray(sample["data"], dtype=np.float64)
            else:
                background += np.asarray(sample["data"], dtype=np.float64)
        for s, b in zip(signal, background, strict=True):
            if s > 0:
                best = min(best, 2.0 * math.sqrt(max(b, 1.0)) / s)
    if not math.isfinite(best):
        raise UserError(f"the signal (samples with the normfactor '{poi}') has no expected events in any bin")
    return best


def compute_limits(
    spec: Mapping[str, Any],
    *,
    level: float = 0.05,
    observed: bool = True,
    n_scan: int = 20,
) -> dict[str, Any]:
    """Asymptotic CLs upper limits on the signal strength of a pyhf workspace.

    The expected limits (median, +-1 sigma, +-2 sigma) are those of the pre-fit background-only Asimov data
    (every nuisance at its nominal value, signal strength 0); the observed limit uses the workspace's
    observations. The test statistic is q-tilde (pyhf's default). The scan range adapts to the signal size:
    the median expected limit is first estimated from the Asimov CLs at a trial value (asymptotically
    ``r_med = r * 1.96 / Phi^-1(1 - CLs_med(r) / 2)``, iterated from ``2 sqrt(B) / S`` of the most sensitive
    bin), then ``pyhf.infer.hypotest`` runs on ``n_scan`` points from 0 to 2.5 times that estimate (extended
    while a CLs curve has not crossed ``level``), and each limit is interpolated in ``log(CLs)`` between the
    two points around the crossing, like ``pyhf.infer.intervals.upper_limits.upper_limit`` with a scan.

    Args:
        spec: The workspace spec (its measurement's POI bound must exceed the limits).
        level: 1 - confidence level.
        observed: Whether to compute the observed limit too.
        n_scan: Points of the CLs scan.

    Returns:
        A dict with the keys ``poi``, ``cl``, ``method``, ``observed``, ``expected`` (a dict with ``-2sigma``,
        ``-1sigma``, ``median``, ``+1sigma`` and ``+2sigma``), ``poi_upper_bound`` and ``scan`` (a dict with
        ``poi``, ``cls_observed``, a list or None, and ``cls_expected``, five values per point).

    Raises:
        UserError: If the signal is empty or the limit lies beyond the POI bound of the spec.
    """
    import pyhf

    pyhf.set_backend("numpy")
    with _quiet_pyhf_schema():
        workspace = validate_pyhf_spec(spec)
        model = _pyhf_model(workspace)
        return _compute_limits(workspace, model, level, observed, n_scan)


def _compute_limits(workspace: Any, model: Any, level: float, observed: bool, n_scan: int) -> dict[str, Any]:
    import pyhf
    from scipy.stats import norm

    poi_index = model.config.poi_index
    poi_name = model.config.poi_name
    bound = float(model.config.suggested_bounds()[poi_index][1])
    init = list(model.config.suggested_init())
    init[poi_index] = 0.0
    datasets = {"expected": model.expected_data(init)}
    if observed:
        datasets["observed"] = workspace.data(model)
    cache: dict[tuple[str, float], tuple[float, list[float]]] = {}

    def hypotest(poi: float, kind: str = "expected") -> tuple[float, list[float]]:
        key = (kind, float(poi))
        if key not in cache:
            if not poi < bound:
                raise UserError(
                    f"the upper limit on '{poi_name}' lies beyond its bound {bound:g} in the workspace; "
                    "raise the bound",
                )
            try:
                cls, band = pyhf.infer.hypotest(poi, datasets[kind], model, return_expected_set=True)
            except pyhf.exceptions.FailedMinimization as error:
                raise RuntimeError(f"the pyhf fit failed at {poi_name} = {poi:g} ({kind} data): {error}") from None
            cache[key] = (float(cls), [float(value) for value in band])
        return cache[key]

    # the median expected limit, from the asymptotic relation between CLs and the Asimov test statistic
    target = float(norm.isf(level / 2.0))
    poi = min(_spec_limit_scale(workspace, poi_name), bound / 10.0)
    for _ in range(6):
        cls_median = hypotest(poi)[1][2]
        z = float(norm.isf(cls_median / 2.0)) if cls_median > 0 else math.inf
        if z < 0.05:  # far below the limit: CLs is still ~1
            estimate = 4.0 * poi
        elif not math.isfinite(z):  # far above it
            estimate = poi / 4.0
        else:
            estimate = poi * target / z
        estimate = min(estimate, bound / 3.0)
        converged = abs(estimate / poi - 1.0) < 0.02
        poi = estimate
        if converged:
            break

    # the scan, extended until every curve has crossed the CL line
    step = 2.5 * poi / n_scan
    pois = [step * (i + 1) for i in range(n_scan)]
    kinds = list(datasets)
    for _ in range(4 * n_scan):
        last = pois[-1]
        curves = [*hypotest(last)[1], *([hypotest(last, "observed")[0]] if observed else [])]
        if max(curves) < level:
            break
        pois.append(last + step)
    cls_expected = [hypotest(p)[1] for p in pois]
    cls_observed = [hypotest(p, "observed")[0] for p in pois] if observed else None

    expected = [_crossing(pois, [band[i] for band in cls_expected], level) for i in range(5)]
    observed_limit = _crossing(pois, cls_observed, level) if cls_observed is not None else None
    keys = ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")
    return {
        "poi": poi_name,
        "cl": 1.0 - level,
        "method": f"asymptotic CLs, test statistic qtilde, pyhf {pyhf.__version__}",
        "observed": observed_limit,
        "expected": dict(zip(keys, expected, strict=True)),
        "poi_upper_bound": bound,
        "n_hypotests": len(cache),
        "data": kinds,
        "scan": {"poi": pois, "cls_observed": cls_observed, "cls_expected": cls_expected},
    }


def _crossing(pois: Sequence[float], cls: Sequence[float], level: float) -> float:
    """Where a falling CLs curve crosses ``level``: interpolated in log(CLs) between the points around it."""
    values = [1.0, *cls]
    points = [0.0, *pois]
    for i in range(1, len(points)):
        if values[i] < level:
            low, high = max(values[i - 1], 1e-300), max(values[i], 1e-300)
            fraction = (math.log(low) - math.log(level)) / (math.log(low) - math.log(high))
            return points[i - 1] + fraction * (points[i] - points[i - 1])
    raise UserError(f"the CLs scan up to {points[-1]:g} does not cross {level}")
