"""Base classes of all cf tasks: parameters, their validation, store paths and chunked processing.

The hierarchy is short on purpose: ``AnalysisTask -> ConfigTask -> DatasetTask``, plus one parameter
mixin per kind of choice (shift, calibrators, selector, producers). Every parameter is resolved and
validated in ``modify_param_values`` so that a bad value fails before any task runs, with a message that
names the value and lists the allowed ones.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import logging
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import law
import luigi
from luigi.cmdline_parser import CmdlineParser
from luigi.task_register import Register, TaskClassException

from cf.analysis import analysis_setting, get_config, get_dataset, get_shift, load_analysis, load_modules
from cf.columnar_util import Route, add_empty_collections
from cf.contract import check_config, config_entry, dataset_entry
from cf.functions import ColumnFunction, Registry, calibrators, producers, selectors
from cf.io import (
    DEFAULT_CHUNK_SIZE,
    TASK_PROCESSES_ENV,
    EventSource,
    InputFileError,
    OutputFileError,
    iter_event_chunks,
    merged_chunk,
    open_source,
    resolve_columns,
    storage_errno,
    task_processes,
)
from cf.ml import model_spec_store_name
from cf.tasks.workers import use_task_processes
from cf.util import UserError, expand_path

__all__ = [
    "AnalysisTask",
    "CalibratorsMixin",
    "ConfigTask",
    "DatasetTask",
    "ProducersMixin",
    "SelectorMixin",
    "ShiftMixin",
    "cli_versions",
    "function_store_parts",
    "pinned_version",
    "printing_status_tree",
    "producer_instances",
]


#: law's message when a sandbox script fails (e.g. pip cannot install a requirement).
_SANDBOX_FAILURE = re.compile(r"^\S*?([^/\s]+?)(?:\.sh)? env loading failed with exit code (\d+)$")
#: law's message when a task failed inside its sandbox, whose process showed the task's error already.
_SANDBOXED_TASK_FAILURE = re.compile(r"^sandbox '.*' failed with exit code \d+, please see the error inside")


class _OneLineUserErrors(logging.Filter):
    """Shows bad input and outputs that cannot be stored as one line, not a traceback.

    Bad input is a :class:`~cf.util.UserError` or an unreadable input file; an output cannot be stored when there
    is no space, a quota or a file size limit, or the place is read-only or forbidden. An error repeated by
    several tasks is shown once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.shown: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and storage_errno(error) is not None and not isinstance(error, OutputFileError):
            error = OutputFileError(f"cannot store an output: {error}")
        if error is not None and _SANDBOXED_TASK_FAILURE.search(str(error)):
            return False  # the task's own error was shown by the sandbox process, above
        failed_sandbox = _SANDBOX_FAILURE.search(str(error)) if error is not None else None
        if failed_sandbox:
            name, code = failed_sandbox.groups()
            error = UserError(f"the sandbox '{name}' could not be set up (exit code {code}); its messages are above")
        if isinstance(error, (UserError, InputFileError, OutputFileError)):
            record.msg = f"error: {error}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            # the same error of several tasks (e.g. every branch entering a broken sandbox) is shown once
            if record.msg in self.shown:
                return False
            self.shown.add(record.msg)
        return True


def show_user_errors_as_one_line() -> None:
    """Install :class:`_OneLineUserErrors` on luigi's logger, once (when the first task is made, not on import)."""
    logger = logging.getLogger("luigi-interface")
    if not any(isinstance(f, _OneLineUserErrors) for f in logger.filters):
        logger.addFilter(_OneLineUserErrors())


