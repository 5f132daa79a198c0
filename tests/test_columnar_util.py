"""Tests of the columnar helpers (routes, setting / removing / taking columns) and of ``cf.util``."""

from __future__ import annotations

import hashlib
import json
import sys

import awkward as ak
import numpy as np
import pytest

from cf.columnar_util import (
    EMPTY_FLOAT,
    EMPTY_INT,
    FlatObjects,
    Route,
    filter_routes,
    flat_np_view,
    get_ak_routes,
    has_ak_column,
    remove_ak_column,
    set_ak_column,
    strip_unused_options,
    take_ak_columns,
)
from cf.util import (
    DotDict,
    MissingModule,
    UserError,
    brace_expand,
    expand_list,
    expand_path,
    lazy_import,
    maybe_import,
    short_hash,
    split_outside_braces,
)


@pytest.fixture
def events() -> ak.Array:
    """Three events: a jagged Jet collection (2, 1, 0 jets), a flat MET record and a flat column."""
    return ak.Array(
        {
            "event": np.array([1, 2, 3], dtype=np.uint64),
            "Jet": [
                [{"pt": 50.0, "eta": 0.5}, {"pt": 30.0, "eta": -1.0}],
                [{"pt": 40.0, "eta": 2.0}],
                [],
            ],
            "MET": {"pt": [10.0, 20.0, 30.0], "phi": [0.1, 0.2, 0.3]},
        },
    )


# --------------------------------------------------------------------------------------------------------------------
# Route
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [("Jet.pt", ("Jet", "pt")), ("ht", ("ht",)), ("a.b.c", ("a", "b", "c")), (" Jet.pt ", ("Jet", "pt"))],
)
def test_route_string_to_fields_and_back(text: str, fields: tuple[str, ...]) -> None:
    route = Route(text)
    assert route.fields == fields
    assert route.index is None
    assert route.column == text.strip()
    assert str(route) == text.strip()
    assert len(route) == len(fields)
    assert Route(fields).column == text.strip()
    assert Route(route) == route


def test_route_with_index_parses_and_round_trips() -> None:
    route = Route("Jet.pt[:,0]")
    assert route.fields == ("Jet", "pt")
    assert route.column == "Jet.pt"
    assert route.index == (slice(None), 0)
    assert str(route) == "Jet.pt[:,0]"
    assert repr(route) == "Route('Jet.pt[:,0]')"
    sliced = Route("Jet.pt[:, 1:3]")
    assert sliced.index == (slice(None), slice(1, 3))
    assert Route(str(sliced)) == sliced
    stepped = Route("x[::2]")
    assert Route(str(stepped)) == stepped
    assert stepped.index == (slice(None, None, 2),)


def test_route_index_pads_missing_objects_with_null_value(events: ak.Array) -> None:
    leading = Route("Jet.pt[:,0]").apply(events, null_value=EMPTY_FLOAT)
    assert ak.to_list(leading) == [50.0, 40.0, EMPTY_FLOAT]
    second = Route("Jet.pt[:,1]").apply(events, null_value=EMPTY_FLOAT)
    assert ak.to_list(second) == [30.0, EMPTY_FLOAT, EMPTY_FLOAT]
    # without a null value the missing entries stay None instead of raising an IndexError
    assert ak.to_list(Route("Jet.pt[:,1]").apply(events)) == [30.0, None, None]
    assert ak.to_list(Route("Jet.pt[:,1:]").apply(events)) == [[30.0], [], []]
    assert ak.to_list(Route("MET.pt").apply(events)) == [10.0, 20.0, 30.0]


def test_route_equality_and_hash() -> None:
    assert Route("Jet.pt") == "Jet.pt"
    assert Route("Jet.pt") == ("Jet", "pt")
    assert Route("Jet.pt") == Route(("Jet", "pt"))
    assert Route("Jet.pt") != "Jet.eta"
    assert Route("Jet.pt[:,0]") != Route("Jet.pt")
    assert Route("Jet.pt") != 3
    assert hash(Route("Jet.pt")) == hash(Route(("Jet", "pt")))
    assert len({Route("Jet.pt"), Route(("Jet", "pt")), Route("Jet.eta")}) == 2
    assert {Route("Jet.pt"): 1}[Route(("Jet", "pt"))] == 1


@pytest.mark.parametrize(
    "route",
    ["", "a..b", ".a", "a.", "[0]", "Jet.pt[:,0", "Jet.pt[:,0]x", "Jet.pt[:,x]", "Jet.pt[]", ("a", ""), ()],
)
def test_invalid_route_is_rejected_naming_it(route: str | tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="invalid column route") as info:
        Route(route)
    if isinstance(route, str) and route:
        assert route in str(info.value)


