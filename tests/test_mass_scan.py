"""The resonance search: the parametrized network, its per-mass evaluation and the limits against the mass.

Unit tests check the ``--ml-models`` settings syntax, the refusal of bad masses and settings at parameter time, the
background mass draw and the binned AUC. The slow tests read the two mass scans of the docs (``resonance_store``:
the network trained at 300, 500 and 1000 GeV, and without 500 GeV) at the tests' sizes: finite, ordered limits, a
plot, one score column per mass, and a network that scores the left-out mass about as well as when trained on it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cf.ml import join_model_specs, model_spec, model_spec_store_name, split_model_spec
from cf.util import UserError
from docs._ext.cf_figures import RESONANCE_SCAN, RESONANCE_SCAN_LEFT_OUT
from tests.conftest import LawEnv, LawOutputs
from tests.ml_checks import read_column
from tests.test_slurm import slurm_cluster, slurm_jobs  # noqa: F401 (slurm_cluster: a fixture)

CONFIG = "run2_2017_nano_uhh_v11_limited"
MASSES = (300, 500, 1000)
LEFT_OUT = 500
BACKGROUNDS = ("tt_sl_powheg", "tt_dl_powheg", "dy_lep_m50_madgraph")
BAND = ("-2sigma", "-1sigma", "median", "+1sigma", "+2sigma")


@pytest.fixture(scope="module")
def ml_modules() -> None:
    from cf.analysis import load_modules

    load_modules("ml_modules")


# the --ml-models syntax


def test_commas_inside_brackets_are_joined_back_and_the_settings_split() -> None:
    items = ("param_dnn[masses=300:500", "epochs=2]", "dnn")
    assert join_model_specs(items) == ("param_dnn[masses=300:500,epochs=2]", "dnn")
    assert split_model_spec("param_dnn[masses=300:500,epochs=2]") == ("param_dnn", ("masses=300:500", "epochs=2"))
    assert split_model_spec("dnn") == ("dnn", ())


def test_a_spec_is_checked_typed_and_sorted(ml_modules: None) -> None:
    assert model_spec("param_dnn", ("masses=500:300", "epochs=02")) == "param_dnn[epochs=2,masses=500:300]"
    assert model_spec("param_dnn", ()) == "param_dnn"
    assert model_spec_store_name("dnn") == "dnn"
    assert re.fullmatch(r"param_dnn__[0-9a-f]{10}", model_spec_store_name("param_dnn[epochs=2]"))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("param_dnn[nope=1]", r"unknown setting 'nope' for ML model 'param_dnn', declared: "),
        ("param_dnn[masses=100]", r"setting 'masses=100': item '100' is not an integer >= 251 and <= 3000"),
        ("param_dnn[training_masses=600]", r"item '600' is not one of 300, 400, 500, 700, 1000"),
        ("param_dnn[epochs=2", r"not of the form name\[key=value,\.\.\.\]"),
        ("nonet[epochs=2]", r"unknown ML model 'nonet'"),
    ],
)
def test_bad_ml_model_settings_are_refused_at_parameter_time(spec: str, message: str) -> None:
    from cf.tasks.histograms import CreateHistograms

    with pytest.raises(UserError, match=message):
        CreateHistograms(version="t", ml_models=(spec,))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"masses": (300, 600)}, r"setting 'mass=600' is not one of 300, 400, 500, 700, 1000"),
        ({"masses": ()}, r"no --masses given"),
        ({"masses": (300, 300)}, r"--masses names a mass twice: 300,300"),
        ({"masses": (300,), "mass_setting": "size"}, r"declares no setting 'size' \(--mass-setting\); its settings: "),
        ({"masses": (300,), "inference_model_settings": ("mass=300",)}, r"sets 'mass', which --masses gives"),
    ],
)
def test_bad_masses_are_refused_at_parameter_time(kwargs: dict, message: str) -> None:
    from cf.tasks.mass_scan import PlotLimitsVsMass

    with pytest.raises(UserError, match=message):
        PlotLimitsVsMass(version="t", inference_model="resonant_inference", **kwargs)


def test_each_mass_is_one_batch_job_after_the_shared_evaluations(
    ml_modules: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    import law

    from cf.tasks.mass_scan import LimitsPerMass
    from cf.tasks.ml import MLEvaluation
    from cf.tasks.remote import create_job_file

    monkeypatch.setenv("CF_JOB_BASE", str(tmp_path / "jobs"))
    spec = RESONANCE_SCAN[-1]
    task = LimitsPerMass(
        version="v1", inference_model="resonant_inference", masses=MASSES, ml_models=(spec,), workflow="slurm"
    )
    assert task.branch_map == dict(enumerate(MASSES))
    data = create_job_file(task, branches=[1], job_num=1, directory=str(tmp_path / "submit"))
    command_line = Path(data["job"]).read_text().strip().splitlines()[-1].split()
    assert command_line[1:3] == ["cf.tasks.mass_scan", "LimitsPerMass"]
    assert "--masses=300,500,1000" in base64.b64decode(command_line[3]).decode()
    assert base64.b64decode(command_line[4]).decode() == "1"
    # the evaluation that the histograms of every mass read runs before the jobs, as batch jobs of its own
    shared = law.util.flatten(task.workflow_requires()["shared"])
    evaluations = [req for req in shared if isinstance(req, MLEvaluation)]
    assert {req.dataset for req in evaluations} >= {f"x_hh_bbtautau_m{LEFT_OUT}_madgraph", *BACKGROUNDS}
    assert {(req.workflow, req.ml_model) for req in evaluations} == {("slurm", "param_dnn")}


def test_the_guides_listing_shows_the_commands_the_tests_run() -> None:
    from tests.doc_outputs import EXAMPLES, shell_commands

    listing = shell_commands((EXAMPLES / "resonance_scan.sh").read_text())
    assert listing == [("law", "run", *RESONANCE_SCAN), ("law", "run", *RESONANCE_SCAN_LEFT_OUT)]


# the model and the AUC


def test_background_masses_are_drawn_from_the_signal_masses() -> None:
    from ml.param_dnn import draw_background_masses

    signal = np.repeat([300.0, 500.0, 1000.0], [100, 100, 200])
    drawn = draw_background_masses(signal, 20000, seed=1)
    assert set(np.unique(drawn)) == {300.0, 500.0, 1000.0}
    assert np.mean(drawn == 1000.0) == pytest.approx(0.5, abs=0.02)
    np.testing.assert_array_equal(drawn, draw_background_masses(signal, 20000, seed=1))
    with pytest.raises(ValueError, match="no signal events"):
        draw_background_masses(np.zeros(0), 5, seed=1)


def test_the_mass_list_is_an_evaluation_setting(ml_modules: None) -> None:
    from cf.ml import model_instance

    config = ("run2_2017_nano_uhh_v11_limited",)
    few = model_instance("param_dnn", ("masses=300:500",), config)
    many = model_instance("param_dnn", ("masses=300:500:1000",), config)
    assert few.produces(few.config_inst) == {"param_dnn.score_m300", "param_dnn.score_m500"}
    assert few.training_settings_repr == many.training_settings_repr == ""
    assert few.settings_repr != many.settings_repr
    assert few.config_inst.has_variable("param_dnn.score_m1000")
    left_out = model_instance("param_dnn", ("training_masses=300:1000",), config)
    assert "x_hh_bbtautau_m500_madgraph" not in {dataset.name for dataset in left_out.datasets(left_out.config_inst)}


def test_the_binned_auc_of_a_workspace_channel() -> None:
    from cf.tasks.mass_scan import binned_aucs

    def sample(name: str, data: list[float], signal: bool) -> dict:
        modifiers = [{"name": "r", "type": "normfactor", "data": None}] if signal else []
        return {"name": name, "data": data, "modifiers": modifiers}

    separated = {"name": "a", "samples": [sample("s", [0.0, 2.0], True), sample("b", [3.0, 0.0], False)]}
    equal = {"name": "b", "samples": [sample("s", [1.0, 1.0], True), sample("b", [2.0, 2.0], False)]}
    assert binned_aucs({"channels": [separated, equal]}, "r") == {"a": 1.0, "b": 0.5}


# the mass scans


def scan_outputs(store: LawEnv, law_outputs: LawOutputs, args: tuple[str, ...]) -> dict[str, Path]:
    return {path.suffix[1:]: path for path in law_outputs(*args, env=store.env)}


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.parametrize("args", [RESONANCE_SCAN, RESONANCE_SCAN_LEFT_OUT], ids=["trained", "left_out"])
def test_the_scan_writes_finite_ordered_limits_and_a_plot(
    resonance_store: LawEnv, law_outputs: LawOutputs, args: tuple[str, ...]
) -> None:
    outputs = scan_outputs(resonance_store, law_outputs, args)
    assert outputs["png"].stat().st_size > 10_000
    assert outputs["pdf"].is_file()
    result = json.loads(outputs["json"].read_text())
    assert result["masses"] == list(MASSES)
    assert result["poi_label"].startswith("95% CL limit on")
    for mass in MASSES:
        limits = result["limits"][str(mass)]
        band = [limits["expected"][key] for key in BAND]
        assert all(math.isfinite(value) and value > 0 for value in [*band, limits["observed"]]), (mass, limits)
        assert band == sorted(band), (mass, band)
        assert 0.5 < limits["auc"]["sr"] <= 1.0
    # a heavier resonance is easier to tell from the backgrounds
    medians = [result["limits"][str(mass)]["expected"]["median"] for mass in MASSES]
    assert medians[-1] < medians[0]


def chain_files(store: LawEnv, family: str, dataset: str, tail: str) -> list[Path]:
    """The per-file parquet outputs of a task of the default chain (calibrator, selector and producer) by branch."""
    base = store.store / "analysis_template" / family / CONFIG / "nominal" / dataset
    files = list((base / "calib__skip_jecunc" / "sel__default" / "prod__default" / tail).glob("*.parquet"))
    assert files, f"no outputs of {family} for {dataset} in {base}"
    return sorted(files, key=lambda path: int(path.stem.rpartition("_")[2]))


def held_out_aucs(store: LawEnv, spec: str) -> dict[int, float]:
    """Per mass, the weighted AUC of the score at that mass: its signal against tt and Drell-Yan.

    The scores are those of cf.MLEvaluation (each training event scored by the fold model that did not see it),
    the weights the cross-section weights of cf.ProduceColumns, found in the store by their paths (one law run
    per file list would take longer than the check).
    """
    from ml.dnn import signal_vs_rest_auc
    from ml.param_dnn import signal_dataset

    name = split_model_spec(spec)[0]
    columns, weights = {}, {}
    for dataset in (*BACKGROUNDS, *(signal_dataset(mass) for mass in MASSES)):
        files = chain_files(store, "cf.MLEvaluation", dataset, f"ml__{model_spec_store_name(spec)}/v1")
        produced = chain_files(store, "cf.ProduceColumns", dataset, "v1")
        columns[dataset] = {mass: read_column(files, f"{name}.score_m{mass}") for mass in MASSES}
        weights[dataset] = np.abs(read_column(produced, "normalization_weight"))
    aucs = {}
    for mass in MASSES:
        datasets = (signal_dataset(mass), *BACKGROUNDS)
        scores = np.concatenate([columns[dataset][mass] for dataset in datasets])
        labels = np.concatenate([np.full(len(columns[d][mass]), d == signal_dataset(mass)) for d in datasets])
        aucs[mass] = signal_vs_rest_auc(scores, labels, np.concatenate([weights[dataset] for dataset in datasets]))
    return aucs


@pytest.mark.slow
@pytest.mark.sandbox
def test_one_score_column_per_mass_and_the_left_out_mass_scores_about_as_well(
    resonance_store: LawEnv, law_outputs: LawOutputs, capsys: pytest.CaptureFixture[str]
) -> None:
    import awkward as ak

    trained, left_out = RESONANCE_SCAN[-1], RESONANCE_SCAN_LEFT_OUT[-1]
    name, settings = split_model_spec(trained)
    evaluate = ("cf.MLEvaluation", "--version", "v1", "--ml-model", name, "--ml-model-settings", ",".join(settings))
    files = law_outputs(*evaluate, "--dataset", "x_hh_bbtautau_m500_madgraph", env=resonance_store.env)
    scores = ak.from_parquet(files[0])
    assert scores.fields == ["param_dnn"]
    assert sorted(scores.param_dnn.fields) == sorted(f"score_m{mass}" for mass in MASSES)
    # the --ml-models item names the evaluation's directory (found by path below)
    tail = f"ml__{model_spec_store_name(trained)}/v1"
    assert files == chain_files(resonance_store, "cf.MLEvaluation", "x_hh_bbtautau_m500_madgraph", tail)

    full = held_out_aucs(resonance_store, trained)
    without = held_out_aucs(resonance_store, left_out)
    with capsys.disabled():
        print("\nmass  AUC trained on all masses  AUC without 500 GeV")
        for mass in MASSES:
            print(f"{mass:>4}  {full[mass]:24.4f}  {without[mass]:19.4f}")
    assert all(auc > 0.75 for auc in full.values()), full
    # the network has not seen 500 GeV, yet interpolates between 300 and 1000 GeV
    assert without[LEFT_OUT] > full[LEFT_OUT] - 0.03, (full, without)


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.slurm
@pytest.mark.usefixtures("slurm_cluster")
def test_the_masses_as_slurm_jobs_give_the_local_limits(
    resonance_store: LawEnv, law_outputs: LawOutputs, tmp_path: Path
) -> None:
    """The trained scan's limits again, each mass a job on the real cluster (the evaluations are complete)."""
    import shutil

    from tests.conftest import run_law

    local = json.loads(scan_outputs(resonance_store, law_outputs, RESONANCE_SCAN)["json"].read_text())
    redo = ("cf.LimitsPerMass", "cf.PyhfLimit", "cf.PlotLimitsVsMass")
    shutil.copytree(resonance_store.store, tmp_path / "store", ignore=shutil.ignore_patterns(*redo))
    env = resonance_store.with_paths(store=tmp_path / "store")
    env = replace(env, env={**env.env, "CF_JOB_BASE": str(tmp_path / "jobs")})
    known = set(slurm_jobs())
    run_law(*RESONANCE_SCAN, "--workflow", "slurm", "--poll-interval", "2sec", env=env.env, timeout=600)
    assert len(set(slurm_jobs()) - known) == len(MASSES)
    batch = json.loads(scan_outputs(env, law_outputs, RESONANCE_SCAN)["json"].read_text())
    for mass in map(str, MASSES):
        for key, value in local["limits"][mass]["expected"].items():
            assert batch["limits"][mass]["expected"][key] == pytest.approx(value, rel=1e-6)
