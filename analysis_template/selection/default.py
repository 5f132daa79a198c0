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
from cf.behaviour import min_delta_r
from cf.columnar_util import FlatObjects
from cf.functions import ConfigColumns, SelectionResult, Selector, selector

#: Jets closer than this (in eta-phi) to a selected lepton or tau are that object, not a jet.
JET_CLEANING_DR = 0.4
#: The kinematic fields of the objects that the selection reads.
KINEMATICS = ("pt", "eta", "phi")


def jet_mask(jets: FlatObjects, objects: ObjectDefinitions) -> np.ndarray:
    return (jets.pt > 25.0) & (np.abs(jets.eta) < 2.4) & objects.jet_id.tight(jets)


def electron_mask(electrons: FlatObjects, objects: ObjectDefinitions) -> np.ndarray:
    return (electrons.pt > 15.0) & (np.abs(electrons.eta) < 2.5) & objects.electron_id.passes(electrons)


def muon_mask(muons: FlatObjects, objects: ObjectDefinitions) -> np.ndarray:
    isolation, max_isolation = objects.muon_isolation
    return (
        (muons.pt > 15.0)
        & (np.abs(muons.eta) < 2.4)
        & objects.muon_id.passes(muons)
        & (muons[isolation] < max_isolation)
    )


def tau_mask(taus: FlatObjects, objects: ObjectDefinitions) -> np.ndarray:
    return (
        (taus.pt > 20.0)
        & (np.abs(taus.eta) < 2.3)
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
        *(f"{name}.{field}" for name in ("Jet", "Electron", "Muon", "Tau") for field in KINEMATICS),
        ConfigColumns("objects", ObjectDefinitions.selection_columns),
    },
)
def default(self: Selector, events: ak.Array, **kwargs: Any) -> tuple[ak.Array, SelectionResult]:
    """Identified objects (jets cleaned against leptons and taus); >= 2 jets and >= 1 lepton or tau.

    Where the config lists triggers, the event must also have fired one of them.
    """
    definitions: ObjectDefinitions = self.config_inst.x.objects
    # the cuts on flat numpy arrays of each collection's objects, made jagged masks afterwards
    electrons, muons, taus = (FlatObjects(events[name]) for name in ("Electron", "Muon", "Tau"))
    jets = FlatObjects(events.Jet)
    masks = {
        "Electron": (electrons, electron_mask(electrons, definitions)),
        "Muon": (muons, muon_mask(muons, definitions)),
        "Tau": (taus, tau_mask(taus, definitions)),
    }
    # hadronic taus and leptons are also reconstructed as jets: remove jets that overlap with them
    distances = [min_delta_r(jets, others.selected(mask)) for others, mask in masks.values()]
    clean = np.min(distances, axis=0) > JET_CLEANING_DR
    objects = {name: collection.jagged(mask) for name, (collection, mask) in masks.items()}
    objects["Jet"] = jets.jagged(jet_mask(jets, definitions) & clean)
    n_jet = ak.sum(objects["Jet"], axis=1)
    n_lepton_or_tau = sum(ak.sum(objects[name], axis=1) for name in ("Electron", "Muon", "Tau"))
    triggered = trigger_mask(events, definitions, self.dataset_inst)
    selected = (n_jet >= 2) & (n_lepton_or_tau >= 1) & triggered
    return events, SelectionResult(event=selected, objects=objects)