# --------------------------------------------------------------------------------------------------------------------
# set / has / remove / take
# --------------------------------------------------------------------------------------------------------------------


def test_set_new_flat_column(events: ak.Array) -> None:
    result = set_ak_column(events, "ht", ak.sum(events.Jet.pt, axis=1))
    assert ak.to_list(result.ht) == [80.0, 40.0, 0.0]
    assert "ht" not in ak.fields(events)  # the input is not modified


def test_set_new_nested_column_creates_parents(events: ak.Array) -> None:
    result = set_ak_column(events, "model.output.score", np.array([0.1, 0.2, 0.3]))
    assert has_ak_column(result, "model.output.score")
    assert ak.to_list(result.model.output.score) == pytest.approx([0.1, 0.2, 0.3])
    # a new parent is a record per event, so a second (jagged) column can be added next to the first
    result = set_ak_column(result, "model.output.per_jet", events.Jet.pt * 2)
    assert ak.to_list(result.model.output.per_jet) == [[100.0, 60.0], [80.0], []]
    assert ak.to_list(result.model.output.score) == pytest.approx([0.1, 0.2, 0.3])


def test_set_overwrites_existing_column(events: ak.Array) -> None:
    result = set_ak_column(events, "MET.pt", events.MET.pt * 2)
    assert ak.to_list(result.MET.pt) == [20.0, 40.0, 60.0]
    assert ak.to_list(result.MET.phi) == pytest.approx([0.1, 0.2, 0.3])
    assert ak.fields(result.MET) == ["pt", "phi"]


def test_set_column_inside_jagged_collection(events: ak.Array) -> None:
    result = set_ak_column(events, "Jet.pt_raw", events.Jet.pt)
    result = set_ak_column(result, "Jet.pt", events.Jet.pt * 1.1)
    assert ak.to_list(result.Jet.pt_raw) == [[50.0, 30.0], [40.0], []]
    assert ak.to_list(ak.flatten(result.Jet.pt)) == pytest.approx([55.0, 33.0, 44.0])
    assert ak.to_list(ak.num(result.Jet, axis=1)) == [2, 1, 0]
    assert set(ak.fields(result.Jet)) == {"pt", "eta", "pt_raw"}


def test_set_column_broadcasts_event_value_into_collection(events: ak.Array) -> None:
    result = set_ak_column(events, "Jet.event_weight", np.array([1.0, 2.0, 3.0]))
    assert ak.to_list(result.Jet.event_weight) == [[1.0, 1.0], [2.0], []]


def test_set_column_value_type(events: ak.Array) -> None:
    result = set_ak_column(events, "n_jet", ak.num(events.Jet, axis=1), value_type=np.int32)
    assert result.n_jet.type.content.primitive == "int32"
    result = set_ak_column(result, "Jet.pt", events.Jet.pt, value_type=np.float32)
    assert ak.flatten(result.Jet.pt).type.content.primitive == "float32"


class _Jet(ak.Record):
    """A record behaviour, to check that set columns keep the collection's behaviour and parameters."""


_BEHAVIOR: dict = {"Jet": _Jet}


def _with_field_reference(array: ak.Array, route: str, value: object) -> ak.Array:
    """What ``set_ak_column`` returned before its direct paths: ``ak.with_field`` at every level of the route."""
    return ak.with_field(array, value, route.split("."))


def _value_cases(events: ak.Array) -> list[tuple[str, object]]:
    """(route, value) pairs covering the direct paths and the cases that broadcast."""
    jet_pt = events.Jet.pt
    return [
        ("ht", ak.sum(jet_pt, axis=1)),  # new flat column, awkward value
        ("weight", np.array([0.5, 1.5, 2.5])),  # new flat column, numpy value
        ("event", np.array([7, 8, 9], dtype=np.int32)),  # replaced flat column, other dtype
        ("first_pt", ak.firsts(jet_pt)),  # option type
        ("label", ak.Array(["a", "bb", "ccc"])),  # strings
        ("MET.pt", events.MET.pt * 2),  # replaced field of a record per event
        ("MET.sumet", np.array([1.0, 2.0, 3.0])),  # new field of a record per event
        ("Jet.pt_raw", jet_pt),  # new field of a collection, the collection's own offsets
        ("Jet.pt", ak.Array([[1.0, 2.0], [3.0], []])),  # replaced field, equal offsets of another array
        ("Jet.pt", ak.mask(jet_pt, jet_pt > 35)),  # option type inside the lists
        ("Jet.pt", ak.values_astype(jet_pt, np.float32)),
        ("Jet.tag", ak.Array([["x", "y"], ["z"], []])),  # lists of strings
        ("Jet.event_weight", np.array([1.0, 2.0, 3.0])),  # broadcast into the collection
        ("Jet.pt", ak.Array([[1.0], [2.0, 3.0], []])),  # other list lengths: an error either way
        ("Jet.shifted", ak.Array([[0.0, 1.0, 2.0], [3.0, 4.0], []])[:, 1:]),  # offsets not from zero
        ("nested", ak.zip({"a": jet_pt, "b": jet_pt * 2})),  # a new record field holding lists of records
    ]


