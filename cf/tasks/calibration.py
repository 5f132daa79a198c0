"""``cf.CalibrateEvents``: apply calibrators to each file and store the columns they produce."""

from __future__ import annotations

import law

from cf.columnar_util import take_ak_columns
from cf.functions import apply_functions
from cf.io import ParquetWriter, open_source
from cf.tasks.base import CalibratorsMixin, ShiftMixin
from cf.tasks.external import DatasetWorkflow

__all__ = ["CalibrateEvents"]


class CalibrateEvents(CalibratorsMixin, ShiftMixin, DatasetWorkflow):
    """Runs the calibrators on one input file; writes only the columns they declare in ``produces``."""

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"columns": self.target(f"calib_{self.branch}.parquet")}

    def run(self) -> None:
        funcs = self.calibrator_funcs
        uses = self.column_origins(funcs)
        produces = self.columns_produced(funcs)
        ctx = self.column_context()
        sources = [open_source(self.input_file())]
        with ParquetWriter(self.output()["columns"].path) as writer:
            for chunk, _, _ in self.iter_chunks(sources, uses):
                events = apply_functions(funcs, chunk, ctx)
                writer.write(take_ak_columns(events, produces))
