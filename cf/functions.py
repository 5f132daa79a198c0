"""The one registry pattern for pluggable column functions: calibrators, selectors and producers.

A column function is a plain Python function decorated with what it reads (``uses``) and writes
(``produces``). The declared ``uses`` drive which columns are read from disk; the ``produces`` decide
which columns a task writes.

An entry of ``uses`` / ``mc_uses`` / ``produces`` is one of

* a column route (``"Jet.pt"``, ``"Electron.*"``),
* another column function, whose columns are included (so a producer that calls another declares it once),
* a :class:`ConfigColumns`: columns named by an entry of the config, e.g. the electron ID branch of the
  config's NanoAOD version; they are resolved per config, so a function reads exactly what exists there.

Example:
    >>> @producer(uses={"Jet.pt"}, produces={"ht"})
    ... def my_ht(events, ctx):
    ...     return set_ak_column(events, "ht", ak.sum(events.Jet.pt, axis=1))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeAlias, TypeVar

import awkward as ak

from cf.util import UserError

__all__ = [
    "apply_functions",
    "ColumnContext",
    "ColumnFunction",
    "ColumnSpec",
    "ConfigColumns",
    "Registry",
    "SelectionResult",
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
            objects.selector_columns()``).
    """

    entry: str
    columns: Callable[[Any], Iterable[str]]

    def resolve(self, config_inst: Any) -> frozenset[str]:
        """The columns for ``config_inst``.

        Raises:
            UserError: If the config has no such entry.
        """
        if not config_inst.has_aux(self.entry):
            raise UserError(
                f"config '{config_inst.name}' has no entry x.{self.entry}, which names the columns of this analysis' "
                f"functions; set config.x.{self.entry} in the config (see the docs' 'Running on real data')",
            )
        return frozenset(self.columns(config_inst.x(self.entry)))


@dataclass
class ColumnContext:
    """What a column function may need besides the events.

    Attributes:
        config_inst: The order config.
        dataset_inst: The order dataset being processed.
        shift: The name of the shift being processed ("nominal", "jec_up", ...).
        selection_stats: The dataset's merged selection statistics (producers only, else None).
    """

    config_inst: Any
    dataset_inst: Any
    shift: str = "nominal"
    selection_stats: dict[str, Any] | None = None


@dataclass
class SelectionResult:
    """What a selector decides: the event mask and, per collection, the mask of the objects to keep.

    Attributes:
        event: Boolean array, one entry per event.
        objects: Collection name -> jagged boolean mask of the objects kept by the reduction.
    """

    event: ak.Array
    objects: dict[str, ak.Array] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnFunction:
    """A registered calibrator, selector or producer.

    Attributes:
        name: The name used on the command line.
        kind: "calibrator", "selector" or "producer".
        func: ``func(events, ctx) -> events`` (selectors return ``(events, SelectionResult)``).
        uses: Columns read (route strings, ``*`` wildcards allowed, other functions, :class:`ConfigColumns`).
        mc_uses: Columns read only for simulated datasets (e.g. ``genWeight``).
        produces: Columns written (route strings, other functions, :class:`ConfigColumns`).
        shifts: Names of the shifts the function implements (e.g. {"jec_up", "jec_down"}).
    """

    name: str
    kind: str
    func: Callable[..., Any]
    uses: frozenset[ColumnSpec]
    produces: frozenset[ColumnSpec]
    shifts: frozenset[str]
    mc_uses: frozenset[ColumnSpec] = frozenset()

    def __call__(self, events: ak.Array, ctx: ColumnContext) -> Any:
        return self.func(events, ctx)

    def column_origins(self, config_inst: Any, is_data: bool) -> dict[str, str]:
        """Per column read for a dataset of ``config_inst``, where it is declared (for error messages).

        Simulated datasets read ``uses | mc_uses``, data ``uses`` only; included functions add theirs.
        """
        origins: dict[str, str] = {}
        specs = self.uses if is_data else self.uses | self.mc_uses
        for spec in sorted(specs, key=_spec_order):
            if isinstance(spec, ColumnFunction):
                for column, origin in spec.column_origins(config_inst, is_data).items():
                    origins.setdefault(column, origin)
            elif isinstance(spec, ConfigColumns):
                for column in sorted(spec.resolve(config_inst)):
                    origins.setdefault(column, f"config.x.{spec.entry} of config '{config_inst.name}'")
            else:
                origins.setdefault(spec, f"'uses' of {self.kind} '{self.name}'")
        return origins

    def columns_used(self, config_inst: Any, is_data: bool) -> frozenset[str]:
        """The columns read for a data (``uses``) or simulated (``uses | mc_uses``) dataset of ``config_inst``."""
        return frozenset(self.column_origins(config_inst, is_data))

    def columns_produced(self, config_inst: Any) -> frozenset[str]:
        """The columns written for datasets of ``config_inst``."""
        columns: set[str] = set()
        for spec in self.produces:
            if isinstance(spec, ColumnFunction):
                columns |= spec.columns_produced(config_inst)
            elif isinstance(spec, ConfigColumns):
                columns |= spec.resolve(config_inst)
            else:
                columns.add(spec)
        return frozenset(columns)


