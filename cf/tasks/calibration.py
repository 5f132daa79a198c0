"""``cf.CalibrateEvents``: apply calibrators to each file and store the columns they produce."""

from __future__ import annotations

from typing import Any

import law

from cf.columnar_util import take_ak_columns
from cf.functions import apply_functions
from cf.io import ParquetWriter, open_source
from cf.tasks.base import CalibratorsMixin, ShiftMixin
from cf.tasks.external import DatasetWorkflow

__all__ = ["CalibrateEvents"]


class CalibrateEvents(CalibratorsMixin, ShiftMixin, DatasetWorkflow):
    """Runs the calibrators on one input file; writes only the columns they declare in ``produces``."""

    def input_requirements(self) -> dict[str, Any]:
        return {**super().input_requirements(), "functions": self.function_requirements(self.calibrator_insts)}

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"columns": self.target(f"calib_{self.branch}.parquet")}

    def run(self) -> None:
        insts = self.calibrator_insts
        uses = self.column_origins(insts)
        produces = self.columns_produced(insts)
        sources = [open_source(self.input_file()), *self.setup_functions(insts, self.input()["functions"])]
        with ParquetWriter(self.output()["columns"].path) as writer:
            for chunk, _, _ in self.iter_chunks(sources, uses):
                writer.write(take_ak_columns(apply_functions(insts, chunk), produces))
