"""Tests of the column-function registry and of the analysis' calibrators, selector and producers.

The analysis functions run on small hand-made awkward arrays whose expected outputs are computed by hand.
"""

from __future__ import annotations

import math
from typing import Any

import awkward as ak
import numpy as np
import order as od
import pytest

from analysis_template.calibration import default as calibration
from analysis_template.config.analysis import analysis_template
from analysis_template.production import default as production
from analysis_template.selection import default as selection
from cf.columnar_util import EMPTY_FLOAT, Route, set_ak_column
from cf.external import load_correction
from cf.functions import (
    ColumnFunction,
    ConfigColumns,
    Registry,
    SelectionResult,
    UnknownNameError,
    apply_functions,
    calibrators,
    producers,
    selectors,
)
from cf.util import UserError
from tests.conftest import correction_bundle

# --------------------------------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------------------------------


def _registry(kind: str) -> Registry:
    """A registry of its own, for a base class of its own, so that tests do not touch the analysis' functions."""
    base = type(f"Test{kind.title()}", (ColumnFunction,), {"kind": kind})
    return Registry(base)


def _from_module(module: str, name: str = "func") -> Any:
    """A column function body defined (as far as the registry can tell) in ``module``."""

    def func(self: ColumnFunction, events: ak.Array, **kwargs: Any) -> ak.Array:
        return events

    func.__module__ = module
    func.__name__ = name
    return func


def test_register_with_and_without_arguments() -> None:
    registry = _registry("producer")
    plain = registry.decorator(_from_module("mod_a", "plain"))
    named = registry.decorator(name="other", uses={"Jet.pt"}, produces={"ht"}, shifts={"jec_up"}, mc_uses={"w"})(
        _from_module("mod_a", "ignored"),
    )
    assert issubclass(plain, ColumnFunction)
    assert (plain.cls_name, plain.kind, plain.uses, plain.produces) == ("plain", "producer", set(), set())
    assert plain.__module__ == "mod_a"
    assert named.cls_name == "other"
    assert (named.uses, named.produces, named.shifts) == ({"Jet.pt"}, {"ht"}, {"jec_up"})
    assert registry.names() == ["other", "plain"]
    assert "other" in registry
    assert "ignored" not in registry
    assert registry.get("other") is named
    assert registry.base.get_cls("other") is named
    assert registry.base.has_cls("plain")
    assert not registry.base.has_cls("nope")
    assert registry.base.get_cls("nope", silent=True) is None


def test_unknown_name_lists_the_registered_names() -> None:
    registry = _registry("selector")
    with pytest.raises(UnknownNameError, match=r"unknown selector 'x', available: \(none\)"):
        registry.get("x")
    registry.decorator(_from_module("m", "b_sel"))
    registry.decorator(_from_module("m", "a_sel"))
    with pytest.raises(UnknownNameError, match=r"^unknown selector 'nope', available: a_sel, b_sel$"):
        registry.get("nope")
    # a user error: law runs report it in one line
    assert issubclass(UnknownNameError, UserError)


def test_duplicate_name_from_another_module_is_rejected_naming_both() -> None:
    registry = _registry("calibrator")
    first = registry.decorator(_from_module("pkg.first_module", "jec"))
    with pytest.raises(ValueError, match=r"calibrator 'jec' is defined twice: in pkg\.first_module and pkg\.second"):
        registry.decorator(_from_module("pkg.second", "jec"))
    assert registry.get("jec") is first
    # re-registering from the same module (a module reload) replaces the function
    again = registry.decorator(_from_module("pkg.first_module", "jec"))
    assert registry.get("jec") is again


def test_mc_uses_only_for_simulation() -> None:
    registry = _registry("producer")
    func = registry.decorator(uses={"Jet.pt"}, mc_uses={"genWeight"})(_from_module("m", "weights"))
    assert func().column_origins(is_data=True).keys() == {"Jet.pt"}
    assert func().used_columns == {"Jet.pt", "genWeight"}  # no dataset: simulation


