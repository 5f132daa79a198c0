"""``cf.CalibrateEvents``: apply calibrators to each file and store the columns they produce."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import awkward as ak
import law

from cf.io import EventSource, ParquetWriter, open_source
from cf.tasks.base import CalibratorsMixin, ShiftMixin
from cf.tasks.external import DatasetWorkflow
from cf.tasks.fusion import column_function_step

__all__ = ["CalibrateEvents"]


class CalibrateEvents(CalibratorsMixin, ShiftMixin, DatasetWorkflow):
    """Runs the calibrators on one input file; writes only the columns they declare in ``produces``."""

    def input_requirements(self) -> dict[str, Any]:
        return {**super().input_requirements(), "functions": self.function_requirements(self.calibrator_insts)}

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"columns": self.target(f"calib_{self.branch}.parquet")}

    def run(self) -> None:
        uses, sources, calibrate = self.chunk_step(self.input()["functions"])
        with ParquetWriter(self.output()["columns"].path) as writer:
            for chunk, _, _ in self.iter_chunks([open_source(self.input_file()), *sources], uses):
                writer.write(calibrate(chunk))

    def chunk_step(
        self, function_inputs: dict[str, Any]
    ) -> tuple[dict[str, str], list[EventSource], Callable[[ak.Array], ak.Array]]:
        """What the task does to each chunk (also run by a fused ``cf.ReduceEvents``).

        Returns:
            The columns to read, the further sources the calibrators' setup hooks ask for, and the function from a
            chunk to the columns this task writes.
        """
        return column_function_step(self, self.calibrator_insts, function_inputs)
