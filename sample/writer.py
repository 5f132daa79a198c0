"""Writing of event records as NanoAOD-layout ROOT files: a ``TTree`` named ``Events`` with ``nJet``, ``Jet_pt``, ..."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

__all__ = ["COMPRESSION", "EVENT_TREE_NAME", "nanoaod_branches", "write_nanoaod"]

EVENT_TREE_NAME = "Events"
COMPRESSION = uproot.ZSTD(1)  # several times faster to write than ZLIB at a similar size


def nanoaod_branches(events: ak.Array) -> dict[str, np.ndarray | ak.Array]:
    """Flattens event records into mktree input.

    Jagged collections stay records (mktree makes nX and X_y branches of them); per-event records (MET, PV) are
    split into X_y branches.

    Args:
        events: Event records as returned by `sample.generate.generate_events`.

    Returns:
        Branch name (or collection name) to its values.
    """
    branches: dict[str, np.ndarray | ak.Array] = {}
    for name in events.fields:
        column = events[name]
        if column.ndim > 1:
            branches[name] = column
        elif column.fields:
            branches.update({f"{name}_{sub}": ak.to_numpy(column[sub]) for sub in column.fields})
        else:
            branches[name] = ak.to_numpy(column)
    return branches


def write_nanoaod(path: str | os.PathLike, events: ak.Array) -> None:
    """Writes events as a NanoAOD-layout TTree 'Events', atomically.

    The tree is written to a temporary sibling file that replaces `path` only once complete, so an interrupted
    write never leaves a partial file at `path`.

    Args:
        path: Output ROOT file; its parent directory is created.
        events: Event records as returned by `sample.generate.generate_events`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    branches = nanoaod_branches(events)
    # a unique hidden sibling: same file system (atomic os.replace) and never picked up as a finished file
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with uproot.recreate(tmp_path, compression=COMPRESSION) as output:
            output.mktree(EVENT_TREE_NAME, branches)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
