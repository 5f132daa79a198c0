"""Branch layouts of NanoAOD versions for the embedded sample.

`generate_events` produces canonical events in the layout of Run 2 UL NanoAOD (v9/v11). Each entry of `LAYOUTS`
is a pure function that rewrites them into the branch layout of another NanoAOD version, keeping the physics (and
every canonical column) unchanged, so that object definitions written for that version can be exercised. The
differences follow the NanoAOD release notes of each version and the CMS JME jet ID recipes:

* ``nano_v9``: Run 2 UL NanoAOD v9 (and v11), the canonical layout, unchanged (no trigger bits).
* ``nano_v6``: pre-UL 2018 NanoAOD v6: the v9 branches plus the 2018 trigger bits.
* ``nano_v1``: 2016 NanoAOD v1 (CMSSW 80X, release notes of NanoAOD v1): the electron MVA ID is
  ``Electron_mvaSpring16GP_WP90`` and taus carry the MVA isolation ``Tau_idMVAoldDM`` (6 working points VLoose to
  VVTight) with the discriminators ``Tau_idAntiEle`` (5 working points VLoose to VTight) and ``Tau_idAntiMu``
  (Loose, Tight) instead of DeepTau.
* ``nano_v12``: Run 3 2022 NanoAOD v12 (release notes of NanoAOD v12): ``Electron_mvaIso_WP90``, DeepTau 2018v2p5
  stored as working-point levels (number of passed working points) instead of bitmasks, ``PuppiMET`` next to
  ``MET``, and the jet energy fractions (``Jet_neHEF``, ``Jet_neEmEF``, ``Jet_chHEF``, ``Jet_chEmEF``,
  ``Jet_muEF``) needed to fix ``Jet_jetId`` in the forward region (CMS JME recommendation for v12).
* ``nano_v15``: Run 3 2024 NanoAOD v15 (release notes of NanoAOD v15): as ``nano_v12`` but without
  ``Jet_jetId`` (users recompute it with the CMS JME Run 3 AK4 PUPPI jet ID recipe from the energy fractions and
  ``Jet_chMultiplicity`` / ``Jet_neMultiplicity``), ``MET`` renamed ``PFMET`` and the UParT b-tag score
  ``Jet_btagUParTAK4B`` added.

Every layout but ``nano_v9`` carries the trigger bits of its era (`TRIGGER_MENUS`): single muon, single electron
and di-tau paths, emulated from the reconstructed objects (an ideal trigger at the path's threshold), so that the
configs' trigger requirements select the embedded sample as they select real files.

The jet energy fractions and multiplicities are drawn such that the Run 3 tight jet ID recipe gives back
``(Jet_jetId & 2) != 0`` of the canonical events for every jet at any eta, and the tight-lepton-veto criteria
(for |eta| <= 2.7) give back ``(Jet_jetId & 4) != 0``. Their random numbers come from `layout_rng`, a stream
independent of the generator's, so the canonical columns stay bit for bit what `generate_events` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

import awkward as ak
import numpy as np

__all__ = ["DEFAULT_LAYOUT", "LAYOUTS", "TRIGGER_MENUS", "TriggerMenu", "apply_layout", "get_layout", "layout_rng"]

DEFAULT_LAYOUT = "nano_v9"
# third entropy word of the layout stream; the generator uses 0 / 1 (MC / data, per process), 2 (data shuffling)
# and 4 (the true number of interactions)
_LAYOUT_STREAM = 3

# jet energy fractions of jets passing the tight ID: inside every region's bounds of the Run 3 recipe
# (neHEF < 0.90, neEmEF < 0.4, chHEF > 0.01 after scaling, chEmEF < 0.8)
_PASSING_FRACTION_RANGES = {
    "neHEF": (0.02, 0.3),
    "neEmEF": (0.02, 0.3),
    "chHEF": (0.2, 0.7),
    "chEmEF": (0.0, 0.1),
}
# jets failing the tight ID fail every region: neHEF >= 0.99 (|eta| <= 3.0) and neEmEF >= 0.4 (|eta| > 3.0)
_FAILING_NEHEF, _FAILING_NEEMEF = 0.995, 0.95
# tight jets failing the lepton veto (muEF >= 0.8), the others stay well below it
_LEPTON_VETO_FAILING_MUEF, _MUEF_MAX = 0.9, 0.05
# multiplicities of passing jets (inclusive ranges); failing jets get no charged and one neutral constituent
_CH_MULTIPLICITY_RANGE, _NE_MULTIPLICITY_RANGE = (1, 25), (2, 20)


@dataclass(frozen=True)
class TriggerMenu:
    """The HLT paths of an era that the embedded sample emulates, each with its offline-like threshold.

    Attributes:
        muon: The isolated single-muon path and its muon pt threshold (|eta| < 2.4, relative isolation < 0.15).
        electron: The single-electron path and its threshold (|eta| < 2.1, the MVA ID at 90% efficiency).
        ditau: The di-tau path and its threshold on both taus (|eta| < 2.1, DeepTau vs jets Medium).
    """

    muon: tuple[str, float]
    electron: tuple[str, float]
    ditau: tuple[str, float]


#: Per era, the trigger paths of CMS's single-muon, single-electron and di-tau streams (names as in NanoAOD).
TRIGGER_MENUS: dict[str, TriggerMenu] = {
    "2016": TriggerMenu(
        ("HLT_IsoMu24", 24.0), ("HLT_Ele27_WPTight_Gsf", 27.0), ("HLT_DoubleMediumIsoPFTau35_Trk1_eta2p1_Reg", 35.0)
    ),
    "2018": TriggerMenu(
        ("HLT_IsoMu24", 24.0),
        ("HLT_Ele32_WPTight_Gsf", 32.0),
        ("HLT_DoubleMediumChargedIsoPFTauHPS35_Trk1_eta2p1_Reg", 35.0),
    ),
    "run3": TriggerMenu(
        ("HLT_IsoMu24", 24.0), ("HLT_Ele30_WPTight_Gsf", 30.0), ("HLT_DoubleMediumDeepTauPFTauHPS35_L2NN_eta2p1", 35.0)
    ),
}


def _emulated_triggers(events: ak.Array, menu: TriggerMenu) -> ak.Array:
    """The trigger bits of ``menu`` from the canonical objects: per path, whether the event has its objects."""
    muons, electrons, taus = events.Muon, events.Electron, events.Tau
    muon_name, muon_pt = menu.muon
    electron_name, electron_pt = menu.electron
    ditau_name, ditau_pt = menu.ditau
    muon = (muons.pt > muon_pt) & (abs(muons.eta) < 2.4) & (muons.pfRelIso04_all < 0.15)
    electron = (electrons.pt > electron_pt) & (abs(electrons.eta) < 2.1) & electrons.mvaFall17V2Iso_WP90
    tau = (taus.pt > ditau_pt) & (abs(taus.eta) < 2.1) & ((taus.idDeepTau2017v2p1VSjet & 16) != 0)
    bits = {
        muon_name: ak.any(muon, axis=1),
        electron_name: ak.any(electron, axis=1),
        ditau_name: ak.sum(tau, axis=1) >= 2,
    }
    return ak.zip({name.removeprefix("HLT_"): ak.to_numpy(bit) for name, bit in bits.items()})


def _with_triggers(fields: dict[str, ak.Array], events: ak.Array, era: str) -> dict[str, ak.Array]:
    """The fields with the era's trigger bits appended (``HLT_<path>`` branches when written)."""
    return {**fields, "HLT": _emulated_triggers(events, TRIGGER_MENUS[era])}


