"""The reference classifier ``dnn`` end to end: trained in the TF sandbox, evaluated with ONNX Runtime in the
base environment (and with Keras in the TF sandbox), checked for separation power, leakage, reproducibility and
backend agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ml.dnn import signal_vs_rest_auc
from tests.conftest import DNN_DATASETS, DNN_EVALUATE, DNN_TRAIN, LawEnv, LawOutputs, LawRun
from tests.ml_checks import assert_no_leakage, fold_of_events, read_column, recompute_fold_predictions

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

TRAIN = DNN_TRAIN
EVALUATE = DNN_EVALUATE
DATASETS = DNN_DATASETS


@pytest.fixture(scope="module")
def trained(dnn_store: LawEnv) -> LawEnv:
    return dnn_store


def scores_of(env: LawEnv, law_outputs: LawOutputs, dataset: str, *extra: str) -> np.ndarray:
    files = law_outputs(*EVALUATE, "--dataset", dataset, *extra, env=env.env)
    return np.stack([read_column(files, f"dnn.score_{name}") for name in ("hh", "tt", "dy")], axis=1)


def test_fold_outputs_hold_both_formats_history_and_metrics(trained: LawEnv, law_outputs: LawOutputs) -> None:
    for fold_dir in law_outputs(*TRAIN, env=trained.env):
        assert {"model.keras", "model.onnx", "history.json", "metrics.json", "standardization.json"} <= {
            path.name for path in fold_dir.iterdir()
        }
        history = json.loads((fold_dir / "history.json").read_text())
        assert len(history["loss"]) == len(history["val_loss"]) >= 5


def test_held_out_auc_is_clearly_better_than_chance(trained: LawEnv, law_outputs: LawOutputs) -> None:
    scores, labels, weights = [], [], []
    for dataset, label in DATASETS.items():
        dataset_scores = scores_of(trained, law_outputs, dataset)
        produced = law_outputs("cf.ProduceColumns", "--version", "v1", "--dataset", dataset, env=trained.env)
        scores.append(dataset_scores[:, 0])
        labels.append(np.full(len(dataset_scores), label))
        weights.append(np.abs(read_column(produced, "normalization_weight")))
    score, label, weight = np.concatenate(scores), np.concatenate(labels), np.concatenate(weights)
    assert signal_vs_rest_auc(score, label == 0) > 0.85
    assert signal_vs_rest_auc(score, label == 0, weight) > 0.9


def test_onnx_and_keras_scores_agree(trained: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    dataset = "hh_ggf_bbtautau_madgraph"
    keras = ("--ml-model-settings", "evaluation_backend=keras")
    # the session's dnn store is shared: other tests (the scan) may have trained other settings in it
    trainings = sorted(trained.store.glob("analysis_template/cf.MLTraining/*/*/*/*/*"))
    law_run(*EVALUATE, "--dataset", dataset, *keras, env=trained.env, timeout=600)
    np.testing.assert_allclose(
        scores_of(trained, law_outputs, dataset, *keras), scores_of(trained, law_outputs, dataset), atol=1e-5
    )
    # the backend is an evaluation-only setting: the same trained models were used, none retrained
    assert sorted(trained.store.glob("analysis_template/cf.MLTraining/*/*/*/*/*")) == trainings


def test_no_training_event_is_scored_by_a_model_that_saw_it(
    trained: LawEnv,
    law_outputs: LawOutputs,
    tmp_path: Path,
) -> None:
    dataset = "tt_dl_powheg"
    folds = fold_of_events(trained, law_outputs, "dnn", dataset)
    models = law_outputs(*TRAIN, env=trained.env)
    recomputed = recompute_fold_predictions(trained, law_outputs, "dnn", models, dataset, tmp_path)
    assert_no_leakage(folds, recomputed, "dnn.score_hh", scores_of(trained, law_outputs, dataset)[:, 0])


def test_retraining_is_bit_identical(trained: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    retrain = tuple("v2" if arg == "v1" else arg for arg in TRAIN)
    law_run(*retrain, env=trained.env, timeout=900)
    for first, second in zip(law_outputs(*TRAIN, env=trained.env), law_outputs(*retrain, env=trained.env), strict=True):
        assert (first / "model.onnx").read_bytes() == (second / "model.onnx").read_bytes()
    reevaluate = tuple("v2" if arg == "v1" else arg for arg in EVALUATE)
    law_run(*reevaluate, "--dataset", "dy_lep_m50_madgraph", env=trained.env, timeout=600)
    first_files = law_outputs(*EVALUATE, "--dataset", "dy_lep_m50_madgraph", env=trained.env)
    second_files = law_outputs(*reevaluate, "--dataset", "dy_lep_m50_madgraph", env=trained.env)
    for first, second in zip(first_files, second_files, strict=True):
        assert pq.read_table(first).equals(pq.read_table(second))
