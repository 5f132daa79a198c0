"""The simulated processes of the embedded sample: hard scattering, decays and the final state they leave.

Each generator in `PROCESS_GENERATORS` draws n events at parton level (production of the hard system, isotropic
two-body decays boosted into the lab frame, collinear tau decays, semileptonic b decays) into a
`sample.final_state.FinalState` and passes it through the detector model (`sample.detector.reconstruct`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import awkward as ak
import numpy as np

from sample.detector import B_JET_RESPONSE, JET_FAKE_TAU_RATES, LIGHT_JET_RESPONSE, reconstruct
from sample.final_state import FinalState, HadronicTaus, Leptons, Partons, flat, sum_per_event
from sample.kinematics import (
    breit_wigner,
    collinear_daughter,
    falling_pt,
    invariant_mass,
    p4_from_pt_eta_phi_m,
    produce_system,
    random_phi,
    two_body_decay,
    with_angular_spread,
)
from sample.physics import (
    B_SEMILEPTONIC_FRACTION,
    DY_RESONANT_FRACTION,
    GENUINE_DECAY_MODE_PROBS,
    ISR_PT_INDEX,
    ISR_PT_MIN,
    M_BOTTOM,
    M_HIGGS,
    M_TAU,
    M_TOP,
    M_W,
    M_Z,
    RESONANCE_MASSES,
    RESONANCE_RELATIVE_WIDTH,
    TAU_DECAY_MODES,
    TAU_TO_ELECTRON,
    TAU_TO_HADRONS,
    WIDTH_TOP,
    WIDTH_W,
    WIDTH_Z,
    lepton_mass,
    leptonic_tau_fraction,
    random_charge,
    random_lepton_flavour,
    visible_tau_mass,
)

__all__ = ["PROCESS_GENERATORS", "resonance_process"]


def _add_isr_jets(rng: np.random.Generator, state: FinalState, mean: float) -> np.ndarray:
    """Adds Poisson-distributed light-flavour ISR partons and returns the transverse recoil (n, 2) of the hard system.

    The hard system balances the ISR jets plus some unresolved radiation (intrinsic kT, soft emissions).
    """
    event = np.repeat(np.arange(state.n), rng.poisson(mean, state.n))
    size = len(event)
    pt = falling_pt(rng, size, ISR_PT_MIN, ISR_PT_INDEX)
    p4 = p4_from_pt_eta_phi_m(pt, rng.normal(0.0, 2.0, size), random_phi(rng, size), 0.0)
    state.partons.append(Partons(p4, event, 0, LIGHT_JET_RESPONSE, JET_FAKE_TAU_RATES["light"]))
    unresolved_pt, unresolved_phi = rng.exponential(8.0, state.n), random_phi(rng, state.n)
    unresolved = np.stack([unresolved_pt * np.cos(unresolved_phi), unresolved_pt * np.sin(unresolved_phi)], axis=-1)
    return unresolved - sum_per_event(p4[:, :2], event, state.n)


def _add_light_quarks(state: FinalState, p4: np.ndarray, valid: np.ndarray) -> None:
    """Adds light quarks (n, k, 4) where valid, e.g. from hadronic W decays."""
    event, p4 = flat(valid, p4)
    state.partons.append(Partons(p4, event, 0, LIGHT_JET_RESPONSE, JET_FAKE_TAU_RATES["light"]))


def _add_b_quarks(rng: np.random.Generator, state: FinalState, p4: np.ndarray) -> None:
    """Adds b quarks (n, k, 4); a fraction decays semileptonically into a soft non-isolated lepton and a neutrino.

    The lepton stays part of the jet (as in particle-flow jets) while the neutrino is lost from it.
    """
    event, p4 = flat(np.ones(p4.shape[:-1], dtype=bool), p4)
    semileptonic = rng.random(len(event)) < B_SEMILEPTONIC_FRACTION
    neutrino_fraction = np.where(semileptonic, rng.beta(1.5, 6.0, len(event)), 0.0)
    state.add_invisible(collinear_daughter(p4, neutrino_fraction, 0.0), event)
    jet = collinear_daughter(p4, 1.0 - neutrino_fraction, M_BOTTOM)
    state.partons.append(Partons(jet, event, 5, B_JET_RESPONSE, JET_FAKE_TAU_RATES["bottom"]))
    event, p4 = event[semileptonic], p4[semileptonic]
    pdg = np.where(rng.random(len(event)) < 0.5, 11, 13)
    lepton = collinear_daughter(p4, rng.beta(2.0, 6.0, len(event)), lepton_mass(pdg))
    lepton = with_angular_spread(rng, lepton, 0.1, lepton_mass(pdg))
    state.leptons.append(Leptons(lepton, event, random_charge(rng, len(event)), pdg, prompt=False))


def _add_taus(
    rng: np.random.Generator, state: FinalState, p4: np.ndarray, charge: np.ndarray, valid: np.ndarray
) -> None:
    """Decays taus (n, k, 4) collinearly where valid.

    Visible products are hadronic taus (also clustered as jets) or leptons; the neutrinos go to the invisible sum.
    """
    event, p4, charge = flat(valid, p4, charge)
    size = len(event)
    channel = rng.random(size)
    hadronic = channel < TAU_TO_HADRONS
    pdg = np.where(channel < TAU_TO_HADRONS + TAU_TO_ELECTRON, 11, 13)
    decay_mode = rng.choice(TAU_DECAY_MODES, size=size, p=GENUINE_DECAY_MODE_PROBS)
    hadronic_mass = visible_tau_mass(rng, decay_mode)
    # for an unpolarised two-body decay the visible fraction is flat between (m_vis / m_tau)^2 and 1
    hadronic_fraction = rng.uniform((hadronic_mass / M_TAU) ** 2, 1.0)
    fraction = np.where(hadronic, hadronic_fraction, leptonic_tau_fraction(rng, size))
    visible = collinear_daughter(p4, fraction, np.where(hadronic, hadronic_mass, lepton_mass(pdg)))
    state.add_invisible(p4 - visible, event)
    state.taus.append(HadronicTaus(visible[hadronic], event[hadronic], charge[hadronic], decay_mode[hadronic]))
    state.partons.append(Partons(visible[hadronic], event[hadronic], 0, 1.0, JET_FAKE_TAU_RATES["tau"]))
    leptonic = ~hadronic
    state.leptons.append(Leptons(visible[leptonic], event[leptonic], charge[leptonic], pdg[leptonic], prompt=True))


def _add_charged_leptons(
    rng: np.random.Generator, state: FinalState, p4: np.ndarray, charge: np.ndarray, pdg: np.ndarray, valid: np.ndarray
) -> None:
    """Adds prompt charged leptons (n, k, 4) of flavour pdg 11, 13 or 15 where valid (taus are decayed)."""
    event, light_p4, light_charge, light_pdg = flat(valid & (pdg != 15), p4, charge, pdg)
    state.leptons.append(Leptons(light_p4, event, light_charge, light_pdg, prompt=True))
    _add_taus(rng, state, p4, charge, valid & (pdg == 15))


def _pair(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Stacks per-event quantities of two objects into (n, 2, ...)."""
    return np.stack([first, second], axis=1)