def _check_same_as_reference(array: ak.Array, route: str, value: object) -> ak.Array | None:
    """``set_ak_column``'s result if it is the reference's (None if both fail to broadcast).

    ``set_ak_column`` runs first: reading a layout's ``parameters`` (as ``ak.with_field`` does) turns its missing
    parameters into an empty dict.
    """
    try:
        result = set_ak_column(array, route, value)
    except ValueError:
        with pytest.raises(ValueError, match="broadcast"):
            _with_field_reference(array, route, value)
        return None
    expected = _with_field_reference(array, route, value)
    assert result.layout.form.to_dict() == expected.layout.form.to_dict(), route  # with all parameters
    assert ak.to_list(result) == ak.to_list(expected), route
    assert result.behavior == expected.behavior
    assert result.attrs == expected.attrs
    # the parquet schema, with awkward's metadata: it tells an empty parameter dict from none
    assert ak.to_arrow_table(result).schema.equals(ak.to_arrow_table(expected).schema, check_metadata=True), route
    return result


@pytest.mark.parametrize("case", range(16))
def test_set_column_is_the_same_as_with_field(events: ak.Array, case: int) -> None:
    route, value = _value_cases(events)[case]
    _check_same_as_reference(events, route, value)


@pytest.mark.parametrize("case", range(16))
def test_set_column_keeps_behaviours_and_parameters(events: ak.Array, case: int) -> None:
    jets = ak.with_name(events.Jet, "Jet")
    with_behavior = ak.Array(ak.with_field(events, jets, "Jet"), behavior=_BEHAVIOR)
    route, value = _value_cases(with_behavior)[case]
    result = _check_same_as_reference(with_behavior, route, value)
    if result is not None:
        assert isinstance(result.Jet[0, 0], _Jet)
    documented = ak.with_field(events, ak.with_parameter(events.Jet, "__doc__", "jets"), "Jet")
    _check_same_as_reference(documented, route, value)  # lists with parameters: the value's are the same or not


@pytest.mark.parametrize(
    "select",
    [
        lambda events: events[1:],  # lists whose offsets do not start at zero
        lambda events: events[np.array([True, False, True])],  # an indexed record array
        lambda events: events[:1],  # one event
        lambda events: events[:0],  # no events
        lambda events: ak.Array(ak.contents.RecordArray(events.layout.contents, events.fields)),  # no parameters
    ],
)
def test_set_column_on_selected_events_is_the_same_as_with_field(events: ak.Array, select: object) -> None:
    selected = select(events)  # type: ignore[operator]
    _check_same_as_reference(selected, "Jet.pt_raw", selected.Jet.pt)
    _check_same_as_reference(selected, "ht", ak.sum(selected.Jet.pt, axis=1))


def test_set_column_value_with_its_own_behavior_is_the_same_as_with_field(events: ak.Array) -> None:
    value = ak.Array(events.Jet.pt, behavior=_BEHAVIOR)
    _check_same_as_reference(events, "Jet.pt_raw", value)
    named = ak.with_name(ak.zip({"x": events.MET.pt}), "Jet", behavior=_BEHAVIOR)
    _check_same_as_reference(events, "MET.vector", named)


def test_has_ak_column(events: ak.Array) -> None:
    assert has_ak_column(events, "Jet.pt")
    assert has_ak_column(events, "Jet")
    assert has_ak_column(events, ("MET", "phi"))
    assert not has_ak_column(events, "Jet.mass")
    assert not has_ak_column(events, "Muon.pt")
    assert not has_ak_column(events, "event.sub")


def test_remove_column(events: ak.Array) -> None:
    result = remove_ak_column(events, "Jet.eta")
    assert ak.fields(result.Jet) == ["pt"]
    result = remove_ak_column(result, "event")
    assert "event" not in ak.fields(result)


def test_remove_last_column_removes_parent(events: ak.Array) -> None:
    result = remove_ak_column(remove_ak_column(events, "MET.pt"), "MET.phi")
    assert "MET" not in ak.fields(result)
    nested = set_ak_column(events, "a.b.c", np.zeros(3))
    assert ak.fields(remove_ak_column(nested, "a.b.c")) == ak.fields(events)


