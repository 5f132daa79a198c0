"""The campaigns of the analysis and their datasets: embedded generated samples and real CMS NanoAOD files.

Every campaign carries the same five embedded datasets (HH signal, tt semi- and dileptonic, Drell-Yan and
pseudo-data) and the resonant X -> HH signals of ``RESONANT_MC`` (on request: left out of default dataset lists),
generated on first use in the NanoAOD layout of the campaign's version (``x.sample_layout``, see
``sample.layouts``), so that a model can be trained in every config. Next to them, a campaign
lists real NanoAOD datasets: the small real files that the coffea source distribution on PyPI ships, fetched once
into ``$CF_DATA`` (``sample.coffea_files``), as RNTuple twins, or over XRootD.

To analyse your own files, add a dataset whose keys are their paths (globs allowed) or ``root://`` URLs with
:func:`add_real_dataset`, giving ``n_files`` and ``n_events``.

The MC is normalised to the year's real luminosity (``x.luminosity``, e.g. 41.5 fb^-1 for 2017); the embedded
pseudo-data is drawn at a small luminosity of its own (``x.pseudo_data_luminosity``, 5 pb^-1), so that it stays
small.

``CF_SAMPLE_SCALE`` (default 1) scales the number of generated events of every embedded dataset.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import order as od
from scinum import Number

from analysis_template.config import processes as procs

__all__ = [
    "CAMPAIGNS",
    "PSEUDO_DATA_LUMINOSITY",
    "RESONANT_MC",
    "SAMPLE_SCALE_VAR",
    "CampaignSpec",
    "RealDataset",
    "add_real_dataset",
    "build_campaign",
    "campaign_run2_2016_nano_v1",
    "campaign_run2_2017_nano_uhh_v11",
    "campaign_run2_2018_nano_v6",
    "campaign_run3_2022_preee_nano_v12",
    "campaign_run3_2024_nano_v15",
    "sample_scale",
]

#: Environment variable holding the factor by which the embedded samples are scaled.
SAMPLE_SCALE_VAR = "CF_SAMPLE_SCALE"
#: Entry point ``module:function`` that writes one file of an embedded sample.
GENERATOR = "sample.generate:create_file"
#: Entry point that fetches one real NanoAOD file of the coffea source distribution into ``$CF_DATA``.
COFFEA_FETCHER = "sample.coffea_files:fetch_file"
#: Number of files of every embedded dataset.
N_FILES = 2
#: Events per file of an MC dataset at a sample scale of 1.
MC_EVENTS_PER_FILE = 4000
#: Processes mixed into the pseudo-data.
DATA_PROCESSES: tuple[od.Process, ...] = (procs.tt_sl, procs.tt_dl, procs.dy_lep_m50, procs.hh_ggf_bbtautau)
#: The luminosity in pb^-1 at which the embedded pseudo-data is drawn: a small slice, so that the dataset stays
#: small (about 33 000 events; at the 41.5 fb^-1 of 2017 they would be 270 million). Plots compare it with the MC scaled to it; inference models take
#: their pseudo-data from the MC histograms at the full luminosity instead (see ``inference.test``).
PSEUDO_DATA_LUMINOSITY = Number(5.0)
#: The embedded MC datasets: name, id offset within the campaign, process.
EMBEDDED_MC: tuple[tuple[str, int, od.Process], ...] = (
    ("hh_ggf_bbtautau_madgraph", 1, procs.hh_ggf_bbtautau),
    ("tt_sl_powheg", 2, procs.tt_sl),
    ("tt_dl_powheg", 3, procs.tt_dl),
    ("dy_lep_m50_madgraph", 4, procs.dy_lep_m50),
)
#: The resonant X -> HH -> bbtautau datasets, one per mass (name, id offset within the campaign, process); they are
#: on request (``x.on_request``): tasks and wrappers run without ``--datasets`` leave them out.
RESONANT_MC: tuple[tuple[str, int, od.Process], ...] = tuple(
    (f"{process.name}_madgraph", 60 + index, process)
    for index, process in enumerate(procs.x_hh_bbtautau_masses.values())
)
#: Events per file of a resonant dataset at a sample scale of 1 (a narrow peak needs fewer events).
RESONANT_EVENTS_PER_FILE = 1000


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


@dataclass(frozen=True)
class RealDataset:
    """A dataset of real NanoAOD files.

    Attributes:
        name: The dataset name.
        dataset_id: The dataset id, unique within the campaign.
        process: The process of the events (``procs.data`` for collision data).
        keys: The files: local paths (environment variables and globs allowed) or ``root://`` URLs.
        n_events: The number of events of all files together.
        coffea_members: Where set, the files are fetched from the coffea sdist on first use (member names, one per
            key; see ``sample.coffea_files``).
        doc: What the files are (version, era, content).
        absent_collections: Collections the files do not store at all (e.g. dropped by a skim); the chain sees
            them without objects.
    """

    name: str
    dataset_id: int
    process: od.Process
    keys: tuple[str, ...]
    n_events: int
    coffea_members: tuple[str, ...] = ()
    doc: str = ""
    absent_collections: tuple[str, ...] = ()


@dataclass(frozen=True)
class CampaignSpec:
    """What distinguishes one campaign.

    Attributes:
        name: The campaign name.
        campaign_id: The campaign id.
        ecm: The center-of-mass energy in TeV (the key of the processes' cross sections).
        year: The year of data taking.
        nano_version: The NanoAOD version of the campaign's files.
        sample_layout: The layout of the embedded sample (a key of ``sample.layouts.LAYOUTS``).
        luminosity: The integrated luminosity of the year in pb^-1, with its uncertainty: the MC is normalised to it.
        seed: The seed of the first embedded dataset; the others follow.
        real_datasets: The real NanoAOD datasets.
        pseudo_data_luminosity: The luminosity in pb^-1 at which the embedded pseudo-data ``data_mu_b`` is drawn
            (the config's ``x.data_luminosity``).
    """

    name: str
    campaign_id: int
    ecm: float
    year: int
    nano_version: int
    sample_layout: str
    luminosity: Number
    seed: int
    real_datasets: tuple[RealDataset, ...] = field(default=())
    pseudo_data_luminosity: Number = field(default_factory=PSEUDO_DATA_LUMINOSITY.copy)


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
    info = od.DatasetInfo(
        keys=keys,
        n_files=len(counts),
        n_events=sum(counts),
        aux={"n_events_per_file": counts},
    )
    kwargs: dict[str, Any] = {"processes": expected, "seed": seed, "is_data": process.is_data}
    if campaign.x.sample_layout != "nano_v9":
        kwargs["layout"] = campaign.x.sample_layout
    return campaign.add_dataset(
        name=name,
        id=dataset_id,
        processes=[process],
        is_data=process.is_data,
        info={"nominal": info},
        aux={"sample": {"generator": GENERATOR, "kwargs": kwargs}},
    )


def _add_mc_datasets(
    campaign: od.Campaign, spec: CampaignSpec, datasets: tuple[tuple[str, int, od.Process], ...], per_file: int
) -> list[od.Dataset]:
    """Add embedded MC datasets of one process each, with ``per_file`` events in each of their files.

    Args:
        campaign: The campaign that owns the datasets.
        spec: The campaign's specification.
        datasets: Name, id offset within the campaign and process of each dataset.
        per_file: The events per file.

    Returns:
        The added datasets.
    """
    return [
        _add_dataset(
            campaign,
            name,
            dataset_id=(spec.campaign_id - 1) * 100 + offset,
            process=process,
            expected={process.name: per_file},
            seed=spec.seed + offset - 1,
            counts=[per_file] * N_FILES,
        )
        for name, offset, process in datasets
    ]


def _add_embedded_datasets(campaign: od.Campaign, spec: CampaignSpec, scale: float) -> None:
    """Add the four embedded MC datasets, the resonant signals and the pseudo-data drawn around their expectation.

    The pseudo-data is drawn at the campaign's ``pseudo_data_luminosity``, not at its luminosity, so that it stays
    small (tens of thousands of events instead of hundreds of millions).

    Args:
        campaign: The campaign that owns the datasets.
        spec: The campaign's specification.
        scale: The sample size factor.
    """
    # at least one event, so that every file can be written and read
    _add_mc_datasets(campaign, spec, EMBEDDED_MC, max(1, round(MC_EVENTS_PER_FILE * scale)))
    resonant = _add_mc_datasets(campaign, spec, RESONANT_MC, max(1, round(RESONANT_EVENTS_PER_FILE * scale)))
    for dataset in resonant:
        dataset.x.on_request = True
    # imported here: only the pseudo-data needs the generator's processes (and awkward)
    from sample.counts import draw_counts

    lumi = spec.pseudo_data_luminosity.nominal
    expected = {p.name: p.get_xsec(spec.ecm).nominal * lumi * scale / N_FILES for p in DATA_PROCESSES}
    seed = spec.seed + len(EMBEDDED_MC)
    counts = [int(sum(draw_counts(expected, seed, i).values())) for i in range(N_FILES)]
    _add_dataset(
        campaign,
        "data_mu_b",
        dataset_id=(spec.campaign_id - 1) * 100 + len(EMBEDDED_MC) + 1,
        process=procs.data,
        expected=expected,
        seed=seed,
        counts=counts,
    )


def add_real_dataset(campaign: od.Campaign, real: RealDataset) -> od.Dataset:
    """Add a dataset of real NanoAOD files to ``campaign``.

    Args:
        campaign: The campaign that owns the dataset.
        real: The dataset's files, event count and process.

    Returns:
        The added dataset.
    """
    info = od.DatasetInfo(keys=list(real.keys), n_files=len(real.keys), n_events=real.n_events)
    aux: dict[str, Any] = {"doc": real.doc}
    if real.absent_collections:
        aux["absent_collections"] = list(real.absent_collections)
    if real.coffea_members:
        aux["sample"] = {"generator": COFFEA_FETCHER, "kwargs": {"members": list(real.coffea_members)}}
    return campaign.add_dataset(
        name=real.name,
        id=real.dataset_id,
        processes=[real.process],
        is_data=real.process.is_data,
        info={"nominal": info},
        aux=aux,
    )


def build_campaign(spec: CampaignSpec) -> od.Campaign:
    """Create a campaign with its embedded datasets (sized by ``CF_SAMPLE_SCALE``) and its real datasets.

    Args:
        spec: What distinguishes the campaign.

    Returns:
        The campaign.
    """
    campaign = od.Campaign(
        name=spec.name,
        id=spec.campaign_id,
        ecm=spec.ecm,
        bx=25,
        aux={
            "year": spec.year,
            "tier": "NanoAOD",
            "version": spec.nano_version,
            "sample_layout": spec.sample_layout,
            "luminosity": spec.luminosity,
            "pseudo_data_luminosity": spec.pseudo_data_luminosity,
        },
    )
    _add_embedded_datasets(campaign, spec, sample_scale())
    for real in spec.real_datasets:
        add_real_dataset(campaign, real)
    return campaign


def coffea_dataset(
    name: str,
    dataset_id: int,
    process: od.Process,
    member: str,
    n_events: int,
    doc: str,
    absent_collections: tuple[str, ...] = (),
) -> RealDataset:
    """A real dataset of one file of the coffea sdist, fetched into ``$CF_DATA/coffea_samples``.

    Args:
        name: The dataset name.
        dataset_id: The dataset id.
        process: The process of the events.
        member: The file name in the sdist's ``tests/samples``.
        n_events: The file's number of events.
        doc: What the file is.
        absent_collections: Collections the file does not store.

    Returns:
        The dataset description.
    """
    return RealDataset(
        name=name,
        dataset_id=dataset_id,
        process=process,
        keys=(f"$CF_DATA/coffea_samples/{member}",),
        n_events=n_events,
        coffea_members=(member,),
        doc=doc,
        absent_collections=absent_collections,
    )


# The years' integrated luminosities in pb^-1 (golden JSON, normtag) with the published uncertainties, to which the
# MC is normalised:
# - 2016: 36.31 fb^-1, 1.2% (CMS, Eur. Phys. J. C 81 (2021) 800)
# - 2017: 41.48 fb^-1, 2.3% (CMS-PAS-LUM-17-004)
# - 2018: 59.83 fb^-1, 2.5% (CMS-PAS-LUM-18-002)
# - 2022 before the ECAL endcap incident (eras C-D): 7.98 fb^-1, 1.4% (CMS-PAS-LUM-22-001)
# - 2024: 109.08 fb^-1, 2.0% (the CMS luminosity group's preliminary Run 3 recommendation; no paper yet)
LUMI_2016 = Number(36_310.0, {"lumi_13TeV_2016": 0.012j})
LUMI_2017 = Number(41_480.0, {"lumi_13TeV_2017": 0.023j})
LUMI_2018 = Number(59_830.0, {"lumi_13TeV_2018": 0.025j})
LUMI_2022 = Number(7_980.4, {"lumi_13p6TeV_2022": 0.014j})
LUMI_2024 = Number(109_080.0, {"lumi_13p6TeV_2024": 0.020j})

#: The Run 2 UL-like campaign of the user guide: embedded sample only, in the v9 layout ("uhh v11" custom NanoAOD).
RUN2_2017_NANO_UHH_V11 = CampaignSpec(
    name="run2_2017_nano_uhh_v11",
    campaign_id=1,
    ecm=13,
    year=2017,
    nano_version=11,
    sample_layout="nano_v9",
    luminosity=LUMI_2017,
    seed=101,
)

#: Pre-UL 2018 NanoAOD v6 (102X): real Drell-Yan simulation and 2018A dimuon data, also as RNTuple and over XRootD.
RUN2_2018_NANO_V6 = CampaignSpec(
    name="run2_2018_nano_v6",
    campaign_id=2,
    ecm=13,
    year=2018,
    nano_version=6,
    sample_layout="nano_v6",
    luminosity=LUMI_2018,
    seed=201,
    real_datasets=(
        coffea_dataset(
            "dy_lep_m50_nanov6", 21, procs.dy_lep_m50, "nano_dy.root", 40,
            "DY -> ll (m_ll > 50 GeV) simulation, 2018 conditions, NanoAOD v6",
        ),
        coffea_dataset(
            "data_mu_a_nanov6", 22, procs.data, "nano_dimuon.root", 40,
            "collision data of run 315267 (2018A), dimuon events, NanoAOD v6",
        ),
        coffea_dataset(
            "dy_lep_m50_nanov6_rntuple", 23, procs.dy_lep_m50, "nano_dy_rntuple.root", 40,
            "the RNTuple twin of dy_lep_m50_nanov6",
        ),
        RealDataset(
            "dy_lep_m50_nanov6_xrootd", 24, procs.dy_lep_m50, ("root://$CF_XROOTD_SERVER//nano_dy.root",), 40,
            doc="dy_lep_m50_nanov6 read over XRootD from the server in CF_XROOTD_SERVER (host:port)",
        ),
    ),
)  # fmt: skip

#: 2016 NanoAOD v1 (80X): a real Z -> nu nu + jets simulation file with the 2016 IDs.
RUN2_2016_NANO_V1 = CampaignSpec(
    name="run2_2016_nano_v1",
    campaign_id=3,
    ecm=13,
    year=2016,
    nano_version=1,
    sample_layout="nano_v1",
    luminosity=LUMI_2016,
    seed=301,
    real_datasets=(
        coffea_dataset(
            "z_nunu_nanov1", 31, procs.z_nunu, "nano_tree.root", 10,
            "Z -> nu nu + jets simulation, 2016 conditions, NanoAOD v1",
        ),
    ),
)  # fmt: skip

#: Run 3 2022 (before the ECAL endcap incident) NanoAOD v12: a real semileptonic tt simulation file.
RUN3_2022_PREEE_NANO_V12 = CampaignSpec(
    name="run3_2022_preee_nano_v12",
    campaign_id=4,
    ecm=13.6,
    year=2022,
    nano_version=12,
    sample_layout="nano_v12",
    luminosity=LUMI_2022,
    seed=401,
    real_datasets=(
        coffea_dataset(
            "tt_sl_nanov12", 41, procs.tt_sl, "nano_tt_v12.root", 200,
            "semileptonic tt simulation (TTtoLNu2Q), Run 3, NanoAOD v12, skimmed without taus and triggers",
            absent_collections=("Tau", "HLT"),
        ),
    ),
)  # fmt: skip

#: Run 3 2024 NanoAOD v15: a real fully hadronic tt simulation file.
RUN3_2024_NANO_V15 = CampaignSpec(
    name="run3_2024_nano_v15",
    campaign_id=5,
    ecm=13.6,
    year=2024,
    nano_version=15,
    sample_layout="nano_v15",
    luminosity=LUMI_2024,
    seed=501,
    real_datasets=(
        coffea_dataset(
            "tt_fh_nanov15", 51, procs.tt_fh, "nano_tt_v15.root", 200,
            "fully hadronic tt simulation (TTto4Q), Run 3, NanoAOD v15",
        ),
    ),
)  # fmt: skip

campaign_run2_2017_nano_uhh_v11 = build_campaign(RUN2_2017_NANO_UHH_V11)
campaign_run2_2018_nano_v6 = build_campaign(RUN2_2018_NANO_V6)
campaign_run2_2016_nano_v1 = build_campaign(RUN2_2016_NANO_V1)
campaign_run3_2022_preee_nano_v12 = build_campaign(RUN3_2022_PREEE_NANO_V12)
campaign_run3_2024_nano_v15 = build_campaign(RUN3_2024_NANO_V15)

#: All campaigns, by name.
CAMPAIGNS: dict[str, od.Campaign] = {
    campaign.name: campaign
    for campaign in (
        campaign_run2_2017_nano_uhh_v11,
        campaign_run2_2018_nano_v6,
        campaign_run2_2016_nano_v1,
        campaign_run3_2022_preee_nano_v12,
        campaign_run3_2024_nano_v15,
    )
}
