"""Wrapper tasks over configs, datasets and shifts (``cf.tasks.wrappers``) and ``--<task family>-version``.

The requirements of the wrappers are checked on instances made in this process (nothing runs); the command
line (patterns, one-line errors, the per-task version flag) through ``law run`` in an isolated store, where one
small chain (two datasets up to ``cf.ProduceColumns``) runs for real.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import law
import pytest
from luigi.cmdline_parser import CmdlineParser

from cf.tasks.base import AnalysisTask, ConfigTask, cli_versions, pinned_version
from cf.tasks.selection import MergeSelectionStats
from cf.tasks.wrappers import (
    GetDatasetLFNsWrapper,
    MLEvaluationWrapper,
    ProduceColumnsWrapper,
    ReduceEventsWrapper,
    wrapper_factory,
)
from cf.util import UserError

if TYPE_CHECKING:
    from tests.conftest import LawEnv, LawRun

CONFIG = "run2_2017_nano_uhh_v11_limited"
CONFIG_2018 = "run2_2018_nano_v6_limited"
ALL_DATASETS = "data_mu_b, dy_lep_m50_madgraph, hh_ggf_bbtautau_madgraph, tt_dl_powheg, tt_sl_powheg"


def _keys(wrapper: Any) -> list[tuple[str, ...]]:
    return list(wrapper.requires())


def _files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def _error_lines(text: str) -> list[str]:
    return [line.split("error: ", 1)[1] for line in text.splitlines() if "error: " in line]


# --------------------------------------------------------------------------------------------------------------------
# the requirements of a wrapper (in this process, nothing runs)
# --------------------------------------------------------------------------------------------------------------------


def test_defaults_are_the_default_config_all_datasets_and_nominal() -> None:
    wrapper = ReduceEventsWrapper(version="v1")
    assert wrapper.configs == (CONFIG,)
    assert _keys(wrapper) == [(CONFIG, "nominal", name) for name in ALL_DATASETS.split(", ")]


def test_dataset_patterns_and_skip_and_the_parameters_passed_on() -> None:
    wrapper = ReduceEventsWrapper(version="v1", datasets=("tt_*", "hh_*"), skip_datasets=("tt_dl*",), chunk_size=7)
    assert _keys(wrapper) == [(CONFIG, "nominal", "hh_ggf_bbtautau_madgraph"), (CONFIG, "nominal", "tt_sl_powheg")]
    task = wrapper.requires()[(CONFIG, "nominal", "tt_sl_powheg")]
    # the wrapped task's other parameters are the wrapper's, their defaults resolved per config
    assert (task.version, task.chunk_size, task.calibrators, task.selector) == ("v1", 7, ("skip_jecunc",), "default")
    assert task.is_workflow()


def test_config_patterns_select_datasets_per_config() -> None:
    wrapper = ProduceColumnsWrapper(
        version="v1",
        configs=("run2_*",),
        skip_configs=("*2016*",),
        datasets=("dy_*",),
        skip_datasets=("*_xrootd", "*_rntuple"),
        producers=("default",),
    )
    assert _keys(wrapper) == [
        (CONFIG, "nominal", "dy_lep_m50_madgraph"),
        (CONFIG_2018, "nominal", "dy_lep_m50_madgraph"),
        # only the 2018 config has this dataset; the pattern matched in one of the configs, which is enough
        (CONFIG_2018, "nominal", "dy_lep_m50_nanov6"),
    ]
    assert all(task.producers == ("default",) for task in wrapper.requires().values())


def test_only_shifts_that_change_the_output_are_required() -> None:
    # jec implements jec_up / jec_down; data has only nominal
    wrapper = ReduceEventsWrapper(
        version="v1", datasets=("tt_sl_powheg", "data_mu_b"), shifts=("*",), calibrators=("jec",)
    )
    assert _keys(wrapper) == [
        (CONFIG, "nominal", "data_mu_b"),
        (CONFIG, "nominal", "tt_sl_powheg"),
        (CONFIG, "jec_down", "tt_sl_powheg"),
        (CONFIG, "jec_up", "tt_sl_powheg"),
    ]
    assert {task.effective_shift for task in wrapper.requires().values()} == {"nominal", "jec_up", "jec_down"}
    # skip_jecunc (the default) implements no shift: a jec_up task would store the nominal output again
    default = ReduceEventsWrapper(version="v1", datasets=("tt_sl_powheg",), shifts=("*",), skip_shifts=("jec_down",))
    assert _keys(default) == [(CONFIG, "nominal", "tt_sl_powheg")]
    with pytest.raises(UserError, match=r"^nothing to require: no selected dataset has the shifts jec_up \(--shifts\)"):
        ReduceEventsWrapper(version="v1", shifts=("jec_up",))


def test_ml_evaluation_and_datasets_only_wrappers() -> None:
    wrapper = MLEvaluationWrapper(version="v1", datasets=("tt_sl_powheg",))
    (task,) = wrapper.requires().values()
    assert (task.ml_model, task.dataset) == ("test_model", "tt_sl_powheg")  # the config's default_ml_model
    lfns = GetDatasetLFNsWrapper(version="v1", configs=(CONFIG, CONFIG_2018), datasets=("tt_sl_*",))
    assert _keys(lfns) == [(CONFIG, "tt_sl_powheg"), (CONFIG_2018, "tt_sl_powheg")]
    assert not hasattr(lfns, "shifts")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"configs": ("no_such_config",)}, r"unknown config 'no_such_config' \(--configs\) in analysis 'analysis_template', "),
        ({"configs": ("run9_*",)}, r"no config matches 'run9_\*' \(--configs\) in analysis 'analysis_template', "),
        ({"datasets": ("tt_*", "ttbar")}, rf"unknown dataset 'ttbar' \(--datasets\) in config {CONFIG}, available: {ALL_DATASETS}$"),
        ({"skip_datasets": ("zz*",)}, rf"no dataset matches 'zz\*' \(--skip-datasets\) in config {CONFIG}, available: {ALL_DATASETS}$"),
        ({"shifts": ("jec_sideways",)}, rf"unknown shift 'jec_sideways' \(--shifts\) in config {CONFIG}, available: jec_down, jec_up, mu_id_down, mu_id_up, nominal, pu_down, pu_up$"),
        ({"datasets": ("tt_*",), "skip_datasets": ("tt_*",)}, r"--skip-datasets tt_\* leaves none of the datasets of --datasets tt_\*$"),
        ({"calibrators": ("no_such_calibrator",)}, r"unknown calibrator 'no_such_calibrator', available: "),
    ],
)  # fmt: skip
def test_bad_selection_is_one_clear_error(params: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=f"^{message}"):
        ReduceEventsWrapper(version="v1", **params)


def test_factory_refuses_features_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match=r"unknown feature\(s\) models, known: configs, "):
        wrapper_factory(AnalysisTask, MergeSelectionStats, ["configs", "models"])
    with pytest.raises(ValueError, match=r"skip_datasets need\(s\) datasets enabled too"):
        wrapper_factory(AnalysisTask, MergeSelectionStats, ["configs", "skip_datasets"])
    with pytest.raises(TypeError, match=r"base_cls ConfigTask must not have --config itself"):
        wrapper_factory(ConfigTask, MergeSelectionStats, ["configs", "datasets", "shifts"])
    with pytest.raises(TypeError, match=r"MergeSelectionStats needs --dataset: enable 'datasets'"):
        wrapper_factory(AnalysisTask, MergeSelectionStats, ["configs", "shifts"])


# --------------------------------------------------------------------------------------------------------------------
# --<task family>-version
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture
def command_line() -> Iterator[Any]:
    """Enters luigi's command-line parser for the given arguments, as ``law run`` does (law's caches reset after)."""

    def enter(*args: str) -> None:
        stack.append(CmdlineParser.global_instance(list(args)))
        stack[-1].__enter__()

    stack: list[Any] = []
    try:
        yield enter
    finally:
        for context in reversed(stack):
            context.__exit__(None, None, None)
        law.parser._reset()  # law caches the global arguments of the first parser it sees


def test_command_line_version_wins_over_the_config_and_law_cfg(
    command_line: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analysis_template.config.analysis import analysis_template
    from cf.tasks.reduction import ReduceEvents
    from cf.tasks.selection import SelectEvents

    config_inst = analysis_template.get_config(CONFIG)
    monkeypatch.setitem(config_inst.aux, "versions", {"cf.ReduceEvents": "v7", "cf.SelectEvents": "v7"})
    assert pinned_version(config_inst, "cf.ReduceEvents") == "v7"
    command_line("cf.ReduceEvents", "--version", "v1", "--cf.ReduceEvents-version", "v2")
    assert cli_versions() == {"cf.ReduceEvents": "v2"}
    task = ReduceEvents(version="v1", branch=0)
    assert "/v2/events_0.parquet" in task.output()["events"].path
    # the selection the reduction requires (unless it fuses it, when the store has no outputs of the file)
    selection = SelectEvents.req(task)
    assert "/v7/sel_0.parquet" in selection.output()["columns"].path
    assert selection.version == "v1"  # the parameter passed on is unchanged


def test_batch_jobs_keep_the_task_own_version_flag(
    command_line: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cf.tasks.calibration import CalibrateEvents
    from cf.tasks.remote import create_job_file

    monkeypatch.setenv("CF_JOB_BASE", str(tmp_path / "jobs"))
    command_line("cf.CalibrateEvents", "--version", "v1", "--cf.CalibrateEvents-version", "v2")
    task = CalibrateEvents(version="v1", dataset="tt_sl_powheg", workflow="htcondor")
    data = create_job_file(task, branches=[0], directory=str(tmp_path / "submit"))
    command = base64.b64decode(data["config"].arguments[0].split()[2]).decode()
    # law leaves the task's own global flags out of its jobs; the job writes where the workflow looks
    assert "--version=v1" in command
    assert "--cf.CalibrateEvents-version=v2" in command
    assert task.job_output_directory().path.endswith("/calib__skip_jecunc/v2")


@pytest.mark.slow
def test_version_flag_moves_only_that_task_family(fresh_law_env: LawEnv, law_run: LawRun) -> None:
    law_run(
        "cf.ProduceColumnsWrapper", "--version", "v1", "--datasets", "tt_sl_powheg,data_mu_b",
        "--cf.ReduceEvents-version", "v2", env=fresh_law_env.env,
    )  # fmt: skip
    files = _files(fresh_law_env.store / "analysis_template")
    reduced = [path for path in files if "/cf.ReduceEvents/" in str(path)]
    assert len(reduced) == 4  # two files of each dataset
    assert all(path.parent.name == "v2" for path in reduced)
    # the external files are keyed by their declarations, not by a version
    versioned = [path for path in files if path not in reduced and "/cf.BundleExternalFiles/" not in str(path)]
    assert {path.parent.name for path in versioned} == {"v1"}
    produced = {path.parts[-6] for path in files if "/cf.ProduceColumns/" in str(path)}
    assert produced == {"tt_sl_powheg", "data_mu_b"}
    # rerunning with the flag finds everything complete; without it, the reduced events are missing
    status = law_run(
        "cf.ProduceColumns", "--version", "v1", "--dataset", "tt_sl_powheg", "--print-status", "1",
        "--cf.ReduceEvents-version", "v2", env=fresh_law_env.env,
    ).stdout  # fmt: skip
    assert "absent" not in status
    status = law_run(
        "cf.ProduceColumns", "--version", "v1", "--dataset", "tt_sl_powheg", "--print-status", "1",
        env=fresh_law_env.env,
    ).stdout  # fmt: skip
    assert "absent" in status


@pytest.mark.slow
@pytest.mark.parametrize("root", ["cf.MLEvaluation", "cf.MLTraining"])
def test_ml_training_version_flag_for_the_root_and_a_requirement(root: str, law_env: LawEnv, law_run: LawRun) -> None:
    args = (root, "--version", "v1", "--cf.MLTraining-version", "v2", "--print-output", "1")
    lines = [line for line in law_run(*args, env=law_env.env).stdout.splitlines() if "file://" in line]
    training = [line for line in lines if "/cf.MLTraining/" in line]
    assert len(training) == 3  # the three folds
    assert all("/ml__test_model/v2/mlmodel_f" in line for line in training)
    assert all("/v1/" in line for line in lines if line not in training)


#: What a version may contain, as the error says.
PLAIN_NAME = "use letters, digits and '_', '.', '+', '-' (no '/', no spaces, not starting with '.')"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "--cf.ReduceEvents-version is empty; give a version name, e.g. --cf.ReduceEvents-version v2"),
        ("a/b", f"--cf.ReduceEvents-version 'a/b' is not a plain directory name: {PLAIN_NAME}"),
        ("..", f"--cf.ReduceEvents-version '..' is not a plain directory name: {PLAIN_NAME}"),
    ],
)
def test_bad_version_flag_fails_before_anything_runs(
    value: str, message: str, fresh_law_env: LawEnv, law_run: LawRun
) -> None:
    args = ("cf.ProduceColumns", "--version", "v1", "--dataset", "tt_sl_powheg", "--cf.ReduceEvents-version", value)
    result = law_run(*args, env=fresh_law_env.env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert _error_lines(output) == [message], output
    assert "Traceback" not in output
    assert _files(fresh_law_env.store) == []


# --------------------------------------------------------------------------------------------------------------------
# wrappers on the command line
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_wrapper_on_the_command_line_requires_the_selected_tasks(law_env: LawEnv, law_run: LawRun) -> None:
    args = ("cf.SelectEventsWrapper", "--version", "v1", "--datasets", "tt_*,data_*", "--skip-datasets", "tt_dl*",
            "--shifts", "nominal,jec_*", "--calibrators", "jec", "--print-status", "1")  # fmt: skip
    lines = [line for line in law_run(*args, env=law_env.env).stdout.splitlines() if "> cf.SelectEvents(" in line]
    required = sorted((_param(line, "dataset"), _param(line, "shift")) for line in lines)
    assert required == [
        ("data_mu_b", "nominal"),
        ("tt_sl_powheg", "jec_down"),
        ("tt_sl_powheg", "jec_up"),
        ("tt_sl_powheg", "nominal"),
    ]
    assert all(_param(line, "calibrators") == "jec" for line in lines)


def _param(line: str, name: str) -> str:
    return line.split(f" {name}=", 1)[1].split(",", 1)[0].rstrip(")")


@pytest.mark.slow
def test_wrapper_bad_pattern_fails_in_one_line_and_writes_nothing(fresh_law_env: LawEnv, law_run: LawRun) -> None:
    args = ("cf.ProduceColumnsWrapper", "--version", "v1", "--configs", "run2_*", "--datasets", "tt_sl_*,ttbar_*")
    result = law_run(*args, env=fresh_law_env.env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    messages = _error_lines(output)
    assert len(messages) == 1, output
    assert messages[0].startswith("no dataset matches 'ttbar_*' (--datasets) in configs run2_2016_nano_v1_limited, ")
    assert ", available: data_mu_a_nanov6, data_mu_b, " in messages[0]
    assert "Traceback" not in output
    assert _files(fresh_law_env.store) == []