_T = TypeVar("_T")
Layout = Callable[[ak.Array, np.random.Generator], ak.Array]


def layout_rng(seed: int, file_index: int) -> np.random.Generator:
    """Random stream of the layout conversions of one file, independent of the generator's streams.

    Args:
        seed: Dataset seed.
        file_index: Index of the file within the dataset.

    Returns:
        A generator deterministic in (seed, file_index).
    """
    return np.random.default_rng([seed, file_index, _LAYOUT_STREAM])


# --------------------------------------------------------------------------------------------------------------------
# helpers on ordered field mappings and flat collections
# --------------------------------------------------------------------------------------------------------------------


def _splice(mapping: dict[str, _T], anchor: str, new: dict[str, _T], drop: Collection[str] = ()) -> dict[str, _T]:
    """Inserts `new` right after `anchor` and drops the keys in `drop` (which may include the anchor)."""
    out: dict[str, _T] = {}
    for key, value in mapping.items():
        if key not in drop:
            out[key] = value
        if key == anchor:
            out.update(new)
    return out


def _renamed(mapping: dict[str, _T], old: str, new: str) -> dict[str, _T]:
    """Renames one key in place (keeping the order)."""
    return _splice(mapping, old, {new: mapping[old]}, drop={old})


def _event_fields(events: ak.Array) -> dict[str, ak.Array]:
    """Top-level fields of event records, in order."""
    return {name: events[name] for name in events.fields}


