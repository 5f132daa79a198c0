"""Batch-system workflows: run the branches of a workflow as Slurm or HTCondor jobs (``--workflow``).

Every branch workflow of cf (one branch per file or per fold) derives from :class:`BatchWorkflow`, so it
accepts ``--workflow local`` (the default), ``--workflow slurm`` and ``--workflow htcondor``. With a batch
workflow, the workflow task submits one job per ``--tasks-per-job`` branches, polls them every
``--poll-interval``, resubmits failed ones up to ``--retries`` times, and fails with the failed jobs' log paths.

A job runs law's job script, which sources :data:`BOOTSTRAP_FILE` (the project's ``setup.sh`` with the
submitting environment's paths, rendered in by law) and then runs ``law run <module>.<Task> ... --branch N``,
exactly what a local run does, including entering the task's sandbox. The checkout, the software and the
store must be on a file system shared with the worker nodes. Job files, the job data (``*_jobs_*.json``) and
the job logs go under ``$CF_JOB_BASE``, in the same directory layout as the task's outputs in the store.

Resources (both batch systems): ``--max-runtime`` (hours unless a unit is given), ``--job-memory`` (MB unless
a unit is given), ``--job-cpus`` and ``--job-gpus`` (default: the task's, 1 for an ML training whose model wants a
GPU, else 0). Slurm also takes ``--slurm-partition``; HTCondor takes
``--htcondor-flavor`` (CERN's ``+JobFlavour``), ``--htcondor-requirements`` (a ClassAd expression),
``--htcondor-universe``, ``--htcondor-pool`` and ``--htcondor-scheduler``. See ``docs/batch_systems.md``.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import logging
import math
import os
import re
from typing import Any, ClassVar

import law
import luigi
from law.contrib.htcondor.workflow import HTCondorWorkflowProxy as LawHTCondorWorkflowProxy
from law.contrib.slurm.job import SlurmJobManager as LawSlurmJobManager
from law.contrib.slurm.workflow import SlurmWorkflowProxy as LawSlurmWorkflowProxy
from law.job.dashboard import NoJobDashboard
from luigi.cmdline_parser import CmdlineParser

from cf.tasks.base import cli_versions
from cf.tasks.workers import is_bookkeeping
from cf.util import UserError, expand_path, unknown_name_message

law.contrib.load("slurm", "htcondor")

__all__ = [
    "BOOTSTRAP_FILE",
    "BOOTSTRAP_VARIABLES",
    "JOINED_WORKFLOWS_VARIABLE",
    "WORKFLOW_TYPES",
    "BatchJobMixin",
    "BatchWorkflow",
    "HTCondorWorkflow",
    "HTCondorWorkflowProxy",
    "SlurmJobManager",
    "SlurmWorkflow",
    "SlurmWorkflowProxy",
    "WorkflowSandboxTask",
    "bootstrap_render_variables",
    "check_job_resources",
    "check_workflow_and_resources",
    "create_job_file",
    "htcondor_runtime_seconds",
    "last_error_in_log",
    "slurm_time",
]

logger = logging.getLogger(__name__)

#: The bootstrap file that every job sources before running its branches.
BOOTSTRAP_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "remote_bootstrap.sh")

#: Environment variables passed to the job (as render variables of the bootstrap file, lower case).
BOOTSTRAP_VARIABLES = (
    "CF_BASE",
    "CF_DATA",
    "CF_SOFTWARE_BASE",
    "CF_VENV_BASE",
    "CF_STORE_LOCAL",
    "CF_JOB_BASE",
    "CF_PYTHON",
    "LAW_HOME",
    "LAW_CONFIG_FILE",
)

#: The joined workflows of a sandbox entry (:class:`WorkflowSandboxTask`), passed into the sandbox process.
JOINED_WORKFLOWS_VARIABLE = "CF_SANDBOX_JOINED_WORKFLOWS"

#: The values of ``--workflow``.
WORKFLOW_TYPES = ("local", "slurm", "htcondor")

#: The CERN HTCondor job flavours (``+JobFlavour``) and their maximum runtimes in hours.
HTCONDOR_FLAVORS = {
    "espresso": 1 / 3,
    "microcentury": 1.0,
    "longlunch": 2.0,
    "workday": 8.0,
    "tomorrow": 24.0,
    "testmatch": 72.0,
    "nextweek": 168.0,
}

#: The job log's name (law inserts the branch range, e.g. ``job_0To1.log``).
JOB_LOG = "job.log"


def slurm_time(hours: float) -> str:
    """A runtime in hours as Slurm's ``--time`` value ``days-hours:minutes:seconds``, rounded up to seconds.

    Example:
        >>> slurm_time(2.5)
        '0-02:30:00'
        >>> slurm_time(30)
        '1-06:00:00'
    """
    seconds = max(1, math.ceil(hours * 3600))
    days, seconds = divmod(seconds, 86400)
    hours_, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{days}-{hours_:02d}:{minutes:02d}:{seconds:02d}"


def htcondor_runtime_seconds(hours: float) -> int:
    """A runtime in hours as the whole seconds of HTCondor's ``+MaxRuntime`` / ``+RequestRuntime``."""
    return max(1, math.ceil(hours * 3600))


