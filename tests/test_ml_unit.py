"""Unit tests of the MLModel contract: derive, registry, settings, abstract methods, folds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import awkward as ak
import law
import numpy as np
import pytest

from analysis_template.config.analysis import analysis_template
from cf.folds import fold_indices
from cf.ml import MLModel, combine_fold_outputs, held_out_outputs, parse_settings, setting
from cf.tasks.ml import open_fold_models
from cf.util import UserError

CONFIG = "run2_2017_nano_uhh_v11_limited"


class CompleteModel(MLModel):
    """A model implementing every abstract method (nothing is trained here)."""

    epochs: int = setting(3, "training epochs", minimum=1)
    layers: tuple[int, ...] = setting((8,), "units of the hidden layers", minimum=1)
    dataset_names: tuple[str, ...] = ("tt_sl_powheg",)

    def sandbox(self, task: Any) -> str:
        return "bash::$CF_BASE/sandboxes/venv_ml_tf.sh"

    def datasets(self, config_inst: Any) -> set[Any]:
        return {config_inst.get_dataset(name) for name in self.dataset_names}

    def uses(self, config_inst: Any) -> set[str]:
        return {"ht"}

    def produces(self, config_inst: Any) -> set[str]:
        return {f"{self.cls_name}.score"}

    def output(self, task: Any) -> Any:
        return None

    def open_model(self, target: Any) -> Any:
        return None

    def train(self, task: Any, input: Any, output: Any) -> None:
        return None

    def evaluate(
        self,
        task: Any,
        events: ak.Array,
        models: list[Any],
        fold_indices: np.ndarray,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        return events


unit_model = CompleteModel.derive("unit_model", cls_dict={"folds": 4, "epochs": 7})


def test_derive_makes_a_named_subclass_with_the_dict_as_attributes() -> None:
    model = unit_model(analysis_template, requested_configs=[CONFIG])
    assert unit_model.__name__ == "unit_model"
    assert issubclass(unit_model, CompleteModel)
    assert (model.cls_name, model.folds, model.epochs, model.layers) == ("unit_model", 4, 7, (8,))
    assert model.config_inst.name == CONFIG
    assert unit_model.__module__ == __name__


def test_registry_finds_derived_models_and_lists_the_available_ones() -> None:
    assert MLModel.get_cls("unit_model") is unit_model
    with pytest.raises(
        ValueError, match=r"unknown ML model 'no_such_model'( \(did you mean .*\))?, available: .*unit_model"
    ):
        MLModel.get_cls("no_such_model")


def test_two_models_with_the_same_name_in_different_modules_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"two ML models are named 'unit_model': in module .*test_ml_unit and in"):
        CompleteModel.derive("unit_model", cls_dict={"__module__": "some.other.module"})


def test_a_model_missing_abstract_methods_fails_at_derive_naming_them() -> None:
    class Partial(MLModel):
        def sandbox(self, task: Any) -> str:
            return ""

    with pytest.raises(TypeError, match=r"does not implement the abstract method\(s\): datasets, evaluate, open_model"):
        Partial.derive("partial_model")
    with pytest.raises(TypeError, match="abstract method"):
        Partial(analysis_template)  # type: ignore[abstract]
    with pytest.raises(ValueError, match="unknown ML model 'Partial'"):
        MLModel.get_cls("Partial")


@pytest.mark.parametrize("folds", [1, 0, -2, 2.5])
def test_fewer_than_two_folds_is_an_error(folds: Any) -> None:
    name = f"bad_folds_{abs(int(folds * 2))}"
    with pytest.raises(ValueError, match=rf"ML model '{name}': setting 'folds={folds}' is not an integer >= 2"):
        CompleteModel.derive(name, cls_dict={"folds": folds})
    assert not MLModel.has_cls(name)
    with pytest.raises(UserError, match=r"ML model 'unit_model': setting 'folds=1' is not an integer >= 2"):
        unit_model(analysis_template, requested_configs=[CONFIG], parameters={"folds": "1"})


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"epochs": "12"}, {"epochs": 12}),
        ({"layers": "16:8"}, {"layers": (16, 8)}),
        ({"layers": "16"}, {"layers": (16,)}),
        ({"layers": 16}, {"layers": (16,)}),
        ({"folds": "5", "epochs": 1}, {"folds": 5, "epochs": 1}),
    ],
)
def test_settings_from_text_are_converted_to_the_declared_type(given: dict[str, Any], expected: dict[str, Any]) -> None:
    model = unit_model(analysis_template, requested_configs=[CONFIG], parameters=given)
    assert model.settings == model.parameters == expected
    for name, value in expected.items():
        assert getattr(model, name) == value


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("epochs=abc", "setting 'epochs=abc' is not an integer >= 1"),
        ("epochs=2.5", "setting 'epochs=2.5' is not an integer >= 1"),
        ("epochs=0", "setting 'epochs=0' is not an integer >= 1"),
        ("epochs=true", "setting 'epochs=true' is not an integer >= 1"),
        ("layers=32;32;32", "setting 'layers=32;32;32': item '32;32;32' is not an integer >= 1 \\(the value is a"),
        ("layers=8:-1", "setting 'layers=8:-1': item '-1' is not an integer >= 1"),
        ("layers=", "setting 'layers=': item '' is not an integer >= 1"),
        (
            "dataset_names=tt",
            "unknown setting 'dataset_names' for ML model 'unit_model', declared: epochs, folds, layers",
        ),
    ],
)
def test_a_bad_setting_is_one_clear_error_saying_what_is_allowed(given: str, message: str) -> None:
    from cf.registry import split_settings

    with pytest.raises(UserError, match=f"^(ML model 'unit_model': )?{message}"):
        unit_model.checked_settings(split_settings([given]))


def test_a_declaration_survives_a_new_default_and_checks_it() -> None:
    declared = unit_model.declared_settings()
    assert set(declared) == {"epochs", "folds", "layers"}
    assert (declared["folds"].default, declared["epochs"].default) == (4, 7)
    assert declared["epochs"].minimum == 1
    assert declared["layers"].describe() == "a ':'-separated list, each item an integer >= 1"
    assert unit_model.epochs == 7
    with pytest.raises(ValueError, match="setting 'epochs=0' is not an integer >= 1"):
        CompleteModel.derive("bad_epochs", cls_dict={"epochs": 0})
    with pytest.raises(TypeError, match="a setting needs a bool, int, float or str value"):
        setting({"a": 1})
    declared_choice = setting("a", choices=("a", "c"))
    declared_choice.__set_name__(CompleteModel, "x")
    with pytest.raises(ValueError, match="setting 'x=b' is not one of a, c"):
        declared_choice.check("b")


def test_settings_are_typed() -> None:
    settings = parse_settings("epochs=3,layers=64:32,learning_rate=0.01,batch_norm=false,name=abc,flag=True")
    assert settings == {
        "epochs": 3,
        "layers": (64, 32),
        "learning_rate": 0.01,
        "batch_norm": False,
        "name": "abc",
        "flag": True,
    }
    assert isinstance(settings["epochs"], int)
    with pytest.raises(ValueError, match="'epochs' is not of the form key=value"):
        parse_settings(["epochs"])


def test_settings_override_attributes_and_hash_into_a_stable_repr() -> None:
    plain = unit_model(analysis_template, requested_configs=[CONFIG])
    tuned = unit_model(analysis_template, requested_configs=[CONFIG], parameters={"epochs": 2, "layers": (4, 4)})
    same = unit_model(analysis_template, requested_configs=[CONFIG], parameters={"layers": (4, 4), "epochs": 2})
    other = unit_model(analysis_template, requested_configs=[CONFIG], parameters={"epochs": 3})
    assert (tuned.epochs, tuned.layers, tuned.parameters) == (2, (4, 4), {"epochs": 2, "layers": (4, 4)})
    assert plain.parameters_repr == ""
    assert tuned.parameters_repr == same.parameters_repr != other.parameters_repr
    assert len(tuned.parameters_repr) == 10


def test_an_unknown_setting_is_an_error_listing_the_allowed_ones() -> None:
    with pytest.raises(
        ValueError,
        match=r"unknown setting 'epoch' \(did you mean 'epochs'\?\) for ML model 'unit_model', declared: .*epochs",
    ):
        unit_model(analysis_template, requested_configs=[CONFIG], parameters={"epoch": 3})


def test_config_inst_with_several_configs_is_an_error() -> None:
    model = unit_model(analysis_template, requested_configs=[CONFIG])
    model.config_insts = [model.config_inst, model.config_inst]
    with pytest.raises(RuntimeError, match="has 2 configs"):
        _ = model.config_inst


def test_columnflow_model_attributes() -> None:
    """cls_name on the class, parameter pairs and their hash as columnflow forms them, columns per config."""
    assert unit_model.cls_name == "unit_model"
    tuned = unit_model(analysis_template, requested_configs=[CONFIG], parameters={"layers": (4, 4), "epochs": 2})
    assert tuned.parameter_pairs() == [("epochs", 2), ("layers", (4, 4))]
    assert tuned.parameters_repr == law.util.create_hash("epochs_2__layers_4_4")
    assert str(tuned) == f"unit_model__{tuned.parameters_repr}"
    config_inst = tuned.config_inst
    assert {str(route) for route in tuned.used_columns[config_inst]} == {"ht"}
    assert {str(route) for route in tuned.produced_columns[config_inst]} == {"unit_model.score"}
    assert tuned.used_datasets == {config_inst: {config_inst.get_dataset("tt_sl_powheg")}}
    assert tuned.accepts_scheduler_messages is False
    assert tuned.get_scheduler_messages(object()) == {}


def test_evaluation_settings_are_not_significant() -> None:
    model_cls = CompleteModel.derive(
        "unit_model_eval",
        cls_dict={"evaluation_settings": frozenset({"backend"}), "backend": setting("onnx", choices=("onnx", "keras"))},
    )
    model = model_cls(analysis_template, requested_configs=[CONFIG], parameters={"epochs": 2, "backend": "keras"})
    assert model.parameter_pairs(only_significant=True) == [("epochs", 2)]
    plain = model_cls(analysis_template, requested_configs=[CONFIG], parameters={"epochs": 2})
    assert model.training_settings_repr == plain.training_settings_repr
    assert model.parameters_repr != plain.parameters_repr


def test_get_cls_silent_has_cls_and_derive_with_bases_and_module() -> None:
    class Mixin:
        extra = 5

    assert MLModel.get_cls("no_such_model", silent=True) is None
    assert MLModel.has_cls("unit_model")
    assert not MLModel.has_cls("no_such_model")
    derived = CompleteModel.derive("unit_model_mixed", bases=(Mixin,), cls_dict={"folds": 3}, module="my.models")
    assert issubclass(derived, Mixin)
    assert (derived.extra, derived.folds, derived.__module__, derived.cls_name) == (
        5,
        3,
        "my.models",
        "unit_model_mixed",
    )


def test_training_hooks_run_once_per_config_and_their_values_resolve_to_themselves() -> None:
    """A hook that extends the request (columnflow style) adds once, however often tasks ask."""
    calls: list[tuple[str, ...]] = []

    def training_producers(self: MLModel, config_inst: Any, requested: list[str]) -> list[str]:
        calls.append(tuple(requested))
        return [*requested, "extra"]

    model_cls = CompleteModel.derive("unit_model_hooks", cls_dict={"training_producers": training_producers})
    model = model_cls(analysis_template, requested_configs=[CONFIG])
    config_inst = model.config_inst
    first = model.resolved_hook("training_producers", config_inst, ("default",))
    assert first == ("default", "extra")
    assert model.resolved_hook("training_producers", config_inst, ("default",)) == first
    # a task that passes the resolved value on does not get "extra" twice
    assert model.resolved_hook("training_producers", config_inst, first) == first
    assert calls == [("default",)]


def identity(n: int, seed: int = 0) -> ak.Array:
    rng = np.random.default_rng(seed)
    return ak.Array(
        {
            "run": np.full(n, 1, dtype=np.uint32),
            "luminosityBlock": rng.integers(1, 1000, n).astype(np.uint32),
            "event": rng.permutation(np.arange(1, n + 1, dtype=np.uint64)),
        },
    )


def test_fold_indices_do_not_depend_on_chunking_or_order() -> None:
    events = identity(10_000)
    whole = fold_indices(events, 3)
    chunked = np.concatenate([fold_indices(events[start : start + 777], 3) for start in range(0, 10_000, 777)])
    order = np.random.default_rng(1).permutation(10_000)
    np.testing.assert_array_equal(whole, chunked)
    np.testing.assert_array_equal(whole[order], fold_indices(events[order], 3))


def test_fold_indices_are_balanced_and_in_range() -> None:
    folds = fold_indices(identity(30_000), 5)
    counts = np.bincount(folds, minlength=5)
    assert folds.min() == 0
    assert folds.max() == 4
    assert np.all(np.abs(counts - 6000) < 6000 * 0.05), counts


def test_fold_indices_use_every_identity_column() -> None:
    events = identity(5000)
    base = fold_indices(events, 2)
    for column in ("run", "luminosityBlock", "event"):
        shifted = ak.with_field(events, events[column] + 1, column)
        assert np.mean(fold_indices(shifted, 2) != base) > 0.3, column


def test_fold_indices_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fold_indices(identity(3), 1)
    with pytest.raises(KeyError, match="missing: \\['luminosityBlock'\\]"):
        fold_indices(ak.Array({"run": [1], "event": [1]}), 2)


def test_combine_fold_outputs_uses_the_own_fold_model_for_training_datasets() -> None:
    outputs = [np.full((4, 2), float(k)) for k in range(3)]
    folds = np.array([2, 0, 1, 2])
    np.testing.assert_array_equal(combine_fold_outputs(outputs, folds, True)[:, 0], [2.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(combine_fold_outputs(outputs, folds, False), np.full((4, 2), 1.0))


def test_held_out_outputs_run_each_fold_model_on_its_own_fold_only() -> None:
    inputs = np.arange(12.0).reshape(6, 2)
    folds = np.array([2, 0, 1, 2, 0, 2])
    seen: list[list[float]] = [[], [], []]

    def predictor(fold: int) -> Any:
        def predict(x: np.ndarray) -> np.ndarray:
            seen[fold].extend(x[:, 0])
            return x * 10 + fold

        return predict

    predictors = [predictor(fold) for fold in range(3)]
    outputs = [np.asarray(inputs * 10 + fold) for fold in range(3)]
    np.testing.assert_array_equal(
        held_out_outputs(predictors, inputs, folds, True), combine_fold_outputs(outputs, folds, True)
    )
    assert seen == [[2.0, 8.0], [4.0], [0.0, 6.0, 10.0]]
    np.testing.assert_array_equal(
        held_out_outputs(predictors, inputs, folds, False), combine_fold_outputs(outputs, folds, False)
    )


class _CountingOpener:
    """Stands in for an MLModel in open_fold_models: records which targets it opened."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    def open_model(self, target: law.LocalFileTarget) -> tuple[int, str]:
        self.opened.append(target.path)
        return (id(self), target.path)


def test_fold_models_are_opened_once_per_model_and_unchanged_outputs(tmp_path: Path) -> None:
    targets = [law.LocalFileTarget(str(tmp_path / f"fold_{i}.onnx")) for i in range(3)]
    for target in targets:
        Path(target.path).write_text("weights")
    onnx, keras = _CountingOpener(), _CountingOpener()
    first = open_fold_models(onnx, targets)  # type: ignore[arg-type]
    assert open_fold_models(onnx, targets) is first  # the next file of the workflow reuses them
    assert len(onnx.opened) == 3
    # another model instance (e.g. the Keras backend of the same training) opens its own
    assert open_fold_models(keras, targets) == [(id(keras), target.path) for target in targets]  # type: ignore[arg-type]
    # a retrained fold (new modification time) is opened again
    open_fold_models(onnx, targets)  # type: ignore[arg-type]
    os.utime(targets[1].path, ns=(1, 1))
    open_fold_models(onnx, targets)  # type: ignore[arg-type]
    assert len(onnx.opened) == 9
