"""``cf.SelectEvents`` (event and object masks plus statistics per file) and ``cf.MergeSelectionStats``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import awkward as ak
import law
import numpy as np

from cf.columnar_util import set_ak_column, take_ak_columns
from cf.contract import SELECTION_MASK_COLUMN
from cf.functions import SelectionResult
from cf.io import EventSource, ParquetWriter, dump_json, load_json, open_source
from cf.tasks.base import CalibratorsMixin, DatasetTask, SelectorMixin, ShiftMixin
from cf.tasks.calibration import CalibrateEvents
from cf.tasks.external import DatasetWorkflow

__all__ = ["MergeSelectionStats", "SelectEvents", "STAT_KEYS"]

#: The statistics every selection writes; the sums of generator weights are 0 for data.
STAT_KEYS = ("n_events", "n_events_selected", "sum_mc_weight", "sum_mc_weight_selected")


def selection_stats(events: ak.Array, event_mask: ak.Array, is_mc: bool) -> dict[str, float]:
    """Event counts and sums of generator weights before and after the event selection."""
    mask = ak.to_numpy(event_mask).astype(bool)
    weights = ak.to_numpy(events.genWeight).astype(np.float64) if is_mc else np.zeros(len(mask))
    return {
        "n_events": len(mask),
        "n_events_selected": int(mask.sum()),
        "sum_mc_weight": float(weights.sum()),
        "sum_mc_weight_selected": float(weights[mask].sum()),
    }


def final_stats(totals: dict[str, float]) -> dict[str, float]:
    """The statistics summed over chunks, with the event counts as integers."""
    return {**totals, "n_events": int(totals["n_events"]), "n_events_selected": int(totals["n_events_selected"])}


class SelectEvents(SelectorMixin, CalibratorsMixin, ShiftMixin, DatasetWorkflow):
    """Runs the selector on the calibrated events of one file.

    Writes a parquet file with the selection masks (``cf_selection.event`` and, per collection,
    ``cf_selection.objects.<Collection>``) and the columns the selector produces, and a json file with
    the statistics in ``STAT_KEYS``.
    """

    def input_requirements(self) -> dict[str, Any]:
        functions = self.function_requirements([self.selector_inst])
        return {**super().input_requirements(), "calib": CalibrateEvents.req(self), "functions": functions}

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {
            "columns": self.target(f"sel_{self.branch}.parquet"),
            "stats": self.target(f"stats_{self.branch}.json"),
        }

    def run(self) -> None:
        inputs = self.input()
        uses, sources, select, totals = self.chunk_step(inputs["functions"])
        sources = [open_source(self.input_file()), open_source(inputs["calib"]["columns"].path), *sources]
        outputs = self.output()
        with ParquetWriter(outputs["columns"].path) as writer:
            for chunk, _, _ in self.iter_chunks(sources, uses):
                writer.write(select(chunk))
        dump_json(outputs["stats"].path, final_stats(totals))

    def chunk_step(
        self, function_inputs: dict[str, Any]
    ) -> tuple[dict[str, str], list[EventSource], Callable[[ak.Array], ak.Array], dict[str, float]]:
        """What the task does to each chunk (also run by a fused ``cf.ReduceEvents``).

        Returns:
            The columns to read, the further sources the selector's setup hooks ask for, the function from a chunk
            to the columns this task writes, and the statistics, which that function adds each chunk to.
        """
        inst = self.selector_inst
        is_mc = not self.dataset_inst.is_data
        uses = self.column_origins([inst])
        if is_mc:
            uses.setdefault("genWeight", "the selection statistics (sum of generator weights)")
        produces = self.columns_produced([inst])
        totals = dict.fromkeys(STAT_KEYS, 0.0)

        def select(chunk: ak.Array) -> ak.Array:
            events, result = inst(chunk)
            if not isinstance(result, SelectionResult):
                raise TypeError(
                    f"selector '{inst.cls_name}' must return (events, SelectionResult), got {type(result)}",
                )
            for key, value in selection_stats(events, result.event, is_mc).items():
                totals[key] += value
            return self.selection_columns(events, result, produces)

        return uses, self.setup_functions([inst], function_inputs), select, totals

    @staticmethod
    def selection_columns(events: ak.Array, result: SelectionResult, produces: list[str]) -> ak.Array:
        columns = take_ak_columns(events, produces)
        columns = set_ak_column(columns, f"{SELECTION_MASK_COLUMN}.event", ak.values_astype(result.event, bool))
        for collection, mask in result.objects.items():
            columns = set_ak_column(
                columns, f"{SELECTION_MASK_COLUMN}.objects.{collection}", ak.values_astype(mask, bool)
            )
        return columns


class MergeSelectionStats(SelectorMixin, CalibratorsMixin, ShiftMixin, DatasetTask):
    """Sums the selection statistics of all files of a dataset into one json file."""

    #: its run() merges a few small json files (see :func:`cf.tasks.workers.is_bookkeeping`)
    bookkeeping = True

    def requires(self) -> Any:
        return SelectEvents.req(self)

    def output(self) -> law.LocalFileTarget:
        return self.target("stats.json")

    def run(self) -> None:
        totals = dict.fromkeys(STAT_KEYS, 0.0)
        for outputs in self.input()["collection"].targets.values():
            for key, value in load_json(outputs["stats"].path).items():
                totals[key] += value
        dump_json(self.output().path, {**final_stats(totals), "n_files": len(self.input()["collection"].targets)})
