"""``cf.SelectEvents`` (event and object masks plus statistics per file) and ``cf.MergeSelectionStats``."""

from __future__ import annotations

from typing import Any

import awkward as ak
import law
import numpy as np

from cf.columnar_util import set_ak_column, take_ak_columns
from cf.contract import SELECTION_MASK_COLUMN
from cf.functions import SelectionResult
from cf.io import ParquetWriter, dump_json, load_json, open_source
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
        inst = self.selector_inst
        is_mc = not self.dataset_inst.is_data
        uses = self.column_origins([inst])
        if is_mc:
            uses.setdefault("genWeight", "the selection statistics (sum of generator weights)")
        inputs = self.input()
        sources = [
            open_source(self.input_file()),
            open_source(inputs["calib"]["columns"].path),
            *self.setup_functions([inst], inputs["functions"]),
        ]
        produces = self.columns_produced([inst])
        totals = dict.fromkeys(STAT_KEYS, 0.0)
        outputs = self.output()
        with ParquetWriter(outputs["columns"].path) as writer:
            for chunk, _, _ in self.iter_chunks(sources, uses):
                events, result = inst(chunk)
                if not isinstance(result, SelectionResult):
                    raise TypeError(
                        f"selector '{inst.cls_name}' must return (events, SelectionResult), got {type(result)}",
                    )
                for key, value in selection_stats(events, result.event, is_mc).items():
                    totals[key] += value
                writer.write(self.selection_columns(events, result, produces))
        totals["n_events"] = int(totals["n_events"])
        totals["n_events_selected"] = int(totals["n_events_selected"])
        dump_json(outputs["stats"].path, totals)

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

    def requires(self) -> Any:
        return SelectEvents.req(self)

    def output(self) -> law.LocalFileTarget:
        return self.target("stats.json")

    def run(self) -> None:
        totals = dict.fromkeys(STAT_KEYS, 0.0)
        for outputs in self.input()["collection"].targets.values():
            for key, value in load_json(outputs["stats"].path).items():
                totals[key] += value
        totals["n_events"] = int(totals["n_events"])
        totals["n_events_selected"] = int(totals["n_events_selected"])
        totals["n_files"] = len(self.input()["collection"].targets)
        dump_json(self.output().path, totals)
