"""Hyperparameter scans: one ``cf.MLTraining`` per point of a grid of model settings, and their metrics in a table.

    law run cf.MLTrainingScan --ml-model dnn --scan "layers=64:64,128:128;learning_rate=0.001,0.003"

The grid is the cartesian product of the ``;``-separated axes, each ``name=value1,value2,...`` with values in
the syntax of ``--ml-model-settings`` (``64:64`` for a list). Each point trains with its settings merged over
``--ml-model-settings``; the trainings are ordinary ``cf.MLTraining`` workflows (run in parallel with
``--workers N``, or as batch jobs with ``--workflow slurm|htcondor`` and the job resource parameters), and
trainings that differ only in the model's ``training_only_settings`` share the prepared events.

The best point has the best mean over the folds of the model's ``scan_metric`` (:attr:`cf.ml.MLModel.scan_metric`,
by default ``val_loss``, lower is better) from :meth:`cf.ml.MLModel.training_metrics` of each fold.
"""

from __future__ import annotations

import csv
import itertools
import math
from typing import Any

import law
import luigi
import numpy as np

from cf.io import dump_json
from cf.ml import MLModel, model_instance
from cf.plotting import plot_scan, save_figure
from cf.registry import split_settings
from cf.tasks.base import CalibratorsMixin, ConfigTask, ProducersMixin, SelectorMixin
from cf.tasks.ml import MLModelMixin, MLTraining, apply_training_functions, commit_twin, remove_path, temporary_twin
from cf.tasks.remote import BatchJobMixin, check_workflow_and_resources
from cf.util import UserError, short_hash

__all__ = ["MLTrainingScan", "ScanPoint", "scan_points"]

#: One point of a scan: the scanned settings (name -> text) and all ``--ml-model-settings`` items of its training.
ScanPoint = tuple[dict[str, str], tuple[str, ...]]


def scan_axes(text: str) -> dict[str, list[str]]:
    """The axes of ``--scan``: ``"a=1,2;b=x,y"`` -> ``{"a": ["1", "2"], "b": ["x", "y"]}``.

    Raises:
        UserError: For an empty scan, an axis without ``=`` or values, an empty value or an axis given twice.
    """
    axes: dict[str, list[str]] = {}
    for part in (part.strip() for part in text.split(";")):
        if not part:
            continue
        name, sep, values = (item.strip() for item in part.partition("="))
        items = [value.strip() for value in values.split(",")]
        if not sep or not name or not all(items):
            raise UserError(f"--scan axis '{part}' is not of the form name=value1,value2,... (no empty values)")
        if name in axes:
            raise UserError(f"--scan gives the axis '{name}' twice")
        axes[name] = items
    if not axes:
        raise UserError("--scan is empty: give axes name=value1,value2,... separated by ';'")
    return axes


def scan_points(model_cls: type[MLModel], base_settings: tuple[str, ...], text: str) -> list[ScanPoint]:
    """The points of the grid, each value checked against the model's declared settings.

    Args:
        model_cls: The model class.
        base_settings: The ``--ml-model-settings`` items the points are merged over.
        text: The ``--scan`` text.

    Raises:
        UserError: For a malformed scan (:func:`scan_axes`), an undeclared setting, a value the declaration refuses,
            an evaluation-only setting or two points that train the same model.
    """
    axes = scan_axes(text)
    for name, values in axes.items():
        if name in model_cls.evaluation_settings:
            raise UserError(f"--scan: setting '{name}' of ML model '{model_cls.cls_name}' only changes the evaluation")
        for value in values:
            try:
                model_cls.checked_settings({name: value})
            except UserError as error:
                raise UserError(f"--scan: {error}") from None
    points: list[ScanPoint] = []
    trained: dict[str, int] = {}
    for combination in itertools.product(*axes.values()):
        scanned = dict(zip(axes, combination, strict=True))
        merged = {**split_settings(list(base_settings)), **scanned}
        checked = model_cls.checked_settings(merged)
        key = model_cls.settings_hash(checked, leave_out=model_cls.evaluation_settings)
        if key in trained:
            raise UserError(f"--scan points {trained[key]} and {len(points)} train the same model ({scanned})")
        trained[key] = len(points)
        points.append((scanned, tuple(f"{name}={value}" for name, value in merged.items())))
    return points


