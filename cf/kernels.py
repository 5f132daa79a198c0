"""Compiled loops (numba) for columnar operations where awkward and numpy cost more than the arithmetic.

Each kernel works on flat numpy arrays and offsets and gives exactly the values of the array-based expression it
replaces (same operations in the same order, in double precision, no fast-math); the callers and their tests
say which. Compiled on first use and cached next to this file (``cache=True``), so that a process pays the
compilation once per checkout, not per run; numba itself comes with coffea and is imported with it anyway.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["closest_distances"]


@numba.njit(cache=True)
def closest_distances(
    offsets: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    other_offsets: np.ndarray,
    other_eta: np.ndarray,
    other_phi: np.ndarray,
) -> np.ndarray:  # pragma: no cover (compiled)
    """Per object, the (eta, phi) distance to the closest other object of the same event (``inf`` without)."""
    closest = np.full(len(eta), np.inf)
    for event in range(len(offsets) - 1):
        for i in range(offsets[event], offsets[event + 1]):
            for j in range(other_offsets[event], other_offsets[event + 1]):
                delta_phi = (phi[i] - other_phi[j] + np.pi) % (2 * np.pi) - np.pi
                distance = np.sqrt(delta_phi**2 + (eta[i] - other_eta[j]) ** 2)
                closest[i] = min(closest[i], distance)
    return closest