def bootstrap_render_variables(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The render variables of the bootstrap file: each of :data:`BOOTSTRAP_VARIABLES`, lower case.

    Variables that are not set render as empty strings, which the bootstrap file skips.
    """
    environ = dict(os.environ if environ is None else environ)
    return {name.lower(): environ.get(name, "") for name in BOOTSTRAP_VARIABLES}


def _with_log_path(data: dict[str, Any]) -> dict[str, Any]:
    """Report the job's stdout as its log (law prints it for failed jobs) when no custom log file is set."""
    if not data.get("log"):
        stdout = data["config"].stdout
        if stdout and not str(stdout).startswith("/dev/"):
            data["log"] = str(stdout)
    return data


class SlurmJobManager(LawSlurmJobManager):
    """law's Slurm job manager, also reading the exit code and reason of finished jobs from ``squeue``.

    Without an accounting daemon, ``squeue -t all`` (law.cfg) is the only source of a finished job's state;
    law's own query reads just the state, so a failed job would show ``code: None, error: None``.
    """

    squeue_format = "JobID:30,State:30,exit_code:20,Reason:200"
    squeue_cre = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\d+)\s*(.*)$")

    @classmethod
    def parse_squeue_output(cls, out: str) -> dict[int, Any]:
        query_data = {}
        for line in out.strip().split("\n"):
            match = cls.squeue_cre.match(line.strip())
            if not match:
                continue
            job_id, state, raw_code, reason = match.groups()
            status = cls.map_status(state)
            # squeue reports the wait status: the exit code in the high byte, a terminating signal in the low one
            code = int(raw_code) >> 8 or (128 + (int(raw_code) & 0x7F) if int(raw_code) & 0x7F else 0)
            error = None
            if status == cls.FAILED:
                reason = reason.strip()
                error = f"slurm state {state.strip('+')}" + (f" ({reason})" if reason and reason != "None" else "")
            query_data[int(job_id)] = cls.job_status_dict(
                job_id=int(job_id),
                status=status,
                code=code if status in (cls.FINISHED, cls.FAILED) else None,
                error=error,
            )
        return query_data


class _BatchProxyMixin:
    """Shared by the Slurm and HTCondor proxies: job log paths and a one-line error when jobs failed."""

    def create_job_file(self, *args: Any) -> dict[str, Any]:
        return _with_log_path(super().create_job_file(*args))  # type: ignore[misc]

    def run(self) -> Any:
        try:
            return super().run()  # type: ignore[misc]
        except Exception as error:
            message = str(error)
            if not message.startswith(("tolerance exceeded", "acceptance of")):
                raise
            raise UserError(self.failure_message(message)) from None

    def failure_message(self, reason: str) -> str:
        """Which jobs (and branches) failed, with the paths of their logs."""
        proxy: Any = self
        failed = [
            (job_num, data)
            for job_num, data in sorted(proxy.job_data.jobs.items())
            if data.get("status") == proxy.job_manager.FAILED
        ]
        jobs = []
        for job_num, data in failed:
            log = data["extra"].get("log")
            job = f"job {job_num} (branches {','.join(map(str, data['branches']))}, code {data.get('code')}): "
            job += log or "no log"
            last_error = last_error_in_log(log) if log else None
            if last_error:
                job += f" ({last_error})"
            jobs.append(job)
        return (
            f"{len(failed)} {proxy.workflow_type} job(s) of {proxy.task.task_family} failed after "
            f"--retries {proxy.task.retries} ({reason}), logs: {'; '.join(jobs)}"
        )