class RunReport:
    """One line per finished task, and a summary when the process ends.

    The summary says what ran, what was complete already and where the outputs of the last task are. Installed
    once per process when the first task is made (:func:`report_runs`); silent inside a sandbox, whose tasks the
    outer process reports. With ``--workers N > 1`` luigi runs each task in a forked process whose memory the
    summary never sees: every finished task is therefore appended to a file shared across the fork (an unlinked
    temporary file opened with ``O_APPEND``, so that the lines of concurrent tasks never mix).
    """

    def __init__(self) -> None:
        self.tasks: dict[str, Any] = {}
        self.present_ids: set[str] = set()
        self.failed: set[str] = set()
        self.last_present: Any = None
        descriptor, path = tempfile.mkstemp(prefix="cf_runs_")
        os.close(descriptor)
        self.record = os.open(path, os.O_RDWR | os.O_APPEND)
        os.unlink(path)

    def finished(self, task: Any, seconds: float) -> None:
        os.write(self.record, f"{task.task_id}\t{seconds}\n".encode())
        self.tasks[task.task_id] = task
        print(f"done: {describe_task(task)} ({seconds:.1f} s)", flush=True)

    def discovered(self, task: Any, dependency: Any) -> None:
        self.tasks[task.task_id] = task
        self.tasks[dependency.task_id] = dependency

    def present(self, task: Any) -> None:
        self.present_ids.add(task.task_id)
        self.tasks[task.task_id] = task
        self.last_present = task

    def failure(self, task: Any, error: BaseException) -> None:
        self.failed.add(task.task_id)

    def runs(self) -> list[tuple[str, float]]:
        """The finished tasks of this process and its forked workers: (task id, seconds), in order."""
        os.lseek(self.record, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self.record, 1 << 16):
            chunks.append(chunk)
        lines = b"".join(chunks).decode().splitlines()
        return [(task_id, float(seconds)) for task_id, seconds in (line.split("\t") for line in lines)]

    def summary(self) -> str:
        """The summary line, or an empty string when nothing ran or was checked."""
        runs = self.runs()
        ran = {task_id for task_id, _ in runs}
        complete = len(self.present_ids - ran)
        if not (ran or complete or self.failed):
            return ""
        seconds = sum(seconds for _, seconds in runs)
        text = f"summary: {len(ran)} task(s) ran ({seconds:.1f} s), {complete} were complete already"
        # the task asked for: the last one that ran, or the last found complete when none ran
        last = self.tasks.get(runs[-1][0]) if runs else self.last_present
        if self.failed:
            text += f", {len(self.failed)} failed"
        elif isinstance(last, AnalysisTask):
            text += f"; the outputs of {last.task_family} are in {last.local_path()}"
        return text

    def print_summary(self) -> None:
        text = self.summary()
        if text:
            print(text, flush=True)


def describe_task(task: Any) -> str:
    """``cf.CalibrateEvents tt_sl_powheg branch 0``: the family and the parameters that tell tasks apart."""
    parts = [task.task_family]
    for name in ("config", "dataset", "ml_model", "inference_model"):
        value = getattr(task, name, None)
        if isinstance(value, str) and value:
            parts.append(value)
    fold = getattr(task, "fold", None)
    if isinstance(fold, int) and "branch" not in task.param_kwargs:
        parts.append(f"fold {fold}")
    shift = getattr(task, "shift", "nominal")
    if shift != "nominal":
        parts.append(f"shift {shift}")
    branch = getattr(task, "branch", -1)
    if isinstance(branch, int) and branch >= 0:
        parts.append(f"branch {branch}")
    return " ".join(parts)


@functools.cache
def report_runs() -> RunReport | None:
    """Report finished tasks and print a summary at exit (once per process; not inside a sandbox)."""
    if os.environ.get("LAW_SANDBOX_SWITCHED"):
        return None
    report = RunReport()
    AnalysisTask.event_handler(luigi.Event.PROCESSING_TIME)(report.finished)
    AnalysisTask.event_handler(luigi.Event.DEPENDENCY_DISCOVERED)(report.discovered)
    AnalysisTask.event_handler(luigi.Event.DEPENDENCY_PRESENT)(report.present)
    AnalysisTask.event_handler(luigi.Event.FAILURE)(report.failure)
    atexit.register(report.print_summary)
    return report


def store_base() -> str:
    """The directory of all outputs: ``$CF_STORE_LOCAL`` (default ``$CF_DATA/store``)."""
    return expand_path(os.environ.get("CF_STORE_LOCAL", "$CF_DATA/store"))


@functools.cache
def check_store_writable(base: str) -> None:
    """Make sure outputs can be written below ``base`` (once per process), before any task runs.

    Raises:
        UserError: If the directory cannot be created or written to.
    """
    try:
        os.makedirs(base, exist_ok=True)
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as error:
        raise UserError(
            f"the store '{base}' is not writable ({error.strerror}); set CF_STORE_LOCAL to a writable directory",
        ) from None


#: glibc's ``mallopt`` parameters (malloc.h) and the values set by :func:`reuse_freed_memory`.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD_BYTES = 128 << 20
MMAP_THRESHOLD_BYTES = 32 << 20  # the largest glibc accepts on 64-bit systems


