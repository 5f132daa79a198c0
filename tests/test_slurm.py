"""``--workflow slurm`` on a real single-node Slurm cluster, and the Slurm job file.

The cluster tests (markers ``slurm``, ``slow``) need a running cluster: ``bin/cf_slurm start`` (root) brings
one up on localhost, and ``bin/cf_test`` does so when ``CI`` is set (and stops it afterwards). Without a
cluster they skip, except in CI where they fail.

* The ML chain runs once locally (the reference); then ``cf.MLTraining`` (one job per fold) and
  ``cf.MLEvaluation`` (one job per file) run again as Slurm jobs on a copy of the reference store without
  their outputs. Training is seeded, so the evaluation parquet files must be *equal* tables (exact, no
  tolerance).
* A corrupt input file makes one job of ``cf.CalibrateEvents`` fail; with ``--retries 1`` it is submitted
  twice, and law reports the job's log under ``$CF_JOB_BASE``, which contains the one-line error.

The job file test (no cluster needed) builds the ``#SBATCH`` file through law's job file factory.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import LawEnv, LawOutputs, LawRun, require_cf_base

CONFIG = "run2_2017_nano_uhh_v11_limited"
# the commands of docs/batch_systems.md
TRAIN = ("cf.MLTraining", "--version", "v1", "--ml-model", "test_model", "--config", CONFIG,
         "--calibrators", "skip_jecunc", "--selector", "default")  # fmt: skip
EVALUATE = ("cf.MLEvaluation", "--version", "v1", "--ml-model", "test_model", "--config", CONFIG,
            "--calibrators", "skip_jecunc")  # fmt: skip
SLURM = ("--workflow", "slurm", "--poll-interval", "2sec")
FOLDS = 3
#: Seconds a law run that submits Slurm jobs may take.
SLURM_RUN_TIMEOUT = 600.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def slurm_problem() -> str | None:
    """Why Slurm cannot be used here, or None when a cluster accepts jobs."""
    missing = [command for command in ("sbatch", "squeue", "sinfo") if shutil.which(command) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} not found)"
    cf_slurm = Path(__file__).resolve().parents[1] / "bin" / "cf_slurm"
    result = subprocess.run([cf_slurm, "status"], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        return f"no running Slurm cluster ({result.stdout.strip() or result.stderr.strip()})"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A running Slurm cluster; skips without one (with the reason), except in CI where it fails."""
    problem = slurm_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"{problem}: in CI, bin/cf_test starts one with 'bin/cf_slurm start' before pytest")
    pytest.skip(f"{problem}: start a local one with 'bin/cf_slurm start' (as root); CI=true makes this a failure")


def with_job_base(env: LawEnv, job_base: Path) -> LawEnv:
    """``env`` with its own ``$CF_JOB_BASE`` (job data and logs of different tests never mix)."""
    return replace(env, env={**env.env, "CF_JOB_BASE": str(job_base)})


def slurm_jobs() -> dict[int, str]:
    """Job id -> state of all jobs the cluster knows (finished ones stay listed for MinJobAge)."""
    result = subprocess.run(
        ["squeue", "-t", "all", "-h", "-o", "%i %T"], capture_output=True, text=True, timeout=30, check=True
    )
    return {int(line.split()[0]): line.split()[1] for line in result.stdout.splitlines() if line.strip()}


def law_output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


# --- the ML chain: local vs. Slurm -------------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmRun:
    """Training and evaluation as Slurm jobs: their environment, law's output and the ids of the jobs."""

    env: LawEnv
    train_output: str
    evaluate_output: str
    job_ids: list[int]


@pytest.fixture(scope="module")
def local_ml(
    slurm_cluster: None,
    test_model_store: LawEnv,
    tmp_path_factory: pytest.TempPathFactory,
) -> LawEnv:
    """The reference: the chain, training and evaluation with ``--workflow local`` (the session's store)."""
    root = tmp_path_factory.mktemp("slurm_local")
    return with_job_base(test_model_store, root / "jobs")


