"""Jet energy calibration of the analysis: a nominal correction and its uncertainty shifts, with correctionlib.

The correction and its total uncertainty are evaluated from the config's JERC file (``config.x.external_files``
``jet_jerc``, fetched by ``cf.BundleExternalFiles``), with the correction names of ``config.x.jec``:
``<campaign>_MC_L2L3Residual_<jet type>`` and ``<campaign>_MC_Total_<jet type>``, as in the CMS JERC files. The
template's file stands in for the official ones (``analysis_template/corrections``); a fork points
``external_files`` and ``jec`` at the files of its era.

Both calibrators write the analysis' missing transverse momentum as ``MET.pt`` / ``MET.phi``, starting from the
config's MET collection (``config.x.objects.met``: ``MET`` in Run 2, ``PuppiMET`` in Run 3), so that everything
downstream reads one MET whatever the NanoAOD version calls it.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from analysis_template.config.objects import ObjectDefinitions
from cf.behaviour import nanoaod_behavior
from cf.columnar_util import set_ak_column
from cf.functions import Calibrator, ConfigColumns, calibrator

JET_COLUMNS = {"Jet.pt", "Jet.eta", "Jet.phi", "Jet.mass"}
CALIBRATED_COLUMNS = {"Jet.pt", "Jet.mass", "Jet.pt_raw", "Jet.mass_raw", "MET.pt", "MET.phi"}
#: The MET of the config's NanoAOD version (``MET``, ``PuppiMET``, ...).
SOURCE_MET = ConfigColumns("objects", ObjectDefinitions.met_columns)


def evaluate_jagged(correction: Any, *inputs: ak.Array) -> ak.Array:
    """A correctionlib correction evaluated on jagged arrays of the same structure (flattened, then unflattened)."""
    counts = ak.num(inputs[0], axis=1)
    flat = [np.asarray(ak.to_numpy(ak.flatten(values)), dtype=np.float64) for values in inputs]
    return ak.unflatten(correction.evaluate(*flat), counts)


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
    """Type-1-like update of ``met`` (the config's MET collection): the change of the jets' pt is subtracted.

    The jets' changes and MET are coffea two-vectors (``PolarTwoVector``): ``MET - sum(delta jets)``.
    """
    behavior = nanoaod_behavior()
    delta = ak.zip({"pt": events.Jet.pt - old_pt, "phi": events.Jet.phi}, with_name="PolarTwoVector", behavior=behavior)
    met_vector = ak.zip({"pt": met.pt, "phi": met.phi}, with_name="MissingET", behavior=behavior)
    corrected = met_vector - delta.sum(axis=1)
    events = set_ak_column(events, "MET.pt", corrected.pt, value_type=np.float32)
    return set_ak_column(events, "MET.phi", corrected.phi, value_type=np.float32)


@calibrator(uses=JET_COLUMNS | {SOURCE_MET}, produces=CALIBRATED_COLUMNS)
def skip_jecunc(self: Calibrator, events: ak.Array, **kwargs: Any) -> ak.Array:
    """Nominal jet calibration without uncertainty sources (data and MC); MET is unchanged."""
    met = events[self.config_inst.x.objects.met]
    scale = evaluate_jagged(self.jec_nominal, raw_jet_pt(events), events.Jet.eta)
    events = scale_jets(events, scale)
    return copy_met(events, met)


@calibrator(
    uses=JET_COLUMNS | {SOURCE_MET},
    produces=CALIBRATED_COLUMNS,
    shifts={"jec_up", "jec_down"},
)
def jec(self: Calibrator, events: ak.Array, **kwargs: Any) -> ak.Array:
    """Nominal jet calibration plus the total JEC uncertainty shifts ``jec_up`` / ``jec_down``.

    The shifts are propagated to MET, too.
    """
    # evaluated at the raw pt, so that running after another calibrator does not correct twice
    raw_pt = raw_jet_pt(events)
    scale = evaluate_jagged(self.jec_nominal, raw_pt, events.Jet.eta)
    if self.shift in {"jec_up", "jec_down"} and not self.is_data:
        sign = 1.0 if self.shift == "jec_up" else -1.0
        uncertainty = evaluate_jagged(self.jec_total, raw_pt * scale, events.Jet.eta)
        scale = scale * (1.0 + sign * uncertainty)
    old_pt, met = events.Jet.pt, events[self.config_inst.x.objects.met]
    events = scale_jets(events, scale)
    return propagate_to_met(events, old_pt, met)


def jec_requires(self: Calibrator, task: Any, reqs: dict[str, Any], **kwargs: Any) -> None:
    """The config's external files (the JERC file)."""
    from cf.tasks.external import BundleExternalFiles

    reqs["external_files"] = BundleExternalFiles.req(task)


def jec_setup(
    self: Calibrator,
    task: Any,
    reqs: dict[str, Any],
    inputs: dict[str, Any],
    reader_targets: dict[str, Any],
    **kwargs: Any,
) -> None:
    """Load the nominal correction and its total uncertainty once per task."""
    self.jec_nominal, self.jec_total = load_jec(self.config_inst, inputs["external_files"])


def load_jec(config_inst: Any, bundle: Any) -> tuple[Any, Any]:
    """The config's jet energy correction and its total uncertainty from the bundled JERC file."""
    from cf.external import load_correction

    prefix, jet_type = config_inst.x.jec["campaign"], config_inst.x.jec["jet_type"]
    nominal = load_correction(bundle, "jet_jerc", f"{prefix}_MC_L2L3Residual_{jet_type}")
    return nominal, load_correction(bundle, "jet_jerc", f"{prefix}_MC_Total_{jet_type}")


for _calibrator in (skip_jecunc, jec):
    _calibrator.requires(jec_requires)
    _calibrator.setup(jec_setup)
