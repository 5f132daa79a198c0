"""The k-fold ML tasks: prepare and merge training events, train one model per fold, evaluate.

    PrepareMLEvents (per file) -> MergeMLStats, MergeMLEvents (per fold) -> MLTraining (one branch per fold)
    ReduceEvents + ProduceColumns + MLTraining -> MLEvaluation (per file) -> MergeMLEvaluation

Fold ``i``'s model trains on the events of every fold but ``i`` and is the only one that scores fold-``i``
events of its training datasets (see :func:`cf.ml.combine_fold_outputs` for the documented choice on
other datasets). Training and evaluation run in the model's sandbox; outputs are written atomically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import awkward as ak
import law
import luigi
import numpy as np
from law.sandbox.base import SandboxProxy

from cf.analysis import get_config, load_analysis, load_modules
from cf.columnar_util import IDENTITY_COLUMNS, Route, filter_routes, get_ak_routes, take_ak_columns
from cf.contract import config_entry
from cf.folds import fold_indices
from cf.functions import ColumnFunction, apply_functions
from cf.io import EventSource, MemorySource, ParquetWriter, dump_json, load_json, open_source
from cf.ml import MLModel, model_instance
from cf.registry import split_settings
from cf.sandbox import QuietSandboxProxy, check_sandbox
from cf.tasks.base import (
    CalibratorsMixin,
    ConfigTask,
    DatasetTask,
    ProducersMixin,
    SelectorMixin,
    ShiftMixin,
    function_store_parts,
    producer_instances,
)
from cf.tasks.external import DatasetWorkflow
from cf.tasks.fusion import FusingWorkflow
from cf.tasks.production import ProduceColumns
from cf.tasks.reduction import ReduceEvents
from cf.tasks.remote import BatchWorkflow, WorkflowSandboxTask
from cf.util import UserError

__all__ = [
    "MLEvaluation",
    "MLTraining",
    "MergeMLEvaluation",
    "MergeMLEvents",
    "MergeMLStats",
    "PrepareMLEvents",
]

#: Event weight column written next to the features when the producers made it.


class MLModelMixin:
    """``--ml-model NAME`` (a model from the law.cfg ``ml_modules``) and ``--ml-model-settings k=v,...``."""

    ml_model = luigi.Parameter(
        default="",
        description="name of the ML model (see ml_modules in law.cfg); default: the config's default_ml_model",
    )
    ml_model_settings = law.CSVParameter(
        default=(),
        description="settings of the model as key=value pairs (int, float, true/false, a:b tuples or text)",
    )

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)  # type: ignore[misc]
        if "ml_model" in params:
            if not params["ml_model"] and "config" in params:
                params["ml_model"] = default_ml_model(params["config"])
            load_modules("ml_modules")
            model_cls = MLModel.get_cls(params["ml_model"])
            model_cls.checked_settings(split_settings(list(params.get("ml_model_settings", ()))))
        return params

    def model_configs(self) -> tuple[str, ...]:
        return (self.config,)  # type: ignore[attr-defined]

    @property
    def ml_model_inst(self) -> MLModel:
        cached = getattr(self, "_ml_model_inst", None)
        if cached is None:
            cached = model_instance(self.ml_model, tuple(self.ml_model_settings), self.model_configs())
            self._ml_model_inst = cached
        return cached

    def model_columns(self) -> dict[str, str]:
        """The columns the model reads in this task's config plus the fold columns, each with where it is declared."""
        model = self.ml_model_inst
        config_inst = self.config_inst  # type: ignore[attr-defined]
        origins = {Route(column).column: f"'uses' of ML model '{model.cls_name}'" for column in model.uses(config_inst)}
        return {**origins, **dict.fromkeys(IDENTITY_COLUMNS, "the fold assignment (cf.folds)")}

    def preparation_insts(self, in_evaluation: bool = False) -> list[ColumnFunction]:
        """The model's preparation producer (:meth:`MLModel.preparation_producer`) for this task, if any."""
        model = self.ml_model_inst
        if in_evaluation and not model.preparation_producer_in_ml_evaluation:
            return []
        name = model.resolved_preparation_producer(self.config_inst)  # type: ignore[attr-defined]
        return producer_instances(self, (name,)) if name else []

    def prepared_columns(self, insts: list[ColumnFunction]) -> dict[str, str]:
        """The columns to read: the model's (without what the preparation producer adds) and the producer's."""
        produced = {column for inst in insts for column in inst.produced_columns}
        origins = {column: origin for column, origin in self.model_columns().items() if column not in produced}
        for inst in insts:
            for column, origin in inst.column_origins().items():
                origins.setdefault(column, origin)
        return origins

    def training_datasets(self) -> list[str]:
        """The names of the datasets the model trains on in this task's config."""
        return sorted(dataset.name for dataset in self.ml_model_inst.datasets(self.config_inst))  # type: ignore[attr-defined]

    def ml_store_part(self) -> str:
        """The ML part of the output path: ``ml__<name>[__<settings hash>]``.

        A ``store_name`` keeps the class name next to it, so that models sharing one never overwrite each other's
        outputs (columnflow's would).
        """
        model = self.ml_model_inst
        name = model.cls_name if model.store_name in {None, model.cls_name} else f"{model.store_name}__{model.cls_name}"
        settings_repr = model.settings_repr if self.uses_evaluation_settings else model.training_settings_repr
        return function_store_parts(ml_models=[f"{name}__{settings_repr}" if settings_repr else name])[0]

    #: Whether the model's evaluation-only settings change this task's output.
    uses_evaluation_settings = True

    def training_settings(self) -> tuple[str, ...]:
        """The ``--ml-model-settings`` items that change the training (evaluation-only ones removed)."""
        return self.settings_except(self.ml_model_inst.evaluation_settings)

    def event_settings(self) -> tuple[str, ...]:
        """The ``--ml-model-settings`` items that change the prepared training events (training-only ones removed)."""
        model = self.ml_model_inst
        return self.settings_except(model.evaluation_settings | model.training_only_settings)

    def settings_except(self, names: frozenset[str]) -> tuple[str, ...]:
        """The ``--ml-model-settings`` items whose names are not in ``names``."""
        return tuple(item for item in self.ml_model_settings if item.partition("=")[0].strip() not in names)

    def function_store_parts(self) -> list[str]:
        return [*super().function_store_parts(), self.ml_store_part()]  # type: ignore[misc]