def test_dependencies_and_config_columns_resolve_per_config() -> None:
    registry = _registry("producer")
    inner = registry.decorator(uses={"Jet.pt"}, mc_uses={"genWeight"}, produces={"ht"})(_from_module("m", "inner"))
    from_config = ConfigColumns("objects", lambda objects: {f"Jet.{objects.btag.column}"})
    outer = registry.decorator(uses={inner, from_config}, produces={inner, "n_btag"})(_from_module("m", "outer"))
    config_2017 = analysis_template.get_config("run2_2017_nano_uhh_v11_limited")
    config_2024 = analysis_template.get_config("run3_2024_nano_v15_limited")
    data = outer(config_inst=config_2017, dataset_inst=config_2017.get_dataset("data_mu_b"))
    assert data.used_columns == {"Jet.pt", "Jet.btagDeepFlavB"}
    assert outer(config_inst=config_2024).column_origins(is_data=True).keys() == {"Jet.pt", "Jet.btagUParTAK4B"}
    # a dependency brings its mc_uses for simulation only
    simulation = outer(config_inst=config_2017, dataset_inst=config_2017.get_dataset("tt_sl_powheg"))
    assert simulation.used_columns == {"Jet.pt", "Jet.btagDeepFlavB", "genWeight"}
    assert simulation.produced_columns == {"ht", "n_btag"}
    assert isinstance(simulation[inner], inner)
    assert simulation[inner].config_inst is config_2017
    assert data.column_origins() == {
        "Jet.btagDeepFlavB": "config.x.objects of config 'run2_2017_nano_uhh_v11_limited'",
        "Jet.pt": "'uses' of producer 'inner'",
    }


def test_init_hook_extends_uses_per_config_and_dependencies_compose() -> None:
    """The columnflow way: an init hook adds columns from self.config_inst; a producer calls another one."""
    registry = _registry("producer")

    @registry.decorator(uses={"Jet.pt"}, produces={"n_jet"})
    def counts(self: ColumnFunction, events: ak.Array, **kwargs: Any) -> ak.Array:
        return set_ak_column(events, "n_jet", ak.num(events.Jet.pt, axis=1))

    @registry.decorator(uses={counts}, produces={counts, "n_btag"})
    def btags(self: ColumnFunction, events: ak.Array, **kwargs: Any) -> ak.Array:
        events = self[counts](events, **kwargs)
        btag = self.config_inst.x.objects.btag
        return set_ak_column(events, "n_btag", ak.sum(events.Jet[btag.column] > btag.medium, axis=1))

    @btags.init
    def btags_init(self: ColumnFunction) -> None:
        self.uses.add(f"Jet.{self.config_inst.x.objects.btag.column}")

    config = analysis_template.get_config("run3_2024_nano_v15_limited")
    inst = btags(config_inst=config)
    assert inst.used_columns == {"Jet.pt", "Jet.btagUParTAK4B"}
    assert inst.produced_columns == {"n_jet", "n_btag"}
    assert btags.uses == {counts}  # the class declaration is untouched
    events = ak.Array({"Jet": [[{"pt": 30.0, "btagUParTAK4B": 0.9}, {"pt": 20.0, "btagUParTAK4B": 0.01}], []]})
    result = inst(events)
    assert ak.to_list(result.n_jet) == [2, 0]
    assert ak.to_list(result.n_btag) == [1, 0]
    with pytest.raises(KeyError, match="is not a dependency"):
        inst[registry.decorator(_from_module("m", "unrelated"))]


def test_mc_only_dependencies_are_skipped_for_data() -> None:
    registry = _registry("producer")
    weights = registry.decorator(produces={"w"}, mc_only=True)(_from_module("m", "weights_mc"))
    outer = registry.decorator(uses={weights}, produces={weights})(_from_module("m", "outer_mc"))
    config = analysis_template.get_config(1)
    assert weights in outer(config_inst=config, dataset_inst=config.get_dataset("tt_sl_powheg")).deps
    data = outer(config_inst=config, dataset_inst=config.get_dataset("data_mu_b"))
    assert data.deps == {}
    assert data.produced_columns == set()


def test_derive_makes_a_registered_variant() -> None:
    registry = _registry("producer")
    base = registry.decorator(uses={"Jet.pt"}, produces={"x"}, threshold=1.0)(_from_module("m", "base_func"))
    variant = base.derive("variant", cls_dict={"threshold": 2.0})
    assert registry.get("variant") is variant
    assert issubclass(variant, base)
    assert (base.threshold, variant.threshold) == (1.0, 2.0)
    assert variant.uses == {"Jet.pt"}


