"""Deterministic generator of the embedded NanoAOD-layout sample: the entry points.

`create_file` (the framework's entry point, named in the configs as ``sample.generate:create_file``) generates
the events of one file with `generate_events` and writes them with `write_nanoaod`. The generator is split into

* `sample.physics`: particle properties, branching fractions and particle-level distributions,
* `sample.kinematics`: four-vector kinematics and kinematic samplers,
* `sample.final_state`: the generator-level final state,
* `sample.processes`: the simulated processes (`PROCESS_GENERATORS`),
* `sample.detector`: the detector model, from the final state to NanoAOD-like collections,
* `sample.writer`: the ROOT writer (a ``TTree`` named ``Events`` with the NanoAOD branch layout),
* `sample.layouts`: the branch layouts of other NanoAOD versions,

and this module, which draws the event counts, random streams, event identity and generator information of a file.
"""

from __future__ import annotations

import zlib

import awkward as ak
import numpy as np

from sample.counts import check_processes, draw_counts
from sample.layouts import DEFAULT_LAYOUT, apply_layout, get_layout
from sample.physics import GEN_WEIGHTS
from sample.processes import PROCESS_GENERATORS
from sample.writer import COMPRESSION, EVENT_TREE_NAME, nanoaod_branches, write_nanoaod

__all__ = [
    "COMPRESSION",
    "EVENT_TREE_NAME",
    "PROCESS_GENERATORS",
    "create_file",
    "draw_counts",
    "generate_events",
    "nanoaod_branches",
    "write_nanoaod",
]

# event identity
DATA_FIRST_RUN = 297050  # start of the 2017B run range
EVENTS_PER_LUMI_BLOCK = 500
LUMI_BLOCKS_PER_FILE = 1000
EVENTS_PER_FILE_MAX = 10**8


def _process_rng(seed: int, file_index: int, is_data: bool, process: str) -> np.random.Generator:
    """Independent random stream per (seed, file, data/MC, process)."""
    return np.random.default_rng([seed, file_index, int(is_data), zlib.crc32(process.encode())])


def _gen_weights(rng: np.random.Generator, process: str, n: int) -> np.ndarray:
    """Constant-magnitude generator weights with a small process-dependent fraction of negative ones."""
    magnitude, negative_fraction = GEN_WEIGHTS.get(process, (1.0, 0.0))
    return np.where(rng.random(n) < negative_fraction, -magnitude, magnitude).astype(np.float32)


def _event_identity(n: int, file_index: int, is_data: bool) -> dict[str, np.ndarray]:
    """run, luminosityBlock and event numbers, unique within a dataset of files."""
    index = np.arange(n, dtype=np.uint64)
    run = DATA_FIRST_RUN + file_index if is_data else 1
    lumi = file_index * LUMI_BLOCKS_PER_FILE + index // EVENTS_PER_LUMI_BLOCK + 1
    return {
        "run": np.full(n, run, dtype=np.uint32),
        "luminosityBlock": lumi.astype(np.uint32),
        "event": np.uint64(file_index) * np.uint64(EVENTS_PER_FILE_MAX) + index + np.uint64(1),
    }


def _true_interactions(events: ak.Array, seed: int, file_index: int) -> np.ndarray:
    """The true number of interactions of simulated events (``Pileup_nTrueInt``), given their vertices.

    The vertices are Poisson distributed around `sample.detector.PILEUP_MEAN_VERTICES`; given n vertices, the mean they were drawn
    from is Gamma(n + 1) distributed. A stream of its own keeps every other column as it was.
    """
    npvs = ak.to_numpy(events["PV"]["npvs"]).astype(np.float64)
    rng = np.random.default_rng([seed, file_index, 4])  # 3 is the layouts' stream
    return rng.gamma(npvs + 1.0).astype(np.float32)


def generate_events(processes: dict[str, float], seed: int, file_index: int, is_data: bool) -> ak.Array:
    """Generates the events of one file.

    Args:
        processes: Process name to the number of events (MC, truncated to int) or the expected number (data).
        seed: Dataset seed.
        file_index: Index of the file within the dataset.
        is_data: Whether to produce data (Poisson counts, shuffled processes, no generator information).

    Returns:
        Event records with run/luminosityBlock/event, genWeight and Pileup.nTrueInt (MC only) and the NanoAOD-like
        collections.

    Raises:
        ValueError: For unknown processes, negative counts or a negative file index.
    """
    check_processes(processes)
    if file_index < 0:
        raise ValueError(f"file_index must be non-negative, got {file_index}")
    counts = draw_counts(processes, seed, file_index) if is_data else {k: int(v) for k, v in processes.items()}
    if max(counts.values()) >= EVENTS_PER_FILE_MAX:
        raise ValueError(f"at most {EVENTS_PER_FILE_MAX - 1} events per file are supported")
    parts, weights = [], []
    for name, count in counts.items():
        rng = _process_rng(seed, file_index, is_data, name)
        parts.append(PROCESS_GENERATORS[name](rng, count))
        weights.append(_gen_weights(rng, name, count))
    events = ak.concatenate(parts) if len(parts) > 1 else parts[0]
    columns = _event_identity(len(events), file_index, is_data)
    if is_data:
        events = events[np.random.default_rng([seed, file_index, 2]).permutation(len(events))]
        events = ak.with_field(events, ak.without_field(events["Jet"], "hadronFlavour"), "Jet")
    else:
        columns["genWeight"] = np.concatenate(weights)
        columns["Pileup"] = ak.zip({"nTrueInt": _true_interactions(events, seed, file_index)})
    columns.update({name: events[name] for name in events.fields})
    return ak.zip(columns, depth_limit=1)


def create_file(
    path: str,
    file_index: int,
    processes: dict[str, float],
    seed: int,
    is_data: bool = False,
    layout: str = DEFAULT_LAYOUT,
) -> None:
    """Generates and writes one file of an embedded dataset (the framework's entry point).

    Args:
        path: Output ROOT file.
        file_index: Index of the file within the dataset.
        processes: Process name to the number of events per file (MC) or the expected number per file (data).
        seed: Dataset seed.
        is_data: Whether the dataset is data.
        layout: Branch layout of a NanoAOD version, a key of `sample.layouts.LAYOUTS`.

    Raises:
        ValueError: For an unknown layout (listing the known ones), unknown processes or negative counts.
    """
    get_layout(layout)  # fail before generating
    events = generate_events(processes, seed, file_index, is_data)
    write_nanoaod(path, apply_layout(events, layout, seed, file_index))
