"""Wrapper tasks that run the framework's own tasks on all bench datasets in one ``law run``.

``law run bench.tasks.BenchChain --version v1`` is CalibrateEvents -> SelectEvents -> ReduceEvents ->
ProduceColumns -> PrepareMLEvents of every bench dataset, the chain the hand-written baseline replaces;
the wrappers add nothing but the requirements.
"""

from __future__ import annotations

from typing import Any

import law
import luigi

from bench.common import CONFIG, DATASETS, ML_MODEL
from cf.tasks.ml import MLEvaluation, MLTraining, PrepareMLEvents

__all__ = ["BenchChain", "BenchEvaluation", "BenchTrainingInputs"]


class BenchTask(law.WrapperTask):
    """Common parameters of the bench wrappers."""

    task_namespace = "bench"

    version = luigi.Parameter(description="version of the outputs")
    ml_model_settings = law.CSVParameter(default=(), description="settings of the dnn model (key=value,...)")
    chunk_size = luigi.IntParameter(default=0, significant=False, description="events per chunk (0: law.cfg)")

    def common(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "config": CONFIG,
            "ml_model": ML_MODEL,
            "ml_model_settings": tuple(self.ml_model_settings),
            "chunk_size": self.chunk_size,
        }


class BenchChain(BenchTask):
    """PrepareMLEvents (and so the whole chain before it) of every bench dataset."""

    def requires(self) -> dict[str, Any]:
        return {dataset: PrepareMLEvents(dataset=dataset, **self.common()) for dataset in DATASETS}


class BenchTrainingInputs(BenchTask):
    """The merged fold files and statistics that MLTraining reads (everything the training needs but itself)."""

    def requires(self) -> Any:
        training = MLTraining(configs=(CONFIG,), branch=-1, **self.common())
        return training.event_requirements(list(range(training.ml_model_inst.folds)))


class BenchEvaluation(BenchTask):
    """MLEvaluation of every bench dataset (the backend is a setting: ``evaluation_backend=onnx|keras``)."""

    def requires(self) -> dict[str, Any]:
        return {dataset: MLEvaluation(dataset=dataset, **self.common()) for dataset in DATASETS}
