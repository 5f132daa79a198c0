"""The PyTorch reference classifier ``torch_dnn``: the design of ``dnn`` (ml/dnn.py), trained with torch.

It is :class:`ml.dnn.DNNClassifier` with another training: the same classes, features, missing-value fills,
standardization, balanced weights, validation split, early stopping, k-fold outputs and ONNX evaluation; only the
network is a ``torch.nn.Sequential`` trained in the torch sandbox (``sandboxes/venv_ml_torch.sh``).

* **Determinism**: fold ``i`` seeds torch with ``seed + i`` (weights, dropout and the batch order), torch's
  deterministic algorithms are on (``deterministic``, as for ``dnn``) and it runs with ``threads`` threads, so
  a re-training gives byte-identical weights and ONNX files.
* **Loss**: the cross entropy of the softmax, weighted per event and averaged over the batch (as Keras'
  ``sample_weight``). The history has Keras' keys (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``),
  computed after each epoch on all fit and validation events without dropout (Keras' ``loss`` is the mean over
  the epoch's batches instead).
* **Device**: the first visible CUDA GPU, else the CPU (the sandbox holds torch's CPU build); the device is
  printed and written into ``metrics.json``. The export and its check run on the CPU.
* **Early stopping**: as ``dnn``'s Keras callback (:class:`EarlyStopping`), the best epoch's weights are kept.
* **Outputs** per fold (``mlmodel_f{i}of{folds}/``): ``model.pt`` (the state dict of the network, which ends
  with its logits), ``model.onnx`` (the network with a softmax, checked against torch on the validation inputs),
  ``history.json``, ``metrics.json`` and ``standardization.json``.
* **Evaluation**: ONNX Runtime in the base environment, without a sandbox and without torch (the inherited
  ``open_model`` and ``evaluate``), in every task but ``cf.MLTraining``; or torch in the torch sandbox with
  ``--ml-model-settings evaluation_backend=torch`` (from ``model.pt``).
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import law
import numpy as np

from cf.ml import setting
from cf.util import maybe_import
from ml.dnn import (
    DNNClassifier,
    FoldModel,
    TrainingData,
    apply_standardization,
    check_onnx_export,
    write_fold_files,
)

# torch only exists in the torch sandbox; elsewhere (law index, the base venv, the ONNX evaluation) it is a placeholder
torch = maybe_import("torch")

__all__ = ["ACTIVATIONS", "TORCH_SANDBOX", "EarlyStopping", "TorchDNNClassifier", "TorchFoldModel", "torch_dnn"]

#: Sandbox of the training and of the torch evaluation; the ONNX evaluation runs in the base environment.
TORCH_SANDBOX = "bash::$CF_BASE/sandboxes/venv_ml_torch.sh"
#: The evaluation backends: ONNX Runtime (base environment, no torch) or torch (torch sandbox).
EVALUATION_BACKENDS = ("onnx", "torch")
#: The activations of the hidden layers, by name: the ``torch.nn`` module of each.
ACTIVATIONS = {"relu": "ReLU", "elu": "ELU", "selu": "SELU", "gelu": "GELU", "tanh": "Tanh", "sigmoid": "Sigmoid"}
#: The ONNX opset of the export (ONNX Runtime 1.32 runs it; the TorchScript exporter supports it).
ONNX_OPSET = 17


class TorchFoldModel(FoldModel):
    """One fold's torch network (ending with the softmax) with its standardization, for ``evaluation_backend=torch``."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The class probabilities for raw features ``x`` (shape ``(events, features)``)."""
        inputs = torch.from_numpy(apply_standardization(x, self.standardization))
        with torch.no_grad():
            return self.network(inputs).numpy()


