"""The PyTorch reference model ``torch_dnn`` (ml/torch_dnn.py): its settings and sandboxes (fast), and the
commands of docs/user_guide/examples/torch_model.sh end to end, run once per module with tiny settings: the
training in the torch sandbox with its checked ONNX export, the ONNX evaluation in the base environment against
torch's, the plots, and a byte-identical re-training."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from ml.dnn import FEATURES, ONNX_TOLERANCE, DNNClassifier
from ml.torch_dnn import TORCH_SANDBOX, EarlyStopping, TorchDNNClassifier, torch_dnn
from tests.conftest import LawEnv, LawOutputs, LawRun, run_law
from tests.doc_outputs import shell_commands
from tests.ml_checks import read_column

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "user_guide" / "examples" / "torch_model.sh"
#: The ``law run`` commands of the example, without ``law run``: training, evaluation of HH, plots.
TRAIN, EVALUATE, PLOT = (command[2:] for command in shell_commands(EXAMPLE.read_text()))
#: The tiny settings of the example.
SETTINGS = TRAIN[TRAIN.index("--ml-model-settings") + 1]
FOLDS = 2
CLASSES = ("hh", "tt", "dy")


def make_model(**parameters: Any) -> TorchDNNClassifier:
    """The ``torch_dnn`` model without configs, with the given settings."""
    model = torch_dnn(None, parameters=parameters)
    assert isinstance(model, TorchDNNClassifier)
    return model


# settings and sandboxes (no torch needed)


def test_settings_are_dnns_with_torch_choices() -> None:
    declared = torch_dnn.declared_settings()
    assert set(DNNClassifier.declared_settings()) | {"threads"} == set(declared)
    assert declared["activation"].choices == ("relu", "elu", "selu", "gelu", "tanh", "sigmoid")
    model = make_model(activation="tanh", evaluation_backend="torch", threads=2)
    assert (model.activation, model.evaluation_backend, model.threads) == ("tanh", "torch", 2)
    assert model.folds == 3
    assert model.features == tuple(FEATURES)


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ({"evaluation_backend": "keras"}, r"setting 'evaluation_backend=keras' is not one of onnx, torch"),
        ({"activation": "softmax"}, r"setting 'activation=softmax' is not one of relu, elu, selu, gelu, tanh"),
        ({"threads": 0}, r"setting 'threads=0' is not an integer >= 1"),
    ],
)
def test_bad_settings_are_clear_errors(setting: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_model(**setting)


@pytest.mark.parametrize(
    ("backend", "family", "sandbox"),
    [
        ("onnx", "cf.MLTraining", TORCH_SANDBOX),
        ("onnx", "cf.MLEvaluation", ""),
        ("onnx", "cf.MLTrainingScores", ""),
        ("onnx", "cf.PlotMLImportance", ""),
        ("torch", "cf.MLEvaluation", TORCH_SANDBOX),
        ("torch", "cf.MLTrainingScores", TORCH_SANDBOX),
    ],
)
def test_only_the_training_and_the_torch_backend_need_the_sandbox(backend: str, family: str, sandbox: str) -> None:
    assert make_model(evaluation_backend=backend).sandbox(SimpleNamespace(task_family=family)) == sandbox


def stopped_at(losses: list[float], min_epochs: int, patience: int) -> tuple[int, EarlyStopping]:
    """The epoch after which the training stops (the last one if never), and the stopper."""
    stopping = EarlyStopping(min_epochs, patience)
    for epoch, loss in enumerate(losses):
        if stopping.should_stop(epoch, loss, lambda epoch=epoch: f"weights of epoch {epoch}"):
            return epoch, stopping
    return len(losses) - 1, stopping


def test_early_stopping_keeps_the_best_watched_epoch() -> None:
    epoch, stopping = stopped_at([5.0, 4.0, 3.0, 3.5, 3.0, 3.1, 2.0], min_epochs=1, patience=3)
    assert epoch == 5  # three epochs after the best one, none lower (an equal loss is no improvement)
    assert (stopping.best_epoch, stopping.best_loss, stopping.best_state) == (2, 3.0, "weights of epoch 2")


def test_early_stopping_ignores_the_epochs_before_min_epochs() -> None:
    epoch, stopping = stopped_at([1.0, 2.0, 3.0, 3.5], min_epochs=2, patience=1)
    assert epoch == 3
    assert stopping.best_state == "weights of epoch 2"  # the lower losses before it did not count
    epoch, stopping = stopped_at([1.0, 2.0], min_epochs=5, patience=1)
    assert epoch == 1
    assert stopping.best_epoch is None  # never watched: the last weights stay


# the example's commands end to end


@pytest.fixture(scope="module")
def trained(law_env: LawEnv, tmp_path_factory: pytest.TempPathFactory) -> LawEnv:
    """A store in which the example's commands ran: trained, HH evaluated, plotted."""
    env = law_env.with_paths(store=tmp_path_factory.mktemp("torch_store"))
    for command in (TRAIN, EVALUATE, PLOT):
        run_law(*command, env=env.env, timeout=900)
    return env


