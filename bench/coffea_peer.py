"""The coffea peer: the chain's physics written the way a coffea user writes it, without the framework.

Run mode: a plain loop over the files of each dataset and, within a file, over chunks of ``--chunk-size``
entries; each chunk becomes NanoEvents with ``NanoEventsFactory.from_root(file, mode="eager")`` (NanoAOD
schema, coffea's behaviours: ``Jet``, ``Muon``, ... with their four-vector methods). coffea's
``processor.Runner`` is not used: it always builds virtual (lazily read) NanoEvents, and this peer is the eager
one. Eager mode reads every branch of the tree, so the tree's branches are filtered to those the chain reads
(``iteritems_options``, the same list the raw read and the baseline use) plus the collections' counters.

Per chunk, in one pass, the physics of the chain (``skip_jecunc`` calibrator, ``default`` selector, reduction,
``default`` producer, the ``dnn`` model's ML inputs), written out here with the cuts of the bench's config:

- calibration: jet pt and mass scaled by the nominal jet energy correction (correctionlib, evaluated at the
  uncalibrated pt and eta), the uncalibrated values kept as ``pt_raw`` / ``mass_raw``; MET unchanged
- selection: electrons, muons and hadronic taus by pt, eta and ID; jets by pt, eta and tight ID, cleaned
  against the selected electrons, muons and taus (delta R > 0.4); events with >= 2 jets and >= 1 lepton or tau
- reduction: the selected events and objects, the columns the config keeps
- production: object counts, HT, m_bb (the two most b-like jets), m_ll (opposite-sign same-flavour pair),
  category ids, the normalization weight and the pileup and muon ID weights (correctionlib)
- ML inputs: the model's columns, split by the analysis' fold assignment

Angles and masses are computed from double-precision copies of the four-vectors, as the analysis defines them
(single precision loses up to 1e-3 of the mass of two collinear objects). The fileset json
(:mod:`bench.fileset`) holds the files, cross sections, correction files, category ids and ML columns.

``python -m bench.coffea_peer FILESET_JSON OUT_DIR --chunk-size N`` writes, per input file, the reduced events
with the produced columns (``DATASET/reduced_I.parquet``) and the ML inputs per fold
(``DATASET/mlevents_fFofN_I.parquet``), and prints one json line: the seconds and, per dataset, the
events and weight sums per fold (which the harness checks against the chain's).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import correctionlib
import numpy as np
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
from coffea.nanoevents.methods import vector

from bench.output import FoldWriters, fold_writers, keep, script_arguments, sum_generator_weights
from cf.folds import fold_indices
from cf.io import ParquetWriter

__all__ = ["main", "process_chunk", "process_dataset"]

#: Jets closer than this (in eta-phi) to a selected electron, muon or tau are not jets.
JET_CLEANING_DR = 0.4
#: DeepJet medium working point (2017 UL).
BTAG_MEDIUM = 0.3040
Z_MASS = 91.1876
#: The value of a mass that does not exist (fewer than two objects), as in the analysis.
NO_MASS = -99999.0
#: The columns of the reduced events: the config's kept columns and the calibrated jets' raw values.
OUTPUT_COLUMNS = (
    "run", "luminosityBlock", "event", "genWeight", "Pileup.nTrueInt", "PV.npvs", "MET.pt", "MET.phi",
    *(f"Jet.{field}" for field in ("pt", "eta", "phi", "mass", "btagDeepFlavB", "hadronFlavour", "pt_raw", "mass_raw")),
    *(f"Electron.{field}" for field in ("pt", "eta", "phi", "mass", "charge", "pdgId")),
    *(f"Muon.{field}" for field in ("pt", "eta", "phi", "mass", "charge", "pdgId")),
    *(f"Tau.{field}" for field in ("pt", "eta", "phi", "mass", "charge", "decayMode")),
)  # fmt: skip
#: The collections whose counter branches (``nJet``, ...) NanoAODSchema needs besides their fields.
COLLECTIONS = ("Jet", "Electron", "Muon", "Tau")


@dataclass(frozen=True)
class Corrections:
    """The correctionlib corrections of the chain: jet energy correction, pileup and muon ID weights."""

    jec: Any
    pileup: Any
    muon_sf: Any

    @classmethod
    def load(cls, spec: Mapping[str, Mapping[str, str]]) -> Corrections:
        """Load each correction by name from its file (``{"jec": {"file": ..., "name": ...}, ...}``)."""
        loaded = {
            key: correctionlib.CorrectionSet.from_file(entry["file"])[entry["name"]] for key, entry in spec.items()
        }
        return cls(**loaded)


@dataclass(frozen=True)
class Dataset:
    """What the production needs to know about a dataset besides its events."""

    xsec: float
    lumi: float
    sum_genweight: float
    categories: Mapping[str, int]


# calibration


def calibrate(events: ak.Array, jec: Any) -> ak.Array:
    """The events with calibrated jets: pt and mass scaled, the uncalibrated values in ``pt_raw`` / ``mass_raw``."""
    jets = events.Jet
    scale = jec.evaluate(jets.pt, jets.eta)
    jets["pt_raw"] = jets.pt
    jets["mass_raw"] = jets.mass
    jets["pt"] = ak.values_astype(jets.pt_raw * scale, np.float32)
    jets["mass"] = ak.values_astype(jets.mass_raw * scale, np.float32)
    events["Jet"] = jets
    return events


# selection


def double_precision(objects: ak.Array) -> ak.Array:
    """The objects' four-vectors in double precision (coffea's ``PtEtaPhiMLorentzVector``)."""
    fields = {field: ak.values_astype(objects[field], np.float64) for field in ("pt", "eta", "phi", "mass")}
    return ak.zip(fields, with_name="PtEtaPhiMLorentzVector", behavior=vector.behavior)


def lepton_masks(events: ak.Array) -> dict[str, ak.Array]:
    """The identified electrons, muons and hadronic taus (2017 UL IDs), by collection."""
    electrons, muons, taus = events.Electron, events.Muon, events.Tau
    return {
        "Electron": (electrons.pt > 15.0) & (abs(electrons.eta) < 2.5) & electrons.mvaFall17V2Iso_WP90,
        "Muon": (muons.pt > 15.0) & (abs(muons.eta) < 2.4) & muons.tightId & (muons.pfRelIso04_all < 0.15),
        "Tau": (taus.pt > 20.0)
        & (abs(taus.eta) < 2.3)
        & ((taus.idDeepTau2017v2p1VSjet & 16) != 0)  # DeepTau vs jets, Medium
        & ((taus.idDeepTau2017v2p1VSe & 2) != 0)  # vs electrons, VVLoose
        & ((taus.idDeepTau2017v2p1VSmu & 1) != 0),  # vs muons, VLoose
    }


def jet_mask(events: ak.Array, leptons: Mapping[str, ak.Array]) -> ak.Array:
    """Jets with pt > 25, |eta| < 2.4 and the tight ID that are no selected lepton or tau."""
    jets = events.Jet
    directions = double_precision(jets)
    clean = (jets.pt > 25.0) & (abs(jets.eta) < 2.4) & ((jets.jetId & 2) != 0)
    for name, mask in leptons.items():
        others = double_precision(events[name][mask])
        clean = clean & ak.all(directions.metric_table(others) > JET_CLEANING_DR, axis=2)
    return clean


def select(events: ak.Array) -> tuple[np.ndarray, dict[str, ak.Array]]:
    """The event mask and the object masks of the selection."""
    objects = lepton_masks(events)
    objects["Jet"] = jet_mask(events, objects)
    n_leptons = sum(ak.sum(objects[name], axis=1) for name in ("Electron", "Muon", "Tau"))
    selected = (ak.sum(objects["Jet"], axis=1) >= 2) & (n_leptons >= 1)
    return ak.to_numpy(selected), objects


def reduce_events(events: ak.Array, selected: np.ndarray, objects: Mapping[str, ak.Array]) -> ak.Array:
    """The selected events with their selected objects and the kept columns, as plain records."""
    reduced = events[selected]
    for name, mask in objects.items():
        reduced[name] = reduced[name][mask[selected]]
    return keep(ak.without_parameters(reduced), OUTPUT_COLUMNS)


# production


def pair_mass(objects: ak.Array) -> np.ndarray:
    """The mass of the first two objects of each event; NO_MASS in events with fewer."""
    has_pair = ak.to_numpy(ak.num(objects, axis=1) >= 2)
    pairs = double_precision(objects[has_pair])
    mass = np.full(len(objects), NO_MASS)
    mass[has_pair] = ak.to_numpy((pairs[:, 0] + pairs[:, 1]).mass)
    return mass


def opposite_sign_pair_mass(leptons: ak.Array) -> np.ndarray:
    """The mass of the two leading leptons where they have opposite charges, else NO_MASS."""
    leading = leptons[:, :2]
    opposite = ak.to_numpy((ak.num(leading, axis=1) == 2) & (ak.sum(leading.charge, axis=1) == 0))
    return np.where(opposite, pair_mass(leading), NO_MASS)


def features(events: ak.Array) -> dict[str, Any]:
    """Object counts, HT, m_bb and m_ll (ee or mumu, whichever flavour has more leptons, mumu on a tie)."""
    jets, electrons, muons = events.Jet, events.Electron, events.Muon
    b_ordered = jets[ak.argsort(jets.btagDeepFlavB, axis=1, ascending=False)]
    use_muons = ak.to_numpy(ak.num(muons, axis=1) >= ak.num(electrons, axis=1))
    m_ll = np.where(use_muons, opposite_sign_pair_mass(muons), opposite_sign_pair_mass(electrons))
    return {
        "n_jet": ak.num(jets, axis=1),
        "n_btag": ak.sum(jets.btagDeepFlavB > BTAG_MEDIUM, axis=1),
        "n_electron": ak.num(electrons, axis=1),
        "n_muon": ak.num(muons, axis=1),
        "n_tau": ak.num(events.Tau, axis=1),
        "ht": ak.sum(jets.pt, axis=1),
        "m_bb": pair_mass(b_ordered),
        "m_ll": m_ll,
    }


def category_ids(columns: Mapping[str, Any], ids: Mapping[str, int]) -> ak.Array:
    """The ids of the categories each event belongs to, in the order of ``ids``."""
    n_jet, n_btag, n_tau = (ak.to_numpy(columns[name]) for name in ("n_jet", "n_btag", "n_tau"))
    n_lepton = ak.to_numpy(columns["n_electron"]) + ak.to_numpy(columns["n_muon"])
    m_ll = columns["m_ll"].astype(np.float32)  # the category reads the stored (single-precision) mass
    masks = {
        "incl": np.ones(len(n_jet), dtype=bool),
        "sr": (n_jet >= 2) & (n_btag >= 1) & ((n_tau >= 2) | ((n_tau == 1) & (n_lepton == 1))),
        "cr_tt": (n_lepton == 1) & (n_jet >= 4),
        "cr_dy": (m_ll != NO_MASS) & (np.abs(m_ll - Z_MASS) < 15.0),
    }
    member = np.stack([masks[name] for name in ids], axis=1)
    values = np.broadcast_to(np.array(list(ids.values()), dtype=np.int32), member.shape)
    return ak.unflatten(values[member], member.sum(axis=1))


def weights(events: ak.Array, dataset: Dataset, corrections: Corrections) -> dict[str, Any]:
    """The normalization weight and the pileup and muon ID weights with their up / down variations."""
    genweight = ak.to_numpy(events.genWeight)
    columns: dict[str, Any] = {"normalization_weight": dataset.xsec * dataset.lumi * genweight / dataset.sum_genweight}
    n_true = ak.to_numpy(events.Pileup.nTrueInt).astype(np.float64)
    for suffix, key in (("", "nominal"), ("_up", "up"), ("_down", "down")):
        columns[f"pu_weight{suffix}"] = corrections.pileup.evaluate(n_true, key)
    muons = events.Muon
    for suffix, key in (("", "nominal"), ("_up", "systup"), ("_down", "systdown")):
        columns[f"muon_weight{suffix}"] = ak.prod(corrections.muon_sf.evaluate(abs(muons.eta), muons.pt, key), axis=1)
    return columns


def produce(events: ak.Array, dataset: Dataset, corrections: Corrections) -> ak.Array:
    """The reduced events with the produced columns (counts as int32, the rest as float32, as the chain stores them)."""
    columns = features(events)
    columns["category_ids"] = category_ids(columns, dataset.categories)
    columns.update(weights(events, dataset, corrections))
    for name, values in columns.items():
        dtype = np.int32 if name.startswith("n_") or name == "category_ids" else np.float32
        events = ak.with_field(events, ak.values_astype(values, dtype), name)
    return events


def process_chunk(events: ak.Array, dataset: Dataset, corrections: Corrections) -> ak.Array:
    """Calibrate, select, reduce and produce one chunk of NanoEvents; the reduced events with produced columns."""
    events = calibrate(events, corrections.jec)
    selected, objects = select(events)
    return produce(reduce_events(events, selected, objects), dataset, corrections)


# files


def read_chunks(path: str, branches: list[str], chunk_size: int) -> Any:
    """The NanoEvents of a file in chunks of ``chunk_size`` entries (eager mode, only ``branches`` and counters)."""
    wanted = [*branches, *(f"n{name}" for name in COLLECTIONS)]
    with uproot.open(path) as file:
        n_entries = file["Events"].num_entries
        for start in range(0, n_entries, chunk_size):
            yield NanoEventsFactory.from_root(
                file,
                treepath="Events",
                entry_start=start,
                entry_stop=min(start + chunk_size, n_entries),
                schemaclass=NanoAODSchema,
                mode="eager",
                iteritems_options={"filter_name": wanted},
            ).events()


def process_dataset(
    name: str,
    entry: Mapping[str, Any],
    spec: Mapping[str, Any],
    corrections: Corrections,
    out_dir: str,
    chunk_size: int,
) -> dict[str, list[float]]:
    """All files of one dataset; returns the events and weight sums per fold of its ML inputs.

    Args:
        name: The dataset.
        entry: Its fileset entry (``files``, ``metadata``).
        spec: The whole fileset (branches, categories, ML columns and folds).
        corrections: The loaded corrections.
        out_dir: Where the dataset's directory of outputs goes.
        chunk_size: Entries per chunk.
    """
    files = entry["files"]
    metadata = entry["metadata"]
    # the normalization needs the sum of generator weights before any selection: a first, cheap pass
    dataset = Dataset(metadata["xsec"], metadata["lumi"], sum_generator_weights(files), spec["categories"])
    ml_columns, folds = spec["ml"]["columns"], spec["ml"]["folds"]
    directory = os.path.join(out_dir, name)
    os.makedirs(directory, exist_ok=True)
    fold_files = []
    for index, path in enumerate(files):
        with (
            ParquetWriter(os.path.join(directory, f"reduced_{index}.parquet")) as reduced_out,
            fold_writers(directory, index, folds) as fold_out,
        ):
            for events in read_chunks(path, spec["branches"], chunk_size):
                reduced = process_chunk(events, dataset, corrections)
                reduced_out.write(reduced)
                ml_events = keep(reduced, ml_columns)
                fold = fold_indices(ml_events, folds)
                fold_out.write(ak.with_field(ml_events, fold, "fold"), fold, ak.to_numpy(reduced.normalization_weight))
        fold_files.append(fold_out)
    return FoldWriters.total(fold_files)


def main(argv: list[str] | None = None) -> None:
    args = script_arguments(__doc__, "fileset_json", argv)
    start = time.perf_counter()
    NanoAODSchema.warn_missing_crossrefs = False  # the bench files hold no cross-reference indices
    with open(args.fileset_json) as f:
        spec = json.load(f)
    corrections = Corrections.load(spec["corrections"])
    stats = {
        name: process_dataset(name, entry, spec, corrections, args.out_dir, args.chunk_size)
        for name, entry in spec["datasets"].items()
    }
    print(json.dumps({"seconds": time.perf_counter() - start, "stats": stats}))


if __name__ == "__main__":
    main()
