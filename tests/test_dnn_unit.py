"""Fast unit tests of the reference DNN (ml/dnn.py) that need neither TensorFlow nor onnxruntime.

Training and evaluation through ``law run`` are covered by the ML chain tests; here the pieces around the
network are checked on small hand-made inputs: features and their padding, standardization, class weights,
the AUC helper, the validation split, the settings, the sandboxes and the evaluation's output columns.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import awkward as ak
import law
import numpy as np
import order as od
import pytest

from cf.columnar_util import EMPTY_FLOAT
from cf.folds import fold_indices
from cf.ml import parse_settings
from ml.dnn import (
    FEATURES,
    TF_SANDBOX,
    DNNClassifier,
    apply_standardization,
    balanced_class_weights,
    dnn,
    fill_missing,
    fit_standardization,
    nth_largest_or_empty,
    signal_vs_rest_auc,
    validation_mask,
)
from ml.param_dnn import param_dnn


def make_model(**parameters: Any) -> DNNClassifier:
    """The ``dnn`` model without configs (so nothing global is touched), with the given settings."""
    model = dnn(None, parameters=parameters)
    assert isinstance(model, DNNClassifier)
    return model


def jet(pt: float, eta: float, btag: float) -> dict[str, float]:
    return {"pt": pt, "eta": eta, "btagDeepFlavB": btag}


@pytest.fixture
def events() -> ak.Array:
    """Three events: a full one, one without leptons and taus, one with a single jet and a muon."""
    return ak.Array(
        [
            {
                "run": 1, "luminosityBlock": 10, "event": 100,
                "Jet": [jet(120.0, 0.5, 0.2), jet(80.0, -1.0, 0.9), jet(30.0, 2.0, 0.6)],
                "Electron": [{"pt": 35.0}], "Muon": [{"pt": 20.0}], "Tau": [{"pt": 50.0}, {"pt": 30.0}],
                "MET": {"pt": 40.0},
                "n_jet": 3, "n_btag": 2, "n_electron": 1, "n_muon": 1, "n_tau": 2,
                "ht": 230.0, "m_bb": 110.0, "m_ll": EMPTY_FLOAT, "normalization_weight": 0.5,
            },
            {
                "run": 1, "luminosityBlock": 10, "event": 101,
                "Jet": [jet(60.0, 1.5, 0.05), jet(40.0, 0.1, 0.01)],
                "Electron": [], "Muon": [], "Tau": [],
                "MET": {"pt": 10.0},
                "n_jet": 2, "n_btag": 0, "n_electron": 0, "n_muon": 0, "n_tau": 0,
                "ht": 100.0, "m_bb": 70.0, "m_ll": EMPTY_FLOAT, "normalization_weight": -0.25,
            },
            {
                "run": 1, "luminosityBlock": 11, "event": 102,
                "Jet": [jet(50.0, -0.3, 0.7)],
                "Electron": [], "Muon": [{"pt": 25.0}, {"pt": 15.0}], "Tau": [],
                "MET": {"pt": 55.0},
                "n_jet": 1, "n_btag": 1, "n_electron": 0, "n_muon": 2, "n_tau": 0,
                "ht": 50.0, "m_bb": EMPTY_FLOAT, "m_ll": 91.0, "normalization_weight": 1.0,
            },
        ],
    )  # fmt: skip


# features


def test_feature_matrix_shape_values_and_padding(events: ak.Array) -> None:
    model = make_model()
    x = model.feature_matrix(events)
    assert x.shape == (3, len(FEATURES))
    column = {name: x[:, index] for index, name in enumerate(model.features)}
    np.testing.assert_array_equal(column["jet1_pt"], [120.0, 60.0, 50.0])
    np.testing.assert_array_equal(column["jet2_pt"], [80.0, 40.0, EMPTY_FLOAT])
    np.testing.assert_array_equal(column["jet2_eta"], [-1.0, 0.1, EMPTY_FLOAT])
    # the b-tag scores of the two most b-like jets, whatever their pt order
    np.testing.assert_allclose(column["bjet1_btag"], [0.9, 0.05, 0.7], rtol=1e-6)
    np.testing.assert_allclose(column["bjet2_btag"], [0.6, 0.01, EMPTY_FLOAT], rtol=1e-6)
    np.testing.assert_array_equal(column["tau1_pt"], [50.0, EMPTY_FLOAT, EMPTY_FLOAT])
    np.testing.assert_array_equal(column["tau2_pt"], [30.0, EMPTY_FLOAT, EMPTY_FLOAT])
    # the leading lepton is the harder of the leading electron and the leading muon
    np.testing.assert_array_equal(column["lep1_pt"], [35.0, EMPTY_FLOAT, 25.0])
    np.testing.assert_array_equal(column["met_pt"], [40.0, 10.0, 55.0])
    np.testing.assert_array_equal(column["n_muon"], [1, 0, 2])


def test_feature_matrix_follows_the_features_setting(events: ak.Array) -> None:
    model = make_model(features=("ht", "n_jet"))
    np.testing.assert_array_equal(model.feature_matrix(events), [[230.0, 3.0], [100.0, 2.0], [50.0, 1.0]])
    # a single feature from the command line arrives as a string
    assert make_model(**parse_settings(["features=ht"])).features == ("ht",)


def test_feature_matrix_of_no_events(events: ak.Array) -> None:
    assert make_model().feature_matrix(events[:0]).shape == (0, len(FEATURES))


def test_uses_and_produces() -> None:
    model = make_model()
    uses = model.uses(None)
    assert {"Jet.pt", "Jet.eta", "Jet.btagDeepFlavB", "Electron.pt", "Muon.pt", "Tau.pt", "MET.pt"} <= uses
    assert {"m_bb", "m_ll", "ht", "n_jet", "n_btag", "n_tau", "normalization_weight"} <= uses
    assert model.produces(None) == {"dnn.score_hh", "dnn.score_tt", "dnn.score_dy"}


# standardization


def test_padding_is_filled_before_standardization(events: ak.Array) -> None:
    model = make_model()
    x = model.feature_matrix(events)
    standardization = fit_standardization(x, model.features, model.feature_fills())
    z = apply_standardization(x, standardization)
    assert z.dtype == np.float32
    assert np.all(np.isfinite(z))
    # no feature is dominated by the padding: every standardized value is a few units at most
    assert np.abs(z).max() < 5.0
    filled = fill_missing(x, model.feature_fills())
    assert not np.any(filled == EMPTY_FLOAT)
    # a missing b-tag score becomes -1, a missing momentum 0
    assert filled[2, model.features.index("bjet2_btag")] == -1.0
    assert filled[1, model.features.index("tau1_pt")] == 0.0
    assert json.loads(json.dumps(standardization)) == standardization


def test_standardization_uses_the_fitted_numbers() -> None:
    train = np.array([[1.0, 5.0, EMPTY_FLOAT], [3.0, 5.0, 4.0], [5.0, 5.0, 2.0]])
    standardization = fit_standardization(train, ["a", "b", "c"], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(standardization["mean"], [3.0, 5.0, 2.0])
    np.testing.assert_allclose(standardization["std"][0], np.std([1.0, 3.0, 5.0]))
    # a constant feature keeps a width of 1 and standardizes to 0
    assert standardization["std"][1] == 1.0
    z_train = apply_standardization(train, standardization)
    np.testing.assert_allclose(z_train.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z_train[:, [0, 2]].std(axis=0), 1.0, rtol=1e-6)
    # other events are standardized with the training numbers, not their own
    z_other = apply_standardization(np.array([[3.0, 7.0, EMPTY_FLOAT]]), standardization)
    np.testing.assert_allclose(z_other, [[0.0, 2.0, -2.0 / standardization["std"][2]]], rtol=1e-6)
    with pytest.raises(ValueError, match="zero events"):
        fit_standardization(train[:0], ["a", "b", "c"], [0.0, 0.0, 0.0])


# class weights


def test_balanced_class_weights_give_equal_totals() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1, 2], [50, 400, 10])
    weights = rng.normal(1.0, 2.0, len(labels)) * np.array([1e-6, 0.2, 4.0])[labels]
    balanced = balanced_class_weights(weights, labels, 3)
    assert np.all(balanced >= 0)
    totals = np.bincount(labels, weights=balanced)
    np.testing.assert_allclose(totals, len(labels) / 3)
    assert balanced.mean() == pytest.approx(1.0)
    # within a class the weights keep their ratios (of the absolute values)
    np.testing.assert_allclose(balanced[:50] / balanced[0], np.abs(weights[:50] / weights[0]))


def test_balanced_class_weights_need_every_class() -> None:
    with pytest.raises(ValueError, match=r"classes \[1\]"):
        balanced_class_weights(np.ones(4), np.array([0, 0, 2, 2]), 3)
    with pytest.raises(ValueError, match=r"classes \[0\]"):
        balanced_class_weights(np.array([0.0, 1.0]), np.array([0, 1]), 2)


# the AUC helper


def brute_force_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    signal = [(s, w) for s, label, w in zip(scores, labels, weights, strict=True) if label]
    background = [(s, w) for s, label, w in zip(scores, labels, weights, strict=True) if not label]
    total = 0.0
    for (s_sig, w_sig), (s_bkg, w_bkg) in itertools.product(signal, background):
        total += w_sig * w_bkg * (1.0 if s_sig > s_bkg else 0.5 if s_sig == s_bkg else 0.0)
    return total / (sum(w for _, w in signal) * sum(w for _, w in background))


def test_auc_hand_computed_cases() -> None:
    # the textbook case: 3 of the 4 signal-background pairs are ordered correctly
    assert signal_vs_rest_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    # weights and a tie: pairs (w_sig * w_bkg) 2*1 tied, 2*3 won, 1*1 won, 1*3 won -> (1 + 6 + 1 + 3) / 12
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    labels = np.array([True, True, False, False])
    assert signal_vs_rest_auc(scores, labels, np.array([2.0, 1.0, 1.0, 3.0])) == pytest.approx(11.0 / 12.0)
    assert signal_vs_rest_auc(np.array([0.9, 0.8, 0.2]), np.array([1, 1, 0])) == 1.0
    assert signal_vs_rest_auc(np.array([0.1, 0.8, 0.9]), np.array([1, 0, 0])) == 0.0
    assert signal_vs_rest_auc(np.full(6, 0.3), np.array([1, 0, 1, 0, 0, 1])) == 0.5


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(7)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: many ties
    weights = rng.exponential(1.0, 300)
    auc = signal_vs_rest_auc(scores, labels, weights)
    assert auc == pytest.approx(brute_force_auc(scores, labels, weights), rel=1e-12)
    assert signal_vs_rest_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels, np.ones(300)))
    assert 0.5 < auc < 1.0


def test_auc_errors() -> None:
    with pytest.raises(ValueError, match="signal and background"):
        signal_vs_rest_auc(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="differ in length"):
        signal_vs_rest_auc(np.array([0.1, 0.2]), np.array([1, 0]), np.ones(3))


# validation split


def identities(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return (
        np.full(n, 1, dtype=np.uint32),
        rng.integers(1, 500, n).astype(np.uint32),
        np.arange(n, dtype=np.uint64) * 7 + 3,
    )


def test_validation_split_is_deterministic_and_per_event() -> None:
    run, lumi, event = identities(30000)
    mask = validation_mask(run, lumi, event, 0.2)
    np.testing.assert_array_equal(mask, validation_mask(run, lumi, event, 0.2))
    assert mask.mean() == pytest.approx(0.2, abs=0.01)
    # a function of each event's identity: the order and the company of the events do not matter
    order = np.random.default_rng(0).permutation(len(run))
    np.testing.assert_array_equal(validation_mask(run[order], lumi[order], event[order], 0.2), mask[order])
    np.testing.assert_array_equal(validation_mask(run[:10], lumi[:10], event[:10], 0.2), mask[:10])
    # another seed picks other events
    assert (validation_mask(run, lumi, event, 0.2, seed=5) != mask).mean() > 0.2


def test_validation_split_is_independent_of_the_fold() -> None:
    run, lumi, event = identities(30000)
    mask = validation_mask(run, lumi, event, 0.2)
    folds = fold_indices(ak.Array({"run": run, "luminosityBlock": lumi, "event": event}), 3)
    for fold in range(3):
        assert mask[folds == fold].mean() == pytest.approx(0.2, abs=0.015)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_validation_split_needs_a_fraction_between_0_and_1(fraction: float) -> None:
    run, lumi, event = identities(10)
    with pytest.raises(ValueError, match="between 0 and 1"):
        validation_mask(run, lumi, event, fraction)


# settings and sandboxes


def test_evaluation_backend_setting() -> None:
    assert make_model().evaluation_backend == "onnx"
    assert make_model(**parse_settings(["evaluation_backend=keras"])).evaluation_backend == "keras"
    with pytest.raises(ValueError, match=r"setting 'evaluation_backend=tensorflow' is not one of onnx, keras"):
        make_model(evaluation_backend="tensorflow")


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ("layers=0:32", "setting 'layers=0:32': item '0' is not an integer >= 1"),
        (
            "features=ht:no_such_feature",
            "setting 'features=ht:no_such_feature': item 'no_such_feature' is not one of jet1_pt, ",
        ),
        ("validation_fraction=1.0", "setting 'validation_fraction=1.0' is not a number > 0.0 and < 1.0"),
        ("dropout=1.0", "setting 'dropout=1.0' is not a number >= 0.0 and < 1.0"),
        ("epochs=0", "setting 'epochs=0' is not an integer >= 1"),
        ("min_epochs=-1", "setting 'min_epochs=-1' is not an integer >= 0"),
        ("no_such_setting=1", "unknown setting 'no_such_setting'"),
    ],
)
def test_bad_settings_are_clear_errors(setting: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_model(**parse_settings([setting]))


def test_single_layer_setting_becomes_a_tuple() -> None:
    assert make_model(**parse_settings(["layers=16"])).layers == (16,)


@pytest.mark.parametrize(
    ("backend", "family", "sandbox"),
    [
        ("onnx", "cf.MLTraining", TF_SANDBOX),
        ("onnx", "cf.MLEvaluation", ""),
        ("keras", "cf.MLTraining", TF_SANDBOX),
        ("keras", "cf.MLEvaluation", TF_SANDBOX),
    ],
)
def test_sandbox_per_task_family(backend: str, family: str, sandbox: str) -> None:
    model = make_model(evaluation_backend=backend)
    assert model.sandbox(SimpleNamespace(task_family=family)) == sandbox


def test_training_functions() -> None:
    model = make_model()
    assert model.training_calibrators(None, ["other"]) == ["skip_jecunc"]
    assert model.training_selector(None, "other") == "default"
    assert model.training_producers(None, []) == ["default"]


def test_setup_adds_the_score_variables_once() -> None:
    analysis = od.Analysis("dnn_unit_analysis", 901)
    config = analysis.add_config(name="dnn_unit_config", id=901, campaign=od.Campaign("dnn_unit_campaign", 901))
    dnn(analysis, requested_configs=["dnn_unit_config"])
    dnn(analysis, requested_configs=["dnn_unit_config"])  # the variables exist already: no error
    assert sorted(variable.name for variable in config.variables) == ["dnn.score_dy", "dnn.score_hh", "dnn.score_tt"]
    assert config.get_variable("dnn.score_hh").binning == (20, 0.0, 1.0)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_nth_object_and_nth_largest_match_padding_and_sorting(n: int) -> None:
    rng = np.random.default_rng(n)
    counts = rng.integers(0, 5, size=200)
    # few distinct values, so that events have ties
    values = ak.unflatten(rng.integers(0, 4, size=counts.sum()).astype(np.float32) / 4, counts)
    padded = ak.fill_none(ak.pad_none(values, n + 1, axis=1)[:, n], EMPTY_FLOAT)
    np.testing.assert_array_equal(nth_largest_or_empty(values, n, ranked=False), ak.to_numpy(padded))
    ranked = ak.sort(values, axis=1, ascending=False)
    expected = ak.to_numpy(ak.fill_none(ak.pad_none(ranked, n + 1, axis=1)[:, n], EMPTY_FLOAT))
    np.testing.assert_array_equal(nth_largest_or_empty(values, n, ranked=True), expected)
    assert nth_largest_or_empty(values[:0], n, ranked=True).shape == (0,)


# evaluation


class ConstantModel:
    """Stands in for a fold's network: every event gets the same probabilities."""

    def __init__(self, probabilities: list[float]) -> None:
        self.probabilities = np.asarray(probabilities)
        self.predicted_events = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        assert x.shape[1] == len(FEATURES)
        self.predicted_events += len(x)
        return np.tile(self.probabilities, (len(x), 1))


