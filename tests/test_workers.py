"""Tests of where the tasks of a parallel run execute (cf.tasks.workers): persistent processes, failures."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import law
import luigi
import pytest

from cf.tasks.remote import LocalWorkflow
from cf.tasks.workers import PoolProcess, TaskProcessPool, is_bookkeeping, use_task_processes


class RecordProcess(luigi.Task):
    """Writes the id of the process that ran it."""

    directory = luigi.Parameter()
    index = luigi.IntParameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"{self.directory}/task_{self.index}.json")

    def run(self) -> None:
        Path(self.output().path).write_text(json.dumps({"pid": os.getpid()}))


class DieHard(RecordProcess):
    """Kills the process that runs it (as the system's OOM killer would)."""

    def run(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


class Fail(RecordProcess):
    """Raises."""

    def run(self) -> None:
        raise RuntimeError("this task fails on purpose")


class Decided(RecordProcess):
    """Records the process in which luigi's scheduling took its decision (its priority) and the one it ran in."""

    pooled_state = ("_decided_in",)

    @property
    def priority(self) -> int:
        self.__dict__.setdefault("_decided_in", os.getpid())
        return 0

    def run(self) -> None:
        record = {"pid": os.getpid(), "decided_in": self.__dict__.get("_decided_in")}
        Path(self.output().path).write_text(json.dumps(record))


class YieldDecided(RecordProcess):
    """Yields Decided tasks, which are made after the persistent processes were started."""

    def run(self) -> Iterator[list[Decided]]:
        yield [Decided(directory=self.directory, index=index) for index in range(10, 14)]
        super().run()


class Several(luigi.WrapperTask):
    """Six RecordProcess tasks and, optionally, one task of another class first."""

    directory = luigi.Parameter()
    first = luigi.Parameter(default="")

    def requires(self) -> list[luigi.Task]:
        tasks: list[luigi.Task] = [RecordProcess(directory=self.directory, index=index) for index in range(6)]
        if self.first:
            tasks.insert(0, {"die": DieHard, "fail": Fail}[self.first](directory=self.directory, index=99))
        return tasks


class LawWrapper(law.WrapperTask):
    """law's wrapper task (not a luigi.WrapperTask): bookkeeping all the same."""

    def requires(self) -> list[luigi.Task]:
        return []


class Branches(LocalWorkflow, law.Task):
    """A local workflow of four branches that write the id of their process."""

    directory = luigi.Parameter()

    def create_branch_map(self) -> dict[int, int]:
        return {index: index for index in range(4)}

    def output(self) -> law.LocalFileTarget:
        return law.LocalFileTarget(f"{self.directory}/task_{self.branch}.json")

    def run(self) -> None:
        self.output().dump({"pid": os.getpid()}, formatter="json")


@pytest.fixture(scope="module", autouse=True)
def task_processes() -> None:
    use_task_processes()


def run(directory: Path, first: str = "") -> tuple[bool, list[int]]:
    succeeded = luigi.build(
        [Several(directory=str(directory), first=first)], workers=2, local_scheduler=True, log_level="WARNING"
    )
    pids = [json.loads(path.read_text())["pid"] for path in sorted(directory.glob("task_*.json"))]
    return succeeded, pids


def test_two_workers_run_many_tasks_in_two_persistent_processes(tmp_path: Path) -> None:
    succeeded, pids = run(tmp_path)
    assert succeeded
    assert len(pids) == 6
    # luigi alone forks one process per task: six pids
    assert len(set(pids)) <= 2
    assert os.getpid() not in pids


def test_a_killed_task_process_fails_only_its_task_and_is_replaced(tmp_path: Path) -> None:
    # luigi looks whether a task process died whenever it has waited law.cfg's wait_interval for a result
    assert luigi.worker.worker().wait_interval <= 1
    succeeded, pids = run(tmp_path, first="die")
    assert not succeeded
    assert not (tmp_path / "task_99.json").exists()
    assert len(pids) == 6
    assert len(set(pids)) <= 3


def test_a_failing_task_keeps_its_process_for_the_next_tasks(tmp_path: Path) -> None:
    succeeded, pids = run(tmp_path, first="fail")
    assert not succeeded
    assert len(pids) == 6
    assert len(set(pids)) <= 2


def test_wrappers_and_local_workflows_are_bookkeeping(tmp_path: Path) -> None:
    assert is_bookkeeping(Several(directory=str(tmp_path)))
    assert is_bookkeeping(LawWrapper())
    assert not is_bookkeeping(RecordProcess(directory=str(tmp_path), index=0))


def test_a_pooled_task_takes_over_the_decisions_of_the_scheduling_process(tmp_path: Path) -> None:
    assert luigi.build([YieldDecided(directory=str(tmp_path), index=0)], workers=2, local_scheduler=True)
    decided = [json.loads((tmp_path / f"task_{index}.json").read_text()) for index in range(10, 14)]
    assert all(record["pid"] != os.getpid() for record in decided)
    assert all(record["decided_in"] == os.getpid() for record in decided)


def test_local_workflows_of_a_parallel_run_need_no_multiprocessing_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # law keeps which workflows yielded their branches in a manager process; the bookkeeping workflow of a
    # parallel run never leaves the scheduling process, so a set in it is enough
    def no_manager(*args: object, **kwargs: object) -> None:
        raise AssertionError("a multiprocessing manager was started")

    monkeypatch.setattr(law.workflow.local.mp_manager, "get", no_manager)
    # the run's --workers as the tasks see it (luigi.build's argument reaches only the scheduling)
    config = luigi.configuration.get_config()
    config.set("core", "workers", "2")
    try:
        succeeded = luigi.build([Branches(directory=str(tmp_path))], workers=2, local_scheduler=True)
    finally:
        config.remove_option("core", "workers")
    assert succeeded
    pids = [json.loads((tmp_path / f"task_{index}.json").read_text())["pid"] for index in range(4)]
    assert os.getpid() not in pids
    assert len(set(pids)) <= 2


def _exit_at_once(connection: multiprocessing.connection.Connection) -> None:
    connection.close()


def _dead_busy_process() -> PoolProcess:
    """A pooled process that died during its task (its end of the pipe closed), whose death may not be seen yet."""
    connection, process_end = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(target=_exit_at_once, args=(process_end,))
    process.start()
    process_end.close()
    process.join()
    return PoolProcess(process, connection, busy=True)


def test_a_process_that_dies_between_the_checks_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool looks at its processes' pipes after it left out the dead ones: one may die in between."""
    dead = _dead_busy_process()
    seen_alive = iter([True])  # alive when the pool looks first, dead afterwards
    monkeypatch.setattr(dead.process, "is_alive", lambda: next(seen_alive, False))
    fresh = PoolProcess(SimpleNamespace(is_alive=lambda: True), multiprocessing.Pipe()[0])  # type: ignore[arg-type]
    pool = TaskProcessPool(SimpleNamespace(worker_processes=1), [dead])  # type: ignore[arg-type]
    monkeypatch.setattr(pool, "_start_process", lambda: fresh)
    assert pool._idle_process() is fresh
    assert pool.processes == [fresh]