#: A one-line task error in a job log (cf.tasks.base shows bad input as "error: ...").
_LOG_ERROR_CRE = re.compile(r"^ERROR: (?:luigi-interface - )?(error: .+)$", re.MULTILINE)


def last_error_in_log(path: str, max_bytes: int = 1_000_000) -> str | None:
    """The last one-line task error (``error: ...``) in the end of a job log, if the log is readable."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, os.path.getsize(path) - max_bytes))
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    errors = _LOG_ERROR_CRE.findall(text)
    return errors[-1].strip() if errors else None


class SlurmWorkflowProxy(_BatchProxyMixin, LawSlurmWorkflowProxy):
    """law's Slurm proxy, reporting the job log (stdout and stderr in one file) as the log of a job."""


class HTCondorWorkflowProxy(_BatchProxyMixin, LawHTCondorWorkflowProxy):
    """law's HTCondor proxy, reporting the job log as the log of a job."""


class BatchJobMixin:
    """Resources, bootstrap and job directories shared by the Slurm and HTCondor workflows."""

    max_runtime = law.DurationParameter(
        default=2.0,
        unit="h",
        significant=False,
        description="maximum runtime of one job, hours unless a unit is given (e.g. 30min); default: 2h",
    )
    job_memory = law.BytesParameter(
        default=2000.0,
        unit="MB",
        significant=False,
        description="memory of one job, MB unless a unit is given (e.g. 4GB); default: 2000MB",
    )
    job_cpus = luigi.IntParameter(
        default=1,
        significant=False,
        description="CPU cores of one job; default: 1",
    )
    job_gpus = luigi.OptionalIntParameter(
        default=None,
        significant=False,
        description="GPUs of one job (Slurm --gres=gpu:N, HTCondor request_gpus); default: the task's "
        "(cf.MLTraining: 1 when the model wants a GPU, else 0)",
    )

    # clear_logs is a workflow parameter of law that law forgets to exclude from the branches
    exclude_params_branch: ClassVar[set[str]] = {"max_runtime", "job_memory", "job_cpus", "job_gpus", "clear_logs"}

    def job_output_directory(self) -> law.LocalDirectoryTarget:
        """``$CF_JOB_BASE/<the task's store directories>/<version>``: job data, job files' logs.

        The submission directory of the job files themselves is a temporary directory directly in
        ``$CF_JOB_BASE`` (law.cfg ``[job] job_file_dir``).
        """
        base = expand_path(os.environ.get("CF_JOB_BASE") or "$CF_DATA/jobs")
        store_parts = getattr(self, "store_parts", None)
        parts = list(store_parts()) if callable(store_parts) else [str(getattr(self, "task_family", "cf"))]
        store_version = getattr(self, "store_version", None)
        version = store_version() if callable(store_version) else getattr(self, "version", None)
        if version is not None:
            parts.append(str(version))
        return law.LocalDirectoryTarget(os.path.join(base, *parts))

    def job_cmdline_args(self) -> dict[str, str]:
        """The task's own ``--<task family>-version`` for its jobs (:func:`~cf.tasks.base.cli_versions`).

        law passes the global command-line flags on to the jobs, except those of the task's own family, so without
        this a job would write into ``--version`` instead of the pinned version.
        """
        family = str(getattr(self, "task_family", ""))
        version = cli_versions().get(family)
        return {f"--{family}-version": version} if version else {}

    def job_bootstrap_file(self) -> law.JobInputFile:
        """The bootstrap file, copied once into the submission directory and rendered inside the job."""
        return law.JobInputFile(BOOTSTRAP_FILE, share=True, render_job=True)

    def job_memory_mb(self) -> int:
        return max(1, math.ceil(float(self.job_memory)))

    def job_gpu_count(self) -> int:
        """``--job-gpus``, or :meth:`default_job_gpus` when it is not given."""
        return self.default_job_gpus() if self.job_gpus is None else int(self.job_gpus)

    def default_job_gpus(self) -> int:
        """The GPUs of one job without ``--job-gpus`` (a task whose work wants a GPU says 1)."""
        return 0


