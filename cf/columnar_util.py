"""Columnar helpers for awkward arrays: routes to nested columns and setting / removing them.

Names and semantics follow columnflow's ``columnar_util`` so that calibrators, selectors, producers and
ML models port by changing imports.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

import awkward as ak
import numpy as np

__all__ = [
    "EMPTY_FLOAT",
    "EMPTY_INT",
    "IDENTITY_COLUMNS",
    "FlatObjects",
    "Route",
    "add_empty_collections",
    "filter_routes",
    "flat_np_view",
    "get_ak_routes",
    "has_ak_column",
    "remove_ak_column",
    "set_ak_column",
    "strip_unused_options",
    "take_ak_columns",
]

#: Value for a float column where an object is missing (e.g. the second jet of a one-jet event).
EMPTY_FLOAT: float = -99999.0
#: Value for an integer column where an object is missing.
EMPTY_INT: int = -99999
#: The columns that identify an event: always kept by the reduction; the ML fold of an event is a hash of them.
IDENTITY_COLUMNS: tuple[str, ...] = ("run", "luminosityBlock", "event")

RouteLike = Union["Route", str, Sequence[str]]

_INDEX_PATTERN = re.compile(r"^(?P<path>[^\[]+)(?P<index>\[.*\])?$")


def _parse_index(text: str) -> tuple[Any, ...]:
    """Parse an index suffix such as ``[:,0]`` or ``[:, 1:3]`` into a tuple of ints and slices."""
    items: list[Any] = []
    for raw_part in text.strip("[]").split(","):
        part = raw_part.strip()
        if ":" in part:
            bounds = [int(b) if b.strip() else None for b in part.split(":")]
            items.append(slice(*bounds))
        else:
            items.append(int(part))
    return tuple(items)


class Route:
    """The path of a (nested) column, e.g. ``Route("Jet.pt")`` or ``Route(("Jet", "pt"))``.

    A route string may end with an index such as ``"Jet.pt[:,0]"`` (the leading jet's pt). Applying such a
    route pads missing objects with a ``null_value``.

    Example:
        >>> Route("Jet.pt").fields
        ('Jet', 'pt')
        >>> Route("Jet.pt[:,0]").column
        'Jet.pt'
    """

    def __init__(self, route: RouteLike) -> None:
        if isinstance(route, Route):
            self.fields: tuple[str, ...] = route.fields
            self.index: tuple[Any, ...] | None = route.index
            return
        if isinstance(route, str):
            match = _INDEX_PATTERN.match(route.strip())
            if not match:
                raise ValueError(f"invalid column route '{route}'")
            self.fields = tuple(match.group("path").split("."))
            try:
                self.index = _parse_index(match.group("index")) if match.group("index") else None
            except ValueError:
                raise ValueError(f"invalid column route '{route}': bad index {match.group('index')}") from None
        else:
            self.fields = tuple(route)
            self.index = None
        if not self.fields or any(not field for field in self.fields):
            raise ValueError(f"invalid column route '{route}': empty field name")

    @property
    def column(self) -> str:
        """The dotted column name without index."""
        return ".".join(self.fields)

    def __str__(self) -> str:
        return self.column if self.index is None else f"{self.column}[{self._index_text()}]"

    def _index_text(self) -> str:
        def text(item: Any) -> str:
            if isinstance(item, slice):
                bounds = (item.start, item.stop) if item.step is None else (item.start, item.stop, item.step)
                return ":".join("" if b is None else str(b) for b in bounds)
            return str(item)

        return ",".join(text(item) for item in self.index or ())

    def __repr__(self) -> str:
        return f"Route('{self}')"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (str, tuple, Route)):
            other_route = Route(other)
            return self.fields == other_route.fields and self.index == other_route.index
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.fields, self.index))

    def __len__(self) -> int:
        return len(self.fields)

    def apply(self, array: ak.Array, null_value: Any = None) -> ak.Array:
        """Return the column of ``array`` at this route, indexed and padded with ``null_value`` if needed."""
        column = array[self.fields]
        if self.index is None:
            return column
        index = self.index
        # integer positions beyond the jagged length become null_value instead of an IndexError
        last = index[-1]
        if isinstance(last, int) and len(index) == 2:
            padded = ak.pad_none(column, last + 1, axis=1)
            column = padded[index]
            return column if null_value is None else ak.fill_none(column, null_value)
        return column[index]


def has_ak_column(array: ak.Array, route: RouteLike) -> bool:
    """Whether ``array`` has the (nested) column."""
    current = array
    for field in Route(route).fields:
        if field not in ak.fields(current):
            return False
        current = current[field]
    return True


def _nest(fields: Sequence[str], value: ak.Array) -> ak.Array:
    """Wrap a value into event-level records so that it sits at ``fields``.

    A new parent is always a record per event (``{pt: var * float}``), never a list of records, so that
    columns of any structure can be added to it later.
    """
    for field in reversed(fields):
        value = ak.zip({field: value}, depth_limit=1)
    return value


def set_ak_column(array: ak.Array, route: RouteLike, value: Any, value_type: Any = None) -> ak.Array:
    """Return ``array`` with ``value`` at the (nested) ``route``, creating parents and overwriting a column.

    Args:
        array: The events.
        route: Where the column goes, e.g. ``"Jet.pt_raw"`` or ``"test_model.output"``.
        value: An awkward or numpy array broadcastable to the parent's structure.
        value_type: Optional dtype to cast the value to (e.g. ``np.float32``).
    """
    if isinstance(value, np.ndarray):
        # strided views (e.g. one column of a prediction matrix) cannot be written to arrow / parquet
        value = np.ascontiguousarray(value)
    if value_type is not None:
        value = ak.values_astype(value, value_type)
    fields = Route(route).fields
    return _set_nested(array, fields, value)


def _set_nested(array: ak.Array, fields: Sequence[str], value: Any) -> ak.Array:
    head = fields[0]
    if len(fields) == 1:
        return _with_field(array, value, head)
    has_parent = head in array.fields
    inner = _set_nested(array[head], fields[1:], value) if has_parent else _nest(fields[1:], value)
    return _with_field(array, inner, head)


def _with_field(array: ak.Array, value: Any, field: str) -> ak.Array:
    """``ak.with_field(array, value, field)``, built directly where that gives the same array.

    ``ak.with_field`` broadcasts the value against the array (~0.5 ms per call, most of the framework's time
    spent on columns); the common cases need no broadcasting: a field of a record per event, or a field of a
    list of records per event set from lists of the same lengths. Everything else goes to ``ak.with_field``.
    """
    layout = _plain_layout(array, value)
    if layout is not None:
        base = array.layout
        if layout.length == base.length:
            if isinstance(base, ak.contents.RecordArray):
                result = _record_with_field(base, layout, field)
            else:
                result = _list_of_records_with_field(base, layout, field)
            if result is not None:
                return ak.Array(result, behavior=array._behavior, attrs=array._attrs)
    return ak.with_field(array, value, field)


def _plain_layout(array: ak.Array, value: Any) -> ak.contents.Content | None:
    """The layout of a value that ``ak.with_field`` would take as it is, or None.

    That is a 1-d numeric numpy array or an awkward array adding no behaviour or attributes of its own, set into
    an array without attributes (which could carry named axes).
    """
    if array._attrs:
        return None
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "biuf":
            return None
        return ak.contents.NumpyArray(value)
    if isinstance(value, ak.Array) and not value._attrs and value._behavior in (None, array._behavior):
        return value.layout
    return None


def _record_with_field(base: ak.contents.Content, value: ak.contents.Content, field: str) -> ak.contents.Content | None:
    """A record array with ``field`` replaced or appended (the value has the record array's length)."""
    if not isinstance(base, ak.contents.RecordArray) or base.is_tuple:
        return None
    fields = base.fields
    contents = [value if name == field else base.content(name) for name in fields]
    if field not in fields:
        fields = [*fields, field]
        contents.append(value)
    # as ak.with_field: an empty dict where the record array had no parameters (parquet metadata tells them apart)
    return ak.contents.RecordArray(contents, fields, base.length, parameters=base.parameters)


def _list_of_records_with_field(
    base: ak.contents.Content,
    value: ak.contents.Content,
    field: str,
) -> ak.contents.Content | None:
    """Lists of records with ``field`` set from lists of the same lengths (both with zero-based offsets).

    As broadcasting does, the lists keep the parameters they share; here they must be equal (a string value
    differs in its ``__array__``, and broadcasting treats it as one item, not a list).
    """
    if not (isinstance(base, ak.contents.ListOffsetArray) and isinstance(value, ak.contents.ListOffsetArray)):
        return None
    if base.parameters != value.parameters:
        return None
    offsets, value_offsets = base.offsets.data, value.offsets.data
    if offsets[0] != 0 or not (offsets is value_offsets or np.array_equal(offsets, value_offsets)):
        return None
    n_items = int(offsets[-1])
    records = _record_with_field(base.content[:n_items], value.content[:n_items], field)
    if records is None:
        return None
    # as broadcasting: no parameters where there are none (not an empty dict)
    return ak.contents.ListOffsetArray(base.offsets, records, parameters=base._parameters or None)


def remove_ak_column(array: ak.Array, route: RouteLike, silent: bool = False) -> ak.Array:
    """Return ``array`` without the column; a parent record left empty is removed too.

    Raises:
        ValueError: If the column does not exist and ``silent`` is False.
    """
    fields = Route(route).fields
    if not has_ak_column(array, fields):
        if silent:
            return array
        raise ValueError(f"cannot remove column '{Route(route)}': it does not exist (fields: {ak.fields(array)})")
    array = ak.without_field(array, fields)
    parent = fields[:-1]
    if parent and not ak.fields(array[parent]):
        array = remove_ak_column(array, parent)
    return array


def get_ak_routes(array_or_form: ak.Array | ak.forms.Form) -> list[Route]:
    """All leaf column routes of an array (or form), in field order."""
    form = array_or_form.layout.form if isinstance(array_or_form, ak.Array) else array_or_form
    return [Route(column) for column in form.columns()]


def filter_routes(available: Iterable[Route], patterns: Iterable[RouteLike]) -> list[Route]:
    """The available routes matching any pattern; a pattern may use ``*`` (``"Jet.*"``) or name a parent."""
    pattern_texts = tuple(Route(p).column if not isinstance(p, str) else p for p in patterns)
    if not pattern_texts:
        return []
    matches = _pattern_matcher(pattern_texts)
    parents = tuple(pattern + "." for pattern in pattern_texts)
    return [route for route in available if matches(route.column) or route.column.startswith(parents)]


@functools.lru_cache(maxsize=1024)
def _pattern_matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match[str] | None]:
    """One compiled expression matching a column against any of the fnmatch patterns (as ``fnmatchcase``)."""
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns)).match


