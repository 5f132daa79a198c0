"""The inference model: which histograms enter a fit and how, keyed by config as in columnflow.

A model is a tree of plain dicts with attribute access (:class:`~cf.util.DotDict`), the same structure as
columnflow's ``InferenceModel.model``::

    categories:
      - name: sr
        config_data:
          run2_2017_nano_uhh_v11_limited: {category: sr, variable: dnn.score_hh, data_datasets: [...]}
        data_from_processes: []        # processes summed into pseudo data (no real data)
        data_toy_seed: null            # seed of a Poisson toy of that sum (null: the sum itself)
        mc_stats: 10                   # None: no MC statistical uncertainties; True: threshold 10
        processes:
          - name: HH
            is_signal: true
            config_data:
              run2_2017_nano_uhh_v11_limited: {process: hh_ggf_bbtautau, mc_datasets: [...]}
            scale: 1.0
            parameters:
              - {name: lumi, type: rate_gauss, effect: 1.023, transformations: [], config_data: {}}
              - {name: jec, type: shape, effect: 1.0, config_data: {run2_...: {shift_source: jec}}}
    parameter_groups:
      - {name: experimental, parameter_names: [lumi, jec]}

It is filled by the model's ``init_func`` (the function decorated with :func:`inference_model`), with
``add_category``, ``add_process`` (to every category matching ``category=``), ``add_parameter`` (to every
process matching ``process=`` in every category matching ``category=``) and ``add_parameter_group``; names
and selections are plain names, fnmatch patterns (``tt_*``), regular expressions (``^tt_(sl|dl)$``) or
negations (``!dy``). The ``config_*`` keywords of columnflow's older style (``config_category=``,
``config_variable=``, ``config_process=``, ``config_shift_source=`` ...) fill ``config_data`` for every config
of the model.

After ``init_func`` the model is resolved against its configs: every config name is checked (an unknown name
is a :class:`~cf.util.UserError` listing the valid ones), dataset lists are filled from the config and
patterns expanded.
"""

from __future__ import annotations

import copy
import enum
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, TextIO

from typing_extensions import Self

from cf.contract import config_entry, is_signal
from cf.hist_util import DEFAULT_FLOW_STRATEGY, FlowStrategy
from cf.registry import RegisteredModel
from cf.util import DotDict, TextEnum, UserError, is_pattern, is_regex, pattern_matcher

__all__ = [
    "InferenceModel",
    "ParameterTransformation",
    "ParameterTransformations",
    "ParameterType",
    "inference_model",
    "lnn_effect",
]

#: Names of categories, processes and parameters: they become combine bin / process / nuisance names.
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: The name of the observed data histogram in the shapes file (fixed by combine), not usable for a process.
DATA_NAME = "data_obs"
#: The autoMCStats event threshold of ``mc_stats=True`` (combine's usual choice, as in columnflow).
DEFAULT_MC_STATS_THRESHOLD = 10


class ParameterType(TextEnum):
    """The kinds of nuisance parameters (columnflow's names).

    Attributes:
        rate_gauss: A log-normal rate uncertainty: ``effect`` is ``kappa`` or ``(kappa_down, kappa_up)``;
            combine ``lnN``, pyhf ``normsys``.
        rate_uniform: A rate free within ``[1 / kappa, kappa]``; combine ``lnU``, pyhf a bounded ``normfactor``.
        rate_unconstrained: A free rate factor starting at ``effect``; combine ``rateParam``, pyhf ``normfactor``.
        shape: A shape (and rate) uncertainty from the up / down histograms of a config shift source;
            combine ``shape``, pyhf ``histosys``.
    """

    rate_gauss = "rate_gauss"
    rate_uniform = "rate_uniform"
    rate_unconstrained = "rate_unconstrained"
    shape = "shape"

    @property
    def is_rate(self) -> bool:
        return self is not ParameterType.shape

    @property
    def is_shape(self) -> bool:
        return self is ParameterType.shape


#: Other spellings accepted for a parameter type (this template's older API).
PARAMETER_TYPE_ALIASES = {"lnN": ParameterType.rate_gauss, "lnU": ParameterType.rate_uniform}


class ParameterTransformation(TextEnum):
    """Transformations of a parameter's effect, applied in order when the histograms are turned into numbers.

    Attributes:
        none: Nothing.
        effect_from_rate: (shape) The up / down shapes are the nominal one times the rate effect
            (``kappa`` -> ``(2 - kappa, kappa)``, or ``(down, up)``); no shifted histograms are read.
        effect_from_shape: (rate) The effect is ``(down / nominal, up / nominal)`` of the integrals of the
            shift source's histograms.
        effect_from_shape_if_flat: (rate) As ``effect_from_shape`` when the bin-wise ratios varied / nominal
            are flat (relative spread <= 10%, largest deviation from their mean <= 20%); otherwise the parameter
            becomes a shape parameter for that process.
        symmetrize: Move up and down so that they lie symmetric around nominal (rate: the effect values; shape:
            the integrals), keeping their distance; one-sided effects are left alone.
        asymmetrize: (rate) ``kappa`` -> ``(2 - kappa, kappa)``.
        asymmetrize_if_large: (rate) As ``asymmetrize`` when ``|kappa - 1| >= 0.2``.
        normalize: (shape) Scale up and down to the nominal integral (a pure shape effect).
        envelope: (shape) Per bin, the larger of the two deviations is used in both directions.
        envelope_if_one_sided: (shape) As ``envelope``, in bins where up and down lie on the same side.
        envelope_enforce_two_sided: (shape) Per bin, up = nominal + the larger deviation, down = nominal - it.
        flip_smaller_if_one_sided: (rate) An effect ``(down, up)`` with both on one side of 1: the one closer to
            1 is mirrored (``e -> 2 - e``).
        flip_larger_if_one_sided: (rate) As above, mirroring the one farther from 1.
    """

    none = "none"
    effect_from_rate = "effect_from_rate"
    effect_from_shape = "effect_from_shape"
    effect_from_shape_if_flat = "effect_from_shape_if_flat"
    symmetrize = "symmetrize"
    asymmetrize = "asymmetrize"
    asymmetrize_if_large = "asymmetrize_if_large"
    normalize = "normalize"
    envelope = "envelope"
    envelope_if_one_sided = "envelope_if_one_sided"
    envelope_enforce_two_sided = "envelope_enforce_two_sided"
    flip_smaller_if_one_sided = "flip_smaller_if_one_sided"
    flip_larger_if_one_sided = "flip_larger_if_one_sided"

    @property
    def from_shape(self) -> bool:
        return self in {ParameterTransformation.effect_from_shape, ParameterTransformation.effect_from_shape_if_flat}

    @property
    def from_rate(self) -> bool:
        return self is ParameterTransformation.effect_from_rate


