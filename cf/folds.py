"""The k-fold assignment of events: a stable function of the event identity.

An event keeps its fold whatever the chunking, the file splitting, the order of files, or the
calibration shift, because only ``(run, luminosityBlock, event)`` enter the hash.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from cf.columnar_util import IDENTITY_COLUMNS

__all__ = ["fold_indices"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: a fast bijective mixing of 64-bit integers (wrap-around intended)."""
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def event_hash(run: np.ndarray, lumi: np.ndarray, event: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of the event identity."""
    with np.errstate(over="ignore"):
        h = _splitmix64(np.asarray(event, dtype=np.uint64))
        h = _splitmix64(h ^ np.asarray(lumi, dtype=np.uint64))
        return _splitmix64(h ^ np.asarray(run, dtype=np.uint64))


def fold_indices(events: ak.Array, folds: int) -> np.ndarray:
    """The fold (0 ... folds - 1) of each event, from its ``run``, ``luminosityBlock`` and ``event``.

    Args:
        events: Events with the columns in ``IDENTITY_COLUMNS``.
        folds: The number of folds (>= 2).

    Returns:
        An int64 numpy array with one fold index per event.
    """
    if folds < 2:
        raise ValueError(f"the number of folds must be at least 2, got {folds}")
    missing = [column for column in IDENTITY_COLUMNS if column not in ak.fields(events)]
    if missing:
        raise KeyError(f"fold assignment needs the columns {IDENTITY_COLUMNS}, missing: {missing}")
    hashes = event_hash(*(ak.to_numpy(events[column]) for column in IDENTITY_COLUMNS))
    return (hashes % np.uint64(folds)).astype(np.int64)