def _decay_hh_to_bbtautau(rng: np.random.Generator, state: FinalState, hh_system: np.ndarray) -> None:
    """Decays di-Higgs systems (n, 4) into b quarks and taus (one Higgs boson each)."""
    n = len(hh_system)
    higgs_bb, higgs_tautau = two_body_decay(rng, hh_system, M_HIGGS, M_HIGGS)
    _add_b_quarks(rng, state, _pair(*two_body_decay(rng, higgs_bb, M_BOTTOM, M_BOTTOM)))
    charge = random_charge(rng, n)
    taus = _pair(*two_body_decay(rng, higgs_tautau, M_TAU, M_TAU))
    _add_taus(rng, state, taus, _pair(charge, -charge), np.ones((n, 2), dtype=bool))


def _generate_hh_ggf_bbtautau(rng: np.random.Generator, n: int) -> ak.Array:
    """Gg -> HH -> bb tautau."""
    state = FinalState(n)
    recoil = _add_isr_jets(rng, state, mean=0.5)
    mass_hh = 2 * M_HIGGS + rng.gamma(3.0, 70.0, n)
    _decay_hh_to_bbtautau(rng, state, produce_system(rng, mass_hh, recoil, 1.0))
    return reconstruct(rng, state)


def _generate_x_hh_bbtautau(rng: np.random.Generator, n: int, mass: float) -> ak.Array:
    """Gg -> X -> HH -> bb tautau for a narrow scalar X of the given mass.

    The di-Higgs mass follows a Breit-Wigner of width ``RESONANCE_RELATIVE_WIDTH * mass`` around the mass
    (truncated at the HH threshold and at 1.5 times the mass); the production is that of the gluon-fusion HH
    sample (the same ISR and rapidity), so only the di-Higgs mass distinguishes the two.
    """
    state = FinalState(n)
    recoil = _add_isr_jets(rng, state, mean=0.5)
    width = RESONANCE_RELATIVE_WIDTH * mass
    mass_hh = breit_wigner(rng, n, mass, width, 2 * M_HIGGS + 1.0, 1.5 * mass)
    _decay_hh_to_bbtautau(rng, state, produce_system(rng, mass_hh, recoil, 1.0))
    return reconstruct(rng, state)


