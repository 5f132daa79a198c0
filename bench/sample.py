"""Generate the bench sample of one size and describe it: ``python -m bench.sample OUT_JSON``.

Runs with ``CF_DATA`` and ``CF_SAMPLE_SCALE`` set (the harness does that): the files of the bench datasets
that do not exist yet are written at the paths the config names (generation is not timed, and an existing
sample is reused), then ``OUT_JSON`` gets the file lists, the event counts and the ROOT branches the chain
reads.

The events are the template generator's (``generate_events``, same seeds, so the same events as
``cf.CreateSampleFiles`` writes), but written in baskets of ``--basket-size`` entries like real NanoAOD,
whose files hold many baskets per branch. The template's writer puts each branch of a file into one basket,
which any chunked reader has to decompress whole: memory then grows with the file size. ``--basket-size 0``
keeps the template's own writer.
"""

from __future__ import annotations

import argparse
import json
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench.common import CONFIG, DATASETS

__all__ = ["chain_branches", "main", "write_file"]


def write_file(path: str, file_index: int, kwargs: dict[str, Any], basket_size: int) -> str:
    """Generate one file of a dataset with the template's generator; baskets of ``basket_size`` entries.

    ``basket_size`` 0 uses the template's writer (one basket per branch). Written atomically.
    """
    from sample import generate

    if basket_size <= 0:
        generate.create_file(path=path, file_index=file_index, **kwargs)
        return path
    import uproot

    events = generate.generate_events(kwargs["processes"], kwargs["seed"], file_index, kwargs.get("is_data", False))
    branches = generate.nanoaod_branches(events)
    n_events = len(events)
    starts = range(0, max(n_events, 1), basket_size)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp_path = f"{path}.{os.getpid()}.tmp"
    try:
        with uproot.recreate(tmp_path, compression=generate.COMPRESSION) as file:
            tree = None
            for start in starts:
                chunk = {name: values[start : start + basket_size] for name, values in branches.items()}
                if tree is None:
                    tree = file.mktree(generate.EVENT_TREE_NAME, chunk, initial_basket_capacity=len(starts) + 1)
                else:
                    tree.extend(chunk)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    return path


def chain_branches(config_inst: Any, root_file: str) -> list[str]:
    """The ROOT branches that CalibrateEvents, SelectEvents and ReduceEvents read from a NanoAOD file.

    Derived from the registries and the config exactly as the tasks do: the default calibrators' and the
    selector's ``uses`` (plus ``genWeight`` for MC), the config's ``keep_columns`` of ReduceEvents and the
    event identity.
    """
    from cf.analysis import load_modules
    from cf.columnar_util import IDENTITY_COLUMNS, filter_routes
    from cf.functions import calibrators, selectors
    from cf.io import RootSource

    load_modules("calibration_modules")
    load_modules("selection_modules")
    patterns: set[str] = {"genWeight", *IDENTITY_COLUMNS}
    for name in config_inst.x.default_calibrators:
        patterns |= calibrators.get(name)(config_inst=config_inst).used_columns
    patterns |= selectors.get(config_inst.x.default_selector)(config_inst=config_inst).used_columns
    patterns |= set(config_inst.x.keep_columns.get("cf.ReduceEvents", ()))
    routes = filter_routes(RootSource(root_file).routes(), sorted(patterns))
    # NanoAOD naming: route ("Jet", "pt") is the branch Jet_pt
    return sorted("_".join(route.fields) for route in routes)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_json", help="where to write the description of the sample")
    parser.add_argument("--jobs", type=int, default=2, help="files generated in parallel")
    parser.add_argument("--basket-size", type=int, default=10_000, help="entries per basket (0: template's writer)")
    args = parser.parse_args(argv)

    from analysis_template.config.analysis import analysis_template
    from cf.util import expand_path

    config_inst = analysis_template.get_config(CONFIG)
    files: dict[str, list[str]] = {}
    n_events: dict[str, int] = {}
    todo: list[tuple[str, int, dict[str, Any], int]] = []
    for dataset in DATASETS:
        dataset_inst = config_inst.get_dataset(dataset)
        paths = [expand_path(key) for key in dataset_inst.keys]
        files[dataset] = paths
        n_events[dataset] = int(dataset_inst.n_events)
        kwargs = dataset_inst.x.sample["kwargs"]
        todo += [
            (path, index, kwargs, args.basket_size) for index, path in enumerate(paths) if not os.path.exists(path)
        ]
    if todo:
        print(f"bench: generating {len(todo)} sample file(s) in {os.environ.get('CF_DATA')}", flush=True)
        with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for path in pool.map(write_file, *zip(*todo, strict=True)):
                print(f"bench:   {path}", flush=True)
    description = {
        "files": files,
        "n_events": n_events,
        "branches": chain_branches(config_inst, files[DATASETS[0]][0]),
        "scale": float(os.environ.get("CF_SAMPLE_SCALE", "1")),
        "basket_size": args.basket_size,
    }
    with open(args.out_json, "w") as f:
        json.dump(description, f, indent=2)


if __name__ == "__main__":
    main()