def test_remove_missing_column_names_it(events: ak.Array) -> None:
    with pytest.raises(ValueError, match=r"cannot remove column 'Jet\.mass'"):
        remove_ak_column(events, "Jet.mass")
    assert remove_ak_column(events, "Jet.mass", silent=True) is events


def test_take_columns_with_wildcards_and_parents(events: ak.Array) -> None:
    taken = take_ak_columns(events, ["Jet.pt", "MET"])
    assert [str(r) for r in get_ak_routes(taken)] == ["Jet.pt", "MET.pt", "MET.phi"]
    assert ak.to_list(taken.Jet.pt) == [[50.0, 30.0], [40.0], []]
    taken = take_ak_columns(events, ["Jet.*"])
    assert {str(r) for r in get_ak_routes(taken)} == {"Jet.pt", "Jet.eta"}
    assert len(take_ak_columns(events, [])) == 3


def test_take_missing_column_lists_available(events: ak.Array) -> None:
    with pytest.raises(KeyError, match=r"column 'Muon\.pt' does not exist; available: .*Jet\.pt"):
        take_ak_columns(events, ["Jet.pt", "Muon.pt"])


def test_get_routes_lists_leaves(events: ak.Array) -> None:
    assert [str(r) for r in get_ak_routes(events)] == ["event", "Jet.pt", "Jet.eta", "MET.pt", "MET.phi"]
    assert get_ak_routes(events.layout.form) == get_ak_routes(events)


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["Jet.*"], ["Jet.pt", "Jet.eta", "Jet.pt_raw"]),
        (["Jet.pt*"], ["Jet.pt", "Jet.pt_raw"]),
        (["Jet"], ["Jet.pt", "Jet.eta", "Jet.pt_raw"]),
        (["*.pt"], ["Jet.pt", "Muon.pt"]),
        (["J*"], ["Jet.pt", "Jet.eta", "Jet.pt_raw", "JetX"]),
        (["ht", "Muon.pt"], ["Muon.pt", "ht"]),
        ([Route("Muon.pt")], ["Muon.pt"]),
        (["nothing*"], []),
        (["Je"], []),
        ([], []),
        (["Jet.?t", "*X"], ["Jet.pt", "JetX"]),
        (["[JM]*.pt"], ["Jet.pt", "Muon.pt"]),
        (["*e*.*t*"], ["Jet.pt", "Jet.eta", "Jet.pt_raw"]),
        (["Jet.pt", "*.pt", "Jet"], ["Jet.pt", "Jet.eta", "Jet.pt_raw", "Muon.pt"]),
    ],
)
def test_filter_routes_wildcards(patterns: list[str | Route], expected: list[str]) -> None:
    available = [Route(r) for r in ("Jet.pt", "Jet.eta", "Jet.pt_raw", "JetX", "Muon.pt", "ht")]
    assert [str(r) for r in filter_routes(available, patterns)] == expected


def test_strip_unused_options() -> None:
    array = ak.Array({"x": ak.Array(ak.contents.UnmaskedArray(ak.contents.NumpyArray(np.array([1, 2, 3]))))})
    assert str(array.type) == "3 * {x: ?int64}"
    assert str(strip_unused_options(array).type) == "3 * {x: int64}"
    with_none = ak.Array({"x": [1, None, 3]})
    assert str(strip_unused_options(with_none).type) == "3 * {x: ?int64}"
    jagged = ak.Array(ak.contents.UnmaskedArray(ak.Array([[1.0, 2.0], [3.0]]).layout))
    assert str(strip_unused_options(jagged).type) == "2 * var * float64"


def test_empty_values_and_flat_view(events: ak.Array) -> None:
    assert EMPTY_FLOAT == -99999.0
    assert isinstance(EMPTY_FLOAT, float)
    assert EMPTY_INT == -99999
    view = flat_np_view(events.Jet.pt)
    assert isinstance(view, np.ndarray)
    assert view.tolist() == [50.0, 30.0, 40.0]


# --------------------------------------------------------------------------------------------------------------------
# cf.util
# --------------------------------------------------------------------------------------------------------------------


def test_maybe_import_of_missing_module_is_falsy_and_fails_on_use() -> None:
    module = maybe_import("cf_no_such_module_xyz")
    assert isinstance(module, MissingModule)
    assert not module
    with pytest.raises(ImportError, match="module 'cf_no_such_module_xyz' is not available in this environment"):
        _ = module.some_function
    # dunder lookups (copy, pickle, hasattr probes) get an AttributeError, not an ImportError
    assert not hasattr(module, "__wrapped__")


