"""``cf.CalibrateEvents``: apply calibrators to each file and store the columns they produce."""

from __future__ import annotations

from typing import Any

import law

from cf.functions import ColumnFunction
from cf.io import ParquetWriter, open_source
from cf.tasks.base import CalibratorsMixin, ShiftMixin
from cf.tasks.external import DatasetWorkflow
from cf.tasks.fusion import ColumnFunctionStep

__all__ = ["CalibrateEvents"]


class CalibrateEvents(ColumnFunctionStep, CalibratorsMixin, ShiftMixin, DatasetWorkflow):
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

    def step_functions(self) -> list[ColumnFunction]:
        return self.calibrator_insts
