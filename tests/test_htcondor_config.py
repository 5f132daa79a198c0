"""The HTCondor submission file of a cf workflow, built by law's job file factory without submitting.

HTCondor is not packaged for this machine's Debian, so ``--workflow htcondor`` is tested up to the submit
file: the task is created in this process with resource parameters, and :func:`cf.tasks.remote.create_job_file`
goes through law's ``HTCondorWorkflowProxy.create_job_file`` exactly as a submission would (grouped
submission, law's default). Nothing here needs ``condor_submit``.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_cf_base

CONFIG = "run2_2017_nano_uhh_v11_limited"
TRAINING = {
    "version": "v1",
    "ml_model": "test_model",
    "config": CONFIG,
    "calibrators": ("skip_jecunc",),
    "selector": "default",
}


@pytest.fixture
def job_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary ``$CF_JOB_BASE`` (job data and logs go below it)."""
    require_cf_base()
    base = tmp_path / "jobs"
    monkeypatch.setenv("CF_JOB_BASE", str(base))
    return base


def submit_file(task: Any, directory: Path, branches: list[int] | None = None) -> tuple[dict[str, Any], str]:
    from cf.tasks.remote import create_job_file

    data = create_job_file(task, branches=branches, directory=str(directory))
    return data, Path(data["job"]).read_text()


def submit_lines(content: str) -> dict[str, str]:
    """``key = value`` lines of a submit description as a dict (keys lower case, later lines win)."""
    lines = {}
    for line in content.splitlines():
        key, sep, value = line.partition(" = ")
        if sep and not line.startswith(" "):
            lines[key.strip().lower()] = value.strip()
    return lines


def training_task(**params: Any) -> Any:
    from cf.tasks.ml import MLTraining

    return MLTraining(**{**TRAINING, "workflow": "htcondor", **params})


def test_htcondor_submit_file_has_resources_logs_and_bootstrap(job_base: Path, tmp_path: Path) -> None:
    task = training_task(
        max_runtime="90min",
        job_memory="3GB",
        job_cpus=2,
        htcondor_flavor="longlunch",
        htcondor_requirements='OpSysAndVer == "AlmaLinux9"',
        tasks_per_job=3,
    )
    data, content = submit_file(task, tmp_path / "submit")
    lines = submit_lines(content)

    assert lines["universe"] == "vanilla"
    assert lines["request_cpus"] == "2"
    assert lines["request_memory"] == "3072"  # MB
    assert lines["+maxruntime"] == lines["+requestruntime"] == "5400"  # seconds
    assert lines["+jobflavour"] == '"longlunch"'
    assert lines["requirements"] == 'OpSysAndVer == "AlmaLinux9"'
    assert lines["notification"] == "Never"

    # the executable is law's wrapper for grouped submission, law's job script and the bootstrap are inputs
    executable = lines["executable"]
    assert re.fullmatch(r"htcondor_wrapper_\w+\.sh", executable)
    inputs = lines["transfer_input_files"].split(",")
    assert {Path(path).name.split("_")[0] for path in inputs} >= {"law", "remote", "htcondor"}
    bootstrap = next(Path(path) for path in inputs if Path(path).name.startswith("remote_bootstrap"))
    assert bootstrap.is_file()
    assert "{{cf_base}}" in bootstrap.read_text()  # rendered inside the job, not here
    assert data["config"].input_files["bootstrap_file"].render_job

    # all logs go below $CF_JOB_BASE, in the task's store layout; the job log is the one law reports
    log_dir = job_base / "analysis_template" / "cf.MLTraining" / CONFIG
    assert lines["log"].startswith(str(log_dir))
    assert lines["log"].endswith("/v1/condor$(law_job_postfix).log")
    assert lines["initialdir"].startswith(str(log_dir))
    remaps = dict(pair.split(" = ") for pair in lines["transfer_output_remaps"].strip('"').split(" ; "))
    assert set(remaps) == {"job$(law_job_postfix).out", "job$(law_job_postfix).err", "job$(law_job_postfix).log"}
    assert all(path.startswith(str(log_dir)) for path in remaps.values())
    assert lines["output"] == "job$(law_job_postfix).out"
    assert lines["error"] == "job$(law_job_postfix).err"
    assert data["log"] == remaps["job$(law_job_postfix).log"]

    # one job with the three folds, law's job script runs the task's branches with law run
    assert "queue law_job_postfix, arguments from (" in content
    assert re.search(r"^\s+_0To3, _0To3 job\$\(law_job_postfix\)\.log$", content, re.MULTILINE)
    arguments = data["config"].arguments
    assert len(arguments) == 1
    module, cls, params, branches, workers, auto_retry, _ = arguments[0].split()
    assert (module, cls) == ("cf.tasks.ml", "MLTraining")
    assert base64.b64decode(branches).decode() == "0 1 2"
    assert (workers, auto_retry) == ("1", "no")
    command = base64.b64decode(params).decode()
    for arg in ("--version=v1", "--ml-model=test_model", f"--config={CONFIG}", "--calibrators=skip_jecunc"):
        assert arg in command
    # resources and the workflow type are the workflow's, not the branches'
    for param in ("--workflow", "--max-runtime", "--job-memory", "--htcondor", "--retries", "--poll-interval"):
        assert param not in command


