"""Tests of the ML input and importance plots: the pure functions of ``cf.ml_diagnostics`` against hand computations,
and ``cf.PlotMLInputs`` / ``cf.PlotMLImportance`` on the trained reference model ``dnn`` (the commands of the docs'
listing ``examples/ml_inputs.sh``), compared with the events and the evaluation they come from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from cf.columnar_util import EMPTY_FLOAT
from cf.folds import fold_indices
from cf.ml_diagnostics import (
    feature_edges,
    fold_pulls,
    permutation_importance,
    signal_auc,
    weighted_correlation,
    weighted_cross_entropy,
    weighted_mean_std,
)
from ml.dnn import FEATURES
from tests.conftest import DNN_DATASETS, LawEnv, LawOutputs, LawRun
from tests.doc_outputs import listing_commands

CONFIG = "run2_2017_nano_uhh_v11_limited"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: The commands of the docs' listing, as typed after ``law run``.
INPUTS, IMPORTANCE = (command[2:] for command in listing_commands("ml_inputs"))


# statistics


def test_weighted_statistics_equal_those_of_repeated_events() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0.0, 0.0, 1.0]])
    counts = rng.integers(1, 4, size=200)
    repeated = np.repeat(x, counts, axis=0)
    mean, std = weighted_mean_std(x, counts.astype(float))
    np.testing.assert_allclose(mean, repeated.mean(axis=0))
    np.testing.assert_allclose(std, repeated.std(axis=0))
    np.testing.assert_allclose(weighted_correlation(x, counts.astype(float)), np.corrcoef(repeated.T), atol=1e-12)


def test_a_constant_feature_is_uncorrelated_with_a_unit_diagonal() -> None:
    x = np.column_stack([np.arange(10.0), np.full(10, 2.0), np.arange(10.0) ** 2])
    matrix = weighted_correlation(x, np.ones(10))
    np.testing.assert_array_equal(matrix[1], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    np.testing.assert_allclose(matrix, matrix.T)
    assert 0.9 < matrix[0, 2] < 1.0


def test_fold_pulls_point_at_the_fold_that_differs() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 2))
    folds = np.arange(3000) % 3
    x[folds == 1, 0] += 0.5
    pulls = fold_pulls(x, np.ones(3000), folds, 3)
    assert pulls.shape == (2, 3)
    assert pulls[0, 1] > 10
    assert np.all(np.abs(pulls[1]) < 4)
    assert np.isnan(fold_pulls(x, np.ones(3000), folds, 4)[:, 3]).all()


def test_counts_get_unit_bins_and_continuous_features_the_central_range() -> None:
    np.testing.assert_array_equal(feature_edges(np.array([0.0, 2.0, 1.0, 2.0])), [-0.5, 0.5, 1.5, 2.5])
    values = np.r_[np.linspace(0.0, 1.0, 1000), 1e6]
    edges = feature_edges(values, bins=10)
    assert len(edges) == 11
    assert edges[0] >= 0.0
    assert edges[-1] < 2.0


# permutation importance


def _sample(n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    labels = (rng.random(n) < 0.4).astype(np.int64)  # 0: signal, 1: background
    signal_like = np.where(labels == 0, 1.0, -1.0) + rng.normal(size=n)
    return np.column_stack([signal_like, rng.normal(size=n)]), labels


def _predict(x: np.ndarray) -> np.ndarray:
    """A classifier that reads only the first feature."""
    signal = 1.0 / (1.0 + np.exp(-2.0 * x[:, 0]))
    return np.column_stack([signal, 1.0 - signal])


def test_a_feature_the_classifier_ignores_has_no_importance_and_reruns_permute_alike() -> None:
    x, labels = _sample()
    original = x.copy()
    weights = np.ones(len(x))
    first = permutation_importance(_predict, x, labels, weights, weights, seed=(0, 1), repeats=2)
    np.testing.assert_array_equal(x, original)
    assert first.auc == pytest.approx(signal_auc(_predict(x), labels, weights))
    assert first.loss == pytest.approx(weighted_cross_entropy(_predict(x), labels, weights))
    assert first.auc_drop[0] > 0.3
    assert first.loss_increase[0] > 0.3
    assert first.auc_drop[1] == 0.0
    assert first.loss_increase[1] == 0.0
    again = permutation_importance(_predict, x, labels, weights, weights, seed=(0, 1), repeats=2)
    np.testing.assert_array_equal(again.auc_drop, first.auc_drop)
    other = permutation_importance(_predict, x, labels, weights, weights, seed=(1, 1), repeats=2)
    assert other.auc_drop[0] != first.auc_drop[0]


def test_the_cross_entropy_is_that_of_the_true_class() -> None:
    scores = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    loss = weighted_cross_entropy(scores, np.array([0, 1, 1]), np.array([1.0, 2.0, 1.0]))
    assert loss == pytest.approx(-(np.log(0.5) + 2 * np.log(0.1) + np.log(0.8)) / 4)


# the tasks on dnn


def _check_figures(paths: dict[str, Path], stems: list[str]) -> None:
    for stem in stems:
        assert paths[f"{stem}.png"].read_bytes().startswith(PNG_MAGIC)
        assert paths[f"{stem}.pdf"].read_bytes().startswith(b"%PDF")
    folder = next(iter(paths.values())).parent
    assert [name for name in os.listdir(folder) if name.startswith(".")] == []


def _ml_events(store: Path, dataset: str) -> ak.Array:
    pattern = f"analysis_template/cf.MergeMLEvents/{CONFIG}/{dataset}/**/ml__dnn/v1/mlevents_f*of3.parquet"
    files = sorted(store.glob(pattern))
    assert len(files) == 3
    return ak.concatenate([ak.from_parquet(path) for path in files])


@pytest.mark.slow
@pytest.mark.sandbox
def test_input_plots_of_dnn(dnn_store: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    law_run(*INPUTS, env=dnn_store.env, timeout=900)
    paths = {path.name: path for path in law_outputs(*INPUTS, env=dnn_store.env)}
    classes = ("hh", "tt", "dy")
    _check_figures(paths, ["plot__inputs", "plot__inputs_folds", *(f"plot__correlation__{c}" for c in classes)])
    results = json.loads(paths["ml_inputs.json"].read_text())
    features = list(FEATURES)
    assert results["features"] == features
    assert [entry["name"] for entry in results["classes"]] == list(classes)

    # the weighted mean of m_bb in the signal is that of its ML events (a missing pair counts as 0 GeV, as the
    # network sees it) and clearly differs from the one in tt
    hh = _ml_events(dnn_store.store, "hh_ggf_bbtautau_madgraph")
    m_bb = ak.to_numpy(hh.m_bb).astype(np.float64)
    weights = np.abs(ak.to_numpy(hh.normalization_weight).astype(np.float64))
    expected = np.sum(weights * np.where(m_bb == EMPTY_FLOAT, 0.0, m_bb)) / weights.sum()
    stats = results["statistics"]
    assert set(stats["hh"]) == set(features)
    assert stats["hh"]["m_bb"]["mean"] == pytest.approx(expected, rel=1e-9)
    assert results["n_events"]["hh"]["total"] == len(hh)
    assert sum(results["n_events"]["hh"]["per_fold"]) == len(hh)
    error = np.hypot(*(stats[c]["m_bb"]["std"] / np.sqrt(results["n_events"][c]["total"]) for c in ("hh", "tt")))
    assert abs(stats["hh"]["m_bb"]["mean"] - stats["tt"]["m_bb"]["mean"]) > 5 * error

    for name in classes:
        matrix = np.array(results["correlation"][name])
        assert matrix.shape == (len(features), len(features))
        np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
        np.testing.assert_allclose(np.diag(matrix), 1.0)
        assert np.all(np.abs(matrix) <= 1.0)
        assert all(value is not None for pulls in results["fold_pulls"][name].values() for value in pulls)
    # the scalar sum of the jet momenta follows the leading jet
    assert results["correlation"]["hh"][features.index("ht")][features.index("jet1_pt")] > 0.5

    # dnn's training weights give every class the same total, over all events and in each fold model's training
    weights_table = results["class_weights"]
    totals = [weights_table["per_class"][name]["sum_training_weights"] for name in classes]
    np.testing.assert_allclose(totals, totals[0], rtol=1e-9)
    assert weights_table["per_class"]["hh"]["sum_abs_weights"] == pytest.approx(weights.sum(), rel=1e-9)
    for per_class in weights_table["per_fold_model"].values():
        np.testing.assert_allclose(list(per_class.values()), per_class["hh"], rtol=1e-9)


def _held_out_aucs(store: Path) -> list[float]:
    """The weighted signal-vs-rest AUC of each fold on the MLEvaluation scores (each event scored by its fold's model)."""
    scores, labels, weights, folds = [], [], [], []
    for dataset, label in DNN_DATASETS.items():
        base = f"analysis_template/{{}}/{CONFIG}/nominal/{dataset}/calib__skip_jecunc/sel__default"
        evaluated = sorted(store.glob(base.format("cf.MLEvaluation") + "/prod__default/ml__dnn/v1/mlcolumns_*.parquet"))
        assert evaluated
        for path in evaluated:
            branch = path.stem.split("_")[1]
            (reduced,) = store.glob(base.format("cf.ReduceEvents") + f"/v1/events_{branch}.parquet")
            (produced,) = store.glob(base.format("cf.ProduceColumns") + f"/prod__default/v1/*_{branch}.parquet")
            events = ak.from_parquet(reduced, columns=["run", "luminosityBlock", "event"])
            scores.append(ak.to_numpy(ak.from_parquet(path).dnn.score_hh))
            labels.append(np.full(len(events), label))
            weights.append(np.abs(ak.to_numpy(ak.from_parquet(produced, columns=["normalization_weight"])[
                "normalization_weight"])))  # fmt: skip
            folds.append(fold_indices(events, 3))
    score, label, weight, fold = (np.concatenate(parts) for parts in (scores, labels, weights, folds))
    return [signal_auc(score[fold == k, None], label[fold == k], weight[fold == k]) for k in range(3)]


@pytest.mark.slow
@pytest.mark.sandbox
def test_permutation_importance_of_dnn(dnn_store: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    law_run(*IMPORTANCE, env=dnn_store.env, timeout=900)
    paths = {path.name: path for path in law_outputs(*IMPORTANCE, env=dnn_store.env)}
    _check_figures(paths, ["plot__importance", "plot__importance_loss"])
    results = json.loads(paths["ml_importance.json"].read_text())
    assert results["signal_class"] == "hh"
    assert sorted(results["features"]) == sorted(FEATURES)

    # the unpermuted AUC of fold k is that of the evaluation on fold k's events: the model that did not see them
    np.testing.assert_allclose(results["baseline"]["auc"]["per_fold"], _held_out_aucs(dnn_store.store), atol=1e-6)

    means = {}
    for name, entry in results["features"].items():
        for metric in ("auc_drop", "loss_increase"):
            assert len(entry[metric]["per_fold"]) == 3
            assert np.isfinite(entry[metric]["mean"])
            assert np.isfinite(entry[metric]["std"])
            assert entry[metric]["mean"] == pytest.approx(np.mean(entry[metric]["per_fold"]))
        means[name] = entry["auc_drop"]["mean"]
    assert results["ranking"] == sorted(means, key=lambda name: -means[name])
    # some feature matters far beyond its spread over the folds
    assert any(e["auc_drop"]["mean"] > max(0.01, 3 * e["auc_drop"]["std"]) for e in results["features"].values())


REFUSED = (
    pytest.param(
        ("cf.PlotMLInputs", "--version", "v1", "--ml-model", "test_model"),
        "ML model 'test_model' does not implement input_features, input_matrix, which cf.PlotMLInputs needs",
        id="model-without-feature-methods",
    ),
    pytest.param(
        (*IMPORTANCE, "--ml-model-settings", "evaluation_backend=keras"),
        "cf.PlotMLImportance opens the fold models in the base environment, but ML model 'dnn' asks for the sandbox",
        id="importance-in-a-sandbox",
    ),
)


@pytest.mark.slow
@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_bad_input_is_refused_in_one_line(
    fresh_law_env: LawEnv, law_run: LawRun, args: tuple[str, ...], message: str
) -> None:
    result = law_run(*args, env=fresh_law_env.env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if "error: " in line]
    assert len(errors) == 1, output[-3000:]
    assert message in errors[0]
    assert "Traceback" not in output
    assert list(fresh_law_env.store.glob("*/cf.PlotML*")) == []
