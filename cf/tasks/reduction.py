"""``cf.ReduceEvents``: apply the selection masks and keep only the columns needed downstream."""

from __future__ import annotations

from typing import Any

import awkward as ak
import law

from cf.columnar_util import IDENTITY_COLUMNS, remove_ak_column, set_ak_column
from cf.contract import SELECTION_MASK_COLUMN, config_entry
from cf.io import MemorySource, ParquetWriter, dump_json, open_source
from cf.tasks.base import CalibratorsMixin, SelectorMixin, ShiftMixin
from cf.tasks.calibration import CalibrateEvents
from cf.tasks.external import DatasetWorkflow
from cf.tasks.fusion import FUSED_PRIORITY_STEP, FusingWorkflow
from cf.tasks.selection import SelectEvents, final_stats

__all__ = ["ReduceEvents"]

#: The columns the reduction needs from every file: the selection masks and the event identity.
REDUCTION_USES = {SELECTION_MASK_COLUMN, *IDENTITY_COLUMNS}


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


class ReduceEvents(FusingWorkflow, SelectorMixin, CalibratorsMixin, ShiftMixin, DatasetWorkflow):
    """Writes the selected events of one file with only the columns needed downstream.

    Kept are the config's ``keep_columns["cf.ReduceEvents"]`` (where present), the event identity and the
    columns produced by the calibrators and the selector.

    Fused local execution: where the outputs of ``cf.CalibrateEvents``, ``cf.SelectEvents`` and this task are all
    missing for a file, and the workflow runs locally, this task runs the three in one pass over the file
    (:meth:`run_fused`): the NanoAOD file is read once and the calibrated columns and selection masks go from step
    to step in memory, while each task's outputs are written as that task writes them. Afterwards each of the three
    tasks is complete; where some outputs of a file exist already, the tasks run one by one as usual.
    """

    #: above the fusing tasks later in the chain (:attr:`FusingWorkflow.fused_priority`)
    fused_priority = 2 * FUSED_PRIORITY_STEP

    def fused_outputs(self) -> list[law.FileSystemTarget]:
        return [*self.output().values(), *self.upstream_outputs()]

    def upstream_outputs(self) -> list[law.LocalFileTarget]:
        """The outputs of the calibration and selection of this task's file."""
        return [*CalibrateEvents.req(self).output().values(), *SelectEvents.req(self).output().values()]

    def input_requirements(self) -> dict[str, Any]:
        if not self.fuses_upstream():
            return {**super().input_requirements(), "calib": CalibrateEvents.req(self), "sel": SelectEvents.req(self)}
        calibration, selection = CalibrateEvents.req(self), SelectEvents.req(self)
        return self.with_fused_tasks(
            {
                **super().input_requirements(),
                "calib_functions": calibration.function_requirements(calibration.calibrator_insts),
                "sel_functions": selection.function_requirements([selection.selector_inst]),
            }
        )

    def fused_tasks(self) -> list[law.Task]:
        return [CalibrateEvents.req(self), SelectEvents.req(self)]

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"events": self.target(f"events_{self.branch}.parquet")}

    def kept_columns(self) -> set[str]:
        keep = set(config_entry(self.config_inst, "keep_columns").get(self.task_family, ()))
        produced = set(self.columns_produced([*self.calibrator_insts, self.selector_inst]))
        return keep | produced | set(IDENTITY_COLUMNS)

    def run(self) -> None:
        if self.fuses_upstream():
            self.run_fused()
            return
        inputs = self.input()
        sources = [
            open_source(self.input_file()),
            open_source(inputs["calib"]["columns"].path),
            open_source(inputs["sel"]["columns"].path),
        ]
        # keep_columns of the config are read where present (data has no genWeight, for example)
        with ParquetWriter(self.output()["events"].path) as writer:
            for events, _, _ in self.iter_chunks(sources, REDUCTION_USES, self.kept_columns()):
                writer.write(apply_selection(events))

    def run_fused(self) -> None:
        """CalibrateEvents, SelectEvents and this task on this task's file, chunk by chunk in one pass.

        Each step reads its chunk as the separate task does, from the NanoAOD file (whose baskets ``RootSource``
        keeps while the chunk lasts, so each is decompressed once) and from what the steps before wrote, held in
        memory instead of read back. The outputs are those of the separate tasks; the calibration's and the
        selection's are stored first, so that a run killed on the way never leaves this task's output without them.
        """
        calibration, selection = CalibrateEvents.req(self), SelectEvents.req(self)
        inputs = self.input()
        calib_uses, calib_sources, calibrate = calibration.chunk_step(inputs["calib_functions"])
        sel_uses, sel_sources, select, totals = selection.chunk_step(inputs["sel_functions"])
        nano = open_source(self.input_file())
        calib_path, sel_outputs = calibration.output()["columns"].path, selection.output()
        calibrated = MemorySource(calib_path, nano.n_events)
        masks = MemorySource(sel_outputs["columns"].path, nano.n_events)
        kept = self.kept_columns()
        starts = range(0, max(nano.n_events, 1), self.chunk_size)
        with (
            ParquetWriter(self.output()["events"].path) as reduced_out,
            ParquetWriter(sel_outputs["columns"].path) as selected_out,
            ParquetWriter(calib_path) as calibrated_out,
        ):
            for i, start in enumerate(starts):
                stop = min(start + self.chunk_size, nano.n_events)
                chunk = calibration.read_chunk([nano, *calib_sources], calib_uses, start, stop)
                calibrated.hold(calibrate(chunk), start, stop)
                calibrated_out.write(calibrated.chunk)
                chunk = selection.read_chunk([nano, calibrated, *sel_sources], sel_uses, start, stop)
                masks.hold(select(chunk), start, stop)
                selected_out.write(masks.chunk)
                chunk = self.read_chunk([nano, calibrated, masks], REDUCTION_USES, start, stop, kept)
                reduced_out.write(apply_selection(chunk))
                self.publish_progress(100.0 * (i + 1) / len(starts))
            # stored in this order on leaving: the statistics, the calibrated columns, the masks, the reduced events
            dump_json(sel_outputs["stats"].path, final_stats(totals))
