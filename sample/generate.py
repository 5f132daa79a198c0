"""Deterministic generator of the embedded NanoAOD-layout sample.

Each process is generated with vectorised four-vector kinematics at parton level (production of the hard system,
isotropic two-body decays boosted into the lab frame, collinear tau decays, semileptonic b decays) and then passed
through a simple detector model (resolution smearing, acceptance, efficiencies, b-tag and tau-ID scores, fake taus,
pileup jets and MET) that fills NanoAOD-like collections. Events are written as a ``TTree`` named ``Events`` with the
NanoAOD branch layout (``nJet``, ``Jet_pt``, ...).
"""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from sample.layouts import DEFAULT_LAYOUT, apply_layout, get_layout

__all__ = ["PROCESS_GENERATORS", "create_file", "draw_counts", "generate_events", "write_nanoaod"]

# particle properties in GeV
M_HIGGS = 125.0
M_TOP, WIDTH_TOP = 172.5, 1.41
M_W, WIDTH_W = 80.379, 2.085
M_Z, WIDTH_Z = 91.1876, 2.4952
M_BOTTOM = 4.8
M_TAU = 1.77686
M_ELECTRON = 0.000511
M_MUON = 0.105658
M_PION = 0.13957

# branching fractions of the tau, the remainder decays to muons
TAU_TO_HADRONS = 0.648
TAU_TO_ELECTRON = 0.178
# reconstructed hadronic decay modes and their fractions among genuine and fake taus
TAU_DECAY_MODES = np.array([0, 1, 10, 11])
GENUINE_DECAY_MODE_PROBS = [0.18, 0.55, 0.20, 0.07]
FAKE_DECAY_MODE_PROBS = [0.25, 0.35, 0.30, 0.10]
# visible-mass line shapes (peak, width, low, high) per decay mode; decay mode 0 is a single pion
TAU_VISIBLE_LINE_SHAPES = {1: (0.775, 0.149, 0.3, 1.5), 10: (1.23, 0.42, 0.8, 1.7), 11: (1.3, 0.4, 0.9, 1.75)}
B_SEMILEPTONIC_FRACTION = 0.2
DY_RESONANT_FRACTION = 0.85

# object thresholds, kept loose so that the analysis selection does the real cuts
JET_PT_MIN, JET_ABS_ETA_MAX = 15.0, 4.7
TAU_PT_MIN, TAU_ABS_ETA_MAX = 15.0, 2.5
TAU_PT_RESOLUTION = 0.05
TAU_RECO_EFFICIENCY = 0.85

# detector model
B_JET_RESPONSE = 0.97
LIGHT_JET_RESPONSE = 0.98
JET_NOISE, JET_STOCHASTIC, JET_CONSTANT = 3.0, 0.8, 0.05
ISR_PT_MIN, ISR_PT_INDEX = 15.0, 2.3
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

# event identity
DATA_FIRST_RUN = 297050  # start of the 2017B run range
EVENTS_PER_LUMI_BLOCK = 500
LUMI_BLOCKS_PER_FILE = 1000
EVENTS_PER_FILE_MAX = 10**8
EVENT_TREE_NAME = "Events"
COMPRESSION = uproot.ZSTD(1)  # several times faster to write than ZLIB at a similar size

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

# (magnitude, negative fraction) of the generator weights
_GEN_WEIGHTS = {
    "hh_ggf_bbtautau": (1.0, 0.015),
    "tt_sl": (1.0, 0.004),
    "tt_dl": (1.0, 0.004),
    "dy_lep_m50": (1.0, 0.025),
}


# --------------------------------------------------------------------------------------------------------------------
# four-vector kinematics on arrays of shape (..., 4) holding (px, py, pz, E)
# --------------------------------------------------------------------------------------------------------------------


def _p4_from_pt_eta_phi_m(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray | float) -> np.ndarray:
    """Builds four-vectors from transverse momentum, pseudorapidity, azimuth and mass."""
    pz = pt * np.sinh(eta)
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + np.square(mass))
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pz, energy], axis=-1)


def _pt(p4: np.ndarray) -> np.ndarray:
    """Transverse momentum."""
    return np.hypot(p4[..., 0], p4[..., 1])


def _eta(p4: np.ndarray) -> np.ndarray:
    """Pseudorapidity (finite for vanishing transverse momentum)."""
    return np.arcsinh(p4[..., 2] / np.maximum(_pt(p4), 1e-9))


def _phi(p4: np.ndarray) -> np.ndarray:
    """Azimuthal angle in (-pi, pi]."""
    return np.arctan2(p4[..., 1], p4[..., 0])


