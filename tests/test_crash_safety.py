"""Crash safety: ``kill -9`` at random points of the chain, the training and the evaluation, then a rerun.

Every output is written atomically (a temporary sibling renamed into place, see :func:`cf.io.atomic_path`), so a
killed ``law run`` must never leave an output that counts as complete but is not the clean run's, nor any
truncated file, and running the same command again must finish and give exactly the clean run's outputs.

Each command runs once cleanly (its duration measured, its store kept as the reference). Each killed run starts
in a store of its own, ``law run`` in a new process group (the sandbox processes are in it too); after a seeded
random time, uniform in [0.05, 0.95] of the clean duration, the whole group gets SIGKILL. Then:

* law's outputs of the command's tree (``--print-output -1``) are listed in the killed store; every one that
  exists (law counts it as complete) must equal the clean run's;
* every file left in the store reads completely (parquet with pyarrow, json parses, the Keras zip checks out),
  and the hidden entries are only the writers' temporaries;
* the command runs again to completion, and the store then holds the clean run's files, each equal to it
  (parquet tables ``pyarrow.Table.equals``, json equal). Trained models are compared through their evaluation
  scores, which must be identical: ``test_model`` retrains bit-identically with the same seed.

Tried with the writes made non-atomic (``atomic_path`` yielding the final path): the kills at 0.26 and 0.76 of the
chain and at 0.76 of the evaluation then leave parquet files without footer that law counts as complete, and fail.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import TEST_MODEL_EVALUATE, TEST_MODEL_TRAIN, LawEnv, LawOutputs, LawRun

pytestmark = pytest.mark.slow

CONFIG = "run2_2017_nano_uhh_v11_limited"
#: Small chunks keep every writer of the chain and the evaluation open over many chunks (one row group each) instead
#: of a few milliseconds at the end of its file, so that many kill points fall into a write. The chunk size changes
#: no output path and no column value.
CHAIN_CHUNKS = ("--chunk-size", "500")
EVALUATION_CHUNKS = ("--chunk-size", "250")
#: The chain of one dataset up to the produced columns (all branches, i.e. both files).
PRODUCE = ("cf.ProduceColumns", "--version", "v1", "--config", CONFIG, "--dataset", "tt_sl_powheg", "--calibrators",
           "skip_jecunc", "--selector", "default", "--producers", "default", *CHAIN_CHUNKS)  # fmt: skip
#: The guide's ``test_model`` commands with two folds of one epoch: two sandbox trainings of ~4 s each. With the same
#: seed a retraining gives bit-identical weights (checked for epochs=1: every weight of two trainings equal), so the
#: scores of retrained models must equal the clean run's exactly, not within a tolerance.
ML_SETTINGS = ("--ml-model-settings", "folds=2,epochs=1")
TRAIN = (*TEST_MODEL_TRAIN, *ML_SETTINGS)
EVALUATE = (*TEST_MODEL_EVALUATE, "--dataset", "hh_ggf_bbtautau_madgraph", *ML_SETTINGS, *EVALUATION_CHUNKS)
#: The other training dataset, whose chain the training store holds before the training runs.
OTHER_TRAINING_DATASET = "hh_ggf_bbtautau_madgraph"

#: The kill time of a seed is ``random.Random(seed).uniform(*KILL_RANGE)`` of the clean run's duration. The seeds
#: spread the kill points over the run: 1, 2, 3, 5 and 6 give 0.17, 0.91, 0.26, 0.61 and 0.76. The chain spends its
#: first ~0.8 s (of ~3 s) starting law, the evaluation its first ~3.5 s (of ~5 s) starting law and the sandbox.
KILL_RANGE = (0.05, 0.95)
CHAIN_SEEDS = (3, 5, 6, 2)
TRAINING_SEEDS = (1, 5, 2)
EVALUATION_SEEDS = (1, 6, 2)
#: Seconds a killed process group may take to disappear.
KILL_GRACE = 10.0
ML_TIMEOUT = 600.0
#: The temporaries a killed writer may leave: ``cf.io.atomic_path`` (``.name.<pid>.<uuid>.tmp``), the training's
#: twin directories (``.name.tmp-<8 hex>``) and cf.BundleExternalFiles' download folder (``.bundle.<uuid>.tmp``).
TEMPORARY = re.compile(r"\..+\.tmp(-[0-9a-f]{8})?")


@dataclass(frozen=True)
class Reference:
    """A command run cleanly once.

    Attributes:
        args: The command (``law run`` arguments).
        env: The environment of its store, which holds the clean run's outputs.
        duration: Seconds the clean run took.
        outputs: The outputs of the command's tree (``--print-output -1``) in the store, relative to it.
    """

    args: tuple[str, ...]
    env: LawEnv
    duration: float
    outputs: list[Path]


# --------------------------------------------------------------------------------------------------------------------
# running and killing law
# --------------------------------------------------------------------------------------------------------------------


def ensure_samples(env: LawEnv, law_run: LawRun, dataset: str) -> None:
    """Generate the dataset's embedded sample (shared ``CF_DATA``) now, so that no clean or killed run does it."""
    law_run("cf.CreateSampleFiles", "--config", CONFIG, "--dataset", dataset, env=env.env)


