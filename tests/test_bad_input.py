"""Bad input, one table: every case is one ``law run`` with one thing wrong, and must end in one clear line.

Each case asserts that the run exits non-zero, prints exactly one ``error:`` line containing the case's message
(no traceback), and leaves no output of the failing task, complete or temporary. The cases cover the parameters of
all task kinds, config content, sandbox requirement files, broken input files and a store that cannot be written.
The docs' table (``docs/user_guide/bad_input.md``) is rendered from :data:`CASES`; a test keeps the two equal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import LawEnv, LawRun

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
DOCS_PAGE = ROOT / "docs" / "user_guide" / "bad_input.md"
CONFIG = "run2_2017_nano_uhh_v11_limited"
DATASET = "tt_sl_powheg"
SAMPLE = Path("samples") / "run2_2017_nano_uhh_v11" / DATASET / "nano_0.root"

CALIBRATE = ("cf.CalibrateEvents", "--version", "v1", "--dataset", DATASET)
PRODUCE = ("cf.ProduceColumns", "--version", "v1", "--dataset", DATASET)
HISTOGRAMS = ("cf.CreateHistograms", "--version", "v1", "--dataset", DATASET, "--branch", "0")
TRAIN = ("cf.MLTraining", "--version", "v1", "--ml-model", "test_model")
PREPARE = ("cf.PrepareMLEvents", "--version", "v1", "--ml-model", "test_model", "--dataset", DATASET)
DATACARDS = ("cf.CreateDatacards", "--version", "v1", "--inference-model", "test_inference")
PLOT = ("cf.PlotVariables1D", "--version", "v1", "--variables", "ht")
SLURM = (*CALIBRATE, "--workflow", "slurm")
SCAN = ("cf.MLTrainingScan", "--version", "v1", "--ml-model", "test_model", "--scan")


@dataclass(frozen=True)
class BadInput:
    """One bad input.

    Attributes:
        case: What is wrong (the docs' first column).
        args: The ``law run`` arguments.
        message: What the one error line says (a part of it; the docs' second column).
        prepare: The name of a function of :data:`PREPARATIONS` that makes the bad input (a config, a file).
        failing: The task family whose outputs must not exist afterwards (default: the one run), or a pattern of
            the store below the analysis folder (``cf.ProduceColumns/*/*/<dataset>``).
    """

    case: str
    args: tuple[str, ...]
    message: str
    prepare: str = ""
    failing: str = ""


CASES: tuple[BadInput, ...] = (
    # parameters of every task
    BadInput("no --version", ("cf.ProduceColumns",), "cf.ProduceColumns needs --version (a plain name such as v1)"),
    BadInput("an empty --version", ("cf.ProduceColumns", "--version", ""), "cf.ProduceColumns needs --version"),
    BadInput("a version with a '/'", ("cf.ProduceColumns", "--version", "a/b"), "--version 'a/b' is not a plain"),
    BadInput("a version '..'", ("cf.ProduceColumns", "--version", ".."), "--version '..' is not a plain directory"),
    BadInput(
        "a pinned version with a '/'",
        (*PRODUCE, "--cf.ReduceEvents-version", "../x"),
        "--cf.ReduceEvents-version '../x' is not a plain directory name",
    ),
    BadInput("--workers 0", (*PRODUCE, "--workers", "0"), "--workers must be at least 1, got 0"),
    BadInput("a negative --chunk-size", (*PRODUCE, "--chunk-size", "-1"), "--chunk-size must be positive"),
    BadInput(
        "CF_TASK_PROCESSES=two in the environment",
        PRODUCE,
        "CF_TASK_PROCESSES must be a positive integer (task processes), got 'two'",
        prepare="task_processes_not_a_number",
    ),
    BadInput(
        "--branch beyond the files",
        (*CALIBRATE, "--branch", "99"),
        "--branch 99 is out of range: dataset 'tt_sl_powheg' has 2 file(s), branches 0 to 1",
    ),
    BadInput("a misspelt config", (*PRODUCE, "--config", "run2_2017"), "unknown config 'run2_2017' (did you mean"),
    BadInput(
        "a misspelt dataset",
        ("cf.ProduceColumns", "--version", "v1", "--dataset", "tt_sl_powhg"),
        "unknown dataset 'tt_sl_powhg' (did you mean 'tt_sl_powheg'?)",
    ),
    BadInput(
        "an unknown shift", (*CALIBRATE, "--shift", "jec_upp"), "unknown shift 'jec_upp' (did you mean 'jec_up'?)"
    ),
    BadInput("an unknown calibrator", (*PRODUCE, "--calibrators", "jecc"), "unknown calibrator 'jecc' (did you mean"),
    BadInput("an unknown selector", (*PRODUCE, "--selector", "defaul"), "unknown selector 'defaul' (did you mean"),
    BadInput(
        "an unknown producer",
        (*PRODUCE, "--producers", "defualt"),
        "unknown producer 'defualt' (did you mean 'default'?)",
    ),
    BadInput(
        "an unknown ML model",
        ("cf.MLTraining", "--version", "v1", "--ml-model", "tset_model"),
        "unknown ML model 'tset_model' (did you mean 'test_model'?)",
    ),
    BadInput(
        "a setting of the wrong type",
        (*TRAIN, "--ml-model-settings", "epochs=abc"),
        "ML model 'test_model': setting 'epochs=abc' is not an integer >= 1",
    ),
    BadInput(
        "an undeclared setting",
        (*TRAIN, "--ml-model-settings", "epoch=3"),
        "unknown setting 'epoch' (did you mean 'epochs'?) for ML model 'test_model', declared:",
    ),
    BadInput(
        "columnflow's tuple syntax",
        (*TRAIN, "--ml-model-settings", "layers=32;32"),
        "setting 'layers=32;32': item '32;32' is not an integer >= 1 (the value is a ':'-separated list)",
    ),
    BadInput(
        "a setting outside its range",
        (*TRAIN, "--ml-model-settings", "folds=1"),
        "setting 'folds=1' is not an integer >= 2",
    ),
    BadInput(
        "a setting without a value",
        (*TRAIN, "--ml-model-settings", "epochs"),
        "setting 'epochs' is not of the form key=value",
    ),
    BadInput(
        "a dataset the model does not train on",
        (*TRAIN, "--dataset", "dy_lep_m50_madgraph"),
        "does not train on dataset(s) dy_lep_m50_madgraph",
    ),
    BadInput(
        "an unknown inference model",
        ("cf.CreateDatacards", "--version", "v1", "--inference-model", "test_inferenc"),
        "unknown inference model 'test_inferenc' (did you mean 'test_inference'?)",
    ),
    BadInput(
        "an inference setting outside its range",
        (*DATACARDS, "--inference-model-settings", "signal_scale=-1"),
        "inference model 'test_inference': setting 'signal_scale=-1' is not a number > 0.0",
    ),
    BadInput(
        "an inference setting naming an unknown category",
        (*DATACARDS, "--inference-model-settings", "sr_category=sr_typo"),
        "unknown category 'sr_typo'",
    ),
    BadInput(
        "an unknown variable", (*HISTOGRAMS, "--variables", "htt"), "unknown variable(s) 'htt' (did you mean 'ht'?)"
    ),
    BadInput(
        "an ML variable without its model",
        (*HISTOGRAMS, "--variables", "test_model.score_hh"),
        "variable 'test_model.score_hh' is an output of ML model 'test_model': add --ml-models test_model",
    ),
    BadInput(
        "an unknown category",
        (*PLOT, "--categories", "inlc"),
        "unknown category(s) 'inlc' (did you mean 'incl'?), available:",
    ),
    BadInput("a negative --signal-scale", (*PLOT, "--signal-scale", "-1"), "--signal-scale must be a positive number"),
    BadInput("an unknown workflow", (*CALIBRATE, "--workflow", "slrum"), "unknown workflow 'slrum' (did you mean"),
    BadInput("--job-cpus 0", (*SLURM, "--job-cpus", "0"), "--job-cpus must be at least 1, got 0"),
    BadInput("--job-gpus -1", (*SLURM, "--job-gpus", "-1"), "--job-gpus must be at least 0, got -1"),
    BadInput("--max-runtime 0", (*SLURM, "--max-runtime", "0"), "--max-runtime must be positive, got 0h"),
    BadInput("--parallel-jobs 0", (*SLURM, "--parallel-jobs", "0"), "--parallel-jobs must be at least 1 (or -1"),
    BadInput(
        "a scan value of the wrong type",
        (*SCAN, "layers=abc"),
        "--scan: ML model 'test_model': setting 'layers=abc': item 'abc' is not an integer >= 1",
    ),
    BadInput(
        "a scan of an undeclared setting",
        (*SCAN, "epoch=1,2"),
        "--scan: unknown setting 'epoch' (did you mean 'epochs'?) for ML model 'test_model', declared:",
    ),
    BadInput(
        "a wrapper's unknown dataset",
        ("cf.ProduceColumnsWrapper", "--version", "v1", "--datasets", "tt_sl"),
        "unknown dataset 'tt_sl' (--datasets) in config",
    ),
    # config content
    BadInput(
        "event weights of the wrong form",
        HISTOGRAMS,
        "config 'run2_2017_nano_uhh_v11_limited': x.event_weights must be a dict of weight column -> tuple of shift",
        prepare="event_weights_as_text",
    ),
    BadInput(
        "a default producer that does not exist",
        ("cf.ProduceColumns", "--version", "v1", "--dataset", DATASET),
        "unknown producer 'no_such_producer'",
        prepare="unknown_default_producer",
    ),
    BadInput(
        "an external file with a wrong checksum",
        ("cf.BundleExternalFiles", "--config", CONFIG),
        "external file 'pileup'",
        prepare="wrong_checksum",
    ),
    BadInput(
        "a dataset whose files are missing",
        ("cf.GetDatasetLFNs", "--version", "v1", "--dataset", DATASET),
        "dataset 'tt_sl_powheg': file(s) of key",
        prepare="missing_files",
    ),
    # sandbox requirement files
    BadInput(
        "a requirement file without '# version N'",
        (*TRAIN, "--ml-model", "bad_sandbox_model"),
        "must start with a '# version N' line",
        prepare="requirements_without_version",
        failing="cf.MLTraining",
    ),
    BadInput(
        "a requirement pip cannot install",
        (*TRAIN, "--ml-model", "bad_sandbox_model"),
        "the sandbox 'venv_bad' could not be set up",
        prepare="uninstallable_requirement",
        failing="cf.MLTraining",
    ),
    # input files
    BadInput(
        "a truncated ROOT file",
        (*CALIBRATE, "--branch", "0"),
        "cannot open ROOT file",
        prepare="truncated_root_file",
    ),
    BadInput("an empty ROOT file", (*CALIBRATE, "--branch", "0"), "cannot open ROOT file", prepare="empty_root_file"),
    BadInput(
        "a parquet file without a column the producers use",
        (*PRODUCE, "--branch", "0"),
        "column 'Jet.btagDeepFlavB' (declared in config.x.objects of config 'run2_2017_nano_uhh_v11_limited') is not in",
        prepare="parquet_without_a_column",
    ),
    BadInput(
        "an infinite training feature",
        (*PREPARE, "--branch", "0"),
        "ML feature 'ht' of dataset 'tt_sl_powheg' has 1 NaN or infinite value(s)",
        prepare="infinite_feature",
    ),
    BadInput(
        "a training dataset without events",
        (*TRAIN, "--dataset", "hh_ggf_bbtautau_madgraph,tt_sl_powheg"),
        "dataset 'hh_ggf_bbtautau_madgraph' has no events with generator weights",
        prepare="dataset_without_events",
        failing="cf.ProduceColumns/*/*/hh_ggf_bbtautau_madgraph",
    ),
    BadInput(
        "a fold model without training events",
        (*TRAIN, "--dataset", "hh_ggf_bbtautau_madgraph,tt_sl_powheg"),
        "fold model 1 of ML model 'test_model' would train on no events of dataset 'hh_ggf_bbtautau_madgraph'",
        prepare="dataset_with_one_event",
    ),
    # where outputs go
    BadInput(
        "a store that cannot be written",
        PRODUCE,
        "is not writable (Operation not permitted); set CF_STORE_LOCAL to a writable directory",
        prepare="read_only_store",
    ),
    BadInput("a full disk", (*CALIBRATE, "--branch", "0"), "File too large", prepare="full_disk"),
)


# the preparations: each returns the environment of the run (and may write the bad input)


@dataclass(frozen=True)
class Prepared:
    """The environment of a case's run, and a file size limit for the full-disk case."""

    env: LawEnv
    file_size_limit: int | None = None


def analysis_override(env: LawEnv, tmp_path: Path, code: str, ml_module: str = "") -> LawEnv:
    """An environment whose law.cfg loads the template's analysis and then runs ``code`` on it (a bad config).

    ``code`` sees ``analysis`` and ``config`` (the config of :data:`CONFIG`); ``ml_module`` is added to
    ``ml_modules``.
    """
    package = tmp_path / "override"
    package.mkdir()
    header = "from analysis_template.config.analysis import analysis_template as analysis\n"
    header += f"config = analysis.get_config({CONFIG!r})\n"
    (package / "bad_analysis.py").write_text(header + textwrap.dedent(code))
    lines = []
    for original in (ROOT / "law.cfg").read_text().splitlines():
        line = "default_analysis: bad_analysis.analysis" if original.startswith("default_analysis:") else original
        lines.append(f"{line}, {ml_module}" if line.startswith("ml_modules:") and ml_module else line)
    (package / "law.cfg").write_text("\n".join(lines) + "\n")
    variables = dict(env.env)
    variables["LAW_CONFIG_FILE"] = str(package / "law.cfg")
    variables["PYTHONPATH"] = f"{package}:{variables.get('PYTHONPATH', '')}"
    return LawEnv(env=variables, store=env.store, data=env.data)


def with_sample_copy(env: LawEnv, law_run: LawRun, tmp_path: Path) -> LawEnv:
    """A copy of the data directory in which the dataset's files exist (to break one of them)."""
    law_run("cf.CreateSampleFiles", "--dataset", DATASET, env=env.env)
    return env.copy_data(tmp_path / "data")


def event_weights_as_text(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    return Prepared(analysis_override(env, tmp_path, 'config.x.event_weights = {"normalization_weight": "pu"}\n'))


def unknown_default_producer(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    return Prepared(analysis_override(env, tmp_path, 'config.x.default_producers = ("no_such_producer",)\n'))


def wrong_checksum(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    code = """
        source = config.x.external_files["pileup"]
        config.x.external_files["pileup"] = {"url": source, "sha256": "0" * 64}
    """
    return Prepared(analysis_override(env, tmp_path, code))


def missing_files(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    code = f"""
        dataset = config.get_dataset({DATASET!r})
        dataset.x.sample = None  # real files, which do not exist
        dataset.info["nominal"].keys = ["{tmp_path}/missing/nano_0.root", "{tmp_path}/missing/nano_1.root"]
    """
    return Prepared(analysis_override(env, tmp_path, code))


def bad_sandbox(env: LawEnv, tmp_path: Path, requirements: str) -> Prepared:
    """An ML model whose sandbox is built from ``requirements``."""
    sandbox_dir = tmp_path / "sandbox"
    sandbox_dir.mkdir()
    (sandbox_dir / "bad.txt").write_text(requirements)
    (sandbox_dir / "venv_bad.sh").write_text(
        f'export CF_VENV_NAME="bad_{tmp_path.name}"\n'
        f'export CF_VENV_REQUIREMENTS="{sandbox_dir}/bad.txt"\n'
        '. "$CF_BASE/sandboxes/_setup_venv.sh" || return $?\n',
    )
    model = tmp_path / "bad_models.py"
    model.write_text(
        "from ml.test import TestModel\n\n\n"
        "class BadSandboxModel(TestModel):\n"
        "    def sandbox(self, task):\n"
        f'        return "bash::{sandbox_dir}/venv_bad.sh"\n\n\n'
        'bad_sandbox_model = BadSandboxModel.derive("bad_sandbox_model")\n',
    )
    overridden = analysis_override(env, tmp_path, "", ml_module="bad_models")
    overridden.env["PYTHONPATH"] = f"{tmp_path}:{overridden.env['PYTHONPATH']}"
    overridden.env["CF_VENV_BASE"] = str(tmp_path / "venvs")
    return Prepared(overridden)


def requirements_without_version(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    return bad_sandbox(env, tmp_path, "numpy\n")


def uninstallable_requirement(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    return bad_sandbox(env, tmp_path, f"# version 1\n{tmp_path}/no_such_package_dir\n")


def truncated_root_file(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    copied = with_sample_copy(env, law_run, tmp_path)
    path = copied.data / SAMPLE
    path.write_bytes(path.read_bytes()[:20_000])
    return Prepared(copied)


def empty_root_file(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    copied = with_sample_copy(env, law_run, tmp_path)
    (copied.data / SAMPLE).write_bytes(b"")
    return Prepared(copied)


def rewrite_output(env: LawEnv, law_run: LawRun, args: tuple[str, ...], change: Callable[[pq.Table], pq.Table]) -> None:
    """Run a task, then rewrite its first parquet output with ``change`` (a bug of a producer, simulated)."""
    from tests.conftest import print_outputs

    law_run(*args, env=env.env)
    path = next(p for p in print_outputs(*args, env=env.env) if p.suffix == ".parquet")
    pq.write_table(change(pq.read_table(path)), path)


def parquet_without_a_column(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    reduce = ("cf.ReduceEvents", "--version", "v1", "--dataset", DATASET, "--branch", "0")
    rewrite_output(env, law_run, reduce, lambda table: table.drop_columns(["Jet"]))
    return Prepared(env)


def infinite_feature(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    import numpy as np
    import pyarrow as pa

    def with_inf(table: pq.Table) -> pq.Table:
        ht = table.column("ht").to_numpy().copy()
        ht[3] = np.inf
        return table.set_column(table.schema.get_field_index("ht"), "ht", pa.array(ht))

    rewrite_output(env, law_run, (*PRODUCE, "--branch", "0"), with_inf)
    return Prepared(env)


def dataset_without_events(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    code = f"""
        dataset = config.get_dataset("hh_ggf_bbtautau_madgraph")
        dataset.x.sample["kwargs"]["processes"] = {{name: 0.0 for name in dataset.x.sample["kwargs"]["processes"]}}
        dataset.info["nominal"].keys = ["{tmp_path}/empty/nano_0.root", "{tmp_path}/empty/nano_1.root"]
    """
    return Prepared(analysis_override(env, tmp_path, code))


def dataset_with_one_event(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    # 3 expected events per file give one selected event (the generator is seeded): in fold 1 of 3
    code = f"""
        dataset = config.get_dataset("hh_ggf_bbtautau_madgraph")
        dataset.x.sample["kwargs"]["processes"] = {{"hh_ggf_bbtautau": 3.0}}
        dataset.info["nominal"].keys = ["{tmp_path}/few/nano_0.root", "{tmp_path}/few/nano_1.root"]
    """
    return Prepared(analysis_override(env, tmp_path, code))


def read_only_store(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    # /sys refuses new directories even to root, for whom a chmod-ed directory is no obstacle
    store = Path("/sys/fs/cf_store")
    return Prepared(LawEnv(env={**env.env, "CF_STORE_LOCAL": str(store)}, store=store, data=env.data))


def task_processes_not_a_number(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    return Prepared(LawEnv(env={**env.env, "CF_TASK_PROCESSES": "two"}, store=env.store, data=env.data))


def full_disk(env: LawEnv, law_run: LawRun, tmp_path: Path) -> Prepared:
    law_run("cf.BundleExternalFiles", "--config", CONFIG, env=env.env)
    law_run("cf.GetDatasetLFNs", "--version", "v1", "--dataset", DATASET, env=env.env)
    return Prepared(env, file_size_limit=100_000)


PREPARATIONS: dict[str, Callable[[LawEnv, LawRun, Path], Prepared]] = {
    function.__name__: function
    for function in (
        event_weights_as_text,
        unknown_default_producer,
        wrong_checksum,
        missing_files,
        requirements_without_version,
        uninstallable_requirement,
        truncated_root_file,
        empty_root_file,
        parquet_without_a_column,
        infinite_feature,
        dataset_without_events,
        dataset_with_one_event,
        read_only_store,
        task_processes_not_a_number,
        full_disk,
    )
}


# the checks


def error_lines(output: str) -> list[str]:
    return [line.split("error: ", 1)[1] for line in output.splitlines() if "error: " in line]


def files_of(store: Path, pattern: str) -> list[Path]:
    """Every file below the store folders matching ``<analysis>/<pattern>``, hidden temporary files included."""
    if not store.is_dir():
        return []
    return [path for folder in store.glob(f"*/{pattern}") for path in folder.rglob("*") if path.is_file()]


@pytest.mark.parametrize("bad", CASES, ids=[bad.case for bad in CASES])
def test_bad_input_is_one_clear_line_and_no_output(
    bad: BadInput, fresh_law_env: LawEnv, law_run: LawRun, tmp_path: Path
) -> None:
    prepared = PREPARATIONS[bad.prepare](fresh_law_env, law_run, tmp_path) if bad.prepare else Prepared(fresh_law_env)
    result = law_run(*bad.args, env=prepared.env.env, check=False, file_size_limit=prepared.file_size_limit)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines = error_lines(output)
    assert len(lines) == 1, output[-3000:]
    assert bad.message in lines[0], lines[0]
    assert files_of(prepared.env.store, bad.failing or bad.args[0]) == []


def test_there_are_forty_cases_and_each_is_unique() -> None:
    assert len(CASES) >= 40
    assert len({bad.case for bad in CASES}) == len(CASES)
    assert all(bad.prepare in PREPARATIONS for bad in CASES if bad.prepare)


def docs_table() -> str:
    """The docs' table of the cases: what is wrong, the command, what the error line says."""
    rows = ["| what is wrong | command | the error line says |", "| --- | --- | --- |"]
    for bad in CASES:
        command = " ".join(arg if arg else "''" for arg in bad.args).replace("|", "\\|")
        message = bad.message.replace("|", "\\|")
        rows.append(f"| {bad.case} | `law run {command}` | {message} |")
    return "\n".join(rows) + "\n"


def test_the_docs_show_every_case() -> None:
    page = DOCS_PAGE.read_text()
    start, end = "<!-- cases: begin -->\n", "<!-- cases: end -->"
    assert start in page, f"{DOCS_PAGE} lacks the marker {start!r}"
    assert end in page, f"{DOCS_PAGE} lacks the marker {end!r}"
    shown = page.split(start, 1)[1].split(end, 1)[0]
    assert shown == docs_table(), f"the table of {DOCS_PAGE} differs from CASES; it should be:\n{docs_table()}"