def check_job_resources(params: dict[str, Any]) -> None:
    """Refuse job resources that no batch system accepts, naming the parameter (before anything runs)."""
    max_runtime = params.get("max_runtime", 1.0)
    if max_runtime <= 0:
        raise UserError(f"--max-runtime must be positive, got {max_runtime:g}h")
    if params.get("job_memory", 1.0) <= 0:
        raise UserError(f"--job-memory must be positive, got {params['job_memory']:g}MB")
    if params.get("job_cpus", 1) < 1:
        raise UserError(f"--job-cpus must be at least 1, got {params['job_cpus']}")
    if (params.get("job_gpus") or 0) < 0:
        raise UserError(f"--job-gpus must be at least 0, got {params['job_gpus']}")
    for name, minimum in (("tasks_per_job", 1), ("retries", 0), ("submission_threads", 1)):
        if params.get(name, minimum) < minimum:
            raise UserError(f"--{name.replace('_', '-')} must be at least {minimum}, got {params[name]}")
    if params.get("parallel_jobs", -1) not in {-1} and params.get("parallel_jobs", -1) < 1:
        raise UserError(f"--parallel-jobs must be at least 1 (or -1 for no limit), got {params['parallel_jobs']}")
    flavor = params.get("htcondor_flavor")
    if flavor and max_runtime > HTCONDOR_FLAVORS[flavor]:
        raise UserError(
            f"--max-runtime {max_runtime:g}h exceeds the {HTCONDOR_FLAVORS[flavor]:g}h of --htcondor-flavor {flavor}",
        )


class SlurmWorkflow(BatchJobMixin, law.slurm.SlurmWorkflow):
    """Runs the branches as Slurm jobs (``--workflow slurm``).

    Each job gets ``#SBATCH --time / --mem / --cpus-per-task`` from ``--max-runtime``, ``--job-memory`` and
    ``--job-cpus`` (plus ``--gres=gpu:N`` with GPUs, ``--partition`` with ``--slurm-partition``); its stdout and
    stderr go to one log file
    next to the job data, appended to on resubmission.
    """

    workflow_proxy_cls = SlurmWorkflowProxy
    exclude_index = True

    def slurm_cmdline_args(self) -> dict[str, str]:
        return {**super().slurm_cmdline_args(), **self.job_cmdline_args()}

    def slurm_output_directory(self) -> law.LocalDirectoryTarget:
        return self.job_output_directory()

    def slurm_bootstrap_file(self) -> law.JobInputFile:
        return self.job_bootstrap_file()

    def slurm_job_manager_cls(self) -> type[SlurmJobManager]:
        return SlurmJobManager

    def slurm_job_config(self, config: Any, job_num: int, branches: list[int]) -> Any:
        config.render_variables.update(bootstrap_render_variables())
        config.custom_content.append(("time", slurm_time(self.max_runtime)))
        config.custom_content.append(("mem", f"{self.job_memory_mb()}M"))
        config.custom_content.append(("cpus-per-task", str(self.job_cpus)))
        if self.job_gpu_count():
            config.custom_content.append(("gres", f"gpu:{self.job_gpu_count()}"))
        config.custom_content.append(("ntasks", "1"))
        # a resubmitted job appends to the log of its first attempt
        config.custom_content.append(("open-mode", "append"))
        config.stdout = JOB_LOG
        config.stderr = JOB_LOG
        return config

    def slurm_destination_info(self, info: dict[str, str]) -> dict[str, str]:
        info["resources"] = (
            f"time {slurm_time(self.max_runtime)}, mem {self.job_memory_mb()}M, cpus {self.job_cpus}, "
            f"gpus {self.job_gpu_count()}"
        )
        return info


