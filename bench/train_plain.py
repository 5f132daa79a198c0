"""Plain ``keras.fit`` on the arrays that ``cf.MLTraining`` fold 0 of the ``dnn`` model trains on.

Runs in the TF sandbox: ``cf_sandbox venv_ml_tf python -m bench.train_plain STORE --epochs N``. The arrays
are built with the model's own helpers (features, standardization, class weights, validation split) from
the merged fold files in STORE, so that both sides fit identical data; the network is written out in plain
Keras with the model's architecture and optimizer. No early stopping, op determinism, model export or
ONNX check: this is the fit alone. Prints one json line (seconds of the stages, events fitted).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", help="CF_STORE_LOCAL that holds the cf.MergeMLEvents outputs")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--fold", type=int, default=0, help="the fold whose model is trained")
    args = parser.parse_args(argv)

    import awkward as ak
    import keras
    import numpy as np

    from analysis_template.config.analysis import analysis_template
    from bench.common import CONFIG, DATASETS
    from ml.dnn import apply_standardization, balanced_class_weights, dnn, fit_standardization, validation_mask

    imported = time.perf_counter()
    model = dnn(analysis_template, requested_configs=[CONFIG])
    xs, labels, weights, ids = [], [], [], []
    for dataset in DATASETS:
        label = model.class_index(dataset)
        pattern = os.path.join(args.store, "**", "cf.MergeMLEvents", "**", dataset, "**", "mlevents_f*of*.parquet")
        paths = sorted(glob.glob(pattern, recursive=True))
        paths = [path for path in paths if not os.path.basename(path).startswith(f"mlevents_f{args.fold}of")]
        if len(paths) != model.folds - 1:
            raise RuntimeError(f"expected {model.folds - 1} merged fold files of {dataset} in {args.store}: {paths}")
        for path in paths:
            events = ak.from_parquet(path)
            xs.append(model.feature_matrix(events))
            labels.append(np.full(len(events), label, dtype=np.int64))
            weights.append(ak.to_numpy(events.normalization_weight).astype(np.float64))
            ids.append([ak.to_numpy(events[column]) for column in ("run", "luminosityBlock", "event")])
    x_raw, y, w = np.concatenate(xs), np.concatenate(labels), np.concatenate(weights)
    run, lumi, event = (np.concatenate([part[i] for part in ids]) for i in range(3))
    is_val = validation_mask(run, lumi, event, model.validation_fraction, model.seed)
    is_fit = ~is_val
    standardization = fit_standardization(x_raw[is_fit], model.features, model.feature_fills())
    x = apply_standardization(x_raw, standardization)
    n_classes = len(model.classes)
    fit_weights = balanced_class_weights(w[is_fit], y[is_fit], n_classes)
    val_weights = balanced_class_weights(w[is_val], y[is_val], n_classes)
    loaded = time.perf_counter()

    keras.utils.set_random_seed(model.seed + args.fold)
    layers: list = [keras.Input(shape=(x.shape[1],))]
    for units in model.layers:
        layers.append(keras.layers.Dense(units, activation=model.activation))
        if model.dropout > 0:
            layers.append(keras.layers.Dropout(model.dropout))
    layers.append(keras.layers.Dense(n_classes, activation="softmax"))
    network = keras.Sequential(layers)
    network.compile(
        optimizer=keras.optimizers.Adam(model.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    fit_start = time.perf_counter()
    network.fit(
        x[is_fit],
        y[is_fit],
        sample_weight=fit_weights,
        validation_data=(x[is_val], y[is_val], val_weights),
        epochs=args.epochs,
        batch_size=model.batch_size,
        shuffle=True,
        verbose=0,
    )
    end = time.perf_counter()
    print(
        json.dumps(
            {
                "n_fit": int(is_fit.sum()),
                "n_val": int(is_val.sum()),
                "epochs": args.epochs,
                "import_seconds": imported - start,
                "load_seconds": loaded - imported,
                "fit_seconds": end - fit_start,
                # comparable to the fit_seconds that cf.MLTraining writes to metrics.json (load + fit)
                "load_fit_seconds": end - imported,
                "n_params": int(network.count_params()),
            }
        )
    )


if __name__ == "__main__":
    main()
