"""The coffea peer's fileset: what a coffea user keeps in a json file next to the processor.

``python -m bench.fileset SAMPLE_JSON OUT_JSON`` (run by the harness, not timed) writes, from the sample
description and the analysis config, the files of each dataset with their metadata (cross section and
luminosity), the ROOT branches to read, the correction files and the names of the corrections in them (the
files the config declares in ``external_files``, which ``cf.BundleExternalFiles`` bundles for the chain), the
category ids and the columns and folds of the ML inputs. The physics itself (cuts, working points) is written
out in :mod:`bench.coffea_peer`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.common import CONFIG, DATASETS, SampleInfo

__all__ = ["CATEGORIES", "fileset", "main"]

#: The categories whose ids the peer writes, in the order of the producer's ``category_ids``.
CATEGORIES = ("incl", "sr", "cr_tt", "cr_dy")


def corrections(config_inst: Any) -> dict[str, dict[str, str]]:
    """The correction files (local paths the config declares) and the corrections the peer evaluates."""
    from cf.external import external_files
    from cf.util import expand_path

    paths = {external.name: expand_path(external.source) for external in external_files(config_inst)}
    jec = config_inst.x.jec
    return {
        "jec": {"file": paths["jet_jerc"], "name": f"{jec['campaign']}_MC_L2L3Residual_{jec['jet_type']}"},
        "pileup": {"file": paths["pileup"], "name": config_inst.x.pileup_weight_correction},
        "muon_sf": {"file": paths["muon_sf"], "name": config_inst.x.muon_sf_correction},
    }


def fileset(sample: SampleInfo) -> dict[str, Any]:
    """The peer's fileset of a bench sample.

    Args:
        sample: The generated sample (its files and the branches the chain reads).

    Returns:
        The json-serializable fileset.
    """
    from analysis_template.config.analysis import analysis_template
    from bench.baseline import FOLDS, ml_columns

    config_inst = analysis_template.get_config(CONFIG)
    lumi = config_inst.x.luminosity.nominal
    datasets = {}
    for name in DATASETS:
        process = config_inst.get_dataset(name).processes.get_first()
        xsec = process.get_xsec(config_inst.campaign.ecm).nominal
        datasets[name] = {"files": sample.files[name], "metadata": {"xsec": xsec, "lumi": lumi}}
    return {
        "datasets": datasets,
        "branches": sample.branches,
        "corrections": corrections(config_inst),
        "categories": {name: config_inst.get_category(name).id for name in CATEGORIES},
        "ml": {"columns": ml_columns(config_inst), "folds": FOLDS},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sample_json")
    parser.add_argument("out_json")
    args = parser.parse_args(argv)
    with open(args.out_json, "w") as f:
        json.dump(fileset(SampleInfo.load(args.sample_json)), f, indent=2)


if __name__ == "__main__":
    main()
