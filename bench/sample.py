"""Generate the bench sample of one size and describe it: ``python -m bench.sample OUT_JSON``.

Runs with ``CF_DATA`` and ``CF_SAMPLE_SCALE`` set (the harness does that): the template's generator writes
the files of the bench datasets that do not exist yet (generation is not timed, and an existing sample is
reused), then ``OUT_JSON`` gets the file lists, the event counts and the ROOT branches the chain reads.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.common import CONFIG, DATASETS

__all__ = ["chain_branches", "main"]


def _generate(path: str, file_index: int, kwargs: dict[str, Any]) -> str:
    from analysis_template.sample.generate import create_file

    create_file(path=path, file_index=file_index, **kwargs)
    return path


def chain_branches(config_inst: Any, root_file: str) -> list[str]:
    """The ROOT branches that CalibrateEvents, SelectEvents and ReduceEvents read from a NanoAOD file.

    Derived from the registries and the config exactly as the tasks do: the default calibrators' and the
    selector's ``uses`` (plus ``genWeight`` for MC), the config's ``keep_columns`` of ReduceEvents and the
    event identity.
    """
    from cf.analysis import load_modules
    from cf.columnar_util import filter_routes
    from cf.functions import calibrators, selectors
    from cf.io import RootSource
    from cf.tasks.reduction import IDENTITY_COLUMNS

    load_modules("calibration_modules")
    load_modules("selection_modules")
    patterns: set[str] = {"genWeight", *IDENTITY_COLUMNS}
    for name in config_inst.x.default_calibrators:
        patterns |= calibrators.get(name).columns_used(is_data=False)
    patterns |= selectors.get(config_inst.x.default_selector).columns_used(is_data=False)
    patterns |= set(config_inst.x.keep_columns.get("cf.ReduceEvents", ()))
    routes = filter_routes(RootSource(root_file).routes(), sorted(patterns))
    # NanoAOD naming: route ("Jet", "pt") is the branch Jet_pt
    return sorted("_".join(route.fields) for route in routes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_json", help="where to write the description of the sample")
    parser.add_argument("--jobs", type=int, default=2, help="files generated in parallel")
    args = parser.parse_args(argv)

    from analysis_template.config.analysis import analysis_template
    from cf.util import expand_path

    config_inst = analysis_template.get_config(CONFIG)
    files: dict[str, list[str]] = {}
    n_events: dict[str, int] = {}
    todo: list[tuple[str, int, dict[str, Any]]] = []
    for dataset in DATASETS:
        dataset_inst = config_inst.get_dataset(dataset)
        paths = [expand_path(key) for key in dataset_inst.keys]
        files[dataset] = paths
        n_events[dataset] = int(dataset_inst.n_events)
        kwargs = dataset_inst.x.sample["kwargs"]
        todo += [(path, index, kwargs) for index, path in enumerate(paths) if not os.path.exists(path)]
    if todo:
        print(f"bench: generating {len(todo)} sample file(s) in {os.environ.get('CF_DATA')}", flush=True)
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for path in pool.map(_generate, *zip(*todo, strict=True)):
                print(f"bench:   {path}", flush=True)
    description = {
        "files": files,
        "n_events": n_events,
        "branches": chain_branches(config_inst, files[DATASETS[0]][0]),
        "scale": float(os.environ.get("CF_SAMPLE_SCALE", "1")),
    }
    with open(args.out_json, "w") as f:
        json.dump(description, f, indent=2)


if __name__ == "__main__":
    main()
