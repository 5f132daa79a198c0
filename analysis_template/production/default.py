"""Columns produced on the reduced events.

Object counts, HT, di-object masses, category ids, the normalization weight and the event weights evaluated with
correctionlib (pileup, muon ID); ``default`` runs them all.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from analysis_template.config.objects import ObjectDefinitions
from cf.behaviour import four_vectors
from cf.columnar_util import EMPTY_FLOAT, set_ak_column
from cf.external import load_correction
from cf.functions import ConfigColumns, Producer, producer
from cf.util import UserError

Z_MASS = 91.1876

FOUR_VECTOR = ("pt", "eta", "phi", "mass")


def leading_pair_mass(objects: ak.Array) -> np.ndarray:
    """Mass of the first two objects of each event (coffea four-vectors); EMPTY_FLOAT with fewer.

    The first and the second object of the events with a pair become two flat arrays of
    four-vectors, whose sum is much faster than indexing the jagged array per event.
    """
    has_pair = ak.to_numpy(ak.num(objects, axis=1)) >= 2
    pairs = objects[has_pair][:, :2]
    columns = {field: ak.to_numpy(ak.flatten(pairs[field])).reshape(-1, 2) for field in FOUR_VECTOR}
    halves = [ak.zip({f: v[:, i] for f, v in columns.items()}) for i in (0, 1)]
    first, second = (four_vectors(half, FOUR_VECTOR) for half in halves)
    mass = np.full(len(objects), EMPTY_FLOAT, dtype=np.float64)
    mass[has_pair] = ak.to_numpy((first + second).mass)
    return mass


def same_flavour_pair_mass(events: ak.Array) -> np.ndarray:
    """Mass of the two leading electrons in ee events or muons in mumu events, if of opposite sign; else EMPTY_FLOAT.

    Muons are taken where an event has at least as many muons as electrons. The two leptons of each event with
    such a pair are taken from the flat leptons at the events' offsets, as in :func:`leading_pair_mass`.
    """
    n_electron, n_muon = (ak.to_numpy(ak.num(events[name], axis=1)) for name in ("Electron", "Muon"))
    use_muons = n_muon >= n_electron
    mass = np.full(len(events), EMPTY_FLOAT, dtype=np.float64)
    for name, chosen, counts in (("Muon", use_muons, n_muon), ("Electron", ~use_muons, n_electron)):
        first = np.cumsum(counts) - counts
        leptons = ak.flatten(events[name][[*FOUR_VECTOR, "charge"]], axis=1)
        charge = ak.to_numpy(leptons.charge)
        has_pair = chosen & (counts >= 2)
        has_pair[has_pair] = charge[first[has_pair]] + charge[first[has_pair] + 1] == 0
        pair = [four_vectors(leptons[index], FOUR_VECTOR) for index in (first[has_pair], first[has_pair] + 1)]
        mass[has_pair] = ak.to_numpy((pair[0] + pair[1]).mass)
    return mass


@producer(
    uses={
        "Jet.pt", "Jet.eta", "Jet.phi", "Jet.mass", "Electron.*", "Muon.*", "Tau.pt",
        ConfigColumns("objects", ObjectDefinitions.btag_columns),
    },
    produces={"n_jet", "n_btag", "n_electron", "n_muon", "n_tau", "ht", "m_bb", "m_ll"},
)  # fmt: skip
def features(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """Object multiplicities, HT, the mass of the two most b-like jets and of the same-flavour lepton pair.

    The b-tagging discriminant and its medium working point are the config's (``config.x.objects.btag``).
    """
    btag = self.config_inst.x.objects.btag
    jets = events.Jet
    btag_score = jets[btag.column]
    events = set_ak_column(events, "n_jet", ak.num(jets, axis=1), value_type=np.int32)
    events = set_ak_column(events, "n_btag", ak.sum(btag_score > btag.medium, axis=1), value_type=np.int32)
    events = set_ak_column(events, "n_electron", ak.num(events.Electron, axis=1), value_type=np.int32)
    events = set_ak_column(events, "n_muon", ak.num(events.Muon, axis=1), value_type=np.int32)
    events = set_ak_column(events, "n_tau", ak.num(events.Tau, axis=1), value_type=np.int32)
    events = set_ak_column(events, "ht", ak.sum(jets.pt, axis=1), value_type=np.float32)
    b_ordered = jets[ak.argsort(btag_score, axis=1, ascending=False)]
    events = set_ak_column(events, "m_bb", leading_pair_mass(b_ordered), value_type=np.float32)
    return set_ak_column(events, "m_ll", same_flavour_pair_mass(events), value_type=np.float32)


def category_masks(events: ak.Array) -> dict[str, np.ndarray]:
    """Membership of each category of the config, by category name (needs the ``features`` columns).

    The per-event columns are taken as numpy arrays: a numpy comparison costs a fraction of an awkward one.
    """
    n_jet, n_btag, n_tau, n_electron, n_muon, m_ll = (
        ak.to_numpy(events[column]) for column in ("n_jet", "n_btag", "n_tau", "n_electron", "n_muon", "m_ll")
    )
    n_lepton = n_electron + n_muon
    return {
        "incl": np.ones(len(events), dtype=bool),
        "sr": (n_jet >= 2) & (n_btag >= 1) & ((n_tau >= 2) | ((n_tau == 1) & (n_lepton == 1))),
        "cr_tt": (n_lepton == 1) & (n_jet >= 4),
        "cr_dy": (m_ll != EMPTY_FLOAT) & (np.abs(m_ll - Z_MASS) < 15.0),
    }


@producer(uses=features.produces, produces={"category_ids"})
def category_ids(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """The ids of all categories an event belongs to (a list per event)."""
    masks = category_masks(events)
    member = np.stack(list(masks.values()), axis=1)
    ids = np.array([self.config_inst.get_category(name).id for name in masks])
    # per event, the ids of its categories in the config's order (row by row)
    per_event = ak.unflatten(np.broadcast_to(ids, member.shape)[member], member.sum(axis=1))
    return set_ak_column(events, "category_ids", per_event, value_type=np.int32)


@producer(mc_uses={"genWeight"}, produces={"normalization_weight"})
def normalization_weight(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """Sigma * L * genWeight / (sum of genWeight before selection) for MC, 1 for data.

    The sum of generator weights comes from the dataset's merged selection statistics, which the ``requires`` hook
    asks for and the ``setup`` hook loads once per task (``self.selection_stats``).
    """
    if self.is_data:
        return set_ak_column(events, "normalization_weight", np.ones(len(events), dtype=np.float32))
    stats = getattr(self, "selection_stats", None)
    if not stats or not stats.get("sum_mc_weight"):
        # a dataset without events (or with generator weights that sum to zero) cannot be normalized
        raise UserError(
            f"dataset '{self.dataset_inst.name}' has no events with generator weights (their sum in the selection "
            "stats is 0): its normalization weight is undefined",
        )
    process = self.dataset_inst.processes.get_first()
    xsec = process.get_xsec(self.config_inst.campaign.ecm).nominal
    lumi = self.config_inst.x.luminosity.nominal
    weight = xsec * lumi * events.genWeight / stats["sum_mc_weight"]
    return set_ak_column(events, "normalization_weight", weight, value_type=np.float32)


@normalization_weight.requires
def normalization_weight_requires(
    self: Producer,
    task: Any,
    reqs: dict[str, Any],
    **kwargs: Any,
) -> None:
    """The merged selection statistics of the task's dataset (simulation only)."""
    if self.is_data:
        return
    from cf.tasks.selection import MergeSelectionStats

    reqs["selection_stats"] = MergeSelectionStats.req(task)


