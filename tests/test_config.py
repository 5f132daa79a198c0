"""Tests of the order configuration of the analysis template: processes, campaign, datasets and config."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType

import order as od
import pytest

from analysis_template.config import campaigns as campaign_module
from analysis_template.config import processes as procs
from analysis_template.config.analysis import analysis_template
from analysis_template.config.configs import add_config
from analysis_template.config.objects import NANO_V9_2017
from cf.contract import default_datasets
from cf.ml import variable_model

MC_DATASETS = {
    "hh_ggf_bbtautau_madgraph": "hh_ggf_bbtautau",
    "tt_sl_powheg": "tt_sl",
    "tt_dl_powheg": "tt_dl",
    "dy_lep_m50_madgraph": "dy_lep_m50",
}
RESONANT_DATASETS = [f"x_hh_bbtautau_m{mass}_madgraph" for mass in (300, 400, 500, 700, 1000)]


@pytest.fixture
def config() -> od.Config:
    """The config that analysis.py adds."""
    return analysis_template.get_config("run2_2017_nano_uhh_v11_limited")


@pytest.fixture
def reload_campaign(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Re-import the campaign module under a given CF_SAMPLE_SCALE, restoring the original objects afterwards."""
    saved = dict(vars(campaign_module))

    def reload(scale: str) -> ModuleType:
        monkeypatch.setenv("CF_SAMPLE_SCALE", scale)
        return importlib.reload(campaign_module)

    yield reload
    vars(campaign_module).update(saved)


def _xsec(process: od.Process) -> float:
    """The nominal 13 TeV cross section of ``process`` in pb."""
    return process.get_xsec(13).nominal


def test_analysis_and_config(config: od.Config) -> None:
    """The analysis holds the limited config with its campaign, luminosity and defaults."""
    assert analysis_template.name == "analysis_template"
    assert analysis_template.id == 1
    assert config.id == 1
    assert config.campaign is campaign_module.campaign_run2_2017_nano_uhh_v11
    assert config.campaign.name == "run2_2017_nano_uhh_v11"
    assert config.campaign.ecm == 13
    assert config.campaign.bx == 25
    assert config.campaign.x.year == 2017
    # the MC at the real 2017 luminosity, the embedded pseudo-data at a small slice of it
    assert config.x.luminosity.nominal == pytest.approx(41_480.0)
    assert config.x.luminosity.u("lumi_13TeV_2017", direction="up") == pytest.approx(41_480.0 * 0.023)
    assert config.x.data_luminosity.nominal == pytest.approx(5.0)
    assert config.x.default_calibrators == ("skip_jecunc",)
    assert config.x.default_selector == "default"
    assert config.x.default_producers == ("default",)
    keep = config.x.keep_columns["cf.ReduceEvents"]
    assert {"run", "event", "genWeight", "Jet.btagDeepFlavB", "Tau.decayMode", "Muon.pdgId"} <= set(keep)
    assert len(keep) == len(set(keep)) == 32


def test_process_ids_and_flags(config: od.Config) -> None:
    """Processes have their stable ids, the tree structure, the signal flag and plotting styles."""
    ids = {
        "data": 1,
        "hh_ggf_bbtautau": 100,
        "tt": 1000,
        "tt_sl": 1100,
        "tt_dl": 1200,
        "dy": 2000,
        "dy_lep_m50": 2100,
    }
    for name, process_id in ids.items():
        assert config.get_process(name).id == process_id
    assert config.get_process("data").is_data
    assert config.get_process("tt").has_process("tt_sl")
    assert config.get_process("dy").has_process("dy_lep_m50")
    signals = [p.name for p, _, _ in config.walk_processes() if p.has_tag("signal")]
    resonant = [f"x_hh_bbtautau_m{mass}" for mass in (300, 400, 500, 700, 1000)]
    assert signals == ["hh_ggf_bbtautau", "x_hh_bbtautau", *resonant]
    assert [config.get_process(name).id for name in resonant] == [10300, 10400, 10500, 10700, 11000]
    assert procs.hh_ggf_bbtautau.x.is_signal
    assert all(p.label and p.color1 for p, _, _ in config.walk_processes())