def test_lazy_import_imports_on_first_use() -> None:
    sys.modules.pop("colorsys", None)
    module = lazy_import("colorsys")
    assert "colorsys" not in sys.modules
    assert module.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules


def test_lazy_import_of_missing_module_is_falsy_and_fails_on_use() -> None:
    module = lazy_import("cf_no_such_module_xyz")
    assert not module
    with pytest.raises(ImportError, match="module 'cf_no_such_module_xyz' is not available"):
        module.anything  # noqa: B018


def test_maybe_import_of_installed_module_returns_it() -> None:
    assert maybe_import("json") is json


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("ml.{test,dnn}", ["ml.test", "ml.dnn"]),
        ("a{1,2}b{x,y}", ["a1bx", "a1by", "a2bx", "a2by"]),
        ("plain", ["plain"]),
        ("{single}", ["single"]),
        ("", [""]),
    ],
)
def test_brace_expand(pattern: str, expected: list[str]) -> None:
    assert brace_expand(pattern) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ml.test, ml.dnn", ["ml.test", " ml.dnn"]),
        ("a,b.{c,d},e", ["a", "b.{c,d}", "e"]),
        ("x.{a,{b,c}},y", ["x.{a,{b,c}}", "y"]),
        ("single", ["single"]),
        ("", [""]),
    ],
)
def test_split_outside_braces(text: str, expected: list[str]) -> None:
    assert split_outside_braces(text) == expected


def test_module_lists_expand_like_law_cfg() -> None:
    assert expand_list(split_outside_braces("ml.{test,dnn}, inference.test,")) == [
        "ml.test",
        "ml.dnn",
        "inference.test",
    ]


def test_expand_list_strips_and_drops_empty_items() -> None:
    assert expand_list([" ml.{test,dnn} ", "", " inference.test"]) == ["ml.test", "ml.dnn", "inference.test"]


def test_expand_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_TEST_EXPAND", "/some/where")
    monkeypatch.setenv("HOME", "/home/tester")
    assert expand_path("$CF_TEST_EXPAND/x/${CF_TEST_EXPAND}") == "/some/where/x//some/where"
    assert expand_path("~/y") == "/home/tester/y"


def test_expand_path_with_undefined_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CF_TEST_UNDEFINED", raising=False)
    with pytest.raises(UserError, match=r"'\$CF_TEST_UNDEFINED/store' references an undefined environment variable"):
        expand_path("$CF_TEST_UNDEFINED/store")
    assert issubclass(UserError, ValueError)


def test_short_hash_is_stable_and_order_independent() -> None:
    value = {"b": [1, 2], "a": {"y": 1, "x": "s"}}
    reordered = {"a": {"x": "s", "y": 1}, "b": [1, 2]}
    expected = hashlib.sha256(b'{"a": {"x": "s", "y": 1}, "b": [1, 2]}').hexdigest()
    assert short_hash(value) == short_hash(reordered) == expected[:10] == "bd61749e7b"
    assert short_hash(value, length=16) == expected[:16]
    assert short_hash({"b": [2, 1], "a": {"y": 1, "x": "s"}}) != short_hash(value)  # list order matters


def test_dot_dict() -> None:
    d = DotDict(a=1)
    d.b = 2
    assert (d.a, d["b"]) == (1, 2)
    with pytest.raises(AttributeError, match="c"):
        _ = d.c


def test_flat_objects_cut_as_awkward_does_and_give_jagged_masks() -> None:
    eta = np.array([2.3, 0.5, -2.3, 1.0, 2.2], dtype=np.float32)  # float32(2.3) is not below 2.3 in single precision
    jets = ak.unflatten(ak.zip({"eta": eta, "jetId": np.array([6, 2, 6, 0, 6], dtype=np.uint8)}), [2, 0, 3])
    flat = FlatObjects(jets)
    cut = (np.abs(flat.eta) < 2.3) & ((flat["jetId"] & 2) != 0)
    assert flat.eta.dtype == np.float32
    assert ak.to_list(flat.jagged(cut)) == ak.to_list((abs(jets.eta) < 2.3) & ((jets.jetId & 2) != 0))
    selected = flat.selected(cut)
    assert selected.counts.tolist() == [1, 0, 1]
    assert selected.eta.tolist() == [0.5, 2.200000047683716]
    assert ak.to_list(selected.jagged(selected.eta > 1.0)) == [[False], [], [True]]
    with pytest.raises(AttributeError, match="no field 'phi'; they have: eta, jetId"):
        _ = flat.phi