@pytest.mark.parametrize("used_in_training", [True, False])
def test_evaluate_writes_the_combined_scores(events: ak.Array, used_in_training: bool) -> None:
    model = make_model()
    models = [ConstantModel([0.7, 0.2, 0.1]), ConstantModel([0.1, 0.8, 0.1]), ConstantModel([0.1, 0.3, 0.6])]
    folds = np.array([2, 0, 1])
    scored = model.evaluate(SimpleNamespace(), events, models, folds, events_used_in_training=used_in_training)
    scores = np.stack([ak.to_numpy(scored.dnn[f"score_{name}"]) for name in ("hh", "tt", "dy")], axis=1)
    assert scores.dtype == np.float32
    if used_in_training:
        expected = np.stack([models[fold].probabilities for fold in folds])
    else:
        expected = np.tile(np.mean([m.probabilities for m in models], axis=0), (3, 1))
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert sorted(scored.dnn.fields) == ["score_dy", "score_hh", "score_tt"]


@pytest.mark.parametrize("backend", ["onnx", "keras"])
def test_evaluate_runs_each_fold_model_only_on_the_events_it_scores(events: ak.Array, backend: str) -> None:
    model = make_model(evaluation_backend=backend)
    models = [ConstantModel([0.7, 0.2, 0.1]), ConstantModel([0.1, 0.8, 0.1]), ConstantModel([0.1, 0.3, 0.6])]
    model.evaluate(SimpleNamespace(), events, models, np.array([2, 0, 0]), events_used_in_training=True)
    assert [fold_model.predicted_events for fold_model in models] == [2, 0, 1]
    # events of a dataset the model did not train on are scored by every fold model (their mean)
    model.evaluate(SimpleNamespace(), events, models, np.array([2, 0, 0]), events_used_in_training=False)
    assert [fold_model.predicted_events for fold_model in models] == [5, 3, 4]