def test_cross_sections() -> None:
    """Cross sections equal the reference values times the branching ratios."""
    assert _xsec(procs.tt) == pytest.approx(833.9)
    assert _xsec(procs.tt_sl) == pytest.approx(366.4, abs=0.05)
    assert _xsec(procs.tt_dl) == pytest.approx(88.57, abs=0.01)
    assert _xsec(procs.hh_ggf_bbtautau) * 1000 == pytest.approx(2.268, abs=0.001)
    assert _xsec(procs.dy_lep_m50) == pytest.approx(6077.22)
    assert _xsec(procs.dy) == pytest.approx(6077.22)
    # asymmetric uncertainties survive the branching-ratio scaling
    up, down = procs.hh_ggf_bbtautau.get_xsec(13).u("scale_mtop")
    assert (up, down) == pytest.approx((0.06 * _xsec(procs.hh_ggf_bbtautau), 0.23 * _xsec(procs.hh_ggf_bbtautau)))


def test_datasets(config: od.Config) -> None:
    """Datasets list their embedded files and how to generate them."""
    names = {d.name for d in config.datasets}
    assert names == {*MC_DATASETS, *RESONANT_DATASETS, "data_mu_b"}
    seeds = set()
    for dataset in config.datasets:
        assert dataset.n_files == len(dataset.keys) == 2
        assert all(key.startswith("$CF_DATA/samples/run2_2017_nano_uhh_v11/") for key in dataset.keys)
        assert dataset.keys[1].endswith(f"/{dataset.name}/nano_1.root")
        sample = dataset.x.sample
        assert sample["generator"] == "sample.generate:create_file"
        assert sample["kwargs"]["is_data"] is dataset.is_data
        seeds.add(sample["kwargs"]["seed"])
    assert len(seeds) == len(names)
    for name, process_name in MC_DATASETS.items():
        dataset = config.get_dataset(name)
        assert not dataset.is_data
        assert [p.name for p in dataset.processes] == [process_name]
        assert dataset.x.sample["kwargs"]["processes"] == {process_name: 4000}
        assert dataset.n_events == 8000
    data = config.get_dataset("data_mu_b")
    assert data.is_data
    assert [p.name for p in data.processes] == ["data"]
    for name in RESONANT_DATASETS:
        assert config.get_dataset(name).n_events == 2000
        assert config.get_dataset(name).x.on_request


def test_resonant_datasets_are_left_out_of_default_dataset_lists(config: od.Config) -> None:
    """The default lists keep the five datasets of the non-resonant analysis; the resonant ones are on request."""
    assert {d.name for d in default_datasets(config)} == {*MC_DATASETS, "data_mu_b"}


def test_resonant_cross_section_is_the_reference_value_times_the_hh_branching_ratio() -> None:
    """sigma x BR(X -> HH) is the settable reference value (1 pb), times BR(HH -> bb tautau)."""
    assert procs.REFERENCE_XSEC_X_HH == 1.0
    for process in procs.x_hh_bbtautau_masses.values():
        assert _xsec(process) == pytest.approx(2 * procs.BR_H_BB * procs.BR_H_TAUTAU)


def test_data_events_match_generator(config: od.Config) -> None:
    """The pseudo-data event count equals what the generator draws for its files."""
    from sample.generate import draw_counts

    data = config.get_dataset("data_mu_b")
    kwargs = data.x.sample["kwargs"]
    expected = kwargs["processes"]
    assert set(expected) == {"tt_sl", "tt_dl", "dy_lep_m50", "hh_ggf_bbtautau"}
    for name, mean in expected.items():
        # drawn at the pseudo-data luminosity (5 pb^-1), not at the config's (41.5 fb^-1)
        assert mean == pytest.approx(_xsec(config.get_process(name)) * 5.0 / 2)
    n_events = sum(sum(draw_counts(expected, kwargs["seed"], i).values()) for i in range(data.n_files))
    assert data.n_events == n_events