def _flat_columns(collection: ak.Array) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Counts per event and flat numpy columns of a jagged record collection."""
    counts = ak.to_numpy(ak.num(collection, axis=1))
    return counts, {name: ak.to_numpy(ak.flatten(collection[name], axis=1)) for name in collection.fields}


def _collection(counts: np.ndarray, columns: dict[str, np.ndarray]) -> ak.Array:
    """Jagged record collection from counts per event and flat columns."""
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    contents = [ak.contents.NumpyArray(np.ascontiguousarray(values)) for values in columns.values()]
    records = ak.contents.RecordArray(contents, list(columns), length=int(offsets[-1]))
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), records))


def _with_collection(
    events: dict[str, ak.Array], name: str, convert: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
) -> dict[str, ak.Array]:
    """Replaces the collection `name` by `convert` applied to its flat columns."""
    counts, columns = _flat_columns(events[name])
    return {**events, name: _collection(counts, convert(columns))}


# --------------------------------------------------------------------------------------------------------------------
# object conversions
# --------------------------------------------------------------------------------------------------------------------


def _deeptau_to_mva_old(tau: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """DeepTau 2017v2p1 bitmasks to the 2016 MVA isolation and anti-lepton discriminators (NanoAOD v1)."""
    vs_jet = tau["idDeepTau2017v2p1VSjet"]
    vs_e = tau["idDeepTau2017v2p1VSe"]
    vs_mu = tau["idDeepTau2017v2p1VSmu"]
    ids = {
        # 8 DeepTau working points VVVLoose..VVTight -> 6 MVA working points VLoose..VVTight
        "idMVAoldDM": (vs_jet >> 2).astype(np.uint8),
        # DeepTau VVLoose (bit 2) .. VTight -> anti-electron VLoose (bit 1) .. VTight
        "idAntiEle": ((vs_e >> 1) & 0x1F).astype(np.uint8),
        # DeepTau VLoose (bit 1) and Tight (bit 8) -> anti-muon Loose (bit 1) and Tight (bit 2)
        "idAntiMu": ((vs_mu & 1) | ((vs_mu & 8) >> 2)).astype(np.uint8),
    }
    deeptau = {"idDeepTau2017v2p1VSjet", "idDeepTau2017v2p1VSe", "idDeepTau2017v2p1VSmu"}
    return _splice(tau, "idDeepTau2017v2p1VSjet", ids, drop=deeptau)


def _deeptau_to_levels(tau: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """DeepTau 2017v2p1 bitmasks to 2018v2p5 working-point levels (number of passed working points, NanoAOD v12+)."""
    for target in ("jet", "e", "mu"):
        old, new = f"idDeepTau2017v2p1VS{target}", f"idDeepTau2018v2p5VS{target}"
        tau = _renamed(tau, old, new)
        tau[new] = np.bitwise_count(tau[new]).astype(np.uint8)
    return tau


def _jet_energy_fractions(jet_id: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Jet energy fractions consistent with the jet ID bits (2: tight, 4: tight lepton veto).

    Tight jets get fractions inside every eta region's bounds of the Run 3 tight ID, scaled down where needed so
    that they sum to at most one; tight jets without the lepton-veto bit carry a muon fraction of 0.9. Other jets
    get neHEF = 0.995 and neEmEF = 0.95, which fail the tight ID in every region.
    """
    size = len(jet_id)
    tight, lepton_veto = (jet_id & 2) != 0, (jet_id & 4) != 0
    raw = {name: rng.uniform(low, high, size) for name, (low, high) in _PASSING_FRACTION_RANGES.items()}
    mu_ef = np.where(tight & ~lepton_veto, _LEPTON_VETO_FAILING_MUEF, rng.uniform(0.0, _MUEF_MAX, size))
    scale = np.minimum(1.0, (1.0 - mu_ef) / sum(raw.values()))
    failing = {"neHEF": _FAILING_NEHEF, "neEmEF": _FAILING_NEEMEF, "chHEF": 0.0, "chEmEF": 0.0}
    fractions = {name: np.where(tight, raw[name] * scale, failing[name]) for name in raw}
    fractions["muEF"] = mu_ef
    return {name: values.astype(np.float32) for name, values in fractions.items()}


