"""The hand-written baseline: calibrate, select, reduce, produce and prepare the ML inputs in one process.

Plain uproot + awkward + numpy, one pass over each file in chunks, no framework machinery but the parquet writer
(``cf.io.ParquetWriter``, so that all sides write with the same settings, see bench/output.py). The
physics is the analysis' own (the same calibrator, selector, producers, fold assignment and ML feature
columns as the chain), so that the difference to the chain is the framework's overhead and not
different physics. It writes what a hand-written analysis keeps: per input file the reduced events with
the produced columns, and per file and fold the ML inputs (the PrepareMLEvents content). The sum of the
generator weights (for the normalization weight) comes from a first, cheap pass over ``genWeight``.

``python -m bench.baseline SAMPLE_JSON OUT_DIR --chunk-size N`` prints one json line with the seconds and,
per dataset, the events and weight sums per fold (the harness checks them against the chain's).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import awkward as ak
import law
import numpy as np
import uproot

from analysis_template.calibration.default import skip_jecunc
from analysis_template.config.analysis import analysis_template
from analysis_template.production.default import default as produce
from analysis_template.selection.default import default as select
from bench.common import CONFIG, DATASETS, SampleInfo
from bench.output import FoldWriters, fold_writers, keep, script_arguments, sum_generator_weights
from cf.columnar_util import IDENTITY_COLUMNS
from cf.external import external_files
from cf.folds import fold_indices
from cf.io import ParquetWriter, dump_json
from cf.util import expand_path

__all__ = ["main", "ml_columns", "nanoaod_events", "process_dataset"]

#: Folds of the ``dnn`` model (ml/dnn.py).
FOLDS = 3
#: Columns the calibrator and the selector add, kept by the reduction like the configured keep_columns.
CALIBRATED_COLUMNS = sorted(skip_jecunc.produces)


def nanoaod_events(arrays: dict[str, ak.Array]) -> ak.Array:
    """Group NanoAOD branches into event records: ``Jet_pt`` becomes ``events.Jet.pt``."""
    flat: dict[str, Any] = {}
    groups: dict[str, dict[str, ak.Array]] = {}
    for name, array in arrays.items():
        head, sep, tail = name.partition("_")
        if sep:
            groups.setdefault(head, {})[tail] = array
        else:
            flat[name] = array
    for head, columns in groups.items():
        flat[head] = ak.zip(columns)
    return ak.zip(flat, depth_limit=1)


def process_dataset(
    config_inst: Any,
    dataset: str,
    files: list[str],
    branches: list[str],
    ml_columns: list[str],
    out_dir: str,
    chunk_size: int,
) -> dict[str, list[float]]:
    """Run the whole chain on one dataset's files; return the events and weight sums per fold."""
    dataset_inst = config_inst.get_dataset(dataset)
    # the normalization needs the sum of generator weights before any selection: a first, cheap pass
    sum_weights = sum_generator_weights(files)
    calibrate_inst = skip_jecunc(config_inst=config_inst, dataset_inst=dataset_inst)
    select_inst = select(config_inst=config_inst, dataset_inst=dataset_inst)
    produce_inst = produce(config_inst=config_inst, dataset_inst=dataset_inst)
    # the correction files, read where the config declares them (the chain reads its bundled copies)
    corrections = {"external_files": local_manifest(config_inst, out_dir)}
    for inst in (calibrate_inst, produce_inst):
        inst.run_setup(None, {}, corrections, {})
    # what the normalization weight's setup hook loads from the merged selection statistics in the chain
    for function in produce_inst.walk():
        function.selection_stats = {"sum_mc_weight": sum_weights}
    keep_columns = [*config_inst.x.keep_columns["cf.ReduceEvents"], *CALIBRATED_COLUMNS]
    os.makedirs(os.path.join(out_dir, dataset), exist_ok=True)
    fold_files = []
    for file_index, path in enumerate(files):
        reduced_path = os.path.join(out_dir, dataset, f"reduced_{file_index}.parquet")
        with (
            uproot.open(path) as file,
            ParquetWriter(reduced_path) as reduced_out,
            fold_writers(os.path.join(out_dir, dataset), file_index, FOLDS) as fold_outs,
        ):
            for arrays in file["Events"].iterate(branches, step_size=chunk_size, library="ak", how=dict):
                events = nanoaod_events(arrays)
                events = calibrate_inst(events)
                events, selection = select_inst(events)
                # reduce: selected events, selected objects, kept columns
                events = events[selection.event]
                for collection, mask in selection.objects.items():
                    events[collection] = events[collection][mask[selection.event]]
                events = keep(events, keep_columns)
                events = produce_inst(events)
                reduced_out.write(events)
                # ML inputs: the model's columns, the weight and the fold, one file per fold
                ml_events = keep(events, ml_columns)
                for column in ml_columns:
                    values = ak.to_numpy(ak.flatten(ml_events[tuple(column.split("."))], axis=None))
                    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
                        raise ValueError(f"ML feature '{column}' of dataset '{dataset}' is not finite")
                folds = fold_indices(ml_events, FOLDS)
                ml_events = ak.with_field(ml_events, folds, "fold")
                fold_outs.write(ml_events, folds, ak.to_numpy(ml_events.normalization_weight))
        fold_files.append(fold_outs)
    return FoldWriters.total(fold_files)


def local_manifest(config_inst: Any, out_dir: str) -> law.LocalFileTarget:
    """A manifest of the config's external files at their declared local paths, as the setup hooks read it."""
    files = {
        external.name: {"file": expand_path(external.source), "source": external.source, "sha256": ""}
        for external in external_files(config_inst)
    }
    target = law.LocalFileTarget(os.path.join(out_dir, "external_files.json"))
    dump_json(target.path, {"config": config_inst.name, "files": files})
    return target


def ml_columns(config_inst: Any) -> list[str]:
    """The columns of the ML inputs: the dnn model's (ml/dnn.py: DNNClassifier.uses), the fold columns, the weight."""
    from ml.dnn import dnn

    model_columns = dnn(analysis_template, requested_configs=[CONFIG]).uses(config_inst)
    return sorted({*model_columns, *IDENTITY_COLUMNS, "normalization_weight"})


def main(argv: list[str] | None = None) -> None:
    args = script_arguments(__doc__, "sample_json", argv)
    start = time.perf_counter()
    sample = SampleInfo.load(args.sample_json)
    config_inst = analysis_template.get_config(CONFIG)
    columns = ml_columns(config_inst)
    stats = {
        dataset: process_dataset(
            config_inst, dataset, sample.files[dataset], sample.branches, columns, args.out_dir, args.chunk_size
        )
        for dataset in DATASETS
    }
    print(json.dumps({"events": sample.total_events, "seconds": time.perf_counter() - start, "stats": stats}))


if __name__ == "__main__":
    main()
