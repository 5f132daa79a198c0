"""Fused local execution: a task that runs the missing tasks before it on its file in its own pass.

On an empty store, a per-file task of the chain can compute what the tasks before it would write, in the same
chunk loop, and hand it on in memory (:class:`cf.io.MemorySource`) instead of writing it and reading it back:

- ``cf.ReduceEvents`` runs ``cf.CalibrateEvents`` and ``cf.SelectEvents`` (one read of the NanoAOD file);
- ``cf.PrepareMLEvents`` runs ``cf.ProduceColumns`` (one read of the reduced events).

Which tasks fuse follows from what the ``law run`` asks for: the task requested (or required by what is
requested) runs the tasks before it, never the other way round, so a run of ``cf.ReduceEvents`` never produces
columns and one of ``cf.ProduceColumns`` never prepares ML inputs. The production cannot join the first pass: its
producers may need what only the selection of every file of the dataset gives (the template's normalization
weight reads the merged selection statistics), so it runs after ``cf.MergeSelectionStats``.

Every task's outputs are still written by that task's own code (its ``chunk_step``), the earlier task's before the
later one's, each atomically: a run killed on the way never leaves an output without those it is computed from, and
afterwards every fused task is complete. A file for which any of the outputs exists runs its tasks one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import awkward as ak
import law

from cf.columnar_util import take_ak_columns
from cf.functions import ColumnFunction, apply_functions
from cf.io import EventSource
from cf.tasks.base import printing_status_tree

__all__ = ["FUSED_PRIORITY_STEP", "ColumnFunctionStep", "FusingWorkflow"]

#: The priorities of fusing tasks are multiples of this, above those that tasks get otherwise.
FUSED_PRIORITY_STEP = 1_000_000


class FusingWorkflow:
    """A per-file workflow (``DatasetWorkflow``) that runs tasks before it on a file none of whose outputs exist.

    Subclasses list those outputs in :meth:`fused_outputs` and the tasks in :meth:`fused_tasks`, require what the
    fused tasks require when :meth:`fuses_upstream` is true (passed through :meth:`with_fused_tasks`) and run them
    in their ``run()``. ``--print-status`` then lists the fused tasks among the requirements, so that its tree shows
    every task the run runs; the scheduler never sees them as requirements.
    """

    #: The scheduler's priority of the task when it fuses (default 0): it runs before the workflows of the tasks it
    #: fuses that other tasks of the run require (e.g. the selection that ``cf.MergeSelectionStats`` requires),
    #: which then find its files' outputs complete. luigi gives every requirement at least the priority of the tasks
    #: requiring it, so a fusing task earlier in the chain needs a higher one than a later one (a fused
    #: ``cf.PrepareMLEvents`` requires ``cf.MergeSelectionStats``: with the same priority as ``cf.ReduceEvents``,
    #: the selection workflows could run before the fused reduction), and both need more than any priority the
    #: tasks after them have (``cf.MLScan`` orders its trainings by priority, up to its number of grid points):
    #: otherwise the selection and the fused reduction get the same one, and which runs first is luigi's choice.
    fused_priority: ClassVar[int] = FUSED_PRIORITY_STEP
    #: The decision that a persistent task process of ``--workers N`` takes over (``cf.tasks.workers``).
    pooled_state: ClassVar[tuple[str, ...]] = ("_fuses_upstream",)

    @property
    def priority(self) -> int:
        return self.fused_priority if self.fuses_upstream() else 0

    def fused_outputs(self) -> list[law.FileSystemTarget]:
        """The outputs of this task's file that must all be missing for it to fuse: its own and the fused tasks'."""
        raise NotImplementedError

    def fused_tasks(self) -> list[law.Task]:
        """The tasks this one runs in its pass when it fuses (the same branch, or workflow, of each)."""
        raise NotImplementedError

    def with_fused_tasks(self, requirements: dict[str, Any]) -> dict[str, Any]:
        """The requirements of the fusing task, with the fused tasks under ``fused`` while ``--print-status`` runs."""
        return {**requirements, "fused": self.fused_tasks()} if printing_status_tree() else requirements

    def fuses_upstream(self) -> bool:
        """Whether this task also runs the tasks before it on its file(s); decided once per task.

        A branch fuses when none of :meth:`fused_outputs` exist, a local workflow when one of its branches does.
        The decision is kept, so that the requirements luigi checks before the run are those it scheduled.
        """
        fused = self.__dict__.get("_fuses_upstream")
        if fused is None:
            task: Any = self
            if task.is_workflow():
                branches = task.get_branch_tasks().values()
                fused = task.workflow == "local" and any(branch.fuses_upstream() for branch in branches)
            else:
                fused = not any(target.exists() for target in self.fused_outputs())
            self.__dict__["_fuses_upstream"] = fused
        return bool(fused)


class ColumnFunctionStep:
    """A per-file task (``DatasetTask``) that runs column functions on each chunk and writes what they produce."""

    def step_functions(self) -> list[ColumnFunction]:
        """The functions, applied in this order (e.g. the calibrators)."""
        raise NotImplementedError

    def chunk_step(
        self, function_inputs: dict[str, Any]
    ) -> tuple[dict[str, str], list[EventSource], Callable[[ak.Array], ak.Array]]:
        """What the task does to each chunk (also run by a fused task after it).

        Args:
            function_inputs: The outputs of the tasks the functions' ``requires`` hooks ask for.

        Returns:
            The columns to read, the further sources the functions' setup hooks ask for, and the function from a
            chunk to the columns this task writes.
        """
        task: Any = self
        insts = self.step_functions()
        produces = task.columns_produced(insts)

        def step(chunk: ak.Array) -> ak.Array:
            return take_ak_columns(apply_functions(insts, chunk), produces)

        return task.column_origins(insts), task.setup_functions(insts, function_inputs), step
