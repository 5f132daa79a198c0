"""What every part of the bench shares: the benchmarked datasets, the sample size and the model settings.

The bench sample is the template's four MC datasets (two files each, the template's layout) with
``CF_SAMPLE_SCALE`` chosen so that all files together hold the requested number of events.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG",
    "DATASETS",
    "DEFAULT_BASKET_SIZE",
    "ML_MODEL",
    "SampleInfo",
    "data_dir",
    "events_per_file",
    "ml_settings",
    "parse_count",
    "sample_scale",
]

#: The config the bench runs on.
CONFIG = "run2_2017_nano_uhh_v11_limited"
#: The MC datasets of the template (the ``dnn`` model's training datasets); the bench sample is all of them.
DATASETS = ("hh_ggf_bbtautau_madgraph", "tt_sl_powheg", "tt_dl_powheg", "dy_lep_m50_madgraph")
#: Files per dataset and events per file at CF_SAMPLE_SCALE=1 (analysis_template.config.campaign_*).
FILES_PER_DATASET = 2
MC_EVENTS_PER_FILE = 4000
#: The ML model of the training and evaluation measurements.
ML_MODEL = "dnn"


def parse_count(text: str) -> int:
    """Parse an event count such as ``1M``, ``20k`` or ``250000``.

    Raises:
        ValueError: If the text is not a positive count.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not match:
        raise ValueError(f"not an event count: {text!r} (use e.g. 20k, 1M or 250000)")
    factor = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    count = round(float(match.group(1)) * factor)
    if count < 1:
        raise ValueError(f"the event count must be positive, got {text!r}")
    return count


def format_count(count: int) -> str:
    """``1000000 -> "1M"``, ``20000 -> "20k"``, other counts as digits."""
    if count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count % 1_000 == 0:
        return f"{count // 1_000}k"
    return str(count)


def sample_scale(n_events: int) -> float:
    """The ``CF_SAMPLE_SCALE`` for which the bench datasets hold ``n_events`` events in total."""
    return n_events / (len(DATASETS) * FILES_PER_DATASET * MC_EVENTS_PER_FILE)


def events_per_file(n_events: int) -> int:
    """Events per file at that scale (the config rounds the same way)."""
    return max(1, round(MC_EVENTS_PER_FILE * sample_scale(n_events)))


def data_dir(workdir: str | os.PathLike[str], n_events: int, basket_size: int) -> Path:
    """Where the sample of one size and basket layout lives (``CF_DATA`` of its measurements)."""
    return Path(workdir) / f"data_{format_count(n_events)}_b{format_count(basket_size) if basket_size else 0}"


#: Entries per basket of the bench samples' ROOT files (see bench/sample.py).
DEFAULT_BASKET_SIZE = 10_000


def ml_settings(epochs: int) -> str:
    """The ``--ml-model-settings`` of the bench trainings: exactly ``epochs`` epochs (no early stop)."""
    return f"epochs={epochs},patience={epochs}"


class SampleInfo:
    """The generated sample of one size: its files, events and the ROOT branches the chain reads.

    Written by ``python -m bench.sample`` as ``sample.json`` next to the samples.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.files: dict[str, list[str]] = {name: list(paths) for name, paths in data["files"].items()}
        self.n_events: dict[str, int] = dict(data["n_events"])
        self.branches: list[str] = list(data["branches"])
        self.scale: float = float(data["scale"])
        self.basket_size: int = int(data.get("basket_size", 0))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SampleInfo:
        return cls(json.loads(Path(path).read_text()))

    @property
    def all_files(self) -> list[str]:
        return [path for dataset in DATASETS for path in self.files[dataset]]

    @property
    def total_events(self) -> int:
        return sum(self.n_events.values())