def _jet_multiplicities(tight: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Charged and neutral constituent multiplicities consistent with the tight jet ID."""
    size = len(tight)
    charged = rng.integers(_CH_MULTIPLICITY_RANGE[0], _CH_MULTIPLICITY_RANGE[1] + 1, size)
    neutral = rng.integers(_NE_MULTIPLICITY_RANGE[0], _NE_MULTIPLICITY_RANGE[1] + 1, size)
    return {
        "chMultiplicity": np.where(tight, charged, 0).astype(np.uint8),
        "neMultiplicity": np.where(tight, neutral, 1).astype(np.uint8),
    }


# --------------------------------------------------------------------------------------------------------------------
# layouts
# --------------------------------------------------------------------------------------------------------------------


def nano_v9(events: ak.Array, rng: np.random.Generator) -> ak.Array:
    """Run 2 UL NanoAOD v9 / v11: the canonical layout, returned unchanged.

    Args:
        events: Canonical event records from `generate_events`.
        rng: Random stream of the layout (unused).

    Returns:
        The same events.
    """
    del rng
    return events


def nano_v1(events: ak.Array, rng: np.random.Generator) -> ak.Array:
    """2016 NanoAOD v1 (80X): Spring16 electron MVA ID, MVA tau isolation and anti-lepton discriminators.

    Args:
        events: Canonical event records from `generate_events`.
        rng: Random stream of the layout (unused: the conversion is deterministic).

    Returns:
        Event records in the NanoAOD v1 layout.
    """
    del rng
    fields = _event_fields(events)
    fields = _with_collection(fields, "Electron", lambda e: _renamed(e, "mvaFall17V2Iso_WP90", "mvaSpring16GP_WP90"))
    fields = _with_collection(fields, "Tau", _deeptau_to_mva_old)
    return ak.zip(_with_triggers(fields, events, "2016"), depth_limit=1)


def nano_v6(events: ak.Array, rng: np.random.Generator) -> ak.Array:
    """Pre-UL 2018 NanoAOD v6: the branches of v9 plus the 2018 trigger bits.

    Args:
        events: Canonical event records from `generate_events`.
        rng: Random stream of the layout (unused: the conversion is deterministic).

    Returns:
        Event records in the NanoAOD v6 layout.
    """
    del rng
    return ak.zip(_with_triggers(_event_fields(events), events, "2018"), depth_limit=1)


def _run3(events: ak.Array, rng: np.random.Generator, keep_jet_id: bool) -> dict[str, ak.Array]:
    """Fields common to the Run 3 layouts: electron and tau IDs, jet energy fractions and PuppiMET."""
    fields = _event_fields(events)
    fields = _with_collection(fields, "Electron", lambda e: _renamed(e, "mvaFall17V2Iso_WP90", "mvaIso_WP90"))
    fields = _with_collection(fields, "Tau", _deeptau_to_levels)

    def convert_jets(jet: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        jet_id = jet["jetId"]
        new = _jet_energy_fractions(jet_id, rng)
        if keep_jet_id:
            return _splice({**jet, "jetId": jet_id.astype(np.uint8)}, "jetId", new)
        new.update(_jet_multiplicities((jet_id & 2) != 0, rng))
        jet = _splice(jet, "jetId", new, drop={"jetId"})
        return _splice(jet, "btagDeepFlavB", {"btagUParTAK4B": jet["btagDeepFlavB"].copy()})

    fields = _with_collection(fields, "Jet", convert_jets)
    return _with_triggers(_splice(fields, "MET", {"PuppiMET": fields["MET"]}), events, "run3")


def nano_v12(events: ak.Array, rng: np.random.Generator) -> ak.Array:
    """Run 3 2022 NanoAOD v12: Run 3 electron and tau IDs, PuppiMET, jet energy fractions next to the jet ID.

    Args:
        events: Canonical event records from `generate_events`.
        rng: Random stream of the layout, for the jet energy fractions.

    Returns:
        Event records in the NanoAOD v12 layout.
    """
    return ak.zip(_run3(events, rng, keep_jet_id=True), depth_limit=1)


def nano_v15(events: ak.Array, rng: np.random.Generator) -> ak.Array:
    """Run 3 2024 NanoAOD v15: as v12 without the jet ID, with jet multiplicities, PFMET and the UParT b-tag score.

    The jet energy fractions equal those of `nano_v12` for the same random stream.

    Args:
        events: Canonical event records from `generate_events`.
        rng: Random stream of the layout, for the jet energy fractions and multiplicities.

    Returns:
        Event records in the NanoAOD v15 layout.
    """
    fields = _renamed(_run3(events, rng, keep_jet_id=False), "MET", "PFMET")
    return ak.zip(fields, depth_limit=1)


LAYOUTS: dict[str, Layout] = {
    "nano_v1": nano_v1,
    "nano_v6": nano_v6,
    "nano_v9": nano_v9,
    "nano_v12": nano_v12,
    "nano_v15": nano_v15,
}


def get_layout(name: str) -> Layout:
    """Looks up a layout conversion by name.

    Args:
        name: Layout name, a key of `LAYOUTS`.

    Returns:
        The conversion function.

    Raises:
        ValueError: For an unknown layout, listing the known ones.
    """
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout '{name}'; known layouts: {', '.join(LAYOUTS)}") from None


def apply_layout(events: ak.Array, layout: str, seed: int, file_index: int) -> ak.Array:
    """Converts canonical events of one file into a NanoAOD version's layout.

    Args:
        events: Canonical event records from `generate_events`.
        layout: Layout name, a key of `LAYOUTS`.
        seed: Dataset seed.
        file_index: Index of the file within the dataset.

    Returns:
        Event records in the layout.

    Raises:
        ValueError: For an unknown layout, listing the known ones.
    """
    return get_layout(layout)(events, layout_rng(seed, file_index))