def _mass(p4: np.ndarray) -> np.ndarray:
    """Invariant mass, clipped at zero against rounding."""
    return np.sqrt(np.maximum(p4[..., 3] ** 2 - np.sum(p4[..., :3] ** 2, axis=-1), 0.0))


def _wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Maps angles into [-pi, pi)."""
    return (phi + np.pi) % (2 * np.pi) - np.pi


def _boost(p4: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Lorentz-boosts four-vectors (..., 4) by the velocities beta (..., 3)."""
    beta2 = np.sum(beta**2, axis=-1, keepdims=True)
    gamma = 1.0 / np.sqrt(1.0 - beta2)
    beta_dot_p = np.sum(beta * p4[..., :3], axis=-1, keepdims=True)
    gamma_term = np.divide(gamma - 1.0, beta2, out=np.zeros_like(beta2), where=beta2 > 0)
    momentum = p4[..., :3] + (gamma_term * beta_dot_p + gamma * p4[..., 3:]) * beta
    energy = gamma * (p4[..., 3:] + beta_dot_p)
    return np.concatenate([momentum, energy], axis=-1)


def _two_body_decay(
    rng: np.random.Generator, parent: np.ndarray, mass1: np.ndarray | float, mass2: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Decays parents isotropically in their rest frame into two daughters and boosts them into the lab frame."""
    shape = parent.shape[:-1]
    mass = _mass(parent)
    mass1, mass2 = np.broadcast_to(mass1, shape), np.broadcast_to(mass2, shape)
    kallen = (mass**2 - (mass1 + mass2) ** 2) * (mass**2 - (mass1 - mass2) ** 2)
    p_star = np.sqrt(np.maximum(kallen, 0.0)) / (2.0 * mass)
    cos_theta = rng.uniform(-1.0, 1.0, shape)
    sin_theta = np.sqrt(1.0 - cos_theta**2)
    phi = rng.uniform(-np.pi, np.pi, shape)
    direction = np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=-1)
    momentum = p_star[..., None] * direction
    daughter1 = np.concatenate([momentum, np.sqrt(p_star**2 + mass1**2)[..., None]], axis=-1)
    daughter2 = np.concatenate([-momentum, np.sqrt(p_star**2 + mass2**2)[..., None]], axis=-1)
    beta = parent[..., :3] / parent[..., 3:]
    return _boost(daughter1, beta), _boost(daughter2, beta)


def _collinear_daughter(parent: np.ndarray, fraction: np.ndarray, mass: np.ndarray | float) -> np.ndarray:
    """A daughter carrying a fraction of the parent's three-momentum along its direction, with the given mass."""
    momentum = parent[..., :3] * fraction[..., None]
    energy = np.sqrt(np.sum(momentum**2, axis=-1) + np.square(mass))
    return np.concatenate([momentum, energy[..., None]], axis=-1)


def _breit_wigner(
    rng: np.random.Generator, size: int, mass: float, width: float, low: float, high: np.ndarray | float
) -> np.ndarray:
    """Samples a (non-relativistic) Breit-Wigner line shape truncated to [low, high]."""
    lower = np.arctan(2.0 * (low - mass) / width)
    upper = np.arctan(2.0 * (high - mass) / width)
    return mass + 0.5 * width * np.tan(rng.uniform(lower, upper, size))


def _produce_system(
    rng: np.random.Generator, mass: np.ndarray, recoil: np.ndarray, rapidity_width: float
) -> np.ndarray:
    """Four-vectors of a hard system with the given mass, transverse momentum (n, 2) and a Gaussian rapidity."""
    rapidity = np.clip(rng.normal(0.0, rapidity_width, len(mass)), -3.0, 3.0)
    transverse_mass = np.sqrt(mass**2 + np.sum(recoil**2, axis=-1))
    longitudinal = np.stack([transverse_mass * np.sinh(rapidity), transverse_mass * np.cosh(rapidity)], axis=-1)
    return np.concatenate([recoil, longitudinal], axis=-1)


# --------------------------------------------------------------------------------------------------------------------
# generator-level final state, stored flat: one row per object plus the index of its event
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _Partons:
    """Coloured partons (or visible hadronic taus) that become jets."""

    p4: np.ndarray
    event: np.ndarray
    flavour: int
    response: float
    fake_tau_rate: float


@dataclass
class _Leptons:
    """Electrons and muons at generator level."""

    p4: np.ndarray
    event: np.ndarray
    charge: np.ndarray
    pdg: np.ndarray
    prompt: bool


@dataclass
class _HadronicTaus:
    """Visible products of hadronic tau decays."""

    p4: np.ndarray
    event: np.ndarray
    charge: np.ndarray
    decay_mode: np.ndarray


@dataclass
class _FinalState:
    """Generator-level final state of n events, grouped by how its objects are reconstructed."""

    n: int
    partons: list[_Partons] = field(default_factory=list)
    leptons: list[_Leptons] = field(default_factory=list)
    taus: list[_HadronicTaus] = field(default_factory=list)
    invisible: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.invisible = np.zeros((self.n, 2))

    def add_invisible(self, p4: np.ndarray, event: np.ndarray) -> None:
        """Adds the transverse momenta of neutrinos (m, 4) in the given events to the invisible sum."""
        self.invisible += _sum_per_event(p4[:, :2], event, self.n)


def _sum_per_event(values: np.ndarray, event: np.ndarray, n: int) -> np.ndarray:
    """Sums per-object transverse vectors (m, 2) into per-event sums (n, 2)."""
    return np.stack([np.bincount(event, values[:, i], minlength=n) for i in range(2)], axis=-1)


def _flat(valid: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Event indices of the selected (n, k) slots, followed by the selected entries of each (n, k, ...) array."""
    return (np.nonzero(valid)[0], *(array[valid] for array in arrays))


def _falling_pt(rng: np.random.Generator, size: int, pt_min: float, index: float) -> np.ndarray:
    """Power-law (Pareto) spectrum above pt_min, capped to stay physical."""
    return np.minimum(pt_min * (1.0 - rng.random(size)) ** (-1.0 / index), 2000.0)


def _random_phi(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uniform azimuthal angles."""
    return rng.uniform(-np.pi, np.pi, size)


def _add_isr_jets(rng: np.random.Generator, state: _FinalState, mean: float) -> np.ndarray:
    """Adds Poisson-distributed light-flavour ISR partons and returns the transverse recoil (n, 2) of the hard system.

    The hard system balances the ISR jets plus some unresolved radiation (intrinsic kT, soft emissions).
    """
    event = np.repeat(np.arange(state.n), rng.poisson(mean, state.n))
    size = len(event)
    pt = _falling_pt(rng, size, ISR_PT_MIN, ISR_PT_INDEX)
    p4 = _p4_from_pt_eta_phi_m(pt, rng.normal(0.0, 2.0, size), _random_phi(rng, size), 0.0)
    state.partons.append(_Partons(p4, event, 0, LIGHT_JET_RESPONSE, JET_FAKE_TAU_RATES["light"]))
    unresolved_pt, unresolved_phi = rng.exponential(8.0, state.n), _random_phi(rng, state.n)
    unresolved = np.stack([unresolved_pt * np.cos(unresolved_phi), unresolved_pt * np.sin(unresolved_phi)], axis=-1)
    return unresolved - _sum_per_event(p4[:, :2], event, state.n)


def _add_light_quarks(state: _FinalState, p4: np.ndarray, valid: np.ndarray) -> None:
    """Adds light quarks (n, k, 4) where valid, e.g. from hadronic W decays."""
    event, p4 = _flat(valid, p4)
    state.partons.append(_Partons(p4, event, 0, LIGHT_JET_RESPONSE, JET_FAKE_TAU_RATES["light"]))


def _add_b_quarks(rng: np.random.Generator, state: _FinalState, p4: np.ndarray) -> None:
    """Adds b quarks (n, k, 4); a fraction decays semileptonically into a soft non-isolated lepton and a neutrino.

    The lepton stays part of the jet (as in particle-flow jets) while the neutrino is lost from it.
    """
    event, p4 = _flat(np.ones(p4.shape[:-1], dtype=bool), p4)
    semileptonic = rng.random(len(event)) < B_SEMILEPTONIC_FRACTION
    neutrino_fraction = np.where(semileptonic, rng.beta(1.5, 6.0, len(event)), 0.0)
    state.add_invisible(_collinear_daughter(p4, neutrino_fraction, 0.0), event)
    jet = _collinear_daughter(p4, 1.0 - neutrino_fraction, M_BOTTOM)
    state.partons.append(_Partons(jet, event, 5, B_JET_RESPONSE, JET_FAKE_TAU_RATES["bottom"]))
    event, p4 = event[semileptonic], p4[semileptonic]
    pdg = np.where(rng.random(len(event)) < 0.5, 11, 13)
    lepton = _collinear_daughter(p4, rng.beta(2.0, 6.0, len(event)), _lepton_mass(pdg))
    lepton = _with_angular_spread(rng, lepton, 0.1, _lepton_mass(pdg))
    state.leptons.append(_Leptons(lepton, event, _random_charge(rng, len(event)), pdg, prompt=False))


def _with_angular_spread(rng: np.random.Generator, p4: np.ndarray, sigma: float, mass: np.ndarray) -> np.ndarray:
    """Moves four-vectors (m, 4) by Gaussian offsets in eta and phi, keeping their transverse momentum."""
    eta = _eta(p4) + rng.normal(0.0, sigma, len(p4))
    phi = _phi(p4) + rng.normal(0.0, sigma, len(p4))
    return _p4_from_pt_eta_phi_m(_pt(p4), eta, phi, mass)


def _leptonic_tau_fraction(rng: np.random.Generator, size: int) -> np.ndarray:
    """Visible momentum fraction of leptonic tau decays in the collinear limit, f(x) = (1-x)(5+5x-4x^2)/3."""
    grid = np.linspace(0.0, 1.0, 513)
    cdf = (5.0 * grid - 3.0 * grid**3 + grid**4) / 3.0
    return np.interp(rng.random(size), cdf, grid)


def _visible_tau_mass(rng: np.random.Generator, decay_mode: np.ndarray) -> np.ndarray:
    """Visible mass of hadronic tau decays: pion, rho or a1 line shapes depending on the decay mode."""
    mass = np.full(len(decay_mode), M_PION)
    for mode, (peak, width, low, high) in TAU_VISIBLE_LINE_SHAPES.items():
        selected = decay_mode == mode
        mass[selected] = _breit_wigner(rng, int(selected.sum()), peak, width, low, high)
    return mass


def _add_taus(
    rng: np.random.Generator, state: _FinalState, p4: np.ndarray, charge: np.ndarray, valid: np.ndarray
) -> None:
    """Decays taus (n, k, 4) collinearly where valid.

    Visible products are hadronic taus (also clustered as jets) or leptons; the neutrinos go to the invisible sum.
    """
    event, p4, charge = _flat(valid, p4, charge)
    size = len(event)
    channel = rng.random(size)
    hadronic = channel < TAU_TO_HADRONS
    pdg = np.where(channel < TAU_TO_HADRONS + TAU_TO_ELECTRON, 11, 13)
    decay_mode = rng.choice(TAU_DECAY_MODES, size=size, p=GENUINE_DECAY_MODE_PROBS)
    hadronic_mass = _visible_tau_mass(rng, decay_mode)
    # for an unpolarised two-body decay the visible fraction is flat between (m_vis / m_tau)^2 and 1
    hadronic_fraction = rng.uniform((hadronic_mass / M_TAU) ** 2, 1.0)
    fraction = np.where(hadronic, hadronic_fraction, _leptonic_tau_fraction(rng, size))
    visible = _collinear_daughter(p4, fraction, np.where(hadronic, hadronic_mass, _lepton_mass(pdg)))
    state.add_invisible(p4 - visible, event)
    state.taus.append(_HadronicTaus(visible[hadronic], event[hadronic], charge[hadronic], decay_mode[hadronic]))
    state.partons.append(_Partons(visible[hadronic], event[hadronic], 0, 1.0, JET_FAKE_TAU_RATES["tau"]))
    leptonic = ~hadronic
    state.leptons.append(_Leptons(visible[leptonic], event[leptonic], charge[leptonic], pdg[leptonic], prompt=True))


def _add_charged_leptons(
    rng: np.random.Generator, state: _FinalState, p4: np.ndarray, charge: np.ndarray, pdg: np.ndarray, valid: np.ndarray
) -> None:
    """Adds prompt charged leptons (n, k, 4) of flavour pdg 11, 13 or 15 where valid (taus are decayed)."""
    event, light_p4, light_charge, light_pdg = _flat(valid & (pdg != 15), p4, charge, pdg)
    state.leptons.append(_Leptons(light_p4, event, light_charge, light_pdg, prompt=True))
    _add_taus(rng, state, p4, charge, valid & (pdg == 15))


def _lepton_mass(pdg: np.ndarray) -> np.ndarray:
    """Masses of charged leptons given their absolute pdg ids (11, 13 or 15)."""
    return np.select([pdg == 11, pdg == 13], [M_ELECTRON, M_MUON], M_TAU)


def _random_lepton_flavour(rng: np.random.Generator, size: int) -> np.ndarray:
    """Lepton pdg ids 11, 13, 15 with equal probability (lepton universality)."""
    return rng.choice(np.array([11, 13, 15]), size=size)


def _random_charge(rng: np.random.Generator, size: int) -> np.ndarray:
    """Charges -1 or +1 with equal probability."""
    return np.where(rng.random(size) < 0.5, -1, 1)


def _pair(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Stacks per-event quantities of two objects into (n, 2, ...)."""
    return np.stack([first, second], axis=1)


# --------------------------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------------------------


def _generate_hh_ggf_bbtautau(rng: np.random.Generator, n: int) -> ak.Array:
    """Gg -> HH -> bb tautau."""
    state = _FinalState(n)
    recoil = _add_isr_jets(rng, state, mean=0.5)
    mass_hh = 2 * M_HIGGS + rng.gamma(3.0, 70.0, n)
    higgs_bb, higgs_tautau = _two_body_decay(rng, _produce_system(rng, mass_hh, recoil, 1.0), M_HIGGS, M_HIGGS)
    _add_b_quarks(rng, state, _pair(*_two_body_decay(rng, higgs_bb, M_BOTTOM, M_BOTTOM)))
    charge = _random_charge(rng, n)
    taus = _pair(*_two_body_decay(rng, higgs_tautau, M_TAU, M_TAU))
    _add_taus(rng, state, taus, _pair(charge, -charge), np.ones((n, 2), dtype=bool))
    return _reconstruct(rng, state)


def _decay_top(
    rng: np.random.Generator, state: _FinalState, top: np.ndarray, charge: int, leptonic: np.ndarray
) -> None:
    """Decays tops (n, 4) into b W, with the W decaying to a lepton and a neutrino where leptonic, else to quarks."""
    n = len(top)
    mass_w = _breit_wigner(rng, n, M_W, WIDTH_W, 50.0, _mass(top) - M_BOTTOM - 0.1)
    bottom, w_boson = _two_body_decay(rng, top, M_BOTTOM, mass_w)
    _add_b_quarks(rng, state, bottom[:, None])
    pdg = _random_lepton_flavour(rng, n)
    first, second = _two_body_decay(rng, w_boson, np.where(leptonic, _lepton_mass(pdg), 0.0), 0.0)
    _add_light_quarks(state, _pair(first, second), _pair(~leptonic, ~leptonic))
    _add_charged_leptons(rng, state, first[:, None], np.full((n, 1), charge), pdg[:, None], leptonic[:, None])
    state.add_invisible(second[leptonic], np.nonzero(leptonic)[0])


def _generate_top_pairs(rng: np.random.Generator, n: int, n_leptonic: int) -> ak.Array:
    """Pp -> tt with n_leptonic (1 or 2) leptonically decaying W bosons."""
    state = _FinalState(n)
    recoil = _add_isr_jets(rng, state, mean=0.8)
    mass_top = _breit_wigner(rng, n, M_TOP, WIDTH_TOP, 160.0, 185.0)
    mass_antitop = _breit_wigner(rng, n, M_TOP, WIDTH_TOP, 160.0, 185.0)
    mass_tt = mass_top + mass_antitop + rng.gamma(1.8, 90.0, n)
    top, antitop = _two_body_decay(rng, _produce_system(rng, mass_tt, recoil, 1.0), mass_top, mass_antitop)
    top_leptonic = np.ones(n, dtype=bool) if n_leptonic == 2 else rng.random(n) < 0.5
    antitop_leptonic = top_leptonic if n_leptonic == 2 else ~top_leptonic
    _decay_top(rng, state, top, +1, top_leptonic)
    _decay_top(rng, state, antitop, -1, antitop_leptonic)
    return _reconstruct(rng, state)


def _generate_tt_sl(rng: np.random.Generator, n: int) -> ak.Array:
    """Pp -> tt -> b q q' b l nu."""
    return _generate_top_pairs(rng, n, n_leptonic=1)


def _generate_tt_dl(rng: np.random.Generator, n: int) -> ak.Array:
    """Pp -> tt -> b l nu b l nu."""
    return _generate_top_pairs(rng, n, n_leptonic=2)


def _drell_yan_mass(rng: np.random.Generator, n: int) -> np.ndarray:
    """Z resonance above 50 GeV plus a falling (~1/m^3) photon continuum."""
    resonance = _breit_wigner(rng, n, M_Z, WIDTH_Z, 50.0, 500.0)
    continuum = _falling_pt(rng, n, 50.0, 2.0)
    return np.where(rng.random(n) < DY_RESONANT_FRACTION, resonance, continuum)


def _generate_dy_lep_m50(rng: np.random.Generator, n: int) -> ak.Array:
    """Pp -> Z/gamma* -> ll with m_ll > 50 GeV."""
    state = _FinalState(n)
    recoil = _add_isr_jets(rng, state, mean=1.0)
    boson = _produce_system(rng, _drell_yan_mass(rng, n), recoil, 1.8)
    pdg = _random_lepton_flavour(rng, n)
    leptons = _pair(*_two_body_decay(rng, boson, _lepton_mass(pdg), _lepton_mass(pdg)))
    charge = _random_charge(rng, n)
    _add_charged_leptons(rng, state, leptons, _pair(charge, -charge), _pair(pdg, pdg), np.ones((n, 2), dtype=bool))
    return _reconstruct(rng, state)


PROCESS_GENERATORS: dict[str, Callable[[np.random.Generator, int], ak.Array]] = {
    "hh_ggf_bbtautau": _generate_hh_ggf_bbtautau,
    "tt_sl": _generate_tt_sl,
    "tt_dl": _generate_tt_dl,
    "dy_lep_m50": _generate_dy_lep_m50,
}


# --------------------------------------------------------------------------------------------------------------------
# detector model
# --------------------------------------------------------------------------------------------------------------------


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


def _reco_jets(rng: np.random.Generator, partons: _Partons, n: int) -> tuple[_Objects, _Objects, np.ndarray]:
    """Smears partons into jets; returns the jets, the taus faked by them and the transverse mismeasurement (n, 2)."""
    true_pt = _pt(partons.p4)
    size = len(true_pt)
    pt = np.maximum(true_pt * partons.response * (1.0 + _jet_resolution(true_pt) * rng.normal(size=size)), 0.1)
    eta = _eta(partons.p4) + rng.normal(0.0, 0.01, size)
    phi = _wrap_phi(_phi(partons.p4) + rng.normal(0.0, 0.01, size))
    in_detector = np.abs(eta) < JET_ABS_ETA_MAX
    measured = np.where(in_detector[:, None], _p4_from_pt_eta_phi_m(pt, eta, phi, 0.0)[:, :2], 0.0)
    mismeasured = _sum_per_event(partons.p4[:, :2] - measured, partons.event, n)
    keep = in_detector & (pt > JET_PT_MIN)
    jets = _jet_objects(rng, partons.event[keep], (pt[keep], eta[keep], phi[keep]), partons.flavour, pileup=False)
    return jets, _jet_fake_taus(rng, jets, partons.fake_tau_rate), mismeasured


def _pileup_jets(rng: np.random.Generator, npvs: np.ndarray) -> _Objects:
    """Soft jets from pileup interactions, uniform in eta, more of them with more vertices."""
    event = np.repeat(np.arange(len(npvs)), rng.poisson(PILEUP_JETS_PER_VERTEX * npvs))
    size = len(event)
    pt = JET_PT_MIN + rng.exponential(PILEUP_JET_PT_SCALE, size)
    eta = rng.uniform(-JET_ABS_ETA_MAX, JET_ABS_ETA_MAX, size)
    return _jet_objects(rng, event, (pt, eta, _random_phi(rng, size)), 0, pileup=True)


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


def _reco_hadronic_taus(rng: np.random.Generator, taus: _HadronicTaus) -> _Objects:
    """Smears genuine hadronic taus, with a decay-mode finding efficiency."""
    found = rng.random(len(taus.event)) < TAU_RECO_EFFICIENCY
    p4 = taus.p4[found]
    pt = _pt(p4) * (1.0 + TAU_PT_RESOLUTION * rng.normal(size=len(p4)))
    kinematics = (pt, _eta(p4), _phi(p4), _mass(p4))
    return _tau_objects(rng, taus.event[found], kinematics, taus.charge[found], taus.decay_mode[found], "genuine")


def _jet_fake_taus(rng: np.random.Generator, jets: _Objects, rate: float) -> _Objects:
    """Taus faked by jets: a fraction of the jet momentum, low DeepTau-vs-jet scores."""
    fake = rng.random(len(jets.event)) < rate
    size = int(fake.sum())
    pt = jets.columns["pt"][fake] * rng.beta(6.0, 3.0, size)
    eta = jets.columns["eta"][fake] + rng.normal(0.0, 0.02, size)
    phi = _wrap_phi(jets.columns["phi"][fake] + rng.normal(0.0, 0.02, size))
    decay_mode = rng.choice(TAU_DECAY_MODES, size=size, p=FAKE_DECAY_MODE_PROBS)
    kinematics = (pt, eta, phi, _visible_tau_mass(rng, decay_mode))
    return _tau_objects(rng, jets.event[fake], kinematics, _random_charge(rng, size), decay_mode, "jet")


def _lepton_fake_taus(rng: np.random.Generator, leptons: _Objects, rate: float, origin: str) -> _Objects:
    """Taus faked by electrons or muons (one-prong decay modes, low DeepTau-vs-lepton scores)."""
    fake = rng.random(len(leptons.event)) < rate
    size = int(fake.sum())
    pt = leptons.columns["pt"][fake] * (1.0 + TAU_PT_RESOLUTION * rng.normal(size=size))
    decay_mode = rng.choice(np.array([0, 1]), size=size)
    columns = leptons.columns
    kinematics = (pt, columns["eta"][fake], columns["phi"][fake], _visible_tau_mass(rng, decay_mode))
    return _tau_objects(rng, leptons.event[fake], kinematics, columns["charge"][fake], decay_mode, origin)


def _reco_leptons(rng: np.random.Generator, leptons: _Leptons, spec: _LeptonSpec) -> _Objects:
    """Smears generator leptons of one flavour, applying acceptance, efficiency, identification and isolation."""
    flavour = leptons.pdg == spec.pdg
    p4, charge = leptons.p4[flavour], leptons.charge[flavour]
    pt = _pt(p4) * (1.0 + spec.pt_resolution * rng.normal(size=len(p4)))
    eta = _eta(p4)
    keep = (pt > spec.pt_min) & (np.abs(eta) < spec.abs_eta_max) & (rng.random(len(p4)) < spec.efficiency)
    size = int(keep.sum())
    id_rate = spec.prompt_id_rate if leptons.prompt else spec.nonprompt_id_rate
    isolation = rng.exponential(0.03, size) if leptons.prompt else 0.15 + rng.exponential(0.5, size)
    columns = {
        "pt": pt[keep],
        "eta": eta[keep],
        "phi": _phi(p4)[keep],
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


def _reconstruct(rng: np.random.Generator, state: _FinalState) -> ak.Array:
    """Runs the detector model on a final state and returns NanoAOD-like event records."""
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
        ht += np.bincount(partons.event, _pt(partons.p4), minlength=n)
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


# --------------------------------------------------------------------------------------------------------------------
# public interface
# --------------------------------------------------------------------------------------------------------------------


def _validate_processes(processes: dict[str, float]) -> None:
    """Raises ValueError for unknown process names and negative counts."""
    if not processes:
        raise ValueError("no processes given; known processes: " + ", ".join(PROCESS_GENERATORS))
    for name, count in processes.items():
        if name not in PROCESS_GENERATORS:
            raise ValueError(f"unknown process '{name}'; known processes: {', '.join(PROCESS_GENERATORS)}")
        if count < 0:
            raise ValueError(f"negative number of events {count} for process '{name}'")


def _process_rng(seed: int, file_index: int, is_data: bool, process: str) -> np.random.Generator:
    """Independent random stream per (seed, file, data/MC, process)."""
    return np.random.default_rng([seed, file_index, int(is_data), zlib.crc32(process.encode())])


def draw_counts(processes: dict[str, float], seed: int, file_index: int) -> dict[str, int]:
    """Draws the number of events of each process in one data file.

    Args:
        processes: Process name to the expected number of events per file.
        seed: Dataset seed.
        file_index: Index of the file within the dataset.

    Returns:
        Process name to a Poisson-distributed number of events, deterministic in (seed, file_index).

    Raises:
        ValueError: For unknown processes or negative expectations.
    """
    _validate_processes(processes)
    rng = np.random.default_rng([seed, file_index])
    return {name: int(rng.poisson(processes[name])) for name in sorted(processes)}


def _gen_weights(rng: np.random.Generator, process: str, n: int) -> np.ndarray:
    """Constant-magnitude generator weights with a small process-dependent fraction of negative ones."""
    magnitude, negative_fraction = _GEN_WEIGHTS.get(process, (1.0, 0.0))
    return np.where(rng.random(n) < negative_fraction, -magnitude, magnitude).astype(np.float32)


def _event_identity(n: int, file_index: int, is_data: bool) -> dict[str, np.ndarray]:
    """run, luminosityBlock and event numbers, unique within a dataset of files."""
    index = np.arange(n, dtype=np.uint64)
    run = DATA_FIRST_RUN + file_index if is_data else 1
    lumi = file_index * LUMI_BLOCKS_PER_FILE + index // EVENTS_PER_LUMI_BLOCK + 1
    return {
        "run": np.full(n, run, dtype=np.uint32),
        "luminosityBlock": lumi.astype(np.uint32),
        "event": np.uint64(file_index) * np.uint64(EVENTS_PER_FILE_MAX) + index + np.uint64(1),
    }


def _true_interactions(events: ak.Array, seed: int, file_index: int) -> np.ndarray:
    """The true number of interactions of simulated events (``Pileup_nTrueInt``), given their vertices.

    The vertices are Poisson distributed around PILEUP_MEAN_VERTICES; given n vertices, the mean they were drawn
    from is Gamma(n + 1) distributed. A stream of its own keeps every other column as it was.
    """
    npvs = ak.to_numpy(events["PV"]["npvs"]).astype(np.float64)
    rng = np.random.default_rng([seed, file_index, 4])  # 3 is the layouts' stream
    return rng.gamma(npvs + 1.0).astype(np.float32)


def generate_events(processes: dict[str, float], seed: int, file_index: int, is_data: bool) -> ak.Array:
    """Generates the events of one file.

    Args:
        processes: Process name to the number of events (MC, truncated to int) or the expected number (data).
        seed: Dataset seed.
        file_index: Index of the file within the dataset.
        is_data: Whether to produce data (Poisson counts, shuffled processes, no generator information).

    Returns:
        Event records with run/luminosityBlock/event, genWeight and Pileup.nTrueInt (MC only) and the NanoAOD-like
        collections.

    Raises:
        ValueError: For unknown processes, negative counts or a negative file index.
    """
    _validate_processes(processes)
    if file_index < 0:
        raise ValueError(f"file_index must be non-negative, got {file_index}")
    counts = draw_counts(processes, seed, file_index) if is_data else {k: int(v) for k, v in processes.items()}
    if max(counts.values()) >= EVENTS_PER_FILE_MAX:
        raise ValueError(f"at most {EVENTS_PER_FILE_MAX - 1} events per file are supported")
    parts, weights = [], []
    for name, count in counts.items():
        rng = _process_rng(seed, file_index, is_data, name)
        parts.append(PROCESS_GENERATORS[name](rng, count))
        weights.append(_gen_weights(rng, name, count))
    events = ak.concatenate(parts) if len(parts) > 1 else parts[0]
    columns = _event_identity(len(events), file_index, is_data)
    if is_data:
        events = events[np.random.default_rng([seed, file_index, 2]).permutation(len(events))]
        events = ak.with_field(events, ak.without_field(events["Jet"], "hadronFlavour"), "Jet")
    else:
        columns["genWeight"] = np.concatenate(weights)
        columns["Pileup"] = ak.zip({"nTrueInt": _true_interactions(events, seed, file_index)})
    columns.update({name: events[name] for name in events.fields})
    return ak.zip(columns, depth_limit=1)


def nanoaod_branches(events: ak.Array) -> dict[str, np.ndarray | ak.Array]:
    """Flattens event records into mktree input.

    Jagged collections stay records (mktree makes nX and X_y branches of them); per-event records (MET, PV) are
    split into X_y branches.
    """
    branches: dict[str, np.ndarray | ak.Array] = {}
    for name in events.fields:
        column = events[name]
        if column.ndim > 1:
            branches[name] = column
        elif column.fields:
            branches.update({f"{name}_{sub}": ak.to_numpy(column[sub]) for sub in column.fields})
        else:
            branches[name] = ak.to_numpy(column)
    return branches


def write_nanoaod(path: str | os.PathLike, events: ak.Array) -> None:
    """Writes events as a NanoAOD-layout TTree 'Events', atomically.

    The tree is written to a temporary sibling file that replaces `path` only once complete, so an interrupted
    write never leaves a partial file at `path`.

    Args:
        path: Output ROOT file; its parent directory is created.
        events: Event records as returned by `generate_events`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    branches = nanoaod_branches(events)
    # a unique hidden sibling: same file system (atomic os.replace) and never picked up as a finished file
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with uproot.recreate(tmp_path, compression=COMPRESSION) as output:
            output.mktree(EVENT_TREE_NAME, branches)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def create_file(
    path: str,
    file_index: int,
    processes: dict[str, float],
    seed: int,
    is_data: bool = False,
    layout: str = DEFAULT_LAYOUT,
) -> None:
    """Generates and writes one file of an embedded dataset (the framework's entry point).

    Args:
        path: Output ROOT file.
        file_index: Index of the file within the dataset.
        processes: Process name to the number of events per file (MC) or the expected number per file (data).
        seed: Dataset seed.
        is_data: Whether the dataset is data.
        layout: Branch layout of a NanoAOD version, a key of `sample.layouts.LAYOUTS`.

    Raises:
        ValueError: For an unknown layout (listing the known ones), unknown processes or negative counts.
    """
    get_layout(layout)  # fail before generating
    events = generate_events(processes, seed, file_index, is_data)
    write_nanoaod(path, apply_layout(events, layout, seed, file_index))
