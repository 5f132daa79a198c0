"""The column-function API on the fixture analysis' functions, in process: registries, derivation, dependencies.

Importing the fixture's functions registers them in ``cf``'s registries of this process; their names start with
``fixture_``, so they never clash with another analysis' functions.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np
import pytest

from cf.functions import (
    Calibrator,
    ColumnFunction,
    Producer,
    SelectionResult,
    UnknownNameError,
    calibrators,
    producers,
    selectors,
)
from tests.framework.fixture_analysis import functions
from tests.framework.fixture_analysis.config import DATA_DATASET, LUMINOSITY, SIM_DATASET, SIM_XSEC, fixture_config
from tests.framework.fixture_analysis.samples import make_events


def _instance(cls: type[ColumnFunction], dataset: str = SIM_DATASET, shift: str = "nominal") -> Any:
    return cls(config_inst=fixture_config, dataset_inst=fixture_config.get_dataset(dataset), shift=shift)


@pytest.fixture(scope="module")
def events() -> ak.Array:
    """Fifty simulated events as the chain reads them from a fixture file."""
    return ak.Array(make_events(50, seed=1, is_data=False))


def test_the_decorators_register_the_functions_by_name() -> None:
    assert calibrators.get("fixture_jet_scale") is functions.fixture_jet_scale
    assert selectors.get("fixture_jets") is functions.fixture_jets
    for name in ("fixture_features", "fixture_categories", "fixture_weight", "fixture_default"):
        assert producers.get(name) is getattr(functions, name)
    assert issubclass(functions.fixture_default, Producer)
    assert functions.fixture_jet_scale.__module__ == functions.__name__
    with pytest.raises(
        UnknownNameError, match=r"^unknown producer 'fixture_nope' \(did you mean 'fixture_weight'\?\), available: "
    ):
        producers.get("fixture_nope")


def test_a_derived_function_is_registered_and_keeps_the_declarations(events: ak.Array) -> None:
    derived = functions.fixture_jet_scale_x2
    assert calibrators.get("fixture_jet_scale_x2") is derived
    assert issubclass(derived, functions.fixture_jet_scale)
    assert issubclass(derived, Calibrator)
    assert (derived.uses, derived.produces, derived.shifts) == ({"Jet.pt"}, {"Jet.pt"}, {"jet_up", "jet_down"})
    assert (functions.fixture_jet_scale.factor, derived.factor) == (1.0, 2.0)
    scaled = _instance(derived)(events)
    assert ak.all(scaled.Jet.pt == np.float32(2.0) * events.Jet.pt)


def test_shifts_apply_to_simulation_only(events: ak.Array) -> None:
    up = _instance(functions.fixture_jet_scale, shift="jet_up")(events)
    assert ak.all(up.Jet.pt == events.Jet.pt * np.float32(1.1))
    data = _instance(functions.fixture_jet_scale, dataset=DATA_DATASET, shift="jet_up")(events)
    assert ak.all(data.Jet.pt == events.Jet.pt)
    assert _instance(functions.fixture_jet_scale).all_shifts == {"jet_up", "jet_down"}


def test_dependencies_bring_their_columns_per_dataset() -> None:
    simulation = _instance(functions.fixture_default)
    assert simulation.used_columns == {"Jet.pt", "genWeight"}
    assert simulation.produced_columns == {"n_jet", "ht", "category_ids", "normalization_weight"}
    assert set(simulation.deps) == set(functions.DEPENDENCIES)
    assert [function.cls_name for function in simulation.walk()][-1] == "fixture_default"
    assert _instance(functions.fixture_default, dataset=DATA_DATASET).used_columns == {"Jet.pt"}


def test_the_selector_returns_event_and_object_masks(events: ak.Array) -> None:
    selected, result = _instance(functions.fixture_jets)(events)
    assert selected is events
    assert isinstance(result, SelectionResult)
    assert ak.to_list(result.event) == ak.to_list(ak.sum(result.objects["Jet"], axis=1) >= 1)
    assert ak.all(events.Jet.pt[result.objects["Jet"]] > 20.0)


def test_the_default_producer_runs_its_dependencies(events: ak.Array) -> None:
    default = _instance(functions.fixture_default)
    default[functions.fixture_weight].selection_stats = {"sum_mc_weight": 50.0}
    produced = default(events)
    assert ak.to_list(produced.n_jet) == ak.to_list(ak.num(events.Jet, axis=1))
    assert ak.to_list(produced.category_ids[produced.n_jet < 2]) == [[1]] * int(ak.sum(produced.n_jet < 2))
    expected = SIM_XSEC * LUMINOSITY * ak.to_numpy(events.genWeight) / 50.0
    assert np.allclose(ak.to_numpy(produced.normalization_weight), expected, rtol=1e-6)