@normalization_weight.setup
def normalization_weight_setup(
    self: Producer,
    task: Any,
    reqs: dict[str, Any],
    inputs: dict[str, Any],
    reader_targets: dict[str, Any],
    **kwargs: Any,
) -> None:
    """Load the selection statistics once per task."""
    if "selection_stats" in inputs:
        self.selection_stats = inputs["selection_stats"].load(formatter="json")


#: The three values of a weight with an uncertainty: (column suffix, key of the correction).
PILEUP_KEYS = (("", "nominal"), ("_up", "up"), ("_down", "down"))
MUON_SF_KEYS = (("", "nominal"), ("_up", "systup"), ("_down", "systdown"))


@producer(mc_uses={"Pileup.nTrueInt"}, produces={"pu_weight", "pu_weight_up", "pu_weight_down"})
def pu_weight(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """The pileup weight by the true number of interactions, nominal and min-bias xsec up / down.

    Evaluated from the config's pileup file (``external_files`` ``pileup``, correction
    ``config.x.pileup_weight_correction``); 1 for data.
    """
    if self.is_data:
        return set_weight_columns(events, "pu_weight", np.ones(len(events)))
    n_true = np.asarray(ak.to_numpy(events.Pileup.nTrueInt), dtype=np.float64)
    for suffix, key in PILEUP_KEYS:
        weight = self.pileup_correction.evaluate(n_true, key)
        events = set_ak_column(events, f"pu_weight{suffix}", weight, value_type=np.float32)
    return events


@producer(mc_uses={"Muon.pt", "Muon.eta"}, produces={"muon_weight", "muon_weight_up", "muon_weight_down"})
def muon_weight(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """The product of the ID scale factors of the selected muons, nominal and up / down; 1 for data.

    Evaluated from the config's muon file (``external_files`` ``muon_sf``, correction
    ``config.x.muon_sf_correction``) at the muon's |eta| and pt (outside the binning: the nearest bin).
    """
    if self.is_data:
        return set_weight_columns(events, "muon_weight", np.ones(len(events)))
    counts = ak.num(events.Muon, axis=1)
    abseta = np.abs(np.asarray(ak.to_numpy(ak.flatten(events.Muon.eta)), dtype=np.float64))
    pt = np.asarray(ak.to_numpy(ak.flatten(events.Muon.pt)), dtype=np.float64)
    for suffix, key in MUON_SF_KEYS:
        per_muon = ak.unflatten(self.muon_sf_correction.evaluate(abseta, pt, key), counts)
        events = set_ak_column(events, f"muon_weight{suffix}", ak.prod(per_muon, axis=1), value_type=np.float32)
    return events


def set_weight_columns(events: ak.Array, name: str, values: np.ndarray) -> ak.Array:
    """``name``, ``name_up`` and ``name_down`` set to ``values``."""
    for suffix in ("", "_up", "_down"):
        events = set_ak_column(events, f"{name}{suffix}", values, value_type=np.float32)
    return events


def weights_requires(self: Producer, task: Any, reqs: dict[str, Any], **kwargs: Any) -> None:
    """The config's external files (simulation only)."""
    if self.is_data:
        return
    from cf.tasks.external import BundleExternalFiles

    reqs["external_files"] = BundleExternalFiles.req(task)


@pu_weight.setup
def pu_weight_setup(
    self: Producer,
    task: Any,
    reqs: dict[str, Any],
    inputs: dict[str, Any],
    reader_targets: dict[str, Any],
    **kwargs: Any,
) -> None:
    """Load the pileup correction once per task (simulation only)."""
    if not self.is_data:
        correction = self.config_inst.x.pileup_weight_correction
        self.pileup_correction = load_correction(inputs["external_files"], "pileup", correction)


@muon_weight.setup
def muon_weight_setup(
    self: Producer,
    task: Any,
    reqs: dict[str, Any],
    inputs: dict[str, Any],
    reader_targets: dict[str, Any],
    **kwargs: Any,
) -> None:
    """Load the muon ID scale factors once per task (simulation only)."""
    if not self.is_data:
        correction = self.config_inst.x.muon_sf_correction
        self.muon_sf_correction = load_correction(inputs["external_files"], "muon_sf", correction)


for _producer in (pu_weight, muon_weight):
    _producer.requires(weights_requires)


# category_ids reads what features writes: it is a dependency through produces, so its uses are not read from disk
@producer(
    uses={features, normalization_weight, pu_weight, muon_weight},
    produces={features, category_ids, normalization_weight, pu_weight, muon_weight},
)
def default(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """features, category_ids, normalization_weight and the pileup and muon ID weights."""
    events = self[features](events, **kwargs)
    events = self[category_ids](events, **kwargs)
    events = self[normalization_weight](events, **kwargs)
    events = self[pu_weight](events, **kwargs)
    return self[muon_weight](events, **kwargs)
