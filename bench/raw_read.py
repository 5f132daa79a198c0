"""The I/O limit: read exactly the chain's ROOT branches with plain uproot, in chunks, and nothing else.

``python -m bench.raw_read SAMPLE_JSON --chunk-size N`` prints one json line: events read and seconds.
"""

from __future__ import annotations

import argparse
import json
import time

__all__ = ["main", "read_all"]


def read_all(files: list[str], branches: list[str], chunk_size: int) -> int:
    """Read the branches of all files chunk by chunk (awkward arrays, as the chain gets them); return the events."""
    import uproot

    n_events = 0
    for path in files:
        with uproot.open(path) as file:
            for arrays in file["Events"].iterate(branches, step_size=chunk_size, library="ak", how=dict):
                n_events += len(arrays[branches[0]])
    return n_events


def main(argv: list[str] | None = None) -> None:
    from bench.common import SampleInfo

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sample_json")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    args = parser.parse_args(argv)
    sample = SampleInfo.load(args.sample_json)
    start = time.perf_counter()
    n_events = read_all(sample.all_files, sample.branches, args.chunk_size)
    print(json.dumps({"events": n_events, "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