class TorchDNNClassifier(DNNClassifier):
    """Classifies events as HH, tt or DY with a dense torch network; one network per fold.

    Every setting of :class:`ml.dnn.DNNClassifier` means the same here, except those declared below.
    """

    activation: str = setting("relu", "activation of the hidden layers", choices=tuple(ACTIVATIONS))
    threads: int = setting(1, "torch's threads in the training (results depend on it)", minimum=1)
    evaluation_backend: str = setting(
        "onnx",
        "onnx (ONNX Runtime in the base environment) or torch (the torch sandbox)",
        choices=EVALUATION_BACKENDS,
    )
    # only the fit depends on the threads: the points of a scan over them share the prepared events
    training_only_settings = DNNClassifier.training_only_settings | {"threads"}

    def sandbox(self, task: law.Task) -> str:
        # the ONNX evaluation (also of the training scores) needs neither torch nor a sandbox
        if task.task_family == "cf.MLTraining" or self.evaluation_backend == "torch":
            return TORCH_SANDBOX
        return ""

    def open_model(self, target: law.LocalDirectoryTarget) -> FoldModel:
        if self.evaluation_backend == "onnx":
            return super().open_model(target)
        network = self.build_network(len(self.features))
        network.load_state_dict(torch.load(target.child("model.pt", type="f").path, weights_only=True))
        classifier = torch.nn.Sequential(network, torch.nn.Softmax(dim=1)).eval()
        return TorchFoldModel("torch", classifier, self.read_standardization(target))

    def build_network(self, n_features: int) -> Any:
        """The torch network from standardized features to the logits of the classes."""
        layers: list[Any] = []
        for n_in, n_out in zip((n_features, *self.layers), self.layers, strict=False):
            layers += [torch.nn.Linear(n_in, n_out), getattr(torch.nn, ACTIVATIONS[self.activation])()]
            if self.dropout > 0:
                layers.append(torch.nn.Dropout(self.dropout))
        layers.append(torch.nn.Linear(self.layers[-1], len(self.classes)))
        return torch.nn.Sequential(*layers)

    def train(self, task: law.Task, input: dict[str, Any], output: law.LocalDirectoryTarget) -> None:
        start = time.perf_counter()
        fold = task.branch
        torch.manual_seed(self.seed + fold)
        torch.use_deterministic_algorithms(self.deterministic)
        torch.set_num_threads(self.threads)
        device = training_device()
        print(f"fold {fold}: training on {device_name(device)}", flush=True)

        data = self.prepare_training_data(input)
        network = self.build_network(data.x.shape[1]).to(device)
        history, best_epoch = self.fit(network, data, fold)
        # the export, its check and the saved weights are on the CPU, whatever the training used
        network = network.cpu()
        fit_seconds = time.perf_counter() - start

        os.makedirs(output.path, exist_ok=True)
        path = {name: output.child(name, type="f").path for name in ("model.pt", "model.onnx")}
        torch.save(network.state_dict(), path["model.pt"])
        classifier = torch.nn.Sequential(network, torch.nn.Softmax(dim=1)).eval()
        export_onnx(classifier, data.x.shape[1], path["model.onnx"])

        # the ONNX export must reproduce torch, otherwise the evaluation would silently differ
        val_x = data.x[data.is_val]
        with torch.no_grad():
            torch_scores = classifier(torch.from_numpy(val_x)).numpy()
        source = f"fold {fold}'s torch model"
        onnx_diff = check_onnx_export(path["model.onnx"], val_x, torch_scores, source)

        metrics = {
            **self.fold_metrics(fold, data, torch_scores, history, best_epoch),
            "onnx_torch_max_abs_diff": onnx_diff,
            "fit_seconds": fit_seconds,
            "total_seconds": time.perf_counter() - start,
            "device": device_name(device),
        }
        write_fold_files(output, fold, history, data.standardization, metrics)

    def fit(self, network: Any, data: TrainingData, fold: int) -> tuple[dict[str, list[float]], int]:
        """Train ``network`` with Adam and early stopping; the best epoch's weights are restored.

        Returns:
            The history (one value per epoch and key) and the index of the epoch whose weights were kept.
        """
        device = next(network.parameters()).device
        fit_set = tensors(data, data.is_fit, data.fit_weights, device)
        val_set = tensors(data, data.is_val, data.val_weights, device)
        optimizer = torch.optim.Adam(network.parameters(), lr=self.learning_rate)
        stopping = EarlyStopping(self.min_epochs, self.patience)
        history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
        for epoch in range(self.epochs):
            train_epoch(network, optimizer, fit_set, self.batch_size)
            for prefix, tensor_set in (("", fit_set), ("val_", val_set)):
                loss, accuracy = evaluate_loss(network, *tensor_set)
                history[f"{prefix}loss"].append(loss)
                history[f"{prefix}accuracy"].append(accuracy)
            values = ", ".join(f"{key} {values[-1]:.4f}" for key, values in sorted(history.items()))
            print(f"fold {fold} epoch {epoch + 1}: {values}", flush=True)
            if stopping.should_stop(epoch, history["val_loss"][-1], lambda: copy.deepcopy(network.state_dict())):
                break
        if stopping.best_epoch is None:
            return history, len(history["loss"]) - 1
        network.load_state_dict(stopping.best_state)
        return history, stopping.best_epoch


