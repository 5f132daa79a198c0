"""The 2017 NanoAOD campaign and its datasets: small generated samples embedded in the template.

Each dataset lists the files it consists of as ``$CF_DATA/samples/...`` paths, which the framework writes on first use
with the generator named in ``dataset.x.sample``. To analyse real NanoAOD instead, replace the keys of the nominal
``DatasetInfo`` with the real file paths or ``root://`` URLs, set ``n_files`` and ``n_events`` accordingly and drop the
``sample`` aux entry.

``CF_SAMPLE_SCALE`` (default 1) scales the number of generated events of every dataset, MC and pseudo-data alike.
"""

from __future__ import annotations

import math
import os
from typing import Any

import order as od

from analysis_template.config import processes as procs
from analysis_template.config.config_run2_2017 import LUMINOSITY

__all__ = ["SAMPLE_SCALE_VAR", "build_campaign", "campaign_run2_2017_nano_uhh_v11", "sample_scale"]

#: Environment variable holding the factor by which the embedded samples are scaled.
SAMPLE_SCALE_VAR = "CF_SAMPLE_SCALE"
#: Entry point ``module:function`` that writes one file of an embedded sample.
GENERATOR = "analysis_template.sample.generate:create_file"
#: Number of files of every embedded dataset.
N_FILES = 2
#: Events per file of an MC dataset at a sample scale of 1.
MC_EVENTS_PER_FILE = 4000
#: Processes mixed into the pseudo-data.
DATA_PROCESSES: tuple[od.Process, ...] = (procs.tt_sl, procs.tt_dl, procs.dy_lep_m50, procs.hh_ggf_bbtautau)


def sample_scale() -> float:
    """Read the sample size factor from ``CF_SAMPLE_SCALE``.

    Returns:
        The factor, 1.0 when the variable is unset.

    Raises:
        ValueError: If the variable is not a finite positive number.
    """
    raw = os.environ.get(SAMPLE_SCALE_VAR, "1")
    try:
        scale = float(raw)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{SAMPLE_SCALE_VAR} must be a positive number, got {raw!r}")
    return scale


def _add_dataset(
    campaign: od.Campaign,
    name: str,
    *,
    dataset_id: int,
    process: od.Process,
    expected: dict[str, float],
    seed: int,
    counts: list[int],
) -> od.Dataset:
    """Add one embedded dataset to ``campaign``.

    Args:
        campaign: The campaign that owns the dataset.
        name: The dataset name, also the folder of its files.
        dataset_id: The dataset id.
        process: The process the dataset belongs to.
        expected: Events per file and process handed to the generator.
        seed: Random seed of the dataset, unique within the campaign.
        counts: The number of events in each file.

    Returns:
        The added dataset.
    """
    keys = [f"$CF_DATA/samples/{campaign.name}/{name}/nano_{i}.root" for i in range(len(counts))]
    info = od.DatasetInfo(keys=keys, n_files=len(counts), n_events=sum(counts), aux={"n_events_per_file": counts})
    kwargs: dict[str, Any] = {"processes": expected, "seed": seed, "is_data": process.is_data}
    return campaign.add_dataset(
        name=name,
        id=dataset_id,
        processes=[process],
        is_data=process.is_data,
        info={"nominal": info},
        aux={"sample": {"generator": GENERATOR, "kwargs": kwargs}},
    )


def _add_mc_dataset(
    campaign: od.Campaign,
    name: str,
    *,
    dataset_id: int,
    process: od.Process,
    seed: int,
    scale: float,
) -> od.Dataset:
    """Add an MC dataset of a single process with a fixed number of events per file.

    Args:
        campaign: The campaign that owns the dataset.
        name: The dataset name.
        dataset_id: The dataset id.
        process: The simulated process.
        seed: Random seed of the dataset.
        scale: The sample size factor.

    Returns:
        The added dataset.
    """
    # at least one event, so that every file can be written and read
    per_file = max(1, round(MC_EVENTS_PER_FILE * scale))
    return _add_dataset(
        campaign,
        name,
        dataset_id=dataset_id,
        process=process,
        expected={process.name: per_file},
        seed=seed,
        counts=[per_file] * N_FILES,
    )


def _add_data_dataset(campaign: od.Campaign, name: str, *, dataset_id: int, seed: int, scale: float) -> od.Dataset:
    """Add the pseudo-data: per file, Poisson draws around the MC expectation at ``LUMINOSITY``.

    Args:
        campaign: The campaign that owns the dataset.
        name: The dataset name.
        dataset_id: The dataset id.
        seed: Random seed of the dataset.
        scale: The sample size factor.

    Returns:
        The added dataset.
    """
    # imported here: only the pseudo-data needs the generator (and its awkward / uproot imports)
    from analysis_template.sample.generate import draw_counts

    lumi = LUMINOSITY.nominal
    expected = {p.name: p.get_xsec(procs.ECM).nominal * lumi * scale / N_FILES for p in DATA_PROCESSES}
    counts = [int(sum(draw_counts(expected, seed, i).values())) for i in range(N_FILES)]
    return _add_dataset(
        campaign, name, dataset_id=dataset_id, process=procs.data, expected=expected, seed=seed, counts=counts
    )


def build_campaign() -> od.Campaign:
    """Create the campaign with all of its datasets, sized by ``CF_SAMPLE_SCALE``.

    Returns:
        The campaign.
    """
    scale = sample_scale()
    campaign = od.Campaign(
        name="run2_2017_nano_uhh_v11",
        id=1,
        ecm=13,
        bx=25,
        aux={"year": 2017, "tier": "NanoAOD", "version": 11},
    )
    mc = (
        ("hh_ggf_bbtautau_madgraph", 1, procs.hh_ggf_bbtautau, 101),
        ("tt_sl_powheg", 2, procs.tt_sl, 102),
        ("tt_dl_powheg", 3, procs.tt_dl, 103),
        ("dy_lep_m50_madgraph", 4, procs.dy_lep_m50, 104),
    )
    for name, dataset_id, process, seed in mc:
        _add_mc_dataset(campaign, name, dataset_id=dataset_id, process=process, seed=seed, scale=scale)
    # pseudo-data standing in for the SingleMuon stream of run 2017B
    _add_data_dataset(campaign, "data_mu_b", dataset_id=5, seed=105, scale=scale)
    return campaign


campaign_run2_2017_nano_uhh_v11 = build_campaign()