@functools.cache
def reuse_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for the next chunk instead of returning it to the system.

    Every chunk allocates its arrays anew. By default, blocks above a (growing) threshold are separate mappings
    and freed memory at the top of the heap goes back to the system, so the next chunk's arrays touch fresh pages,
    each a page fault (~8 µs here). With freed memory kept in the heap (its top released above 128 MiB, and the
    heap's free memory above 256 MiB after a task by :func:`release_freed_memory`) and arrays up to 32 MiB taken
    from it, the chunks and tasks reuse the same pages: a chain over 8M events takes ~50k page faults instead of
    673k, over 1M ~50k instead of 227k (with pyarrow's buffers from the same heap: ``ARROW_DEFAULT_MEMORY_POOL``
    in ``setup.sh``).
    Without glibc (macOS, musl) nothing changes. Once per process; forked task processes inherit it.
    """
    mallopt = getattr(libc(), "mallopt", None)
    if mallopt is None:
        return
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    AnalysisTask.event_handler(luigi.Event.SUCCESS)(release_freed_memory)


#: Free memory the heap may keep between tasks (:func:`release_freed_memory`).
KEPT_FREE_BYTES = 256 << 20


class MallocInfo(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (malloc.h): the heap's sizes in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost"
        )
    ]  # fmt: skip


def release_freed_memory(task: Any) -> None:
    """After a task, give the heap's free memory back to the system (glibc's ``malloc_trim``) above 256 MiB.

    Freed memory kept in the heap saves the next task a page fault for every page it uses again: released after
    every task, a chain over 1M events took 167k page faults instead of 50k (0.2-0.3 s of its 5.5 s) and one
    with two workers 205k instead of 105k. The bound limits what a process holds without using it (after a task
    that needed much more memory than the next ones, or a heap fragmented over many chunks): peak RSS of the chain
    grows by ~10% from 1M to 8M events (the performance page). Without glibc's ``mallinfo2`` (glibc < 2.33) the
    memory is released after every task.
    """
    mallinfo2 = heap_info()
    if mallinfo2 is not None and mallinfo2().fordblks <= KEPT_FREE_BYTES:
        return
    libc().malloc_trim(0)


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library of this process (its ``mallopt`` and ``malloc_trim``; both only in glibc)."""
    return ctypes.CDLL(None)


@functools.cache
def heap_info() -> Any:
    """The C library's ``mallinfo2`` returning :class:`MallocInfo`, or None without it (glibc < 2.33, other libcs)."""
    mallinfo2 = getattr(libc(), "mallinfo2", None)
    if mallinfo2 is not None:
        mallinfo2.restype = MallocInfo
    return mallinfo2


@functools.cache
def check_workers() -> None:
    """Refuse ``--workers`` below 1 and a ``CF_TASK_PROCESSES`` that is not a positive integer (once per process).

    luigi's core config is the same for every task of the process.

    Raises:
        UserError: Naming the value.
    """
    workers = luigi.interface.core().workers
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    task_processes()  # a preset CF_TASK_PROCESSES must be valid before any task writes
    if workers > 1:
        # the task processes share the cores: their parquet writes stay in their thread (cf.io; a preset value is kept)
        os.environ.setdefault(TASK_PROCESSES_ENV, str(workers))
        import_before_forking()
        use_task_processes()


def import_before_forking() -> None:
    """Import the modules that the event tasks import on first use, in the process that luigi forks tasks from.

    With ``--workers N > 1`` luigi runs every task in a new process forked from this one: a module imported inside
    a task is imported again by every task. uproot (ROOT files) and coffea's behaviours (four-vectors) take ~0.6 s
    together, paid once here instead of once per task that reads a NanoAOD file or uses four-vectors.
    """
    import uproot  # noqa: F401

    from cf.behaviour import nanoaod_behavior

    nanoaod_behavior()


def exit_without_teardown() -> None:
    """End a ``law run`` process as soon as luigi has its exit code and the exit handlers have run.

    After the last task, Python's shutdown frees every object and module one by one: ~0.25 s of a chain run over
    1M events, for memory the system reclaims at once anyway. The exit handlers (the run's summary, logging, the
    task processes of ``--workers N``) and the flushing of stdout and stderr still run; the exit code is luigi's.
    Under a profiler or a coverage tool (``python -m cProfile ... law run``) the process shuts down as usual.
    Installed (once) only in the ``law`` command's own process, when this module is imported: before ``law run``
    hands the command line to luigi.
    """
    import luigi.cmdline

    run_with_retcodes = luigi.cmdline.run_with_retcodes
    if os.path.basename(sys.argv[0]) != "law" or getattr(run_with_retcodes, "cf_exits", False):
        return

    def run_and_exit(argv: list[str]) -> None:
        try:
            run_with_retcodes(argv)
            code: Any = 0
        except SystemExit as exit:
            code = exit.code
        if sys.getprofile() is not None or sys.gettrace() is not None:
            raise SystemExit(code)  # a profiler or coverage tool writes its results in the normal shutdown
        atexit._run_exitfuncs()
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)

    run_and_exit.cf_exits = True  # type: ignore[attr-defined]
    luigi.cmdline.run_with_retcodes = run_and_exit


