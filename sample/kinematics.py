"""Four-vector kinematics and kinematic samplers of the embedded sample's generator.

Four-vectors are arrays of shape (..., 4) holding (px, py, pz, E).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "azimuth",
    "boost",
    "breit_wigner",
    "collinear_daughter",
    "falling_pt",
    "invariant_mass",
    "p4_from_pt_eta_phi_m",
    "produce_system",
    "pseudorapidity",
    "random_phi",
    "transverse_momentum",
    "two_body_decay",
    "with_angular_spread",
    "wrap_phi",
]


def p4_from_pt_eta_phi_m(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray | float) -> np.ndarray:
    """Builds four-vectors from transverse momentum, pseudorapidity, azimuth and mass."""
    pz = pt * np.sinh(eta)
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + np.square(mass))
    return np.stack([pt * np.cos(phi), pt * np.sin(phi), pz, energy], axis=-1)


def transverse_momentum(p4: np.ndarray) -> np.ndarray:
    """Transverse momentum."""
    return np.hypot(p4[..., 0], p4[..., 1])


def pseudorapidity(p4: np.ndarray) -> np.ndarray:
    """Pseudorapidity (finite for vanishing transverse momentum)."""
    return np.arcsinh(p4[..., 2] / np.maximum(transverse_momentum(p4), 1e-9))


def azimuth(p4: np.ndarray) -> np.ndarray:
    """Azimuthal angle in (-pi, pi]."""
    return np.arctan2(p4[..., 1], p4[..., 0])


def invariant_mass(p4: np.ndarray) -> np.ndarray:
    """Invariant mass, clipped at zero against rounding."""
    return np.sqrt(np.maximum(p4[..., 3] ** 2 - np.sum(p4[..., :3] ** 2, axis=-1), 0.0))


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Maps angles into [-pi, pi)."""
    return (phi + np.pi) % (2 * np.pi) - np.pi


def boost(p4: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Lorentz-boosts four-vectors (..., 4) by the velocities beta (..., 3)."""
    beta2 = np.sum(beta**2, axis=-1, keepdims=True)
    gamma = 1.0 / np.sqrt(1.0 - beta2)
    beta_dot_p = np.sum(beta * p4[..., :3], axis=-1, keepdims=True)
    gamma_term = np.divide(gamma - 1.0, beta2, out=np.zeros_like(beta2), where=beta2 > 0)
    momentum = p4[..., :3] + (gamma_term * beta_dot_p + gamma * p4[..., 3:]) * beta
    energy = gamma * (p4[..., 3:] + beta_dot_p)
    return np.concatenate([momentum, energy], axis=-1)


def two_body_decay(
    rng: np.random.Generator, parent: np.ndarray, mass1: np.ndarray | float, mass2: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Decays parents isotropically in their rest frame into two daughters and boosts them into the lab frame."""
    shape = parent.shape[:-1]
    mass = invariant_mass(parent)
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
    return boost(daughter1, beta), boost(daughter2, beta)


def collinear_daughter(parent: np.ndarray, fraction: np.ndarray, mass: np.ndarray | float) -> np.ndarray:
    """A daughter carrying a fraction of the parent's three-momentum along its direction, with the given mass."""
    momentum = parent[..., :3] * fraction[..., None]
    energy = np.sqrt(np.sum(momentum**2, axis=-1) + np.square(mass))
    return np.concatenate([momentum, energy[..., None]], axis=-1)


def with_angular_spread(rng: np.random.Generator, p4: np.ndarray, sigma: float, mass: np.ndarray) -> np.ndarray:
    """Moves four-vectors (m, 4) by Gaussian offsets in eta and phi, keeping their transverse momentum."""
    eta = pseudorapidity(p4) + rng.normal(0.0, sigma, len(p4))
    phi = azimuth(p4) + rng.normal(0.0, sigma, len(p4))
    return p4_from_pt_eta_phi_m(transverse_momentum(p4), eta, phi, mass)


def produce_system(rng: np.random.Generator, mass: np.ndarray, recoil: np.ndarray, rapidity_width: float) -> np.ndarray:
    """Four-vectors of a hard system with the given mass, transverse momentum (n, 2) and a Gaussian rapidity."""
    rapidity = np.clip(rng.normal(0.0, rapidity_width, len(mass)), -3.0, 3.0)
    transverse_mass = np.sqrt(mass**2 + np.sum(recoil**2, axis=-1))
    longitudinal = np.stack([transverse_mass * np.sinh(rapidity), transverse_mass * np.cosh(rapidity)], axis=-1)
    return np.concatenate([recoil, longitudinal], axis=-1)


def breit_wigner(
    rng: np.random.Generator, size: int, mass: float, width: float, low: float, high: np.ndarray | float
) -> np.ndarray:
    """Samples a (non-relativistic) Breit-Wigner line shape truncated to [low, high]."""
    lower = np.arctan(2.0 * (low - mass) / width)
    upper = np.arctan(2.0 * (high - mass) / width)
    return mass + 0.5 * width * np.tan(rng.uniform(lower, upper, size))


def falling_pt(rng: np.random.Generator, size: int, pt_min: float, index: float) -> np.ndarray:
    """Power-law (Pareto) spectrum above pt_min, capped to stay physical."""
    return np.minimum(pt_min * (1.0 - rng.random(size)) ** (-1.0 / index), 2000.0)


def random_phi(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uniform azimuthal angles."""
    return rng.uniform(-np.pi, np.pi, size)
