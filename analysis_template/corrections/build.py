"""Builds the template's correction files (correctionlib schema v2) from the parameters below.

The embedded sample is synthetic, so no official CMS correction applies to it; these files stand in for the CMS
POGs' files and have their structure (names, inputs, systematic keys), so that a fork replaces them by the
official ones by changing ``config.x.external_files`` and the names in the config:

* ``jet_jerc.json``: ``<campaign>_MC_L2L3Residual_<jet type>`` (the jet energy correction, a function of the raw
  jet pt and eta) and ``<campaign>_MC_Total_<jet type>`` (its total relative uncertainty), as the JERC files;
* ``puWeights.json``: ``Template_goldenJSON`` (the pileup weight by the true number of interactions, with
  ``nominal`` / ``up`` / ``down``), as LUM POG's files: the ratio of the data profile to the embedded sample's
  profile (:func:`pileup_weights`);
* ``muon_Z.json``: ``NUM_TightID_DEN_TrackerMuons`` (the muon ID scale factor by |eta| and pt, with ``nominal``
  / ``systup`` / ``systdown``), as MUO POG's Run 3 files.

The files are committed (small, readable in a diff); ``python -m analysis_template.corrections.build`` writes
them again and ``tests/test_corrections.py`` checks that the committed ones are what this module builds.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["JEC_CAMPAIGN", "JET_TYPES", "build_files", "jet_jerc"]

#: The campaign part of the jet correction names (real files: e.g. ``Summer19UL17_V5``).
JEC_CAMPAIGN = "Template_V1"
#: The jet collections of the files: AK4 CHS jets of Run 2, AK4 PUPPI jets of Run 3.
JET_TYPES = ("AK4PFchs", "AK4PFPuppi")
#: The residual jet energy correction: 1 + A exp(-pt / PT0) + B |eta| (larger at low pt and high |eta|).
JEC_AMPLITUDE = 0.03
JEC_PT_SCALE = 60.0
JEC_ETA_SLOPE = 0.005
#: Its total relative uncertainty: C + D |eta| / 2.5 + 1 / max(pt, PT_MIN) (about 2% central and high pt).
JEC_UNC_CONSTANT = 0.02
JEC_UNC_ETA_SLOPE = 0.015
JEC_UNC_PT_MIN = 10.0

#: The pileup profile of the embedded sample: the number of vertices is Poisson(MC_MEAN_VERTICES) (the generator's
#: sample.detector.PILEUP_MEAN_VERTICES) and the true number of interactions, given n vertices, Gamma(n + 1)
#: distributed.
MC_MEAN_VERTICES = 30.0
#: The data profile: the same shape around a higher mean; up / down scale it by the min-bias cross section's
#: uncertainty (4.6%, as CMS uses for 69.2 mb).
DATA_MEAN_VERTICES = 32.0
MINBIAS_XS_UNCERTAINTY = 0.046
#: The bins of the true number of interactions (values beyond them take the last bin's weight).
PILEUP_BINS = 100
PILEUP_CORRECTION = "Template_goldenJSON"

#: The muon ID scale factor: SF = BASE - ETA_SLOPE |eta| - LOW_PT / pt, with an uncertainty of
#: UNC_BASE + UNC_ETA |eta| + UNC_LOW_PT / pt, in the binning of the MUO POG's files.
MUON_SF_CORRECTION = "NUM_TightID_DEN_TrackerMuons"
MUON_ABSETA_EDGES = (0.0, 0.9, 1.2, 2.1, 2.4)
MUON_PT_EDGES = (15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 120.0, 200.0)
MUON_SF_BASE = 0.995
MUON_SF_ETA_SLOPE = 0.006
MUON_SF_LOW_PT = 0.15
MUON_UNC_BASE = 0.002
MUON_UNC_ETA = 0.002
MUON_UNC_LOW_PT = 0.05

FOLDER = os.path.dirname(os.path.abspath(__file__))


def _formula(expression: str, variables: Sequence[str]) -> dict[str, Any]:
    return {"nodetype": "formula", "expression": expression, "parser": "TFormula", "variables": list(variables)}


def _correction(name: str, description: str, inputs: list[dict[str, str]], data: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "version": 1,
        "inputs": inputs,
        "output": {"name": "sf", "type": "real", "description": "the factor"},
        "data": data,
    }


def jet_jerc() -> dict[str, Any]:
    """The jet energy correction and its total uncertainty for each jet type (x: raw pt, y: eta)."""
    inputs = [
        {"name": "JetPt", "type": "real", "description": "the raw jet pt"},
        {"name": "JetEta", "type": "real", "description": "the jet eta"},
    ]
    nominal = f"1+{JEC_AMPLITUDE}*exp(-x/{JEC_PT_SCALE})+{JEC_ETA_SLOPE}*abs(y)"
    uncertainty = f"{JEC_UNC_CONSTANT}+{JEC_UNC_ETA_SLOPE}*abs(y)/2.5+1/max(x,{JEC_UNC_PT_MIN})"
    corrections = []
    for jet_type in JET_TYPES:
        corrections.append(
            _correction(
                f"{JEC_CAMPAIGN}_MC_L2L3Residual_{jet_type}",
                "the jet energy correction of the embedded sample's jets",
                inputs,
                _formula(nominal, ["JetPt", "JetEta"]),
            )
        )
        corrections.append(
            _correction(
                f"{JEC_CAMPAIGN}_MC_Total_{jet_type}",
                "the total relative uncertainty of the jet energy correction (of the corrected pt)",
                inputs,
                _formula(uncertainty, ["JetPt", "JetEta"]),
            )
        )
    return {"schema_version": 2, "description": "jet energy corrections of the template", "corrections": corrections}


def pileup_profile(mean_vertices: float, edges: Sequence[float]) -> list[float]:
    """The probability of each bin of the true number of interactions for a Poisson(mean) number of vertices."""
    import numpy as np
    from scipy import stats

    n = np.arange(0, int(mean_vertices * 4) + 50)
    weights = stats.poisson.pmf(n, mean_vertices)
    cdf = stats.gamma.cdf(np.asarray(edges)[:, None], n[None, :] + 1)
    return [float(value) for value in np.diff(cdf @ weights)]


def pileup_weights() -> dict[str, list[float]]:
    """Data profile / MC profile per bin, nominal and with the min-bias cross section up / down (rounded to 1e-6)."""
    edges = [float(i) for i in range(PILEUP_BINS + 1)]
    mc = pileup_profile(MC_MEAN_VERTICES, edges)
    weights = {}
    for key, factor in (("nominal", 1.0), ("up", 1.0 + MINBIAS_XS_UNCERTAINTY), ("down", 1.0 - MINBIAS_XS_UNCERTAINTY)):
        data = pileup_profile(DATA_MEAN_VERTICES * factor, edges)
        weights[key] = [round(d / m, 6) if m > 1e-12 else 1.0 for d, m in zip(data, mc, strict=True)]
    return weights


def pileup() -> dict[str, Any]:
    """The pileup weight by the true number of interactions, for nominal, up and down."""
    edges = [float(i) for i in range(PILEUP_BINS + 1)]
    content = [
        {
            "key": key,
            "value": {
                "nodetype": "binning",
                "input": "NumTrueInteractions",
                "edges": edges,
                "content": values,
                "flow": "clamp",
            },
        }
        for key, values in pileup_weights().items()
    ]
    correction = _correction(
        PILEUP_CORRECTION,
        "the pileup weight of the embedded sample: data profile / MC profile of the true number of interactions",
        [
            {"name": "NumTrueInteractions", "type": "real", "description": "Pileup_nTrueInt"},
            {"name": "weights", "type": "string", "description": "nominal, up or down"},
        ],
        {"nodetype": "category", "input": "weights", "content": content},
    )
    return {"schema_version": 2, "description": "pileup weights of the template", "corrections": [correction]}


def muon_scale_factors() -> dict[str, list[float]]:
    """The scale factor and its up / down values per (|eta|, pt) bin, |eta| bins outer (rounded to 1e-5)."""
    values: dict[str, list[float]] = {"nominal": [], "systup": [], "systdown": []}
    for eta_low, eta_high in itertools.pairwise(MUON_ABSETA_EDGES):
        for pt_low, pt_high in itertools.pairwise(MUON_PT_EDGES):
            eta, pt = 0.5 * (eta_low + eta_high), 0.5 * (pt_low + pt_high)
            sf = MUON_SF_BASE - MUON_SF_ETA_SLOPE * eta - MUON_SF_LOW_PT / pt
            unc = MUON_UNC_BASE + MUON_UNC_ETA * eta + MUON_UNC_LOW_PT / pt
            values["nominal"].append(round(sf, 5))
            values["systup"].append(round(sf + unc, 5))
            values["systdown"].append(round(sf - unc, 5))
    return values


def muon() -> dict[str, Any]:
    """The muon ID scale factor by |eta| and pt, for nominal, systup and systdown."""
    content = [
        {
            "key": key,
            "value": {
                "nodetype": "multibinning",
                "inputs": ["abseta", "pt"],
                "edges": [list(MUON_ABSETA_EDGES), list(MUON_PT_EDGES)],
                "content": values,
                "flow": "clamp",
            },
        }
        for key, values in muon_scale_factors().items()
    ]
    correction = _correction(
        MUON_SF_CORRECTION,
        "the tight muon ID scale factor of the embedded sample",
        [
            {"name": "abseta", "type": "real", "description": "the muon |eta|"},
            {"name": "pt", "type": "real", "description": "the muon pt"},
            {"name": "scale_factors", "type": "string", "description": "nominal, systup or systdown"},
        ],
        {"nodetype": "category", "input": "scale_factors", "content": content},
    )
    return {"schema_version": 2, "description": "muon scale factors of the template", "corrections": [correction]}


def build_files() -> dict[str, dict[str, Any]]:
    """File name -> its content."""
    return {"jet_jerc.json": jet_jerc(), "puWeights.json": pileup(), "muon_Z.json": muon()}


def dump(content: dict[str, Any]) -> str:
    """The file text: validated against correctionlib's schema v2, indented, keys in a stable order."""
    import correctionlib.schemav2

    correctionlib.schemav2.CorrectionSet.model_validate(content)
    return json.dumps(content, indent=1) + "\n"


def main(folder: str = FOLDER) -> None:
    for name, content in build_files().items():
        path = os.path.join(folder, name)
        with open(path, "w") as file:
            file.write(dump(content))
        print(f"wrote {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