#: luigi's command-line parsers built so far, by (root task, help for all tasks, number of registered task classes).
_COMMAND_LINE_PARSERS: dict[tuple[str | None, bool, int], Any] = {}


def reuse_command_line_parsers() -> None:
    """Let luigi build its command-line parser once per root task instead of nine times per ``law run``.

    luigi's parser has a flag for every parameter of every registered task class (~900 in a chain run, ~11 ms to
    build), a ``CmdlineParser`` builds it three times, and luigi makes three of them for the same command line
    (the exit codes, the run, the summary): ~0.1 s of every ``law run``, half of a run that finds everything
    complete. The parser depends only on the root task, on whether the help lists every task, and on the task
    classes registered: a built one is reused while no class is added (argparse does not change a parser while
    parsing). Installed (once) only in the ``law`` command's own process, as :func:`exit_without_teardown`.
    """
    build = CmdlineParser._build_parser
    if os.path.basename(sys.argv[0]) != "law" or getattr(build, "cf_reused", False):
        return

    def build_or_reuse(root_task: str | None = None, help_all: bool = False) -> Any:
        key = (root_task, bool(help_all), len(Register._reg))
        if key not in _COMMAND_LINE_PARSERS:
            _COMMAND_LINE_PARSERS[key] = build(root_task=root_task, help_all=help_all)
        return _COMMAND_LINE_PARSERS[key]

    build_or_reuse.cf_reused = True  # type: ignore[attr-defined]
    CmdlineParser._build_parser = staticmethod(build_or_reuse)  # type: ignore[method-assign]


exit_without_teardown()
reuse_command_line_parsers()


@functools.cache
def _matches_any(name: str, patterns: tuple[str, ...]) -> bool:
    return bool(law.util.multi_match(name, patterns, any))


def cached_multi_match(name: Any, patterns: Any, mode: Any = any, *args: Any, **kwargs: Any) -> bool:
    """The result of law's ``multi_match`` for a name and any of a set of patterns, remembered.

    law's ``req_params`` matches every parameter of a task against the exclusion patterns of the two task classes
    whenever one task requires another: ~15k fnmatch calls in a chain run (0.7 s of 20 s profiled), always with the
    same few names and patterns. Installed as ``law.task.base.multi_match`` by :func:`remember_parameter_matching`.
    """
    items = law.util.make_list(patterns)
    if mode is any and not args and not kwargs and isinstance(name, str) and all(isinstance(p, str) for p in items):
        return _matches_any(name, tuple(sorted(set(items))))
    return bool(law.util.multi_match(name, items, mode, *args, **kwargs))


@functools.cache
def remember_parameter_matching() -> None:
    """Let law's ``req_params`` use :func:`cached_multi_match` (once per process, when the first task is made)."""
    law.task.base.multi_match = cached_multi_match


#: True while law prints a run's status tree (``--print-status``): tasks may then list what they would run.
_status_tree_printing: list[bool] = []


def printing_status_tree() -> bool:
    """Whether law is printing the status tree of the run (``--print-status``) in this process."""
    return bool(_status_tree_printing)


