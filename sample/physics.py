"""Particle properties, branching fractions and the particle-level distributions of the embedded sample.

Everything here is generator level: what the simulated processes produce before the detector model
(`sample.detector`) sees it.
"""

from __future__ import annotations

import numpy as np

from sample.kinematics import breit_wigner

__all__ = [
    "B_SEMILEPTONIC_FRACTION",
    "DY_RESONANT_FRACTION",
    "FAKE_DECAY_MODE_PROBS",
    "GENUINE_DECAY_MODE_PROBS",
    "GEN_WEIGHTS",
    "ISR_PT_INDEX",
    "ISR_PT_MIN",
    "M_BOTTOM",
    "M_ELECTRON",
    "M_HIGGS",
    "M_MUON",
    "M_PION",
    "M_TAU",
    "M_TOP",
    "M_W",
    "M_Z",
    "RESONANCE_MASSES",
    "RESONANCE_RELATIVE_WIDTH",
    "TAU_DECAY_MODES",
    "TAU_TO_ELECTRON",
    "TAU_TO_HADRONS",
    "TAU_VISIBLE_LINE_SHAPES",
    "WIDTH_TOP",
    "WIDTH_W",
    "WIDTH_Z",
    "lepton_mass",
    "leptonic_tau_fraction",
    "random_charge",
    "random_lepton_flavour",
    "visible_tau_mass",
]

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
#: The masses in GeV of the narrow scalar X -> HH of the resonant signal samples (``x_hh_bbtautau_m<mass>``).
RESONANCE_MASSES: tuple[int, ...] = (300, 400, 500, 700, 1000)
#: The width of X as a fraction of its mass (narrow: below the detector's di-Higgs mass resolution).
RESONANCE_RELATIVE_WIDTH = 0.01

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

# initial-state radiation: power-law pt spectrum above the minimum
ISR_PT_MIN, ISR_PT_INDEX = 15.0, 2.3

# (magnitude, negative fraction) of the generator weights per process
GEN_WEIGHTS = {
    "hh_ggf_bbtautau": (1.0, 0.015),
    **{f"x_hh_bbtautau_m{mass}": (1.0, 0.015) for mass in RESONANCE_MASSES},
    "tt_sl": (1.0, 0.004),
    "tt_dl": (1.0, 0.004),
    "dy_lep_m50": (1.0, 0.025),
}


def visible_tau_mass(rng: np.random.Generator, decay_mode: np.ndarray) -> np.ndarray:
    """Visible mass of hadronic tau decays: pion, rho or a1 line shapes depending on the decay mode."""
    mass = np.full(len(decay_mode), M_PION)
    for mode, (peak, width, low, high) in TAU_VISIBLE_LINE_SHAPES.items():
        selected = decay_mode == mode
        mass[selected] = breit_wigner(rng, int(selected.sum()), peak, width, low, high)
    return mass


def leptonic_tau_fraction(rng: np.random.Generator, size: int) -> np.ndarray:
    """Visible momentum fraction of leptonic tau decays in the collinear limit, f(x) = (1-x)(5+5x-4x^2)/3."""
    grid = np.linspace(0.0, 1.0, 513)
    cdf = (5.0 * grid - 3.0 * grid**3 + grid**4) / 3.0
    return np.interp(rng.random(size), cdf, grid)


def lepton_mass(pdg: np.ndarray) -> np.ndarray:
    """Masses of charged leptons given their absolute pdg ids (11, 13 or 15)."""
    return np.select([pdg == 11, pdg == 13], [M_ELECTRON, M_MUON], M_TAU)


def random_lepton_flavour(rng: np.random.Generator, size: int) -> np.ndarray:
    """Lepton pdg ids 11, 13, 15 with equal probability (lepton universality)."""
    return rng.choice(np.array([11, 13, 15]), size=size)


def random_charge(rng: np.random.Generator, size: int) -> np.ndarray:
    """Charges -1 or +1 with equal probability."""
    return np.where(rng.random(size) < 0.5, -1, 1)
