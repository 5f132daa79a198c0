"""``cf.ReduceEvents``: apply the selection masks and keep only the columns needed downstream."""

from __future__ import annotations

from typing import Any

import awkward as ak
import law

from cf.columnar_util import IDENTITY_COLUMNS, remove_ak_column, set_ak_column
from cf.contract import SELECTION_MASK_COLUMN, config_entry
from cf.io import ParquetWriter, open_source
from cf.tasks.base import CalibratorsMixin, SelectorMixin, ShiftMixin
from cf.tasks.calibration import CalibrateEvents
from cf.tasks.external import DatasetWorkflow
from cf.tasks.selection import SelectEvents

__all__ = ["ReduceEvents"]


def apply_selection(events: ak.Array) -> ak.Array:
    """Drop unselected events and, in each masked collection, the unselected objects."""
    selection = events[SELECTION_MASK_COLUMN]
    events = remove_ak_column(events, SELECTION_MASK_COLUMN)
    event_mask = ak.values_astype(selection.event, bool)
    events = events[event_mask]
    if "objects" not in ak.fields(selection):
        return events
    objects = selection.objects[event_mask]
    for collection in ak.fields(objects):
        if collection in ak.fields(events):
            events = set_ak_column(events, collection, events[collection][objects[collection]])
    return events


class ReduceEvents(SelectorMixin, CalibratorsMixin, ShiftMixin, DatasetWorkflow):
    """Writes the selected events of one file with only the columns needed downstream.

    Kept are the config's ``keep_columns["cf.ReduceEvents"]`` (where present), the event identity and the
    columns produced by the calibrators and the selector.
    """

    def input_requirements(self) -> dict[str, Any]:
        return {**super().input_requirements(), "calib": CalibrateEvents.req(self), "sel": SelectEvents.req(self)}

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"events": self.target(f"events_{self.branch}.parquet")}

    def kept_columns(self) -> set[str]:
        keep = set(config_entry(self.config_inst, "keep_columns").get(self.task_family, ()))
        produced = set(self.columns_produced([*self.calibrator_insts, self.selector_inst]))
        return keep | produced | set(IDENTITY_COLUMNS)

    def run(self) -> None:
        inputs = self.input()
        sources = [
            open_source(self.input_file()),
            open_source(inputs["calib"]["columns"].path),
            open_source(inputs["sel"]["columns"].path),
        ]
        # keep_columns of the config are read where present (data has no genWeight, for example)
        with ParquetWriter(self.output()["events"].path) as writer:
            for events, _, _ in self.iter_chunks(
                sources, {SELECTION_MASK_COLUMN, *IDENTITY_COLUMNS}, self.kept_columns()
            ):
                writer.write(apply_selection(events))
