"""Open the scores that ``cf.MLEvaluation`` wrote for ``test_model`` and print a few rows.

Run it after the training and evaluation commands of the machine learning chapter, in a shell
where ``source setup.sh`` was done: ``python docs/user_guide/examples/read_scores.py``.
``tests/test_ml_chain.py`` runs it after those commands; the chapter shows what it printed there.
"""

from __future__ import annotations

import shlex
import subprocess

import awkward as ak
import numpy as np
import pyarrow.parquet as pq

# the evaluation command of the chapter; with --print-output 0 it runs nothing and lists the files
EVALUATE = shlex.split(
    "law run cf.MLEvaluation --version v1 --ml-model test_model"
    " --config run2_2017_nano_uhh_v11_limited --calibrators skip_jecunc",
)


def score_files(dataset: str) -> list[str]:
    """The parquet files of a dataset's scores, one per input file (from --print-output 0)."""
    command = [*EVALUATE, "--dataset", dataset, "--print-output", "0"]
    listing = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [line.removeprefix("file://") for line in listing.split() if line.startswith("file://")]


for dataset in ("hh_ggf_bbtautau_madgraph", "tt_sl_powheg"):
    files = score_files(dataset)
    # one record per event; row n of file i belongs to event n of file i of cf.ReduceEvents.
    # Read by Arrow itself: ak.from_parquet's reads through Python file objects can abort the
    # interpreter at exit now and then (a known pyarrow race, apache/arrow#34314).
    scores = ak.concatenate([ak.from_arrow(pq.read_table(path)) for path in files])
    print(f"{dataset}: {len(files)} files, {scores.type}")
    scores[:3].show()
    print(f"mean score_hh: {np.mean(scores.test_model.score_hh):.3f}")