@pytest.fixture(scope="module")
def slurm_ml(local_ml: LawEnv, law_run: LawRun, tmp_path_factory: pytest.TempPathFactory) -> SlurmRun:
    """Training and evaluation as Slurm jobs, on a copy of the reference store without their outputs."""
    root = tmp_path_factory.mktemp("slurm_batch")
    shutil.copytree(local_ml.store, root / "store", ignore=shutil.ignore_patterns("cf.MLTraining", "cf.MLEvaluation"))
    env = with_job_base(local_ml.with_paths(store=root / "store"), root / "jobs")
    known = set(slurm_jobs())
    train = law_run(*TRAIN, *SLURM, env=env.env, timeout=SLURM_RUN_TIMEOUT)
    evaluate = law_run(*EVALUATE, *SLURM, env=env.env, timeout=SLURM_RUN_TIMEOUT)
    job_ids = sorted(set(slurm_jobs()) - known)
    return SlurmRun(env, law_output(train), law_output(evaluate), job_ids)


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.slurm
def test_training_and_evaluation_as_slurm_jobs_equal_the_local_run(
    local_ml: LawEnv,
    slurm_ml: SlurmRun,
    law_outputs: LawOutputs,
) -> None:
    env = slurm_ml.env
    assert f"going to submit {FOLDS} slurm job(s)" in slurm_ml.train_output
    assert "going to submit 2 slurm job(s)" in slurm_ml.evaluate_output

    local_models = law_outputs(*TRAIN, env=local_ml.env)
    slurm_models = law_outputs(*TRAIN, env=env.env)
    assert [path.name for path in slurm_models] == [f"mlmodel_f{fold}of{FOLDS}" for fold in range(FOLDS)]
    assert all((path / "model.keras").is_file() for path in slurm_models)
    assert local_models != slurm_models

    # seeded training: the scores of the Slurm-trained models are exactly the local ones
    local_scores = law_outputs(*EVALUATE, env=local_ml.env)
    slurm_scores = law_outputs(*EVALUATE, env=env.env)
    assert [path.name for path in slurm_scores] == ["mlcolumns_0.parquet", "mlcolumns_1.parquet"]
    for local, batch in zip(local_scores, slurm_scores, strict=True):
        assert local != batch
        assert pq.read_table(batch).num_rows > 1000
        assert pq.read_table(local).equals(pq.read_table(batch))


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.slurm
def test_slurm_jobs_and_logs_live_under_the_job_base(slurm_ml: SlurmRun) -> None:
    job_base = Path(slurm_ml.env.env["CF_JOB_BASE"])
    # one job per fold and per file, all run by Slurm
    assert len(slurm_ml.job_ids) == FOLDS + 2
    states = slurm_jobs()
    assert {states[job_id] for job_id in slurm_ml.job_ids} == {"COMPLETED"}
    # job data and logs in the tasks' store layout below $CF_JOB_BASE
    job_data = sorted(job_base.rglob("slurm_jobs_*.json"))
    assert [path.parent.relative_to(job_base).parts[:2] for path in job_data] == [
        ("analysis_template", "cf.MLEvaluation"),
        ("analysis_template", "cf.MLTraining"),
    ]
    logs = sorted(job_base.rglob("job_*To*.log"))
    assert len(logs) == FOLDS + 2
    for log in logs:
        text = log.read_text()
        assert f"cf job: set up {slurm_ml.env.env['CF_BASE']} " in text
        assert f"jobs {job_base}" in text
        assert "job exit code : 0" in text
    # the submission files, one directory per submission, are in $CF_JOB_BASE too
    assert len(list(job_base.glob("cf.MLTraining_*/slurm_job_*_0To1.sh"))) == 1
    assert len(list(job_base.glob("cf.MLEvaluation_*/slurm_job_*_1To2.sh"))) == 1