def test_requires_and_setup_hooks_run_once_for_the_function_and_its_dependencies() -> None:
    registry = _registry("producer")
    calls: list[str] = []
    inner = registry.decorator(produces={"a"})(_from_module("m", "inner_hooks"))
    outer = registry.decorator(uses={inner}, produces={inner})(_from_module("m", "outer_hooks"))

    @inner.requires
    def inner_requires(self: ColumnFunction, task: Any, reqs: dict[str, Any], **kwargs: Any) -> None:
        reqs["stats"] = f"stats of {task}"

    @inner.setup
    def inner_setup(
        self: ColumnFunction,
        task: Any,
        reqs: dict[str, Any],
        inputs: dict[str, Any],
        reader_targets: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        calls.append("setup")
        self.loaded = inputs["stats"]

    inst = outer()
    assert inst.run_requires("task", {}) == {"stats": "stats of task"}
    inst.run_setup("task", {}, {"stats": 42}, {})
    assert calls == ["setup"]
    assert inst[inner].loaded == 42


def test_config_columns_without_the_entry_is_a_clear_error() -> None:
    columns = ConfigColumns("not_there", lambda value: {value})
    config = od.Config(name="bare", id=99)
    with pytest.raises(UserError, match=r"^config 'bare' has no entry x\.not_there, .* set config\.x\.not_there"):
        columns.resolve(config)


def test_apply_functions_in_order() -> None:
    registry = _registry("producer")

    @registry.decorator(produces={"x"})
    def first(self: ColumnFunction, events: ak.Array, **kwargs: Any) -> ak.Array:
        return ak.with_field(events, events.x * 10 if "x" in ak.fields(events) else np.ones(len(events)), "x")

    @registry.decorator(produces={"x"})
    def second(self: ColumnFunction, events: ak.Array, **kwargs: Any) -> ak.Array:
        return ak.with_field(events, events.x + 1, "x")

    events = ak.Array({"a": [1, 2]})
    assert ak.to_list(apply_functions([first(), second()], events).x) == [2.0, 2.0]
    assert ak.to_list(apply_functions([second(), first()], ak.with_field(events, [0, 1], "x")).x) == [10, 20]
    assert apply_functions([], events) is events


def test_analysis_functions_are_registered() -> None:
    config = analysis_template.get_config(1)
    assert {"jec", "skip_jecunc"} <= set(calibrators.names())
    assert "default" in selectors.names()
    assert {"default", "features", "category_ids", "normalization_weight"} <= set(producers.names())
    assert calibrators.get("jec")(config_inst=config).all_shifts == {"jec_up", "jec_down"}
    assert calibrators.get("skip_jecunc")(config_inst=config).all_shifts == set()
    default = producers.get("default")(config_inst=config, dataset_inst=config.get_dataset("tt_sl_powheg"))
    assert "genWeight" in default.used_columns
    assert default.produced_columns == {
        *("n_jet", "n_btag", "n_electron", "n_muon", "n_tau", "ht", "m_bb", "m_ll"),
        *("category_ids", "normalization_weight"),
        *("pu_weight", "pu_weight_up", "pu_weight_down", "muon_weight", "muon_weight_up", "muon_weight_down"),
    }
    assert "Pileup.nTrueInt" in default.used_columns


# --------------------------------------------------------------------------------------------------------------------
# analysis functions
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config() -> od.Config:
    return analysis_template.get_config("run2_2017_nano_uhh_v11_limited")


def _run(
    cls: type[ColumnFunction],
    events: ak.Array,
    config: od.Config,
    dataset: str,
    shift: str = "nominal",
    selection_stats: dict[str, float] | None = None,
) -> Any:
    """Call the function ``cls`` on ``events``, instantiated for the dataset and shift as a task does.

    Its setup hooks run with the config's bundled external files; ``selection_stats`` stands in for what the
    normalization weight's setup hook loads in a task.
    """
    inst = cls(config_inst=config, dataset_inst=config.get_dataset(dataset), shift=shift)
    inst.run_setup(None, {}, {"external_files": correction_bundle(config.name)}, {})
    if selection_stats is not None:
        for function in inst.walk():
            function.selection_stats = selection_stats  # type: ignore[attr-defined]
    return inst(events)


@pytest.fixture
def jet_events() -> ak.Array:
    """Two events: three jets and none; MET as a flat record."""
    jets = [
        [
            {"pt": 60.0, "eta": 2.0, "phi": 0.0, "mass": 10.0},
            {"pt": 30.0, "eta": -0.5, "phi": 1.5, "mass": 5.0},
            {"pt": 200.0, "eta": 0.0, "phi": -2.0, "mass": 20.0},
        ],
        [],
    ]
    jet_array = ak.Array(jets)
    jet_array = ak.zip({f: ak.values_astype(jet_array[f], np.float32) for f in ak.fields(jet_array)})
    met = ak.zip({"pt": np.array([50.0, 20.0], np.float32), "phi": np.array([3.0, -1.0], np.float32)})
    return ak.Array({"Jet": jet_array, "MET": met})


def _nominal_scale(pt: float, eta: float) -> float:
    return 1.0 + 0.03 * math.exp(-pt / 60.0) + 0.005 * abs(eta)


def test_skip_jecunc_scales_jets_and_keeps_raw_values(config: od.Config, jet_events: ak.Array) -> None:
    result = _run(calibration.skip_jecunc, jet_events, config, "tt_sl_powheg")
    expected_scales = [_nominal_scale(60.0, 2.0), _nominal_scale(30.0, 0.5), _nominal_scale(200.0, 0.0)]
    assert ak.to_list(result.Jet.pt_raw) == [[60.0, 30.0, 200.0], []]
    assert ak.to_list(result.Jet.mass_raw) == [[10.0, 5.0, 20.0], []]
    pts = ak.to_list(result.Jet.pt[0])
    assert pts == pytest.approx([raw * s for raw, s in zip([60.0, 30.0, 200.0], expected_scales, strict=True)])
    assert pts[0] == pytest.approx(60.0 * (1.0 + 0.03 / math.e + 0.01), rel=1e-6)
    assert ak.to_list(result.Jet.mass[0]) == pytest.approx(
        [10.0 * expected_scales[0], 5.0 * expected_scales[1], 20.0 * expected_scales[2]]
    )
    assert result.Jet.pt.type.content.content.primitive == "float32"
    # MET untouched by this calibrator, and the number of jets unchanged
    assert ak.to_list(result.MET.pt) == [50.0, 20.0]
    assert ak.to_list(ak.num(result.Jet, axis=1)) == [3, 0]


def test_calibration_is_idempotent_thanks_to_raw_values(config: od.Config, jet_events: ak.Array) -> None:
    once = _run(calibration.skip_jecunc, jet_events, config, "tt_sl_powheg")
    twice = _run(calibration.skip_jecunc, once, config, "tt_sl_powheg")
    assert ak.to_list(twice.Jet.pt) == ak.to_list(once.Jet.pt)
    assert ak.to_list(twice.Jet.pt_raw) == [[60.0, 30.0, 200.0], []]


def test_jec_shifts_order_for_mc(config: od.Config, jet_events: ak.Array) -> None:
    calibrated = {
        shift: _run(calibration.jec, jet_events, config, "tt_sl_powheg", shift)
        for shift in ("nominal", "jec_up", "jec_down")
    }
    up, nominal, down = (np.asarray(ak.flatten(calibrated[s].Jet.pt)) for s in ("jec_up", "nominal", "jec_down"))
    assert np.all(up > nominal)
    assert np.all(nominal > down)
    # the nominal jec equals skip_jecunc on the jets
    skip = _run(calibration.skip_jecunc, jet_events, config, "tt_sl_powheg")
    assert nominal.tolist() == pytest.approx(ak.to_list(ak.flatten(skip.Jet.pt)))
    # the relative up shift is the uncertainty at the calibrated pt: 2% + 1.5% |eta| / 2.5 + 1 / pt
    uncertainty = 0.02 + 0.015 * 2.0 / 2.5 + 1.0 / nominal[0]
    assert up[0] == pytest.approx(nominal[0] * (1 + uncertainty), rel=1e-6)
    assert down[0] == pytest.approx(nominal[0] * (1 - uncertainty), rel=1e-6)
    for result in calibrated.values():
        assert ak.to_list(result.Jet.pt_raw) == [[60.0, 30.0, 200.0], []]


def test_jec_shifts_do_not_change_data(config: od.Config, jet_events: ak.Array) -> None:
    results = [_run(calibration.jec, jet_events, config, "data_mu_b", s) for s in ("nominal", "jec_up", "jec_down")]
    assert ak.to_list(results[1].Jet.pt) == ak.to_list(results[0].Jet.pt) == ak.to_list(results[2].Jet.pt)
    assert ak.to_list(results[1].MET.pt) == ak.to_list(results[0].MET.pt)
    assert ak.to_list(results[0].Jet.pt_raw) == [[60.0, 30.0, 200.0], []]


def test_jec_propagates_jet_changes_to_met(config: od.Config, jet_events: ak.Array) -> None:
    result = _run(calibration.jec, jet_events, config, "tt_sl_powheg", "jec_up")
    delta = np.asarray(result.Jet.pt[0]) - np.asarray(jet_events.Jet.pt[0])
    phi = np.asarray(jet_events.Jet.phi[0])
    met_x = 50.0 * math.cos(3.0) - np.sum(delta * np.cos(phi))
    met_y = 50.0 * math.sin(3.0) - np.sum(delta * np.sin(phi))
    assert float(result.MET.pt[0]) == pytest.approx(math.hypot(met_x, met_y), rel=1e-5)
    assert float(result.MET.phi[0]) == pytest.approx(math.atan2(met_y, met_x), rel=1e-5)
    # no jets, no change
    assert float(result.MET.pt[1]) == pytest.approx(20.0)
    assert float(result.MET.phi[1]) == pytest.approx(-1.0)


def _jagged(rows: list[list[dict[str, Any]]], dtypes: dict[str, Any]) -> ak.Array:
    array = ak.Array(rows)
    if not ak.fields(array):  # all rows empty: build the fields explicitly
        counts = np.zeros(len(rows), dtype=np.int64)
        return ak.unflatten(ak.zip({f: np.zeros(0, d) for f, d in dtypes.items()}), counts)
    return ak.zip({f: ak.values_astype(array[f], d) for f, d in dtypes.items()})


# jets sit at phi = 0, leptons and taus at phi = pi: far apart, so that no jet overlaps a lepton or tau
def _j(pt: float, eta: float, jet_id: int, phi: float = 0.0) -> dict[str, Any]:
    return {"pt": pt, "eta": eta, "phi": phi, "jetId": jet_id}


def _e(pt: float, eta: float, wp90: bool, phi: float = math.pi) -> dict[str, Any]:
    return {"pt": pt, "eta": eta, "phi": phi, "mvaFall17V2Iso_WP90": wp90}


def _m(pt: float, eta: float, tight: bool, iso: float, phi: float = math.pi) -> dict[str, Any]:
    return {"pt": pt, "eta": eta, "phi": phi, "tightId": tight, "pfRelIso04_all": iso}


def _t(pt: float, eta: float, vs_jet: int, vs_e: int, vs_mu: int, phi: float = math.pi) -> dict[str, Any]:
    return {
        "pt": pt,
        "eta": eta,
        "phi": phi,
        "idDeepTau2017v2p1VSjet": vs_jet,
        "idDeepTau2017v2p1VSe": vs_e,
        "idDeepTau2017v2p1VSmu": vs_mu,
    }


@pytest.fixture
def selection_events() -> ak.Array:
    """Six events probing each cut at its boundary."""
    good_jets = [_j(30.0, 0.0, 6), _j(26.0, 2.3, 2)]
    jets = [
        # pass, pass, pt not > 25, |eta| not < 2.4, jetId without the tight bit 2
        [*good_jets, _j(25.0, 0.0, 6), _j(40.0, 2.4, 6), _j(40.0, 0.0, 4)],
        good_jets,
        good_jets,
        good_jets[:1],
        [*good_jets, _j(50.0, 1.0, 6)],
        [],
    ]
    electrons = [
        [_e(20.0, 1.0, True)],
        [_e(20.0, 2.5, True), _e(15.0, 0.0, True), _e(30.0, 0.0, False)],
        [],
        [],
        [],
        [],
    ]
    muons = [
        [],
        [_m(16.0, 0.0, True, 0.1)],
        [_m(16.0, 0.0, True, 0.15), _m(16.0, 2.4, True, 0.0), _m(20.0, 0.0, False, 0.0)],
        [_m(16.0, 0.0, True, 0.1)],
        [],
        [],
    ]
    taus = [
        [],
        [],
        # pass; then each failing one requirement: vs jet (no bit 16), vs e (no bit 2), vs mu (no bit 1), pt, eta
        [
            _t(25.0, 2.2, 31, 3, 1),
            _t(25.0, 0.0, 15, 3, 1),
            _t(25.0, 0.0, 31, 1, 1),
            _t(25.0, 0.0, 31, 3, 0),
            _t(20.0, 0.0, 31, 3, 1),
            _t(25.0, 2.3, 31, 3, 1),
        ],
        [],
        [],
        [],
    ]
    f4, u8 = np.float32, np.uint8
    return ak.Array(
        {
            "Jet": _jagged(jets, {"pt": f4, "eta": f4, "phi": f4, "jetId": u8}),
            "Electron": _jagged(electrons, {"pt": f4, "eta": f4, "phi": f4, "mvaFall17V2Iso_WP90": bool}),
            "Muon": _jagged(muons, {"pt": f4, "eta": f4, "phi": f4, "tightId": bool, "pfRelIso04_all": f4}),
            "Tau": _jagged(
                taus,
                {
                    "pt": f4,
                    "eta": f4,
                    "phi": f4,
                    "idDeepTau2017v2p1VSjet": u8,
                    "idDeepTau2017v2p1VSe": u8,
                    "idDeepTau2017v2p1VSmu": u8,
                },
            ),
        },
    )


def test_default_selector_masks(config: od.Config, selection_events: ak.Array) -> None:
    events, result = _run(selectors.get("default"), selection_events, config, "tt_sl_powheg")
    assert events is selection_events
    assert isinstance(result, SelectionResult)
    assert set(result.objects) == {"Jet", "Electron", "Muon", "Tau"}
    assert ak.to_list(result.objects["Jet"]) == [
        [True, True, False, False, False],
        [True, True],
        [True, True],
        [True],
        [True, True, True],
        [],
    ]
    assert ak.to_list(result.objects["Electron"]) == [[True], [False, False, False], [], [], [], []]
    assert ak.to_list(result.objects["Muon"]) == [[], [True], [False, False, False], [True], [], []]
    assert ak.to_list(result.objects["Tau"][2]) == [True, False, False, False, False, False]
    # >= 2 jets and >= 1 lepton or tau
    assert ak.to_list(result.event) == [True, True, True, False, False, False]


def test_default_selector_needs_only_its_declared_columns(config: od.Config, selection_events: ak.Array) -> None:
    func = selectors.get("default")
    with_extra = set_ak_column(selection_events, "Jet.unrelated", selection_events.Jet.pt)
    used = [Route(column).fields for column in func(config_inst=config).used_columns]
    restricted = ak.Array(
        {c: with_extra[c][sorted(f for head, f in used if head == c)] for c in {head for head, _ in used}},
    )
    assert sorted(ak.fields(restricted.Jet)) == ["eta", "jetId", "phi", "pt"]
    _, full = _run(func, with_extra, config, "tt_sl_powheg")
    _, reduced = _run(func, restricted, config, "tt_sl_powheg")
    assert ak.to_list(reduced.event) == ak.to_list(full.event)
    assert ak.to_list(reduced.objects["Jet"]) == ak.to_list(full.objects["Jet"])


def test_default_selector_drops_jets_overlapping_a_selected_lepton(config: od.Config) -> None:
    f4 = np.float32
    jets = [[_j(40.0, 0.0, 6), _j(40.0, 1.0, 6, phi=2.0), _j(40.0, -1.0, 6, phi=-2.0)]]
    events = ak.Array(
        {
            "Jet": _jagged(jets, {"pt": f4, "eta": f4, "phi": f4, "jetId": np.uint8}),
            # a selected muon at dR = 0.1 from the first jet, and a failing (non-isolated) one on the second
            "Muon": _jagged(
                [[_m(30.0, 0.1, True, 0.0, phi=0.0), _m(30.0, 1.0, True, 0.5, phi=2.0)]],
                {"pt": f4, "eta": f4, "phi": f4, "tightId": bool, "pfRelIso04_all": f4},
            ),
            "Electron": _jagged([[]], {"pt": f4, "eta": f4, "phi": f4, "mvaFall17V2Iso_WP90": bool}),
            "Tau": _jagged(
                [[]],
                {
                    "pt": f4,
                    "eta": f4,
                    "phi": f4,
                    **dict.fromkeys(
                        ("idDeepTau2017v2p1VSjet", "idDeepTau2017v2p1VSe", "idDeepTau2017v2p1VSmu"), np.uint8
                    ),
                },
            ),
        },
    )
    _, result = _run(selectors.get("default"), events, config, "tt_sl_powheg")
    assert ak.to_list(result.objects["Muon"]) == [[True, False]]
    assert ak.to_list(result.objects["Jet"]) == [[False, True, True]]
    assert ak.to_list(result.event) == [True]


def _p4(pt: float, eta: float, phi: float, mass: float = 0.0, **extra: Any) -> dict[str, Any]:
    return {"pt": pt, "eta": eta, "phi": phi, "mass": mass, **extra}


@pytest.fixture
def reduced_events() -> ak.Array:
    """Five reduced events with hand-computable features (see the test for the expected values)."""
    jets = [
        # b-ordered: jets 0 and 2, back to back with pt 50 -> m_bb = 100
        [
            _p4(50.0, 0.0, 0.0, btagDeepFlavB=0.9),
            _p4(40.0, 0.0, 1.0, btagDeepFlavB=0.1),
            _p4(50.0, 0.0, math.pi, btagDeepFlavB=0.8),
        ],
        # four jets, the two most b-like at a right angle: m_bb = sqrt(2 * 30 * 30)
        [
            _p4(30.0, 0.0, 0.0, btagDeepFlavB=0.95),
            _p4(30.0, 0.0, math.pi / 2, btagDeepFlavB=0.2),
            _p4(30.0, 1.0, 2.0, btagDeepFlavB=0.01),
            _p4(30.0, -1.0, -2.0, btagDeepFlavB=0.02),
        ],
        [_p4(35.0, 0.0, 0.0, btagDeepFlavB=0.5)],
        [],
        [],
    ]
    electrons = [
        # opposite-sign ee at m = 90
        [_p4(45.0, 0.0, 0.0, charge=-1), _p4(45.0, 0.0, math.pi, charge=1)],
        [],
        [],
        [],
        [_p4(30.0, 0.0, 1.0, charge=1)],
    ]
    muons = [
        [],
        [_p4(40.0, 0.0, 0.0, charge=1)],
        # same sign: no pair
        [_p4(40.0, 0.0, 0.0, charge=-1), _p4(40.0, 0.0, math.pi, charge=-1)],
        [],
        # more muons than electrons: the opposite-sign muon pair at m = 80
        [_p4(40.0, 0.0, 0.0, charge=-1), _p4(40.0, 0.0, math.pi, charge=1)],
    ]
    taus = [[], [{"pt": 30.0}], [{"pt": 30.0}, {"pt": 25.0}], [], []]
    f4, i4 = np.float32, np.int32
    kin = {"pt": f4, "eta": f4, "phi": f4, "mass": f4}
    return ak.Array(
        {
            "Jet": _jagged(jets, {**kin, "btagDeepFlavB": f4}),
            "Electron": _jagged(electrons, {**kin, "charge": i4}),
            "Muon": _jagged(muons, {**kin, "charge": i4}),
            "Tau": _jagged(taus, {"pt": f4}),
            "genWeight": np.array([1.0, 1.0, -1.0, 1.0, 2.0], dtype=np.float32),
            "Pileup": ak.zip({"nTrueInt": np.array([20.0, 31.0, 45.0, 31.0, 150.0], dtype=np.float32)}),
        },
    )


def test_default_producer_columns(config: od.Config, reduced_events: ak.Array) -> None:
    stats = {"sum_mc_weight": 200.0, "n_events": 210}
    result = _run(producers.get("default"), reduced_events, config, "tt_sl_powheg", selection_stats=stats)
    assert ak.to_list(result.n_jet) == [3, 4, 1, 0, 0]
    assert ak.to_list(result.n_btag) == [2, 1, 1, 0, 0]
    assert ak.to_list(result.n_electron) == [2, 0, 0, 0, 1]
    assert ak.to_list(result.n_muon) == [0, 1, 2, 0, 2]
    assert ak.to_list(result.n_tau) == [0, 1, 2, 0, 0]
    assert ak.to_list(result.ht) == pytest.approx([140.0, 120.0, 35.0, 0.0, 0.0])
    assert ak.to_list(result.m_bb) == pytest.approx([100.0, math.sqrt(1800.0), EMPTY_FLOAT, EMPTY_FLOAT, EMPTY_FLOAT])
    assert ak.to_list(result.m_ll) == pytest.approx([90.0, EMPTY_FLOAT, EMPTY_FLOAT, EMPTY_FLOAT, 80.0], rel=1e-5)
    for column in ("n_jet", "n_btag", "n_electron", "n_muon", "n_tau"):
        assert result[column].type.content.primitive == "int32"
    for column in ("ht", "m_bb", "m_ll", "normalization_weight"):
        assert result[column].type.content.primitive == "float32"
    # ids: incl 1, sr 2, cr_tt 3, cr_dy 4 (|m_ll - m_Z| < 15 holds for 90 and 80)
    ids = {c.name: c.id for c in config.categories}
    assert ids == {"incl": 1, "sr": 2, "cr_tt": 3, "cr_dy": 4}
    assert ak.to_list(result.category_ids) == [[1, 4], [1, 2, 3], [1], [1], [1, 4]]
    # sigma * L * genWeight / sum of generator weights before the selection
    xsec = config.get_process("tt_sl").get_xsec(13).nominal
    lumi = config.x.luminosity.nominal
    expected = [xsec * lumi * w / 200.0 for w in (1.0, 1.0, -1.0, 1.0, 2.0)]
    assert ak.to_list(result.normalization_weight) == pytest.approx(expected, rel=1e-6)
    assert expected[0] == pytest.approx(366.4 * 41_480.0 / 200.0, rel=1e-3)
    # the weights of the correction files: pileup by the true interactions, muon ID per muon (product)
    pileup = load_correction(correction_bundle(config.name), "pileup", "Template_goldenJSON")
    n_true = np.array([20.0, 31.0, 45.0, 31.0, 150.0])
    for suffix, key in (("", "nominal"), ("_up", "up"), ("_down", "down")):
        assert ak.to_list(result[f"pu_weight{suffix}"]) == pytest.approx(pileup.evaluate(n_true, key), rel=1e-6)
    assert float(result.pu_weight[1]) == pytest.approx(1.0, abs=0.05)
    muon_sf = load_correction(correction_bundle(config.name), "muon_sf", "NUM_TightID_DEN_TrackerMuons")
    for suffix, key in (("", "nominal"), ("_up", "systup"), ("_down", "systdown")):
        sf = muon_sf.evaluate(0.0, 40.0, key)
        assert ak.to_list(result[f"muon_weight{suffix}"]) == pytest.approx([1.0, sf, sf * sf, 1.0, sf * sf], rel=1e-6)
    assert float(result.muon_weight_down[1]) < float(result.muon_weight[1]) < float(result.muon_weight_up[1]) < 1.0


def test_normalization_weight_is_one_for_data(config: od.Config, reduced_events: ak.Array) -> None:
    data_events = ak.without_field(ak.without_field(reduced_events, "genWeight"), "Pileup")
    result = _run(producers.get("default"), data_events, config, "data_mu_b")
    assert ak.to_list(result.normalization_weight) == [1.0] * 5
    assert ak.to_list(result.pu_weight_up) == ak.to_list(result.muon_weight) == [1.0] * 5
    data = config.get_dataset("data_mu_b")
    default = producers.get("default")(config_inst=config, dataset_inst=data)
    assert default.used_columns == production.features(config_inst=config, dataset_inst=data).used_columns
    # data needs no selection statistics
    assert default.run_requires("task", {}) == {}


def test_normalization_weight_needs_selection_stats(config: od.Config, reduced_events: ak.Array) -> None:
    func = producers.get("normalization_weight")
    with pytest.raises(UserError, match=r"dataset 'tt_sl_powheg' has no events with generator weights"):
        _run(func, reduced_events, config, "tt_sl_powheg")
    with pytest.raises(UserError, match="normalization weight is undefined"):
        _run(func, reduced_events, config, "tt_sl_powheg", selection_stats={"sum_mc_weight": 0.0})


def test_producer_functions_are_consistent_with_the_module(reduced_events: ak.Array) -> None:
    assert producers.get("default").uses == {
        production.features,
        production.normalization_weight,
        production.pu_weight,
        production.muon_weight,
    }
    assert selectors.get("default") is selection.default
    assert calibrators.get("jec") is calibration.jec


def test_trigger_requirement_follows_the_config_and_the_dataset() -> None:
    """An event must fire one of the config's triggers; a dataset without trigger bits is selected without them."""
    config = analysis_template.get_config("run2_2018_nano_v6_limited")
    definitions = config.x.objects
    names = [name.removeprefix("HLT_") for name in definitions.triggers]
    bits = {name: [False, False, False] for name in names}
    bits[names[0]] = [True, False, False]
    bits[names[2]] = [False, True, False]
    events = ak.Array({"HLT": ak.zip(bits)})
    assert selection.trigger_mask(events, definitions, config.get_dataset("tt_sl_powheg")).tolist() == [
        True, True, False,
    ]  # fmt: skip
    without_bits = od.Dataset(name="skim", id=999, aux={"absent_collections": ["HLT"]})
    assert selection.trigger_mask(events, definitions, without_bits).tolist() == [True, True, True]
    # the user guide's config lists no triggers: every event passes
    guide = analysis_template.get_config("run2_2017_nano_uhh_v11_limited")
    assert selection.trigger_mask(events, guide.x.objects, guide.get_dataset("tt_sl_powheg")).all()
    assert {f"HLT.{name}" for name in names} <= selectors.get("default")(config_inst=config).used_columns


def test_columnflow_import_paths_name_the_same_objects() -> None:
    """``from cf.production import Producer, producer`` (columnflow's layout) gives the cf.functions objects."""
    import cf.calibration
    import cf.functions
    import cf.production
    import cf.selection

    assert (cf.calibration.Calibrator, cf.calibration.calibrator) == (cf.functions.Calibrator, calibrators.decorator)
    assert (cf.selection.Selector, cf.selection.selector) == (cf.functions.Selector, selectors.decorator)
    assert cf.selection.SelectionResult is SelectionResult
    assert (cf.production.Producer, cf.production.producer) == (cf.functions.Producer, producers.decorator)


def test_setup_hooks_add_reader_targets_as_row_aligned_sources(tmp_path: Any) -> None:
    """A setup hook's reader_targets become further sources of the task's chunk loop (columnflow's mechanism)."""
    import law
    import pyarrow as pa
    import pyarrow.parquet as pq

    from cf.io import ParquetSource
    from cf.tasks.calibration import CalibrateEvents

    path = tmp_path / "extra.parquet"
    pq.write_table(pa.table({"extra": [1.0, 2.0]}), path)
    registry = _registry("calibrator")
    func = registry.decorator(uses={"extra"})(_from_module("m", "reads_extra"))

    @func.setup
    def func_setup(
        self: ColumnFunction,
        task: Any,
        reqs: dict[str, Any],
        inputs: dict[str, Any],
        reader_targets: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        reader_targets["extra"] = law.LocalFileTarget(str(path))

    task = CalibrateEvents(version="v1", branch=0)
    sources = task.setup_functions([func(config_inst=task.config_inst)], {})
    assert [type(source) for source in sources] == [ParquetSource]
    assert sources[0].path == str(path)
    assert sources[0].n_events == 2
