"""The porting guide: a columnflow model, producer and inference model run here with only their imports changed.

The columnflow forms live in ``docs/user_guide/examples/porting/`` (the guide shows them); the ported files are
``ml/porting.py``, ``analysis_template/production/porting.py`` and ``inference/porting.py``, named in law.cfg. Also the columnflow fidelity
of the ML tasks: ``task.fold``, the configs a model trains on, ``store_name``, wildcard ``uses``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest

from cf.ml import MLModel
from cf.tasks.ml import MLTraining, check_finite
from cf.util import UserError
from ml.porting import PortedModel
from tests.conftest import LawEnv, LawOutputs, LawRun

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "user_guide" / "examples" / "porting"
#: (columnflow form, ported file)
PORTED_FILES = (
    (EXAMPLES / "columnflow_model.py", ROOT / "ml" / "porting.py"),
    (EXAMPLES / "columnflow_producer.py", ROOT / "analysis_template" / "production" / "porting.py"),
    (EXAMPLES / "columnflow_inference.py", ROOT / "inference" / "porting.py"),
)
IMPORT_LINE = re.compile(r"^from (columnflow|cf)(\.\w+)* import ")
MODEL = ("--ml-model", "ported_model")
CONFIG_2017 = "run2_2017_nano_uhh_v11_limited"
CONFIG_2018 = "run2_2018_nano_v6_limited"


def _without_imports(path: Path) -> list[str]:
    """The lines of a file without the columnflow / cf import lines and without blank lines."""
    return [line for line in path.read_text().splitlines() if line.strip() and not IMPORT_LINE.match(line)]


@pytest.mark.parametrize(("columnflow_form", "ported"), PORTED_FILES, ids=lambda path: path.name)
def test_ported_files_differ_from_their_columnflow_form_only_in_imports(columnflow_form: Path, ported: Path) -> None:
    assert _without_imports(columnflow_form) == _without_imports(ported)
    imports = [line for line in columnflow_form.read_text().splitlines() if IMPORT_LINE.match(line)]
    assert imports
    assert all(line.startswith("from columnflow") for line in imports)
    ported_imports = [line for line in ported.read_text().splitlines() if IMPORT_LINE.match(line)]
    assert ported_imports == [line.replace("from columnflow", "from cf", 1) for line in imports]


def test_task_fold_is_the_branch() -> None:
    task = MLTraining(version="v1", ml_model="ported_model", branch=1)
    assert task.fold == 1


def test_store_name_keeps_models_sharing_it_apart() -> None:
    PortedModel.derive("ported_model_other", cls_dict={"folds": 2, "store_name": "porting", "epochs": 5})
    first = MLTraining(version="v1", ml_model="ported_model").ml_store_part()
    second = MLTraining(version="v1", ml_model="ported_model_other").ml_store_part()
    assert (first, second) == ("ml__porting__ported_model", "ml__porting__ported_model_other")


def test_the_configs_a_model_trains_on_replace_the_requested_ones() -> None:
    """A model whose training_configs adds a config trains once, whichever config asked for it."""

    def training_configs(self: MLModel, requested_configs: list[str]) -> list[str]:
        return [CONFIG_2017, CONFIG_2018]

    PortedModel.derive("ported_model_two_configs", cls_dict={"training_configs": training_configs})
    from_2017 = MLTraining(version="v1", ml_model="ported_model_two_configs", configs=(CONFIG_2017,))
    from_2018 = MLTraining(version="v1", ml_model="ported_model_two_configs", configs=(CONFIG_2018,))
    assert from_2017.configs == from_2018.configs == (CONFIG_2017, CONFIG_2018)
    assert from_2017.task_id == from_2018.task_id
    assert from_2017.local_path() == from_2018.local_path()


def test_wildcard_uses_are_checked_column_by_column() -> None:
    events = ak.Array({"Jet": [[{"pt": 30.0, "eta": 0.1}], [{"pt": np.nan, "eta": 0.2}]], "ht": [30.0, 40.0]})
    check_finite(events[:1], ["Jet.*", "ht"], "tt")
    with pytest.raises(UserError, match=r"^ML feature 'Jet\.pt' of dataset 'tt' has 1 NaN or infinite value\(s\)$"):
        check_finite(events, ["Jet.*", "ht"], "tt")


@pytest.mark.slow
def test_ported_producer_through_law_run(law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    produce = ("cf.ProduceColumns", "--version", "v1", "--dataset", "tt_sl_powheg", "--producers", "porting_features")
    law_run(*produce, env=law_env.env)
    reduce = ("cf.ReduceEvents", "--version", "v1", "--dataset", "tt_sl_powheg")
    for produced, reduced in zip(
        law_outputs(*produce, env=law_env.env), law_outputs(*reduce, env=law_env.env), strict=True
    ):
        columns, events = ak.from_parquet(produced), ak.from_parquet(reduced)
        assert sorted(columns.fields) == ["jet1_pt_port", "jet_eta_spread", "n_bjet_port"]
        assert ak.all(columns.jet1_pt_port == events.Jet.pt[:, 0])
        assert ak.all(columns.n_bjet_port == ak.sum(events.Jet.btagDeepFlavB > 0.3040, axis=1))
        assert ak.all(columns.jet_eta_spread >= 0)


def test_ported_inference_model_writes_datacards_and_a_workspace_through_law_run(
    law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs
) -> None:
    import json

    workspace = ("cf.CreatePyhfWorkspace", "--version", "v1", "--inference-model", "porting_inference")
    law_run(*workspace, env=law_env.env, timeout=900)
    cards = {p.name: p for p in law_outputs("cf.CreateDatacards", *workspace[1:], env=law_env.env)}
    assert sorted(cards) == ["datacard__cr_tt.txt", "datacard__sr.txt", "shapes__cr_tt.root", "shapes__sr.root"]
    lines = [line.split() for line in cards["datacard__cr_tt.txt"].read_text().splitlines()]
    assert ["process", "HH", "tt", "dy"] in lines
    assert ["lumi_13TeV_2017", "lnN", "0.977/1.023", "0.977/1.023", "0.977/1.023"] in lines
    assert ["dy_xsec", "lnN", "-", "-", "1.1"] in lines
    assert ["QCDscale", "shape", "-", "1", "1"] in lines
    assert ["tt_norm", "rateParam", "cr_tt", "tt", "1"] in lines
    assert ["theory", "group", "=", "dy_xsec", "QCDscale"] in lines
    assert ["*", "autoMCStats", "10"] in lines
    # no dy event in the signal region: skip_if_empty leaves dy out there, and its parameter with it
    sr = cards["datacard__sr.txt"].read_text()
    assert "dy" not in sr
    assert "theory group = QCDscale" in sr
    (path,) = law_outputs(*workspace, env=law_env.env)
    spec = json.loads(path.read_text())
    assert {"name": "tt_norm", "bounds": [[0.0, 10.0]], "inits": [1.0]} in spec["measurements"][0]["config"][
        "parameters"
    ]
    tt = next(s for s in spec["channels"][0]["samples"] if s["name"] == "tt")
    qcd = next(m for m in tt["modifiers"] if m["name"] == "QCDscale")
    assert sum(qcd["data"]["hi_data"]) == pytest.approx(1.15 * sum(tt["data"]))


@pytest.mark.slow
def test_ported_model_trains_and_evaluates_through_law_run(
    law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs
) -> None:
    train = ("cf.MLTraining", "--version", "v1", *MODEL)
    law_run(*train, env=law_env.env, timeout=900)
    folds = law_outputs(*train, env=law_env.env)
    # task.fold names the outputs; the analysis_inst-style training_producers hook chose "default"
    assert [path.name for path in folds] == ["mlmodel_f0of2", "mlmodel_f1of2"]
    # store_name "porting" keeps the class name next to it; no settings, so no settings hash
    assert all("/prod__default/ml__porting__ported_model/" in str(path) for path in folds)
    mean_score = {}
    for dataset in ("tt_sl_powheg", "hh_ggf_bbtautau_madgraph"):
        evaluate = ("cf.MLEvaluation", "--version", "v1", *MODEL, "--dataset", dataset)
        law_run(*evaluate, env=law_env.env, timeout=900)
        tables: list[Any] = [pq.read_table(path) for path in law_outputs(*evaluate, env=law_env.env)]
        scores = np.concatenate([t.column("ported_model").combine_chunks().field("score").to_numpy() for t in tables])
        assert len(scores) > 0
        assert ((scores >= 0) & (scores <= 1)).all()
        mean_score[dataset] = scores.mean()
    # the HH score separates: even after one epoch, HH events score higher than tt events on average
    assert mean_score["hh_ggf_bbtautau_madgraph"] > mean_score["tt_sl_powheg"] + 0.05


def test_the_config_names_the_default_model_and_model_groups() -> None:
    """columnflow's default_ml_model and ml_model_groups of the config."""
    from cf.tasks.histograms import CreateHistograms

    assert MLTraining(version="v1").ml_model == "test_model"
    histograms = CreateHistograms(version="v1", ml_models=("classifiers",), variables=("ht",))
    assert histograms.ml_models == ("test_model", "dnn")
    mixed = CreateHistograms(version="v1", ml_models=("dnn", "classifiers"), variables=("ht",))
    assert mixed.ml_models == ("dnn", "test_model")


