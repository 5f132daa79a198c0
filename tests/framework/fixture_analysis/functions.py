"""The fixture analysis' column functions, written with the framework's API only (``cf.functions``).

* ``fixture_jet_scale`` (calibrator): multiplies the jet pt by the class attribute ``factor``; implements the shifts
  ``jet_up`` / ``jet_down`` (10% up / down, simulation only). ``fixture_jet_scale_x2`` is derived from it with
  ``factor = 2``.
* ``fixture_jets`` (selector): jets with pt > 20 GeV and |eta| < 2.4, events with at least one of them.
* ``fixture_features``, ``fixture_categories``, ``fixture_weight`` (producers) and ``fixture_default``, which runs
  the three as its dependencies. ``fixture_weight`` needs the dataset's merged selection statistics: its
  ``requires`` hook asks for them, its ``setup`` hook loads them.

The names start with ``fixture_`` so that they never clash with an analysis' functions in one test process.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from cf.columnar_util import set_ak_column
from cf.functions import Calibrator, Producer, SelectionResult, Selector, calibrator, producer, selector

__all__ = [
    "fixture_categories",
    "fixture_default",
    "fixture_features",
    "fixture_jet_scale",
    "fixture_jet_scale_x2",
    "fixture_jets",
    "fixture_weight",
]

#: The jet pt factor of the shifts ``jet_up`` / ``jet_down``.
SHIFT_FACTORS = {"jet_up": 1.1, "jet_down": 0.9}


@calibrator(uses={"Jet.pt"}, produces={"Jet.pt"}, shifts=set(SHIFT_FACTORS), factor=1.0)
def fixture_jet_scale(self: Calibrator, events: ak.Array, **kwargs: Any) -> ak.Array:
    """The jet pt times ``factor`` (and times the shift's factor for simulation)."""
    factor = self.factor * (1.0 if self.is_data else SHIFT_FACTORS.get(self.shift, 1.0))
    return set_ak_column(events, "Jet.pt", events.Jet.pt * factor, value_type=np.float32)


fixture_jet_scale_x2 = fixture_jet_scale.derive("fixture_jet_scale_x2", cls_dict={"factor": 2.0})


@selector(uses={"Jet.pt", "Jet.eta"})
def fixture_jets(self: Selector, events: ak.Array, **kwargs: Any) -> tuple[ak.Array, SelectionResult]:
    """Jets with pt > 20 GeV and |eta| < 2.4; events with at least one."""
    jet_mask = (events.Jet.pt > 20.0) & (abs(events.Jet.eta) < 2.4)
    event_mask = ak.sum(jet_mask, axis=1) >= 1
    return events, SelectionResult(event=event_mask, objects={"Jet": jet_mask})


@producer(uses={"Jet.pt"}, produces={"n_jet", "ht"})
def fixture_features(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """The number of jets and their scalar pt sum."""
    events = set_ak_column(events, "n_jet", ak.num(events.Jet, axis=1), value_type=np.int32)
    return set_ak_column(events, "ht", ak.sum(events.Jet.pt, axis=1), value_type=np.float32)


@producer(uses={"Jet.pt"}, produces={"category_ids"})
def fixture_categories(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """The ids of the categories of each event: ``incl`` always, ``two_jets`` with at least two jets."""
    ids = np.array([self.config_inst.get_category(name).id for name in ("incl", "two_jets")], dtype=np.int32)
    n_categories = np.where(ak.to_numpy(ak.num(events.Jet, axis=1)) >= 2, 2, 1)
    all_ids = ak.from_regular(ak.Array(np.tile(ids, (len(events), 1))))
    return set_ak_column(events, "category_ids", all_ids[ak.local_index(all_ids, axis=1) < n_categories])


@producer(mc_uses={"genWeight"}, produces={"normalization_weight"})
def fixture_weight(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """Cross section times luminosity times genWeight over the sum of genWeight before the selection; 1 for data."""
    if self.is_data:
        return set_ak_column(events, "normalization_weight", np.ones(len(events)), value_type=np.float32)
    xsec = self.dataset_inst.processes.get_first().get_xsec(self.config_inst.campaign.ecm).nominal
    weight = xsec * self.config_inst.x.luminosity.nominal * events.genWeight / self.selection_stats["sum_mc_weight"]
    return set_ak_column(events, "normalization_weight", weight, value_type=np.float32)


@fixture_weight.requires
def fixture_weight_requires(self: Producer, task: Any, reqs: dict[str, Any], **kwargs: Any) -> None:
    """The dataset's merged selection statistics (simulation only)."""
    if not self.is_data:
        from cf.tasks.selection import MergeSelectionStats

        reqs["selection_stats"] = MergeSelectionStats.req(task)


@fixture_weight.setup
def fixture_weight_setup(
    self: Producer,
    task: Any,
    reqs: dict[str, Any],
    inputs: dict[str, Any],
    reader_targets: dict[str, Any],
    **kwargs: Any,
) -> None:
    """Load the selection statistics once per task."""
    if "selection_stats" in inputs:
        self.selection_stats = inputs["selection_stats"].load(formatter="json")


DEPENDENCIES = (fixture_features, fixture_categories, fixture_weight)


@producer(uses=set(DEPENDENCIES), produces=set(DEPENDENCIES))
def fixture_default(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """The three producers above, in this order."""
    for dependency in DEPENDENCIES:
        events = self[dependency](events, **kwargs)
    return events