class AnalysisTask(law.Task):
    """A task of the analysis named in law.cfg; its outputs live under ``$CF_STORE_LOCAL``."""

    task_namespace = "cf"

    version = luigi.Parameter(description="version of the outputs; part of every output path")
    chunk_size = luigi.IntParameter(
        default=0,
        significant=False,
        description="events per chunk when reading files; default: chunk_size in law.cfg [analysis] (50000)",
    )

    @property
    def analysis_inst(self) -> Any:
        return load_analysis()

    @classmethod
    def get_params(cls) -> list[tuple[str, luigi.Parameter]]:
        """The luigi parameters of the class, found once per class.

        luigi walks ``dir(cls)`` on every call, and law calls it for every task made and every ``req``: thousands
        of times in a run of the chain. The parameters of a task class do not change after it is defined.
        """
        cached = cls.__dict__.get("_cf_params")
        if cached is None:
            cached = super().get_params()
            cls._cf_params = cached
        return list(cached)

    @classmethod
    def get_param_values(cls, *args: Any, **kwargs: Any) -> Any:
        show_user_errors_as_one_line()  # before any mixin's modify_param_values can raise a UserError
        report_runs()
        try:
            return super().get_param_values(*args, **kwargs)
        except luigi.parameter.MissingParameterException as error:
            name = str(error).rpartition("requires the '")[2].partition("'")[0] or "a"
            flag = f"--{name.replace('_', '-')}"
            hint = " (a plain name such as v1)" if name == "version" else ""
            raise UserError(f"{cls.get_task_family()} needs {flag}{hint}") from None

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        if params.get("version") is not None:
            params["version"] = _checked_version(str(params["version"]), "--version")
        if params.get("chunk_size", 0) < 0:
            raise UserError(
                f"--chunk-size must be positive (or 0 for law.cfg's chunk_size), got {params['chunk_size']}"
            )
        if params.get("chunk_size", 0) == 0:
            params["chunk_size"] = int(analysis_setting("chunk_size", DEFAULT_CHUNK_SIZE))
        check_store_writable(store_base())
        reuse_freed_memory()
        remember_parameter_matching()
        check_workers()
        cli_versions()  # a bad --<family>-version fails when the root task is made, before anything runs
        return params

    def _print_status(self, args: Any) -> Any:
        """Print the status tree (``--print-status``), fusing tasks listing the tasks they run in their pass."""
        _status_tree_printing.append(True)
        try:
            return super()._print_status(args)
        finally:
            _status_tree_printing.pop()

    def store_parts(self) -> list[str]:
        """The directories of this task's output path, from general to specific."""
        return [self.analysis_inst.name, self.task_family]

    def store_version(self) -> str:
        """The version in the output path: pinned for this task family (:func:`pinned_version`), else ``--version``."""
        return pinned_version(None, self.task_family) or str(self.version)

    def local_path(self, *path: str) -> str:
        return os.path.join(store_base(), *self.store_parts(), self.store_version(), *path)

    def target(self, *path: str, dir: bool = False) -> law.LocalFileTarget | law.LocalDirectoryTarget:
        """An output target in this task's store directory."""
        cls = law.LocalDirectoryTarget if dir else law.LocalFileTarget
        return cls(self.local_path(*path))

    def iter_chunks(
        self,
        sources: list[EventSource],
        uses: set[str] | dict[str, str],
        optional: set[str] | frozenset[str] = frozenset(),
    ) -> Iterator[tuple[Any, int, int]]:
        """Chunks of the row-aligned sources, with law progress and, on a terminal, a progress bar.

        Every column in ``uses`` must exist (a dict maps each to where it is declared, named when it is missing);
        columns in ``optional`` are read where present.
        """
        n_chunks = max(1, math.ceil(sources[0].n_events / self.chunk_size))
        show_bar = sys.stdout.isatty()
        for i, chunk in enumerate(iter_event_chunks(sources, uses, self.chunk_size, optional)):
            yield chunk
            self.publish_progress(100.0 * (i + 1) / n_chunks)
            if show_bar:
                done = int(30 * (i + 1) / n_chunks)
                sys.stdout.write(f"\r  chunks [{'#' * done}{'.' * (30 - done)}] {i + 1}/{n_chunks}")
                sys.stdout.flush()
        if show_bar:
            sys.stdout.write("\n")


def cli_versions() -> dict[str, str]:
    """The per-task versions given on the command line: ``{task family: version}``.

    ``--cf.MLTraining-version v2`` (luigi's flag for the ``version`` parameter of the family ``cf.MLTraining``,
    parsed into ``cf.MLTraining_version``; accepted for every task class that the root task's module imports,
    hence for every task of its requirement tree, and for the root task itself) pins the version of that family,
    as columnflow's ``law.parser.global_cmdline_values().get(f"{task_family}_version")`` does.

    Returns:
        The versions, empty outside of a command-line run (no luigi parser).

    Raises:
        UserError: If a value is empty or not a plain directory name (``/`` or ``..``).
    """
    parser = CmdlineParser.get_instance()
    if parser is None:
        return {}
    # asked for by every task made and every output path (thousands of times in a chain): parsed once per parser
    cached = _CLI_VERSIONS.get("parsed")
    if cached is not None and cached[0] is parser.known_args:
        return dict(cached[1])
    versions = {}
    for dest, value in vars(parser.known_args).items():
        family = dest.removesuffix("_version")
        if value is not None and family != dest and _has_version(family):
            versions[family] = _checked_version(str(value), f"--{family}-version")
    _CLI_VERSIONS["parsed"] = (parser.known_args, versions)
    return dict(versions)


