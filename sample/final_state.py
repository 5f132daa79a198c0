"""The generator-level final state that the processes fill and the detector model reconstructs.

It is stored flat: one row per object plus the index of its event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FinalState", "HadronicTaus", "Leptons", "Partons", "flat", "sum_per_event"]


@dataclass
class Partons:
    """Coloured partons (or visible hadronic taus) that become jets.

    Attributes:
        p4: Four-vectors (m, 4).
        event: Index of the event of each parton.
        flavour: Hadron flavour of the jets they become (5 for b, else 0).
        response: Mean ratio of measured to true jet pt.
        fake_tau_rate: Probability that a jet of theirs is also reconstructed as a tau.
    """

    p4: np.ndarray
    event: np.ndarray
    flavour: int
    response: float
    fake_tau_rate: float


@dataclass
class Leptons:
    """Electrons and muons at generator level.

    Attributes:
        p4: Four-vectors (m, 4).
        event: Index of the event of each lepton.
        charge: Charges (-1 or +1).
        pdg: Absolute pdg ids (11 or 13).
        prompt: Whether they are prompt (isolated) rather than from hadron decays.
    """

    p4: np.ndarray
    event: np.ndarray
    charge: np.ndarray
    pdg: np.ndarray
    prompt: bool


@dataclass
class HadronicTaus:
    """Visible products of hadronic tau decays.

    Attributes:
        p4: Visible four-vectors (m, 4).
        event: Index of the event of each tau.
        charge: Charges (-1 or +1).
        decay_mode: Reconstructed decay modes (0, 1, 10 or 11).
    """

    p4: np.ndarray
    event: np.ndarray
    charge: np.ndarray
    decay_mode: np.ndarray


@dataclass
class FinalState:
    """Generator-level final state of n events, grouped by how its objects are reconstructed.

    Attributes:
        n: Number of events.
        partons: Blocks of partons that become jets.
        leptons: Blocks of electrons and muons.
        taus: Blocks of hadronic taus.
        invisible: Transverse momentum (n, 2) of the invisible particles of each event.
    """

    n: int
    partons: list[Partons] = field(default_factory=list)
    leptons: list[Leptons] = field(default_factory=list)
    taus: list[HadronicTaus] = field(default_factory=list)
    invisible: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.invisible = np.zeros((self.n, 2))

    def add_invisible(self, p4: np.ndarray, event: np.ndarray) -> None:
        """Adds the transverse momenta of neutrinos (m, 4) in the given events to the invisible sum."""
        self.invisible += sum_per_event(p4[:, :2], event, self.n)


def sum_per_event(values: np.ndarray, event: np.ndarray, n: int) -> np.ndarray:
    """Sums per-object transverse vectors (m, 2) into per-event sums (n, 2)."""
    return np.stack([np.bincount(event, values[:, i], minlength=n) for i in range(2)], axis=-1)


def flat(valid: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Event indices of the selected (n, k) slots, followed by the selected entries of each (n, k, ...) array."""
    return (np.nonzero(valid)[0], *(array[valid] for array in arrays))
