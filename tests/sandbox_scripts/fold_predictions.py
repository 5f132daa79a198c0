"""Recompute every fold model's prediction on given events, inside the model's training sandbox.

Used by the ML integration tests to check the evaluation independently of the fold bookkeeping:
each fold model ``k`` scores all events (through the model's own ``open_model`` / ``evaluate`` with only
model ``k``), and the results are saved with the event numbers.

Usage: python fold_predictions.py SPEC_JSON OUTPUT_NPZ
    SPEC_JSON: {"model": name, "settings": [...], "config": name, "model_dirs": [fold 0, ...],
                "event_files": [[reduced events parquet, produced columns parquet], ...]}
"""

from __future__ import annotations

import json
import sys

import awkward as ak
import law
import numpy as np

from cf.columnar_util import Route
from cf.io import iter_event_chunks, open_source
from cf.ml import model_instance


def main(spec_path: str, output_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    model = model_instance(spec["model"], tuple(spec["settings"]), (spec["config"],))
    models = [model.open_model(law.LocalDirectoryTarget(path)) for path in spec["model_dirs"]]
    uses = {Route(column).column for column in model.uses(model.config_inst)} | {"event"}
    produced = sorted(Route(column).column for column in model.produces(model.config_inst))
    events_numbers, predictions = [], {column: [] for column in produced}
    for files in spec["event_files"]:
        sources = [open_source(path) for path in files]
        for events, _, _ in iter_event_chunks(sources, uses):
            events_numbers.append(ak.to_numpy(events.event))
            own = np.zeros(len(events), dtype=np.int64)
            per_fold = [model.evaluate(None, events, [fold_model], own, True) for fold_model in models]
            for column in produced:
                fields = Route(column).fields
                predictions[column].append(np.stack([ak.to_numpy(scored[fields]) for scored in per_fold], axis=1))
    np.savez(
        output_path,
        event=np.concatenate(events_numbers),
        **{column: np.concatenate(values) for column, values in predictions.items()},
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
