"""Sphinx extension ``cf_figures``: the pictures of the docs, made from real outputs of the tasks at every build.

At ``builder-inited`` the folder ``_generated/figures`` of the docs is emptied and filled again, so that no picture
of an older build survives; pages include the files with ``{figure} /_generated/figures/<name>``:

* the plots written by the commands of :data:`RUNS`, copied from the outputs that ``law run ... --print-output 0``
  lists. With ``CF_DOCS_STORE`` set (a ``CF_STORE_LOCAL`` of this analysis with the outputs already made, or several
  separated by ``os.pathsep``) each command's plots come from the first store that has them, and a command whose
  plots no store has is run in the first one. Without it, every command runs in a temporary store, which reuses the
  samples of ``CF_DATA`` and is removed afterwards (a few minutes on two cores, mostly the limit's chain).
* :data:`TASK_GRAPH`, the dependency tree of the same commands (:mod:`cf_task_graph`).

The build holds a lock on the folder until it finishes, so that two builds of one checkout never empty it under each
other. ``law`` must be on ``PATH`` (``source setup.sh``).
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging

__all__ = [
    "FIGURES_DIR",
    "RESONANCE_SCAN",
    "RESONANCE_SCAN_LEFT_OUT",
    "RUNS",
    "STORE_VARIABLE",
    "TASK_GRAPH",
    "FigureRun",
    "setup",
]

logger = logging.getLogger(__name__)

#: The folder of the generated figures, relative to the docs' source directory.
FIGURES_DIR = Path("_generated", "figures")
#: The environment variable naming the store(s) to take the plots from.
STORE_VARIABLE = "CF_DOCS_STORE"
#: The file name of the task graph.
TASK_GRAPH = "task_graph.png"
#: Seconds one ``law run`` may take (the first training of the reference model included).
RUN_TIMEOUT = 3600
#: Characters of a failed command's output shown in the error.
OUTPUT_TAIL = 3000


@dataclass(frozen=True)
class FigureRun:
    """A ``law run`` command whose outputs include pictures of the docs.

    Attributes:
        args: The task family and its parameters, as typed after ``law run`` (the pages show them verbatim).
        figures: ``{file name in the figures folder: file name among the task's outputs}``.
        model: The ML model whose training the command needs ("" for none); the tests make the plots in the
            store in which that model is trained.
    """

    args: tuple[str, ...]
    figures: Mapping[str, str]
    model: str = ""

    @property
    def command(self) -> str:
        return shlex.join(("law", "run", *self.args))


#: The parametrized network of the resonance search at the tests' sizes (two folds, two epochs, three masses).
RESONANCE_TRAINING = "epochs=2,folds=2"
#: The mass scan of the resonance search, with the network trained at all three masses ...
RESONANCE_SCAN = (
    "cf.PlotLimitsVsMass", "--version", "v1", "--inference-model", "resonant_inference", "--masses", "300,500,1000",
    "--ml-models", f"param_dnn[{RESONANCE_TRAINING},masses=300:500:1000,training_masses=300:500:1000]",
)  # fmt: skip
#: ... and without the middle one (the interpolation check).
RESONANCE_SCAN_LEFT_OUT = (
    *RESONANCE_SCAN[:-1],
    f"param_dnn[{RESONANCE_TRAINING},masses=300:500:1000,training_masses=300:1000]",
)

#: The commands whose plots the docs show, in the order in which a fresh store runs them.
RUNS = (
    FigureRun(
        ("cf.PlotMLResults", "--version", "v1", "--ml-model", "test_model"),
        {
            "test_model_roc.png": "plot__roc.png",
            "test_model_scores.png": "plot__scores.png",
            "test_model_confusion.png": "plot__confusion.png",
        },
        model="test_model",
    ),
    FigureRun(
        ("cf.PlotVariables1D", "--version", "v1", "--variables", "jet1_pt", "--categories", "incl"),
        {"variables_jet1_pt.png": "plot__cat_incl__var_jet1_pt.png"},
    ),
    FigureRun(("cf.PlotMLResults", "--version", "v1", "--ml-model", "dnn"), {"dnn_loss.png": "plot__loss.png"}, "dnn"),
    FigureRun(
        ("cf.PlotMLInputs", "--version", "v1", "--ml-model", "dnn"),
        {"dnn_inputs.png": "plot__inputs.png", "dnn_correlation_hh.png": "plot__correlation__hh.png"},
        model="dnn",
    ),
    FigureRun(
        ("cf.PlotMLImportance", "--version", "v1", "--ml-model", "dnn"),
        {"dnn_importance.png": "plot__importance.png"},
        model="dnn",
    ),
    FigureRun(
        ("cf.PyhfLimit", "--version", "v1", "--inference-model", "test_inference"),
        {"limits.png": "limits.png"},
        model="dnn",
    ),
    FigureRun(RESONANCE_SCAN, {"limits_vs_mass.png": "limits_vs_mass.png"}, model="param_dnn"),
    FigureRun(RESONANCE_SCAN_LEFT_OUT, {"limits_vs_mass_left_out.png": "limits_vs_mass.png"}, model="param_dnn"),
)

# the lock of each running build, released when it finishes
_locks: dict[int, IO[str]] = {}


# law runs


def repository() -> Path:
    """The checkout (``$CF_BASE``, else the parent of the docs)."""
    return Path(os.environ.get("CF_BASE") or Path(__file__).resolve().parents[2])


def store_environ(store: Path) -> dict[str, str]:
    """``os.environ`` with ``CF_STORE_LOCAL`` set to ``store``."""
    return {**os.environ, "CF_STORE_LOCAL": str(store)}


def law_run(args: Sequence[str], env: Mapping[str, str]) -> str:
    """Run ``law run ARGS...`` and return its stdout.

    Raises:
        ExtensionError: If law is not on ``PATH`` or the command fails (with the tail of its output).
    """
    if shutil.which("law", path=env.get("PATH")) is None:
        raise ExtensionError("cf_figures: 'law' is not on PATH: build the docs after 'source setup.sh'")
    command = ["law", "run", *args]
    try:
        result = subprocess.run(
            command, env=dict(env), cwd=repository(), capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as error:
        raise ExtensionError(f"cf_figures: '{shlex.join(command)}' took more than {RUN_TIMEOUT} s") from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-OUTPUT_TAIL:]
        raise ExtensionError(f"cf_figures: '{shlex.join(command)}' exited with {result.returncode}:\n{output}")
    return result.stdout


def output_files(run: FigureRun, store: Path) -> dict[str, Path]:
    """The run's figures (``{file name in the figures folder: path in the store}``), existing or not."""
    lines = law_run([*run.args, "--print-output", "0"], store_environ(store)).splitlines()
    listed = [Path(line.strip().removeprefix("file://")) for line in lines if line.strip().startswith("file://")]
    paths = {path.name: path for path in listed}
    missing = sorted(set(run.figures.values()) - set(paths))
    if missing:
        raise ExtensionError(f"cf_figures: '{run.command} --print-output 0' lists no {', '.join(missing)}")
    return {name: paths[output] for name, output in run.figures.items()}


def find_figures(run: FigureRun, stores: Sequence[Path]) -> dict[str, Path]:
    """The run's figures from the first store that has them all; if none has, the run is made in the first store."""
    for store in stores:
        files = output_files(run, store)
        if all(path.is_file() for path in files.values()):
            return files
    logger.info(f"cf_figures: running '{run.command}' in {stores[0]}")
    law_run(run.args, store_environ(stores[0]))
    return output_files(run, stores[0])


def configured_stores() -> list[Path]:
    """The stores named by ``CF_DOCS_STORE`` (empty when it is not set).

    Raises:
        ExtensionError: If one of them is not a directory.
    """
    stores = [Path(item) for item in os.environ.get(STORE_VARIABLE, "").split(os.pathsep) if item]
    for store in stores:
        if not store.is_dir():
            raise ExtensionError(f"cf_figures: {STORE_VARIABLE} names '{store}', which is not a directory")
    return stores


def copy_figures(stores: Sequence[Path], target: Path) -> None:
    """Copy the figures of every run into ``target`` (new files: their time is this build's)."""
    for run in RUNS:
        for name, path in find_figures(run, stores).items():
            shutil.copyfile(path, target / name)


# the build


@contextmanager
def figure_stores() -> Iterator[list[Path]]:
    """The stores of ``CF_DOCS_STORE``, else a temporary one (removed on exit)."""
    stores = configured_stores()
    if stores:
        yield stores
        return
    with tempfile.TemporaryDirectory(prefix="cf_docs_store_") as tmp:
        yield [Path(tmp, "store")]


def make_figures(target: Path) -> None:
    """Empty ``target`` and write every figure into it."""
    from cf_task_graph import draw_task_graph, task_graph

    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with figure_stores() as stores:
        copy_figures(stores, target)
    draw_task_graph(task_graph(run.args for run in RUNS), target / TASK_GRAPH)


def lock(app: Sphinx) -> float:
    """Wait for other builds of this checkout to finish, then hold the lock until this one finishes.

    Returns:
        The seconds waited.
    """
    path = Path(app.srcdir, FIGURES_DIR.parent, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("w")
    start = time.monotonic()
    fcntl.flock(handle, fcntl.LOCK_EX)
    _locks[id(app)] = handle
    return time.monotonic() - start


def unlock(app: Sphinx, exception: Exception | None) -> None:
    handle = _locks.pop(id(app), None)
    if handle is not None:
        handle.close()


def on_builder_inited(app: Sphinx) -> None:
    waited = lock(app)
    if waited > 1:
        logger.info(f"cf_figures: waited {waited:.0f} s for another build of these docs to finish")
    start = time.monotonic()
    source = os.environ.get(STORE_VARIABLE) or "a temporary store"
    make_figures(Path(app.srcdir, FIGURES_DIR))
    logger.info(f"cf_figures: figures from {source} in {time.monotonic() - start:.0f} s")


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", on_builder_inited)
    app.connect("build-finished", unlock)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