def resonance_process(mass: int) -> str:
    """The generator's process name of the resonant signal of a mass in GeV, e.g. ``x_hh_bbtautau_m500``."""
    return f"x_hh_bbtautau_m{mass}"


def _decay_top(rng: np.random.Generator, state: FinalState, top: np.ndarray, charge: int, leptonic: np.ndarray) -> None:
    """Decays tops (n, 4) into b W, with the W decaying to a lepton and a neutrino where leptonic, else to quarks."""
    n = len(top)
    mass_w = breit_wigner(rng, n, M_W, WIDTH_W, 50.0, invariant_mass(top) - M_BOTTOM - 0.1)
    bottom, w_boson = two_body_decay(rng, top, M_BOTTOM, mass_w)
    _add_b_quarks(rng, state, bottom[:, None])
    pdg = random_lepton_flavour(rng, n)
    first, second = two_body_decay(rng, w_boson, np.where(leptonic, lepton_mass(pdg), 0.0), 0.0)
    _add_light_quarks(state, _pair(first, second), _pair(~leptonic, ~leptonic))
    _add_charged_leptons(rng, state, first[:, None], np.full((n, 1), charge), pdg[:, None], leptonic[:, None])
    state.add_invisible(second[leptonic], np.nonzero(leptonic)[0])


def _generate_top_pairs(rng: np.random.Generator, n: int, n_leptonic: int) -> ak.Array:
    """Pp -> tt with n_leptonic (1 or 2) leptonically decaying W bosons."""
    state = FinalState(n)
    recoil = _add_isr_jets(rng, state, mean=0.8)
    mass_top = breit_wigner(rng, n, M_TOP, WIDTH_TOP, 160.0, 185.0)
    mass_antitop = breit_wigner(rng, n, M_TOP, WIDTH_TOP, 160.0, 185.0)
    mass_tt = mass_top + mass_antitop + rng.gamma(1.8, 90.0, n)
    top, antitop = two_body_decay(rng, produce_system(rng, mass_tt, recoil, 1.0), mass_top, mass_antitop)
    top_leptonic = np.ones(n, dtype=bool) if n_leptonic == 2 else rng.random(n) < 0.5
    antitop_leptonic = top_leptonic if n_leptonic == 2 else ~top_leptonic
    _decay_top(rng, state, top, +1, top_leptonic)
    _decay_top(rng, state, antitop, -1, antitop_leptonic)
    return reconstruct(rng, state)


def _generate_tt_sl(rng: np.random.Generator, n: int) -> ak.Array:
    """Pp -> tt -> b q q' b l nu."""
    return _generate_top_pairs(rng, n, n_leptonic=1)


def _generate_tt_dl(rng: np.random.Generator, n: int) -> ak.Array:
    """Pp -> tt -> b l nu b l nu."""
    return _generate_top_pairs(rng, n, n_leptonic=2)


def _drell_yan_mass(rng: np.random.Generator, n: int) -> np.ndarray:
    """Z resonance above 50 GeV plus a falling (~1/m^3) photon continuum."""
    resonance = breit_wigner(rng, n, M_Z, WIDTH_Z, 50.0, 500.0)
    continuum = falling_pt(rng, n, 50.0, 2.0)
    return np.where(rng.random(n) < DY_RESONANT_FRACTION, resonance, continuum)


def _generate_dy_lep_m50(rng: np.random.Generator, n: int) -> ak.Array:
    """Pp -> Z/gamma* -> ll with m_ll > 50 GeV."""
    state = FinalState(n)
    recoil = _add_isr_jets(rng, state, mean=1.0)
    boson = produce_system(rng, _drell_yan_mass(rng, n), recoil, 1.8)
    pdg = random_lepton_flavour(rng, n)
    leptons = _pair(*two_body_decay(rng, boson, lepton_mass(pdg), lepton_mass(pdg)))
    charge = random_charge(rng, n)
    _add_charged_leptons(rng, state, leptons, _pair(charge, -charge), _pair(pdg, pdg), np.ones((n, 2), dtype=bool))
    return reconstruct(rng, state)


PROCESS_GENERATORS: dict[str, Callable[[np.random.Generator, int], ak.Array]] = {
    "hh_ggf_bbtautau": _generate_hh_ggf_bbtautau,
    "tt_sl": _generate_tt_sl,
    "tt_dl": _generate_tt_dl,
    "dy_lep_m50": _generate_dy_lep_m50,
    **{
        resonance_process(mass): functools.partial(_generate_x_hh_bbtautau, mass=float(mass))
        for mass in RESONANCE_MASSES
    },
}