class HTCondorWorkflow(BatchJobMixin, law.htcondor.HTCondorWorkflow):
    """Runs the branches as HTCondor jobs (``--workflow htcondor``), assuming a shared file system.

    Each job requests ``request_cpus``, ``request_memory`` (MB), ``request_gpus`` (with GPUs) and its runtime as ``+MaxRuntime`` (CERN)
    and ``+RequestRuntime`` (DESY) in seconds; ``--htcondor-flavor`` adds CERN's ``+JobFlavour`` and
    ``--htcondor-requirements`` a ``requirements`` expression. The combined job log (``job_*.log``), the
    job's stdout / stderr and HTCondor's own event log (``condor_*.log``) go next to the job data.
    """

    workflow_proxy_cls = HTCondorWorkflowProxy
    exclude_index = True

    htcondor_flavor = luigi.ChoiceParameter(
        default="",
        choices=("", *HTCONDOR_FLAVORS),
        significant=False,
        description="CERN job flavour (+JobFlavour), e.g. espresso, microcentury, longlunch, workday; default: none",
    )
    htcondor_requirements = luigi.Parameter(
        default="",
        significant=False,
        description="a ClassAd requirements expression, e.g. 'OpSysAndVer == \"AlmaLinux9\"'; default: none",
    )
    htcondor_universe = luigi.Parameter(
        default="vanilla",
        significant=False,
        description="the HTCondor universe; default: vanilla",
    )

    exclude_params_branch: ClassVar[set[str]] = {"htcondor_flavor", "htcondor_requirements", "htcondor_universe"}

    def htcondor_cmdline_args(self) -> dict[str, str]:
        return {**super().htcondor_cmdline_args(), **self.job_cmdline_args()}

    def htcondor_output_directory(self) -> law.LocalDirectoryTarget:
        return self.job_output_directory()

    def htcondor_bootstrap_file(self) -> law.JobInputFile:
        return self.job_bootstrap_file()

    def htcondor_job_config(self, config: Any, job_num: Any, branches: Any) -> Any:
        log_dir = self.job_output_directory().abspath
        runtime = htcondor_runtime_seconds(self.max_runtime)
        config.render_variables.update(bootstrap_render_variables())
        config.universe = self.htcondor_universe
        config.log = os.path.join(log_dir, "condor.log")
        config.stdout = "job.out"
        config.stderr = "job.err"
        # stdout and stderr of the job script in one file, transferred back to the log directory
        config.custom_log_file = JOB_LOG
        config.custom_content.append(("request_cpus", str(self.job_cpus)))
        config.custom_content.append(("request_memory", str(self.job_memory_mb())))
        if self.job_gpu_count():
            config.custom_content.append(("request_gpus", str(self.job_gpu_count())))
        config.custom_content.append(("+MaxRuntime", str(runtime)))
        config.custom_content.append(("+RequestRuntime", str(runtime)))
        if self.htcondor_flavor:
            config.custom_content.append(("+JobFlavour", f'"{self.htcondor_flavor}"'))
        if self.htcondor_requirements:
            config.custom_content.append(("requirements", self.htcondor_requirements))
        return config

    def htcondor_destination_info(self, info: dict[str, str]) -> dict[str, str]:
        info["resources"] = (
            f"runtime {self.max_runtime:g}h, memory {self.job_memory_mb()}MB, cpus {self.job_cpus}, "
            f"gpus {self.job_gpu_count()}"
        )
        return info


#: The local workflows (task ids) that yielded their branches, where their ``run()`` is always in this process.
_YIELDED_WORKFLOWS: set[str] = set()