def strip_unused_options(array: ak.Array) -> ak.Array:
    """Replace option types that hold no missing value by their content (parquet projection adds them)."""

    def strip(layout: ak.contents.Content, **kwargs: Any) -> ak.contents.Content | None:
        if layout.is_option:
            projected = layout.project()
            if projected.length == layout.length:
                return ak.transform(strip, projected, highlevel=False)
        return None

    return ak.transform(strip, array)


def flat_np_view(array: ak.Array) -> np.ndarray:
    """A flat numpy view of a (jagged) numeric column, e.g. for filling histograms."""
    return ak.to_numpy(ak.flatten(array, axis=None))


class FlatObjects:
    """The objects of a jagged collection (``events.Jet``) as flat numpy arrays, one per field, for per-object cuts.

    An awkward operation on a jagged column has a fixed cost of ~0.3 ms beyond its numpy work (broadcasting the
    lists, converting the scalars): for the dozens of comparisons of an object selection on 50k events, more than
    the work itself. On the flat fields the same cuts are numpy operations, and :meth:`jagged` turns the result
    into the collection's jagged mask::

        jets = FlatObjects(events.Jet)
        good = (jets.pt > 25.0) & (np.abs(jets.eta) < 2.4) & ((jets.jetId & 2) != 0)
        events = set_ak_column(events, "Jet", events.Jet[jets.jagged(good)])
        good_jets = jets.selected(good)  # the same, still flat: good_jets.counts, good_jets.pt, ...

    Fields are read by attribute or by name (``jets["pt"]``), each once, in their stored types: numpy compares and
    computes as awkward does (a single-precision column with a Python float in single precision).
    """

    def __init__(self, objects: ak.Array) -> None:
        self.fields: list[str] = objects.fields
        #: The number of objects of each event.
        self.counts: np.ndarray = ak.to_numpy(ak.num(objects, axis=1))
        self._read: Callable[[str], np.ndarray] = lambda field: flat_np_view(objects[field])
        self._values: dict[str, np.ndarray] = {}

    def __getitem__(self, field: str) -> np.ndarray:
        values = self._values.get(field)
        if values is None:
            values = self._values[field] = self._read(field)
        return values

    def __getattr__(self, field: str) -> np.ndarray:
        fields = self.__dict__.get("fields", ())
        if field not in fields:
            raise AttributeError(f"the objects have no field '{field}'; they have: {', '.join(fields)}")
        return self[field]

    def jagged(self, values: np.ndarray) -> ak.Array:
        """Per-object values (a mask) as the collection's jagged array."""
        return ak.unflatten(values, self.counts)

    def selected(self, mask: np.ndarray) -> FlatObjects:
        """The objects for which the flat ``mask`` is true, in the same events."""
        subset = object.__new__(FlatObjects)
        passed_before = np.concatenate([[0], np.cumsum(mask)])
        ends = np.cumsum(self.counts)
        subset.fields = self.fields
        subset.counts = passed_before[ends] - passed_before[ends - self.counts]
        subset._read = lambda field: self[field][mask]
        subset._values = {}
        return subset