def store_outputs(env: LawEnv, law_outputs: LawOutputs, args: tuple[str, ...]) -> list[Path]:
    """law's outputs of the whole tree of ``args`` that lie in the store, relative to it (the samples are not).

    Sorted: the order of law's listing follows the requirement tree, which depends on what exists (a fused
    ``cf.ReduceEvents`` of a file without outputs requires no calibration and selection), the outputs do not.
    """
    paths = law_outputs(*args, env=env.env, depth=-1)
    return sorted(path.relative_to(env.store) for path in paths if path.is_relative_to(env.store))


def clean_run(
    args: tuple[str, ...], env: LawEnv, law_run: LawRun, law_outputs: LawOutputs, timeout: float = ML_TIMEOUT
) -> Reference:
    """Run ``args`` to completion in ``env`` and keep it as the reference."""
    start = time.monotonic()
    law_run(*args, env=env.env, timeout=timeout)
    duration = time.monotonic() - start
    return Reference(args, env, duration, store_outputs(env, law_outputs, args))


def copied_store(env: LawEnv, destination: Path) -> LawEnv:
    """``env`` with a copy of its store at ``destination`` (the samples stay shared)."""
    shutil.copytree(env.store, destination)
    return env.with_paths(store=destination)


def kill_delay(seed: int, duration: float) -> float:
    """The seeded kill time: uniform in ``KILL_RANGE`` of the clean run's duration."""
    return random.Random(seed).uniform(*KILL_RANGE) * duration