class LocalWorkflowProxy(law.workflow.local.LocalWorkflowProxy):
    """law's local workflow proxy, remembering in this process which workflows yielded their branches.

    law keeps that record in a multiprocessing manager, a server process that every ``law run`` running a local
    workflow starts (about 0.2 s), so that the forked task processes of ``--workers N > 1`` share it: a workflow
    that yields its branches runs again once they are done, maybe in another process. A set in this process
    does the same wherever each run of the workflow is in the ``law run`` process itself: with one worker, and
    with N workers for the workflows that are bookkeeping (:func:`cf.tasks.workers.is_bookkeeping`: not
    sandboxed), which never leave it. Only a sandboxed local workflow of a parallel run needs law's manager.
    """

    @property
    def _local_workflow_has_yielded(self) -> bool:
        if not self._runs_in_this_process():
            return bool(super()._local_workflow_has_yielded)
        return self.live_task_id in _YIELDED_WORKFLOWS

    @_local_workflow_has_yielded.setter
    def _local_workflow_has_yielded(self, value: bool) -> None:
        if not self._runs_in_this_process():
            law.workflow.local.LocalWorkflowProxy._local_workflow_has_yielded.fset(self, value)
        elif value:
            _YIELDED_WORKFLOWS.add(self.live_task_id)
        else:
            _YIELDED_WORKFLOWS.discard(self.live_task_id)

    def _runs_in_this_process(self) -> bool:
        return luigi.interface.core().workers == 1 or is_bookkeeping(self.task)


class LocalWorkflow(law.LocalWorkflow):
    """law's local workflow with :class:`LocalWorkflowProxy`."""

    workflow_proxy_cls = LocalWorkflowProxy


class BatchWorkflow(LocalWorkflow, SlurmWorkflow, HTCondorWorkflow):
    """A workflow whose branches run locally (default), as Slurm jobs or as HTCondor jobs (``--workflow``).

    An unknown ``--workflow`` value and impossible resources are refused before anything runs (law would
    silently fall back to ``local`` for an unknown value). ``--workflow`` is passed on to required workflows
    (``Task.req``), so upstream workflows that are not complete yet run on the same batch system; a task that
    is not a workflow (a merge) requires its inputs with the default ``local``.
    """

    exclude_index = True

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        check_workflow_and_resources(params)
        return super().modify_param_values(params)


def batch_parameters_of(workflow_cls: type[law.Task], task_base: type[law.Task]) -> type:
    """A mixin with the batch parameters of ``workflow_cls`` that ``task_base`` lacks.

    For a task that is no workflow but requires one and passes ``--workflow``, ``--poll-interval``,
    ``--job-memory``, ... on to it (``req`` copies parameters of the same name); the branch selection stays the
    workflow's own.
    """
    skipped = {name for name, _ in task_base.get_params()} | set(workflow_cls.interactive_params)
    skipped |= {"branch", "branches", "effective_workflow"}
    params = {name: param for name, param in workflow_cls.get_params() if name not in skipped}
    return type(f"{workflow_cls.__name__}BatchParameters", (), params)


def check_workflow_and_resources(params: dict[str, Any]) -> None:
    """Refuse an unknown ``--workflow`` (law would fall back to ``local``) and impossible job resources."""
    workflow = params.get("workflow")
    if workflow not in (None, "", law.NO_STR) and workflow not in WORKFLOW_TYPES:
        raise UserError(unknown_name_message("workflow", workflow, WORKFLOW_TYPES))
    check_job_resources(params)