@dataclass
class EarlyStopping:
    """Keras' ``EarlyStopping(start_from_epoch=min_epochs, patience=patience, restore_best_weights=True)``.

    The validation loss is watched from epoch ``min_epochs`` on (epochs count from 0); the training stops
    after ``patience`` watched epochs without a lower loss than the best one, whose weights are kept.

    Attributes:
        min_epochs: The first epoch whose loss is watched.
        patience: Epochs without a lower loss before the training stops.
        best_loss: The lowest watched loss.
        best_epoch: The epoch of ``best_loss`` (None before the first watched epoch).
        best_state: The snapshot of the weights taken at ``best_epoch``.
    """

    min_epochs: int
    patience: int
    best_loss: float = math.inf
    best_epoch: int | None = None
    best_state: Any = None

    def should_stop(self, epoch: int, loss: float, snapshot: Callable[[], Any]) -> bool:
        """Record the loss of ``epoch`` (``snapshot`` is called on a new best) and say whether to stop."""
        if epoch < self.min_epochs:
            return False
        if self.best_epoch is None or loss < self.best_loss:
            self.best_loss, self.best_epoch, self.best_state = loss, epoch, snapshot()
            return False
        return epoch - self.best_epoch >= self.patience


def train_epoch(network: Any, optimizer: Any, fit_set: tuple[Any, Any, Any], batch_size: int) -> None:
    """One pass over the fit events in a random order, one optimizer step per batch."""
    network.train()
    for x, labels, weights in batches(fit_set, batch_size):
        optimizer.zero_grad()
        weighted_loss(network(x), labels, weights).backward()
        optimizer.step()
    network.eval()


def training_device() -> Any:
    """The device torch trains on: the first visible CUDA GPU, else the CPU (always with the CPU build)."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    # deterministic cuBLAS needs a fixed workspace, set before the first CUDA call
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return torch.device("cuda", 0)


def device_name(device: Any) -> str:
    """``CPU`` or ``GPU:0``, the names ``dnn`` writes into ``metrics.json``."""
    return "CPU" if device.type == "cpu" else f"GPU:{device.index or 0}"


def tensors(data: TrainingData, mask: np.ndarray, weights: np.ndarray, device: Any) -> tuple[Any, Any, Any]:
    """The standardized features, labels and weights of the events in ``mask``, as torch tensors on ``device``."""
    return (
        torch.from_numpy(np.ascontiguousarray(data.x[mask])).to(device),
        torch.from_numpy(data.labels[mask]).to(device),
        torch.from_numpy(weights.astype(np.float32)).to(device),
    )


def batches(tensor_set: tuple[Any, Any, Any], batch_size: int) -> Iterator[tuple[Any, Any, Any]]:
    """The events in batches of ``batch_size``, in an order drawn from torch's (seeded) generator."""
    # drawn on the CPU, so that the order on a GPU is that of a CPU training
    order = torch.randperm(len(tensor_set[0])).to(tensor_set[0].device)
    for first in range(0, len(order), batch_size):
        indices = order[first : first + batch_size]
        yield tuple(tensor[indices] for tensor in tensor_set)  # type: ignore[misc]


def weighted_loss(logits: Any, labels: Any, weights: Any) -> Any:
    """The cross entropy per event times its weight, averaged over the events (Keras' ``sample_weight``)."""
    return (torch.nn.functional.cross_entropy(logits, labels, reduction="none") * weights).mean()


def evaluate_loss(network: Any, x: Any, labels: Any, weights: Any) -> tuple[float, float]:
    """The weighted loss and the unweighted accuracy of the network (in eval mode) on all given events."""
    with torch.no_grad():
        logits = network(x)
        loss = float(weighted_loss(logits, labels, weights))
        accuracy = float((logits.argmax(dim=1) == labels).float().mean())
    return loss, accuracy


def export_onnx(classifier: Any, n_features: int, path: str) -> None:
    """Export the classifier to ONNX for any number of events (``features`` in, ``scores`` out).

    The TorchScript exporter (``dynamo=False``) needs only the ``onnx`` package and is
    deterministic; torch deprecates it in favour of the ``torch.export`` one (which needs
    ``onnxscript``), hence the silenced warning.
    """
    example = torch.zeros(1, n_features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            classifier,
            (example,),
            path,
            dynamo=False,
            input_names=["features"],
            output_names=["scores"],
            dynamic_axes={"features": {0: "events"}, "scores": {0: "events"}},
            opset_version=ONNX_OPSET,
        )


# the model used on the command line: --ml-model torch_dnn
torch_dnn = TorchDNNClassifier.derive("torch_dnn", cls_dict={"folds": 3})
