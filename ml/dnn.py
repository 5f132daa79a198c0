"""The reference multi-class DNN: HH -> bbtautau against tt against Drell-Yan, one Keras model per fold.

Design (see the class docstring of :class:`DNNClassifier` for every setting):

* **Features**: 18 per event, from the reduced events and the ``default`` producer's columns: leading and
  subleading jet pt / eta, the b-tag scores of the two most b-like jets, ``m_bb``, ``m_ll``, ``ht``,
  ``MET.pt``, the object counts, the two leading tau pts and the leading lepton pt (see :data:`FEATURES`).
* **Missing objects**: a missing object reads as ``EMPTY_FLOAT`` (-99999). Before standardization each
  such value is replaced by the feature's physical fill value (0 GeV for momenta and masses, 0 for eta,
  -1 for a b-tag score), so that "no object" stays distinguishable from any real object and never
  dominates the mean and width of a feature.
* **Standardization**: mean and standard deviation of each (filled) feature on the training split of the
  training folds, saved as ``standardization.json`` next to the model and applied in numpy before either
  backend (the networks take standardized inputs).
* **Weights**: ``abs(normalization_weight)`` (negative generator weights would otherwise flip the sign of
  the loss), rescaled per class so that every class has the same total weight (mean weight 1).
* **Validation**: a deterministic fraction of the training folds chosen by a salted hash of the event
  identity (independent of the fold hash); early stopping on the weighted validation loss, best weights
  restored.
* **Determinism**: the Keras seed is ``seed + fold`` and TensorFlow's op determinism is on, so re-training
  gives bit-identical weights (``deterministic=false`` leaves op determinism off: about 15% faster on a CPU,
  e.g. for the points of a scan; a process that trained with it on keeps it on).
* **Outputs** per fold (``mlmodel_f{i}of{folds}/``): ``model.keras``, ``model.onnx`` (checked against Keras
  on the validation inputs), ``history.json``, ``metrics.json`` (validation loss, AUC of HH against the
  rest and of each class against the rest, the device the training ran on) and ``standardization.json``.
* **Device**: a visible GPU when there is one (its name is logged and written into ``metrics.json``), else the
  CPU, where op determinism makes re-training bit-identical.
* **Evaluation**: ONNX Runtime in the base environment (default: no sandbox, no TensorFlow), or Keras in the
  TF sandbox with ``--ml-model-settings evaluation_backend=keras``.
* **Input and importance plots**: ``input_features``, ``input_matrix`` (the filled features), ``predict_inputs``
  and ``training_weights`` (the class balancing of ``train``) serve ``cf.PlotMLInputs`` and ``cf.PlotMLImportance``.

The held-out AUC over all folds is not known inside one fold's training (fold ``i``'s events are not its
input); compute it from the MLEvaluation outputs, e.g. with :func:`signal_vs_rest_auc`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import law
import numpy as np

from cf.columnar_util import EMPTY_FLOAT, Route
from cf.folds import event_hash
from cf.ml import MLModel, held_out_outputs, setting
from cf.util import lazy_import, maybe_import

# TensorFlow / Keras only exist in the TF sandbox; elsewhere (law index, the base venv, unit tests) they are
# placeholders that fail on use. onnxruntime is in every environment and imported on first use.
tf = maybe_import("tensorflow")
keras = maybe_import("keras")
ort = lazy_import("onnxruntime")

__all__ = [
    "FEATURES",
    "DNNClassifier",
    "Feature",
    "FoldModel",
    "TrainingData",
    "apply_standardization",
    "balanced_class_weights",
    "check_onnx_export",
    "dnn",
    "fill_missing",
    "fit_standardization",
    "signal_vs_rest_auc",
    "validation_mask",
    "write_fold_files",
]

#: The evaluation backends: ONNX Runtime (base environment, no TensorFlow) or Keras (TF sandbox).
EVALUATION_BACKENDS = ("onnx", "keras")
#: Largest allowed difference between the ONNX and the Keras outputs on the validation inputs.
ONNX_TOLERANCE = 1e-5
#: Salt of the validation hash, so that the validation split is independent of the fold assignment.
VALIDATION_SALT = 0x5EED_0F_7A11D
#: Sandbox of the training and of the Keras evaluation; the ONNX evaluation runs in the base environment.
TF_SANDBOX = "bash::$CF_BASE/sandboxes/venv_ml_tf.sh"
#: The tasks that open the fold models in the base environment with the ONNX backend (no sandbox).
ONNX_TASKS = ("cf.MLEvaluation", "cf.PlotMLImportance")


# features


def _route(route: str) -> Callable[[ak.Array], np.ndarray]:
    parsed = Route(route)
    index = parsed.index
    if index is not None and len(index) == 2 and index[0] == slice(None) and isinstance(index[1], int):
        position = index[1]
        return lambda events: nth_largest_or_empty(events[parsed.fields], position, ranked=False)
    return lambda events: ak.to_numpy(parsed.apply(events, EMPTY_FLOAT))


def _ranked_btag(rank: int) -> Callable[[ak.Array], np.ndarray]:
    return lambda events: nth_largest_or_empty(events.Jet.btagDeepFlavB, rank, ranked=True)


def nth_largest_or_empty(values: ak.Array, n: int, ranked: bool) -> np.ndarray:
    """The ``n``-th object's value of each event (by position, or by size with ``ranked``); ``EMPTY_FLOAT`` if none.

    Works on the flat content of the jagged column (no padded or sorted copy of it): the same values as
    ``Route("...[:,n]").apply(events, EMPTY_FLOAT)`` and ``ak.sort(values, ascending=False)[:, n]``, as float64.
    """
    counts = ak.to_numpy(ak.num(values, axis=1))
    flat = ak.to_numpy(ak.flatten(values)).astype(np.float64)
    result = np.full(len(counts), EMPTY_FLOAT)
    starts = np.cumsum(counts) - counts
    enough = counts > n
    if not ranked:
        result[enough] = flat[starts[enough] + n]
        return result
    filled = counts > 0
    if not filled.any():
        return result
    segments = starts[filled]
    for _ in range(n):
        # remove the largest value of each event (its first occurrence), n times
        largest = np.repeat(np.maximum.reduceat(flat, segments), counts[filled])
        positions = np.where(flat == largest, np.arange(len(flat)), len(flat))
        flat[np.minimum.reduceat(positions, segments)] = -np.inf
    result[enough] = np.maximum.reduceat(flat, segments)[enough[filled]]
    return result


def _leading_lepton_pt(events: ak.Array) -> np.ndarray:
    electron = _route("Electron.pt[:,0]")(events)
    muon = _route("Muon.pt[:,0]")(events)
    # both are EMPTY_FLOAT when there is no lepton, so the maximum is too
    return np.maximum(electron, muon)


@dataclass(frozen=True)
class Feature:
    """One input feature of the network.

    Attributes:
        name: The feature's name (as listed in ``DNNClassifier.features``).
        columns: The columns (routes) it reads.
        extract: Computes the feature per event (a 1D numpy array; ``EMPTY_FLOAT`` where the object is missing).
        fill: The value in physical units that replaces ``EMPTY_FLOAT`` before standardization.
    """

    name: str
    columns: tuple[str, ...]
    extract: Callable[[ak.Array], np.ndarray]
    fill: float = 0.0


def _route_feature(name: str, route: str, fill: float = 0.0) -> Feature:
    return Feature(name, (Route(route).column,), _route(route), fill)


#: All features the model can use, by name.
FEATURES: dict[str, Feature] = {
    feature.name: feature
    for feature in (
        _route_feature("jet1_pt", "Jet.pt[:,0]"),
        _route_feature("jet1_eta", "Jet.eta[:,0]"),
        _route_feature("jet2_pt", "Jet.pt[:,1]"),
        _route_feature("jet2_eta", "Jet.eta[:,1]"),
        Feature("bjet1_btag", ("Jet.btagDeepFlavB",), _ranked_btag(0), fill=-1.0),
        Feature("bjet2_btag", ("Jet.btagDeepFlavB",), _ranked_btag(1), fill=-1.0),
        _route_feature("m_bb", "m_bb"),
        _route_feature("m_ll", "m_ll"),
        _route_feature("ht", "ht"),
        _route_feature("met_pt", "MET.pt"),
        _route_feature("n_jet", "n_jet"),
        _route_feature("n_btag", "n_btag"),
        _route_feature("n_electron", "n_electron"),
        _route_feature("n_muon", "n_muon"),
        _route_feature("n_tau", "n_tau"),
        _route_feature("tau1_pt", "Tau.pt[:,0]"),
        _route_feature("tau2_pt", "Tau.pt[:,1]"),
        Feature("lep1_pt", ("Electron.pt", "Muon.pt"), _leading_lepton_pt),
    )
}


def fill_missing(x: np.ndarray, fills: Sequence[float]) -> np.ndarray:
    """Replace ``EMPTY_FLOAT`` entries of the feature matrix by each column's fill value.

    Args:
        x: The raw features, shape ``(events, features)``.
        fills: One fill value per feature column.

    Returns:
        A float64 copy of ``x`` without ``EMPTY_FLOAT`` entries.
    """
    x = np.array(x, dtype=np.float64)
    fill_row = np.broadcast_to(np.asarray(fills, dtype=np.float64), x.shape)
    missing = x == EMPTY_FLOAT
    x[missing] = fill_row[missing]
    return x


def fit_standardization(x: np.ndarray, names: Sequence[str], fills: Sequence[float]) -> dict[str, Any]:
    """Fit the standardization of the features (after the missing values are filled).

    A constant feature gets a width of 1 so that it standardizes to 0 instead of dividing by zero.

    Args:
        x: The raw training features, shape ``(events, features)``.
        names: The feature names.
        fills: The fill value of each feature.

    Returns:
        A json-serializable dict with ``features``, ``fill``, ``mean``, ``std`` and ``empty_value``.
    """
    if len(x) == 0:
        raise ValueError("cannot fit the standardization on zero events")
    filled = fill_missing(x, fills)
    mean = filled.mean(axis=0)
    std = filled.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return {
        "features": list(names),
        "fill": [float(value) for value in fills],
        "mean": mean.tolist(),
        "std": std.tolist(),
        "empty_value": EMPTY_FLOAT,
    }


def apply_standardization(x: np.ndarray, standardization: dict[str, Any]) -> np.ndarray:
    """Fill the missing values and standardize the features with the fitted parameters.

    Returns:
        A float32 matrix of the same shape.
    """
    filled = fill_missing(x, standardization["fill"])
    mean = np.asarray(standardization["mean"], dtype=np.float64)
    std = np.asarray(standardization["std"], dtype=np.float64)
    return ((filled - mean) / std).astype(np.float32)


# weights, validation split and metrics


def balanced_class_weights(weights: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-event training weights: ``abs(weights)`` rescaled so that every class has the same total.

    The totals are ``len(weights) / n_classes`` each, so the mean weight is 1 (the loss keeps its scale).

    Args:
        weights: The event weights (e.g. ``normalization_weight``; negative ones count with their modulus).
        labels: The class index (0 ... n_classes - 1) of each event.
        n_classes: The number of classes.

    Raises:
        ValueError: If a class has no events or a total weight of zero.
    """
    weights = np.abs(np.asarray(weights, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64)
    totals = np.bincount(labels, weights=weights, minlength=n_classes)
    empty = [index for index, total in enumerate(totals) if not total > 0]
    if empty:
        raise ValueError(f"classes {empty} have no events or a total weight of zero")
    return weights * (len(weights) / (n_classes * totals))[labels]


def validation_mask(
    run: np.ndarray,
    luminosity_block: np.ndarray,
    event: np.ndarray,
    fraction: float,
    seed: int = 0,
) -> np.ndarray:
    """Which events form the validation split: a deterministic function of the event identity.

    The salted re-hash of :func:`cf.folds.event_hash` makes the choice independent of the fold (an event
    of the training folds is in the validation split with probability ``fraction`` whatever its fold).

    Args:
        run: The run numbers.
        luminosity_block: The luminosity blocks.
        event: The event numbers.
        fraction: The fraction of events in the validation split (0 < fraction < 1).
        seed: Changes the choice of events.

    Returns:
        A boolean numpy array, True for validation events.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must lie between 0 and 1, got {fraction}")
    identity = event_hash(run, luminosity_block, event)
    n = len(identity)
    salted = event_hash(np.full(n, seed, dtype=np.uint64), np.full(n, VALIDATION_SALT, dtype=np.uint64), identity)
    uniform = (salted >> np.uint64(11)).astype(np.float64) / float(2**53)
    return uniform < fraction


def signal_vs_rest_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The (weighted) area under the ROC curve of a score separating signal from everything else.

    It is the probability that a signal event scores higher than a background event, ties counting 1/2,
    with each pair weighted by the product of the events' weights.

    Args:
        scores: The discriminant per event (higher is more signal-like).
        labels: True (or 1) for signal events.
        weights: Optional event weights (pass ``abs`` of physics weights; negative ones are not meaningful).

    Raises:
        ValueError: If the lengths differ or the signal or the background has no (positive) total weight.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_signal = np.asarray(labels).astype(bool)
    weights = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    if not len(scores) == len(is_signal) == len(weights):
        raise ValueError(
            f"scores, labels and weights differ in length: {len(scores)}, {len(is_signal)}, {len(weights)}"
        )
    values, inverse = np.unique(scores, return_inverse=True)
    signal = np.bincount(inverse, weights=np.where(is_signal, weights, 0.0), minlength=len(values))
    background = np.bincount(inverse, weights=np.where(is_signal, 0.0, weights), minlength=len(values))
    total_signal, total_background = signal.sum(), background.sum()
    if not (total_signal > 0 and total_background > 0):
        raise ValueError("the AUC needs signal and background events with a positive total weight")
    background_below = np.cumsum(background) - background
    return float(np.sum(signal * (background_below + 0.5 * background)) / (total_signal * total_background))


# the training's data and outputs, shared by the models of this file's design (e.g. ml/torch_dnn.py)


@dataclass
class TrainingData:
    """One fold's training events, standardized and split, as :meth:`DNNClassifier.prepare_training_data` makes it.

    Attributes:
        x: The standardized features of all events (float32, shape ``(events, features)``).
        labels: The class index of each event.
        weights: The event weights as read (``normalization_weight``).
        is_val: True for the events of the validation split.
        fit_weights: The balanced training weights of the fit events (``~is_val``).
        val_weights: The balanced weights of the validation events.
        standardization: The standardization fitted on the fit events (``standardization.json``).
    """

    x: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    is_val: np.ndarray
    fit_weights: np.ndarray
    val_weights: np.ndarray
    standardization: dict[str, Any]

    @property
    def is_fit(self) -> np.ndarray:
        """True for the events the network is fitted on."""
        return ~self.is_val


def check_onnx_export(path: str, x: np.ndarray, reference: np.ndarray, source: str) -> float:
    """The largest difference between an ONNX model's outputs and the reference outputs on ``x``.

    Args:
        path: The ``model.onnx`` file.
        x: The (standardized) inputs.
        reference: The outputs of the exported network on ``x``.
        source: What was exported, for the error message (e.g. ``"fold 0's Keras model"``).

    Raises:
        RuntimeError: If the difference exceeds :data:`ONNX_TOLERANCE` (the scores would differ).
    """
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    onnx_scores = np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0])
    difference = float(np.max(np.abs(onnx_scores - reference)))
    if not difference <= ONNX_TOLERANCE:
        raise RuntimeError(
            f"the ONNX export of {source} differs from it by {difference:.3g} on the validation "
            f"inputs (tolerance {ONNX_TOLERANCE})",
        )
    return difference


def write_fold_files(
    output: law.LocalDirectoryTarget,
    fold: int,
    history: dict[str, list[float]],
    standardization: dict[str, Any],
    metrics: dict[str, Any],
) -> None:
    """Write ``history.json``, ``standardization.json`` and ``metrics.json`` of a fold; print its held-out metrics."""
    files = {"history.json": history, "standardization.json": standardization, "metrics.json": metrics}
    for name, content in files.items():
        with open(output.child(name, type="f").path, "w") as file:
            json.dump(content, file, indent=2)
    held_out = ", ".join(f"{key} {value:.4f}" for key, value in metrics.items() if key.startswith("val_"))
    print(f"fold {fold}: {held_out}, best epoch {metrics['best_epoch']} of {metrics['epochs_run']}", flush=True)


# the model


def epoch_logger(fold: int) -> Any:
    """A Keras callback printing one line per epoch with its losses and accuracies."""

    def log(epoch: int, logs: dict[str, float]) -> None:
        values = ", ".join(f"{key} {float(value):.4f}" for key, value in sorted(logs.items()))
        print(f"fold {fold} epoch {epoch + 1}: {values}", flush=True)

    return keras.callbacks.LambdaCallback(on_epoch_end=log)


def training_device() -> str:
    """The device Keras trains on: the first visible GPU (e.g. ``GPU:0``), else ``CPU``."""
    gpus = tf.config.list_physical_devices("GPU")
    return gpus[0].name.removeprefix("/physical_device:") if gpus else "CPU"


@dataclass
class FoldModel:
    """One fold's trained network with its standardization, as ``open_model`` returns it.

    Attributes:
        backend: ``"onnx"`` or ``"keras"``.
        network: An ``onnxruntime.InferenceSession`` or a Keras model.
        standardization: The parameters from ``standardization.json``.
    """

    backend: str
    network: Any
    standardization: dict[str, Any]
    keras_call: Any = field(default=None, repr=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The class probabilities for raw features ``x`` (shape ``(events, features)``)."""
        inputs = apply_standardization(x, self.standardization)
        if self.backend == "onnx":
            name = self.network.get_inputs()[0].name
            return np.asarray(self.network.run(None, {name: inputs})[0])
        if self.keras_call is None:
            # traced once for any number of events (predict() retraces for every new chunk length and adds
            # per-batch work); as a graph, 30% faster than the eager call with the same results
            network, spec = self.network, tf.TensorSpec((None, inputs.shape[1]), inputs.dtype)
            self.keras_call = tf.function(lambda batch: network(batch, training=False), input_signature=[spec])
        return np.asarray(self.keras_call(inputs))


class DNNClassifier(MLModel):
    """Classifies events as HH, tt or DY with a dense network; one network per fold.

    The output classes are ``classes`` (the signal first); the settings below can each be changed for one run
    with ``--ml-model-settings key=value`` (``cf.MLTraining --help`` of the task does not list them: see
    ``DNNClassifier.declared_settings()`` or the docs).
    """

    classes = (
        ("hh", ("hh_ggf_bbtautau_madgraph",)),
        ("tt", ("tt_sl_powheg", "tt_dl_powheg")),
        ("dy", ("dy_lep_m50_madgraph",)),
    )
    features: tuple[str, ...] = setting(tuple(FEATURES), "names of the input features", choices=tuple(FEATURES))
    layers: tuple[int, ...] = setting((64, 64), "units of the hidden layers", minimum=1)
    activation: str = setting("relu", "activation of the hidden layers")
    dropout: float = setting(0.1, "dropout rate after each hidden layer (0 for none)", minimum=0.0, below=1.0)
    learning_rate: float = setting(0.002, "Adam's learning rate", above=0.0)
    batch_size: int = setting(256, "events per gradient step", minimum=1)
    epochs: int = setting(40, "maximum number of epochs", minimum=1)
    patience: int = setting(10, "epochs without a better validation loss before training stops", minimum=1)
    # a noisy minimum in the first epochs would otherwise stop the training too early
    min_epochs: int = setting(5, "epochs before early stopping watches the validation loss", minimum=0)
    validation_fraction: float = setting(
        0.2, "fraction of the training folds used for validation and early stopping", above=0.0, below=1.0
    )
    seed: int = setting(1, "base seed; fold i trains with seed + i")
    deterministic: bool = setting(
        True, "deterministic ops: bit-identical re-training; false trains about 15% faster on a CPU"
    )
    evaluation_backend: str = setting(
        "onnx", "onnx (ONNX Runtime in the base environment) or keras (the TF sandbox)", choices=EVALUATION_BACKENDS
    )
    onnx_threads: int = setting(1, "intra-op threads of an ONNX Runtime session", minimum=1)
    # how the trained networks are run does not change the training: no retraining when these change
    evaluation_settings = frozenset({"evaluation_backend", "onnx_threads"})
    # these change only the fit: trainings (e.g. the points of a scan) that differ in them share the prepared events
    training_only_settings = frozenset(
        {"layers", "activation", "dropout", "learning_rate", "batch_size", "epochs", "patience", "min_epochs"}
        | {"validation_fraction", "seed", "deterministic"}
    )

    def setup(self) -> None:
        self.add_score_variables()

    # the contract

    def sandbox(self, task: law.Task) -> str:
        # ONNX Runtime is part of the base environment: no sandbox process to start for the evaluation
        if task.task_family in ONNX_TASKS and self.evaluation_backend == "onnx":
            return ""
        return TF_SANDBOX

    def datasets(self, config_inst: Any) -> set[Any]:
        return {config_inst.get_dataset(name) for _, names in self.classes for name in names}

    def uses(self, config_inst: Any) -> set[str]:
        columns = {column for name in self.features for column in FEATURES[name].columns}
        return columns | {"normalization_weight"}

    def produces(self, config_inst: Any) -> set[str]:
        return {self.score_column(name) for name in self.class_names()}

    def output(self, task: law.Task) -> law.LocalDirectoryTarget:
        return task.target(f"mlmodel_f{task.branch}of{self.folds}", dir=True)

    def open_model(self, target: law.LocalDirectoryTarget) -> FoldModel:
        standardization = self.read_standardization(target)
        if self.evaluation_backend == "onnx":
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.onnx_threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            network = ort.InferenceSession(
                target.child("model.onnx", type="f").path,
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        else:
            network = keras.models.load_model(target.child("model.keras", type="f").path)
        return FoldModel(self.evaluation_backend, network, standardization)

    def read_standardization(self, target: law.LocalDirectoryTarget) -> dict[str, Any]:
        """The ``standardization.json`` of a fold's model directory.

        Raises:
            ValueError: If the model was trained on other inputs than this model's :meth:`input_names`.
        """
        with open(target.child("standardization.json", type="f").path) as file:
            standardization = json.load(file)
        if list(standardization["features"]) != self.input_names():
            raise ValueError(
                f"the model in {target.path} was trained on the features {standardization['features']}, "
                f"not on {self.input_names()}",
            )
        return standardization

    def feature_matrix(self, events: ak.Array) -> np.ndarray:
        """The raw features of the events, shape ``(events, features)``; ``EMPTY_FLOAT`` for missing objects."""
        columns = [np.asarray(FEATURES[name].extract(events), dtype=np.float64) for name in self.features]
        return np.stack(columns, axis=1)

    def feature_fills(self) -> list[float]:
        """The fill value of each network input, in the order of :meth:`input_names`."""
        return [FEATURES[name].fill for name in self.features]

    def input_names(self) -> list[str]:
        """The names of the network's inputs (the ``features``; a subclass may add inputs of its own)."""
        return list(self.features)

    # the input features of the framework's input and importance plots

    def input_features(self) -> list[str]:
        return list(self.features)

    def input_matrix(self, events: ak.Array) -> np.ndarray:
        return fill_missing(self.feature_matrix(events), self.feature_fills())

    def predict_inputs(self, fold_model: FoldModel, x: np.ndarray) -> np.ndarray:
        return fold_model.predict(x)

    def training_weights(self, weights: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return balanced_class_weights(weights, labels, len(self.classes))

    def load_training_events(self, input: dict[str, Any]) -> dict[str, np.ndarray]:
        """The raw features, labels, weights, event identities and dataset names of all training events in ``input``.

        Raises:
            ValueError: If a class has no training events or the weight column is missing.
        """
        keys = ("x", "label", "weight", "run", "lumi", "event", "dataset")
        parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        for config_inst in self.config_insts:
            for dataset_name, targets in sorted(input["events"].get(config_inst.name, {}).items()):
                label = self.class_index(dataset_name)
                if label is None:
                    continue
                for target in targets:
                    events = ak.from_parquet(target.path)
                    if "normalization_weight" not in events.fields:
                        raise ValueError(f"the training events {target.path} have no normalization_weight column")
                    parts["x"].append(self.feature_matrix(events))
                    parts["label"].append(np.full(len(events), label, dtype=np.int64))
                    parts["weight"].append(ak.to_numpy(events.normalization_weight).astype(np.float64))
                    parts["run"].append(ak.to_numpy(events.run))
                    parts["lumi"].append(ak.to_numpy(events.luminosityBlock))
                    parts["event"].append(ak.to_numpy(events.event))
                    parts["dataset"].append(np.full(len(events), dataset_name))
        data = {key: np.concatenate(values) if values else np.zeros(0) for key, values in parts.items()}
        counts = np.bincount(data["label"].astype(np.int64), minlength=len(self.classes))
        empty = [name for name, count in zip(self.class_names(), counts, strict=True) if count == 0]
        if empty:
            raise ValueError(f"ML model '{self.cls_name}': no training events for the class(es) {', '.join(empty)}")
        return data

    def prepare_training_data(self, input: dict[str, Any]) -> TrainingData:
        """The training events of ``input``: split, standardized on the fit split and with balanced weights."""
        data = self.load_training_events(input)
        is_val = validation_mask(data["run"], data["lumi"], data["event"], self.validation_fraction, self.seed)
        is_fit = ~is_val
        standardization = fit_standardization(data["x"][is_fit], self.input_names(), self.feature_fills())
        labels, weights = data["label"], data["weight"]
        return TrainingData(
            x=apply_standardization(data["x"], standardization),
            labels=labels,
            weights=weights,
            is_val=is_val,
            fit_weights=self.training_weights(weights[is_fit], labels[is_fit]),
            val_weights=self.training_weights(weights[is_val], labels[is_val]),
            standardization=standardization,
        )

    def fold_metrics(
        self,
        fold: int,
        data: TrainingData,
        val_scores: np.ndarray,
        history: dict[str, list[float]],
        best_epoch: int,
    ) -> dict[str, Any]:
        """A fold's ``metrics.json`` without the export check and the timings.

        Args:
            fold: The fold.
            data: The fold's training data.
            val_scores: The class probabilities of the validation events (from the kept weights).
            history: The per-epoch values with ``val_loss``.
            best_epoch: The index of the epoch whose weights were kept.
        """
        names = self.class_names()
        is_signal = data.labels[data.is_val] == 0
        weights = np.abs(data.weights[data.is_val])
        fit, val = np.bincount(data.labels[data.is_fit]), np.bincount(data.labels[data.is_val])
        return {
            "fold": fold,
            "val_auc_signal_vs_rest": signal_vs_rest_auc(val_scores[:, 0], is_signal, weights),
            "val_auc_signal_vs_rest_unweighted": signal_vs_rest_auc(val_scores[:, 0], is_signal),
            **self.class_aucs(val_scores, data.labels[data.is_val], weights),
            "val_loss": history["val_loss"][best_epoch],
            "best_epoch": best_epoch + 1,
            "epochs_run": len(history["val_loss"]),
            "n_events_fit": {n: int(c) for n, c in zip(names, fit, strict=False)},
            "n_events_val": {n: int(c) for n, c in zip(names, val, strict=False)},
        }

    def build_network(self, n_features: int) -> Any:
        """The (compiled) Keras network; expects standardized inputs."""
        network = keras.Sequential([keras.Input(shape=(n_features,), name="features")])
        for units in self.layers:
            network.add(keras.layers.Dense(units, activation=self.activation))
            if self.dropout > 0:
                network.add(keras.layers.Dropout(self.dropout))
        network.add(keras.layers.Dense(len(self.classes), activation="softmax"))
        network.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return network

    def train(self, task: law.Task, input: dict[str, Any], output: law.LocalDirectoryTarget) -> None:
        start = time.perf_counter()
        fold = task.branch
        device = training_device()
        print(f"fold {fold}: training on {device}", flush=True)
        keras.backend.clear_session()
        keras.utils.set_random_seed(self.seed + fold)
        if self.deterministic:
            # for the rest of the process: TensorFlow has no public way to switch it off again
            tf.config.experimental.enable_op_determinism()

        data = self.prepare_training_data(input)
        x, labels, is_fit, is_val = data.x, data.labels, data.is_fit, data.is_val

        network = self.build_network(x.shape[1])
        stopping = keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=self.patience,
            restore_best_weights=True,
            start_from_epoch=self.min_epochs,
        )
        result = network.fit(
            x[is_fit],
            labels[is_fit],
            sample_weight=data.fit_weights,
            validation_data=(x[is_val], labels[is_val], data.val_weights),
            epochs=self.epochs,
            batch_size=self.batch_size,
            shuffle=True,
            callbacks=[stopping, epoch_logger(fold)],
            # no per-batch progress: a callback that reads batch logs makes Keras wait for every batch
            verbose=0,
        )
        fit_seconds = time.perf_counter() - start

        os.makedirs(output.path, exist_ok=True)
        path = {name: output.child(name, type="f").path for name in ("model.keras", "model.onnx")}
        network.save(path["model.keras"])
        with warnings.catch_warnings():
            # keras' ONNX exporter tests for numpy's removed np.object, which warns on every export
            warnings.filterwarnings("ignore", message=".*np.object", category=FutureWarning)
            network.export(path["model.onnx"], format="onnx", verbose=False)

        # the ONNX export must reproduce Keras, otherwise the default evaluation would silently differ
        keras_scores = np.asarray(network.predict(x[is_val], batch_size=8192, verbose=0))
        source = f"fold {fold}'s Keras model"
        onnx_diff = check_onnx_export(path["model.onnx"], x[is_val], keras_scores, source)

        history = {key: [float(value) for value in values] for key, values in result.history.items()}
        # the epoch whose weights early stopping restored (the last one if it never watched the loss)
        best_epoch = int(stopping.best_epoch) if stopping.best_weights is not None else len(history["loss"]) - 1
        metrics = {
            **self.fold_metrics(fold, data, keras_scores, history, best_epoch),
            "onnx_keras_max_abs_diff": onnx_diff,
            "fit_seconds": fit_seconds,
            "total_seconds": time.perf_counter() - start,
            "device": device,
        }
        write_fold_files(output, fold, history, data.standardization, metrics)

    def class_aucs(self, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> dict[str, float]:
        """``val_auc_<class>``: the AUC of each class's score separating that class from the others."""
        return {
            f"val_auc_{name}": signal_vs_rest_auc(scores[:, node], labels == node, weights)
            for node, name in enumerate(self.class_names())
        }

    def training_metrics(self, target: law.LocalDirectoryTarget) -> dict[str, float] | None:
        """The validation metrics of ``metrics.json`` (``val_loss`` and the AUCs; not the counts or timings)."""
        metrics = super().training_metrics(target)
        return None if metrics is None else {key: value for key, value in metrics.items() if key.startswith("val_")}

    def evaluate(
        self,
        task: law.Task,
        events: ak.Array,
        models: list[Any],
        fold_indices: np.ndarray,
        events_used_in_training: bool = False,
    ) -> ak.Array:
        x = self.feature_matrix(events)
        if len(x):
            # each fold model scores only the events whose score it gives (no predictions thrown away); with
            # TensorFlow the last bits of a score depend on the other events of its batch, as on the chunk size
            scores = held_out_outputs([model.predict for model in models], x, fold_indices, events_used_in_training)
        else:
            scores = np.zeros((0, len(self.classes)), dtype=np.float32)
        return self.set_class_scores(events, scores)

    def training_calibrators(self, config_inst: Any, requested_calibrators: list[str]) -> list[str]:
        return ["skip_jecunc"]

    def training_selector(self, config_inst: Any, requested_selector: str) -> str:
        return "default"

    def training_producers(self, config_inst: Any, requested_producers: list[str]) -> list[str]:
        return ["default"]


# the model used on the command line: --ml-model dnn
dnn = DNNClassifier.derive("dnn", cls_dict={"folds": 3})