def default_ml_model(config: str) -> str:
    """The config's ``default_ml_model`` (as columnflow's), for a task run without ``--ml-model``.

    Raises:
        UserError: If the config has none (the message lists the models).
    """
    config_inst = get_config(load_analysis(), config)
    name = config_entry(config_inst, "default_ml_model")
    if not name:
        load_modules("ml_modules")
        raise UserError(
            f"no --ml-model given and config '{config}' has no default_ml_model; available: {', '.join(MLModel.names())}",
        )
    return str(name)


def training_functions(model: MLModel, config_inst: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The calibrators, selector and producers the training reads, from the model's ``training_*`` hooks.

    Each hook runs once per config and request (:meth:`MLModel.resolved_hook`).
    """
    return {
        "calibrators": model.resolved_hook("training_calibrators", config_inst, tuple(params["calibrators"])),
        "selector": model.resolved_hook("training_selector", config_inst, params["selector"]),
        "producers": model.resolved_hook("training_producers", config_inst, tuple(params["producers"])),
    }


def apply_training_functions(params: dict[str, Any]) -> MLModel | None:
    """Set the calibrators, selector and producers of a config task's ``params`` to those the training reads.

    Returns:
        The model, or None while the parameters are not complete yet (nothing changed then).
    """
    needed = ("ml_model", "ml_model_settings", "config", "calibrators", "selector", "producers")
    if not all(key in params for key in needed):
        return None
    model = model_instance(params["ml_model"], tuple(params["ml_model_settings"]), (params["config"],))
    params.update(training_functions(model, get_config(load_analysis(), params["config"]), params))
    return model


class MLModelSandboxMixin(MLModelMixin):
    """A task that runs in its model's sandbox (``MLModel.sandbox``); ``""`` means the base environment."""

    allow_empty_sandbox = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_sandboxed():  # type: ignore[attr-defined]
            check_sandbox(self.sandbox)  # a broken requirement file fails here, before any work starts

    def _initialize_sandbox(self, force: bool = False) -> None:
        super()._initialize_sandbox(force)  # type: ignore[misc]
        if type(self._sandbox_proxy) is SandboxProxy:  # type: ignore[has-type]
            self._sandbox_proxy = QuietSandboxProxy(task=self)

    @property
    def sandbox(self) -> str:
        return self.ml_model_inst.sandbox(self) or law.NO_STR


class MLTrainingEventsMixin(MLModelMixin, ProducersMixin, SelectorMixin, CalibratorsMixin):
    """Training-side tasks of one dataset.

    The calibrators, selector and producers follow the model's ``training_*`` hooks, and the dataset must be
    one the model trains on.
    """

    uses_evaluation_settings = False

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        if "ml_model" not in params or "dataset" not in params:
            return params
        model = model_instance(params["ml_model"], tuple(params["ml_model_settings"]), (params["config"],))
        config_inst = get_config(load_analysis(), params["config"])
        params.update(training_functions(model, config_inst, params))
        allowed = sorted(dataset.name for dataset in model.datasets(config_inst))
        if params["dataset"] not in allowed:
            raise UserError(
                f"ML model '{params['ml_model']}' does not train on dataset '{params['dataset']}' in config "
                f"'{params['config']}', its datasets: {', '.join(allowed)}",
            )
        return params


class PrepareMLEvents(FusingWorkflow, MLTrainingEventsMixin, DatasetWorkflow):
    """Per input file: the model's ``uses`` columns, the event weight and the fold index, one parquet per fold.

    Refuses NaN or infinite feature values, naming the column.

    Fused local execution: where the outputs of ``cf.ProduceColumns`` and this task are all missing for a file, and
    the workflow runs locally, this task also runs the production of its file (:meth:`run_fused`): the reduced
    events are read once and the produced columns go on to the preparation in memory, while ``cf.ProduceColumns``'
    output is written by its own code, before this task's (:mod:`cf.tasks.fusion`).
    """

    def fused_outputs(self) -> list[law.FileSystemTarget]:
        return [*law.util.flatten(self.output()), *ProduceColumns.req(self).output().values()]

    def fused_tasks(self) -> list[law.Task]:
        return [ProduceColumns.req(self)]

    def input_requirements(self) -> dict[str, Any]:
        functions = self.function_requirements(self.preparation_insts())
        if not self.fuses_upstream():
            return {"events": ReduceEvents.req(self), "columns": ProduceColumns.req(self), "functions": functions}
        production = ProduceColumns.req(self)
        return self.with_fused_tasks(
            {
                "events": ReduceEvents.req(self),
                "production_functions": production.function_requirements(production.producer_insts),
                "functions": functions,
            }
        )

    def output(self) -> dict[str, Any]:
        folds = self.ml_model_inst.folds
        return {
            "folds": [self.target(f"mlevents_f{fold}of{folds}_{self.branch}.parquet") for fold in range(folds)],
            "stats": self.target(f"stats_{self.branch}.json"),
        }

    def run(self) -> None:
        production = ProduceColumns.req(self)
        # a file whose production another task of this run has written meanwhile is read as in a run one by one
        if self.fuses_upstream() and not production.complete():
            self.run_fused(production)
            return
        inputs = self.input()
        uses, sources, prepare, totals = self.chunk_step(inputs["functions"])
        sources = [
            open_source(inputs["events"]["events"].path),
            open_source(production.output()["columns"].path),
            *sources,
        ]
        with self.fold_writers() as writers:
            for chunk, _, _ in self.iter_chunks(sources, uses, optional=weight_columns(self.ml_model_inst)):
                write_folds(writers, prepare(chunk))
        dump_json(self.output()["stats"].path, totals)

    def run_fused(self, production: ProduceColumns) -> None:
        """ProduceColumns and this task on this task's file, chunk by chunk in one pass.

        Each step reads its chunk as the separate task does, from the reduced events and, for the preparation, from
        the produced columns, held in memory instead of read back. The outputs are those of the separate tasks; the
        production's is stored first, so that a run killed on the way never leaves this task's outputs without it.
        """
        inputs = self.input()
        produce_uses, produce_sources, produce = production.chunk_step(inputs["production_functions"])
        uses, sources, prepare, totals = self.chunk_step(inputs["functions"])
        reduced = open_source(inputs["events"]["events"].path)
        produced_path = production.output()["columns"].path
        produced = MemorySource(produced_path, reduced.n_events)
        optional = weight_columns(self.ml_model_inst)
        starts = range(0, max(reduced.n_events, 1), self.chunk_size)
        # left in reverse order: the produced columns are stored first, then the folds, then the statistics
        with self.fold_writers() as writers, ParquetWriter(produced_path) as produced_out:
            for i, start in enumerate(starts):
                stop = min(start + self.chunk_size, reduced.n_events)
                chunk = production.read_chunk([reduced, *produce_sources], produce_uses, start, stop)
                produced.hold(produce(chunk), start, stop)
                produced_out.write(produced.chunk)
                chunk = self.read_chunk([reduced, produced, *sources], uses, start, stop, optional)
                write_folds(writers, prepare(chunk))
                self.publish_progress(100.0 * (i + 1) / len(starts))
        dump_json(self.output()["stats"].path, totals)

    @contextlib.contextmanager
    def fold_writers(self) -> Iterator[list[ParquetWriter]]:
        """One writer per fold output, each stored when the block is left without an error."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(ParquetWriter(target.path)) for target in self.output()["folds"]]

    def chunk_step(
        self, function_inputs: dict[str, Any]
    ) -> tuple[dict[str, str], list[EventSource], Callable[[ak.Array], list[ak.Array]], dict[str, list[Any]]]:
        """What the task does to each chunk (also run by :meth:`run_fused`).

        Returns:
            The columns to read, the further sources the preparation producer's setup hooks ask for, the function
            from a chunk to its events per fold, and the statistics (events and weight sums per fold), which that
            function adds each chunk to.
        """
        model = self.ml_model_inst
        preparation = self.preparation_insts()
        features = sorted(set(self.model_columns()) - set(IDENTITY_COLUMNS))
        totals: dict[str, list[Any]] = {"n_events": [0] * model.folds, "sum_weights": [0.0] * model.folds}

        def prepare(events_read: ak.Array) -> list[ak.Array]:
            chunk = apply_functions(preparation, events_read)
            check_finite(chunk, features, self.dataset)
            folds = fold_indices(chunk, model.folds)
            events = ak.with_field(chunk, folds, "fold")
            weights = event_weights(events, model.weight_column)
            per_fold = []
            for fold in range(model.folds):
                mask = folds == fold
                per_fold.append(events[mask])
                totals["n_events"][fold] += int(mask.sum())
                totals["sum_weights"][fold] += float(weights[mask].sum())
            return per_fold

        return self.prepared_columns(preparation), self.setup_functions(preparation, function_inputs), prepare, totals


def write_folds(writers: list[ParquetWriter], per_fold: list[ak.Array]) -> None:
    """Write each fold's events of a chunk to its writer."""
    for writer, events in zip(writers, per_fold, strict=True):
        writer.write(events)


def weight_columns(model: MLModel) -> set[str]:
    """The model's ``weight_column`` as a set (empty without one), for the optional columns of a read."""
    return {model.weight_column} if model.weight_column else set()


def event_weights(events: ak.Array, column: str | None) -> np.ndarray:
    """The values of the weight column as float64; 1 for every event without a column or where it is absent."""
    if column is None or column not in events.fields:
        return np.ones(len(events))
    return ak.to_numpy(events[column]).astype(np.float64)


def check_finite(events: ak.Array, patterns: list[str], dataset: str) -> None:
    """Raise a UserError naming the first feature column with NaN or infinite values (``*`` patterns allowed)."""
    for column in [route.column for route in filter_routes(get_ak_routes(events), patterns)]:
        values = ak.to_numpy(ak.flatten(events[Route(column).fields], axis=None))
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            n_bad = int((~np.isfinite(values)).sum())
            raise UserError(f"ML feature '{column}' of dataset '{dataset}' has {n_bad} NaN or infinite value(s)")


class MergeMLStats(MLTrainingEventsMixin, DatasetTask):
    """Sums the per-file statistics of PrepareMLEvents: events and weight sums per fold."""

    def requires(self) -> Any:
        return PrepareMLEvents.req(self)

    def output(self) -> law.LocalFileTarget:
        return self.target("stats.json")

    def run(self) -> None:
        folds = self.ml_model_inst.folds
        totals: dict[str, list[float]] = {"n_events": [0] * folds, "sum_weights": [0.0] * folds}
        for outputs in self.input()["collection"].targets.values():
            stats = load_json(outputs["stats"].path)
            for key, values in totals.items():
                totals[key] = [a + b for a, b in zip(values, stats[key], strict=True)]
        dump_json(self.output().path, totals)


class MergeMLEvents(MLTrainingEventsMixin, DatasetTask):
    """The events of one fold of a dataset, from all files, in one parquet file."""

    fold = luigi.IntParameter(description="the fold to merge (0 ... folds - 1)")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        if "fold" in params and "ml_model" in params:
            settings = tuple(params["ml_model_settings"])
            folds = model_instance(params["ml_model"], settings, (params["config"],)).folds
            if not 0 <= params["fold"] < folds:
                raise UserError(f"fold {params['fold']} does not exist, the model has folds 0 ... {folds - 1}")
        return params

    def requires(self) -> Any:
        return PrepareMLEvents.req(self)

    def output(self) -> law.LocalFileTarget:
        return self.target(f"mlevents_f{self.fold}of{self.ml_model_inst.folds}.parquet")

    def run(self) -> None:
        with ParquetWriter(self.output().path) as writer:
            for outputs in self.input()["collection"].targets.values():
                path = outputs["folds"][self.fold].path
                writer.write(ak.from_parquet(path))


class MLTraining(
    MLModelSandboxMixin,
    ProducersMixin,
    SelectorMixin,
    CalibratorsMixin,
    ConfigTask,
    BatchWorkflow,
    law.SandboxTask,
):
    """Trains the model of each fold (one branch per fold) inside the model's sandbox.

    Fold ``i`` requires the merged events of all other folds of every training dataset of every config.
    Its output is ``model.output(task)``; ``model.train(task, input, output)`` writes into a temporary
    sibling that is renamed into place only when training succeeded.
    """

    configs = law.CSVParameter(default=(), description="configs to train on (default: --config)")
    uses_evaluation_settings = False
    dataset = law.CSVParameter(
        default=(),
        description="restrict the training to these of the model's datasets (default: all of them)",
    )

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        if "configs" not in params or "ml_model" not in params:
            return params
        if not params["configs"]:
            params["configs"] = (params["config"],)
        for name in params["configs"]:
            get_config(load_analysis(), name)
        model = model_instance(params["ml_model"], tuple(params["ml_model_settings"]), tuple(params["configs"]))
        # the configs the model trains on (training_configs), so that a model that adds configs trains once
        params["configs"] = tuple(config_inst.name for config_inst in model.config_insts)
        params["config"] = params["configs"][0]
        all_datasets: set[str] = set()
        for config_inst in model.config_insts:
            allowed = {dataset.name for dataset in model.datasets(config_inst)}
            all_datasets |= allowed
            unknown = sorted(set(params["dataset"]) - allowed)
            if unknown:
                raise UserError(
                    f"ML model '{params['ml_model']}' does not train on dataset(s) {', '.join(unknown)} in config "
                    f"'{config_inst.name}', its datasets: {', '.join(sorted(allowed))}",
                )
        # naming all datasets is the same training as naming none (one output path for both)
        params["dataset"] = () if set(params["dataset"]) == all_datasets else tuple(sorted(params["dataset"]))
        return params

    def model_configs(self) -> tuple[str, ...]:
        return tuple(self.configs)

    @property
    def fold(self) -> int:
        """The fold this branch trains (columnflow's name for the branch)."""
        return int(self.branch)

    def store_parts(self) -> list[str]:
        parts = [self.analysis_inst.name, self.task_family, "__".join(self.configs)]
        if self.dataset:
            parts.append("datasets__" + "__".join(sorted(self.dataset)))
        config_inst = self.ml_model_inst.config_insts[0]
        funcs = training_functions(self.ml_model_inst, config_inst, self.param_kwargs)
        functions = function_store_parts(funcs["calibrators"], funcs["selector"], funcs["producers"])
        return [*parts, *functions, self.ml_store_part()]

    def create_branch_map(self) -> dict[int, int]:
        return {fold: fold for fold in range(self.ml_model_inst.folds)}

    def selected_datasets(self, config_inst: Any) -> list[str]:
        """The training datasets of the config, restricted to --dataset when given."""
        names = sorted(dataset.name for dataset in self.ml_model_inst.datasets(config_inst))
        return [name for name in names if not self.dataset or name in self.dataset]

    def event_requirements(self, folds: list[int]) -> dict[str, Any]:
        events: dict[str, Any] = {}
        stats: dict[str, Any] = {}
        for config_inst in self.ml_model_inst.config_insts:
            funcs = training_functions(self.ml_model_inst, config_inst, self.param_kwargs)
            common = {
                "config": config_inst.name,
                "ml_model": self.ml_model,
                "ml_model_settings": self.event_settings(),
                **funcs,
            }
            events[config_inst.name] = {}
            stats[config_inst.name] = {}
            for dataset in self.selected_datasets(config_inst):
                events[config_inst.name][dataset] = [
                    MergeMLEvents.req(self, dataset=dataset, fold=fold, **common) for fold in folds
                ]
                stats[config_inst.name][dataset] = MergeMLStats.req(self, dataset=dataset, **common)
        return {"events": events, "stats": stats}

    def workflow_requires(self) -> Any:
        reqs = super().workflow_requires()
        reqs.update(self.event_requirements(list(range(self.ml_model_inst.folds))))
        return reqs

    def requires(self) -> Any:
        folds = [fold for fold in range(self.ml_model_inst.folds) if fold != self.branch]
        reqs = self.event_requirements(folds)
        reqs["model"] = self.ml_model_inst.requires(self)
        return reqs

    def output(self) -> Any:
        return self.ml_model_inst.output(self)

    def default_job_gpus(self) -> int:
        return 1 if self.ml_model_inst.wants_gpu else 0

    def sandbox_pre_run(self) -> None:
        # law calls this in the outer process, before the sandbox is entered
        self.check_training_events()

    def check_training_events(self) -> None:
        """Refuse to train if any fold model would see no events of one of its datasets (all in that fold).

        Every branch checks every fold, so that no fold model is trained when one of them cannot be.

        Raises:
            UserError: Naming the fold, the dataset and its events per fold.
        """
        for config, per_dataset in self.input()["stats"].items():
            for dataset, target in per_dataset.items():
                counts = load_json(target.path)["n_events"]
                for fold in range(len(counts)):
                    if not sum(n for other, n in enumerate(counts) if other != fold):
                        raise UserError(
                            f"fold model {fold} of ML model '{self.ml_model}' would train on no events of dataset "
                            f"'{dataset}' ({config}): its events per fold are {counts}; use fewer folds or more events",
                        )

    def run(self) -> None:
        self.check_training_events()
        output = self.output()
        temporary = law.util.map_struct(temporary_twin, output)
        try:
            self.ml_model_inst.train(self, self.input(), temporary)
            for written, final in zip(law.util.flatten(temporary), law.util.flatten(output), strict=True):
                commit_twin(written, final)
        finally:
            for target in law.util.flatten(temporary):
                remove_path(target.path)


def temporary_twin(target: law.FileSystemTarget) -> law.FileSystemTarget:
    """A target of the same type next to ``target``, for writing before an atomic rename."""
    directory, name = os.path.split(target.path)
    return type(target)(os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:8]}"))