def create_job_file(
    task: BatchWorkflow,
    branches: list[int] | None = None,
    job_num: int = 1,
    directory: str | None = None,
) -> dict[str, Any]:
    """Write the submission file of one job of a Slurm or HTCondor workflow without submitting it.

    Goes through law's workflow proxy and job file factory, exactly like a submission does, so the file can
    be inspected (e.g. for a new site's resources) or tested.

    Args:
        task: The workflow, created with ``workflow="slurm"`` or ``workflow="htcondor"``.
        branches: The branches of the job (default: all branches of the workflow).
        job_num: The job number (law counts from 1).
        directory: Where to write the job file and the shared input files (default: a new temporary directory
            in law.cfg's ``[job] job_file_dir``).

    Returns:
        law's job data: ``"job"`` (the submission file's path), ``"config"`` (the final job config) and
        ``"log"`` (the job log path).
    """
    if task.effective_workflow not in ("slurm", "htcondor"):
        raise ValueError(f"task {task!r} is not a batch workflow, its workflow is '{task.effective_workflow}'")
    proxy = task.workflow_proxy
    if branches is None:
        branches = sorted(task.branch_map)
    kwargs = {"dir": directory, "mkdtemp": False} if directory else {}
    proxy.job_file_factory = proxy.create_job_file_factory(**kwargs)
    if proxy.dashboard is None:
        proxy.dashboard = NoJobDashboard()
    # law reads the global command line arguments (--local-scheduler, --log-level, ...) from luigi's parser
    with contextlib.ExitStack() as stack:
        if CmdlineParser.get_instance() is None:
            stack.enter_context(CmdlineParser.global_instance([task.task_family]))
        if task.effective_workflow == "htcondor" and proxy.job_manager.job_grouping_submit:
            return proxy.create_job_file({job_num: list(branches)})
        return proxy.create_job_file(job_num, list(branches))


class WorkflowSandboxTask(law.SandboxTask):
    """A sandboxed workflow whose local branches run in one sandbox process, shared with its sibling workflows.

    law enters a task's sandbox once per branch: a new process that imports the sandbox's software and
    resolves the task's parameters again, about 2 s per branch with TensorFlow or ONNX Runtime, often more than
    the work of the branch (one file's evaluation). With one worker (the default), a local workflow of this
    class enters its sandbox once instead and runs its incomplete branches there, one after the other, in that
    process (law's sandbox runs exactly one task, so the branches are run directly, not scheduled).

    The same process also runs the *joined* workflows: the other local workflows of this kind in the same
    sandbox that the ``law run`` needs (found in its task graph), are incomplete and whose requirements are
    complete, e.g. the evaluations of every dataset of a plot. Each branch still writes its own output
    atomically; when luigi later runs a joined workflow, it finds its branches complete and does not enter the
    sandbox again. A joined workflow that fails in the shared process is left to its own run, which enters the
    sandbox and reports the error as its own.

    A workflow whose sandbox is empty (the base environment, e.g. ``cf.MLEvaluation`` with ONNX) runs its
    incomplete branches in the same way, directly in the ``law run`` process: with one worker luigi would run them
    one after the other there too, at the cost of scheduling each branch as a task (and law's process-shared
    bookkeeping of the yielded branches). The workflow's ``done:`` line stands for its branches.

    With ``--workers N > 1``, each branch enters the sandbox in its own process as usual, ``N`` at a time. A
    single branch (``--branch N``) and batch workflows (each job enters the sandbox for its own branches) are
    unchanged.
    """

    def __getattribute__(self, attr: str, proxy: bool | None = None) -> Any:
        if attr == "run" and proxy is not False and runs_branches_in_one_sandbox(self):
            if self.effective_sandbox == law.NO_STR:
                return super().__getattribute__("run_own_branches")
            if not self.is_sandboxed():
                return super().__getattribute__("enter_sandbox_once")
            if self.is_sandboxed_task():
                return super().__getattribute__("run_branches_in_process")
        return super().__getattribute__(attr, proxy=proxy)

    def enter_sandbox_once(self) -> None:
        """Outside the sandbox: enter it for this workflow and the joined ones, unless a sibling already ran it."""
        if self.complete():
            return
        self._joined_workflows = joinable_workflows(self)
        for workflow in self._joined_workflows:
            workflow.sandbox_pre_run()
        self.sandbox_proxy.run()

    def sandbox_env(self, env: dict[str, str]) -> dict[str, str]:
        # always set, so that the sandbox environment law caches from an earlier entry never carries a stale list
        joined = getattr(self, "_joined_workflows", [])
        return {**super().sandbox_env(env), JOINED_WORKFLOWS_VARIABLE: dump_workflows(joined)}

    def run_own_branches(self) -> None:
        """Without a sandbox: run the incomplete branches in this process, as inside a sandbox."""
        run_incomplete_branches(self, self)

    def run_branches_in_process(self) -> None:
        """Inside the sandbox: run the incomplete branches of this workflow, then those of the joined ones."""
        run_incomplete_branches(self, self)
        for workflow in load_workflows(os.environ.get(JOINED_WORKFLOWS_VARIABLE, "")):
            try:
                run_incomplete_branches(workflow, self)
            except Exception as error:  # noqa: BLE001 - the joined workflow's own run reports it
                logger.warning(f"{workflow.task_id} failed in the shared sandbox, left to its own run: {error}")