#: The transformations that only make sense for rate (resp. shape) parameters.
RATE_ONLY_TRANSFORMATIONS = frozenset(
    {
        ParameterTransformation.effect_from_shape,
        ParameterTransformation.effect_from_shape_if_flat,
        ParameterTransformation.asymmetrize,
        ParameterTransformation.asymmetrize_if_large,
        ParameterTransformation.flip_smaller_if_one_sided,
        ParameterTransformation.flip_larger_if_one_sided,
    }
)
SHAPE_ONLY_TRANSFORMATIONS = frozenset(
    {
        ParameterTransformation.effect_from_rate,
        ParameterTransformation.normalize,
        ParameterTransformation.envelope,
        ParameterTransformation.envelope_if_one_sided,
        ParameterTransformation.envelope_enforce_two_sided,
    }
)


class ParameterTransformations(tuple):
    """An ordered tuple of :class:`ParameterTransformation` (names are converted)."""

    def __new__(cls, transformations: Iterable[ParameterTransformation | str] = ()) -> Self:
        return super().__new__(
            cls, (_enum_value(ParameterTransformation, t, "transformation") for t in transformations)
        )

    @property
    def any_from_shape(self) -> bool:
        return any(t.from_shape for t in self)

    @property
    def any_from_rate(self) -> bool:
        return any(t.from_rate for t in self)


def _enum_value(enum_cls: type[enum.Enum], value: Any, what: str) -> Any:
    if isinstance(value, enum_cls):
        return value
    if enum_cls is ParameterType and value in PARAMETER_TYPE_ALIASES:
        return PARAMETER_TYPE_ALIASES[value]
    try:
        return enum_cls(str(value))
    except ValueError:
        allowed = ", ".join(item.value for item in enum_cls)
        raise UserError(f"unknown {what} '{value}', allowed: {allowed}") from None


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


def _names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def _effect(effect: Any) -> Any:
    """A numeric effect as float or a (down, up) tuple of floats; anything else is kept (checked later)."""
    if isinstance(effect, (list, tuple)) and len(effect) == 2:
        return (float(effect[0]), float(effect[1]))
    if isinstance(effect, (int, float)) and not isinstance(effect, bool):
        return float(effect)
    return effect


