"""The scheduling that lets a fusing task run before the tasks it fuses, whatever priority its dependents have."""

from __future__ import annotations

from typing import ClassVar

import luigi
import pytest

from cf.tasks.fusion import FusingWorkflow
from cf.tasks.reduction import ReduceEvents


class Recorded(luigi.Task):
    """A task that appends its name to the run's record (one worker: in the process of the test)."""

    record: ClassVar[list[str]] = []

    def complete(self) -> bool:
        return type(self).__name__ in Recorded.record

    def run(self) -> None:
        Recorded.record.append(type(self).__name__)


class Selection(Recorded):
    """Stands for the selection workflow: the fused reduction makes its branches complete."""


class FusedReduction(Recorded):
    """Stands for a fused cf.ReduceEvents."""

    priority = ReduceEvents.fused_priority


class MergedStatistics(Recorded):
    """Stands for cf.MergeSelectionStats, which requires the selection."""

    def requires(self) -> Selection:
        return Selection()


class FusedPreparation(Recorded):
    """Stands for a fused cf.PrepareMLEvents: it requires the merged statistics and the reduced events."""

    priority = FusingWorkflow.fused_priority

    def requires(self) -> list[luigi.Task]:
        return [MergedStatistics(), FusedReduction()]


class Training(Recorded):
    """A training that an ML scan ordered by priority (its grid point count)."""

    points = luigi.IntParameter()

    @property
    def priority(self) -> int:
        return self.points

    def requires(self) -> list[luigi.Task]:
        # the selection's statistics are also found first on another path (so luigi adds the selection early)
        return [FusedPreparation(), MergedStatistics()]


@pytest.mark.parametrize("points", [0, 5, 50, 5000])
def test_the_fused_reduction_runs_before_the_selection_whatever_its_dependents_priority(points: int) -> None:
    # luigi lifts every requirement to the priority of the tasks requiring it: the selection (through the merged
    # statistics) and the fused reduction both get the training's, and the fused reduction must still come first
    Recorded.record = []
    assert luigi.build([Training(points=points)], workers=1, local_scheduler=True, log_level="WARNING")
    assert Recorded.record.index("FusedReduction") < Recorded.record.index("Selection")