#: One entry of ``uses`` / ``mc_uses`` / ``produces``.
ColumnSpec: TypeAlias = str | ColumnFunction | ConfigColumns


def _spec_order(spec: ColumnSpec) -> tuple[int, str]:
    """Plain columns first, then config columns, then included functions; by name within each."""
    if isinstance(spec, str):
        return (0, spec)
    if isinstance(spec, ConfigColumns):
        return (1, spec.entry)
    return (2, spec.name)


F = TypeVar("F", bound=ColumnFunction)


class Registry(Generic[F]):
    """Column functions of one kind, keyed by name; duplicates are rejected, unknown names listed."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._functions: dict[str, ColumnFunction] = {}

    def register(self, function: ColumnFunction) -> ColumnFunction:
        existing = self._functions.get(function.name)
        if existing is not None and existing.func.__module__ != function.func.__module__:
            raise ValueError(
                f"{self.kind} '{function.name}' is defined twice: in {existing.func.__module__} and "
                f"{function.func.__module__}",
            )
        self._functions[function.name] = function
        return function

    def get(self, name: str) -> ColumnFunction:
        try:
            return self._functions[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} '{name}', available: {', '.join(self.names()) or '(none registered)'}",
            ) from None

    def decorator(
        self,
        func: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        uses: Iterable[ColumnSpec] = (),
        produces: Iterable[ColumnSpec] = (),
        shifts: Iterable[str] = (),
        mc_uses: Iterable[ColumnSpec] = (),
    ) -> Any:
        """Register ``func`` under ``name`` (default: the function's name); usable with or without arguments.

        Calibrators and producers are ``func(events, ctx) -> events``; selectors are
        ``func(events, ctx) -> (events, SelectionResult)``.
        """

        def register(f: Callable[..., Any]) -> ColumnFunction:
            function = ColumnFunction(
                name=name or f.__name__,
                kind=self.kind,
                func=f,
                uses=frozenset(uses),
                produces=frozenset(produces),
                shifts=frozenset(shifts),
                mc_uses=frozenset(mc_uses),
            )
            return self.register(function)

        return register(func) if func is not None else register

    def names(self) -> list[str]:
        return sorted(self._functions)

    def __contains__(self, name: object) -> bool:
        return name in self._functions


calibrators: Registry[ColumnFunction] = Registry("calibrator")
selectors: Registry[ColumnFunction] = Registry("selector")
producers: Registry[ColumnFunction] = Registry("producer")


def apply_functions(funcs: list[ColumnFunction], events: ak.Array, ctx: ColumnContext) -> ak.Array:
    """Apply calibrators or producers in order."""
    for func in funcs:
        events = func(events, ctx)
    return events


calibrator = calibrators.decorator
selector = selectors.decorator
producer = producers.decorator
