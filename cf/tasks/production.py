"""``cf.ProduceColumns``: run producers on the reduced events and store the columns they produce."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import awkward as ak
import law

from cf.io import EventSource, ParquetWriter, open_source
from cf.tasks.base import CalibratorsMixin, ProducersMixin, SelectorMixin, ShiftMixin
from cf.tasks.external import DatasetWorkflow
from cf.tasks.fusion import column_function_step
from cf.tasks.reduction import ReduceEvents

__all__ = ["ProduceColumns"]


class ProduceColumns(ProducersMixin, SelectorMixin, CalibratorsMixin, ShiftMixin, DatasetWorkflow):
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

    def chunk_step(
        self, function_inputs: dict[str, Any]
    ) -> tuple[dict[str, str], list[EventSource], Callable[[ak.Array], ak.Array]]:
        """What the task does to each chunk (also run by a fused ``cf.PrepareMLEvents``).

        Returns:
            The columns to read, the further sources the producers' setup hooks ask for, and the function from a
            chunk to the columns this task writes.
        """
        return column_function_step(self, self.producer_insts, function_inputs)
