"""The detector model of the embedded sample: from the generator-level final state to NanoAOD-like collections.

Resolution smearing, acceptance, efficiencies, b-tag and tau-ID scores, fake taus, pileup jets and MET; the
collections come out with the NanoAOD branch names and types (``Jet_pt``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from sample.final_state import FinalState, HadronicTaus, Leptons, Partons, sum_per_event
from sample.kinematics import (
    azimuth,
    invariant_mass,
    p4_from_pt_eta_phi_m,
    pseudorapidity,
    random_phi,
    transverse_momentum,
    wrap_phi,
)
from sample.physics import FAKE_DECAY_MODE_PROBS, M_ELECTRON, M_MUON, TAU_DECAY_MODES, random_charge, visible_tau_mass

__all__ = [
    "B_JET_RESPONSE",
    "ELECTRON",
    "ELECTRON_DTYPES",
    "JET_DTYPES",
    "JET_FAKE_TAU_RATES",
    "LIGHT_JET_RESPONSE",
    "MUON",
    "MUON_DTYPES",
    "PILEUP_MEAN_VERTICES",
    "TAU_DTYPES",
    "reconstruct",
]

# object thresholds, kept loose so that the analysis selection does the real cuts
JET_PT_MIN, JET_ABS_ETA_MAX = 15.0, 4.7
TAU_PT_MIN, TAU_ABS_ETA_MAX = 15.0, 2.5
TAU_PT_RESOLUTION = 0.05
TAU_RECO_EFFICIENCY = 0.85

# detector model
B_JET_RESPONSE = 0.97
LIGHT_JET_RESPONSE = 0.98
JET_NOISE, JET_STOCHASTIC, JET_CONSTANT = 3.0, 0.8, 0.05
PILEUP_MEAN_VERTICES = 30.0
PILEUP_JETS_PER_VERTEX = 0.04
PILEUP_JET_PT_SCALE = 6.0
MET_NOISE, MET_HT_TERM, MET_PILEUP_TERM = 6.0, 0.16, 2.0
JET_FAKE_TAU_RATES = {"light": 0.12, "bottom": 0.05, "pileup": 0.03, "tau": 0.0}
ELECTRON_FAKE_TAU_RATE = 0.03
MUON_FAKE_TAU_RATE = 0.01

# DeepTau working-point bitmasks: probabilities to pass exactly k of the (cumulative) working points, k = 0 .. n_wp
VS_JET_PROBS = {
    "genuine": [0.0, 0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.20, 0.45],
    "fake": [0.0, 0.38, 0.20, 0.14, 0.10, 0.08, 0.05, 0.03, 0.02],
}
VS_E_PROBS = {
    "genuine": [0.0, 0.01, 0.01, 0.02, 0.03, 0.05, 0.10, 0.18, 0.60],
    "jet": [0.0, 0.02, 0.03, 0.05, 0.08, 0.10, 0.14, 0.20, 0.38],
    "electron": [0.35, 0.25, 0.15, 0.10, 0.06, 0.04, 0.03, 0.015, 0.005],
}
VS_MU_PROBS = {
    "genuine": [0.0, 0.02, 0.02, 0.04, 0.92],
    "jet": [0.0, 0.03, 0.03, 0.06, 0.88],
    "muon": [0.50, 0.25, 0.12, 0.08, 0.05],
}

# branch layout, in NanoAOD order and types
JET_DTYPES = {
    "pt": np.float32,
    "eta": np.float32,
    "phi": np.float32,
    "mass": np.float32,
    "btagDeepFlavB": np.float32,
    "jetId": np.int32,
    "hadronFlavour": np.int32,
}
ELECTRON_DTYPES = {
    "pt": np.float32,
    "eta": np.float32,
    "phi": np.float32,
    "mass": np.float32,
    "charge": np.int32,
    "pdgId": np.int32,
    "mvaFall17V2Iso_WP90": np.bool_,
    "pfRelIso03_all": np.float32,
}
MUON_DTYPES = {
    "pt": np.float32,
    "eta": np.float32,
    "phi": np.float32,
    "mass": np.float32,
    "charge": np.int32,
    "pdgId": np.int32,
    "tightId": np.bool_,
    "pfRelIso04_all": np.float32,
}
TAU_DTYPES = {
    "pt": np.float32,
    "eta": np.float32,
    "phi": np.float32,
    "mass": np.float32,
    "charge": np.int32,
    "decayMode": np.int32,
    "idDeepTau2017v2p1VSjet": np.uint8,
    "idDeepTau2017v2p1VSe": np.uint8,
    "idDeepTau2017v2p1VSmu": np.uint8,
}


@dataclass(frozen=True)
class _LeptonSpec:
    """Reconstruction model of one light-lepton flavour."""

    pdg: int
    mass: float
    pt_min: float
    abs_eta_max: float
    pt_resolution: float
    efficiency: float
    id_field: str
    iso_field: str
    prompt_id_rate: float
    nonprompt_id_rate: float


ELECTRON = _LeptonSpec(
    pdg=11,
    mass=M_ELECTRON,
    pt_min=5.0,
    abs_eta_max=2.5,
    pt_resolution=0.025,
    efficiency=0.95,
    id_field="mvaFall17V2Iso_WP90",
    iso_field="pfRelIso03_all",
    prompt_id_rate=0.9,
    nonprompt_id_rate=0.3,
)
MUON = _LeptonSpec(
    pdg=13,
    mass=M_MUON,
    pt_min=5.0,
    abs_eta_max=2.4,
    pt_resolution=0.015,
    efficiency=0.98,
    id_field="tightId",
    iso_field="pfRelIso04_all",
    prompt_id_rate=0.97,
    nonprompt_id_rate=0.85,
)


@dataclass
class _Objects:
    """Reconstructed objects, flat over all events, with the index of their event."""

    event: np.ndarray
    columns: dict[str, np.ndarray]


def _concat_objects(parts: list[_Objects], dtypes: dict[str, type]) -> _Objects:
    """Concatenates object blocks."""
    if not parts:
        return _Objects(np.zeros(0, dtype=np.int64), {name: np.zeros(0, dtype) for name, dtype in dtypes.items()})
    columns = {name: np.concatenate([part.columns[name] for part in parts]) for name in dtypes}
    return _Objects(np.concatenate([part.event for part in parts]), columns)


def _to_collection(objects: _Objects, n: int, dtypes: dict[str, type]) -> ak.Array:
    """Converts objects into a jagged awkward record array over n events, sorted by decreasing pt in each event."""
    # one float key sorts by event, then by decreasing pt (1 / (1 + pt) lies in (0, 1) and falls with pt)
    order = np.argsort(objects.event + 1.0 / (1.0 + objects.columns["pt"]))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(objects.event, minlength=n), out=offsets[1:])
    contents = [ak.contents.NumpyArray(objects.columns[name][order].astype(dtype)) for name, dtype in dtypes.items()]
    records = ak.contents.RecordArray(contents, list(dtypes), length=len(order))
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), records))


def _jet_resolution(pt: np.ndarray) -> np.ndarray:
    """Relative jet energy resolution (noise, stochastic and constant terms)."""
    return np.sqrt((JET_NOISE / pt) ** 2 + JET_STOCHASTIC**2 / pt + JET_CONSTANT**2)


def _jet_mass(rng: np.random.Generator, pt: np.ndarray) -> np.ndarray:
    """Jet masses from a log-normal mass-to-pt ratio."""
    return pt * np.exp(rng.normal(np.log(0.12), 0.35, len(pt)))


def _beta_mixture(rng: np.random.Generator, size: int, components: list[tuple[float, float, float]]) -> np.ndarray:
    """Samples a mixture of beta distributions given as (weight, a, b)."""
    which = rng.choice(len(components), size=size, p=[weight for weight, _, _ in components])
    return np.choose(which, [rng.beta(a, b, size) for _, a, b in components])


def _btag_scores(rng: np.random.Generator, flavour: int, size: int) -> np.ndarray:
    """DeepJet-like b-tag scores: b jets mostly near one, light jets mostly near zero, with realistic overlap.

    Tuned to efficiencies of roughly 0.94 / 0.84 / 0.69 (b) and 0.09 / 0.009 / 0.001 (light) at the 2017 loose,
    medium and tight working points.
    """
    if flavour == 5:
        return _beta_mixture(rng, size, [(0.72, 4.0, 0.3), (0.28, 0.6, 1.2)])
    return _beta_mixture(rng, size, [(0.975, 0.45, 28.0), (0.025, 0.7, 2.0)])


def _jet_ids(rng: np.random.Generator, size: int, pileup: bool = False) -> np.ndarray:
    """Jet ID bits (2: tight, 4: tight lepton veto), mostly passing both."""
    probs = [0.80, 0.12, 0.08] if pileup else [0.95, 0.04, 0.01]
    return rng.choice(np.array([6, 2, 0]), size=size, p=probs)


def _jet_objects(
    rng: np.random.Generator, event: np.ndarray, kinematics: tuple[np.ndarray, ...], flavour: int, pileup: bool
) -> _Objects:
    """Jets with the given (pt, eta, phi) and mass, b-tag score, ID and flavour drawn for them."""
    pt, eta, phi = kinematics
    columns = {
        "pt": pt,
        "eta": eta,
        "phi": phi,
        "mass": _jet_mass(rng, pt),
        "btagDeepFlavB": _btag_scores(rng, flavour, len(pt)),
        "jetId": _jet_ids(rng, len(pt), pileup),
        "hadronFlavour": np.full(len(pt), flavour),
    }
    return _Objects(event, columns)


def _reco_jets(rng: np.random.Generator, partons: Partons, n: int) -> tuple[_Objects, _Objects, np.ndarray]:
    """Smears partons into jets; returns the jets, the taus faked by them and the transverse mismeasurement (n, 2)."""
    true_pt = transverse_momentum(partons.p4)
    size = len(true_pt)
    pt = np.maximum(true_pt * partons.response * (1.0 + _jet_resolution(true_pt) * rng.normal(size=size)), 0.1)
    eta = pseudorapidity(partons.p4) + rng.normal(0.0, 0.01, size)
    phi = wrap_phi(azimuth(partons.p4) + rng.normal(0.0, 0.01, size))
    in_detector = np.abs(eta) < JET_ABS_ETA_MAX
    measured = np.where(in_detector[:, None], p4_from_pt_eta_phi_m(pt, eta, phi, 0.0)[:, :2], 0.0)
    mismeasured = sum_per_event(partons.p4[:, :2] - measured, partons.event, n)
    keep = in_detector & (pt > JET_PT_MIN)
    jets = _jet_objects(rng, partons.event[keep], (pt[keep], eta[keep], phi[keep]), partons.flavour, pileup=False)
    return jets, _jet_fake_taus(rng, jets, partons.fake_tau_rate), mismeasured


def _pileup_jets(rng: np.random.Generator, npvs: np.ndarray) -> _Objects:
    """Soft jets from pileup interactions, uniform in eta, more of them with more vertices."""
    event = np.repeat(np.arange(len(npvs)), rng.poisson(PILEUP_JETS_PER_VERTEX * npvs))
    size = len(event)
    pt = JET_PT_MIN + rng.exponential(PILEUP_JET_PT_SCALE, size)
    eta = rng.uniform(-JET_ABS_ETA_MAX, JET_ABS_ETA_MAX, size)
    return _jet_objects(rng, event, (pt, eta, random_phi(rng, size)), 0, pileup=True)


def _wp_bitmask(rng: np.random.Generator, size: int, probs: list[float]) -> np.ndarray:
    """NanoAOD-style cumulative working-point bitmask (2^k - 1) for k passed working points."""
    passed = rng.choice(len(probs), size=size, p=probs)
    return ((1 << passed) - 1).astype(np.uint8)


def _tau_objects(
    rng: np.random.Generator,
    event: np.ndarray,
    kinematics: tuple[np.ndarray, ...],
    charge: np.ndarray,
    decay_mode: np.ndarray,
    origin: str,
) -> _Objects:
    """Taus in acceptance with DeepTau scores drawn for their origin: 'genuine', 'jet', 'electron' or 'muon'."""
    pt, eta, phi, mass = kinematics
    keep = (pt > TAU_PT_MIN) & (np.abs(eta) < TAU_ABS_ETA_MAX)
    size = int(keep.sum())
    columns = {
        "pt": pt[keep],
        "eta": eta[keep],
        "phi": phi[keep],
        "mass": mass[keep],
        "charge": charge[keep],
        "decayMode": decay_mode[keep],
        "idDeepTau2017v2p1VSjet": _wp_bitmask(rng, size, VS_JET_PROBS["fake" if origin == "jet" else "genuine"]),
        "idDeepTau2017v2p1VSe": _wp_bitmask(rng, size, VS_E_PROBS.get(origin, VS_E_PROBS["genuine"])),
        "idDeepTau2017v2p1VSmu": _wp_bitmask(rng, size, VS_MU_PROBS.get(origin, VS_MU_PROBS["genuine"])),
    }
    return _Objects(event[keep], columns)


def _reco_hadronic_taus(rng: np.random.Generator, taus: HadronicTaus) -> _Objects:
    """Smears genuine hadronic taus, with a decay-mode finding efficiency."""
    found = rng.random(len(taus.event)) < TAU_RECO_EFFICIENCY
    p4 = taus.p4[found]
    pt = transverse_momentum(p4) * (1.0 + TAU_PT_RESOLUTION * rng.normal(size=len(p4)))
    kinematics = (pt, pseudorapidity(p4), azimuth(p4), invariant_mass(p4))
    return _tau_objects(rng, taus.event[found], kinematics, taus.charge[found], taus.decay_mode[found], "genuine")


def _jet_fake_taus(rng: np.random.Generator, jets: _Objects, rate: float) -> _Objects:
    """Taus faked by jets: a fraction of the jet momentum, low DeepTau-vs-jet scores."""
    fake = rng.random(len(jets.event)) < rate
    size = int(fake.sum())
    pt = jets.columns["pt"][fake] * rng.beta(6.0, 3.0, size)
    eta = jets.columns["eta"][fake] + rng.normal(0.0, 0.02, size)
    phi = wrap_phi(jets.columns["phi"][fake] + rng.normal(0.0, 0.02, size))
    decay_mode = rng.choice(TAU_DECAY_MODES, size=size, p=FAKE_DECAY_MODE_PROBS)
    kinematics = (pt, eta, phi, visible_tau_mass(rng, decay_mode))
    return _tau_objects(rng, jets.event[fake], kinematics, random_charge(rng, size), decay_mode, "jet")


def _lepton_fake_taus(rng: np.random.Generator, leptons: _Objects, rate: float, origin: str) -> _Objects:
    """Taus faked by electrons or muons (one-prong decay modes, low DeepTau-vs-lepton scores)."""
    fake = rng.random(len(leptons.event)) < rate
    size = int(fake.sum())
    pt = leptons.columns["pt"][fake] * (1.0 + TAU_PT_RESOLUTION * rng.normal(size=size))
    decay_mode = rng.choice(np.array([0, 1]), size=size)
    columns = leptons.columns
    kinematics = (pt, columns["eta"][fake], columns["phi"][fake], visible_tau_mass(rng, decay_mode))
    return _tau_objects(rng, leptons.event[fake], kinematics, columns["charge"][fake], decay_mode, origin)


def _reco_leptons(rng: np.random.Generator, leptons: Leptons, spec: _LeptonSpec) -> _Objects:
    """Smears generator leptons of one flavour, applying acceptance, efficiency, identification and isolation."""
    flavour = leptons.pdg == spec.pdg
    p4, charge = leptons.p4[flavour], leptons.charge[flavour]
    pt = transverse_momentum(p4) * (1.0 + spec.pt_resolution * rng.normal(size=len(p4)))
    eta = pseudorapidity(p4)
    keep = (pt > spec.pt_min) & (np.abs(eta) < spec.abs_eta_max) & (rng.random(len(p4)) < spec.efficiency)
    size = int(keep.sum())
    id_rate = spec.prompt_id_rate if leptons.prompt else spec.nonprompt_id_rate
    isolation = rng.exponential(0.03, size) if leptons.prompt else 0.15 + rng.exponential(0.5, size)
    columns = {
        "pt": pt[keep],
        "eta": eta[keep],
        "phi": azimuth(p4)[keep],
        "mass": np.full(size, spec.mass),
        "charge": charge[keep],
        "pdgId": -spec.pdg * charge[keep],
        spec.id_field: rng.random(size) < id_rate,
        spec.iso_field: isolation,
    }
    return _Objects(leptons.event[flavour][keep], columns)


def _missing_transverse_momentum(
    rng: np.random.Generator, invisible: np.ndarray, ht: np.ndarray, npvs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """MET from neutrinos and jet mismeasurement (both in `invisible`, (n, 2)) plus a resolution term."""
    sigma = np.sqrt(MET_NOISE**2 + MET_HT_TERM * ht + MET_PILEUP_TERM * npvs)
    met = invisible + sigma[:, None] * rng.normal(size=invisible.shape)
    return np.hypot(met[:, 0], met[:, 1]), np.arctan2(met[:, 1], met[:, 0])


def reconstruct(rng: np.random.Generator, state: FinalState) -> ak.Array:
    """Runs the detector model on a final state.

    Args:
        rng: The random stream of the events, continued from the process generator's draws.
        state: The generator-level final state of the events.

    Returns:
        NanoAOD-like event records: the collections Jet, Electron, Muon and Tau, MET and PV.
    """
    n = state.n
    npvs = rng.poisson(PILEUP_MEAN_VERTICES, n)
    jets, taus = [_pileup_jets(rng, npvs)], [_reco_hadronic_taus(rng, tau) for tau in state.taus]
    taus.append(_jet_fake_taus(rng, jets[0], JET_FAKE_TAU_RATES["pileup"]))
    invisible, ht = state.invisible.copy(), np.zeros(n)
    for partons in state.partons:
        parton_jets, fake_taus, mismeasured = _reco_jets(rng, partons, n)
        jets.append(parton_jets)
        taus.append(fake_taus)
        invisible += mismeasured
        ht += np.bincount(partons.event, transverse_momentum(partons.p4), minlength=n)
    electrons = _concat_objects([_reco_leptons(rng, lep, ELECTRON) for lep in state.leptons], ELECTRON_DTYPES)
    muons = _concat_objects([_reco_leptons(rng, lep, MUON) for lep in state.leptons], MUON_DTYPES)
    taus.append(_lepton_fake_taus(rng, electrons, ELECTRON_FAKE_TAU_RATE, "electron"))
    taus.append(_lepton_fake_taus(rng, muons, MUON_FAKE_TAU_RATE, "muon"))
    met_pt, met_phi = _missing_transverse_momentum(rng, invisible, ht, npvs)
    fields = {
        "Jet": _to_collection(_concat_objects(jets, JET_DTYPES), n, JET_DTYPES),
        "Electron": _to_collection(electrons, n, ELECTRON_DTYPES),
        "Muon": _to_collection(muons, n, MUON_DTYPES),
        "Tau": _to_collection(_concat_objects(taus, TAU_DTYPES), n, TAU_DTYPES),
        "MET": ak.zip({"pt": met_pt.astype(np.float32), "phi": met_phi.astype(np.float32)}),
        "PV": ak.zip({"npvs": npvs.astype(np.int32)}),
    }
    return ak.zip(fields, depth_limit=1)