def commit_twin(temporary: law.FileSystemTarget, final: law.FileSystemTarget) -> None:
    """Rename a written temporary twin into place (replacing a stale leftover)."""
    if not os.path.exists(temporary.path):
        raise RuntimeError(f"the training did not write its output '{final.path}'")
    remove_path(final.path)
    os.makedirs(os.path.dirname(final.path), exist_ok=True)
    os.replace(temporary.path, final.path)


def remove_path(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


class MLEvaluation(
    MLModelSandboxMixin,
    ProducersMixin,
    SelectorMixin,
    CalibratorsMixin,
    ShiftMixin,
    DatasetWorkflow,
    WorkflowSandboxTask,
):
    """Evaluates the fold models on the events of one file; writes only the model's ``produces`` columns.

    Runs in the model's sandbox, entered once for all files of a local workflow and the other ready workflows of
    the ``law run`` in that sandbox (:class:`WorkflowSandboxTask`); the fold models are opened once per process.
    ``events_used_in_training`` is whether the dataset is one of the model's training datasets in this config.
    """

    def training_requirement(self) -> MLTraining:
        funcs = training_functions(self.ml_model_inst, self.config_inst, self.param_kwargs)
        settings = self.training_settings()
        return MLTraining.req(self, configs=(self.config,), dataset=(), branch=-1, ml_model_settings=settings, **funcs)

    def evaluation_producers(self) -> tuple[str, ...]:
        return self.ml_model_inst.resolved_hook("evaluation_producers", self.config_inst, tuple(self.producers))

    def input_requirements(self) -> dict[str, Any]:
        reqs = {"models": self.training_requirement(), "events": ReduceEvents.req(self)}
        if self.evaluation_producers():
            reqs["columns"] = ProduceColumns.req(self, producers=self.evaluation_producers())
        reqs["functions"] = self.function_requirements(self.preparation_insts(in_evaluation=True))
        return reqs

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"mlcolumns": self.target(f"mlcolumns_{self.branch}.parquet")}

    def run(self) -> None:
        model = self.ml_model_inst
        inputs = self.input()
        fold_outputs = [inputs["models"]["collection"].targets[fold] for fold in range(model.folds)]
        models = open_fold_models(model, fold_outputs)
        sources = [open_source(inputs["events"]["events"].path)]
        if "columns" in inputs:
            sources.append(open_source(inputs["columns"]["columns"].path))
        preparation = self.preparation_insts(in_evaluation=True)
        sources += self.setup_functions(preparation, inputs["functions"])
        uses = self.prepared_columns(preparation)
        produces = sorted(Route(column).column for column in model.produces(self.config_inst))
        used_in_training = self.dataset in {dataset.name for dataset in model.datasets(self.config_inst)}
        with ParquetWriter(self.output()["mlcolumns"].path) as writer:
            for events_read, _, _ in self.iter_chunks(sources, uses):
                events = apply_functions(preparation, events_read)
                folds = fold_indices(events, model.folds)
                scored = model.evaluate(self, events, models, folds, events_used_in_training=used_in_training)
                writer.write(take_ak_columns(scored, produces))