def with_settings(command: tuple[str, ...], settings: str) -> tuple[str, ...]:
    """The command with another ``--ml-model-settings`` value."""
    position = command.index("--ml-model-settings") + 1
    return (*command[:position], settings, *command[position + 1 :])


def hh_scores(env: LawEnv, law_outputs: LawOutputs, settings: str = SETTINGS) -> np.ndarray:
    files = law_outputs(*with_settings(EVALUATE, settings), env=env.env)
    return np.stack([read_column(files, f"torch_dnn.score_{name}") for name in CLASSES], axis=1)


@pytest.mark.slow
@pytest.mark.sandbox
def test_every_fold_has_its_files_and_a_checked_onnx_export(trained: LawEnv, law_outputs: LawOutputs) -> None:
    folds = law_outputs(*TRAIN, env=trained.env)
    assert [path.name for path in folds] == [f"mlmodel_f{fold}of{FOLDS}" for fold in range(FOLDS)]
    for fold, fold_dir in enumerate(folds):
        files = {path.name for path in fold_dir.iterdir()}
        assert files == {"model.pt", "model.onnx", "history.json", "metrics.json", "standardization.json"}
        metrics = json.loads((fold_dir / "metrics.json").read_text())
        assert (metrics["fold"], metrics["epochs_run"]) == (fold, 2)
        assert 0.0 <= metrics["onnx_torch_max_abs_diff"] < ONNX_TOLERANCE
        assert metrics["val_auc_signal_vs_rest"] > 0.6
        # the test machines have no GPU (and the sandbox torch's CPU build): the fallback is recorded
        assert metrics["device"] == "CPU"
        history = json.loads((fold_dir / "history.json").read_text())
        assert {key: len(values) for key, values in history.items()} == dict.fromkeys(
            ("loss", "accuracy", "val_loss", "val_accuracy"), 2
        )
        standardization = json.loads((fold_dir / "standardization.json").read_text())
        assert standardization["features"] == list(FEATURES)


@pytest.mark.slow
@pytest.mark.sandbox
def test_evaluation_writes_a_probability_per_class(trained: LawEnv, law_outputs: LawOutputs) -> None:
    scores = hh_scores(trained, law_outputs)
    reduced = law_outputs(
        "cf.ReduceEvents", "--version", "v1", "--dataset", "hh_ggf_bbtautau_madgraph", env=trained.env
    )
    assert len(scores) == sum(pq.read_metadata(path).num_rows for path in reduced) > 0
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    # held-out HH events are mostly called HH by the fold model that did not see them
    assert np.mean(scores.argmax(axis=1) == 0) > 0.5


@pytest.mark.slow
@pytest.mark.sandbox
def test_onnx_evaluation_reproduces_torch(trained: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    torch_settings = f"{SETTINGS},evaluation_backend=torch"
    law_run(*with_settings(EVALUATE, torch_settings), env=trained.env, timeout=600)
    difference = np.max(np.abs(hh_scores(trained, law_outputs, torch_settings) - hh_scores(trained, law_outputs)))
    print(f"max |torch - onnx| on the HH events: {difference:.3g}")
    assert difference < ONNX_TOLERANCE
    # the backend is an evaluation-only setting: the same trained models were used, none retrained
    assert len(list(trained.store.glob("analysis_template/cf.MLTraining/*/*/*/*/*"))) == 1


@pytest.mark.slow
@pytest.mark.sandbox
def test_plots_include_the_loss_from_the_history(trained: LawEnv, law_outputs: LawOutputs) -> None:
    outputs = {path.name: path for path in law_outputs(*PLOT, env=trained.env)}
    assert all(outputs[f"plot__{name}.png"].is_file() for name in ("roc", "confusion", "scores", "loss"))
    results = json.loads(outputs["ml_results.json"].read_text())
    assert results["history"] == {"available": True, "folds": [0, 1]}


@pytest.mark.slow
@pytest.mark.sandbox
def test_retraining_a_fold_is_byte_identical(trained: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    fold_dir = law_outputs(*TRAIN, env=trained.env)[0]
    before = {name: (fold_dir / name).read_bytes() for name in ("model.pt", "model.onnx")}
    result = law_run(*TRAIN, "--branch", "0", "--remove-output", "0,a,y", env=trained.env, timeout=600)
    assert "fold 0 epoch 2" in result.stdout  # it did train again
    assert {name: (fold_dir / name).read_bytes() for name in before} == before
