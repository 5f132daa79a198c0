"""Shared fixtures: an isolated store and data directory for real ``law run`` subprocesses.

Tests run in an environment where ``source setup.sh`` was done (``CF_BASE``, ``LAW_HOME``, ``PATH`` with the
venv and ``law``). Tests that start ``law`` get an isolated environment from the fixtures below, so that they
never touch the user's store or samples:

* ``law_env`` (session): a :class:`LawEnv` with a temporary ``CF_STORE_LOCAL`` and ``CF_DATA``. The embedded
  samples are generated into its ``CF_DATA`` on first use (~1 s per dataset) and shared by all tests.
* ``fresh_law_env`` (function): the same ``CF_DATA`` (samples are reused) but an empty store of its own.
* ``law_run`` (session): the :func:`run_law` helper, ``law_run("cf.ProduceColumns", "--version", "v1",
  env=law_env.env)``; it fails the test with the output tails on an unexpected exit code.
* ``law_outputs`` (session): the :func:`print_outputs` helper, the paths that ``--print-output N`` lists.
* ``docs_env`` (session): the environment of a docs build that takes its pictures from the session's stores
  (``CF_DOCS_STORE``).
* ``docs_build`` (session): the one docs build of the session (``sphinx-build -W --keep-going``, pictures from
  ``docs_env``), after a stale file and a stale copy of a picture were planted in the generated folder; the
  warning check, the picture checks and the browser check all read it.

Example, in a test module of another part of the analysis (types from ``tests.conftest``)::

    @pytest.mark.slow
    def test_my_task(law_env: LawEnv, law_run: LawRun) -> None:
        result = law_run("cf.MyTask", "--version", "v1", env=law_env.env)
        assert law_env.store.joinpath("analysis_template", "cf.MyTask").is_dir()

Nothing here changes global state (no autouse fixtures, no environment changes of the test process).
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import pytest

#: The XRootD server fixture (``xrootd_server``), for the tests that read remote files.
pytest_plugins = ["tests.xrootd_server"]

#: Default timeout of one ``law run`` in seconds (the chain of one dataset takes a few seconds).
LAW_RUN_TIMEOUT = 300.0
#: Characters of stdout / stderr shown when a command fails.
OUTPUT_TAIL = 4000


@dataclass(frozen=True)
class LawEnv:
    """An environment for ``law run`` subprocesses with its own store and data directory.

    Attributes:
        env: The environment to pass to :func:`run_law` (``os.environ`` with the paths below).
        store: ``CF_STORE_LOCAL``: where task outputs go.
        data: ``CF_DATA``: where the embedded samples are generated (``$CF_DATA/samples/...``).
    """

    env: dict[str, str] = field(repr=False)
    store: Path
    data: Path

    def with_paths(self, store: Path | None = None, data: Path | None = None) -> LawEnv:
        """A copy with another store and / or data directory (created if needed)."""
        new_store = store or self.store
        new_data = data or self.data
        return replace(self, env=isolated_environ(new_store, new_data, self.env), store=new_store, data=new_data)

    def copy_data(self, destination: Path) -> LawEnv:
        """A copy whose data directory is a copy of this one (e.g. to corrupt a sample file in it)."""
        shutil.copytree(self.data, destination, dirs_exist_ok=True)
        return self.with_paths(data=destination)


class LawRun(Protocol):
    """The signature of :func:`run_law` (for type annotations of the ``law_run`` fixture)."""

    def __call__(
        self,
        *args: str,
        env: Mapping[str, str],
        check: bool = True,
        timeout: float = LAW_RUN_TIMEOUT,
        file_size_limit: int | None = None,
    ) -> subprocess.CompletedProcess[str]: ...


class LawOutputs(Protocol):
    """The signature of :func:`print_outputs` (for type annotations of the ``law_outputs`` fixture)."""

    def __call__(self, *args: str, env: Mapping[str, str], depth: int = 0) -> list[Path]: ...


def require_cf_base() -> Path:
    """``$CF_BASE`` as a path; skips the calling test when ``setup.sh`` was not sourced."""
    base = os.environ.get("CF_BASE")
    if not base:
        pytest.skip("CF_BASE is not set: run the tests after 'source setup.sh' (it provides law and the venv)")
    return Path(base)


def isolated_environ(store: Path, data: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with ``CF_STORE_LOCAL`` and ``CF_DATA`` set (dirs created).

    ``CF_JOB_BASE`` goes below the data directory too, so nothing is written into the checkout's data. Downloads
    (the coffea sdist with the real NanoAOD files) stay in the real environment's ``CF_DOWNLOAD_CACHE`` (default:
    its ``$CF_DATA/downloads``), so that every test session and every run after the first reuses them.
    """
    store.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if base is None else base)
    downloads = env.get("CF_DOWNLOAD_CACHE") or str(Path(env.get("CF_DATA", str(data))) / "downloads")
    env.update(
        {
            "CF_STORE_LOCAL": str(store),
            "CF_DATA": str(data),
            "CF_JOB_BASE": str(data / "jobs"),
            "CF_DOWNLOAD_CACHE": downloads,
        },
    )
    return env