#: The fold models opened last in this process: the model instance, the outputs' paths and modification times,
#: and what ``open_model`` returned for them.
_OPEN_FOLD_MODELS: list[tuple[MLModel, tuple[Any, ...], list[Any]]] = []


def open_fold_models(model: MLModel, fold_outputs: list[Any]) -> list[Any]:
    """The opened models of all folds; opened once per process, so the branches of a workflow share them.

    They are reused only for the same model instance (its evaluation settings, e.g. the backend, may differ
    for the same training outputs) and unchanged outputs.
    """
    paths = [target.path for target in law.util.flatten(fold_outputs)]
    key = tuple((path, os.stat(path).st_mtime_ns) for path in paths)
    if not _OPEN_FOLD_MODELS or _OPEN_FOLD_MODELS[0][0] is not model or _OPEN_FOLD_MODELS[0][1] != key:
        _OPEN_FOLD_MODELS[:] = [(model, key, [model.open_model(target) for target in fold_outputs])]
    return _OPEN_FOLD_MODELS[0][2]


class MergeMLEvaluation(MLModelMixin, ProducersMixin, SelectorMixin, CalibratorsMixin, ShiftMixin, DatasetTask):
    """The evaluation columns of all files of a dataset in one parquet file."""

    def requires(self) -> Any:
        return MLEvaluation.req(self)

    def output(self) -> law.LocalFileTarget:
        return self.target("mlcolumns.parquet")

    def run(self) -> None:
        with ParquetWriter(self.output().path) as writer:
            for outputs in self.input()["collection"].targets.values():
                writer.write(ak.from_parquet(outputs["mlcolumns"].path))


