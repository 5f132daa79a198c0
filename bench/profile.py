"""Profile the chain task by task, in one process: ``python -m bench.profile --events 1M``.

Makes sure the chain of one dataset is complete in a profiling store (not timed), then re-runs the
``run()`` of each chain task of one branch (one input file) in this process, overwriting its outputs, and
prints the seconds per task (best of ``--repeat``), and those of the fused ``ReduceEvents`` and
``PrepareMLEvents`` that a fresh chain runs instead of the first three and the last two. With ``--cprofile FILE``
the runs are profiled and the time is split into categories (ROOT reading, parquet reading and writing, physics,
awkward glue). Run it once per code version to compare them (e.g. with another checkout first on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import CONFIG, DEFAULT_BASKET_SIZE, ML_MODEL, data_dir, parse_count, sample_scale

__all__ = ["main", "profile_chain", "profile_store"]

#: The chain's per-file tasks in their order.
TASKS = ("CalibrateEvents", "SelectEvents", "ReduceEvents", "ProduceColumns", "PrepareMLEvents")
#: Profile categories: (name, substrings of the profiled function's file or name).
CATEGORIES = (
    ("ROOT read (uproot)", ("uproot/",)),
    ("parquet write (pyarrow)", ("write_table", "to_arrow_table")),
    ("parquet read (pyarrow + awkward)", ("from_parquet", "read_row_groups")),
    ("physics (analysis_template)", ("analysis_template/",)),
)


def _task(name: str, dataset: str, branch: int, chunk_size: int) -> object:
    from cf.tasks import calibration, ml, production, reduction, selection

    module = {
        "CalibrateEvents": calibration,
        "SelectEvents": selection,
        "ReduceEvents": reduction,
        "ProduceColumns": production,
        "PrepareMLEvents": ml,
    }[name]
    params = {"version": "v1", "config": CONFIG, "dataset": dataset, "branch": branch, "chunk_size": chunk_size}
    if name == "PrepareMLEvents":
        params["ml_model"] = ML_MODEL
    return getattr(module, name)(**params)


def _remove_fused_outputs(task: object) -> None:
    """Remove the outputs of the task's file of the tasks it fuses and its own (``cf.tasks.fusion``)."""
    for target in task.fused_outputs():  # type: ignore[attr-defined]
        target.remove()


def _fused_task(name: str, dataset: str, branch: int, chunk_size: int) -> object:
    """The task of the branch as a fresh chain runs it: fused with the tasks before it (``cf.tasks.fusion``).

    Its file's outputs of the fused tasks are removed first, so that the task decides to fuse; they are removed again
    before each repetition (a fused task whose fused outputs exist when it runs reads them instead).
    """
    from luigi.task_register import Register

    _remove_fused_outputs(_task(name, dataset, branch, chunk_size))
    Register.clear_instance_cache()  # a new instance, which decides again
    return _task(name, dataset, branch, chunk_size)


def _timed_runs(
    task: object, repeat: int, profiler: cProfile.Profile | None, before: Callable[[object], None] | None = None
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``repeat`` runs of the task's ``run()`` in this process (``before`` each untimed)."""
    task.publish_progress = lambda *_: None  # type: ignore[attr-defined]  # no scheduler to report to
    times, cpu_times = [], []
    for _ in range(repeat):
        if before:
            before(task)
        start, start_cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        task.run()  # type: ignore[attr-defined]
        if profiler:
            profiler.disable()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - start_cpu)
    return times, cpu_times


def _print_line(name: str, times: list[float], cpu_times: list[float]) -> None:
    runs = " ".join(f"{t:.2f}" for t in times)
    print(f"{name:22s} best {min(times):6.2f} s wall {min(cpu_times):6.2f} s CPU   runs {runs}", flush=True)


