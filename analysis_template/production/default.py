"""Columns produced on the reduced events.

Object counts, HT, di-object masses, category ids and the normalization weight; ``default`` runs them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from analysis_template.config.objects import ObjectDefinitions
from cf.columnar_util import EMPTY_FLOAT, set_ak_column
from cf.functions import ConfigColumns, Producer, producer

Z_MASS = 91.1876

FOUR_VECTOR = ("pt", "eta", "phi", "mass")


def pair_mass(first: Mapping[str, Any], second: Mapping[str, Any]) -> Any:
    """Invariant mass of two objects, each given by its ``pt``, ``eta``, ``phi`` and ``mass`` (arrays)."""
    px = first["pt"] * np.cos(first["phi"]) + second["pt"] * np.cos(second["phi"])
    py = first["pt"] * np.sin(first["phi"]) + second["pt"] * np.sin(second["phi"])
    pz = first["pt"] * np.sinh(first["eta"]) + second["pt"] * np.sinh(second["eta"])
    energy = np.sqrt((first["pt"] * np.cosh(first["eta"])) ** 2 + first["mass"] ** 2) + np.sqrt(
        (second["pt"] * np.cosh(second["eta"])) ** 2 + second["mass"] ** 2,
    )
    return np.sqrt(np.maximum(energy**2 - px**2 - py**2 - pz**2, 0.0))


def leading_pair_mass(objects: ak.Array) -> np.ndarray:
    """Mass of the first two objects of each event; EMPTY_FLOAT where there are fewer than two."""
    has_pair = ak.to_numpy(ak.num(objects, axis=1)) >= 2
    # the first two objects as flat numpy columns, (first, second) per row: much faster than option types
    pairs = objects[has_pair][:, :2]
    columns = {field: ak.to_numpy(ak.flatten(pairs[field])).reshape(-1, 2) for field in FOUR_VECTOR}
    first, second = ({field: values[:, i] for field, values in columns.items()} for i in (0, 1))
    mass = np.full(len(objects), EMPTY_FLOAT, dtype=np.float64)
    mass[has_pair] = pair_mass(first, second)
    return mass


def same_flavour_pairs(events: ak.Array) -> ak.Array:
    """The two leading electrons in ee events or the two leading muons in mumu events, else empty."""
    four_vector = dict.fromkeys((*FOUR_VECTOR, "charge"))
    electrons = ak.zip({f: events.Electron[f] for f in four_vector})
    muons = ak.zip({f: events.Muon[f] for f in four_vector})
    use_muons = ak.num(muons, axis=1) >= ak.num(electrons, axis=1)
    leptons = ak.where(use_muons, muons, electrons)
    leptons = leptons[:, :2]
    opposite_sign = (ak.num(leptons, axis=1) == 2) & (ak.sum(leptons.charge, axis=1) == 0)
    return leptons[ak.local_index(leptons, axis=1) < ak.where(opposite_sign, 2, 0)]


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
    return set_ak_column(events, "m_ll", leading_pair_mass(same_flavour_pairs(events)), value_type=np.float32)


def category_masks(events: ak.Array) -> dict[str, ak.Array]:
    """Membership of each category of the config, by category name (needs the ``features`` columns)."""
    n_lepton = events.n_electron + events.n_muon
    return {
        "incl": np.ones(len(events), dtype=bool),
        "sr": (events.n_jet >= 2)
        & (events.n_btag >= 1)
        & ((events.n_tau >= 2) | ((events.n_tau == 1) & (n_lepton == 1))),
        "cr_tt": (n_lepton == 1) & (events.n_jet >= 4),
        "cr_dy": (events.m_ll != EMPTY_FLOAT) & (abs(events.m_ll - Z_MASS) < 15.0),
    }


@producer(uses=features.produces, produces={"category_ids"})
def category_ids(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """The ids of all categories an event belongs to (a list per event)."""
    masks = category_masks(events)
    ids = [np.where(ak.to_numpy(mask), self.config_inst.get_category(name).id, -1) for name, mask in masks.items()]
    stacked = ak.from_regular(ak.Array(np.stack(ids, axis=1)))
    return set_ak_column(events, "category_ids", stacked[stacked >= 0], value_type=np.int32)


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
        raise ValueError(f"no sum of generator weights in the selection stats of dataset '{self.dataset_inst.name}'")
    process = self.dataset_inst.processes.get_first()
    xsec = process.get_xsec(self.config_inst.campaign.ecm).nominal
    lumi = self.config_inst.x.luminosity.nominal
    weight = xsec * lumi * events.genWeight / stats["sum_mc_weight"]
    return set_ak_column(events, "normalization_weight", weight, value_type=np.float32)


@normalization_weight.requires
def normalization_weight_requires(self: Producer, task: Any, reqs: dict[str, Any], **kwargs: Any) -> None:
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


# category_ids reads what features writes: it is a dependency through produces, so its uses are not read from disk
@producer(uses={features, normalization_weight}, produces={features, category_ids, normalization_weight})
def default(self: Producer, events: ak.Array, **kwargs: Any) -> ak.Array:
    """features, category_ids and normalization_weight."""
    events = self[features](events, **kwargs)
    events = self[category_ids](events, **kwargs)
    return self[normalization_weight](events, **kwargs)
