"""Object and event selection of the analysis.

Identified jets, leptons and hadronic taus; events with at least two jets and at least one lepton or tau. The ID
columns and working points come from the config's object definitions (``config.x.objects``, see
``analysis_template.config.objects``), so the selector reads what the config's NanoAOD version stores.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from analysis_template.config.objects import ObjectDefinitions
from cf.behaviour import four_vectors
from cf.functions import ConfigColumns, SelectionResult, Selector, selector

#: Jets closer than this (in eta-phi) to a selected lepton or tau are that object, not a jet.
JET_CLEANING_DR = 0.4
#: The fields of the objects' four-vectors in the jet cleaning.
DIRECTION = ("pt", "eta", "phi")


def min_delta_r(objects: ak.Array, others: ak.Array) -> np.ndarray:
    """For each object (flattened), the distance in (eta, phi) to the closest other in its event.

    Both are coffea four-vectors; inf for an object without others in its event. The (object,
    other) pairs of all events become two flat arrays of four-vectors, whose ``delta_r`` is many
    times faster than ``metric_table`` on the jagged arrays (with the same values).
    """
    counts = ak.to_numpy(ak.num(objects, axis=1))
    other_counts = ak.to_numpy(ak.num(others, axis=1))
    # per object: the number of others in its event and the first of them
    n_pairs = np.repeat(other_counts, counts)
    first_other = np.repeat(np.cumsum(other_counts) - other_counts, counts)
    # per pair: the object and the other
    pair_object = np.repeat(np.arange(len(n_pairs)), n_pairs)
    pair_start = np.cumsum(n_pairs) - n_pairs
    pair_other = np.arange(n_pairs.sum()) - np.repeat(pair_start - first_other, n_pairs)
    distance = ak.flatten(objects)[pair_object].delta_r(ak.flatten(others)[pair_other])
    closest = np.full(len(n_pairs), np.inf)
    np.minimum.at(closest, pair_object, ak.to_numpy(distance))
    return closest


def jet_mask(events: ak.Array, objects: ObjectDefinitions) -> ak.Array:
    jets = events.Jet
    return (jets.pt > 25.0) & (abs(jets.eta) < 2.4) & objects.jet_id.tight(jets)


def electron_mask(events: ak.Array, objects: ObjectDefinitions) -> ak.Array:
    electrons = events.Electron
    return (electrons.pt > 15.0) & (abs(electrons.eta) < 2.5) & objects.electron_id.passes(electrons)


def muon_mask(events: ak.Array, objects: ObjectDefinitions) -> ak.Array:
    muons = events.Muon
    isolation, max_isolation = objects.muon_isolation
    return (
        (muons.pt > 15.0) & (abs(muons.eta) < 2.4) & objects.muon_id.passes(muons) & (muons[isolation] < max_isolation)
    )


def tau_mask(events: ak.Array, objects: ObjectDefinitions) -> ak.Array:
    taus = events.Tau
    return (
        (taus.pt > 20.0)
        & (abs(taus.eta) < 2.3)
        & objects.tau_vs_jet.passes(taus)
        & objects.tau_vs_e.passes(taus)
        & objects.tau_vs_mu.passes(taus)
    )


def trigger_mask(events: ak.Array, objects: ObjectDefinitions, dataset_inst: Any) -> np.ndarray:
    """Whether each event fired one of the config's triggers; all True without triggers or trigger bits.

    A dataset whose files store no trigger bits (a skim that dropped them) says so with ``HLT`` in
    ``dataset.x.absent_collections``; it is selected without the trigger requirement.
    """
    if not objects.triggers or "HLT" in dataset_inst.x("absent_collections", ()):
        return np.ones(len(events), dtype=bool)
    fired = [ak.to_numpy(events.HLT[name.removeprefix("HLT_")]).astype(bool) for name in objects.triggers]
    return np.logical_or.reduce(fired)


@selector(
    uses={
        *(f"{name}.{field}" for name in ("Jet", "Electron", "Muon", "Tau") for field in DIRECTION),
        ConfigColumns("objects", ObjectDefinitions.selection_columns),
    },
)
def default(self: Selector, events: ak.Array, **kwargs: Any) -> tuple[ak.Array, SelectionResult]:
    """Identified objects (jets cleaned against leptons and taus); >= 2 jets and >= 1 lepton or tau.

    Where the config lists triggers, the event must also have fired one of them.
    """
    definitions: ObjectDefinitions = self.config_inst.x.objects
    objects = {
        "Electron": electron_mask(events, definitions),
        "Muon": muon_mask(events, definitions),
        "Tau": tau_mask(events, definitions),
    }
    # hadronic taus and leptons are also reconstructed as jets: remove jets that overlap with them
    # (massless four-vectors: only their directions matter)
    jets = four_vectors(events.Jet, DIRECTION)
    others = [four_vectors(events[name][mask], DIRECTION) for name, mask in objects.items()]
    closest = np.min([min_delta_r(jets, other) for other in others], axis=0)
    clean = ak.unflatten(closest > JET_CLEANING_DR, ak.num(jets, axis=1))
    objects["Jet"] = jet_mask(events, definitions) & clean
    n_jet = ak.sum(objects["Jet"], axis=1)
    n_lepton_or_tau = sum(ak.sum(objects[name], axis=1) for name in ("Electron", "Muon", "Tau"))
    triggered = trigger_mask(events, definitions, self.dataset_inst)
    selected = (n_jet >= 2) & (n_lepton_or_tau >= 1) & triggered
    return events, SelectionResult(event=selected, objects=objects)