class MLTrainingScores(
    MLModelSandboxMixin,
    ProducersMixin,
    SelectorMixin,
    CalibratorsMixin,
    ConfigTask,
    law.SandboxTask,
):
    """The scores of every fold model on its own training events and on its held-out fold, in one parquet file.

    For each training dataset and fold ``k``, fold model ``k`` (``open_model``) scores the merged events of
    the other folds (``is_training`` True: the events it was trained on) and those of fold ``k`` (False:
    held out, as in MLEvaluation). Each event is scored by one model at a time through the model's own
    ``evaluate``. Runs in the model's sandbox (for ``dnn`` the TF one); the calibrators, selector and
    producers follow the model's ``training_*`` hooks, like the training.

    Columns: ``fold`` (the model), ``event_fold`` (the event's fold), ``run``, ``luminosityBlock``, ``event``,
    ``dataset``, ``weight`` (the model's ``weight_column``, 1 where absent), ``is_training`` and the model's
    ``produces`` columns (nested as in the MLEvaluation output).
    """

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        apply_training_functions(params)
        return params

    def store_parts(self) -> list[str]:
        return [*super().store_parts(), *self.function_store_parts()]

    def requires(self) -> Any:
        folds = range(self.ml_model_inst.folds)
        settings = self.event_settings()
        return {
            "models": MLTraining.req(self, configs=(self.config,), dataset=(), branch=-1),
            "events": {
                dataset: [
                    MergeMLEvents.req(self, dataset=dataset, fold=fold, ml_model_settings=settings) for fold in folds
                ]
                for dataset in self.training_datasets()
            },
        }

    def output(self) -> law.LocalFileTarget:
        return self.target("training_scores.parquet")

    def run(self) -> None:
        model = self.ml_model_inst
        inputs = self.input()
        uses = self.model_columns()
        produces = sorted(Route(column).column for column in model.produces(self.config_inst))
        with ParquetWriter(self.output().path) as writer:
            for fold in range(model.folds):
                fold_model = model.open_model(inputs["models"]["collection"].targets[fold])
                for dataset in self.training_datasets():
                    for event_fold, target in enumerate(inputs["events"][dataset]):
                        sources = [open_source(target.path)]
                        for events, _, _ in self.iter_chunks(sources, uses, optional=weight_columns(model)):
                            if len(events) == 0:
                                continue
                            own = np.zeros(len(events), dtype=np.int64)
                            scored = model.evaluate(self, events, [fold_model], own, events_used_in_training=True)
                            weights = event_weights(events, model.weight_column)
                            writer.write(
                                training_score_rows(events, scored, produces, weights, dataset, fold, event_fold)
                            )
                self.publish_message(f"scored the training and held-out events of fold model {fold}")


def training_score_rows(
    events: ak.Array,
    scored: ak.Array,
    produces: list[str],
    weights: np.ndarray,
    dataset: str,
    fold: int,
    event_fold: int,
) -> ak.Array:
    """The output rows of :class:`MLTrainingScores` for one chunk scored by fold model ``fold``."""
    n = len(events)
    columns: dict[str, Any] = {
        "fold": np.full(n, fold, dtype=np.int32),
        "event_fold": np.full(n, event_fold, dtype=np.int32),
        **{column: ak.to_numpy(events[column]) for column in IDENTITY_COLUMNS},
        "dataset": ak.Array(np.full(n, dataset)),
        "weight": weights,
        "is_training": np.full(n, event_fold != fold),
    }
    rows = ak.zip(columns, depth_limit=1)
    scores = take_ak_columns(scored, produces)
    for field in ak.fields(scores):
        rows = ak.with_field(rows, scores[field], field)
    return rows


__all__ += ["MLTrainingScores"]
