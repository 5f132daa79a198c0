"""Importing the framework changes no global state: matplotlib's backend and rcParams, loggers, warning filters and
the environment are what they were before (the libraries ``cf`` uses are imported first, so only ``cf``'s own
import-time effects are compared)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import importlib, json, logging, os, pkgutil, sys, warnings

    import awkward, coffea.nanoevents.methods.nanoaod, correctionlib, hist, law, luigi, matplotlib, mplhep, numpy
    import order, pyarrow, pyhf, scinum, scipy.stats, uproot

    def state():
        loggers = {"": logging.getLogger()}
        loggers.update({n: l for n, l in logging.Logger.manager.loggerDict.items() if isinstance(l, logging.Logger)})
        return {
            "backend": matplotlib.get_backend(),
            "rcParams": {k: repr(v) for k, v in matplotlib.rcParams.items()},
            "loggers": {
                name: [logger.level, [type(f).__name__ for f in logger.filters], len(logger.handlers)]
                for name, logger in loggers.items()
            },
            "warnings": [repr(f) for f in warnings.filters],
            "environ": dict(os.environ),
        }

    before = state()
    import cf
    modules = sorted(m.name for m in pkgutil.walk_packages(cf.__path__, "cf."))
    for name in modules:
        importlib.import_module(name)
    after = state()
    changes = {}
    for key, value in before.items():
        if key in ("loggers", "rcParams", "environ"):
            changed = {k: [v, after[key].get(k)] for k, v in value.items() if after[key].get(k) != v}
        else:
            changed = [value, after[key]] if after[key] != value else None
        if changed:
            changes[key] = changed
    print(json.dumps({"modules": modules, "changes": changes}))
    """
)


def test_importing_every_cf_module_changes_no_global_state() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "cf.plotting" in report["modules"]
    assert "cf.tasks.base" in report["modules"]
    assert report["changes"] == {}
