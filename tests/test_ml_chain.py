"""The ML chain end to end through ``law run``, in the real TensorFlow sandbox.

Runs the user guide's commands verbatim for ``test_model`` and checks what a physicist relies on: no
training event is scored by a model that saw it, folds do not depend on chunking, training is
reproducible, and bad input fails with one clear message. The guide's commands also run once in an empty
store, in the order of the pages, and what they print is compared with the outputs the pages show
(``tests/doc_outputs.py``; ``CF_UPDATE_DOCS_OUTPUTS=1`` records them anew).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import TEST_MODEL_EVALUATE, TEST_MODEL_TRAIN, LawEnv, LawOutputs, LawRun
from tests.doc_outputs import EXAMPLES, ROOT, check_transcript
from tests.ml_checks import assert_no_leakage, fold_of_events, read_column, recompute_fold_predictions

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

CONFIG = "run2_2017_nano_uhh_v11_limited"
TRAINING_DATASETS = ("hh_ggf_bbtautau_madgraph", "tt_sl_powheg")
# the guide's commands, verbatim
TRAIN = TEST_MODEL_TRAIN
EVALUATE = TEST_MODEL_EVALUATE
FOLDS = 3
# the guide's plot commands for test_model: its performance plots, and its score as a histogrammed variable
PLOT_ML_RESULTS = ("cf.PlotMLResults", "--version", "v1", "--ml-model", "test_model", "--config", CONFIG,
                   "--calibrators", "skip_jecunc", "--selector", "default")  # fmt: skip
HISTOGRAMS = ("cf.CreateHistograms", "--version", "v1", "--config", CONFIG, "--calibrators", "skip_jecunc",
              "--ml-models", "test_model")  # fmt: skip
# the guide's hyperparameter scan of dnn (tiny trainings) and its best point's training, as the scan names it
SCAN = ("cf.MLTrainingScan", "--version", "v1", "--ml-model", "dnn", "--config", CONFIG, "--calibrators",
        "skip_jecunc", "--selector", "default", "--ml-model-settings", "epochs=1,min_epochs=0,folds=2",
        "--scan", "layers=8,16;learning_rate=0.01,0.02")  # fmt: skip
SCAN_BEST_SETTINGS = "epochs=1,min_epochs=0,folds=2,layers=16,learning_rate=0.01"
SCAN_BEST = ("cf.MLTraining", "--version", "v1", "--ml-model", "dnn", "--config", CONFIG, "--calibrators",
             "skip_jecunc", "--selector", "default", "--ml-model-settings", SCAN_BEST_SETTINGS)  # fmt: skip
PLOT_SCORE = ("cf.PlotVariables1D", "--version", "v1", "--config", CONFIG, "--calibrators", "skip_jecunc",
              "--ml-models", "test_model", "--variables", "test_model.score_hh",
              "--datasets", ",".join(TRAINING_DATASETS))  # fmt: skip


@pytest.fixture(scope="module")
def trained(test_model_store: LawEnv, law_run: LawRun) -> LawEnv:
    # the guide's commands; the session's store already ran them, so law only finds them complete
    law_run(*TRAIN, env=test_model_store.env, timeout=900)
    law_run(*EVALUATE, env=test_model_store.env, timeout=600)
    law_run(*EVALUATE, "--dataset", "tt_sl_powheg", env=test_model_store.env, timeout=600)
    return test_model_store


def evaluation_files(env: LawEnv, law_outputs: LawOutputs, *extra: str, version: str = "v1") -> list[Path]:
    args = [arg if arg != "v1" else version for arg in EVALUATE]
    return law_outputs(*args, *extra, env=env.env)


def test_guide_commands_write_scores_for_every_selected_event(trained: LawEnv, law_outputs: LawOutputs) -> None:
    models = law_outputs(*TRAIN, env=trained.env)
    assert [path.name for path in models] == [f"mlmodel_f{fold}of{FOLDS}" for fold in range(FOLDS)]
    assert all((path / "model.keras").is_file() for path in models)
    for dataset in TRAINING_DATASETS:
        extra = () if dataset == "hh_ggf_bbtautau_madgraph" else ("--dataset", dataset)
        files = evaluation_files(trained, law_outputs, *extra)
        reduced = law_outputs("cf.ReduceEvents", "--version", "v1", "--dataset", dataset, env=trained.env)
        assert [path.name for path in files] == ["mlcolumns_0.parquet", "mlcolumns_1.parquet"]
        for scores_path, events_path in zip(files, reduced, strict=True):
            scores = ak.from_parquet(scores_path)
            assert scores.fields == ["test_model"]
            assert sorted(scores.test_model.fields) == ["score_hh", "score_tt"]
            assert len(scores) == pq.read_metadata(events_path).num_rows > 1000
            total = ak.to_numpy(scores.test_model.score_hh + scores.test_model.score_tt)
            np.testing.assert_allclose(total, 1.0, atol=1e-5)


def test_the_classifier_separates_signal_from_background(trained: LawEnv, law_outputs: LawOutputs) -> None:
    signal = ak.concatenate([ak.from_parquet(p) for p in evaluation_files(trained, law_outputs)])
    background = ak.concatenate(
        [ak.from_parquet(p) for p in evaluation_files(trained, law_outputs, "--dataset", "tt_sl_powheg")],
    )
    assert np.mean(signal.test_model.score_hh) > np.mean(background.test_model.score_hh) + 0.2


@pytest.mark.parametrize("dataset", TRAINING_DATASETS)
def test_no_training_event_is_scored_by_a_model_that_saw_it(
    trained: LawEnv,
    law_outputs: LawOutputs,
    dataset: str,
    tmp_path: Path,
) -> None:
    folds = fold_of_events(trained, law_outputs, "test_model", dataset)
    models = law_outputs(*TRAIN, env=trained.env)
    recomputed = recompute_fold_predictions(trained, law_outputs, "test_model", models, dataset, tmp_path)
    extra = () if dataset == "hh_ggf_bbtautau_madgraph" else ("--dataset", dataset)
    stored = read_column(evaluation_files(trained, law_outputs, *extra), "test_model.score_hh")
    assert_no_leakage(folds, recomputed, "test_model.score_hh", stored)


def test_folds_do_not_depend_on_the_chunk_size(trained: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    dataset = "tt_sl_powheg"
    args = ("cf.PrepareMLEvents", "--ml-model", "test_model", "--dataset", dataset)
    law_run(*args, "--version", "v_chunks", "--chunk-size", "333", env=trained.env)
    chunked = fold_of_events(trained, law_outputs, "test_model", dataset, "v_chunks")
    assert chunked == fold_of_events(trained, law_outputs, "test_model", dataset)


def test_retraining_with_the_same_seed_gives_identical_scores(
    trained: LawEnv,
    law_run: LawRun,
    law_outputs: LawOutputs,
) -> None:
    train_v2 = tuple("v2" if arg == "v1" else arg for arg in TRAIN)
    law_run(*train_v2, env=trained.env, timeout=900)
    evaluate_v2 = tuple("v2" if arg == "v1" else arg for arg in EVALUATE)
    law_run(*evaluate_v2, env=trained.env, timeout=600)
    for first, second in zip(
        evaluation_files(trained, law_outputs),
        evaluation_files(trained, law_outputs, version="v2"),
        strict=True,
    ):
        assert first != second
        assert pq.read_table(first).equals(pq.read_table(second))


def store_without_evaluation(
    env: LawEnv, law_outputs: LawOutputs, destination: Path
) -> tuple[LawEnv, list[Path], list[pa.Table]]:
    """A copy of the store whose evaluation files are removed, with their paths and their tables as they were."""
    shutil.copytree(env.store, destination)
    copy = env.with_paths(store=destination)
    files = evaluation_files(copy, law_outputs)
    tables = [pq.read_table(path) for path in files]
    for path in files:
        path.unlink()
    return copy, files, tables


def test_a_local_evaluation_enters_the_sandbox_once_for_all_files(
    trained: LawEnv,
    law_run: LawRun,
    law_outputs: LawOutputs,
    tmp_path: Path,
) -> None:
    copy, files, expected = store_without_evaluation(trained, law_outputs, tmp_path / "store")
    for workers, sandboxes in (("1", 1), ("2", len(files))):
        for path in files:
            path.unlink(missing_ok=True)
        # CF_VERBOSE=1 shows law's banner of every sandbox entry
        result = law_run(*EVALUATE, "--workers", workers, env={**copy.env, "CF_VERBOSE": "1"}, timeout=600)
        # one worker: the workflow enters the sandbox once; more workers: each file (branch) in its own
        assert result.stdout.count("entering sandbox") == sandboxes, result.stdout[-3000:]
        assert all(pq.read_table(path).equals(table) for path, table in zip(files, expected, strict=True))
        # with two workers the tasks run in forked processes: the summary counts them all the same
        lines = result.stdout.splitlines()
        done = [line for line in lines if line.startswith("done: ")]
        summary = [line for line in lines if line.startswith("summary: ")]
        assert done, result.stdout[-3000:]
        assert summary, result.stdout[-3000:]
        assert summary[-1].startswith(f"summary: {len(done)} task(s) ran"), summary
        assert "the outputs of cf.MLEvaluation are in " in summary[-1]


def test_the_evaluations_of_several_datasets_enter_the_sandbox_once(
    trained: LawEnv,
    law_run: LawRun,
    law_outputs: LawOutputs,
    tmp_path: Path,
) -> None:
    shutil.copytree(trained.store, tmp_path / "store")
    copy = trained.with_paths(store=tmp_path / "store")
    files = [
        path for dataset in TRAINING_DATASETS for path in evaluation_files(copy, law_outputs, "--dataset", dataset)
    ]
    expected = [pq.read_table(path) for path in files]
    for path in files:
        path.unlink()
    for family in ("cf.CreateHistograms", "cf.MergeHistograms", "cf.PlotVariables1D"):
        shutil.rmtree(copy.store / "analysis_template" / family, ignore_errors=True)
    # the plot needs the evaluation of both datasets: the first evaluation's sandbox process runs the other too
    result = law_run(*PLOT_SCORE, env={**copy.env, "CF_VERBOSE": "1"}, timeout=600)
    assert result.stdout.count("entering sandbox") == 1, result.stdout[-3000:]
    assert all(pq.read_table(path).equals(table) for path, table in zip(files, expected, strict=True))


def test_a_failing_file_keeps_the_files_evaluated_before_it(
    trained: LawEnv,
    law_run: LawRun,
    law_outputs: LawOutputs,
    tmp_path: Path,
) -> None:
    copy, files, (first, _) = store_without_evaluation(trained, law_outputs, tmp_path / "store")
    reduced = law_outputs("cf.ReduceEvents", "--version", "v1", "--calibrators", "skip_jecunc", env=copy.env)
    reduced[1].write_bytes(b"not a parquet file")
    result = law_run(*EVALUATE, env=copy.env, timeout=600, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"error: cannot open parquet file '{reduced[1]}'" in output, output[-3000:]
    assert pq.read_table(files[0]).equals(first)
    assert not files[1].exists()
    assert sorted(path.name for path in files[0].parent.iterdir()) == [files[0].name]


def assert_clear_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    for needle in needles:
        assert needle in output, f"'{needle}' not in output:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]


def test_fewer_than_two_folds_is_refused(fresh_law_env: LawEnv, law_run: LawRun) -> None:
    # the machine learning chapter shows this command (the bad-input table has it too)
    result = law_run(*TRAIN, "--ml-model-settings", "folds=1", env=fresh_law_env.env, check=False)
    assert_clear_failure(result, "ML model 'test_model': setting 'folds=1' is not an integer >= 2")
    replacements = {str(fresh_law_env.store): "$CF_STORE_LOCAL", str(fresh_law_env.data): "$CF_DATA"}
    check_transcript("ml_settings_refused", [result], replacements)


def test_training_on_a_dataset_the_model_does_not_use_is_refused(fresh_law_env: LawEnv, law_run: LawRun) -> None:
    args = [*TRAIN[:-1], "dy_lep_m50_madgraph"]
    result = law_run(*args, env=fresh_law_env.env, check=False)
    assert_clear_failure(result, "does not train on dataset(s) dy_lep_m50_madgraph", "hh_ggf_bbtautau_madgraph")
    prepare = ("cf.PrepareMLEvents", "--version", "v1", "--ml-model", "test_model", "--dataset", "data_mu_b")
    result = law_run(*prepare, env=fresh_law_env.env, check=False)
    assert_clear_failure(result, "does not train on dataset 'data_mu_b'", "tt_sl_powheg")


def test_a_feature_column_that_does_not_exist_is_named(fresh_law_env: LawEnv, law_run: LawRun) -> None:
    prepare = ("cf.PrepareMLEvents", "--version", "v1", "--ml-model", "test_model", "--dataset", "tt_sl_powheg")
    result = law_run(*prepare, "--ml-model-settings", "features=n_jet:n_jets_typo", env=fresh_law_env.env, check=False)
    assert_clear_failure(result, "column 'n_jets_typo' (declared in 'uses' of ML model 'test_model') is not in")
    assert_clear_failure(result, "; closest existing: n_jet")
    assert not any(fresh_law_env.store.rglob("mlevents_*.parquet"))


def test_nan_in_a_training_feature_is_refused(fresh_law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    produce = ("cf.ProduceColumns", "--version", "v1", "--dataset", "tt_sl_powheg")
    law_run(*produce, env=fresh_law_env.env)
    # a producer bug: one NaN in ht of the first file
    path = law_outputs(*produce, env=fresh_law_env.env)[0]
    table = pq.read_table(path)
    ht = table.column("ht").to_numpy().copy()
    ht[5] = np.nan
    pq.write_table(table.set_column(table.schema.get_field_index("ht"), "ht", pa.array(ht)), path)
    prepare = ("cf.PrepareMLEvents", "--version", "v1", "--ml-model", "test_model", "--dataset", "tt_sl_powheg")
    result = law_run(*prepare, env=fresh_law_env.env, check=False)
    assert_clear_failure(result, "ML feature 'ht' of dataset 'tt_sl_powheg' has 1 NaN or infinite value(s)")
    # the file with the NaN leaves no fold file behind; the clean second file is prepared
    assert not any(fresh_law_env.store.rglob("mlevents_f*_0.parquet"))
    assert len(list(fresh_law_env.store.rglob("mlevents_f*_1.parquet"))) == FOLDS


def test_a_sandboxed_run_is_quiet_with_one_line_per_task_and_a_summary(trained: LawEnv, law_run: LawRun) -> None:
    # evaluating a further dataset: its chain runs here, the evaluation in the TF sandbox
    result = law_run(*EVALUATE, "--dataset", "dy_lep_m50_madgraph", env=trained.env, timeout=600)
    output = result.stdout + result.stderr
    # no sandbox banners, no TensorFlow start-up notices (CF_VERBOSE=1 shows them)
    for noise in ("entering sandbox", "leaving sandbox", "oneDNN", "absl::InitializeLog"):
        assert noise not in output, output[-3000:]
    done = [line for line in result.stdout.splitlines() if line.startswith("done: ")]
    # the branches of the evaluation ran in one sandbox process: the workflow's line stands for them
    assert any(
        line.startswith("done: cf.MLEvaluation run2_2017_nano_uhh_v11_limited dy_lep_m50_madgraph") for line in done
    )
    assert any(line.startswith("done: cf.ProduceColumns") for line in done)
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith(f"summary: {len(done)} task(s) ran"), summary
    assert "the outputs of cf.MLEvaluation are in " in summary


# the guide's commands in a fresh checkout, and what they print


@dataclass(frozen=True)
class GuideRuns:
    """The store of the guide's commands and what each listing's commands printed (listing name -> runs)."""

    env: LawEnv
    runs: dict[str, list[subprocess.CompletedProcess[str]]]

    @property
    def replacements(self) -> dict[str, str]:
        return {str(self.env.store): "$CF_STORE_LOCAL", str(self.env.data): "$CF_DATA"}


@pytest.fixture(scope="module")
def guide(law_env: LawEnv, law_run: LawRun, tmp_path_factory: pytest.TempPathFactory) -> GuideRuns:
    """The commands of the getting-started page and the ML chapter, in their order, in an empty store and data
    directory (as in a fresh checkout: the first training runs the whole chain)."""
    root = tmp_path_factory.mktemp("guide")
    env = law_env.with_paths(store=root / "store", data=root / "data")
    train = law_run(*TRAIN, env=env.env, timeout=900)
    models = law_run(*TRAIN, "--print-output", "0", env=env.env)
    evaluate = law_run(*EVALUATE, env=env.env, timeout=600)
    evaluate_tt = law_run(*EVALUATE, "--dataset", "tt_sl_powheg", env=env.env, timeout=600)
    scores = law_run(*EVALUATE, "--print-output", "0", env=env.env)
    scores_tt = law_run(*EVALUATE, "--dataset", "tt_sl_powheg", "--print-output", "0", env=env.env)
    read_scores = subprocess.run(
        [sys.executable, str(EXAMPLES / "read_scores.py")],
        cwd=ROOT,
        env=env.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert read_scores.returncode == 0, read_scores.stderr[-3000:]
    plot_results = law_run(*PLOT_ML_RESULTS, env=env.env, timeout=900)
    plot_files = law_run(*PLOT_ML_RESULTS, "--print-output", "0", env=env.env)
    histograms = law_run(*HISTOGRAMS, env=env.env)
    plot_score = law_run(*PLOT_SCORE, env=env.env)
    runs = {
        "getting_started": [train, evaluate, scores],
        "ml_train": [train],
        "ml_find_models": [models],
        "ml_evaluate": [evaluate, evaluate_tt],
        "ml_find_outputs": [scores, scores_tt],
        "read_scores": [read_scores],
        "ml_plot_results": [plot_results, plot_files],
        "ml_plot_score": [histograms, plot_score],
    }
    return GuideRuns(env, runs)


@pytest.mark.parametrize(
    "listing",
    ["getting_started", "ml_train", "ml_find_models", "ml_evaluate", "ml_find_outputs", "read_scores",
     "ml_plot_results", "ml_plot_score"],
)  # fmt: skip
def test_the_guide_shows_what_its_commands_print(guide: GuideRuns, listing: str) -> None:
    # a script is no listing of commands; the others must be run exactly as the page shows them
    check_transcript(listing, guide.runs[listing], guide.replacements, check_commands=listing != "read_scores")


def test_the_guide_plot_commands_write_their_plots(guide: GuideRuns, law_outputs: LawOutputs) -> None:
    results = {path.name: path for path in law_outputs(*PLOT_ML_RESULTS, env=guide.env.env)}
    for name in ("roc", "confusion", "scores"):
        assert results[f"plot__{name}.png"].stat().st_size > 1000
    (png,) = [path for path in law_outputs(*PLOT_SCORE, env=guide.env.env) if path.suffix == ".png"]
    assert png.name == "plot__cat_incl__var_test_model.score_hh.png"
    assert png.stat().st_size > 1000


def test_a_scan_tabulates_the_fold_metrics_of_every_point_and_names_the_best(
    dnn_store: LawEnv, law_run: LawRun, law_outputs: LawOutputs
) -> None:
    scan = law_run(*SCAN, env=dnn_store.env, timeout=900)
    outputs = {path.name: path for path in law_outputs(*SCAN, env=dnn_store.env)}
    summary = json.loads(outputs["scan.json"].read_text())
    points = summary["points"]
    assert [point["settings"] for point in points] == [
        {"layers": layers, "learning_rate": rate} for layers in ("8", "16") for rate in ("0.01", "0.02")
    ]
    for point in points:
        assert {"val_loss", "val_auc_hh", "val_auc_tt", "val_auc_dy"} <= set(point["folds"])
        assert all(len(values) == 2 and np.all(np.isfinite(values)) for values in point["folds"].values())
        assert point["mean"]["val_loss"] == pytest.approx(np.mean(point["folds"]["val_loss"]))
    # the best point has the lowest mean validation loss, and the scan prints its settings
    means = [point["mean"]["val_loss"] for point in points]
    best = summary["best"]
    assert (summary["metric"], summary["higher_is_better"]) == ("val_loss", False)
    assert best["point"] == int(np.argmin(means))
    assert best["ml_model_settings"] == points[best["point"]]["ml_model_settings"] == SCAN_BEST_SETTINGS
    assert f"--ml-model-settings {SCAN_BEST_SETTINGS}" in scan.stdout
    with outputs["scan.csv"].open() as file:
        rows = list(csv.DictReader(file))
    assert [float(row["val_loss_f1"]) for row in rows] == [point["folds"]["val_loss"][1] for point in points]
    assert outputs["plot__scan.png"].read_bytes().startswith(b"\x89PNG")
    assert outputs["plot__scan.pdf"].stat().st_size > 1000

    # the printed settings are the best point's training: complete already, with the table's metrics
    retrain = law_run(*SCAN_BEST, env=dnn_store.env)
    assert "0 task(s) ran" in retrain.stdout
    for fold, directory in enumerate(law_outputs(*SCAN_BEST, env=dnn_store.env)):
        metrics = json.loads((directory / "metrics.json").read_text())
        assert metrics["val_loss"] == points[best["point"]]["folds"]["val_loss"][fold]
        assert metrics["device"] == "CPU" or metrics["device"].startswith("GPU")

    replacements = {str(dnn_store.store): "$CF_STORE_LOCAL", str(dnn_store.data): "$CF_DATA"}
    check_transcript("ml_scan", [scan], replacements)
    check_transcript("ml_scan_best", [retrain], replacements)