def tail(text: str, n: int = OUTPUT_TAIL) -> str:
    """The last ``n`` characters of ``text``."""
    return text if len(text) <= n else "...\n" + text[-n:]


def run_law(
    *args: str,
    env: Mapping[str, str],
    check: bool = True,
    timeout: float = LAW_RUN_TIMEOUT,
    file_size_limit: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``law run ARGS...`` in ``env`` and return the completed process (text stdout / stderr captured).

    Args:
        args: The task family and its parameters, e.g. ``"cf.ProduceColumns", "--version", "v1"``.
        env: The environment, usually ``law_env.env``.
        check: If True, a non-zero exit fails the test; if False, the exit code is the caller's to check.
        timeout: Seconds after which the run is killed and the test fails.
        file_size_limit: The largest file in bytes the run may write (``RLIMIT_FSIZE``): a full disk, simulated.

    Returns:
        The completed process.
    """
    command = ["law", "run", *args]
    cwd = env.get("CF_BASE") or None

    def limit_file_size() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    preexec = limit_file_size if file_size_limit is not None else None
    try:
        result = subprocess.run(
            command,
            env=dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=preexec,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"'{' '.join(command)}' timed out after {timeout} s\n{_describe(error.stdout, error.stderr)}")
    if check and result.returncode != 0:
        pytest.fail(
            f"'{' '.join(command)}' exited with {result.returncode}\n{_describe(result.stdout, result.stderr)}",
        )
    return result


def _describe(stdout: str | bytes | None, stderr: str | bytes | None) -> str:
    def text(value: str | bytes | None) -> str:
        return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")

    return f"--- stdout (tail) ---\n{tail(text(stdout))}\n--- stderr (tail) ---\n{tail(text(stderr))}"


def output_paths(result: subprocess.CompletedProcess[str]) -> list[Path]:
    """The local paths of the ``file://`` lines that ``law run ... --print-output N`` prints, in order."""
    return [Path(line.strip().removeprefix("file://")) for line in result.stdout.splitlines() if "file://" in line]


def print_outputs(*args: str, env: Mapping[str, str], depth: int = 0) -> list[Path]:
    """The output paths of a task (``law run ARGS... --print-output DEPTH``); runs nothing, fails on error."""
    return output_paths(run_law(*args, "--print-output", str(depth), env=env))


@functools.cache
def correction_bundle(config: str = "run2_2017_nano_uhh_v11_limited") -> Any:
    """The output (manifest) of ``cf.BundleExternalFiles`` for ``config``, run once in this process.

    The bundle goes into a temporary store of its own, so that unit tests can run the setup hooks of the
    calibrators and producers that read correction files, as a task does.
    """
    from cf.tasks.external import BundleExternalFiles

    previous = os.environ.get("CF_STORE_LOCAL")
    os.environ["CF_STORE_LOCAL"] = tempfile.mkdtemp(prefix="cf_bundle_")
    try:
        task = BundleExternalFiles(config=config)
        task.run()
        return task.output()
    finally:
        if previous is None:
            del os.environ["CF_STORE_LOCAL"]
        else:
            os.environ["CF_STORE_LOCAL"] = previous


@pytest.fixture(scope="session")
def law_env(tmp_path_factory: pytest.TempPathFactory) -> LawEnv:
    """An isolated ``CF_STORE_LOCAL`` and ``CF_DATA`` for the whole session; skips without ``source setup.sh``."""
    require_cf_base()
    if shutil.which("law") is None:
        pytest.skip("'law' is not on PATH: run the tests after 'source setup.sh'")
    root = tmp_path_factory.mktemp("law_env")
    store, data = root / "store", root / "data"
    return LawEnv(env=isolated_environ(store, data), store=store, data=data)


@pytest.fixture
def fresh_law_env(law_env: LawEnv, tmp_path: Path) -> LawEnv:
    """Like ``law_env`` (the same generated samples) but with an empty store of its own."""
    return law_env.with_paths(store=tmp_path / "store")


@pytest.fixture(scope="session")
def law_run() -> LawRun:
    """The :func:`run_law` helper: ``law_run(*args, env=..., check=True) -> CompletedProcess``."""
    return run_law


@pytest.fixture(scope="session")
def law_outputs() -> LawOutputs:
    """The :func:`print_outputs` helper: ``law_outputs(*args, env=..., depth=0) -> list[Path]``.

    Example: ``law_outputs("cf.MergeSelectionStats", *params, env=law_env.env)`` is ``[.../stats.json]``.
    """
    return print_outputs


#: The user guide's training and evaluation commands for ``test_model`` (tests run them verbatim).
TEST_MODEL_TRAIN = (
    "cf.MLTraining", "--version", "v1", "--ml-model", "test_model", "--config", "run2_2017_nano_uhh_v11_limited",
    "--calibrators", "skip_jecunc", "--selector", "default", "--dataset", "hh_ggf_bbtautau_madgraph,tt_sl_powheg",
)  # fmt: skip
TEST_MODEL_EVALUATE = (
    "cf.MLEvaluation", "--version", "v1", "--ml-model", "test_model", "--config", "run2_2017_nano_uhh_v11_limited",
    "--calibrators", "skip_jecunc",
)  # fmt: skip


@pytest.fixture(scope="session")
def test_model_store(law_env: LawEnv, tmp_path_factory: pytest.TempPathFactory) -> LawEnv:
    """A store in which ``test_model`` is trained and evaluated on its two datasets (the guide's commands).

    Shared by the ML, plotting and batch tests so that the TF training runs once per session. Tests may add
    outputs (other versions, plots) but must not remove or change these.
    """
    env = law_env.with_paths(store=tmp_path_factory.mktemp("test_model_store"))
    run_law(*TEST_MODEL_TRAIN, env=env.env, timeout=900)
    run_law(*TEST_MODEL_EVALUATE, env=env.env, timeout=600)
    run_law(*TEST_MODEL_EVALUATE, "--dataset", "tt_sl_powheg", env=env.env, timeout=600)
    return env


#: Training and evaluation of the reference classifier ``dnn``.
DNN_TRAIN = ("cf.MLTraining", "--version", "v1", "--ml-model", "dnn", "--config", "run2_2017_nano_uhh_v11_limited",
             "--calibrators", "skip_jecunc", "--selector", "default")  # fmt: skip
DNN_EVALUATE = ("cf.MLEvaluation", "--version", "v1", "--ml-model", "dnn", "--config", "run2_2017_nano_uhh_v11_limited",
                "--calibrators", "skip_jecunc")  # fmt: skip
#: The datasets ``dnn`` trains on, with its class index (hh, tt, dy).
DNN_DATASETS = {"hh_ggf_bbtautau_madgraph": 0, "tt_sl_powheg": 1, "tt_dl_powheg": 1, "dy_lep_m50_madgraph": 2}


@pytest.fixture(scope="session")
def dnn_store(law_env: LawEnv, tmp_path_factory: pytest.TempPathFactory) -> LawEnv:
    """A store in which ``dnn`` is trained and evaluated (ONNX) on its four datasets; shared like test_model_store."""
    env = law_env.with_paths(store=tmp_path_factory.mktemp("dnn_store"))
    run_law(*DNN_TRAIN, env=env.env, timeout=900)
    for dataset in DNN_DATASETS:
        run_law(*DNN_EVALUATE, "--dataset", dataset, env=env.env, timeout=600)
    return env


@pytest.fixture(scope="session")
def resonance_store(dnn_store: LawEnv, tmp_path_factory: pytest.TempPathFactory) -> LawEnv:
    """A copy of ``dnn_store`` (its background events are reduced already) in which the resonance search's two mass
    scans ran (``RESONANCE_SCAN`` and ``RESONANCE_SCAN_LEFT_OUT`` of the docs, at the tests' sizes)."""
    from docs._ext.cf_figures import RESONANCE_SCAN, RESONANCE_SCAN_LEFT_OUT

    env = dnn_store.with_paths(store=tmp_path_factory.mktemp("resonance_store"))
    shutil.copytree(dnn_store.store, env.store, dirs_exist_ok=True)
    for args in (RESONANCE_SCAN, RESONANCE_SCAN_LEFT_OUT):
        run_law(*args, env=env.env, timeout=1800)
    return env


@pytest.fixture(scope="session")
def docs_env(
    test_model_store: LawEnv, dnn_store: LawEnv, resonance_store: LawEnv, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment of a docs build whose pictures come from this session's stores (``CF_DOCS_STORE``).

    The commands of the pictures run where their model is trained: those of ``dnn`` (its plots and the limit,
    which test_inference.py makes there too) in ``dnn_store``, those of ``param_dnn`` (the resonance search's
    mass scans) in ``resonance_store``, the others in a copy of ``test_model_store`` (in
    the store itself, its ``cf.PlotMLResults`` would be complete before test_plotting.py runs it).
    """
    # the commands of the docs extension (docs/_ext/cf_figures.py), which imports Sphinx: only when needed
    from docs._ext.cf_figures import RUNS

    docs = test_model_store.with_paths(store=tmp_path_factory.mktemp("docs_store"))
    shutil.copytree(test_model_store.store, docs.store, dirs_exist_ok=True)
    stores = {"dnn": dnn_store, "param_dnn": resonance_store}
    for run in RUNS:
        run_law(*run.args, env=stores.get(run.model, docs).env, timeout=1800)
    stores_used = (docs.store, dnn_store.store, resonance_store.store)
    return {**docs.env, "CF_DOCS_STORE": os.pathsep.join(str(store) for store in stores_used)}


#: The docs sources.
DOCS = Path(__file__).resolve().parents[1] / "docs"
#: A file that no docs build makes, planted into the generated figures before the session's build.
STALE_FIGURE = "stale.png"
#: The first bytes of every PNG file.
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Seconds the docs build may take (the pictures come from existing outputs).
DOCS_BUILD_TIMEOUT = 900


@dataclass(frozen=True)
class DocsBuild:
    """The session's docs build: its HTML directory, when it started (epoch seconds) and what it printed."""

    html: Path
    start: float
    output: str


def plant_stale_figures() -> None:
    """Put a file no build makes and an invalid, hour-old copy of a picture into the generated figures."""
    from docs._ext.cf_figures import FIGURES_DIR, TASK_GRAPH

    figures = DOCS / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    with (figures.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        (figures / STALE_FIGURE).write_bytes(PNG_MAGIC)
        (figures / TASK_GRAPH).write_bytes(b"stale")
        hour_ago = time.time() - 3600
        for name in (STALE_FIGURE, TASK_GRAPH):
            os.utime(figures / name, (hour_ago, hour_ago))


@pytest.fixture(scope="session")
def docs_build(docs_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> DocsBuild:
    """The docs built once per session with ``-W --keep-going``; fails every test using it on a warning."""
    plant_stale_figures()
    html = tmp_path_factory.mktemp("docs_html")
    start = time.time()
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(html)]
    result = subprocess.run(
        command, cwd=DOCS.parent, env=docs_env, capture_output=True, text=True, timeout=DOCS_BUILD_TIMEOUT, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return DocsBuild(html, start, output)
