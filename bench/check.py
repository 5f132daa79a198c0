"""The bench's check of the reduced events: the same events and the same columns, source against source.

Every source that writes reduced events (the chain's ``ReduceEvents`` + ``ProduceColumns`` outputs, the baseline's
and the coffea peer's ``reduced_I.parquet``) is read per dataset and input file as one set of leaf columns
(``Jet.pt``, ``m_bb``, ...). Two sources agree when they hold the same columns with the same types, the same events
(``run``, ``luminosityBlock``, ``event``, in the same order), the same objects per event, the same integers and
the same floats within a few units of the last place of their precision (so single-precision columns computed
in double precision may round apart by one unit).

``python -m bench.check REFERENCE_JSON CANDIDATE_JSON`` (each ``{dataset: [[parquet files of input file 0], ...]}``)
prints the agreement as one json line. The harness runs it as a subprocess: reading the outputs would grow its own
memory, which every process it starts afterwards inherits into its peak RSS (Linux counts the parent's resident
memory at ``exec`` as the child's peak).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow.parquet as pq

__all__ = [
    "Agreement",
    "chain_event_files",
    "compare_columns",
    "compare_outputs",
    "keep_files",
    "main",
    "read_columns",
    "script_event_files",
]

#: An output: per dataset, per input file, the parquet files that together hold that file's reduced events.
EventFiles = dict[str, list[list[str]]]
#: The columns of the event identity.
IDENTITY = ("run", "luminosityBlock", "event")
#: Relative tolerance of float columns by precision: 8 units of the last place.
FLOAT_RTOL = {4: 8 * 2.0**-23, 8: 8 * 2.0**-52}


@dataclass
class Agreement:
    """How two outputs compare.

    Attributes:
        events: Events compared (those of the reference).
        columns: Leaf columns compared.
        inexact: The float columns that are equal within the tolerance but not bit-identical.
        max_rel_diff: The largest relative difference of a float value.
        worst_column: The column of that difference.
        problems: What differs (empty when the outputs agree).
    """

    events: int = 0
    columns: int = 0
    inexact: list[str] = field(default_factory=list)
    max_rel_diff: float = 0.0
    worst_column: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.problems

    def add(self, other: Agreement, where: str) -> None:
        """Add the outcome of one more file; its problems are prefixed with ``where``."""
        self.events += other.events
        self.columns = max(self.columns, other.columns)
        self.inexact = sorted({*self.inexact, *other.inexact})
        self.problems += [f"{where}: {problem}" for problem in other.problems]
        if other.max_rel_diff > self.max_rel_diff:
            self.max_rel_diff, self.worst_column = other.max_rel_diff, other.worst_column

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "agrees": self.agrees}


def chain_event_files(store: str | os.PathLike[str], datasets: Sequence[str]) -> EventFiles:
    """The chain's reduced events (``ReduceEvents``) and produced columns (``ProduceColumns``) in a store."""
    files: EventFiles = {}
    for dataset in datasets:
        parts = [
            sorted(glob.glob(str(Path(store) / "**" / task / "**" / dataset / "**" / pattern), recursive=True))
            for task, pattern in (("cf.ReduceEvents", "events_*.parquet"), ("cf.ProduceColumns", "prod_*.parquet"))
        ]
        files[dataset] = [list(pair) for pair in zip(*(_by_index(paths) for paths in parts), strict=True)]
    return files


def script_event_files(out_dir: str | os.PathLike[str], datasets: Sequence[str]) -> EventFiles:
    """The reduced events with produced columns that a plain script wrote (``DATASET/reduced_I.parquet``)."""
    return {
        dataset: [[path] for path in _by_index(glob.glob(str(Path(out_dir) / dataset / "reduced_*.parquet")))]
        for dataset in datasets
    }


def _by_index(paths: Sequence[str]) -> list[str]:
    """Paths ``..._I.parquet`` ordered by their file index ``I``."""
    return sorted(paths, key=lambda path: int(Path(path).stem.rsplit("_", 1)[1]))


def keep_files(files: EventFiles, directory: str | os.PathLike[str]) -> EventFiles:
    """Hard-link (or copy) the files of an output into ``directory``, so that they outlive their store."""
    kept: EventFiles = {}
    for dataset, per_file in files.items():
        target = Path(directory) / dataset
        target.mkdir(parents=True, exist_ok=True)
        kept[dataset] = []
        for index, paths in enumerate(per_file):
            names = [str(target / f"{index}_{part}.parquet") for part in range(len(paths))]
            for path, name in zip(paths, names, strict=True):
                _link_or_copy(path, name)
            kept[dataset].append(names)
    return kept


def _link_or_copy(source: str, target: str) -> None:
    if os.path.exists(target):
        os.remove(target)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def read_columns(paths: Sequence[str]) -> dict[str, ak.Array]:
    """The leaf columns (``Jet.pt``, ``m_bb``, ...) of parquet files that hold columns of the same events."""
    columns: dict[str, ak.Array] = {}
    for path in paths:
        # pq.read_table reads the file natively: ak.from_parquet's Python file objects can abort a short script at
        # exit (apache/arrow#34314)
        columns.update(_leaves(ak.from_arrow(pq.read_table(path))))
    return columns


