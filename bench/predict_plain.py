"""Plain Keras ``model.predict`` of the three ``dnn`` fold models on the events that ``cf.MLEvaluation`` scores.

Runs in the TF sandbox: ``cf_sandbox venv_ml_tf python -m bench.predict_plain STORE OUT_DIR``. Per bench
dataset and file it reads the reduced events and produced columns (only the model's columns), builds the
features with the model's helpers, predicts with each fold's Keras model (``model.predict``, batch size
8192 as ml/dnn.py uses for its own checks), keeps each event's held-out fold score and writes the scores
to parquet, as MLEvaluation does. Prints one json line (events scored, seconds).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

__all__ = ["main"]

#: Events per ``model.predict`` batch.
BATCH_SIZE = 8192


def _one(pattern: str) -> list[str]:
    paths = sorted(glob.glob(pattern, recursive=True))
    if not paths:
        raise RuntimeError(f"no file matches {pattern}")
    return paths


def main(argv: list[str] | None = None) -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", help="CF_STORE_LOCAL with the ReduceEvents, ProduceColumns and MLTraining outputs")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)

    import awkward as ak
    import keras
    import numpy as np
    import pyarrow.parquet as pq

    from analysis_template.config.analysis import analysis_template
    from bench.common import CONFIG, DATASETS
    from cf.columnar_util import IDENTITY_COLUMNS
    from cf.folds import fold_indices
    from cf.ml import combine_fold_outputs
    from ml.dnn import apply_standardization, dnn

    model = dnn(analysis_template, requested_configs=[CONFIG])
    config_inst = analysis_template.get_config(CONFIG)
    columns = sorted({*model.uses(config_inst), *IDENTITY_COLUMNS})
    networks, standardizations = [], []
    for fold in range(model.folds):
        (fold_dir,) = _one(os.path.join(args.store, "**", "cf.MLTraining", "**", f"mlmodel_f{fold}of{model.folds}"))
        networks.append(keras.models.load_model(os.path.join(fold_dir, "model.keras")))
        with open(os.path.join(fold_dir, "standardization.json")) as f:
            standardizations.append(json.load(f))
    n_events = 0
    os.makedirs(args.out_dir, exist_ok=True)
    for dataset in DATASETS:
        reduced = _one(os.path.join(args.store, "**", "cf.ReduceEvents", "**", dataset, "**", "events_*.parquet"))
        produced = _one(os.path.join(args.store, "**", "cf.ProduceColumns", "**", dataset, "**", "prod_*.parquet"))
        for index, (events_path, columns_path) in enumerate(zip(reduced, produced, strict=True)):
            parts = []
            for path in (events_path, columns_path):
                available = set(ak.metadata_from_parquet(path)["form"].columns())
                parts.append(ak.from_parquet(path, columns=[column for column in columns if column in available]))
            events = ak.zip({field: part[field] for part in parts for field in part.fields}, depth_limit=1)
            x = model.feature_matrix(events)
            folds = fold_indices(events, model.folds)
            predictions = [
                network.predict(apply_standardization(x, standardization), batch_size=BATCH_SIZE, verbose=0)
                for network, standardization in zip(networks, standardizations, strict=True)
            ]
            scores = combine_fold_outputs(predictions, folds, events_used_in_training=True).astype(np.float32)
            table = ak.to_arrow_table(
                ak.zip({name: np.ascontiguousarray(scores[:, node]) for node, name in enumerate(model.class_names())}),
                extensionarray=False,
            )
            pq.write_table(table, os.path.join(args.out_dir, f"scores_{dataset}_{index}.parquet"), compression="zstd")
            n_events += len(events)
    print(json.dumps({"events": n_events, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
