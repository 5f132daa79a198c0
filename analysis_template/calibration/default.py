"""Jet energy calibration of the analysis: a nominal correction and its uncertainty shifts.

The correction model is a stand-in with realistic shape (larger at low pt and high |eta|) for the real
JEC of a CMS analysis; replace it with correctionlib evaluations of the official JEC files in a real fork.

Both calibrators write the analysis' missing transverse momentum as ``MET.pt`` / ``MET.phi``, starting from the
config's MET collection (``config.x.objects.met``: ``MET`` in Run 2, ``PuppiMET`` in Run 3), so that everything
downstream reads one MET whatever the NanoAOD version calls it.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from analysis_template.config.objects import ObjectDefinitions
from cf.columnar_util import set_ak_column
from cf.functions import Calibrator, ConfigColumns, calibrator

JET_COLUMNS = {"Jet.pt", "Jet.eta", "Jet.phi", "Jet.mass"}
CALIBRATED_COLUMNS = {"Jet.pt", "Jet.mass", "Jet.pt_raw", "Jet.mass_raw", "MET.pt", "MET.phi"}
#: The MET of the config's NanoAOD version (``MET``, ``PuppiMET``, ...).
SOURCE_MET = ConfigColumns("objects", ObjectDefinitions.met_columns)


def residual_correction(pt: ak.Array, eta: ak.Array) -> ak.Array:
    """The nominal scale factor: a few percent at low pt, vanishing at high pt."""
    return 1.0 + 0.03 * np.exp(-pt / 60.0) + 0.005 * np.abs(eta)


def jec_uncertainty(pt: ak.Array, eta: ak.Array) -> ak.Array:
    """The relative uncertainty of the correction: about 2% central and high pt, up to ~6% forward / soft."""
    return 0.02 + 0.015 * np.abs(eta) / 2.5 + 1.0 / np.maximum(pt, 10.0)


def raw_jet_pt(events: ak.Array) -> ak.Array:
    """The uncalibrated jet pt: ``pt_raw`` when an earlier calibrator stored it, else ``pt``."""
    return events.Jet.pt_raw if "pt_raw" in ak.fields(events.Jet) else events.Jet.pt


def scale_jets(events: ak.Array, scale: ak.Array) -> ak.Array:
    """Scale jet pt and mass, keeping the uncalibrated values in ``pt_raw`` and ``mass_raw``."""
    jets = events.Jet
    raw_pt = jets.pt_raw if "pt_raw" in ak.fields(jets) else jets.pt
    raw_mass = jets.mass_raw if "mass_raw" in ak.fields(jets) else jets.mass
    events = set_ak_column(events, "Jet.pt_raw", raw_pt, value_type=np.float32)
    events = set_ak_column(events, "Jet.mass_raw", raw_mass, value_type=np.float32)
    events = set_ak_column(events, "Jet.pt", raw_pt * scale, value_type=np.float32)
    return set_ak_column(events, "Jet.mass", raw_mass * scale, value_type=np.float32)


def copy_met(events: ak.Array, met: ak.Array) -> ak.Array:
    """``met`` (the config's MET collection), unchanged, as ``MET.pt`` / ``MET.phi``."""
    events = set_ak_column(events, "MET.pt", met.pt, value_type=np.float32)
    return set_ak_column(events, "MET.phi", met.phi, value_type=np.float32)


def propagate_to_met(events: ak.Array, old_pt: ak.Array, met: ak.Array) -> ak.Array:
    """Type-1-like update of ``met`` (the config's MET collection): the change of the jets' pt is subtracted."""
    delta_pt = events.Jet.pt - old_pt
    dx = ak.sum(delta_pt * np.cos(events.Jet.phi), axis=1)
    dy = ak.sum(delta_pt * np.sin(events.Jet.phi), axis=1)
    met_x = met.pt * np.cos(met.phi) - dx
    met_y = met.pt * np.sin(met.phi) - dy
    events = set_ak_column(events, "MET.pt", np.hypot(met_x, met_y), value_type=np.float32)
    return set_ak_column(events, "MET.phi", np.arctan2(met_y, met_x), value_type=np.float32)


@calibrator(uses=JET_COLUMNS | {SOURCE_MET}, produces=CALIBRATED_COLUMNS)
def skip_jecunc(self: Calibrator, events: ak.Array, **kwargs: Any) -> ak.Array:
    """Nominal jet calibration without uncertainty sources (data and MC); MET is passed on unchanged."""
    met = events[self.config_inst.x.objects.met]
    events = scale_jets(events, residual_correction(raw_jet_pt(events), events.Jet.eta))
    return copy_met(events, met)


@calibrator(uses=JET_COLUMNS | {SOURCE_MET}, produces=CALIBRATED_COLUMNS, shifts={"jec_up", "jec_down"})
def jec(self: Calibrator, events: ak.Array, **kwargs: Any) -> ak.Array:
    """Nominal jet calibration plus the total JEC uncertainty shifts ``jec_up`` / ``jec_down``, also in MET."""
    # evaluated at the raw pt, so that running after another calibrator does not correct twice
    raw_pt = raw_jet_pt(events)
    scale = residual_correction(raw_pt, events.Jet.eta)
    if self.shift in {"jec_up", "jec_down"} and not self.is_data:
        sign = 1.0 if self.shift == "jec_up" else -1.0
        scale = scale * (1.0 + sign * jec_uncertainty(raw_pt * scale, events.Jet.eta))
    old_pt, met = events.Jet.pt, events[self.config_inst.x.objects.met]
    events = scale_jets(events, scale)
    return propagate_to_met(events, old_pt, met)