def test_htcondor_job_renders_the_submitting_paths(job_base: Path, tmp_path: Path) -> None:
    data, _ = submit_file(training_task(), tmp_path / "submit", branches=[1])
    variables = data["config"].render_variables
    assert variables["cf_base"] == os.environ["CF_BASE"]
    assert variables["cf_job_base"] == str(job_base)
    assert variables["law_config_file"] == os.environ["LAW_CONFIG_FILE"]
    assert variables["bootstrap_file"].startswith("remote_bootstrap")
    assert data["config"].postfix == ["_1To2"]


def test_htcondor_defaults_and_flavor_check(job_base: Path, tmp_path: Path) -> None:
    from cf.util import UserError

    _, content = submit_file(training_task(), tmp_path / "submit")
    lines = submit_lines(content)
    assert lines["request_cpus"] == "1"
    assert lines["request_memory"] == "2000"
    assert lines["+maxruntime"] == "7200"
    assert "+jobflavour" not in lines
    assert "requirements" not in lines

    # refused when the task is created, before anything runs
    with pytest.raises(UserError, match=r"--max-runtime 2h exceeds the 0\.333333h of --htcondor-flavor espresso"):
        training_task(htcondor_flavor="espresso")
    with pytest.raises(UserError, match="--job-cpus must be at least 1, got 0"):
        training_task(job_cpus=0)


def test_htcondor_per_file_workflow(job_base: Path, tmp_path: Path) -> None:
    from cf.tasks.calibration import CalibrateEvents

    task = CalibrateEvents(
        version="v1", config=CONFIG, dataset="tt_sl_powheg", calibrators=("skip_jecunc",), workflow="htcondor"
    )
    assert task.effective_workflow == "htcondor"
    data, content = submit_file(task, tmp_path / "submit", branches=[0])
    assert "/cf.CalibrateEvents/" in submit_lines(content)["initialdir"]
    command = base64.b64decode(data["config"].arguments[0].split()[2]).decode()
    assert "--dataset=tt_sl_powheg" in command


def test_htcondor_gpus_from_the_parameter_and_from_the_model(job_base: Path, tmp_path: Path) -> None:
    from cf.ml import MLModel
    from cf.util import UserError

    # a model that wants a GPU: its trainings request one unless --job-gpus says otherwise
    if not MLModel.has_cls("gpu_test_model"):
        MLModel.get_cls("test_model").derive("gpu_test_model", cls_dict={"wants_gpu": True})
    cases = {
        "gpus given": (training_task(job_gpus=2), "2"),
        "the model's default": (training_task(ml_model="gpu_test_model"), "1"),
        "none for this model": (training_task(ml_model="gpu_test_model", job_gpus=0), None),
        "none by default": (training_task(), None),
    }
    for case, (task, expected) in cases.items():
        _, content = submit_file(task, tmp_path / case.replace(" ", "_"))
        assert submit_lines(content).get("request_gpus") == expected, case

    with pytest.raises(UserError, match="--job-gpus must be at least 0, got -1"):
        training_task(job_gpus=-1)
