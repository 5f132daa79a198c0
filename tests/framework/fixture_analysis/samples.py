"""NanoAOD-like ROOT files of the fixture datasets, written with uproot.

Each file has a TTree ``Events`` with ``run``, ``luminosityBlock``, ``event``, ``genWeight`` (simulation only) and
a jet collection (``nJet``, ``Jet_pt``, ``Jet_eta``), drawn from a generator seeded per dataset and file, so the
files are the same in every test session.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

import awkward as ak
import numpy as np
import uproot

from tests.framework.fixture_analysis.config import EVENTS_PER_FILE, fixture_config

__all__ = ["make_events", "write_samples"]


def make_events(n_events: int, seed: int, is_data: bool, first_event: int = 0) -> dict[str, ak.Array | np.ndarray]:
    """The branches of ``n_events`` events: 0 to 5 jets each, pt from 10 GeV upwards, |eta| < 3.

    Args:
        n_events: Number of events.
        seed: Seed of the random generator.
        is_data: Whether the events are data (no ``genWeight``).
        first_event: The ``event`` number of the first event.

    Returns:
        The branches, as uproot writes them (the jets as one record array).
    """
    rng = np.random.default_rng(seed)
    n_jets = rng.integers(0, 6, size=n_events)
    n_total = int(n_jets.sum())
    jets = ak.zip(
        {
            "pt": ak.unflatten((10.0 + rng.exponential(40.0, n_total)).astype(np.float32), n_jets),
            "eta": ak.unflatten(rng.uniform(-3.0, 3.0, n_total).astype(np.float32), n_jets),
        },
    )
    branches: dict[str, ak.Array | np.ndarray] = {
        "run": np.ones(n_events, dtype=np.uint32),
        "luminosityBlock": (np.arange(n_events) // 100 + 1).astype(np.uint32),
        "event": np.arange(first_event, first_event + n_events, dtype=np.uint64),
        "Jet": jets,
    }
    if not is_data:
        branches["genWeight"] = rng.uniform(0.5, 1.5, n_events).astype(np.float32)
    return branches


def write_samples(data_dir: Path) -> list[Path]:
    """Write every file of every dataset of the fixture config below ``data_dir`` (the tasks' ``$CF_DATA``).

    Args:
        data_dir: The directory that ``$CF_DATA`` in the dataset keys stands for.

    Returns:
        The written files.
    """
    paths = []
    for dataset in fixture_config.datasets:
        n_events = EVENTS_PER_FILE[dataset.name]
        for index, key in enumerate(dataset.keys):
            path = Path(Template(key).substitute(CF_DATA=str(data_dir)))
            path.parent.mkdir(parents=True, exist_ok=True)
            branches = make_events(
                n_events, seed=100 * dataset.id + index, is_data=dataset.is_data, first_event=index * n_events
            )
            with uproot.recreate(path) as output:
                output.mktree("Events", branches)
            paths.append(path)
    return paths