class MLTrainingScan(BatchJobMixin, MLModelMixin, ProducersMixin, SelectorMixin, CalibratorsMixin, ConfigTask):
    """Trains the model at every point of ``--scan`` and tabulates each fold's held-out metrics.

    Outputs (written atomically, all together):

    * ``scan.json``: the model, the axes, the metric that ranks the points and its direction, per point its
      settings, the ``--ml-model-settings`` of its training, the metrics per fold and their mean and standard
      deviation over the folds, and ``best``: the best point with the settings that reproduce it.
    * ``scan.csv``: one row per point: the point, each axis, the settings, then per metric its mean, standard
      deviation and the value of each fold (``<metric>_f<fold>``).
    * ``plot__scan.png`` / ``.pdf``: the ranking metric per point, each fold and the mean ± std, the best point
      highlighted.
    """

    scan = luigi.Parameter(
        description="the grid: ';'-separated axes 'name=value1,value2,...' of model settings (values as in "
        "--ml-model-settings, ':' between list items)",
    )
    workflow = luigi.Parameter(
        default=law.NO_STR,
        significant=False,
        description="the workflow of the trainings: local (default), slurm or htcondor",
    )

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        apply_training_functions(params)
        check_workflow_and_resources(params)
        if "scan" in params and "ml_model" in params:
            scan_points(MLModel.get_cls(params["ml_model"]), tuple(params["ml_model_settings"]), params["scan"])
        return params

    def points(self) -> list[ScanPoint]:
        return scan_points(type(self.ml_model_inst), tuple(self.ml_model_settings), self.scan)

    def store_parts(self) -> list[str]:
        axes = sorted(scan_axes(self.scan).items())
        return [*super().store_parts(), *self.function_store_parts(), f"scan__{short_hash(axes)}"]

    def requires(self) -> dict[int, MLTraining]:
        points = self.points()
        trainings = {}
        for index, (_, settings) in enumerate(points):
            training = MLTraining.req(self, ml_model_settings=settings, configs=(self.config,), dataset=(), branch=-1)
            # the points train in the order of the grid: luigi passes a priority on to the requirements
            training.priority = len(points) - index
            trainings[index] = training
        return trainings

    def output(self) -> dict[str, Any]:
        return {
            "json": self.target("scan.json"),
            "csv": self.target("scan.csv"),
            "plot": {ext: self.target(f"plot__scan.{ext}") for ext in ("png", "pdf")},
        }

    def fold_metrics(self, index: int, settings: tuple[str, ...]) -> dict[str, list[float]]:
        """Per metric, its value in each fold of point ``index`` (:meth:`MLModel.training_metrics`)."""
        model = model_instance(self.ml_model, settings, (self.config,))
        targets = self.input()[index]["collection"].targets
        folds = [model.training_metrics(targets[fold]) or {} for fold in range(model.folds)]
        if not all(folds):
            raise UserError(
                f"ML model '{self.ml_model}' reports no metrics of its trainings (training_metrics is None or "
                "empty): write metrics.json or history.json with val_loss into each fold's output, or override it",
            )
        names = sorted(set.intersection(*(set(metrics) for metrics in folds)))
        return {name: [metrics[name] for metrics in folds] for name in names}

    def run(self) -> None:
        model = self.ml_model_inst
        rows = [self.point_row(index, point) for index, point in enumerate(self.points())]
        metric = model.scan_metric
        missing = [row["point"] for row in rows if metric not in row["folds"]]
        if missing:
            available = sorted(rows[missing[0]]["folds"])
            raise UserError(
                f"ML model '{self.ml_model}' reports no '{metric}' (its scan_metric) for point(s) {missing}, "
                f"only: {', '.join(available)}",
            )
        best = best_point(rows, metric, model.scan_metric_higher_is_better)
        summary = {
            "ml_model": self.ml_model,
            "axes": scan_axes(self.scan),
            "metric": metric,
            "higher_is_better": model.scan_metric_higher_is_better,
            "points": rows,
            "best": {
                "point": best,
                "ml_model_settings": rows[best]["ml_model_settings"],
                "settings": rows[best]["settings"],
                "mean": rows[best]["mean"][metric],
            },
        }
        figure = plot_scan(
            [", ".join(f"{name}={value}" for name, value in row["settings"].items()) for row in rows],
            [row["folds"][metric] for row in rows],
            metric=metric,
            best=best,
            model_label=self.ml_model,
        )
        self.write_outputs(summary, figure)
        direction = "highest" if model.scan_metric_higher_is_better else "lowest"
        self.publish_message(
            f"best point {best} ({direction} mean {metric} over the folds: {rows[best]['mean'][metric]:.6g}): "
            f"--ml-model-settings {rows[best]['ml_model_settings']}",
        )

    def point_row(self, index: int, point: ScanPoint) -> dict[str, Any]:
        """One point's entry of ``scan.json``: its settings and each metric per fold, with mean and std."""
        scanned, settings = point
        folds = self.fold_metrics(index, settings)
        return {
            "point": index,
            "settings": scanned,
            "ml_model_settings": ",".join(settings),
            "folds": folds,
            "mean": {name: float(np.mean(values)) for name, values in folds.items()},
            "std": {name: float(np.std(values)) for name, values in folds.items()},
        }

    def write_outputs(self, summary: dict[str, Any], figure: Any) -> None:
        """Write all outputs into temporary siblings, then rename them into place (none without the others)."""
        output = self.output()
        temporary = law.util.map_struct(temporary_twin, output)
        try:
            dump_json(temporary["json"].path, summary)
            write_table(temporary["csv"].path, summary)
            save_figure(figure, {ext: target.path for ext, target in temporary["plot"].items()})
            for written, final in zip(law.util.flatten(temporary), law.util.flatten(output), strict=True):
                commit_twin(written, final)
        finally:
            for target in law.util.flatten(temporary):
                remove_path(target.path)


def best_point(rows: list[dict[str, Any]], metric: str, higher_is_better: bool) -> int:
    """The index of the row with the best finite mean of ``metric`` (the first of equal ones).

    Raises:
        UserError: If no point has a finite mean.
    """
    means = [(row["mean"][metric], row["point"]) for row in rows if math.isfinite(row["mean"][metric])]
    if not means:
        raise UserError(f"no point of the scan has a finite mean {metric}")
    sign = -1.0 if higher_is_better else 1.0
    return min(means, key=lambda pair: (sign * pair[0], pair[1]))[1]


def write_table(path: str, summary: dict[str, Any]) -> None:
    """``scan.csv``: per point the axes, the settings and, per metric, mean, std and each fold's value."""
    rows = summary["points"]
    metrics = sorted(set.intersection(*(set(row["folds"]) for row in rows)))
    folds = range(len(rows[0]["folds"][metrics[0]]))
    header = ["point", *summary["axes"], "ml_model_settings"]
    for metric in metrics:
        header += [f"{metric}_mean", f"{metric}_std", *(f"{metric}_f{fold}" for fold in folds)]
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for row in rows:
            values = [row["point"], *row["settings"].values(), row["ml_model_settings"]]
            for metric in metrics:
                values += [row["mean"][metric], row["std"][metric], *row["folds"][metric]]
            writer.writerow(values)
