"""The fixture analysis: one campaign, one config, one simulated and one data dataset, a few jets per event.

Everything a config must declare for the chain up to ``cf.CreateHistograms`` is here and nothing else: the
datasets (with their files under ``$CF_DATA``), the shifts, the default column functions, the columns the
reduction keeps, the categories and the variables. The sample files are written by
:func:`tests.framework.fixture_analysis.samples.write_samples`.
"""

from __future__ import annotations

import order as od
from scinum import Number

from cf.columnar_util import EMPTY_FLOAT

__all__ = [
    "CONFIG_NAME",
    "DATA_DATASET",
    "LUMINOSITY",
    "SIM_DATASET",
    "SIM_XSEC",
    "fixture_analysis",
    "sample_key",
]

CONFIG_NAME = "fixture_config"
SIM_DATASET = "fixture_sim"
DATA_DATASET = "fixture_data"
#: Cross section of the simulated process in pb, and the config's luminosity in 1/pb.
SIM_XSEC = 20.0
LUMINOSITY = 150.0
#: Center-of-mass energy of the campaign in TeV.
ECM = 13.0
#: Events per file of each dataset, and its number of files.
EVENTS_PER_FILE = {SIM_DATASET: 300, DATA_DATASET: 200}
N_FILES = {SIM_DATASET: 2, DATA_DATASET: 1}


def sample_key(dataset: str, file_index: int) -> str:
    """The key (path below ``$CF_DATA``) of one file of a fixture dataset."""
    return f"$CF_DATA/fixture_samples/{dataset}/nano_{file_index}.root"


def _add_dataset(campaign: od.Campaign, name: str, dataset_id: int, process: od.Process) -> od.Dataset:
    n_files = N_FILES[name]
    info = od.DatasetInfo(
        keys=[sample_key(name, index) for index in range(n_files)],
        n_files=n_files,
        n_events=n_files * EVENTS_PER_FILE[name],
    )
    return campaign.add_dataset(
        name=name,
        id=dataset_id,
        processes=[process],
        is_data=process.is_data,
        info={"nominal": info},
    )


def _add_config(analysis: od.Analysis, campaign: od.Campaign) -> od.Config:
    config = od.Config(name=CONFIG_NAME, id=1, campaign=campaign, analysis=analysis)
    for process in (data_process, sim_process):
        config.add_process(process)
    for dataset in campaign.datasets:
        config.add_dataset(dataset)
    config.x.luminosity = Number(LUMINOSITY)
    config.x.default_calibrators = ("fixture_jet_scale",)
    config.x.default_selector = "fixture_jets"
    config.x.default_producers = ("fixture_default",)
    config.x.keep_columns = {"cf.ReduceEvents": ("run", "luminosityBlock", "event", "genWeight", "Jet.pt", "Jet.eta")}
    config.add_shift(name="nominal", id=0)
    config.add_shift(name="jet_up", id=1, type="shape")
    config.add_shift(name="jet_down", id=2, type="shape")
    config.add_category(name="incl", id=1, label="inclusive")
    config.add_category(name="two_jets", id=2, label=r"$\geq$2 jets")
    config.add_variable(name="n_jet", id=1, expression="n_jet", binning=(6, -0.5, 5.5), x_title="Number of jets")
    config.add_variable(name="ht", id=2, expression="ht", binning=(20, 0.0, 400.0), x_title=r"$H_{T}$", unit="GeV")
    config.add_variable(
        name="jet1_pt",
        id=3,
        expression="Jet.pt[:,0]",
        binning=(20, 0.0, 200.0),
        x_title=r"Leading jet $p_{T}$",
        unit="GeV",
        null_value=EMPTY_FLOAT,
    )
    return config


data_process = od.Process(name="data", id=1, is_data=True, label="Data")
sim_process = od.Process(name="fixture_signal", id=100, xsecs={ECM: SIM_XSEC}, label="Signal")

fixture_campaign = od.Campaign(name="fixture_campaign", id=1, ecm=ECM, bx=25)
_add_dataset(fixture_campaign, SIM_DATASET, 1, sim_process)
_add_dataset(fixture_campaign, DATA_DATASET, 2, data_process)

#: The analysis object that the fixture law.cfg names.
fixture_analysis = od.Analysis(name="fixture_analysis", id=1)
fixture_config = _add_config(fixture_analysis, fixture_campaign)