def live_group_members(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that are still running (zombies left out), from ``/proc``."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            # /proc/PID/stat: "pid (command) state ppid pgrp ...", the command may hold spaces and parentheses
            state, _, group = Path("/proc", pid, "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue  # the process ended while it was read
        if int(group) == pgid and state != "Z":
            members.append(int(pid))
    return members


def wait_for_group_end(pgid: int) -> None:
    """Fail unless every process of the group is gone within ``KILL_GRACE`` seconds (Linux; elsewhere no check)."""
    if not Path("/proc/self/stat").exists():
        return
    deadline = time.monotonic() + KILL_GRACE
    while (members := live_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not members, f"processes {members} of the killed run are still running"


def run_and_kill(args: tuple[str, ...], env: LawEnv, delay: float, log: Path) -> int:
    """Start ``law run ARGS`` in a new process group and SIGKILL the whole group after ``delay`` seconds.

    Returns:
        The exit status of ``law`` (``-SIGKILL`` if it was killed, 0 if it finished before the delay).
    """
    with log.open("w") as out:
        process = subprocess.Popen(
            ["law", "run", *args],
            env=env.env,
            cwd=env.env.get("CF_BASE"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    returncode = process.wait()
    wait_for_group_end(process.pid)
    return returncode


# --------------------------------------------------------------------------------------------------------------------
# comparing stores
# --------------------------------------------------------------------------------------------------------------------


def is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def visible_files(store: Path) -> set[Path]:
    """The files of the store outside hidden entries (the temporaries), relative to it."""
    files = (path.relative_to(store) for path in store.rglob("*") if path.is_file())
    return {path for path in files if not is_hidden(path)}


def hidden_entries(store: Path) -> list[Path]:
    """The hidden files and directories of the store (not those inside a hidden directory)."""
    return [path for path in store.rglob(".*") if not is_hidden(path.parent.relative_to(store))]


def assert_intact(path: Path) -> None:
    """The file reads completely: a parquet table, a json document, a zip (Keras model) with valid checksums."""
    if path.suffix == ".parquet":
        pq.read_table(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".keras":
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None, f"corrupt member in {path}"


def assert_same_file(path: Path, reference: Path) -> None:
    """``path`` holds what the clean run's ``reference`` holds.

    A Keras model is a zip with time stamps; it is only checked to be intact here, its equality is that of the
    evaluation scores (compared by the training test).
    """
    if path.suffix == ".parquet":
        assert pq.read_table(path).equals(pq.read_table(reference)), f"{path} differs from the clean run's"
    elif path.suffix == ".json":
        assert json.loads(path.read_text()) == json.loads(reference.read_text()), f"{path} differs"
    elif path.suffix == ".keras":
        assert_intact(path)
    else:
        assert path.read_bytes() == reference.read_bytes(), f"{path} differs from the clean run's"


def assert_same_output(path: Path, reference: Path) -> None:
    """An output (a file or a directory such as a fold's model) equals the clean run's."""
    if not path.is_dir():
        assert_same_file(path, reference)
        return
    files = visible_files(path)
    assert files == visible_files(reference), f"{path} holds other files than the clean run's"
    for relative in files:
        assert_same_file(path / relative, reference / relative)


def assert_killed_store_is_safe(reference: Reference, env: LawEnv, law_outputs: LawOutputs) -> None:
    """After the kill: what law counts as complete is the clean run's, no file is truncated, hidden are temporaries."""
    outputs = store_outputs(env, law_outputs, reference.args)
    assert outputs == reference.outputs
    for relative in outputs:
        if (env.store / relative).exists():
            assert_same_output(env.store / relative, reference.env.store / relative)
    for relative in visible_files(env.store):
        assert_intact(env.store / relative)
    for path in hidden_entries(env.store):
        assert TEMPORARY.fullmatch(path.name), f"{path} is hidden but no writer's temporary"


def assert_same_store(env: LawEnv, reference: LawEnv) -> None:
    """The store holds the same files as the reference store, each with the same content."""
    files = visible_files(env.store)
    assert files == visible_files(reference.store)
    for relative in files:
        assert_same_file(env.store / relative, reference.store / relative)


def kill_and_rerun(
    reference: Reference, env: LawEnv, seed: int, law_run: LawRun, law_outputs: LawOutputs, log: Path
) -> None:
    """Kill the reference's command in ``env`` at the seed's point, check the store, rerun, compare with the clean run."""
    returncode = run_and_kill(reference.args, env, kill_delay(seed, reference.duration), log)
    assert returncode in {-signal.SIGKILL, 0}, log.read_text()[-3000:]
    assert_killed_store_is_safe(reference, env, law_outputs)
    law_run(*reference.args, env=env.env, timeout=ML_TIMEOUT)
    assert_same_store(env, reference.env)


# --------------------------------------------------------------------------------------------------------------------
# the clean runs
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chain_reference(
    law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    """The chain of tt_sl_powheg up to ProduceColumns, run once in a store of its own."""
    ensure_samples(law_env, law_run, "tt_sl_powheg")
    env = law_env.with_paths(store=tmp_path_factory.mktemp("crash_chain") / "store")
    return clean_run(PRODUCE, env, law_run, law_outputs)


@pytest.fixture(scope="module")
def training_base(
    chain_reference: Reference, law_run: LawRun, law_outputs: LawOutputs, tmp_path_factory: pytest.TempPathFactory
) -> LawEnv:
    """A store with the chains of both training datasets, the start of every training run."""
    ensure_samples(chain_reference.env, law_run, OTHER_TRAINING_DATASET)
    env = copied_store(chain_reference.env, tmp_path_factory.mktemp("crash_training_base") / "store")
    other = [OTHER_TRAINING_DATASET if arg == "tt_sl_powheg" else arg for arg in PRODUCE]
    law_run(*other, env=env.env)
    return env


@pytest.fixture(scope="module")
def training_reference(
    training_base: LawEnv, law_run: LawRun, law_outputs: LawOutputs, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    """The training of test_model, run once on a copy of the base store."""
    env = copied_store(training_base, tmp_path_factory.mktemp("crash_training") / "store")
    return clean_run(TRAIN, env, law_run, law_outputs)


@pytest.fixture(scope="module")
def evaluation_reference(
    training_reference: Reference, law_run: LawRun, law_outputs: LawOutputs, tmp_path_factory: pytest.TempPathFactory
) -> Reference:
    """The evaluation of one dataset, run once on a copy of the trained store."""
    env = copied_store(training_reference.env, tmp_path_factory.mktemp("crash_evaluation") / "store")
    return clean_run(EVALUATE, env, law_run, law_outputs)


# --------------------------------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", CHAIN_SEEDS)
def test_killed_chain_reruns_to_the_clean_outputs(
    chain_reference: Reference,
    fresh_law_env: LawEnv,
    law_run: LawRun,
    law_outputs: LawOutputs,
    tmp_path: Path,
    seed: int,
) -> None:
    kill_and_rerun(chain_reference, fresh_law_env, seed, law_run, law_outputs, tmp_path / "killed.log")


@pytest.mark.sandbox
@pytest.mark.parametrize("seed", TRAINING_SEEDS)
def test_killed_training_reruns_to_the_clean_models(
    training_base: LawEnv,
    training_reference: Reference,
    evaluation_reference: Reference,
    law_run: LawRun,
    law_outputs: LawOutputs,
    tmp_path: Path,
    seed: int,
) -> None:
    env = copied_store(training_base, tmp_path / "store")
    kill_and_rerun(training_reference, env, seed, law_run, law_outputs, tmp_path / "killed.log")
    # the models: their scores equal the clean models' (test_model retrains bit-identically)
    law_run(*EVALUATE, env=env.env, timeout=ML_TIMEOUT)
    assert_same_store(env, evaluation_reference.env)


@pytest.mark.sandbox
@pytest.mark.parametrize("seed", EVALUATION_SEEDS)
def test_killed_evaluation_reruns_to_the_clean_scores(
    training_reference: Reference,
    evaluation_reference: Reference,
    law_run: LawRun,
    law_outputs: LawOutputs,
    tmp_path: Path,
    seed: int,
) -> None:
    env = copied_store(training_reference.env, tmp_path / "store")
    kill_and_rerun(evaluation_reference, env, seed, law_run, law_outputs, tmp_path / "killed.log")
