"""Jet features for the porting guide, written as columnflow users write producers."""

from __future__ import annotations

from columnflow.columnar_util import EMPTY_FLOAT, set_ak_column
from columnflow.production import Producer, producer
from columnflow.util import maybe_import

np = maybe_import("numpy")
ak = maybe_import("awkward")


@producer(
    uses={"Jet.pt", "Jet.eta"},
    produces={"jet1_pt_port", "jet_eta_spread"},
)
def jet_shape(self: Producer, events: ak.Array, **kwargs) -> ak.Array:
    # leading jet pt and the spread of the jets in eta (zero for a single jet)
    jets = events.Jet
    leading = ak.fill_none(ak.firsts(jets.pt, axis=1), EMPTY_FLOAT)
    events = set_ak_column(events, "jet1_pt_port", leading, value_type=np.float32)
    spread = ak.fill_none(ak.max(jets.eta, axis=1) - ak.min(jets.eta, axis=1), 0.0)
    events = set_ak_column(events, "jet_eta_spread", spread, value_type=np.float32)
    return events


@producer(
    uses={jet_shape},
    produces={jet_shape, "n_bjet_port"},
)
def porting_features(self: Producer, events: ak.Array, **kwargs) -> ak.Array:
    # the jet shape, then the number of b-tagged jets at the config's working point
    events = self[jet_shape](events, **kwargs)
    n_bjet = ak.sum(events.Jet[self.btag_column] > self.btag_wp, axis=1)
    events = set_ak_column(events, "n_bjet_port", n_bjet, value_type=np.int32)
    return events


@porting_features.init
def porting_features_init(self: Producer) -> None:
    # the b-tagging discriminant and working point of the config (they differ between eras)
    btag = self.config_inst.x.objects.btag
    self.btag_column = btag.column
    self.btag_wp = btag.medium
    self.uses.add(f"Jet.{btag.column}")
