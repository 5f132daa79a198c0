"""A classifier of HH against tt for the porting guide, as columnflow users write ML models."""

from __future__ import annotations

from typing import Any

import law
import order as od
from columnflow.columnar_util import EMPTY_FLOAT, Route, set_ak_column
from columnflow.ml import MLModel
from columnflow.util import dev_sandbox, maybe_import

ak = maybe_import("awkward")
np = maybe_import("numpy")
keras = maybe_import("keras")


class PortedModel(MLModel):
    """Two classes, HH and tt, one sigmoid output: the score of HH."""

    # the datasets of the two classes, and the inputs
    processes = ("hh_ggf_bbtautau_madgraph", "tt_sl_powheg")
    input_features = ("n_jet", "n_bjet_port", "ht", "jet1_pt_port", "jet_eta_spread")
    epochs = 3
    batch_size = 256

    def setup(self) -> None:
        # one plottable variable for the output, in every config
        for config_inst in self.config_insts:
            if f"{self.cls_name}.score" not in config_inst.variables:
                config_inst.add_variable(
                    name=f"{self.cls_name}.score",
                    expression=f"{self.cls_name}.score",
                    binning=(20, 0.0, 1.0),
                    x_title=f"{self.cls_name} HH score",
                )

    def sandbox(self, task: law.Task) -> str:
        return dev_sandbox("bash::$CF_BASE/sandboxes/venv_ml_tf.sh")

    def datasets(self, config_inst: od.Config) -> set[od.Dataset]:
        return {config_inst.get_dataset(name) for name in self.processes}

    def uses(self, config_inst: od.Config) -> set[Route | str]:
        return set(self.input_features) | {"normalization_weight"}

    def produces(self, config_inst: od.Config) -> set[Route | str]:
        return {f"{self.cls_name}.score"}

    def requires(self, task: law.Task) -> Any:
        return {}

    def output(self, task: law.Task) -> law.FileSystemDirectoryTarget:
        return task.target(f"mlmodel_f{task.fold}of{self.folds}", dir=True)

    def open_model(self, target: law.FileSystemDirectoryTarget) -> Any:
        return keras.models.load_model(target.child("model.keras", type="f").path)

    def training_calibrators(
        self,
        analysis_inst: od.Analysis,
        requested_calibrators: list[str],
    ) -> list[str]:
        return ["skip_jecunc"]

    def training_producers(
        self,
        analysis_inst: od.Analysis,
        requested_producers: list[str],
    ) -> list[str]:
        return ["default"]

    def preparation_producer(self, analysis_inst: od.Analysis) -> str:
        # the jet features are computed on the fly, before the inputs are taken
        return "porting_features"

    def prepare_inputs(self, events: ak.Array) -> np.ndarray:
        columns = [Route(name).apply(events, EMPTY_FLOAT) for name in self.input_features]
        return np.stack([ak.to_numpy(column) for column in columns], axis=1).astype(np.float32)

    def train(self, task: law.Task, input: Any, output: law.FileSystemDirectoryTarget) -> None:
        keras.utils.set_random_seed(task.fold)
        inputs, labels = [], []
        for label, name in enumerate(self.processes):
            for fold_input in input["events"][self.config_inst.name][name]:
                events = ak.from_parquet(fold_input.path)
                inputs.append(self.prepare_inputs(events))
                labels.append(np.full(len(events), label))
        x, y = np.concatenate(inputs), np.concatenate(labels)

        model = keras.Sequential([keras.Input(shape=(x.shape[1],)), keras.layers.Normalization()])
        model.layers[0].adapt(x)
        model.add(keras.layers.Dense(32, activation="relu"))
        model.add(keras.layers.Dense(1, activation="sigmoid"))
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(x, 1.0 - y, epochs=self.epochs, batch_size=self.batch_size, verbose=2)

        output.touch()
        model.save(output.child("model.keras", type="f").path)

    def evaluate(
        self,
        task: law.Task,
        events: ak.Array,
        models: list[Any],
        fold_indices: ak.Array,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        x = self.prepare_inputs(events)
        outputs = np.stack([np.asarray(model(x, training=False))[:, 0] for model in models])
        folds = ak.to_numpy(fold_indices)
        # each training event is scored by the model that did not see its fold, other events by
        # the mean
        held_out = outputs[folds, np.arange(len(folds))]
        scores = held_out if events_used_in_training else outputs.mean(axis=0)
        events = set_ak_column(events, f"{self.cls_name}.score", scores, value_type=np.float32)
        return events


ported_model = PortedModel.derive("ported_model", cls_dict={"folds": 2, "store_name": "porting"})
