"""Running one measured command: wall time, CPU time and peak RSS of its whole process tree.

Every measurement is a fresh process (``os.wait4`` gives its resource usage, children included), so peak
RSS is per measurement and nothing is cached in memory between them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BenchError", "Run", "run_measured", "summarize"]


class BenchError(RuntimeError):
    """A measured command failed; the message has the command and the tail of its log."""


@dataclass
class Run:
    """One measured run of a command.

    Attributes:
        wall: Wall-clock seconds from the start of the process to its end.
        cpu: User plus system CPU seconds of the process and all its (waited-for) children.
        max_rss_mb: Peak resident set size in MiB of the largest process of the tree (Linux ``ru_maxrss``).
        load: The 1-minute load average when the run started (other users of the machine).
        output: The json object the command printed on its last stdout line, if any.
    """

    wall: float
    cpu: float
    max_rss_mb: float
    load: float
    output: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _last_json_line(text: str) -> dict[str, Any]:
    for raw_line in reversed(text.strip().splitlines()):
        line = raw_line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def run_measured(
    command: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    cwd: str | None = None,
    timeout: float = 3600.0,
) -> Run:
    """Run ``command`` to completion and measure it; its stdout and stderr go to ``log_path``.

    Raises:
        BenchError: If the command exits non-zero or runs past ``timeout`` seconds.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out_path = log_path.with_suffix(".stdout")
    load = os.getloadavg()[0]
    with open(out_path, "w") as out, open(log_path, "w") as err:
        err.write(f"$ {' '.join(command)}\n")
        err.flush()
        start = time.perf_counter()
        process = subprocess.Popen(list(command), env=dict(env), cwd=cwd, stdout=out, stderr=err)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    if process.returncode != 0:
        log_tail = log_path.read_text()[-3000:]
        raise BenchError(
            f"'{' '.join(command)}' exited with {process.returncode} after {wall:.0f} s\n"
            f"--- stdout (tail) ---\n{stdout[-2000:]}\n--- stderr (tail, {log_path}) ---\n{log_tail}"
        )
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        max_rss_mb=usage.ru_maxrss / 1024.0,
        load=load,
        output=_last_json_line(stdout),
    )


def summarize(runs: Sequence[Run | Mapping[str, Any]]) -> dict[str, float]:
    """Median, minimum and maximum of wall time, CPU time and peak RSS over repetitions.

    ``spread`` is (max - min) / median of the wall time: the noise between repetitions.
    """
    rows = [run.to_dict() if isinstance(run, Run) else dict(run) for run in runs]
    walls = [row["wall"] for row in rows]
    median_wall = statistics.median(walls)
    return {
        "n": len(rows),
        "wall": median_wall,
        "wall_min": min(walls),
        "wall_max": max(walls),
        "spread": (max(walls) - min(walls)) / median_wall if median_wall > 0 else 0.0,
        "cpu": statistics.median(row["cpu"] for row in rows),
        "max_rss_mb": max(row["max_rss_mb"] for row in rows),
        "load": statistics.median(row["load"] for row in rows),
    }