def test_no_model_and_no_default_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from analysis_template.config.analysis import analysis_template

    config_inst = analysis_template.get_config(CONFIG_2018)
    monkeypatch.setitem(config_inst.aux, "default_ml_model", "")
    with pytest.raises(
        UserError, match=rf"^no --ml-model given and config '{CONFIG_2018}' has no default_ml_model; avail"
    ):
        MLTraining(version="v1", config=CONFIG_2018)


def test_versions_pinned_per_task_family(monkeypatch: pytest.MonkeyPatch) -> None:
    """columnflow's per-task versions: the config's x.versions, else law.cfg [versions], replace --version."""
    import law

    from analysis_template.config.analysis import analysis_template
    from cf.tasks.calibration import CalibrateEvents
    from cf.tasks.selection import SelectEvents

    config_inst = analysis_template.get_config(CONFIG_2017)
    monkeypatch.setitem(config_inst.aux, "versions", {"cf.SelectEvents": "v7"})
    selection = SelectEvents(version="v1", branch=0)
    assert "/v7/sel_0.parquet" in selection.output()["columns"].path
    # the tasks it requires keep the version given
    assert "/v1/calib_0.parquet" in selection.requires()["calib"].output()["columns"].path
    added = not law.config.has_section("versions")
    if added:
        law.config.add_section("versions")
    law.config.set("versions", "cf.CalibrateEvents", "v3")
    try:
        assert "/v3/calib_0.parquet" in CalibrateEvents(version="v1", branch=0).output()["columns"].path
    finally:
        law.config.remove_option("versions", "cf.CalibrateEvents")
        if added:
            law.config.remove_section("versions")
    assert "/v1/calib_0.parquet" in CalibrateEvents(version="v1", branch=0).output()["columns"].path


def test_a_ported_model_takes_only_declared_settings() -> None:
    """Columnflow puts any --ml-model-settings key into self.parameters; here a setting must be declared."""
    from cf.analysis import load_modules
    from cf.ml import MLModel
    from cf.util import UserError

    load_modules("ml_modules")
    with pytest.raises(UserError, match=r"unknown setting 'epochs' for ML model 'ported_model', declared: folds"):
        MLModel.get_cls("ported_model").checked_settings({"epochs": "1"})
