"""What the plain scripts of the bench (the baseline and the coffea peer) share: column selection and their outputs.

Light on purpose: awkward, numpy, uproot and the framework's parquet writer (``cf.io.ParquetWriter``, the chain's
settings: snappy, no dictionary, one row group per chunk), so that the coffea peer imports no task machinery.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence

import awkward as ak
import numpy as np

from cf.io import ParquetWriter

__all__ = ["FoldWriters", "fold_writers", "keep", "script_arguments", "sum_generator_weights"]


def keep(events: ak.Array, columns: Iterable[str]) -> ak.Array:
    """Only the given ``a`` / ``a.b`` columns, in one new record array.

    Args:
        events: Records of plain fields and of (lists of) records, without behaviours that need other fields.
        columns: The columns to keep; those the events do not have are left out.

    Returns:
        The events with only those columns.
    """
    nested: dict[str, list[str]] = {}
    for column in columns:
        head, _, tail = column.partition(".")
        if head in ak.fields(events):
            nested.setdefault(head, [])
            if tail:
                nested[head].append(tail)
    out = {head: events[head][sorted(set(tails))] if tails else events[head] for head, tails in nested.items()}
    return ak.zip(out, depth_limit=1)


def sum_generator_weights(files: Iterable[str]) -> float:
    """The sum of ``genWeight`` over all events of the files (before any selection), in double precision."""
    import uproot

    total = 0.0
    for path in files:
        with uproot.open(path) as file:
            total += float(np.sum(file["Events"]["genWeight"].array(library="np"), dtype=np.float64))
    return total


class FoldWriters:
    """The ML inputs of one input file: one parquet writer per fold and the events and weight sums per fold.

    Args:
        writers: The open writers, fold by fold (see :func:`fold_writers`).
    """

    def __init__(self, writers: Sequence[ParquetWriter]) -> None:
        self.writers = list(writers)
        self.n_events = [0] * len(writers)
        self.sum_weights = [0.0] * len(writers)

    def write(self, events: ak.Array, folds: np.ndarray, weights: np.ndarray) -> None:
        """Write each event to the file of its fold and count it with its weight.

        Args:
            events: The ML inputs of a chunk, with their ``fold`` column.
            folds: The fold of each event.
            weights: The event weight of each event.
        """
        for fold, writer in enumerate(self.writers):
            mask = folds == fold
            writer.write(events[mask])
            self.n_events[fold] += int(mask.sum())
            self.sum_weights[fold] += float(weights[mask].sum(dtype=np.float64))

    @staticmethod
    def total(files: Sequence[FoldWriters]) -> dict[str, list[float]]:
        """Events and weight sums per fold over several input files (the stats the bench checks)."""
        folds = len(files[0].n_events) if files else 0
        return {
            "n_events": [sum(f.n_events[fold] for f in files) for fold in range(folds)],
            "sum_weights": [sum(f.sum_weights[fold] for f in files) for fold in range(folds)],
        }


@contextlib.contextmanager
def fold_writers(out_dir: str, file_index: int, folds: int) -> Iterator[FoldWriters]:
    """The fold files ``mlevents_f{fold}of{folds}_{file_index}.parquet`` of one input file, complete on exit.

    Args:
        out_dir: Their directory.
        file_index: The index of the input file within its dataset.
        folds: The number of folds.
    """
    with contextlib.ExitStack() as stack:
        paths = [os.path.join(out_dir, f"mlevents_f{fold}of{folds}_{file_index}.parquet") for fold in range(folds)]
        yield FoldWriters([stack.enter_context(ParquetWriter(path)) for path in paths])


def script_arguments(description: str, source: str, argv: list[str] | None) -> argparse.Namespace:
    """The command line of a plain script: its input description ``source``, ``out_dir`` and ``--chunk-size``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(source)
    parser.add_argument("out_dir")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    return parser.parse_args(argv)