# --- a failing job -------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.slurm
def test_a_failing_job_is_retried_and_its_log_is_reported(
    slurm_cluster: None,
    law_env: LawEnv,
    law_run: LawRun,
    tmp_path: Path,
) -> None:
    # the session's samples (generated on first use), copied so that one file can be corrupted
    law_run("cf.GetDatasetLFNs", "--version", "v1", "--config", CONFIG, "--dataset", "tt_sl_powheg", env=law_env.env)
    env = with_job_base(law_env.copy_data(tmp_path / "data").with_paths(store=tmp_path / "store"), tmp_path / "jobs")
    corrupt = env.data / "samples" / "run2_2017_nano_uhh_v11" / "tt_sl_powheg" / "nano_1.root"
    corrupt.write_bytes(b"\x00garbage\xff" * 1000)
    calibrate = ("cf.CalibrateEvents", "--version", "v1", "--config", CONFIG, "--dataset", "tt_sl_powheg",
                 "--calibrators", "skip_jecunc")  # fmt: skip
    result = law_run(*calibrate, *SLURM, "--retries", "1", env=env.env, check=False, timeout=SLURM_RUN_TIMEOUT)
    output = law_output(result)
    assert result.returncode != 0, output[-3000:]

    # two jobs, then the failed one once more
    assert "going to submit 2 slurm job(s)" in output
    assert "going to submit 1 slurm job(s)" in output
    # after each attempt, law names the failed job's branch, exit code and log, which is under $CF_JOB_BASE
    job_base = tmp_path / "jobs"
    attempts = re.findall(r"job: 2, branches: \[1\], id: (\d+), status: (\w+), code: 60, .*, log: (\S+)", output)
    assert [status for _, status, _ in attempts] == ["retry", "failed"], output[-3000:]
    assert attempts[0][0] != attempts[1][0]  # two Slurm jobs
    assert attempts[0][2] == attempts[1][2]
    log = Path(attempts[0][2])
    assert log.is_relative_to(job_base)
    assert log.name == "job_1To2.log"
    # ... and ends with one line: the failed job, its log and the error in it
    error_line = (
        "error: 1 slurm job(s) of cf.CalibrateEvents failed after --retries 1 (tolerance exceeded for job(s) 2)"
    )
    assert f"{error_line}, logs: job 2 (branches 1, code 60): {log} (error: cannot open ROOT file '{corrupt}'" in output
    assert "Traceback" not in output
    text = log.read_text()
    # both attempts appended to the log, each with the clear error of the branch and law's "task failed" code
    attempts = text.split("law remote job script")[1:]
    assert len(attempts) == 2
    for attempt in attempts:
        assert f"error: cannot open ROOT file '{corrupt}'" in attempt
        assert "job exit code : 60" in attempt

    (job_data,) = job_base.rglob("slurm_jobs_*.json")
    data = json.loads(job_data.read_text())
    assert data["attempts"] == {"2": 1}
    # the intact file 0 was calibrated by its job, file 1 not
    produced = {path.name for path in env.store.rglob("*.parquet")}
    assert produced == {"calib_0.parquet"}


# --- no cluster needed ------------------------------------------------------------------------------------------


