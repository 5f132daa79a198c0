"""The worked example of the user guide: a small Keras classifier of HH -> bbtautau against tt.

Every snippet of the "Machine learning" chapter is included from this file, and the test suite trains
and evaluates ``test_model`` through the same ``law run`` commands that the chapter shows.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import law
import numpy as np

from cf.columnar_util import EMPTY_FLOAT, Route
from cf.ml import MLModel, combine_fold_outputs, setting
from cf.util import maybe_import

# TensorFlow only exists in the model's sandbox; outside it these are placeholders that fail on use
tf = maybe_import("tensorflow")
keras = maybe_import("keras")


class TestModel(MLModel):
    """Classifies events as HH or tt with a small dense network; one model per fold."""

    # the output classes, the signal first: a name and the training datasets of each; the evaluation
    # writes the score of each class into "test_model.score_<name>"
    classes = (("hh", ("hh_ggf_bbtautau_madgraph",)), ("tt", ("tt_sl_powheg",)))
    # the settings: each can be changed for one run with --ml-model-settings key=value
    features: tuple[str, ...] = setting(
        ("n_jet", "n_btag", "ht", "m_bb", "Jet.pt[:,0]", "MET.pt"),
        "input columns",
    )
    epochs: int = setting(5, "training epochs", minimum=1)
    batch_size: int = setting(256, "events per gradient step", minimum=1)
    layers: tuple[int, ...] = setting((32, 32), "units of the hidden layers", minimum=1)
    learning_rate: float = setting(0.003, "Adam's learning rate", above=0.0)
    seed: int = setting(1, "base seed; fold i trains with seed + i")

    def setup(self) -> None:
        # one plottable variable per output class, so the scores can be histogrammed like any column
        self.add_score_variables()

    def sandbox(self, task: law.Task) -> str:
        return "bash::$CF_BASE/sandboxes/venv_ml_tf.sh"

    def datasets(self, config_inst: Any) -> set[Any]:
        return {config_inst.get_dataset(name) for _, names in self.classes for name in names}

    def uses(self, config_inst: Any) -> set[str]:
        return {Route(feature).column for feature in self.features} | {"normalization_weight"}

    def produces(self, config_inst: Any) -> set[str]:
        return {self.score_column(name) for name in self.class_names()}

    def output(self, task: law.Task) -> law.LocalDirectoryTarget:
        return task.target(f"mlmodel_f{task.branch}of{self.folds}", dir=True)

    def open_model(self, target: law.LocalDirectoryTarget) -> Any:
        return keras.models.load_model(target.child("model.keras", type="f").path)

    def feature_matrix(self, events: ak.Array) -> np.ndarray:
        columns = [ak.to_numpy(Route(feature).apply(events, EMPTY_FLOAT)) for feature in self.features]
        return np.stack(columns, axis=1).astype(np.float32)

    def train(self, task: law.Task, input: dict[str, Any], output: law.LocalDirectoryTarget) -> None:
        keras.utils.set_random_seed(self.seed + task.branch)
        x_parts, y_parts = [], []
        for label, (_, dataset_names) in enumerate(self.classes):
            for config_inst in self.config_insts:
                for name in dataset_names:
                    for target in input["events"][config_inst.name][name]:
                        events = ak.from_parquet(target.path)
                        x_parts.append(self.feature_matrix(events))
                        y_parts.append(np.full(len(events), label))
        x, y = np.concatenate(x_parts), np.concatenate(y_parts)

        model = keras.Sequential([keras.Input(shape=(x.shape[1],)), keras.layers.Normalization()])
        model.layers[0].adapt(x)
        for units in self.layers:
            model.add(keras.layers.Dense(units, activation="relu"))
        model.add(keras.layers.Dense(len(self.classes), activation="softmax"))
        model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss="sparse_categorical_crossentropy",
        )
        model.fit(x, y, epochs=self.epochs, batch_size=self.batch_size, shuffle=True, verbose=2)

        output.child("model.keras", type="f").parent.touch()
        model.save(output.child("model.keras", type="f").path)

    def evaluate(
        self,
        task: law.Task,
        events: ak.Array,
        models: list[Any],
        fold_indices: np.ndarray,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        x = self.feature_matrix(events)
        # a direct call: predict() would retrace its tf.function for every new chunk length
        predictions = [np.asarray(model(x, training=False)) for model in models]
        scores = combine_fold_outputs(predictions, fold_indices, events_used_in_training)
        return self.set_class_scores(events, scores)

    def training_calibrators(self, config_inst: Any, requested_calibrators: list[str]) -> list[str]:
        return ["skip_jecunc"]

    def training_selector(self, config_inst: Any, requested_selector: str) -> str:
        return "default"

    def training_producers(self, config_inst: Any, requested_producers: list[str]) -> list[str]:
        return ["default"]


# the model used on the command line: --ml-model test_model
test_model = TestModel.derive("test_model", cls_dict={"folds": 3, "epochs": 5})