#: The versions of the last command line parsed by :func:`cli_versions`, with the parsed arguments they come from.
_CLI_VERSIONS: dict[str, tuple[Any, dict[str, str]]] = {}


def _has_version(family: str) -> bool:
    """Whether ``family`` is a registered task with a ``version`` parameter (not e.g. ``--cf.X-nano-version``)."""
    try:
        cls = Register.get_task_cls(family)
    except TaskClassException:
        return False
    return "version" in dict(cls.get_params())


#: A version becomes a directory of every output path: letters, digits and ``_ . + -``, not starting with a dot.
_VERSION_PATTERN = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")


def _checked_version(value: str, flag: str) -> str:
    if not value.strip():
        raise UserError(f"{flag} is empty; give a version name, e.g. {flag} v2")
    if not _VERSION_PATTERN.fullmatch(value):
        raise UserError(
            f"{flag} '{value}' is not a plain directory name: use letters, digits and '_', '.', '+', '-' "
            "(no '/', no spaces, not starting with '.')",
        )
    return value


def pinned_version(config_inst: Any | None, task_family: str) -> str | None:
    """The version pinned for a task family, which replaces ``--version`` in its output paths.

    In this order: ``--<task family>-version`` on the command line (:func:`cli_versions`), the config's
    ``x.versions`` (if a config is given), law.cfg's ``[versions]`` section. As columnflow's versions, e.g.
    ``cf.MLTraining = v2`` retrains into ``v2`` while the chain before and after it stays in the ``--version``
    given (the parameter passed on to other tasks is unchanged).
    """
    pinned: Any = cli_versions().get(task_family)
    if pinned is None and config_inst is not None:
        pinned = config_entry(config_inst, "versions").get(task_family)
    if pinned is None:
        pinned = law.config.get_expanded("versions", task_family, None)
    return str(pinned) if pinned else None


def function_store_parts(
    calibrators: Sequence[str] | None = None,
    selector: str | None = None,
    producers: Sequence[str] | None = None,
    ml_models: Sequence[str] = (),
) -> list[str]:
    """The directories of an output path that name the column functions and ML models a task reads.

    The one place that spells them: ``calib__a__b`` (``calib__none`` for no calibrator), ``sel__<selector>``,
    ``prod__a__b`` (``prod__none``) and, with ML models, ``ml__a__b`` (``a__<settings hash>`` for ``a[k=v]``). A part whose argument is None is left out
    (a task without that kind of function).
    """
    parts = []
    if calibrators is not None:
        parts.append("calib__" + ("__".join(calibrators) or "none"))
    if selector is not None:
        parts.append(f"sel__{selector}")
    if producers is not None:
        parts.append("prod__" + ("__".join(producers) or "none"))
    if ml_models:
        parts.append("ml__" + "__".join(model_spec_store_name(spec) for spec in ml_models))
    return parts


class ConfigTask(AnalysisTask):
    """A task of one config of the analysis (``--config``, default from law.cfg)."""

    config = luigi.Parameter(default="", description="config name; default: default_config in law.cfg")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        if "config" in params:
            if not params["config"]:
                params["config"] = analysis_setting("default_config")
            check_config(get_config(load_analysis(), params["config"]))
        return params

    def store_version(self) -> str:
        """The version in the output path: pinned for this task family (:func:`pinned_version`), else ``--version``."""
        return pinned_version(self.config_inst, self.task_family) or str(self.version)

    @property
    def config_inst(self) -> Any:
        return get_config(self.analysis_inst, self.config)

    def store_parts(self) -> list[str]:
        return [*super().store_parts(), self.config]

    def function_store_parts(self) -> list[str]:
        """The calib / sel / prod directories, in this order, for the mixins the task has."""
        return function_store_parts(
            calibrators=self.calibrators if isinstance(self, CalibratorsMixin) else None,
            selector=self.selector if isinstance(self, SelectorMixin) else None,
            producers=self.producers if isinstance(self, ProducersMixin) else None,
        )


