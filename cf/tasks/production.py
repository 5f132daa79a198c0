"""``cf.ProduceColumns``: run producers on the reduced events and store the columns they produce."""

from __future__ import annotations

from typing import Any

import law

from cf.functions import ColumnFunction
from cf.io import ParquetWriter, open_source
from cf.tasks.base import CalibratorsMixin, ProducersMixin, SelectorMixin, ShiftMixin
from cf.tasks.external import DatasetWorkflow
from cf.tasks.fusion import ColumnFunctionStep
from cf.tasks.reduction import ReduceEvents

__all__ = ["ProduceColumns"]


class ProduceColumns(ColumnFunctionStep, ProducersMixin, SelectorMixin, CalibratorsMixin, ShiftMixin, DatasetWorkflow):
    """Runs the producers on the reduced events of one file; writes the columns they declare in ``produces``.

    What producers need besides the events (e.g. the dataset's merged selection statistics for the normalization
    weight) they ask for in their ``requires`` hooks and load in their ``setup`` hooks.
    """

    def input_requirements(self) -> dict[str, Any]:
        return {"events": ReduceEvents.req(self), "functions": self.function_requirements(self.producer_insts)}

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"columns": self.target(f"prod_{self.branch}.parquet")}

    def run(self) -> None:
        inputs = self.input()
        uses, sources, produce = self.chunk_step(inputs["functions"])
        sources = [open_source(inputs["events"]["events"].path), *sources]
        with ParquetWriter(self.output()["columns"].path) as writer:
            for chunk, _, _ in self.iter_chunks(sources, uses):
                writer.write(produce(chunk))

    def step_functions(self) -> list[ColumnFunction]:
        return self.producer_insts