def _leaves(array: ak.Array, prefix: str = "") -> dict[str, ak.Array]:
    if not ak.fields(array):
        return {prefix: array}
    leaves: dict[str, ak.Array] = {}
    for name in ak.fields(array):
        leaves.update(_leaves(array[name], f"{prefix}.{name}" if prefix else name))
    return leaves


def compare_columns(reference: Mapping[str, ak.Array], candidate: Mapping[str, ak.Array]) -> Agreement:
    """Compare the columns of one input file's reduced events from two sources.

    Args:
        reference: The leaf columns of the reference.
        candidate: Those of the source checked against it.

    Returns:
        The agreement; the columns are compared only when the events are the same.
    """
    result = Agreement(events=len(reference[IDENTITY[0]]) if IDENTITY[0] in reference else 0)
    missing, extra = sorted(set(reference) - set(candidate)), sorted(set(candidate) - set(reference))
    if missing or extra:
        result.problems.append(f"columns missing: {missing}, not in the reference: {extra}")
    identity = _identity_problem(reference, candidate)
    if identity:
        result.problems.append(identity)
        return result
    for name in sorted(set(reference) & set(candidate)):
        _compare_column(name, reference[name], candidate[name], result)
    return result


def _identity_problem(reference: Mapping[str, ak.Array], candidate: Mapping[str, ak.Array]) -> str:
    """Why the two hold different events, or "" when they hold the same events in the same order."""
    if any(name not in reference or name not in candidate for name in IDENTITY):
        return f"the event identity {IDENTITY} is missing"
    ours, theirs = (
        np.stack([ak.to_numpy(c[name]).astype(np.uint64) for name in IDENTITY], axis=1) for c in (reference, candidate)
    )
    if ours.shape != theirs.shape:
        only_ref = len({tuple(row) for row in ours} - {tuple(row) for row in theirs})
        only_cand = len({tuple(row) for row in theirs} - {tuple(row) for row in ours})
        return f"{len(ours)} vs {len(theirs)} events ({only_ref} only in the reference, {only_cand} only in the other)"
    differ = np.flatnonzero(np.any(ours != theirs, axis=1))
    if differ.size:
        return f"{differ.size} of {len(ours)} events differ, the first at entry {differ[0]}: {ours[differ[0]].tolist()}"
    return ""


def _compare_column(name: str, ours: ak.Array, theirs: ak.Array, result: Agreement) -> None:
    """Compare one leaf column (structure, type and values) and add the outcome to ``result``."""
    if ours.ndim != theirs.ndim or (ours.ndim > 1 and not ak.all(ak.num(ours, axis=1) == ak.num(theirs, axis=1))):
        result.problems.append(f"{name}: different objects per event")
        return
    a, b = (ak.to_numpy(ak.flatten(values, axis=None)) for values in (ours, theirs))
    if a.dtype != b.dtype:
        result.problems.append(f"{name}: type {b.dtype}, the reference has {a.dtype}")
        return
    result.columns += 1
    if np.array_equal(a, b):
        return
    if a.dtype.kind != "f":
        result.problems.append(f"{name}: {int(np.sum(a != b))} of {a.size} values differ")
        return
    rel = np.abs(a.astype(np.float64) - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), np.finfo(a.dtype).tiny)
    worst = float(np.max(rel))
    result.inexact.append(name)
    if worst > result.max_rel_diff:
        result.max_rel_diff, result.worst_column = worst, name
    if worst > FLOAT_RTOL[a.dtype.itemsize]:
        result.problems.append(
            f"{name}: {int(np.sum(rel > FLOAT_RTOL[a.dtype.itemsize]))} values differ (max {worst:.2g})"
        )


def compare_outputs(reference: EventFiles, candidate: EventFiles) -> Agreement:
    """Compare two outputs dataset by dataset and input file by input file: the totals and every problem."""
    total = Agreement()
    for dataset, ref_files in reference.items():
        cand_files = candidate.get(dataset, [])
        if len(cand_files) != len(ref_files):
            total.problems.append(f"{dataset}: {len(cand_files)} files, the reference has {len(ref_files)}")
            continue
        for index, (ref_paths, cand_paths) in enumerate(zip(ref_files, cand_files, strict=True)):
            total.add(compare_columns(read_columns(ref_paths), read_columns(cand_paths)), f"{dataset} file {index}")
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("reference_json")
    parser.add_argument("candidate_json")
    args = parser.parse_args(argv)
    reference, candidate = (json.loads(Path(path).read_text()) for path in (args.reference_json, args.candidate_json))
    print(json.dumps(compare_outputs(reference, candidate).to_dict()))


if __name__ == "__main__":
    main()