def run_incomplete_branches(workflow: WorkflowSandboxTask, reporter: law.Task) -> None:
    """Run the incomplete branches of ``workflow`` in this process; progress goes to ``reporter``'s scheduler."""
    branch_tasks = [task for task in workflow.get_branch_tasks().values() if not task.complete()]
    for done, branch_task in enumerate(branch_tasks):
        # the branches report to the scheduler through the workflow that luigi runs
        branch_task.set_status_message = reporter.set_status_message
        branch_task.set_progress_percentage = lambda _: None
        branch_task.run()
        reporter.publish_progress(100.0 * (done + 1) / len(branch_tasks))


def joinable_workflows(task: WorkflowSandboxTask) -> list[WorkflowSandboxTask]:
    """The other workflows that ``task``'s sandbox process can run: in the graph of the ``law run``, ready.

    They are local :class:`WorkflowSandboxTask` workflows run by one worker, in the same sandbox, incomplete,
    and their requirements are complete. Without a command-line root task (e.g. ``luigi.build``) there are none.
    """
    root = law.parser.root_task()
    if root is None:
        return []
    return [other for other in task_graph(root) if other.task_id != task.task_id and can_join(task, other)]


def can_join(task: WorkflowSandboxTask, other: law.Task) -> bool:
    """Whether ``other`` is a local sandbox workflow like ``task``, incomplete and ready to run."""
    if not isinstance(other, WorkflowSandboxTask) or not runs_branches_in_one_sandbox(other):
        return False
    if other.effective_sandbox != task.effective_sandbox or other.complete():
        return False
    return all(requirement.complete() for requirement in law.util.flatten(other.deps()))


def task_graph(root: law.Task) -> list[law.Task]:
    """``root`` and the tasks it requires, directly or not, each once, in a stable order.

    The requirements of a :class:`WorkflowSandboxTask` are not followed: a workflow that one of them needs runs
    before it, so it is seldom ready when the other is about to run, and the upstream graph can be large.
    """
    seen: dict[str, law.Task] = {}
    pending = [root]
    while pending:
        task = pending.pop()
        if task.task_id in seen:
            continue
        seen[task.task_id] = task
        if not isinstance(task, WorkflowSandboxTask):
            pending.extend(reversed(law.util.flatten(task.deps())))
    return list(seen.values())


def dump_workflows(workflows: list[law.Task]) -> str:
    """The workflows as base64 of json: each one's module, class and string parameters (empty for none).

    base64, because law exports the value in double quotes without escaping it.
    """
    if not workflows:
        return ""
    entries = [[type(task).__module__, type(task).__name__, task.to_str_params()] for task in workflows]
    return base64.urlsafe_b64encode(json.dumps(entries).encode()).decode()


def load_workflows(text: str) -> list[law.Task]:
    """The workflows of :func:`dump_workflows`, created again in this process."""
    if not text:
        return []
    entries = json.loads(base64.urlsafe_b64decode(text))
    return [getattr(importlib.import_module(module), name).from_str_params(params) for module, name, params in entries]


def runs_branches_in_one_sandbox(task: law.SandboxTask) -> bool:
    """Whether ``task`` is a local workflow (not a branch) run by a single luigi worker."""
    if not isinstance(task, law.BaseWorkflow) or not task.is_workflow():
        return False
    return task.effective_workflow == "local" and luigi.interface.core().workers == 1
