"""``cf.ProduceColumns``: run producers on the reduced events and store the columns they produce."""

from __future__ import annotations

from typing import Any

import law

from cf.columnar_util import take_ak_columns
from cf.functions import apply_functions
from cf.io import ParquetWriter, load_json, open_source
from cf.tasks.base import CalibratorsMixin, ProducersMixin, SelectorMixin, ShiftMixin
from cf.tasks.external import DatasetWorkflow
from cf.tasks.reduction import ReduceEvents
from cf.tasks.selection import MergeSelectionStats

__all__ = ["ProduceColumns"]


class ProduceColumns(ProducersMixin, SelectorMixin, CalibratorsMixin, ShiftMixin, DatasetWorkflow):
    """Runs the producers on the reduced events of one file; writes the columns they declare in ``produces``.

    Producers get the dataset's merged selection statistics in ``ctx.selection_stats`` (e.g. for the
    normalization weight).
    """

    def input_requirements(self) -> dict[str, Any]:
        return {"events": ReduceEvents.req(self), "stats": MergeSelectionStats.req(self)}

    def output(self) -> dict[str, law.LocalFileTarget]:
        return {"columns": self.target(f"prod_{self.branch}.parquet")}

    def run(self) -> None:
        funcs = self.producer_funcs
        uses = self.column_origins(funcs)
        produces = self.columns_produced(funcs)
        inputs = self.input()
        ctx = self.column_context(selection_stats=load_json(inputs["stats"].path))
        sources = [open_source(inputs["events"]["events"].path)]
        with ParquetWriter(self.output()["columns"].path) as writer:
            for chunk, _, _ in self.iter_chunks(sources, uses):
                events = apply_functions(funcs, chunk, ctx)
                writer.write(take_ak_columns(events, produces))
