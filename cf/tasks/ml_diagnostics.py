"""What a k-fold ML model reads and which of its inputs matter: ``cf.PlotMLInputs`` and ``cf.PlotMLImportance``.

    MergeMLEvents (per dataset and fold) -> PlotMLInputs (distributions, correlations, class weights; no training)
    MergeMLEvents + MLTraining -> PlotMLImportance (permutation importance on each fold's held-out events)

Both read the events the training reads (the ``cf.MergeMLEvents`` outputs of the model's training datasets, with the
calibrators, selector and producers of its ``training_*`` hooks) and the model's input features through the optional
:class:`cf.ml.MLModel` methods ``input_features`` and ``input_matrix`` (the importance also ``predict_inputs``).
They run in the base environment; every output is written atomically.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import awkward as ak
import law
import luigi
import numpy as np

from cf.io import dump_json
from cf.ml import MLModel
from cf.tasks.base import CalibratorsMixin, ConfigTask, ProducersMixin, SelectorMixin
from cf.tasks.ml import (
    MergeMLEvents,
    MLModelMixin,
    MLTraining,
    apply_training_functions,
    event_weights,
    training_functions,
)
from cf.tasks.plotting import MLClass, model_classes
from cf.util import UserError

__all__ = ["InputSample", "PlotMLImportance", "PlotMLInputs", "check_model_methods"]


def check_model_methods(model: MLModel, methods: tuple[str, ...], task_family: str) -> None:
    """Refuse a model that lacks one of the optional ``MLModel`` methods a task calls.

    Raises:
        UserError: Naming the model, the methods it must implement and the task.
    """
    missing = [name for name in methods if getattr(type(model), name) is getattr(MLModel, name)]
    if missing:
        raise UserError(
            f"ML model '{model.cls_name}' does not implement {', '.join(missing)}, which {task_family} needs: "
            "add them to its class (see the MLModel methods of the same names)",
        )


@dataclass
class InputSample:
    """The input features of the training events: one row per event.

    Attributes:
        x: The features (``MLModel.input_matrix``), shape ``(events, features)``.
        labels: The class index of each event.
        weights: The event weights (the model's ``weight_column``, 1 where absent; signed).
        folds: The fold of each event.
    """

    x: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    folds: np.ndarray

    def select(self, mask: np.ndarray) -> InputSample:
        return InputSample(self.x[mask], self.labels[mask], self.weights[mask], self.folds[mask])


class MLInputsTask(MLModelMixin, ProducersMixin, SelectorMixin, CalibratorsMixin, ConfigTask):
    """A task reading the input features of every training event of the model, per fold."""

    uses_evaluation_settings = False
    #: The optional ``MLModel`` methods the task calls.
    model_methods: ClassVar[tuple[str, ...]] = ("input_features", "input_matrix")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        model = apply_training_functions(params)
        if model is not None:
            cls.check_model(model)
        return params

    @classmethod
    def check_model(cls, model: MLModel) -> None:
        """Refuse a model that lacks the task's :attr:`model_methods` or output classes (a UserError)."""
        check_model_methods(model, cls.model_methods, cls.get_task_family())
        model.output_classes()

    def store_parts(self) -> list[str]:
        return [*super().store_parts(), *self.function_store_parts()]

    def event_requirements(self) -> dict[str, list[MergeMLEvents]]:
        folds = range(self.ml_model_inst.folds)
        return {
            dataset: [MergeMLEvents.req(self, dataset=dataset, fold=fold) for fold in folds]
            for dataset in self.training_datasets()
        }

    def classes(self) -> list[MLClass]:
        return model_classes(self.ml_model_inst, self.config_inst)

    def load_inputs(self) -> InputSample:
        """The input features, classes, weights and folds of all training events.

        Raises:
            ValueError: If ``input_matrix`` returns another number of columns than ``input_features`` names, or
                a value that is not finite (naming the feature and the dataset).
        """
        model = self.ml_model_inst
        features = model.input_features()
        parts: list[InputSample] = []
        for dataset, targets in self.input()["events"].items():
            label = model.class_index(dataset)
            for fold, target in enumerate(targets):
                events = ak.from_parquet(target.path)
                if len(events) == 0:
                    continue
                x = np.asarray(model.input_matrix(events), dtype=np.float64)
                check_input_matrix(x, features, len(events), dataset)
                n = len(events)
                weights = event_weights(events, model.weight_column)
                parts.append(InputSample(x, np.full(n, label), weights, np.full(n, fold)))
        if not parts:
            raise ValueError(f"ML model '{model.cls_name}' has no training events in config '{self.config}'")
        return InputSample(
            *(np.concatenate([getattr(p, key) for p in parts]) for key in ("x", "labels", "weights", "folds"))
        )


def check_input_matrix(x: np.ndarray, features: list[str], n_events: int, dataset: str) -> None:
    """Raise a ValueError if the input matrix has the wrong shape or a value that is not finite."""
    if x.shape != (n_events, len(features)):
        raise ValueError(
            f"input_matrix returned shape {x.shape} for {n_events} events of dataset '{dataset}', but input_features "
            f"names {len(features)} features",
        )
    bad = ~np.isfinite(x).all(axis=0)
    if bad.any():
        names = [name for name, is_bad in zip(features, bad, strict=True) if is_bad]
        raise ValueError(f"the input feature(s) {', '.join(names)} of dataset '{dataset}' have NaN or infinite values")


class PlotMLInputs(MLInputsTask):
    """The input features of the training events, per class and per fold, before any training.

    * ``plot__inputs``: one panel per input feature (``MLModel.input_features``) with the distribution of each class,
      all folds together, normalised to unit area; values beyond the range count in the first or last bin.
    * ``plot__inputs_folds``: per feature, class and fold, how far the fold's weighted mean lies from that of the
      other folds, in standard errors (the folds are a random split of the events: the pulls scatter around 0 with a
      width of 1; a pattern points to a fold assignment that depends on the physics).
    * ``plot__correlation__<class>``: the weighted correlation matrix of the features in one class.
    * ``ml_inputs.json``: the numbers: per class and feature the weighted mean and standard deviation (also per
      fold), the fold pulls, the correlation matrices, the bin edges, the event counts and the class weights: the sums of the
      model's ``training_weights`` per class, over all events and for the training folds of each fold model.

    Events are weighted with the absolute value of the model's ``weight_column`` (1 where it is absent), as in
    ``cf.PlotMLResults``; the class weights start from the signed values, as the training does. The features of all
    training events are held in memory at once, as a training that reads them all does.
    """

    def requires(self) -> dict[str, Any]:
        return {"events": self.event_requirements()}

    def output(self) -> dict[str, Any]:
        def figure(name: str) -> dict[str, law.LocalFileTarget]:
            return {ext: self.target(f"plot__{name}.{ext}") for ext in ("png", "pdf")}

        names = self.ml_model_inst.class_names()
        return {
            "inputs": figure("inputs"),
            "folds": figure("inputs_folds"),
            "correlation": {name: figure(f"correlation__{name}") for name in names},
            "json": self.target("ml_inputs.json"),
        }

    def run(self) -> None:
        from cf.ml_diagnostics import FeatureSeries, feature_edges, plot_feature_distributions, plot_matrix
        from cf.plotting import save_figure

        model = self.ml_model_inst
        outputs = self.output()
        classes = self.classes()
        features = model.input_features()
        sample = self.load_inputs()
        plot_weights = np.abs(sample.weights)
        edges = [feature_edges(sample.x[:, index]) for index in range(len(features))]
        statistics = input_statistics(sample, features, classes, model.folds)

        series = [
            FeatureSeries(c.label, sample.x[sample.labels == i], plot_weights[sample.labels == i], c.color)
            for i, c in enumerate(classes)
        ]
        figure = plot_feature_distributions(
            features, edges, series, title="training events", model_label=model.cls_name
        )
        save_figure(figure, paths(outputs["inputs"]), dpi=80)

        pulls = np.array([statistics["fold_pulls"][c.name][name] for name in features for c in classes])
        pulls = pulls.reshape(len(features), len(classes) * model.folds)
        columns = [f"{c.name}, fold {fold}" for c in classes for fold in range(model.folds)]
        figure = plot_matrix(
            np.nan_to_num(pulls), columns, features, limit=3.0, colorbar_title="Fold mean vs. other folds (pull)",
            model_label=model.cls_name,
        )  # fmt: skip
        save_figure(figure, paths(outputs["folds"]), dpi=80)

        for ml_class in classes:
            matrix = np.array(statistics["correlation"][ml_class.name])
            title = f"Correlation, {ml_class.label}"
            figure = plot_matrix(
                matrix, features, features, limit=1.0, colorbar_title=title, model_label=model.cls_name
            )
            save_figure(figure, paths(outputs["correlation"][ml_class.name]), dpi=80)
            self.publish_message(f"plotted the correlations of class {ml_class.name}")

        results = {
            "model": model.cls_name,
            "config": self.config,
            "folds": model.folds,
            "weights": f"abs({model.weight_column})" if model.weight_column else "1",
            "features": features,
            "classes": [{"name": c.name, "label": c.label, "datasets": list(c.datasets)} for c in classes],
            **statistics,
            "edges": {name: [float(edge) for edge in edges[i]] for i, name in enumerate(features)},
            "class_weights": class_weight_table(model, sample, classes),
        }
        dump_json(outputs["json"].path, results)
        for name, entry in (results["class_weights"] or {}).get("per_class", {}).items():
            self.publish_message(
                f"class {name}: {entry['n_events']} events, sum of |weights| {entry['sum_abs_weights']:.4g}, "
                f"of training weights {entry['sum_training_weights']:.4g}"
            )


def paths(targets: dict[str, law.LocalFileTarget]) -> dict[str, str]:
    """``{format: path}`` of a figure's targets, as :func:`cf.plotting.save_figure` takes them."""
    return {ext: target.path for ext, target in targets.items()}


def input_statistics(sample: InputSample, features: list[str], classes: list[MLClass], folds: int) -> dict[str, Any]:
    """The event counts, the weighted mean and standard deviation per class and feature, and the correlations."""
    from cf.ml_diagnostics import fold_pulls, weighted_correlation, weighted_mean_std

    weights = np.abs(sample.weights)
    n_events: dict[str, Any] = {}
    moments: dict[str, Any] = {}
    correlation: dict[str, Any] = {}
    pulls: dict[str, Any] = {}
    for index, ml_class in enumerate(classes):
        in_class = sample.labels == index
        per_fold = [in_class & (sample.folds == fold) for fold in range(folds)]
        n_events[ml_class.name] = {"total": int(in_class.sum()), "per_fold": [int(mask.sum()) for mask in per_fold]}
        mean, std = weighted_mean_std(sample.x[in_class], weights[in_class])
        fold_moments = [
            weighted_mean_std(sample.x[mask], weights[mask]) if weights[mask].sum() > 0 else None for mask in per_fold
        ]
        moments[ml_class.name] = {
            name: {
                "mean": float(mean[i]),
                "std": float(std[i]),
                "per_fold": {
                    "mean": [None if m is None else float(m[0][i]) for m in fold_moments],
                    "std": [None if m is None else float(m[1][i]) for m in fold_moments],
                },
            }
            for i, name in enumerate(features)
        }
        class_pulls = fold_pulls(sample.x[in_class], weights[in_class], sample.folds[in_class], folds)
        pulls[ml_class.name] = {name: [_finite(value) for value in class_pulls[i]] for i, name in enumerate(features)}
        matrix = weighted_correlation(sample.x[in_class], weights[in_class])
        correlation[ml_class.name] = [[float(value) for value in row] for row in matrix]
    return {"n_events": n_events, "statistics": moments, "fold_pulls": pulls, "correlation": correlation}


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def class_weight_table(model: MLModel, sample: InputSample, classes: list[MLClass]) -> dict[str, Any] | None:
    """The sums of the model's training weights per class, over all events and per fold model; None if undeclared.

    Fold model ``k`` trains on the events of all other folds, so its sums are over those events.
    """
    training = model.training_weights(sample.weights, sample.labels)
    if training is None:
        return None

    def sums(weights: np.ndarray, labels: np.ndarray) -> list[float]:
        return [float(value) for value in np.bincount(labels, weights=weights, minlength=len(classes))]

    labels = sample.labels.astype(np.int64)
    absolute = sums(np.abs(sample.weights), labels)
    trained = sums(np.asarray(training, dtype=np.float64), labels)
    per_class = {
        ml_class.name: {
            "n_events": int(np.sum(labels == index)),
            "sum_weights": sums(sample.weights, labels)[index],
            "sum_abs_weights": absolute[index],
            "sum_training_weights": trained[index],
            "factor": trained[index] / absolute[index] if absolute[index] > 0 else None,
        }
        for index, ml_class in enumerate(classes)
    }
    per_fold_model = {}
    for fold in range(model.folds):
        used = sample.folds != fold
        fold_training = np.asarray(model.training_weights(sample.weights[used], sample.labels[used]), dtype=np.float64)
        fold_sums = sums(fold_training, labels[used])
        per_fold_model[str(fold)] = {ml_class.name: fold_sums[index] for index, ml_class in enumerate(classes)}
    return {
        "description": "sums of the model's training_weights per class; 'factor' is sum_training_weights over "
        "sum_abs_weights; per_fold_model: over the training folds of each fold model",
        "per_class": per_class,
        "per_fold_model": per_fold_model,
    }


class PlotMLImportance(MLInputsTask):
    """The permutation importance of each input feature on held-out events, per fold and over the folds.

    For each fold ``k``, fold model ``k`` (``open_model``, then ``predict_inputs``) scores the events of fold ``k``,
    which it did not train on, first as they are and then with one feature at a time shuffled among the events
    (the same permutations in every run: seeded by ``--permutation-seed``, the fold, the feature and the repeat).
    A feature's importance is how much the weighted AUC of the signal score (the model's first class) against all
    other classes drops, averaged over ``--repeats`` permutations; its mean over the folds is the bar, the standard
    deviation over the folds the error bar. The weighted cross-entropy (with the model's ``training_weights`` of the
    held-out events, else the absolute event weights) gives a second ranking.

    * ``plot__importance``: the AUC drop per feature, largest first.
    * ``plot__importance_loss``: the increase of the loss per feature, largest first.
    * ``ml_importance.json``: the unpermuted AUC and loss per fold and, per feature, the drops per fold with their
      mean and standard deviation; ``ranking`` lists the features by their mean AUC drop.

    Runs in the base environment: the model's ``sandbox(task)`` must return ``""`` for this task (it is called with
    the task class at parameter time) and its ``open_model`` must work there (for ``dnn``: the default ONNX backend).
    """

    permutation_seed = luigi.IntParameter(default=0, description="seed of the permutations; default: 0")
    repeats = luigi.IntParameter(default=3, description="permutations per feature and fold (their mean); default: 3")
    model_methods = ("input_features", "input_matrix", "predict_inputs")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("repeats", 1) < 1:
            raise UserError(f"--repeats must be at least 1, got {params['repeats']}")
        return super().modify_param_values(params)

    @classmethod
    def check_model(cls, model: MLModel) -> None:
        """Also refuse a model that asks for a sandbox for this task: it opens the fold models in the base one."""
        super().check_model(model)
        sandbox = model.sandbox(cls)
        if sandbox:
            raise UserError(
                f"{cls.get_task_family()} opens the fold models in the base environment, but ML model "
                f"'{model.cls_name}' asks for the sandbox '{sandbox}' for it (its sandbox(task) must return '' for "
                f"{cls.get_task_family()}; for dnn: the default evaluation_backend=onnx)",
            )

    def store_parts(self) -> list[str]:
        return [*super().store_parts(), f"perm__seed_{self.permutation_seed}__repeats_{self.repeats}"]

    def requires(self) -> dict[str, Any]:
        funcs = training_functions(self.ml_model_inst, self.config_inst, self.param_kwargs)
        return {
            "events": self.event_requirements(),
            "models": MLTraining.req(self, configs=(self.config,), dataset=(), branch=-1, **funcs),
        }

    def output(self) -> dict[str, Any]:
        return {
            **{
                name: {ext: self.target(f"plot__{name}.{ext}") for ext in ("png", "pdf")}
                for name in ("importance", "importance_loss")
            },
            "json": self.target("ml_importance.json"),
        }

    def run(self) -> None:
        from cf.ml_diagnostics import permutation_importance, plot_importance
        from cf.plotting import save_figure

        model = self.ml_model_inst
        outputs = self.output()
        features = model.input_features()
        signal = self.classes()[0]
        sample = self.load_inputs()
        targets = self.input()["models"]["collection"].targets
        results = []
        for fold in range(model.folds):
            held_out = sample.select(sample.folds == fold)
            fold_model = model.open_model(targets[fold])
            training = model.training_weights(held_out.weights, held_out.labels)
            loss_weights = np.abs(held_out.weights) if training is None else np.asarray(training)
            results.append(
                permutation_importance(
                    functools.partial(model.predict_inputs, fold_model),
                    held_out.x,
                    held_out.labels,
                    np.abs(held_out.weights),
                    loss_weights,
                    seed=(self.permutation_seed, fold),
                    repeats=self.repeats,
                )
            )
            self.publish_message(f"permuted the features on the held-out events of fold {fold}")
        auc_drop = np.stack([result.auc_drop for result in results])
        loss_increase = np.stack([result.loss_increase for result in results])
        title = f"{signal.label} vs. rest, held-out events\n{model.folds} folds, {self.repeats} permutation(s) each"
        for name, values, x_title in (
            ("importance", auc_drop, "AUC drop when permuted"),
            ("importance_loss", loss_increase, "Loss increase when permuted"),
        ):
            figure = plot_importance(
                features, values.mean(axis=0), values.std(axis=0), x_title=x_title, title=title,
                model_label=model.cls_name,
            )  # fmt: skip
            save_figure(figure, paths(outputs[name]))
        dump_json(outputs["json"].path, self.importance_numbers(features, signal, results, sample))

    def importance_numbers(
        self, features: list[str], signal: MLClass, results: list[Any], sample: InputSample
    ) -> dict[str, Any]:
        """The json of the importance: the unpermuted metrics, the drops per feature and the ranking."""
        model = self.ml_model_inst
        auc_drop = np.stack([result.auc_drop for result in results])
        loss_increase = np.stack([result.loss_increase for result in results])

        def summary(values: np.ndarray) -> dict[str, Any]:
            return {"per_fold": [float(v) for v in values], "mean": float(values.mean()), "std": float(values.std())}

        ranking = [features[index] for index in np.argsort(-auc_drop.mean(axis=0), kind="stable")]
        return {
            "model": model.cls_name,
            "config": self.config,
            "folds": model.folds,
            "signal_class": signal.name,
            "weights": f"abs({model.weight_column})" if model.weight_column else "1",
            "permutation_seed": self.permutation_seed,
            "repeats": self.repeats,
            "n_events": {"per_fold": [int(np.sum(sample.folds == fold)) for fold in range(model.folds)]},
            "baseline": {
                "auc": summary(np.array([result.auc for result in results])),
                "loss": summary(np.array([result.loss for result in results])),
            },
            "features": {
                name: {"auc_drop": summary(auc_drop[:, i]), "loss_increase": summary(loss_increase[:, i])}
                for i, name in enumerate(features)
            },
            "ranking": ranking,
        }
