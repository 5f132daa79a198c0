"""Where luigi runs each task of a ``law run --workers N`` with N > 1.

luigi runs every task of a parallel run in a new process forked from the scheduling process. A fresh fork pays a
page fault (~8 µs on this kind of machine) for every page it writes, its copy-on-write memory and every chunk's
arrays alike: an event task over a 125k-event file took ~75k of them, as much time as a fifth of its work. Two
changes of luigi's ``Worker._create_task_process`` (installed once per process by :func:`use_task_processes`):

- bookkeeping tasks (:func:`is_bookkeeping`: wrappers, local workflows that yield their branches, merges of small
  files) run in the scheduling process, as every task does with one worker;
- the other tasks run in a pool of N persistent processes (:class:`TaskProcessPool`), forked once when the first
  such task starts: a process runs one task after the other and reuses its memory, as the single process of a
  one-worker run does. A task travels to its process as its family and string parameters (luigi's own way of
  sending dynamic requirements), together with the attributes its class lists in ``pooled_state`` (decisions
  taken when it was scheduled, such as whether it fuses the tasks before it, which must not be taken again
  later in the other process), and its result goes back on luigi's result queue, so luigi's scheduling, retries
  and failure handling stay as they are. A pooled process that dies takes only its task with it (luigi reports
  it, as for a forked task) and is replaced for the next one.

Sandboxed tasks (they start their own process anyway), tasks that take scheduler messages, a configured task
timeout or process context, and tasks whose parameters do not survive the round trip through strings keep
luigi's fork. This relies on luigi's private ``Worker`` and ``TaskProcess`` API (luigi is pinned in
``sandboxes/cf.txt``): re-check it on every luigi upgrade.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.connection
import os
from dataclasses import dataclass, field
from typing import Any

import law
import luigi
import luigi.worker
from luigi.task_register import load_task

__all__ = ["TaskProcessPool", "is_bookkeeping", "use_task_processes"]

#: Seconds between checks, in an idle pooled process, whether the scheduling process still lives.
PARENT_CHECK_INTERVAL = 1.0


def use_task_processes() -> None:
    """Install the choice of task process into luigi's worker (once per process; see the module's docstring)."""
    create_task_process = luigi.worker.Worker._create_task_process
    if getattr(create_task_process, "cf_task_processes", False):
        return

    def create(worker: luigi.worker.Worker, task: luigi.Task) -> Any:
        process = create_task_process(worker, task)
        if is_bookkeeping(task):
            process.use_multiprocessing = False
        elif process.use_multiprocessing and can_be_pooled(worker, task):
            return PooledTaskProcess(task_pool(worker), task)
        return process

    create.cf_task_processes = True  # type: ignore[attr-defined]
    luigi.worker.Worker._create_task_process = create  # type: ignore[method-assign]


def is_bookkeeping(task: Any) -> bool:
    """Whether ``task``'s ``run()`` only does bookkeeping.

    That is a wrapper, a local workflow that is not sandboxed (it yields its branches), and a task whose class says
    so (``bookkeeping = True``).
    """
    if isinstance(task, law.SandboxTask):
        return False
    if isinstance(task, (luigi.WrapperTask, law.WrapperTask)):
        return True
    if isinstance(task, law.BaseWorkflow) and task.is_workflow():
        return bool(task.effective_workflow == "local")
    return bool(getattr(task, "bookkeeping", False))


def can_be_pooled(worker: luigi.worker.Worker, task: luigi.Task) -> bool:
    """Whether ``task`` can run in a persistent process: see the module's docstring for the exceptions."""
    config = worker._config
    if isinstance(task, law.SandboxTask) or task.accepts_messages:
        return False
    if config.timeout or task.worker_timeout or config.task_process_context:
        return False
    return bool(type(task).from_str_params(task.to_str_params()).task_id == task.task_id)


def task_pool(worker: luigi.worker.Worker) -> TaskProcessPool:
    """The pool of ``worker`` (one per luigi worker, made on first use and stopped when the process exits)."""
    pool: TaskProcessPool | None = getattr(worker, "cf_task_pool", None)
    if pool is None:
        pool = TaskProcessPool(worker)
        worker.cf_task_pool = pool  # type: ignore[attr-defined]
        atexit.register(pool.stop)
    return pool


@dataclass
class PoolProcess:
    """One persistent task process and the scheduling process' end of its pipe."""

    process: multiprocessing.process.BaseProcess
    connection: multiprocessing.connection.Connection
    busy: bool = False