def test_variables(config: od.Config) -> None:
    """Variables exist with their ids, column routes, binnings and placeholders."""
    names = [
        "n_jet",
        "n_btag",
        "n_electron",
        "n_muon",
        "n_tau",
        "jet1_pt",
        "jet1_eta",
        "jet2_pt",
        "ht",
        "met_pt",
        "m_bb",
        "m_ll",
    ]
    # an ML model's setup adds the variables of its scores; they are not the config's own
    own = [v for v in config.variables if variable_model(v.name) is None]
    assert [v.name for v in own] == names
    assert [v.id for v in own] == list(range(1, 13))
    n_jet = config.get_variable("n_jet")
    assert (n_jet.expression, n_jet.binning) == ("n_jet", (11, -0.5, 10.5))
    jet1_pt = config.get_variable("jet1_pt")
    assert (jet1_pt.expression, jet1_pt.unit, jet1_pt.null_value) == ("Jet.pt[:,0]", "GeV", -99999.0)
    assert config.get_variable("jet2_pt").expression == "Jet.pt[:,1]"
    assert config.get_variable("met_pt").expression == "MET.pt"
    assert all(v.x_title for v in config.variables)


def test_shifts_and_categories(config: od.Config) -> None:
    """Shifts and categories exist with their ids, types and selection descriptions."""
    assert [(s.name, s.id) for s in config.shifts] == [
        ("nominal", 0),
        *(("jec_up", 1), ("jec_down", 2), ("pu_up", 3), ("pu_down", 4), ("mu_id_up", 5), ("mu_id_down", 6)),
    ]
    assert config.get_shift("jec_up").source == "jec"
    assert config.get_shift("jec_down").type == od.Shift.SHAPE
    assert [(c.name, c.id) for c in config.categories] == [("incl", 1), ("sr", 2), ("cr_tt", 3), ("cr_dy", 4)]
    assert config.get_category("incl").label == "inclusive"
    assert all(c.x.selection_doc for c in config.categories)


def test_sample_scale(reload_campaign: Callable[[str], ModuleType], config: od.Config) -> None:
    """CF_SAMPLE_SCALE scales the MC events and the pseudo-data expectation."""
    campaign = reload_campaign("0.5").campaign_run2_2017_nano_uhh_v11
    for name, process_name in MC_DATASETS.items():
        dataset = campaign.get_dataset(name)
        assert dataset.x.sample["kwargs"]["processes"] == {process_name: 2000}
        assert dataset.n_events == 4000
    scaled = campaign.get_dataset("data_mu_b").x.sample["kwargs"]["processes"]
    nominal = config.get_dataset("data_mu_b").x.sample["kwargs"]["processes"]
    assert scaled == pytest.approx({name: 0.5 * mean for name, mean in nominal.items()})


@pytest.mark.parametrize("value", ["-1", "0", "abc", "nan", "inf", ""])
def test_sample_scale_invalid(reload_campaign: Callable[[str], ModuleType], value: str) -> None:
    """A CF_SAMPLE_SCALE that is not a positive number is rejected by name."""
    with pytest.raises(ValueError, match="CF_SAMPLE_SCALE"):
        reload_campaign(value)


def test_default_objects_restored_after_reload() -> None:
    """The campaign module holds the default objects the analysis uses, reloads notwithstanding."""
    assert campaign_module.campaign_run2_2017_nano_uhh_v11 is analysis_template.get_config(1).campaign
    assert campaign_module.campaign_run2_2017_nano_uhh_v11.get_dataset("tt_sl_powheg").n_events == 8000


def test_limit_dataset_files() -> None:
    """limit_dataset_files shortens keys, file and event counts consistently."""
    campaign = campaign_module.build_campaign(campaign_module.RUN2_2017_NANO_UHH_V11)
    analysis = od.Analysis(name="limit_test", id=1)
    config = add_config(analysis, campaign, "limited_files", 2, objects=NANO_V9_2017, limit_dataset_files=1)
    for dataset in config.datasets:
        assert dataset.n_files == len(dataset.keys) == 1
        assert dataset.n_events == dataset.info["nominal"].x.n_events_per_file[0]
    assert config.get_dataset("tt_sl_powheg").n_events == 4000