class CountingNetwork:
    """Stands in for a fold network of ``param_dnn``: counts the events it scores, whatever its inputs."""

    def __init__(self) -> None:
        self.predicted_events = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.predicted_events += len(x)
        return np.full((len(x), 2), 0.5)


@pytest.mark.parametrize("backend", ["onnx", "keras"])
def test_param_dnn_runs_each_fold_model_only_on_the_events_it_scores(events: ak.Array, backend: str) -> None:
    model = param_dnn(None, parameters={"evaluation_backend": backend, "masses": (300, 500)})
    networks = [CountingNetwork() for _ in range(3)]
    scored = model.evaluate(SimpleNamespace(), events, networks, np.array([2, 0, 0]), events_used_in_training=True)
    assert [network.predicted_events for network in networks] == [4, 0, 2]  # two masses
    assert sorted(scored.param_dnn.fields) == ["score_m300", "score_m500"]


def test_evaluate_no_events(events: ak.Array) -> None:
    scored = make_model().evaluate(SimpleNamespace(), events[:0], [ConstantModel([1.0, 0.0, 0.0])] * 3, np.zeros(0))
    assert len(scored) == 0
    assert scored.dnn.score_hh.type.content.primitive == "float32"


def test_open_model_refuses_other_features(tmp_path: Path) -> None:
    standardization = fit_standardization(np.ones((2, 2)), ["ht", "n_jet"], [0.0, 0.0])
    (tmp_path / "standardization.json").write_text(json.dumps(standardization))
    with pytest.raises(ValueError, match="was trained on the features"):
        make_model().open_model(law.LocalDirectoryTarget(str(tmp_path)))