class DatasetTask(ConfigTask):
    """A task of one dataset (``--dataset``, default from law.cfg)."""

    dataset = luigi.Parameter(default="", description="dataset name; default: default_dataset in law.cfg")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)
        if "dataset" in params:
            if not params["dataset"]:
                params["dataset"] = analysis_setting("default_dataset")
            get_dataset(get_config(load_analysis(), params["config"]), params["dataset"])
        return params

    @property
    def dataset_inst(self) -> Any:
        return get_dataset(self.config_inst, self.dataset)

    def store_parts(self) -> list[str]:
        parts = super().store_parts()
        if isinstance(self, ShiftMixin):
            parts.append(self.effective_shift)
        return [*parts, self.dataset, *self.function_store_parts()]

    @staticmethod
    def column_origins(insts: list[ColumnFunction]) -> dict[str, str]:
        """Per column the functions read for this dataset (``mc_uses`` only for simulation), where it is declared."""
        origins: dict[str, str] = {}
        for inst in insts:
            for column, origin in inst.column_origins().items():
                origins.setdefault(column, origin)
        return origins

    @staticmethod
    def columns_produced(insts: list[ColumnFunction]) -> list[str]:
        """The columns the functions write, sorted."""
        return sorted({column for inst in insts for column in inst.produced_columns})

    def function_requirements(self, insts: list[ColumnFunction]) -> dict[str, Any]:
        """What the functions' ``requires`` hooks ask for (e.g. the selection statistics), one dict for all."""
        reqs: dict[str, Any] = {}
        for inst in insts:
            inst.run_requires(self, reqs)
        return reqs

    def setup_functions(self, insts: list[ColumnFunction], inputs: dict[str, Any]) -> list[EventSource]:
        """Run the functions' ``setup`` hooks once before the chunk loop.

        Args:
            insts: The functions.
            inputs: The outputs of :meth:`function_requirements`'s tasks.

        Returns:
            The further row-aligned sources the hooks ask to read (``reader_targets``).
        """
        reqs = self.function_requirements(insts)
        reader_targets: dict[str, Any] = {}
        for inst in insts:
            inst.run_setup(self, reqs, inputs, reader_targets)
        return [open_source(target.path) for target in reader_targets.values()]

    def iter_chunks(
        self,
        sources: list[EventSource],
        uses: set[str] | dict[str, str],
        optional: set[str] | frozenset[str] = frozenset(),
    ) -> Iterator[tuple[Any, int, int]]:
        """Chunks as :meth:`AnalysisTask.iter_chunks`, with the dataset's absent collections added empty.

        A dataset whose files lack whole collections (e.g. a skim that dropped the taus) names them in
        ``dataset.x.absent_collections``; the functions then see them without objects instead of failing on them.
        """
        origins, empty = self.absent_columns(uses)
        if not empty:
            yield from super().iter_chunks(sources, uses, optional)
            return
        for events, start, stop in super().iter_chunks(sources, origins, optional):
            yield add_empty_collections(events, empty), start, stop

    def read_chunk(
        self,
        sources: list[EventSource],
        uses: set[str] | dict[str, str],
        start: int,
        stop: int,
        optional: set[str] | frozenset[str] = frozenset(),
    ) -> Any:
        """Entries start-stop of the sources, as one chunk of :meth:`iter_chunks` (for a loop of its own)."""
        origins, empty = self.absent_columns(uses)
        events = merged_chunk(sources, resolve_columns(sources, origins, optional), start, stop)
        return add_empty_collections(events, empty) if empty else events

    def absent_columns(self, uses: set[str] | dict[str, str]) -> tuple[dict[str, str], dict[str, set[str]]]:
        """``uses`` split into the columns to read and, per absent collection of the dataset, the fields it gets."""
        absent = set(dataset_entry(self.dataset_inst, "absent_collections"))
        origins = dict(uses) if isinstance(uses, dict) else dict.fromkeys(uses, "'uses'")
        empty: dict[str, set[str]] = {}
        for column in [column for column in origins if Route(column).fields[0] in absent]:
            collection, *rest = Route(column).fields
            del origins[column]
            empty.setdefault(collection, set()).update(rest[:1] if rest and rest[0] != "*" else [])
        return origins, empty


def _config_of(params: dict[str, Any]) -> Any:
    return get_config(load_analysis(), params["config"])


def _column_functions(registry: Registry, modules_key: str, names: tuple[str, ...]) -> list[type[ColumnFunction]]:
    load_modules(modules_key)
    return [registry.get(name) for name in names]


def producer_instances(task: Any, names: tuple[str, ...]) -> list[ColumnFunction]:
    """The task's instances of the named producers (e.g. an ML model's preparation producer)."""
    return _instances(task, producers, "production_modules", names, _function_shift(task))