class InferenceModel(RegisteredModel):
    """Base class of all inference models: columnflow's config-keyed model, with settings and checks.

    Define a model with the :func:`inference_model` decorator; the modules defining models are listed in
    law.cfg ``inference_modules``. Class attributes are set in the decorator or with ``derive(name,
    cls_dict={...})``; those declared with :func:`cf.registry.setting` (e.g. ``signal_scale=setting(1.0)``) may
    also be changed for one run with ``--inference-model-settings key=value``.

    Class attributes:
        calibrators: The calibrators of the histograms (None: the config's default). Shape parameters need
            calibrators (or selector / producers) that implement their shifts, e.g. ``("jec",)`` for ``jec``;
            otherwise the task refuses to run instead of writing up / down histograms equal to nominal.
        selector: The selector (None: the config's default).
        producers: The producers (None: the config's default).
        ml_models: The ML models whose evaluation columns are read (None: the models named by the variables,
            ``dnn.score_hh`` -> ``dnn``).
        poi: The name of the signal strength (combine's default is ``r``).
        poi_label: What a limit on the signal strength is a limit on, for plots (empty: the POI's name).

    Attributes:
        config_insts: The configs the model was resolved against (empty for a model without configs).
        settings: The settings given for this run, checked and typed (each replaces the class attribute).
        model: The model's tree (see the module docstring).
    """

    calibrators: ClassVar[tuple[str, ...] | None] = None
    selector: ClassVar[str | None] = None
    producers: ClassVar[tuple[str, ...] | None] = None
    ml_models: ClassVar[tuple[str, ...] | None] = None
    poi: ClassVar[str] = "r"
    poi_label: ClassVar[str] = ""

    #: The function filling the model (``init_func(self)``), set by :func:`inference_model`.
    init_func: ClassVar[Callable[..., None] | None] = None

    kind: ClassVar[str] = "inference model"
    _registry: ClassVar[dict[str, type[RegisteredModel]]] = {}

    def __init__(self, config_insts: Any = None, settings: Mapping[str, Any] | None = None) -> None:
        if config_insts is None:
            config_insts = []
        elif hasattr(config_insts, "datasets"):  # a single config
            config_insts = [config_insts]
        self.config_insts: list[Any] = list(config_insts)
        self.settings = self.apply_settings(dict(settings or {}))
        self.model = self.model_spec()
        self._parameter_order: list[str] = []
        if callable(self.init_func):
            self.init_func()
        self._check()
        for config_inst in self.config_insts:
            self._resolve(config_inst)
        if self.config_insts:
            self._check_configs()

    @property
    def config_inst(self) -> Any:
        """The model's config (the first one of several; None without configs)."""
        return self.config_insts[0] if self.config_insts else None

    # the specs of the tree's nodes (classmethods, as in columnflow)

    @classmethod
    def model_spec(cls) -> DotDict:
        """The empty tree: ``categories`` and ``parameter_groups``."""
        return DotDict(categories=[], parameter_groups=[])

    @classmethod
    def category_spec(
        cls,
        name: str,
        config_data: Mapping[str, Mapping[str, Any]] | None = None,
        data_from_processes: Sequence[str] | bool | None = None,
        flow_strategy: FlowStrategy | str = DEFAULT_FLOW_STRATEGY,
        mc_stats: float | tuple[Any, ...] | bool | None = None,
        postfix: str | None = None,
        empty_bin_value: float = 1e-5,
        rate_precision: int | None = None,
        bin_edges: Sequence[float] | None = None,
        data_toy_seed: int | None = None,
    ) -> DotDict:
        """A category (a combine datacard bin, a pyhf channel).

        Args:
            name: The category's name in the model.
            config_data: Config name -> ``category_config_spec`` keywords (config category, variable, data).
            data_from_processes: Model processes whose sum is the (pseudo) data instead of real data; True: the
                background processes of the category.
            flow_strategy: What happens to the histograms' flow bins (see :class:`FlowStrategy`; columnflow's
                default is ``warn``, which leaves them out).
            mc_stats: None / False: no MC statistical uncertainties; True: ``autoMCStats 10``; a number (the
                event threshold) or a tuple (threshold, include signal, mode) as for ``autoMCStats``.
            postfix: Appended to the category's file names (``datacard__<name>__<postfix>.txt``).
            empty_bin_value: Bins with a yield <= 0 get this value (and variance); 0: such bins are set to zero.
            rate_precision: Decimal places of the datacard rates (None: 10 significant digits).
            bin_edges: Merge the variable's bins into these (a subset of its edges, from its first to its last
                edge), e.g. to avoid bins without MC events.
            data_toy_seed: With ``data_from_processes``: the pseudo data are a Poisson toy of the summed yields,
                drawn with this seed (None: the sum itself, Asimov data).
        """
        from_processes = data_from_processes if data_from_processes is True else _names(data_from_processes or None)
        return DotDict(
            name=str(name),
            config_data={str(c): cls.category_config_spec(**dict(v)) for c, v in (config_data or {}).items()},
            data_from_processes=from_processes,
            flow_strategy=_enum_value(FlowStrategy, flow_strategy, "flow strategy"),
            mc_stats=mc_stats,
            postfix=str(postfix) if postfix else None,
            empty_bin_value=float(empty_bin_value),
            rate_precision=rate_precision,
            bin_edges=[float(edge) for edge in bin_edges or ()],
            data_toy_seed=data_toy_seed,
            processes=[],
        )

    @classmethod
    def process_spec(
        cls,
        name: str,
        is_signal: bool | None = None,
        config_data: Mapping[str, Mapping[str, Any]] | None = None,
        scale: float = 1.0,
        is_dynamic: bool = False,
        skip_if_empty: bool = True,
    ) -> DotDict:
        """A process of a category.

        Args:
            name: The process's name in the model (datacard process, pyhf sample).
            is_signal: Whether it is scaled by the signal strength; None: the config process's ``is_signal``
                aux flag (columnflow's default is False).
            config_data: Config name -> ``process_config_spec`` keywords (config process, MC datasets).
            scale: A factor on its yields.
            is_dynamic: Kept for columnflow models (a process made on the fly); no effect here.
            skip_if_empty: Leave the process out of a category in which it has no positive yield.
        """
        return DotDict(
            name=str(name),
            is_signal=None if is_signal is None else bool(is_signal),
            config_data={str(c): cls.process_config_spec(**dict(v)) for c, v in (config_data or {}).items()},
            scale=float(scale),
            is_dynamic=bool(is_dynamic),
            skip_if_empty=bool(skip_if_empty),
            parameters=[],
        )

    @classmethod
    def parameter_spec(
        cls,
        name: str,
        type: ParameterType | str,
        transformations: Sequence[ParameterTransformation | str] = (),
        config_data: Mapping[str, Mapping[str, Any]] | None = None,
        effect: Any = 1.0,
        effect_precision: int | None = None,
    ) -> DotDict:
        """A nuisance parameter acting on one process of one category.

        Args:
            name: The parameter's name (parameters of the same name are fully correlated).
            type: A :class:`ParameterType` or its name.
            transformations: :class:`ParameterTransformation` s applied in order; one that takes the effect from
                elsewhere (``effect_from_*``) must come first.
            config_data: Config name -> ``parameter_config_spec`` keywords (the shift source).
            effect: rate_gauss: ``kappa`` or ``(kappa_down, kappa_up)``; rate_uniform: ``kappa``;
                rate_unconstrained: the start value; shape: the datacard's scale of the shape (1).
            effect_precision: Decimal places of the datacard effects (None: 6 significant digits).

        Raises:
            UserError: For an unknown type or transformation, or transformations that do not fit the type.
        """
        parameter_type = _enum_value(ParameterType, type, "parameter type")
        trafos = ParameterTransformations(transformations)
        _check_transformations(str(name), parameter_type, trafos)
        return DotDict(
            name=str(name),
            type=parameter_type,
            transformations=trafos,
            config_data={str(c): cls.parameter_config_spec(**dict(v)) for c, v in (config_data or {}).items()},
            effect=_effect(effect),
            effect_precision=effect_precision,
        )

    @classmethod
    def parameter_group_spec(cls, name: str, parameter_names: Sequence[str] | None = None) -> DotDict:
        """A group of parameter names (combine ``<name> group = ...``)."""
        return DotDict(name=str(name), parameter_names=_names(parameter_names))

    @classmethod
    def category_config_spec(
        cls,
        category: str | None = None,
        variable: str | None = None,
        data_datasets: Sequence[str] | None = None,
    ) -> DotDict:
        """A category in one config.

        The config category, the variable and the data datasets (names or patterns; empty: every data dataset
        of the config).
        """
        return DotDict(
            category=str(category) if category else None,
            variable=str(variable) if variable else None,
            data_datasets=_names(data_datasets),
        )

    @classmethod
    def process_config_spec(cls, process: str | None = None, mc_datasets: Sequence[str] | None = None) -> DotDict:
        """A process in one config.

        The config process and its MC datasets (names or patterns; empty: the config's MC datasets of the
        process or of one of its subprocesses).
        """
        return DotDict(process=str(process) if process else None, mc_datasets=_names(mc_datasets))

    @classmethod
    def parameter_config_spec(cls, shift_source: str | None = None) -> DotDict:
        """A parameter in one config: the shift source whose ``<source>_up`` / ``_down`` shifts vary it."""
        return DotDict(shift_source=str(shift_source) if shift_source else None)

    def _per_config(self, spec: Callable[..., DotDict], given: dict[str, Any]) -> dict[str, DotDict]:
        """The config_data of the flat ``config_*`` keywords: the same entry for every config of the model."""
        return {config_inst.name: spec(**given) for config_inst in self.config_insts}

    # serialization

    def to_yaml(self, stream: TextIO | None = None) -> str | None:
        """The model's tree as yaml, written to ``stream`` when given, else returned."""
        import yaml

        return yaml.safe_dump(_plain(self.model), stream=stream, sort_keys=False)

    def pprint(self) -> None:
        """Print the model's tree as yaml."""
        print(self.to_yaml())

    # top-level access

    @property
    def categories(self) -> list[DotDict]:
        return self.model.categories

    @property
    def parameter_groups(self) -> list[DotDict]:
        return self.model.parameter_groups

    # categories

    def get_categories(
        self,
        category: str | Sequence[str] | None = None,
        only_names: bool = False,
        match_mode: Callable[..., bool] = any,
    ) -> list[Any]:
        """The categories whose names match ``category`` (all when None), or their names."""
        match = pattern_matcher(category or "*", mode=match_mode)
        return [c.name if only_names else c for c in self.categories if match(c.name)]

    def get_category(
        self,
        category: str | Sequence[str],
        only_name: bool = False,
        match_mode: Callable[..., bool] = any,
        silent: bool = False,
    ) -> Any:
        """The one category matching ``category``.

        Raises:
            UserError: If none or several match (unless ``silent``: then None).
        """
        found = self.get_categories(category, only_names=only_name, match_mode=match_mode)
        return self._single(found, silent, f"category '{category}'", [c.name for c in self.categories])

    def has_category(self, category: str | Sequence[str], match_mode: Callable[..., bool] = any) -> bool:
        return bool(self.get_categories(category, only_names=True, match_mode=match_mode))

    def add_category(self, name: str, **kwargs: Any) -> DotDict:
        """Add a category (see :meth:`category_spec`).

        Also takes columnflow's older keywords ``config_category`` (default: the name), ``config_variable`` and
        ``config_data_datasets`` for every config of the model.

        Raises:
            UserError: For an invalid or repeated name.
        """
        _check_name("category", name)
        flat = {key: kwargs.pop(f"config_{key}", None) for key in ("category", "variable", "data_datasets")}
        if any(value is not None for value in flat.values()):
            if "config_data" in kwargs:
                raise UserError(f"category '{name}': give config_data or the config_* keywords, not both")
            flat["category"] = flat["category"] or name
            kwargs["config_data"] = self._per_config(self.category_config_spec, flat)
        category = self.category_spec(name, **kwargs)
        if self.has_category(category.name):
            raise UserError(f"inference model '{self.cls_name}': category '{name}' is added twice")
        self.categories.append(category)
        return category

    def remove_category(self, category: str | Sequence[str], match_mode: Callable[..., bool] = any) -> bool:
        """Remove the categories matching ``category``; whether any was removed."""
        return _remove_matching(self.categories, category, match_mode)

    # processes

    def get_processes(
        self,
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        only_names: bool = False,
        flat: bool = False,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
    ) -> Any:
        """The processes matching ``process`` per category name, or with ``flat`` the unique process names.

        Categories without a match are left out.
        """
        match = pattern_matcher(process or "*", mode=match_mode)
        result = DotDict()
        for category_ in self.get_categories(category, match_mode=category_match_mode):
            found = [p.name if only_names or flat else p for p in category_.processes if match(p.name)]
            if found:
                result[category_.name] = found
        if flat:
            return _unique(name for names in result.values() for name in names)
        return result

    def get_process(
        self,
        process: str | Sequence[str],
        category: str | Sequence[str] | None = None,
        only_name: bool = False,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
        silent: bool = False,
    ) -> Any:
        """The one process matching ``process`` (in the categories matching ``category``).

        Raises:
            UserError: If none matches, or several (a name shared by categories needs ``category``), unless
                ``silent``: then None.
        """
        found = self.get_processes(
            process, category, only_names=only_name, match_mode=match_mode, category_match_mode=category_match_mode
        )
        items = [item for items in found.values() for item in items]
        where = f"process '{process}'" + (f" in category '{category}'" if category else "")
        return self._single(items, silent, where, self.get_processes(flat=True))

    def has_process(
        self,
        process: str | Sequence[str],
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
    ) -> bool:
        return bool(
            self.get_processes(process, category, match_mode=match_mode, category_match_mode=category_match_mode)
        )

    def add_process(
        self,
        name: str,
        category: str | Sequence[str] | None = None,
        category_match_mode: Callable[..., bool] = any,
        silent: bool = False,
        **kwargs: Any,
    ) -> DotDict:
        """Add a process (see :meth:`process_spec`) to every category matching ``category`` (default: all).

        Also takes columnflow's older keywords ``config_process`` (default: the name) and ``config_mc_datasets``
        for every config of the model.

        Raises:
            UserError: For an invalid name, no matching category, or a process already in a category (unless
                ``silent``: such categories are skipped).
        """
        _check_name("process", name)
        if name == DATA_NAME:
            raise UserError(f"inference model '{self.cls_name}': '{DATA_NAME}' is reserved for the data")
        flat = {key: kwargs.pop(f"config_{key}", None) for key in ("process", "mc_datasets")}
        if any(value is not None for value in flat.values()) or "config_data" not in kwargs:
            if "config_data" in kwargs:
                raise UserError(f"process '{name}': give config_data or the config_* keywords, not both")
            flat["process"] = flat["process"] or name
            kwargs["config_data"] = self._per_config(self.process_config_spec, flat)
        process = self.process_spec(name, **kwargs)
        targets = self.get_categories(category, match_mode=category_match_mode)
        if not targets:
            raise UserError(
                f"inference model '{self.cls_name}': no category matches '{category or '*'}' for process '{name}' "
                f"(add categories first), categories: {', '.join(c.name for c in self.categories) or '(none)'}",
            )
        for category_ in targets:
            if any(p.name == name for p in category_.processes):
                if silent:
                    continue
                raise UserError(
                    f"inference model '{self.cls_name}': process '{name}' is added twice to '{category_.name}'"
                )
            category_.processes.append(copy.deepcopy(process))
        return process

    def remove_process(
        self,
        process: str | Sequence[str],
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
    ) -> bool:
        """Remove the processes matching ``process`` from the categories matching ``category``; whether any was."""
        categories = self.get_categories(category, match_mode=category_match_mode)
        removed = [_remove_matching(c.processes, process, match_mode) for c in categories]  # from every category
        return any(removed)

    # parameters

    def get_parameters(
        self,
        parameter: str | Sequence[str] | None = None,
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
        process_match_mode: Callable[..., bool] = any,
        only_names: bool = False,
        flat: bool = False,
    ) -> Any:
        """The parameters matching ``parameter`` per category and process name, or with ``flat`` their names."""
        match = pattern_matcher(parameter or "*", mode=match_mode)
        processes = self.get_processes(
            process, category, match_mode=process_match_mode, category_match_mode=category_match_mode
        )
        result = DotDict()
        for category_name, process_list in processes.items():
            per_process = DotDict()
            for process_ in process_list:
                found = [q.name if only_names or flat else q for q in process_.parameters if match(q.name)]
                if found:
                    per_process[process_.name] = found
            if per_process:
                result[category_name] = per_process
        if flat:
            return _unique(name for per in result.values() for names in per.values() for name in names)
        return result

    def get_parameter(
        self,
        parameter: str | Sequence[str],
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
        process_match_mode: Callable[..., bool] = any,
        only_name: bool = False,
        silent: bool = False,
    ) -> Any:
        """The one parameter matching ``parameter`` for the matching process and category.

        Raises:
            UserError: If none or several match (unless ``silent``: then None).
        """
        found = self.get_parameters(
            parameter,
            process,
            category,
            match_mode=match_mode,
            category_match_mode=category_match_mode,
            process_match_mode=process_match_mode,
            only_names=only_name,
        )
        items = [item for per in found.values() for items in per.values() for item in items]
        where = f"parameter '{parameter}'"
        where += f" of process '{process}'" if process else ""
        where += f" in category '{category}'" if category else ""
        return self._single(items, silent, where, self.get_parameters(flat=True))

    def has_parameter(
        self,
        parameter: str | Sequence[str],
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
        process_match_mode: Callable[..., bool] = any,
    ) -> bool:
        return bool(
            self.get_parameters(
                parameter,
                process,
                category,
                match_mode=match_mode,
                category_match_mode=category_match_mode,
                process_match_mode=process_match_mode,
            )
        )

    def add_parameter(
        self,
        name: str,
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        category_match_mode: Callable[..., bool] = any,
        process_match_mode: Callable[..., bool] = any,
        group: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> DotDict:
        """Add a parameter (see :meth:`parameter_spec`) to the matching processes of the matching categories.

        It acts on every process matching ``process`` in every category matching ``category`` (default: all),
        and is added to the parameter groups matching ``group``.

        Also takes columnflow's older keyword ``config_shift_source`` for every config of the model.

        Raises:
            UserError: For an invalid name or type, a bad effect, a shape parameter without a shift source, no
                matching process, or a parameter the process has already.
        """
        _check_name("parameter", name)
        shift_source = kwargs.pop("config_shift_source", None)
        if shift_source is not None:
            if "config_data" in kwargs:
                raise UserError(f"parameter '{name}': give config_data or config_shift_source, not both")
            kwargs["config_data"] = self._per_config(self.parameter_config_spec, {"shift_source": shift_source})
        parameter = self.parameter_spec(name, **kwargs)
        _check_effect(parameter)
        targets = self.get_processes(
            process, category, match_mode=process_match_mode, category_match_mode=category_match_mode
        )
        if not targets:
            raise UserError(
                f"inference model '{self.cls_name}': no process matches '{process or '*'}' in categories "
                f"'{category or '*'}' for parameter '{name}' (add processes first), processes: "
                f"{', '.join(self.get_processes(flat=True)) or '(none)'}",
            )
        for category_name, process_list in targets.items():
            for process_ in process_list:
                if any(q.name == name for q in process_.parameters):
                    raise UserError(
                        f"inference model '{self.cls_name}': parameter '{name}' is added twice to process "
                        f"'{process_.name}' in category '{category_name}'",
                    )
        for process_list in targets.values():
            for process_ in process_list:
                process_.parameters.append(copy.deepcopy(parameter))
        if name not in self._parameter_order:
            self._parameter_order.append(name)
        if group:
            self.add_parameter_to_group(name, group)
        return parameter

    def remove_parameter(
        self,
        parameter: str | Sequence[str],
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
        process_match_mode: Callable[..., bool] = any,
    ) -> bool:
        """Remove the matching parameters from the matching processes and categories; whether any was removed."""
        processes = self.get_processes(
            process, category, match_mode=process_match_mode, category_match_mode=category_match_mode
        )
        removed = [_remove_matching(p.parameters, parameter, match_mode) for ps in processes.values() for p in ps]
        return any(removed)

    # parameter groups

    def get_parameter_groups(
        self,
        group: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        only_names: bool = False,
    ) -> list[Any]:
        match = pattern_matcher(group or "*", mode=match_mode)
        return [g.name if only_names else g for g in self.parameter_groups if match(g.name)]

    def get_parameter_group(
        self,
        group: str | Sequence[str],
        match_mode: Callable[..., bool] = any,
        only_name: bool = False,
    ) -> Any:
        found = self.get_parameter_groups(group, match_mode=match_mode, only_names=only_name)
        return self._single(found, False, f"parameter group '{group}'", [g.name for g in self.parameter_groups])

    def has_parameter_group(self, group: str | Sequence[str], match_mode: Callable[..., bool] = any) -> bool:
        return bool(self.get_parameter_groups(group, match_mode=match_mode))

    def add_parameter_group(self, name: str, parameter_names: Sequence[str] | None = None) -> DotDict:
        """Add a group of parameter names (they may be added before or after the parameters).

        Raises:
            UserError: For an invalid or repeated name.
        """
        _check_name("parameter group", name)
        if self.has_parameter_group(name):
            raise UserError(f"inference model '{self.cls_name}': parameter group '{name}' is added twice")
        group = self.parameter_group_spec(name, parameter_names)
        self.parameter_groups.append(group)
        return group

    def remove_parameter_group(self, group: str | Sequence[str], match_mode: Callable[..., bool] = any) -> bool:
        return _remove_matching(self.parameter_groups, group, match_mode)

    def add_parameter_to_group(
        self,
        parameter: str | Sequence[str],
        group: str | Sequence[str],
        match_mode: Callable[..., bool] = any,
        parameter_match_mode: Callable[..., bool] = any,
    ) -> bool:
        """Add parameter names to the groups matching ``group``; whether a name was added anywhere.

        A pattern adds every matching parameter added so far.
        """
        groups = self.get_parameter_groups(group, match_mode=match_mode)
        patterns = _names(parameter)
        if any(is_pattern(p) or is_regex(p) or p.startswith("!") for p in patterns):
            names = self.get_parameters(patterns, flat=True, match_mode=parameter_match_mode)
        else:
            names = patterns
        added = False
        for group_ in groups:
            for name in names:
                if name not in group_.parameter_names:
                    group_.parameter_names.append(name)
                    added = True
        return added

    def remove_parameter_from_groups(
        self,
        parameter: str | Sequence[str],
        group: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        parameter_match_mode: Callable[..., bool] = any,
    ) -> bool:
        match = pattern_matcher(parameter, mode=parameter_match_mode)
        removed = False
        for group_ in self.get_parameter_groups(group, match_mode=match_mode):
            before = len(group_.parameter_names)
            group_.parameter_names[:] = [n for n in group_.parameter_names if not match(n)]
            removed |= len(group_.parameter_names) != before
        return removed

    # reverse lookups

    def get_categories_with_process(
        self, process: str | Sequence[str], match_mode: Callable[..., bool] = any
    ) -> list[str]:
        return list(self.get_processes(process, match_mode=match_mode, only_names=True))

    def get_processes_with_parameter(
        self,
        parameter: str | Sequence[str],
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
        flat: bool = True,
    ) -> Any:
        found = self.get_parameters(
            parameter,
            category=category,
            match_mode=match_mode,
            category_match_mode=category_match_mode,
            only_names=True,
        )
        per_category = DotDict((name, list(per)) for name, per in found.items())
        return _unique(p for names in per_category.values() for p in names) if flat else per_category

    def get_categories_with_parameter(
        self,
        parameter: str | Sequence[str],
        process: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        process_match_mode: Callable[..., bool] = any,
        flat: bool = True,
    ) -> Any:
        found = self.get_parameters(
            parameter, process=process, match_mode=match_mode, process_match_mode=process_match_mode, only_names=True
        )
        per_category = DotDict((name, list(per)) for name, per in found.items())
        return list(per_category) if flat else per_category

    def get_groups_with_parameter(
        self, parameter: str | Sequence[str], match_mode: Callable[..., bool] = any
    ) -> list[str]:
        match = pattern_matcher(parameter, mode=match_mode)
        return [g.name for g in self.parameter_groups if any(match(n) for n in g.parameter_names)]

    # cleanup, iteration, scaling

    def cleanup(self, keep_parameters: str | Sequence[str] | None = None) -> None:
        """Remove categories without processes, unused names in groups and groups left empty.

        Names matching ``keep_parameters`` stay in their groups.
        """
        self.remove_empty_categories()
        self.remove_dangling_parameters_from_groups(keep_parameters=keep_parameters)
        self.remove_empty_parameter_groups()

    def remove_empty_categories(self) -> None:
        self.categories[:] = [c for c in self.categories if c.processes]

    def remove_dangling_parameters_from_groups(self, keep_parameters: str | Sequence[str] | None = None) -> None:
        existing = set(self.get_parameters(flat=True))
        keep = pattern_matcher(keep_parameters) if keep_parameters else (lambda name: False)
        for group in self.parameter_groups:
            group.parameter_names[:] = [n for n in group.parameter_names if n in existing or keep(n)]

    def remove_empty_parameter_groups(self) -> None:
        self.parameter_groups[:] = [g for g in self.parameter_groups if g.parameter_names]

    def iter_processes(
        self,
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
    ) -> Iterator[tuple[str, DotDict]]:
        """``(category name, process)`` of every matching process."""
        found = self.get_processes(process, category, match_mode=match_mode, category_match_mode=category_match_mode)
        for category_name, process_list in found.items():
            for process_ in process_list:
                yield category_name, process_

    def iter_parameters(
        self,
        parameter: str | Sequence[str] | None = None,
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
        process_match_mode: Callable[..., bool] = any,
    ) -> Iterator[tuple[str, str, DotDict]]:
        """``(category name, process name, parameter)`` of every matching parameter."""
        found = self.get_parameters(
            parameter,
            process,
            category,
            match_mode=match_mode,
            category_match_mode=category_match_mode,
            process_match_mode=process_match_mode,
        )
        for category_name, per_process in found.items():
            for process_name, parameters in per_process.items():
                for parameter_ in parameters:
                    yield category_name, process_name, parameter_

    def scale_process(
        self,
        scale: float,
        process: str | Sequence[str] | None = None,
        category: str | Sequence[str] | None = None,
        match_mode: Callable[..., bool] = any,
        category_match_mode: Callable[..., bool] = any,
    ) -> bool:
        """Set the scale of the matching processes; whether any matched."""
        found = False
        for _, process_ in self.iter_processes(process, category, match_mode, category_match_mode):
            process_.scale = float(scale)
            found = True
        return found

    # views used by the histogram-to-datacard code

    @property
    def signal_names(self) -> list[str]:
        """The signal processes of the model, in the order they were first added."""
        return _unique(p.name for c in self.categories for p in c.processes if p.is_signal)

    @property
    def background_names(self) -> list[str]:
        return _unique(p.name for c in self.categories for p in c.processes if not p.is_signal)

    def category_processes(self, category: str) -> list[DotDict]:
        """The processes of a category, signals first, each group in the order they were added."""
        processes = self.get_category(category).processes
        return [p for p in processes if p.is_signal] + [p for p in processes if not p.is_signal]

    def process_index(self, name: str) -> int:
        """The combine process index, the same in every datacard: ``0, -1, ...`` for signals, ``1, 2, ...`` else."""
        if name in self.signal_names:
            return -self.signal_names.index(name)
        return self.background_names.index(name) + 1

    def category_parameters(self, category: str) -> list[str]:
        """The names of the parameters acting on a category's processes, in the order they were first added."""
        present = set(self.get_parameters(category=category, flat=True))
        order = [name for name in self._parameter_order if name in present]
        return order + [name for name in self.get_parameters(category=category, flat=True) if name not in order]

    def data_processes(self, category: str) -> list[str]:
        """The processes summed into the pseudo data of a category (empty: real data)."""
        category_ = self.get_category(category)
        if category_.data_from_processes is True:
            return [p.name for p in category_.processes if not p.is_signal]
        return list(category_.data_from_processes)

    def check_data_luminosity(self) -> None:
        """Refuse data datasets as observation where they amount to another luminosity than the MC.

        A config's ``x.data_luminosity`` (e.g. small embedded pseudo-data) differing from its ``x.luminosity`` (to
        which the MC is normalised) would compare events of different luminosities; the tasks call this before
        any work, a category with ``data_from_processes`` passes.

        Raises:
            UserError: For the first category that observes such data.
        """
        for category in self.categories:
            if category.data_from_processes:
                continue
            for config_inst in self.config_insts:
                if config_inst.name not in category.config_data:
                    continue
                data_luminosity = config_entry(config_inst, "data_luminosity")
                luminosity = config_entry(config_inst, "luminosity")
                if data_luminosity is not None and data_luminosity.nominal != luminosity.nominal:
                    raise UserError(
                        f"category '{category.name}' of inference model '{self.cls_name}' observes the data of "
                        f"config '{config_inst.name}', {data_luminosity.nominal:g} pb^-1 (x.data_luminosity), but the "
                        f"MC is normalised to {luminosity.nominal:g} pb^-1: use data_from_processes (pseudo data)",
                    )

    def has_asimov_data(self) -> bool:
        """Whether a category observes the summed expected yields themselves (no observed limit is then reported)."""
        return any(self.data_processes(c.name) and c.data_toy_seed is None for c in self.categories)

    def category_configs(self, category: str) -> list[str]:
        """The configs a category takes histograms from (those in its config_data)."""
        return [c.name for c in self.config_insts if c.name in self.get_category(category).config_data]

    def mc_stats_settings(self, category: str) -> tuple[str, ...]:
        """The ``autoMCStats`` arguments of a category (empty: no MC statistical uncertainties)."""
        mc_stats = self.get_category(category).mc_stats
        if mc_stats is None or mc_stats is False:
            return ()
        if mc_stats is True:
            return (str(DEFAULT_MC_STATS_THRESHOLD),)
        values = mc_stats if isinstance(mc_stats, (list, tuple)) else (mc_stats,)
        return tuple(_format_setting(value) for value in values)

    @property
    def required_ml_models(self) -> tuple[str, ...]:
        """The ML models to read: ``ml_models``, or those named by the variables (``dnn.score_hh`` -> ``dnn``)."""
        if self.ml_models is not None:
            return tuple(self.ml_models)
        names = [
            data.variable.split(".")[0]
            for category in self.categories
            for data in category.config_data.values()
            if data.variable and "." in data.variable
        ]
        return tuple(_unique(names))

    def shape_sources(self, config: str) -> list[str]:
        """The shift sources of the parameters that read shifted histograms in a config."""
        sources = [
            parameter.config_data[config].shift_source
            for _, _, parameter in self.iter_parameters()
            if _reads_shifts(parameter) and config in parameter.config_data
        ]
        return _unique(sources)

    def required_shifts(self, config: str) -> set[str]:
        """The shifts (``<source>_up`` / ``_down``) the parameters read in a config."""
        return {f"{source}_{direction}" for source in self.shape_sources(config) for direction in ("up", "down")}

    def dataset_shifts(self, config: str) -> dict[str, tuple[str, ...]]:
        """Every dataset of a config the model reads, with its shifts.

        Nominal, plus for MC the shifts of the parameters reading shifted histograms.
        """
        shifts: dict[str, list[str]] = {}
        for category in self.categories:
            if config not in category.config_data:
                continue
            for process_ in category.processes:
                needed = ["nominal"]
                for parameter in process_.parameters:
                    if _reads_shifts(parameter) and config in parameter.config_data:
                        source = parameter.config_data[config].shift_source
                        needed += [f"{source}_up", f"{source}_down"]
                for dataset in process_.config_data[config].mc_datasets:
                    shifts.setdefault(dataset, [])
                    shifts[dataset] += [s for s in needed if s not in shifts[dataset]]
            for dataset in category.config_data[config].data_datasets:
                shifts.setdefault(dataset, ["nominal"])
        return {dataset: tuple(values) for dataset, values in shifts.items()}

    # checks and resolution

    @staticmethod
    def _single(items: list[Any], silent: bool, what: str, available: Iterable[str]) -> Any:
        if len(items) == 1:
            return items[0]
        if silent:
            return None
        if not items:
            raise UserError(f"unknown {what}, available: {', '.join(available) or '(none)'}")
        raise UserError(f"{what} is ambiguous: it matches {len(items)} entries")

    def _check(self) -> None:
        """Checks that need no config: categories with processes, the names groups and pseudo data refer to."""
        where = f"inference model '{self.cls_name}'"
        if not self.categories:
            raise UserError(f"{where} has no categories")
        for category in self.categories:
            if not category.processes:
                raise UserError(f"category '{category.name}' of {where} has no processes (or call self.cleanup())")
            if category.data_from_processes and category.data_from_processes is not True:
                known = [p.name for p in category.processes]
                unknown = [n for n in category.data_from_processes if n not in known]
                if unknown:
                    raise UserError(
                        f"category '{category.name}' of {where}: unknown data process(es) {', '.join(unknown)}, "
                        f"available: {', '.join(known)}",
                    )
            seed = category.data_toy_seed
            if seed is not None and not (category.data_from_processes and isinstance(seed, int) and seed >= 0):
                raise UserError(
                    f"category '{category.name}' of {where}: data_toy_seed must be an integer >= 0 and needs "
                    f"data_from_processes, got {seed!r}",
                )
        parameter_names = self.get_parameters(flat=True)
        for group in self.parameter_groups:
            unknown = [n for n in group.parameter_names if n not in parameter_names]
            if unknown:
                raise UserError(
                    f"parameter group '{group.name}' of {where}: unknown parameter(s) {', '.join(unknown)}, "
                    f"available: {', '.join(parameter_names) or '(none)'} (or call self.cleanup())",
                )

    def _check_configs(self) -> None:
        configs = [c.name for c in self.config_insts]
        for category in self.categories:
            if not any(config in category.config_data for config in configs):
                raise UserError(
                    f"category '{category.name}' of inference model '{self.cls_name}' has no config_data for the model's "
                    f"configs ({', '.join(configs)}): pass config_variable= (and config_category=) or config_data=",
                )
        if not self.signal_names:
            raise UserError(
                f"inference model '{self.cls_name}' has no signal process (pass is_signal=True to add_process)"
            )

    def _unknown(self, kind: str, name: str, config_inst: Any, available: Iterable[str]) -> UserError:
        where = f"in inference model '{self.cls_name}' (config '{config_inst.name}')"
        return UserError(f"unknown {kind} '{name}' {where}, available: {', '.join(sorted(available)) or '(none)'}")

    def _resolve(self, config_inst: Any) -> None:
        """Check every name of one config and fill the dataset lists and signal flags from it."""
        self._setup_ml_variables(config_inst)
        for category in self.categories:
            if config_inst.name not in category.config_data:
                continue
            self._resolve_category(category, config_inst)
            for process_ in category.processes:
                self._resolve_process(category, process_, config_inst)
                for parameter in process_.parameters:
                    self._resolve_parameter(parameter, process_, config_inst)

    def _resolve_category(self, category: DotDict, config_inst: Any) -> None:
        data = category.config_data[config_inst.name]
        data.category = data.category or category.name
        if not config_inst.has_category(data.category):
            raise self._unknown("category", data.category, config_inst, (c.name for c in config_inst.categories))
        if not data.variable or not config_inst.has_variable(data.variable):
            raise self._unknown("variable", str(data.variable), config_inst, (v.name for v in config_inst.variables))
        if category.bin_edges:
            from cf.inference.shapes import rebin_indices

            edges = config_inst.get_variable(data.variable).bin_edges
            try:
                rebin_indices(edges, category.bin_edges)
            except ValueError as error:
                raise UserError(f"category '{category.name}' of inference model '{self.cls_name}': {error}") from None
        if category.data_from_processes:
            if data.data_datasets:
                raise UserError(f"category '{category.name}': give either data datasets or data_from_processes")
            return
        data_names = [d.name for d in config_inst.datasets if d.is_data]
        if not data_names:
            raise UserError(
                f"config '{config_inst.name}' has no data dataset for category '{category.name}'; "
                "use data_from_processes for pseudo data",
            )
        data.data_datasets = self._match_datasets(data.data_datasets or ["*"], data_names, "data dataset", config_inst)

    def _resolve_process(self, category: DotDict, process_: DotDict, config_inst: Any) -> None:
        data = process_.config_data.get(config_inst.name)
        if data is None:
            raise UserError(
                f"process '{process_.name}' of inference model '{self.cls_name}' has no config_data for config "
                f"'{config_inst.name}', which category '{category.name}' uses",
            )
        data.process = data.process or process_.name
        if not config_inst.has_process(data.process):
            raise self._unknown("process", data.process, config_inst, (p.name for p in config_inst.processes))
        process_inst = config_inst.get_process(data.process)
        mc_datasets = [d for d in config_inst.datasets if not d.is_data]
        if data.mc_datasets:
            data.mc_datasets = self._match_datasets(
                data.mc_datasets, [d.name for d in mc_datasets], "MC dataset", config_inst
            )
        else:
            data.mc_datasets = [
                d.name
                for d in mc_datasets
                if any(p == process_inst or process_inst.has_process(p) for p in d.processes)
            ]
            if not data.mc_datasets:
                raise UserError(
                    f"process '{process_.name}' of inference model '{self.cls_name}': no MC dataset of config process "
                    f"'{data.process}' in config '{config_inst.name}', MC datasets: "
                    f"{', '.join(d.name for d in mc_datasets)}",
                )
        if process_.is_signal is None:
            process_.is_signal = is_signal(process_inst)

    def _resolve_parameter(self, parameter: DotDict, process_: DotDict, config_inst: Any) -> None:
        if not _reads_shifts(parameter):
            return
        data = parameter.config_data.get(config_inst.name)
        if data is None or not data.shift_source:
            raise UserError(
                f"parameter '{parameter.name}' ({parameter.type}) of process '{process_.name}' needs a shift source "
                f"for config '{config_inst.name}' (config_shift_source= or config_data)",
            )
        shift_names = [shift.name for shift in config_inst.shifts]
        for direction in ("up", "down"):
            if f"{data.shift_source}_{direction}" not in shift_names:
                raise UserError(
                    f"parameter '{parameter.name}' of inference model '{self.cls_name}': unknown shift "
                    f"'{data.shift_source}_{direction}' (from shift source '{data.shift_source}') in config "
                    f"'{config_inst.name}', available: {', '.join(shift_names)}",
                )

    def _match_datasets(self, patterns: list[str], names: list[str], kind: str, config_inst: Any) -> list[str]:
        """The dataset names matching each pattern (each must match at least one), in the config's order."""
        for pattern in patterns:
            if not any(pattern_matcher(pattern)(name) for name in names):
                raise self._unknown(kind, pattern, config_inst, names)
        match = pattern_matcher(patterns)
        return [name for name in names if match(name)]

    def _setup_ml_variables(self, config_inst: Any) -> None:
        """Let the ML models named by the variables add their output variables to the config (their setup())."""
        wanted = {
            data.variable
            for category in self.categories
            for config, data in category.config_data.items()
            if config == config_inst.name and data.variable and not config_inst.has_variable(data.variable)
        }
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


def _remove_matching(items: list[DotDict], pattern: str | Sequence[str], match_mode: Callable[..., bool]) -> bool:
    """Remove the items whose names match ``pattern`` from the list in place; whether any was removed."""
    match = pattern_matcher(pattern, mode=match_mode)
    before = len(items)
    items[:] = [item for item in items if not match(item.name)]
    return len(items) != before


def shape_scale(parameter: DotDict) -> float:
    """The datacard scale of a parameter acting as shape: its effect, or 1 when its shapes come from elsewhere."""
    if parameter.type.is_shape and not parameter.transformations.any_from_rate:
        return float(parameter.effect)
    return 1.0


def _reads_shifts(parameter: DotDict) -> bool:
    """Whether a parameter reads the shifted histograms of a shift source."""
    if parameter.type.is_shape:
        return not parameter.transformations.any_from_rate
    return parameter.transformations.any_from_shape


def _check_transformations(name: str, parameter_type: ParameterType, trafos: ParameterTransformations) -> None:
    wrong = RATE_ONLY_TRANSFORMATIONS if parameter_type.is_shape else SHAPE_ONLY_TRANSFORMATIONS
    misplaced = [t.value for t in trafos if t in wrong]
    if misplaced:
        kind = "shape" if parameter_type.is_shape else "rate"
        raise UserError(f"parameter '{name}': transformation(s) {', '.join(misplaced)} do not apply to a {kind} type")
    sources = [i for i, t in enumerate(trafos) if t.from_shape or t.from_rate]
    if sources and sources != [0]:
        raise UserError(f"parameter '{name}': an effect_from_* transformation must come first, and only once")


def _check_effect(parameter: DotDict) -> None:
    """The effect a parameter type needs: positive kappas for rates, a positive scale for shapes."""
    effect = parameter.effect
    values = effect if isinstance(effect, tuple) else (effect,)
    numeric = all(isinstance(v, float) for v in values)
    where = f"parameter '{parameter.name}' ({parameter.type})"
    if parameter.type is ParameterType.rate_gauss and not parameter.transformations.any_from_shape:
        if not (numeric and all(v > 0 for v in values)):
            raise UserError(f"{where} needs an effect kappa > 0 or (kappa_down, kappa_up), got {effect!r}")
    elif parameter.type is ParameterType.rate_uniform:
        if not (isinstance(effect, float) and effect > 1):
            raise UserError(
                f"{where} needs an effect kappa > 1 (the rate is free within [1/kappa, kappa]), got {effect!r}"
            )
    elif parameter.type is ParameterType.rate_unconstrained:
        if not (isinstance(effect, float) and effect > 0):
            raise UserError(f"{where} needs a positive start value as effect, got {effect!r}")
    elif parameter.type.is_shape:
        if parameter.transformations.any_from_rate:
            if not (numeric and all(v > 0 for v in values)):
                raise UserError(
                    f"{where} builds its shapes from a rate effect: kappa or (down, up) > 0, got {effect!r}"
                )
        elif not (isinstance(effect, float) and effect > 0):
            raise UserError(f"{where} needs a positive scale as effect (1 for the shift's own size), got {effect!r}")


def _format_setting(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _plain(value: Any) -> Any:
    """The tree as plain yaml types: enums as their names, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


def inference_model(
    func: Callable[..., None] | None = None,
    *,
    name: str | None = None,
    bases: tuple[type, ...] = (),
    base: type[InferenceModel] | None = None,
    **cls_dict: Any,
) -> Any:
    """Register an inference model class whose ``init_func`` is the decorated function (columnflow's decorator).

    Usable bare (``@inference_model``) or with class attributes (``@inference_model(calibrators=("jec",))``).
    The model is registered under ``name`` (default: the function's name) and is a class, so that variants can
    be derived from it with ``derive(name, cls_dict=...)``.

    Args:
        func: ``func(self)`` fills the model (``self.add_category(...)`` ...).
        name: The registered name.
        bases: Further base classes (as in columnflow).
        base: The model class to derive from (default: :class:`InferenceModel`).
        cls_dict: Class attributes of the model; values made with :func:`cf.registry.setting` are its settings.

    Returns:
        The new model class (or, with arguments, the decorator making it).
    """

    def decorator(init_func: Callable[..., None]) -> type[InferenceModel]:
        namespace = {
            **cls_dict,
            "init_func": init_func,
            "__doc__": init_func.__doc__,
            "__module__": init_func.__module__,
            "__qualname__": name or init_func.__name__,
        }
        return (base or InferenceModel).derive(name or init_func.__name__, bases=bases, cls_dict=namespace)

    return decorator(func) if func is not None else decorator
