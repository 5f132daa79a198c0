"""Column functions: calibrators, selectors and producers, written as in columnflow.

A column function is a class made by a decorator from a function ``f(self, events, **kwargs)``; it declares what it
reads (``uses``) and writes (``produces``). The declarations drive which columns a task reads from disk and which it
writes. Tasks create one instance per config, dataset and shift; the instance knows ``self.config_inst``,
``self.dataset_inst``, ``self.shift`` (and ``self.global_shift_inst``) and may keep state set by its hooks.

An entry of ``uses`` / ``mc_uses`` / ``produces`` is one of

* a column route (``"Jet.pt"``, ``"Electron.*"``),
* another column function (its class): a dependency, instantiated with this one and called as ``self[other]``; its
  used (in ``uses``) or produced (in ``produces``) columns count as this function's,
* a :class:`ConfigColumns`: columns named by a config entry, resolved per config (e.g. the electron ID branch of the
  config's NanoAOD version), so that a function reads exactly what exists there.

Hooks, registered with decorators on the class as in columnflow:

* ``@f.init``: ``init(self)``, once per instance, before the dependencies are created; may extend ``self.uses``,
  ``self.produces``, ``self.mc_uses`` and ``self.shifts`` from ``self.config_inst`` / ``self.dataset_inst``.
* ``@f.requires``: ``requires(self, task, reqs, **kwargs)``, adds the tasks the function needs to ``reqs``.
* ``@f.setup``: ``setup(self, task, reqs, inputs, reader_targets, **kwargs)``, once per task before the chunk loop
  (load a file the requirement wrote); ``reader_targets`` takes further row-aligned parquet files to read.
* ``@f.skip``: ``skip(self) -> bool``, whether a dependency is left out (``mc_only`` / ``data_only`` do that too).

Example:
    >>> @producer(uses={"Jet.pt"}, produces={"ht"})
    ... def my_ht(self, events, **kwargs):
    ...     return set_ak_column(events, "ht", ak.sum(events.Jet.pt, axis=1))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

import awkward as ak

from cf.util import UserError, unknown_name_message

__all__ = [
    "Calibrator",
    "apply_functions",
    "ColumnFunction",
    "ColumnSpec",
    "ConfigColumns",
    "Producer",
    "Registry",
    "SelectionResult",
    "Selector",
    "UnknownNameError",
    "calibrator",
    "calibrators",
    "producer",
    "producers",
    "selector",
    "selectors",
]


class UnknownNameError(UserError):
    """A name that is not registered; the message lists the registered names."""


@dataclass(frozen=True)
class ConfigColumns:
    """Columns named by the config entry ``config.x.<entry>``, resolved per config.

    Attributes:
        entry: The name of the auxiliary config entry (``config.x.<entry>``).
        columns: Called with the entry's value, returns the column routes (e.g. ``lambda objects:
            objects.selection_columns()``).
    """

    entry: str
    columns: Callable[[Any], Iterable[str]]

    def resolve(self, config_inst: Any) -> frozenset[str]:
        """The columns for ``config_inst``.

        Raises:
            UserError: If there is no config or it has no such entry.
        """
        if config_inst is None or not config_inst.has_aux(self.entry):
            name = getattr(config_inst, "name", None)
            raise UserError(
                f"config '{name}' has no entry x.{self.entry}, which names the columns of this analysis' "
                f"functions; set config.x.{self.entry} in the config (see the docs' 'Running on real data')",
            )
        return frozenset(self.columns(config_inst.x(self.entry)))


@dataclass
class SelectionResult:
    """What a selector decides: the event mask and, per collection, the mask of the objects to keep.

    Attributes:
        event: Boolean array, one entry per event.
        objects: Collection name -> jagged boolean mask of the objects kept by the reduction.
    """

    event: ak.Array
    objects: dict[str, ak.Array] = field(default_factory=dict)


#: One entry of ``uses`` / ``mc_uses`` / ``produces``: a route, a column function class or config columns.
ColumnSpec: TypeAlias = "str | type[ColumnFunction] | ConfigColumns"


def _is_function_class(spec: Any) -> bool:
    return isinstance(spec, type) and issubclass(spec, ColumnFunction)


def _spec_order(spec: Any) -> tuple[int, str]:
    """Plain columns first, then config columns, then dependencies; by name within each."""
    if isinstance(spec, str):
        return (0, spec)
    if isinstance(spec, ConfigColumns):
        return (1, spec.entry)
    return (2, spec.cls_name)


class ColumnFunction:
    """Base of calibrators, selectors and producers; a subclass per function, made by the decorators below.

    Class attributes (the declaration; every instance starts from copies that its ``init`` hook may extend):

    Attributes:
        cls_name: The name used on the command line (the decorated function's name, or the ``derive`` name).
        kind: "calibrator", "selector" or "producer".
        uses: Columns read (routes with ``*`` wildcards, dependencies, :class:`ConfigColumns`).
        mc_uses: Columns read only for simulated datasets (e.g. ``genWeight``).
        produces: Columns written (routes, dependencies, :class:`ConfigColumns`).
        shifts: Names of the shifts the function implements (e.g. {"jec_up", "jec_down"}), or dependencies.
        mc_only: Skip the function for data (as a dependency; it is not instantiated there).
        data_only: Skip the function for simulation.
    """

    cls_name: ClassVar[str] = "column_function"
    kind: ClassVar[str] = "column function"
    registry: ClassVar[Registry | None] = None
    # declared on the class, copied per instance in __init__ (an init hook extends the copies)
    uses: set[Any] = set()  # noqa: RUF012
    mc_uses: set[Any] = set()  # noqa: RUF012
    produces: set[Any] = set()  # noqa: RUF012
    shifts: set[Any] = set()  # noqa: RUF012
    mc_only: ClassVar[bool] = False
    data_only: ClassVar[bool] = False

    # hooks: plain functions stored on the class (bound on access), None when not registered
    init_func: ClassVar[Callable[..., None] | None] = None
    requires_func: ClassVar[Callable[..., None] | None] = None
    setup_func: ClassVar[Callable[..., None] | None] = None
    skip_func: ClassVar[Callable[..., bool] | None] = None

    def call_func(self, events: ak.Array, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{self.kind} '{self.cls_name}' has no function to call")

    # ---------------------------------------------------------------------------------------------------------------
    # class level: hooks, derivation, lookup
    # ---------------------------------------------------------------------------------------------------------------

    @classmethod
    def init(cls, func: Callable[..., None]) -> Callable[..., None]:
        """Decorator: register ``func(self)`` as the ``init`` hook."""
        cls.init_func = func
        return func

    @classmethod
    def requires(cls, func: Callable[..., None]) -> Callable[..., None]:
        """Decorator: register ``func(self, task, reqs, **kwargs)`` as the ``requires`` hook."""
        cls.requires_func = func
        return func

    @classmethod
    def setup(cls, func: Callable[..., None]) -> Callable[..., None]:
        """Decorator: register ``func(self, task, reqs, inputs, reader_targets, **kwargs)`` as the ``setup`` hook."""
        cls.setup_func = func
        return func

    @classmethod
    def skip(cls, func: Callable[..., bool]) -> Callable[..., bool]:
        """Decorator: register ``func(self) -> bool`` as the ``skip`` hook."""
        cls.skip_func = func
        return func

    @classmethod
    def derive(
        cls,
        cls_name: str,
        bases: tuple[type, ...] = (),
        cls_dict: dict[str, Any] | None = None,
        module: str | None = None,
    ) -> type[ColumnFunction]:
        """A registered subclass named ``cls_name`` whose class attributes are overridden by ``cls_dict``.

        Args:
            cls_name: The new name (unique per kind).
            bases: Further base classes, placed after this class.
            cls_dict: Class attributes of the new class (``uses``, ``produces``, ``call_func``, your own).
            module: The module the new class counts as defined in (default: this class's).

        Returns:
            The new class.
        """
        attributes = {**(cls_dict or {}), "cls_name": cls_name, "__module__": module or cls.__module__}
        new = type(cls_name, (cls, *bases), attributes)
        if cls.registry is not None:
            cls.registry.register(new)
        return new

    @classmethod
    def get_cls(cls, name: str, silent: bool = False) -> type[ColumnFunction] | None:
        """The registered function of this kind named ``name``; None if ``silent`` and unknown."""
        if cls.registry is None:
            raise TypeError(f"{cls.__name__} has no registry")
        if silent and name not in cls.registry:
            return None
        return cls.registry.get(name)

    @classmethod
    def has_cls(cls, name: str) -> bool:
        """Whether a function of this kind named ``name`` is registered."""
        return cls.registry is not None and name in cls.registry

    # ---------------------------------------------------------------------------------------------------------------
    # instance level
    # ---------------------------------------------------------------------------------------------------------------

    def __init__(
        self,
        config_inst: Any = None,
        dataset_inst: Any = None,
        shift: str = "nominal",
        task: Any = None,
    ) -> None:
        self.config_inst = config_inst
        self.dataset_inst = dataset_inst
        self.analysis_inst = getattr(config_inst, "analysis", None)
        self.shift = shift
        self.task = task
        self.uses = set(type(self).uses)
        self.mc_uses = set(type(self).mc_uses)
        self.produces = set(type(self).produces)
        self.shifts = set(type(self).shifts)
        if self.init_func is not None:
            self.init_func()
        self.deps: dict[type[ColumnFunction], ColumnFunction] = {}
        for spec in sorted(self.uses | self.mc_uses | self.produces | self.shifts, key=_spec_order):
            if _is_function_class(spec) and spec not in self.deps:
                dependency = spec(config_inst=config_inst, dataset_inst=dataset_inst, shift=shift, task=task)
                if not dependency.skipped():
                    self.deps[spec] = dependency

    def __repr__(self) -> str:
        return f"<{self.kind} '{self.cls_name}' of config '{getattr(self.config_inst, 'name', None)}'>"

    def __getitem__(self, cls: type[ColumnFunction]) -> ColumnFunction:
        """The instance of the dependency ``cls`` (declared in ``uses``, ``mc_uses``, ``produces`` or ``shifts``)."""
        try:
            return self.deps[cls]
        except KeyError:
            raise KeyError(
                f"{cls.kind} '{cls.cls_name}' is not a dependency of {self.kind} '{self.cls_name}' (or it is "
                "skipped for this dataset): add it to uses or produces",
            ) from None

    def __call__(self, events: ak.Array, **kwargs: Any) -> Any:
        return self.call_func(events, **kwargs)

    @property
    def is_data(self) -> bool:
        """Whether the dataset is collision data (False without a dataset)."""
        return bool(getattr(self.dataset_inst, "is_data", False))

    @property
    def global_shift_inst(self) -> Any:
        """The order shift being processed (columnflow's name), None without a config."""
        return self.config_inst.get_shift(self.shift) if self.config_inst is not None else None

    def skipped(self) -> bool:
        """Whether this function is left out as a dependency (``mc_only`` / ``data_only`` / the ``skip`` hook)."""
        if self.dataset_inst is not None and ((self.mc_only and self.is_data) or (self.data_only and not self.is_data)):
            return True
        return bool(self.skip_func()) if self.skip_func is not None else False

    def _dependency(self, spec: Any) -> ColumnFunction | None:
        return self.deps.get(spec)

    def column_origins(self, is_data: bool | None = None) -> dict[str, str]:
        """Per column read, where it is declared (for error messages); dependencies in ``uses`` add theirs.

        Args:
            is_data: Whether the dataset is data (``mc_uses`` are left out); default: the instance's dataset.
        """
        is_data = self.is_data if is_data is None else is_data
        origins: dict[str, str] = {}
        specs = self.uses if is_data else self.uses | self.mc_uses
        for spec in sorted(specs, key=_spec_order):
            if _is_function_class(spec):
                dependency = self._dependency(spec)
                for column, origin in (dependency.column_origins(is_data) if dependency else {}).items():
                    origins.setdefault(column, origin)
            elif isinstance(spec, ConfigColumns):
                for column in sorted(spec.resolve(self.config_inst)):
                    origins.setdefault(column, f"config.x.{spec.entry} of config '{self.config_inst.name}'")
            else:
                origins.setdefault(spec, f"'uses' of {self.kind} '{self.cls_name}'")
        return origins

    @property
    def used_columns(self) -> set[str]:
        """The columns read for the instance's dataset."""
        return set(self.column_origins())

    @property
    def produced_columns(self) -> set[str]:
        """The columns written; dependencies in ``produces`` add theirs."""
        columns: set[str] = set()
        for spec in self.produces:
            if _is_function_class(spec):
                dependency = self._dependency(spec)
                columns |= dependency.produced_columns if dependency else set()
            elif isinstance(spec, ConfigColumns):
                columns |= spec.resolve(self.config_inst)
            else:
                columns.add(spec)
        return columns

    @property
    def all_shifts(self) -> set[str]:
        """The shifts the function and its dependencies implement."""
        shifts = {shift for shift in self.shifts if isinstance(shift, str)}
        for dependency in self.deps.values():
            shifts |= dependency.all_shifts
        return shifts

    def walk(self) -> Iterator[ColumnFunction]:
        """This function and its dependencies, each once, dependencies first."""
        seen: set[int] = set()

        def visit(function: ColumnFunction) -> Iterator[ColumnFunction]:
            if id(function) in seen:
                return
            seen.add(id(function))
            for dependency in function.deps.values():
                yield from visit(dependency)
            yield function

        yield from visit(self)

    def run_requires(self, task: Any, reqs: dict[str, Any]) -> dict[str, Any]:
        """Fill ``reqs`` with what this function and its dependencies require (their ``requires`` hooks)."""
        for function in self.walk():
            if function.requires_func is not None:
                function.requires_func(task, reqs)
        return reqs

    def run_setup(
        self, task: Any, reqs: dict[str, Any], inputs: dict[str, Any], reader_targets: dict[str, Any]
    ) -> None:
        """Run the ``setup`` hooks of this function and its dependencies, once per task before the chunk loop."""
        for function in self.walk():
            if function.setup_func is not None:
                function.setup_func(task, reqs, inputs, reader_targets)


class Calibrator(ColumnFunction):
    """A function that corrects columns of the NanoAOD events (``cf.CalibrateEvents``)."""

    kind = "calibrator"


class Selector(ColumnFunction):
    """A function that returns the events and a :class:`SelectionResult` (``cf.SelectEvents``)."""

    kind = "selector"


class Producer(ColumnFunction):
    """A function that adds columns to the reduced events (``cf.ProduceColumns``)."""

    kind = "producer"


class Registry:
    """The column functions of one kind, keyed by name; duplicates are rejected, unknown names listed."""

    def __init__(self, base: type[ColumnFunction]) -> None:
        self.base = base
        self.kind = base.kind
        self._classes: dict[str, type[ColumnFunction]] = {}
        base.registry = self

    def register(self, cls: type[ColumnFunction]) -> type[ColumnFunction]:
        """Add ``cls`` under its ``cls_name``; the same name from another module is an error naming both."""
        existing = self._classes.get(cls.cls_name)
        if existing is not None and existing.__module__ != cls.__module__:
            raise ValueError(
                f"{self.kind} '{cls.cls_name}' is defined twice: in {existing.__module__} and {cls.__module__}",
            )
        self._classes[cls.cls_name] = cls
        return cls

    def get(self, name: str) -> type[ColumnFunction]:
        try:
            return self._classes[name]
        except KeyError:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names())) from None

    def decorator(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        bases: tuple[type, ...] = (),
        uses: Iterable[Any] = (),
        produces: Iterable[Any] = (),
        shifts: Iterable[Any] = (),
        mc_uses: Iterable[Any] = (),
        mc_only: bool = False,
        data_only: bool = False,
        **cls_dict: Any,
    ) -> Any:
        """Make ``func(self, events, **kwargs)`` a registered class of this kind; with or without arguments.

        Calibrators and producers return the events, selectors ``(events, SelectionResult)``. Further keyword
        arguments become class attributes (as in columnflow).
        """

        def register(f: Callable[..., Any]) -> type[ColumnFunction]:
            attributes = {
                **cls_dict,
                "call_func": f,
                "uses": set(uses),
                "produces": set(produces),
                "shifts": set(shifts),
                "mc_uses": set(mc_uses),
                "mc_only": mc_only,
                "data_only": data_only,
                "__doc__": f.__doc__,
            }
            return self.base.derive(name or f.__name__, bases=bases, cls_dict=attributes, module=f.__module__)

        return register(func) if func is not None else register

    def names(self) -> list[str]:
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes


def apply_functions(insts: Iterable[ColumnFunction], events: ak.Array, **kwargs: Any) -> ak.Array:
    """Call calibrators or producers in order, each on the events the previous one returned."""
    for inst in insts:
        events = inst(events, **kwargs)
    return events


calibrators = Registry(Calibrator)
selectors = Registry(Selector)
producers = Registry(Producer)

calibrator = calibrators.decorator
selector = selectors.decorator
producer = producers.decorator
