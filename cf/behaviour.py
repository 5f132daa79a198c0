"""coffea's NanoAOD behaviours on the chunks column functions work on, and their removal before writing.

With behaviours, the physics objects are four-vectors: ``(jet_1 + jet_2).mass``, ``jets.delta_r(muon)``,
``jets.metric_table(leptons)``, ``jets.nearest(leptons)``. A column function attaches them where it uses them
(as columnflow's ``attach_coffea_behavior``)::

    events = attach_coffea_behavior(events)                  # Jet, Electron, Muon, Tau, MET, ...
    m_jj = (events.Jet[:, 0] + events.Jet[:, 1]).mass

The framework's parquet writer (:class:`cf.io.ParquetWriter`) stores plain arrow types, without awkward's
parameters, so behaviours and record names never reach the files: what is read back are plain records. coffea
is imported only when a behaviour is attached.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from cf.columnar_util import FlatObjects

__all__ = ["DEFAULT_COLLECTIONS", "attach_coffea_behavior", "four_vectors", "min_delta_r", "nanoaod_behavior"]

#: Collection -> the coffea NanoAOD type it gets (the names of ``coffea.nanoevents.methods.nanoaod``).
DEFAULT_COLLECTIONS: dict[str, str] = {
    "Jet": "Jet",
    "FatJet": "FatJet",
    "Electron": "Electron",
    "Muon": "Muon",
    "Tau": "Tau",
    "Photon": "Photon",
    "MET": "MissingET",
    "PuppiMET": "MissingET",
}


#: The fields of a four-vector, converted to double precision by :func:`four_vectors`.
KINEMATICS = frozenset({"pt", "eta", "phi", "mass"})
#: The coffea types that are candidates (four-vectors with a ``charge`` field).
CANDIDATE_TYPES = frozenset({"Jet", "FatJet", "Electron", "Muon", "Tau", "Photon"})


def nanoaod_behavior() -> dict[Any, Any]:
    """The NanoAOD behaviour of coffea (four-vectors, two-vectors and the NanoAOD object types)."""
    from coffea.nanoevents.methods import nanoaod

    return nanoaod.behavior


def attach_coffea_behavior(events: ak.Array, collections: Mapping[str, str] | None = None) -> ak.Array:
    """The events with coffea's NanoAOD behaviour on the collections they have.

    Args:
        events: The chunk (fields as the NanoAOD collections: ``Jet``, ``Muon``, ...).
        collections: Collection -> coffea type name (default: :data:`DEFAULT_COLLECTIONS`); collections the
            events do not have are left out.

    Returns:
        The events as an array with the behaviour; the columns are the same.
    """
    behavior = nanoaod_behavior()
    named = collections if collections is not None else DEFAULT_COLLECTIONS
    fields = {
        field: ak.with_name(events[field], _type_name(events[field], named[field]), behavior=behavior)
        if field in named
        else events[field]
        for field in events.fields
    }
    return ak.zip(fields, depth_limit=1, behavior=behavior)


def _type_name(objects: ak.Array, type_name: str) -> str:
    """The coffea type, or a plain four-vector where the objects lack the charge coffea's candidates need."""
    if type_name in CANDIDATE_TYPES and "charge" not in objects.fields:
        return "PtEtaPhiMLorentzVector"
    return type_name


def four_vectors(objects: ak.Array, fields: tuple[str, ...] = ("pt", "eta", "phi", "mass", "charge")) -> ak.Array:
    """Objects of any collection as one coffea type of the given fields (those the objects have; mass 0 without).

    The kinematic fields are taken in double precision: NanoAOD stores single precision, in which the mass of two
    nearly collinear objects loses up to 1e-3 of its value to rounding.

    ``PtEtaPhiMCandidate`` with a charge, else ``PtEtaPhiMLorentzVector``: collections of different types
    (electrons and muons) become one type, so that they can be concatenated or chosen between with ``ak.where``
    and keep their four-vector methods.
    """
    from coffea.nanoevents.methods import candidate

    columns = {
        field: ak.values_astype(objects[field], np.float64) if field in KINEMATICS else objects[field]
        for field in fields
        if field in objects.fields
    }
    if "mass" not in columns:
        columns["mass"] = ak.zeros_like(columns["pt"])  # massless: enough for angles such as delta_r
    name = "PtEtaPhiMCandidate" if "charge" in columns else "PtEtaPhiMLorentzVector"
    return ak.zip(columns, with_name=name, behavior=candidate.behavior)


def min_delta_r(objects: ak.Array | FlatObjects, others: ak.Array | FlatObjects) -> np.ndarray:
    """For each object (flattened), the distance in (eta, phi) to the closest other object of its event.

    ``inf`` for an object without others in its event. The values are those of coffea's ``delta_r`` of the
    objects' double-precision four-vectors (:func:`four_vectors`), bit for bit: the same formula,
    ``sqrt(dphi**2 + deta**2)`` with ``dphi`` wrapped into [-pi, pi), evaluated on flat numpy arrays of all
    (object, other) pairs instead of on awkward records of them, which takes half the time.
    ``objects`` and ``others`` need ``eta`` and ``phi``; either may be given as :class:`FlatObjects` (e.g. the
    selected leptons: ``FlatObjects(events.Muon).selected(mask)``), which saves making them jagged first.
    """
    objects, others = (x if isinstance(x, FlatObjects) else FlatObjects(x) for x in (objects, others))
    counts, other_counts = objects.counts, others.counts
    # per object: the number of others in its event and the index of the first of them
    n_pairs = np.repeat(other_counts, counts)
    first_other = np.repeat(np.cumsum(other_counts) - other_counts, counts)
    # per pair (those of an object are consecutive): the object and the other
    pair_start = np.cumsum(n_pairs) - n_pairs
    pair_object = np.repeat(np.arange(len(n_pairs)), n_pairs)
    pair_other = np.arange(n_pairs.sum()) - np.repeat(pair_start - first_other, n_pairs)
    eta, phi = (objects[field].astype(np.float64, copy=False)[pair_object] for field in ("eta", "phi"))
    other_eta, other_phi = (others[field].astype(np.float64, copy=False)[pair_other] for field in ("eta", "phi"))
    delta_phi = (phi - other_phi + np.pi) % (2 * np.pi) - np.pi
    distance = np.sqrt(delta_phi**2 + (eta - other_eta) ** 2)
    closest = np.full(len(n_pairs), np.inf)
    has_pairs = n_pairs > 0
    if has_pairs.any():
        closest[has_pairs] = np.minimum.reduceat(distance, pair_start[has_pairs])
    return closest
