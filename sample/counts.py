"""The number of events of each process in a file of pseudo-data: Poisson draws, deterministic per file.

Apart from the generator (``sample.generate``), so that the analysis' config, which draws the pseudo-data's
event counts when it is loaded, does not import the generator's ROOT writer (uproot).
"""

from __future__ import annotations

import numpy as np

from sample.processes import PROCESS_GENERATORS

__all__ = ["check_processes", "draw_counts"]


def check_processes(processes: dict[str, float]) -> None:
    """Raises ValueError for unknown process names and negative counts."""
    if not processes:
        raise ValueError("no processes given; known processes: " + ", ".join(PROCESS_GENERATORS))
    for name, count in processes.items():
        if name not in PROCESS_GENERATORS:
            raise ValueError(f"unknown process '{name}'; known processes: {', '.join(PROCESS_GENERATORS)}")
        if count < 0:
            raise ValueError(f"negative number of events {count} for process '{name}'")


def draw_counts(processes: dict[str, float], seed: int, file_index: int) -> dict[str, int]:
    """Draws the number of events of each process in one data file.

    Args:
        processes: Process name to the expected number of events per file.
        seed: Dataset seed.
        file_index: Index of the file within the dataset.

    Returns:
        Process name to a Poisson-distributed number of events, deterministic in (seed, file_index).

    Raises:
        ValueError: For unknown processes or negative expectations.
    """
    check_processes(processes)
    rng = np.random.default_rng([seed, file_index])
    return {name: int(rng.poisson(processes[name])) for name in sorted(processes)}
