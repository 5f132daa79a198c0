"""Tests of what cf changes in a ``law run`` process: law's parameter matching, its exit, the imports it skips."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import law
import luigi
import numpy as np
import pytest
from luigi.cmdline_parser import CmdlineParser

import cf.tasks.base
from cf.io import TASK_PROCESSES_ENV, writes_in_background
from cf.tasks.base import (
    KEPT_FREE_BYTES,
    cached_multi_match,
    release_freed_memory,
    reuse_command_line_parsers,
    reuse_freed_memory,
)
from tests.conftest import LawEnv

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("name", "patterns"),
    [
        ("version", {"version", "branch"}),
        ("version", ["branch"]),
        ("workflow", "work*"),
        ("workflow", ("!work*",)),
        ("branches", {"^bran.*s$"}),
        ("branches", set()),
        ("ml_model", {"ml_*", "!ml_model"}),
    ],
)
def test_the_remembered_parameter_matching_is_laws(name: str, patterns: object) -> None:
    for _ in range(2):  # computed, then remembered
        assert cached_multi_match(name, patterns, any) == bool(law.util.multi_match(name, patterns, any))
    assert cached_multi_match(name, ["version", "ml_*"], all) == bool(
        law.util.multi_match(name, ["version", "ml_*"], all)
    )


class CommandLineTask(luigi.Task):
    """A root task for luigi's command-line parser."""

    size = luigi.IntParameter(default=1)


def test_luigi_builds_its_command_line_parser_once_per_root_task(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str | None] = []
    build = CmdlineParser._build_parser

    def counted_build(root_task: str | None = None, help_all: bool = False) -> object:
        built.append(root_task)
        return build(root_task=root_task, help_all=help_all)

    monkeypatch.setattr(CmdlineParser, "_build_parser", staticmethod(counted_build))
    monkeypatch.setattr(cf.tasks.base, "_COMMAND_LINE_PARSERS", {})
    monkeypatch.setattr(sys, "argv", ["law", "run"])
    reuse_command_line_parsers()
    # as luigi's run_with_retcodes: three parsers of the same command line, each parsing it three times
    parsed = [CmdlineParser(["CommandLineTask", "--size", "3"]).known_args for _ in range(3)]
    assert built == [None, "CommandLineTask"]
    assert parsed[0] == parsed[2]
    assert parsed[0].size == "3"

    # a task class registered later (a module loaded with --module) is known to the next parser
    class LateCommandLineTask(CommandLineTask):
        depth = luigi.IntParameter(default=0)

    assert CmdlineParser(["LateCommandLineTask", "--depth", "2"]).get_task_obj().depth == 2


def test_the_config_does_not_import_the_root_writer() -> None:
    script = (
        "import sys\n"
        "from analysis_template.config.analysis import analysis_template\n"
        "assert analysis_template.get_config('run2_2017_nano_uhh_v11_limited').get_dataset('data_mu_b').n_files\n"
        "print(sorted(name for name in ('uproot', 'sample.generate', 'sample.writer') if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_profiled_law_run_writes_its_profile(law_env: LawEnv, tmp_path: Path) -> None:
    command = ["law", "run", "cf.ProduceColumns", "--version", "v1", "--dataset", "no_such_dataset"]
    plain = subprocess.run(command, env=law_env.env, cwd=ROOT, capture_output=True, text=True, check=False)
    assert plain.returncode != 0
    assert "no_such_dataset" in plain.stdout + plain.stderr
    # law run ends without Python's shutdown, except under a profiler, which writes its results in that shutdown
    profile = tmp_path / "run.prof"
    profiled_command = [sys.executable, "-m", "cProfile", "-o", str(profile), str(shutil.which("law")), *command[1:]]
    profiled = subprocess.run(profiled_command, env=law_env.env, cwd=ROOT, capture_output=True, text=True, check=False)
    # (cProfile itself swallows the exit code: it ends with 0)
    assert plain.stderr.strip().splitlines()[-1] in profiled.stderr
    assert profile.stat().st_size > 0


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _free_in_heap(n_bytes: int) -> np.ndarray:
    """Allocate n_bytes in 8 MiB arrays from the heap and free them below one that stays, which is returned."""
    blocks = [np.ones(1 << 20) for _ in range(n_bytes // (8 << 20) + 1)]
    return blocks.pop()  # above the freed ones: glibc cannot give them back by shrinking the heap


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallinfo2") or not Path("/proc/self/statm").exists(),
    reason="glibc >= 2.33 on Linux",
)
def test_the_heap_keeps_freed_memory_for_the_next_task_up_to_a_bound() -> None:
    reuse_freed_memory()  # arrays up to 32 MiB come from the heap
    # below the bound, the freed pages stay for the next task
    keeper = _free_in_heap(KEPT_FREE_BYTES // 2)
    kept = _resident_bytes()
    release_freed_memory(None)
    assert _resident_bytes() > kept - (16 << 20)
    del keeper
    # above it, they go back to the system
    keeper = _free_in_heap(KEPT_FREE_BYTES + (128 << 20))
    held = _resident_bytes()
    release_freed_memory(None)
    assert _resident_bytes() < held - KEPT_FREE_BYTES
    del keeper


@pytest.mark.parametrize(("preset", "expected"), [(None, "2"), ("8", "8")])
def test_parallel_runs_tell_the_writers_how_many_task_processes_share_the_cores(
    monkeypatch: pytest.MonkeyPatch, preset: str | None, expected: str
) -> None:
    """``--workers 2`` sets CF_TASK_PROCESSES for its task processes (no writing thread on two cores)."""
    monkeypatch.setenv(TASK_PROCESSES_ENV, preset or "")  # restored after the test, also where it was unset
    if preset is None:
        monkeypatch.delenv(TASK_PROCESSES_ENV)
    monkeypatch.setattr(luigi.interface, "core", lambda: SimpleNamespace(workers=2))
    monkeypatch.setattr(cf.tasks.base, "import_before_forking", lambda: None)
    monkeypatch.setattr(cf.tasks.base, "use_task_processes", lambda: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    cf.tasks.base.check_workers.cache_clear()
    try:
        cf.tasks.base.check_workers()
    finally:
        cf.tasks.base.check_workers.cache_clear()
    assert os.environ[TASK_PROCESSES_ENV] == expected
    assert not writes_in_background()
