"""Real CMS NanoAOD through ``law run``: every NanoAOD version of coffea's sample files, RNTuple, XRootD, Run 3.

The real files are the small samples of the coffea sdist on PyPI, fetched once by ``cf.CreateSampleFiles`` (the
download is cached in ``CF_DOWNLOAD_CACHE``, see ``tests/conftest.py``). Each config of the template describes one
NanoAOD version (``config.x.objects``); a model is trained on the config's embedded sample and evaluates the real
dataset of the same config.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import LawEnv, LawOutputs, LawRun
from tests.xrootd_server import XRootDServer

pytestmark = pytest.mark.slow

#: (config, real dataset, events in the file, selected events: >= 2 jets, a lepton or tau and a fired trigger of the
#: config; the Z -> nu nu (v1) and fully hadronic tt (v15) files have no event that fired any of the triggers, the
#: v12 file stores no trigger bits and is selected without them)
REAL_DATASETS = (
    ("run2_2016_nano_v1_limited", "z_nunu_nanov1", 10, 0),
    ("run2_2018_nano_v6_limited", "dy_lep_m50_nanov6", 40, 2),
    ("run2_2018_nano_v6_limited", "data_mu_a_nanov6", 40, 1),
    ("run3_2022_preee_nano_v12_limited", "tt_sl_nanov12", 200, 81),
    ("run3_2024_nano_v15_limited", "tt_fh_nanov15", 200, 0),
)
CHAIN = ("--version", "v1", "--calibrators", "skip_jecunc", "--selector", "default", "--producers", "default")
#: One epoch is enough to evaluate: the tests check the chain, not the model's quality.
TEST_MODEL = ("--ml-model", "test_model", "--ml-model-settings", "epochs=1")


def _produce(config: str, dataset: str) -> tuple[str, ...]:
    return ("cf.ProduceColumns", *CHAIN, "--config", config, "--dataset", dataset)


def _stats(law_run: LawRun, law_outputs: LawOutputs, env: LawEnv, config: str, dataset: str) -> dict[str, float]:
    """The merged selection statistics (run here: data's ProduceColumns does not need them)."""
    args = ("cf.MergeSelectionStats", *CHAIN[:-2], "--config", config, "--dataset", dataset)
    law_run(*args, env=env.env)
    (path,) = law_outputs(*args, env=env.env)
    return json.loads(path.read_text())


def _tables(paths: list[Path]) -> list[object]:
    return [pq.read_table(path) for path in paths]


@pytest.mark.parametrize(("config", "dataset", "n_events", "n_selected"), REAL_DATASETS)
def test_chain_on_real_nanoaod(
    law_env: LawEnv,
    law_run: LawRun,
    law_outputs: LawOutputs,
    config: str,
    dataset: str,
    n_events: int,
    n_selected: int,
) -> None:
    """cf.ProduceColumns on each real file with the config of its NanoAOD version; the event counts are the file's."""
    law_run(*_produce(config, dataset), env=law_env.env)
    stats = _stats(law_run, law_outputs, law_env, config, dataset)
    assert stats["n_events"] == n_events
    assert stats["n_events_selected"] == n_selected
    (produced,) = law_outputs(*_produce(config, dataset), env=law_env.env)
    table = pq.read_table(produced)
    assert table.num_rows == n_selected
    assert {"n_jet", "n_btag", "ht", "m_bb", "category_ids", "normalization_weight"} <= set(table.column_names)


@pytest.mark.parametrize(("config", "dataset"), [(config, dataset) for config, dataset, _, _ in REAL_DATASETS])
def test_ml_evaluation_on_real_nanoaod(
    law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs, config: str, dataset: str
) -> None:
    """test_model trained on the config's embedded sample (Run 2 and Run 3 layouts) scores the real dataset."""
    train = ("cf.MLTraining", *CHAIN[:-2], *TEST_MODEL, "--config", config)
    law_run(*train, env=law_env.env, timeout=900)
    evaluate = ("cf.MLEvaluation", "--version", "v1", "--calibrators", "skip_jecunc", *TEST_MODEL)
    law_run(*evaluate, "--config", config, "--dataset", dataset, env=law_env.env, timeout=900)
    (scores,) = law_outputs(*evaluate, "--config", config, "--dataset", dataset, env=law_env.env)
    table = pq.read_table(scores)
    stats = _stats(law_run, law_outputs, law_env, config, dataset)
    assert table.num_rows == stats["n_events_selected"]
    for column in ("test_model.score_hh", "test_model.score_tt"):
        values = table.column(column.split(".")[0]).combine_chunks().field(column.split(".")[1]).to_numpy()
        assert ((values >= 0) & (values <= 1)).all()


def test_rntuple_twin_equals_the_ttree(law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> None:
    """The RNTuple twin of nano_dy.root gives the same reduced events and columns as the TTree original."""
    config = "run2_2018_nano_v6_limited"
    outputs = {}
    for dataset in ("dy_lep_m50_nanov6", "dy_lep_m50_nanov6_rntuple"):
        law_run(*_produce(config, dataset), env=law_env.env)
        reduce = ("cf.ReduceEvents", *CHAIN[:-2], "--config", config, "--dataset", dataset)
        outputs[dataset] = _tables(
            law_outputs(*reduce, env=law_env.env) + law_outputs(*_produce(config, dataset), env=law_env.env)
        )
    for ttree, rntuple in zip(outputs["dy_lep_m50_nanov6"], outputs["dy_lep_m50_nanov6_rntuple"], strict=True):
        assert rntuple.equals(ttree)


def test_xrootd_remote_files_equal_the_local_read(
    law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs, xrootd_server: XRootDServer, tmp_path: Path
) -> None:
    """The dataset whose key is a root:// URL, served by a real XRootD server, gives the local outputs."""
    config, local = "run2_2018_nano_v6_limited", "dy_lep_m50_nanov6"
    law_run(*_produce(config, local), env=law_env.env)
    xrootd_server.add_file(law_env.data / "coffea_samples" / "nano_dy.root")
    env = {**law_env.env, "CF_XROOTD_SERVER": f"127.0.0.1:{xrootd_server.port}"}
    law_run(*_produce(config, "dy_lep_m50_nanov6_xrootd"), env=env)
    for task in ("cf.ReduceEvents", "cf.ProduceColumns"):
        params = CHAIN[:-2] if task == "cf.ReduceEvents" else CHAIN
        args = (task, *params, "--config", config)
        (local_path,) = law_outputs(*args, "--dataset", local, env=law_env.env)
        (remote_path,) = law_outputs(*args, "--dataset", "dy_lep_m50_nanov6_xrootd", env=env)
        assert pq.read_table(remote_path).equals(pq.read_table(local_path))


def test_xrootd_missing_remote_file_is_one_clear_error(law_env: LawEnv, law_run: LawRun, tmp_path: Path) -> None:
    """A root:// key whose file the server does not have: one error line naming the URL, nothing written."""
    env = law_env.with_paths(store=tmp_path / "store")
    # a server for this test alone, serving an empty folder
    with XRootDServer() as empty_server:
        remote_env = {**env.env, "CF_XROOTD_SERVER": f"127.0.0.1:{empty_server.port}"}
        result = law_run(
            *_produce("run2_2018_nano_v6_limited", "dy_lep_m50_nanov6_xrootd"), env=remote_env, check=False
        )
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if "error: " in line]
    assert result.returncode != 0
    assert len(errors) == 1, output
    assert f"root://127.0.0.1:{empty_server.port}//nano_dy.root" in errors[0]
    assert len(errors[0]) < 1000
    assert "Traceback" not in output
    assert not list(env.store.rglob("*.parquet"))


def test_file_of_another_nanoaod_version_fails_naming_column_matches_and_config_entry(
    law_env: LawEnv, law_run: LawRun, tmp_path: Path
) -> None:
    """A NanoAOD v12 file in the v6 config: one line with the missing column, close names and the config entry."""
    env = law_env.with_paths(store=tmp_path / "store", data=tmp_path / "data")
    source = law_env.data / "coffea_samples" / "nano_tt_v12.root"
    if not source.is_file():
        law_run(*_produce("run3_2022_preee_nano_v12_limited", "tt_sl_nanov12"), env=law_env.env)
    (env.data / "coffea_samples").mkdir(parents=True)
    shutil.copyfile(source, env.data / "coffea_samples" / "nano_dy.root")
    result = law_run(*_produce("run2_2018_nano_v6_limited", "dy_lep_m50_nanov6"), env=env.env, check=False)
    output = result.stdout + result.stderr
    errors = [line.split("error: ", 1)[1] for line in output.splitlines() if "error: " in line]
    assert result.returncode != 0
    assert len(errors) == 1, output
    message = errors[0]
    assert len(message) < 1000
    assert message.startswith(
        "column 'Electron.mvaFall17V2Iso_WP90' (declared in config.x.objects of config 'run2_2018_nano_v6_limited')",
    )
    assert "closest existing: Electron.mvaIso_WP90, " in message
    assert message.count(", ") <= 12  # the file, the calibrated columns and at most ten close matches
    assert message.endswith("set the column in config.x.objects for this file's NanoAOD version")
    produced = {path.name for path in env.store.rglob("*") if path.is_file()}
    assert not {"sel_0.parquet", "events_0.parquet", "prod_0.parquet"} & produced


def test_check_file_lists_what_the_config_expects_and_the_file_lacks(law_env: LawEnv, law_run: LawRun) -> None:
    """cf_check_file: the v15 file against the v6 config lacks 8 columns (MET, IDs, the 2018 di-tau trigger)."""
    path = law_env.data / "coffea_samples" / "nano_tt_v15.root"
    if not path.is_file():
        law_run(*_produce("run3_2024_nano_v15_limited", "tt_fh_nanov15"), env=law_env.env)
    command = ["cf_check_file", "--config", "run2_2018_nano_v6_limited", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, env=law_env.env, check=False, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    missing = [line.split()[1] for line in result.stdout.splitlines() if line.strip().startswith("MISSING")]
    assert missing == [
        "MET.phi", "MET.pt", "Electron.mvaFall17V2Iso_WP90", "HLT.DoubleMediumChargedIsoPFTauHPS35_Trk1_eta2p1_Reg",
        "Jet.jetId",
        "Tau.idDeepTau2017v2p1VSe", "Tau.idDeepTau2017v2p1VSjet", "Tau.idDeepTau2017v2p1VSmu",
    ]  # fmt: skip
    assert "closest: Electron.mvaIso_WP90, " in result.stdout
    command[2] = "run3_2024_nano_v15_limited"
    result = subprocess.run(command, capture_output=True, text=True, env=law_env.env, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.rstrip().endswith("all columns present")


def test_check_file_with_an_unknown_config_is_one_clear_error(law_env: LawEnv) -> None:
    command = ["cf_check_file", "--config", "no_such_config", "any.root"]
    result = subprocess.run(command, capture_output=True, text=True, env=law_env.env, check=False, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown config 'no_such_config'")
    assert "run3_2024_nano_v15_limited" in result.stderr
    assert result.stdout == ""


def test_remote_key_with_an_unset_variable_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from cf.tasks.external import GetDatasetLFNs
    from cf.util import UserError

    monkeypatch.delenv("CF_XROOTD_SERVER", raising=False)
    task = GetDatasetLFNs(version="v1", config="run2_2018_nano_v6_limited", dataset="dy_lep_m50_nanov6_xrootd")
    with pytest.raises(UserError, match=r"'root://\$CF_XROOTD_SERVER//nano_dy\.root' references an undefined"):
        task.resolve_files()


def test_unknown_coffea_sample_lists_the_available_ones(tmp_path: Path) -> None:
    from cf.util import UserError
    from sample.coffea_files import download_sdist, extract_member

    with pytest.raises(
        UserError, match=r"'nano_nope\.root' is not a sample of coffea-2026\.9\.0\.tar\.gz; .*nano_dy\.root"
    ):
        extract_member(download_sdist(), "nano_nope.root", tmp_path / "x.root")
    assert not list(tmp_path.iterdir())
