"""Checks shared by the ML integration tests: fold bookkeeping read back from the task outputs, and every
fold model's predictions recomputed in the model's sandbox, independently of cf.MLEvaluation."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow.parquet as pq

from tests.conftest import LawEnv, LawOutputs

CONFIG = "run2_2017_nano_uhh_v11_limited"


def fold_of_events(
    env: LawEnv, law_outputs: LawOutputs, model: str, dataset: str, version: str = "v1"
) -> dict[int, int]:
    """Event number -> fold, read back from the per-fold files of cf.PrepareMLEvents."""
    args = ("cf.PrepareMLEvents", "--version", version, "--ml-model", model, "--dataset", dataset)
    folds: dict[int, int] = {}
    for path in law_outputs(*args, env=env.env, depth=1):
        if path.suffix == ".parquet" and path.name.startswith("mlevents_f"):
            fold = int(path.name.split("_f")[1].split("of")[0])
            for event in pq.read_table(path, columns=["event"]).column("event").to_pylist():
                folds[event] = fold
    return folds


def recompute_fold_predictions(
    env: LawEnv,
    law_outputs: LawOutputs,
    model: str,
    model_dirs: list[Path],
    dataset: str,
    tmp_path: Path,
) -> dict[str, Any]:
    """Every fold model's outputs for all events of the dataset, from tests/sandbox_scripts/fold_predictions.py."""
    reduced = law_outputs("cf.ReduceEvents", "--version", "v1", "--dataset", dataset, env=env.env)
    produced = law_outputs("cf.ProduceColumns", "--version", "v1", "--dataset", dataset, env=env.env)
    spec = {
        "model": model,
        "settings": [],
        "config": CONFIG,
        "model_dirs": [str(path) for path in model_dirs],
        "event_files": [[str(r), str(p)] for r, p in zip(reduced, produced, strict=True)],
    }
    spec_path, out_path = tmp_path / "spec.json", tmp_path / "predictions.npz"
    spec_path.write_text(json.dumps(spec))
    script = Path(env.env["CF_BASE"]) / "tests" / "sandbox_scripts" / "fold_predictions.py"
    command = ["cf_sandbox", "venv_ml_tf", "python", str(script), str(spec_path), str(out_path)]
    result = subprocess.run(command, env=env.env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(out_path))


def assert_no_leakage(folds: dict[int, int], recomputed: dict[str, Any], column: str, stored: np.ndarray) -> None:
    """Each stored score is the prediction of the model of the event's own fold (which never saw it)."""
    n_folds = recomputed[column].shape[1]
    own_fold = np.array([folds[int(event)] for event in recomputed["event"]])
    per_fold = recomputed[column]
    rows = np.arange(len(own_fold))
    assert len(folds) == len(stored)
    np.testing.assert_allclose(stored, per_fold[rows, own_fold], atol=1e-6)
    # the models that trained on the event disagree with its stored score for almost every event
    for offset in range(1, n_folds):
        other = per_fold[rows, (own_fold + offset) % n_folds]
        assert np.mean(np.abs(other - stored) > 1e-6) > 0.9
    assert np.all(np.bincount(own_fold, minlength=n_folds) > 0.25 * len(own_fold) / n_folds)


def read_column(paths: list[Path], column: str) -> np.ndarray:
    """One (nested) column of several parquet files, concatenated."""
    fields = tuple(column.split("."))
    return np.concatenate([ak.to_numpy(ak.from_parquet(path)[fields]) for path in paths])