@dataclass
class TaskProcessPool:
    """Up to ``worker.worker_processes`` persistent processes that run the tasks luigi gives them, one at a time."""

    worker: luigi.worker.Worker
    processes: list[PoolProcess] = field(default_factory=list)

    def submit(self, task: luigi.Task) -> PoolProcess:
        """Send ``task`` to an idle process (started if needed; waits for one that is finishing its task)."""
        process = self._idle_process()
        state = {name: task.__dict__[name] for name in getattr(task, "pooled_state", ()) if name in task.__dict__}
        process.connection.send((task.task_id, task.task_module, task.task_family, task.to_str_params(), state))
        process.busy = True
        return process

    def stop(self) -> None:
        """Let every process finish (it is idle when luigi is done) and exit."""
        for process in self.processes:
            try:
                process.connection.send(None)
            except OSError:
                continue
        for process in self.processes:
            process.process.join(timeout=10)
        self.processes = []

    def _idle_process(self) -> PoolProcess:
        while True:
            self.processes = [p for p in self.processes if p.process.is_alive()]
            for process in self.processes:
                if process.busy and process.connection.poll() and not self._finished_task(process):
                    continue
                if not process.busy:
                    return process
            if len(self.processes) < self.worker.worker_processes:
                self.processes.append(self._start_process())
                continue
            # luigi starts a task only when one has finished: its process is about to say so
            multiprocessing.connection.wait([p.connection for p in self.processes], timeout=1.0)

    @staticmethod
    def _finished_task(process: PoolProcess) -> bool:
        """Read what a busy process says: that it finished its task (True), or the end of its pipe (it died)."""
        try:
            process.connection.recv()  # the process put its result on luigi's queue and is idle again
        except EOFError:
            # killed during its task (luigi reports the task as failed): reaped here, replaced in the next round
            process.process.join(timeout=10)
            return False
        process.busy = False
        return True

    def _start_process(self) -> PoolProcess:
        connection, process_end = multiprocessing.Pipe()
        config = self.worker._config
        process = multiprocessing.get_context("fork").Process(
            target=serve,
            args=(process_end, self.worker, config.check_unfulfilled_deps, config.check_complete_on_run),
            name="cf-task-process",
        )
        process.start()
        process_end.close()
        return PoolProcess(process, connection)


@dataclass
class PooledTaskProcess:
    """What luigi's worker sees of a task running in the pool (the part of ``TaskProcess`` it uses)."""

    pool: TaskProcessPool
    task: luigi.Task
    pool_process: PoolProcess | None = None
    use_multiprocessing: bool = True  # luigi then calls start() instead of run()
    timeout_time: float | None = None
    worker_timeout: int = 0

    def start(self) -> None:
        self.pool_process = self.pool.submit(self.task)

    def is_alive(self) -> bool:
        return self.pool_process is None or self.pool_process.process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return None if self.pool_process is None else self.pool_process.process.exitcode

    @property
    def pid(self) -> int | None:
        return None if self.pool_process is None else self.pool_process.process.pid

    def terminate(self) -> None:
        if self.pool_process is not None:
            self.pool_process.process.terminate()


def serve(
    connection: multiprocessing.connection.Connection,
    worker: luigi.worker.Worker,
    check_unfulfilled_deps: bool,
    check_complete_on_run: bool,
) -> None:
    """The loop of a pooled process: run each task it is sent, put its result on luigi's queue, say it is idle."""
    parent = os.getppid()
    while True:
        while not connection.poll(PARENT_CHECK_INTERVAL):
            if os.getppid() != parent:
                return
        try:
            job = connection.recv()
        except EOFError:
            return
        if job is None:
            return
        task_id, module, family, params, state = job
        run_task(worker, task_id, (module, family, params, state), check_unfulfilled_deps, check_complete_on_run)
        connection.send(task_id)


def run_task(
    worker: luigi.worker.Worker,
    task_id: str,
    job: tuple[str, str, dict[str, str], dict[str, Any]],
    check_unfulfilled_deps: bool,
    check_complete_on_run: bool,
) -> None:
    """Run one task as luigi's task process does, in this process (luigi's ``TaskProcess.run``).

    ``job`` is the task's module, family, string parameters and the decisions the scheduling process took for it
    (its class' ``pooled_state``), which the task made here takes over instead of deciding again.
    """
    module, family, params, state = job
    try:
        task = load_task(module, family, params)
        task.__dict__.update(state)
    except Exception as error:  # noqa: BLE001 (any failure goes back to luigi as the task's failure)
        worker._task_result_queue.put((task_id, luigi.worker.FAILED, f"{type(error).__name__}: {error}", [], []))
        return
    reporter = luigi.worker.TaskStatusReporter(worker._scheduler, task.task_id, worker._id, None)
    process = luigi.worker.TaskProcess(
        task,
        worker._id,
        worker._task_result_queue,
        reporter,
        use_multiprocessing=True,
        check_unfulfilled_deps=check_unfulfilled_deps,
        check_complete_on_run=check_complete_on_run,
    )
    process.run()