def _instances(task: Any, registry: Registry, modules_key: str, names: tuple[str, ...], shift: str) -> list[Any]:
    """The task's instances of the named functions for its config, dataset (if any) and ``shift``; made once."""
    cache = task.__dict__.setdefault("_column_function_insts", {})
    key = (registry.kind, tuple(names), shift)
    if key not in cache:
        classes = _column_functions(registry, modules_key, names)
        config_inst, dataset_inst = task.config_inst, getattr(task, "dataset_inst", None)
        cache[key] = [
            cls(config_inst=config_inst, dataset_inst=dataset_inst, shift=shift, task=task) for cls in classes
        ]
    return cache[key]


def _function_shift(task: Any) -> str:
    """The shift the task's functions run with: the effective one (nominal where they do not implement it)."""
    return task.effective_shift if isinstance(task, ShiftMixin) else "nominal"


def _resolved_function_names(params: dict[str, Any], key: str, registry: Registry, modules_key: str) -> dict[str, Any]:
    """``params[key]`` (the names of one kind of column function) checked, the config's default where it is empty.

    Args:
        params: The task parameters.
        key: ``calibrators``, ``selector`` (one name) or ``producers``; the default is ``config.x.default_<key>``.
        registry: The registry of that kind.
        modules_key: The law.cfg entry listing the modules that register them.
    """
    if key not in params:
        return params
    single = key == "selector"
    if not params[key]:
        default = config_entry(_config_of(params), f"default_{key}")
        params[key] = default if single else tuple(default)
    _column_functions(registry, modules_key, (params[key],) if single else params[key])
    return params


class CalibratorsMixin:
    """``--calibrators a,b``: the calibrators applied in this order (default: the config's)."""

    calibrators = law.CSVParameter(default=(), description="calibrators; default: the config's default_calibrators")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)  # type: ignore[misc]
        return _resolved_function_names(params, "calibrators", calibrators, "calibration_modules")

    @property
    def calibrator_insts(self) -> list[ColumnFunction]:
        """The calibrators, instantiated for this task's config, dataset and shift."""
        return _instances(self, calibrators, "calibration_modules", self.calibrators, _function_shift(self))


class SelectorMixin:
    """``--selector name`` (default: the config's)."""

    selector = luigi.Parameter(default="", description="selector; default: the config's default_selector")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)  # type: ignore[misc]
        return _resolved_function_names(params, "selector", selectors, "selection_modules")

    @property
    def selector_inst(self) -> ColumnFunction:
        """The selector, instantiated for this task's config, dataset and shift."""
        return _instances(self, selectors, "selection_modules", (self.selector,), _function_shift(self))[0]


class ProducersMixin:
    """``--producers a,b``: the producers applied in this order (default: the config's)."""

    producers = law.CSVParameter(default=(), description="producers; default: the config's default_producers")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)  # type: ignore[misc]
        return _resolved_function_names(params, "producers", producers, "production_modules")

    @property
    def producer_insts(self) -> list[ColumnFunction]:
        """The producers, instantiated for this task's config, dataset and shift."""
        return _instances(self, producers, "production_modules", self.producers, _function_shift(self))


class ShiftMixin:
    """``--shift name``: a shift of the config; tasks whose functions do not implement it run as nominal."""

    shift = luigi.Parameter(default="nominal", description="shift name; default: nominal")

    @classmethod
    def modify_param_values(cls, params: dict[str, Any]) -> dict[str, Any]:
        params = super().modify_param_values(params)  # type: ignore[misc]
        if "shift" in params:
            get_shift(_config_of(params), params["shift"])
        return params

    def implemented_shifts(self) -> set[str]:
        """Shifts implemented by the column functions this task and its inputs run (asked of nominal instances)."""
        insts: list[ColumnFunction] = []
        if isinstance(self, CalibratorsMixin):
            insts += _instances(self, calibrators, "calibration_modules", self.calibrators, "nominal")
        if isinstance(self, SelectorMixin):
            insts += _instances(self, selectors, "selection_modules", (self.selector,), "nominal")
        if isinstance(self, ProducersMixin):
            insts += _instances(self, producers, "production_modules", self.producers, "nominal")
        return {shift for inst in insts for shift in inst.all_shifts}

    @property
    def effective_shift(self) -> str:
        """The requested shift where it changes this task's output, else "nominal" (always for data)."""
        dataset_inst = getattr(self, "dataset_inst", None)
        if dataset_inst is not None and dataset_inst.is_data:
            return "nominal"
        return self.shift if self.shift in self.implemented_shifts() else "nominal"