def _categorize(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of the outermost calls into each category (nested calls are not counted twice)."""
    totals = dict.fromkeys([name for name, _ in CATEGORIES], 0.0)
    raw = stats.stats  # type: ignore[attr-defined]
    for (filename, _, function), (_, _, _, cumtime, callers) in raw.items():
        key = f"{filename}:{function}"
        for name, needles in CATEGORIES:
            if not any(needle in key for needle in needles):
                continue
            # only count entries called from outside the category
            outside = any(not any(needle in f"{caller[0]}:{caller[2]}" for needle in needles) for caller in callers)
            if outside:
                totals[name] += cumtime
            break
    return totals


def profile_store(data: Path) -> Path:
    """The store of the profiled chain, beside the sample's data directory."""
    return data.with_name(data.name.replace("data_", "profile_store_", 1))


def _best(times: list[float], cpu_times: list[float]) -> dict[str, Any]:
    return {"wall": min(times), "cpu": min(cpu_times), "runs": times}


def profile_chain(args: argparse.Namespace) -> dict[str, Any]:
    """Time each chain task of one file, then the two fused passes; print them and return them.

    Returns:
        ``dataset``, ``branch``, ``file_events`` (entries of the profiled input file), ``repeat``, and ``tasks`` and
        ``fused`` (task name -> best ``wall`` and ``cpu`` seconds and every run's wall seconds).
    """
    n_events = parse_count(args.events)
    workdir = Path(args.workdir)
    data = data_dir(workdir, n_events, args.basket_size)
    os.environ.update(
        {
            "CF_DATA": str(data),
            "CF_SAMPLE_SCALE": repr(sample_scale(n_events)),
            "CF_STORE_LOCAL": str(profile_store(data)),
            "CF_JOB_BASE": str(workdir / "jobs"),
        }
    )
    command = ["law", "run", "cf.PrepareMLEvents", "--version", "v1", "--config", CONFIG, "--dataset", args.dataset]
    subprocess.run([*command, "--ml-model", ML_MODEL], check=True, stdout=subprocess.DEVNULL)
    sample = json.loads((data / "sample.json").read_text())
    result: dict[str, Any] = {
        "dataset": args.dataset,
        "branch": args.branch,
        "file_events": sample["n_events"][args.dataset] // len(sample["files"][args.dataset]),
        "repeat": args.repeat,
        "tasks": {},
        "fused": {},
    }

    profiler = cProfile.Profile() if args.cprofile else None
    for name in TASKS:
        times, cpu_times = _timed_runs(_task(name, args.dataset, args.branch, args.chunk_size), args.repeat, profiler)
        result["tasks"][name] = _best(times, cpu_times)
        _print_line(name, times, cpu_times)
    total = sum(task["wall"] for task in result["tasks"].values())
    total_cpu = sum(task["cpu"] for task in result["tasks"].values())
    print(f"{'total':22s} best {total:6.2f} s wall {total_cpu:6.2f} s CPU")
    # what a fresh chain runs instead of the first three and the last two (not profiled: the split above is per task)
    for name, label in (("ReduceEvents", "fused Calib+Sel+Reduce"), ("PrepareMLEvents", "fused Produce+PrepareML")):
        fused = _fused_task(name, args.dataset, args.branch, args.chunk_size)
        times, cpu_times = _timed_runs(fused, args.repeat, None, before=_remove_fused_outputs)
        result["fused"][name] = _best(times, cpu_times)
        _print_line(label, times, cpu_times)
    if profiler and args.cprofile:
        profiler.dump_stats(args.cprofile)
        stats = pstats.Stats(args.cprofile)
        measured = sum(v[3] for k, v in stats.stats.items() if k[2] == "run" and "cf/tasks" in k[0])  # type: ignore[attr-defined]
        print(f"\nprofiled task run() time: {measured:.2f} s (with profiler overhead), of which:")
        for category, seconds in _categorize(stats).items():
            print(f"  {category:34s} {seconds:6.2f} s  {seconds / measured:5.1%}")
    sys.stdout.flush()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", default="1M", help="sample size (as for python -m bench; default 1M)")
    parser.add_argument("--dataset", default="tt_sl_powheg")
    parser.add_argument("--branch", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--workdir", default="/tmp/cf_bench")
    parser.add_argument("--basket-size", type=int, default=DEFAULT_BASKET_SIZE, help="sample layout (as for bench)")
    parser.add_argument("--cprofile", default=None, help="write the profile of all runs to this file")
    parser.add_argument("--json", default=None, help="write the times to this file (python -m bench reads it)")
    args = parser.parse_args(argv)
    result = profile_chain(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