def take_ak_columns(array: ak.Array, patterns: Iterable[RouteLike]) -> ak.Array:
    """A new array holding only the columns matching the patterns (``*`` wildcards, parents allowed).

    Raises:
        KeyError: If a pattern matches no column.
    """
    available = get_ak_routes(array)
    result = ak.Array(ak.contents.RecordArray([], [], length=len(array)))
    for pattern in patterns:
        routes = filter_routes(available, [pattern])
        if not routes:
            raise KeyError(f"column '{pattern}' does not exist; available: {', '.join(r.column for r in available)}")
        for route in routes:
            result = set_ak_column(result, route, array[route.fields])
    return result


#: Fields of an empty collection that hold integers (IDs, bitmasks, charges, indices); all others are float32.
_INTEGER_FIELD_PREFIXES = ("id", "jetId", "charge", "decayMode", "pdgId", "hadronFlavour", "partonFlavour")


def add_empty_collections(array: ak.Array, fields: Mapping[str, Iterable[str]]) -> ak.Array:
    """Add jagged collections without objects, e.g. those a skim dropped, with the given fields.

    Integer-like fields (IDs, bitmasks, charges) are int32 so that bit operations work on them; others float32.

    Args:
        array: The events.
        fields: Collection name -> field names (``{"Tau": ["pt", "idDeepTau2018v2p5VSjet"]}``).

    Returns:
        The events with every collection of ``fields`` added (one empty list per event).
    """
    counts = np.zeros(len(array), dtype=np.int64)
    for collection, names in fields.items():
        field_names = sorted(set(names))
        if not field_names:
            continue
        dtypes = {name: np.int32 if name.startswith(_INTEGER_FIELD_PREFIXES) else np.float32 for name in field_names}
        empty = ak.zip({name: np.zeros(0, dtype=dtype) for name, dtype in dtypes.items()})
        array = set_ak_column(array, collection, ak.unflatten(empty, counts))
    return array