def test_slurm_job_file_has_resources_and_the_law_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_cf_base()
    monkeypatch.setenv("CF_JOB_BASE", str(tmp_path / "jobs"))
    from cf.tasks.ml import MLTraining
    from cf.tasks.remote import create_job_file

    task = MLTraining(
        version="v1", ml_model="test_model", config=CONFIG, calibrators=("skip_jecunc",), selector="default",
        workflow="slurm", max_runtime="26.5h", job_memory="3GB", job_cpus=2, job_gpus=1, slurm_partition="short",
    )  # fmt: skip
    data = create_job_file(task, branches=[1], job_num=2, directory=str(tmp_path / "submit"))
    content = Path(data["job"]).read_text()
    sbatch = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", content, re.MULTILINE))
    assert sbatch["time"] == "1-02:30:00"
    assert sbatch["mem"] == "3072M"
    assert sbatch["cpus-per-task"] == "2"
    assert sbatch["gres"] == "gpu:1"
    assert sbatch["partition"] == "short"
    assert sbatch["open-mode"] == "append"
    log_dir = tmp_path / "jobs" / "analysis_template" / "cf.MLTraining" / CONFIG
    assert sbatch["output"] == sbatch["error"] == data["log"]
    assert data["log"].startswith(str(log_dir))
    assert data["log"].endswith("/v1/job_1To2.log")
    assert sbatch["chdir"] == str(Path(data["log"]).parent)

    # the command: law's job script with the task's module, class, parameters and branch
    command_line = content.strip().splitlines()[-1].split()
    assert re.fullmatch(r".*/law_job_\w+_1To2\.sh", command_line[0])
    assert command_line[1:3] == ["cf.tasks.ml", "MLTraining"]
    params = base64.b64decode(command_line[3]).decode()
    for arg in ("--ml-model=test_model", "--branch", "--local-scheduler=True"):
        assert (arg in params) is (arg != "--branch")  # law's job script adds --branch=N
    for param in ("--workflow", "--job-memory", "--job-gpus", "--max-runtime", "--slurm-partition", "--clear-logs"):
        assert param not in params
    assert base64.b64decode(command_line[4]).decode() == "1"
    # the rendered law job script sources the shared bootstrap file
    law_job = Path(command_line[0]).read_text()
    assert re.search(r'local bootstrap_file="remote_bootstrap_\w+\.sh"', law_job)
    assert data["config"].render_variables["cf_job_base"] == str(tmp_path / "jobs")


def test_bootstrap_file_sets_up_the_submitting_environment(tmp_path: Path) -> None:
    """The rendered bootstrap alone, in an almost empty environment, gives the submitter's paths and law."""
    cf_base = require_cf_base()
    from cf.tasks.remote import BOOTSTRAP_FILE, bootstrap_render_variables

    environ = {**os.environ, "CF_STORE_LOCAL": str(tmp_path / "store"), "CF_JOB_BASE": str(tmp_path / "jobs")}
    variables: dict[str, Any] = bootstrap_render_variables(environ)
    content = Path(BOOTSTRAP_FILE).read_text()
    rendered = re.sub(r"\{\{(\w+)\}\}", lambda match: variables.get(match.group(1), ""), content)
    (tmp_path / "bootstrap.sh").write_text(rendered)
    script = (
        "source bootstrap.sh '' > /dev/null || exit 1; "
        'echo "store=$CF_STORE_LOCAL jobs=$CF_JOB_BASE base=$CF_BASE law=$(command -v law)"; '
        "python -c 'import cf.tasks.ml'"
    )
    clean_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    if "CF_PYTHON" in os.environ:
        clean_env["CF_PYTHON"] = os.environ["CF_PYTHON"]
    result = subprocess.run(
        ["bash", "-c", script], env=clean_env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    venv_law = Path(os.environ["CF_VENV_BASE"]) / "cf" / "bin" / "law"
    assert result.stdout.strip().splitlines()[-1] == (
        f"store={tmp_path / 'store'} jobs={tmp_path / 'jobs'} base={cf_base} law={venv_law}"
    )


@pytest.mark.slow
def test_unknown_workflow_is_refused(fresh_law_env: LawEnv, law_run: LawRun) -> None:
    result = law_run(*TRAIN, "--workflow", "slrum", env=fresh_law_env.env, check=False)
    output = law_output(result)
    assert result.returncode != 0
    assert "unknown workflow 'slrum' (did you mean 'slurm'?), available: local, slurm, htcondor" in output
    assert "Traceback" not in output
