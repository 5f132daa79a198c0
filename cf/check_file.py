"""``cf_check_file``: which columns a config's functions read and which of them a NanoAOD file lacks.

Run it before adding a dataset of a new NanoAOD version: it prints, per calibrator / selector / producer of the
config's defaults (or the ones named), every column read, where it is declared, and for each one the file lacks the
closest existing columns, so that the config entry to set (e.g. ``config.x.objects``) is plain.

Example::

    cf_check_file --config run3_2022_preee_nano_v12_limited /path/to/nano.root
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from cf.analysis import get_config, load_analysis, load_modules
from cf.columnar_util import filter_routes
from cf.contract import config_entry
from cf.functions import ColumnFunction, calibrators, producers, selectors
from cf.io import InputFileError, close_columns, open_source
from cf.util import UserError

__all__ = ["main", "report"]


def _functions(config_inst: Any, args: argparse.Namespace) -> list[ColumnFunction]:
    """The calibrators and the selector to check (producers run on reduced events: only with --producers)."""
    load_modules("calibration_modules")
    load_modules("selection_modules")
    load_modules("production_modules")
    names_calib = args.calibrators.split(",") if args.calibrators else config_entry(config_inst, "default_calibrators")
    selector = args.selector or config_entry(config_inst, "default_selector")
    classes = [calibrators.get(name) for name in names_calib] + [selectors.get(selector)]
    if args.producers:
        classes += [producers.get(name) for name in args.producers.split(",")]
    return [cls(config_inst=config_inst) for cls in classes]


def report(path: str, funcs: list[ColumnFunction], is_data: bool) -> tuple[list[str], int]:
    """The report lines and the number of columns the file lacks.

    Columns a calibrator writes (e.g. the calibrated ``MET``) count as present for the functions after it.
    """
    source = open_source(path)
    available = [route.column for route in source.routes()]
    produced: set[str] = set()
    lines = [f"file {path}: {source.n_events} events, {len(available)} columns"]
    n_missing = 0
    for func in funcs:
        lines.append(f"{func.kind} '{func.cls_name}':")
        for column, origin in sorted(func.column_origins(is_data).items()):
            present = bool(filter_routes(source.routes(), [column])) or column in produced
            if present:
                lines.append(f"  ok       {column}  ({origin})")
                continue
            n_missing += 1
            closest = ", ".join(close_columns(column, available)) or "no similar column"
            lines.append(f"  MISSING  {column}  ({origin}); closest: {closest}")
        produced |= func.produced_columns
    lines.append(f"{n_missing} column(s) missing" if n_missing else "all columns present")
    return lines, n_missing


def main(argv: Sequence[str] | None = None) -> int:
    """Print the report; exit code 0 when nothing is missing, 1 when columns are missing, 2 on bad input."""
    parser = argparse.ArgumentParser(prog="cf_check_file", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="a NanoAOD file (TTree or RNTuple), local or root:// URL")
    parser.add_argument("--config", required=True, help="the config whose object definitions apply")
    parser.add_argument("--calibrators", default="", help="comma separated; default: the config's")
    parser.add_argument("--selector", default="", help="default: the config's")
    parser.add_argument("--producers", default="", help="comma separated; checked too when given")
    parser.add_argument("--data", action="store_true", help="a data file (no mc_uses columns such as genWeight)")
    args = parser.parse_args(argv)
    try:
        config_inst = get_config(load_analysis(), args.config)
        lines, n_missing = report(args.file, _functions(config_inst, args), args.data)
    except (UserError, InputFileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 1 if n_missing else 0
