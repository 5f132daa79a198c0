"""Object and event selection of the analysis.

Identified jets, leptons and hadronic taus; events with at least two jets and at least one lepton or tau.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from cf.functions import ColumnContext, SelectionResult, selector

#: DeepTau (2017v2p1) working point bits: VSjet Medium, VSe VVLoose, VSmu VLoose.
TAU_VSJET_MEDIUM = 16
TAU_VSE_VVLOOSE = 2
TAU_VSMU_VLOOSE = 1


#: Jets closer than this (in eta-phi) to a selected lepton or tau are that object, not a jet.
JET_CLEANING_DR = 0.4


def min_delta_r(objects: ak.Array, others: ak.Array) -> ak.Array:
    """For each object, the distance in (eta, phi) to the closest of ``others`` (inf when there is none)."""
    pairs = ak.cartesian({"a": objects, "b": others}, axis=1, nested=True)
    delta_phi = (pairs.a.phi - pairs.b.phi + np.pi) % (2 * np.pi) - np.pi
    delta_r = np.hypot(pairs.a.eta - pairs.b.eta, delta_phi)
    return ak.fill_none(ak.min(delta_r, axis=2), np.inf)


def jet_mask(events: ak.Array) -> ak.Array:
    jets = events.Jet
    return (jets.pt > 25.0) & (abs(jets.eta) < 2.4) & ((jets.jetId & 2) != 0)


def electron_mask(events: ak.Array) -> ak.Array:
    electrons = events.Electron
    return (electrons.pt > 15.0) & (abs(electrons.eta) < 2.5) & electrons.mvaFall17V2Iso_WP90


def muon_mask(events: ak.Array) -> ak.Array:
    muons = events.Muon
    return (muons.pt > 15.0) & (abs(muons.eta) < 2.4) & muons.tightId & (muons.pfRelIso04_all < 0.15)


def tau_mask(events: ak.Array) -> ak.Array:
    taus = events.Tau
    return (
        (taus.pt > 20.0)
        & (abs(taus.eta) < 2.3)
        & ((taus.idDeepTau2017v2p1VSjet & TAU_VSJET_MEDIUM) != 0)
        & ((taus.idDeepTau2017v2p1VSe & TAU_VSE_VVLOOSE) != 0)
        & ((taus.idDeepTau2017v2p1VSmu & TAU_VSMU_VLOOSE) != 0)
    )


@selector(
    uses={
        "Jet.pt", "Jet.eta", "Jet.phi", "Jet.jetId",
        "Electron.pt", "Electron.eta", "Electron.phi", "Electron.mvaFall17V2Iso_WP90",
        "Muon.pt", "Muon.eta", "Muon.phi", "Muon.tightId", "Muon.pfRelIso04_all",
        "Tau.pt", "Tau.eta", "Tau.phi", "Tau.idDeepTau2017v2p1VSjet", "Tau.idDeepTau2017v2p1VSe", "Tau.idDeepTau2017v2p1VSmu",
    },
)  # fmt: skip
def default(events: ak.Array, ctx: ColumnContext) -> tuple[ak.Array, SelectionResult]:
    """Identified objects (jets cleaned against leptons and taus); events with >= 2 jets and >= 1 lepton or tau."""
    objects = {"Electron": electron_mask(events), "Muon": muon_mask(events), "Tau": tau_mask(events)}
    # hadronic taus and leptons are also reconstructed as jets: remove jets that overlap with them
    leptons_and_taus = ak.concatenate([events[name][mask][["eta", "phi"]] for name, mask in objects.items()], axis=1)
    clean = min_delta_r(events.Jet[["eta", "phi"]], leptons_and_taus) > JET_CLEANING_DR
    objects["Jet"] = jet_mask(events) & clean
    n_jet = ak.sum(objects["Jet"], axis=1)
    n_lepton_or_tau = sum(ak.sum(objects[name], axis=1) for name in ("Electron", "Muon", "Tau"))
    return events, SelectionResult(event=(n_jet >= 2) & (n_lepton_or_tau >= 1), objects=objects)
