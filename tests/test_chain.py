"""End-to-end tests of the real command line: ``law run cf.ProduceColumns`` and its requirements.

The chain runs once per module in an isolated store (``law_env``); the other tests inspect its outputs or run
variations of it (a shift, another chunk size, bad parameters, broken input files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis_template.config.analysis import analysis_template
from cf.io import load_json
from sample.generate import generate_events, write_nanoaod

if TYPE_CHECKING:
    from tests.conftest import LawEnv, LawOutputs, LawRun

pytestmark = pytest.mark.slow

CONFIG = "run2_2017_nano_uhh_v11_limited"
DATASET = "tt_sl_powheg"
#: The parameters of the chain up to the selection (ReduceEvents, MergeSelectionStats, ...).
SELECTED = ("--version", "v1", "--config", CONFIG, "--dataset", DATASET, "--calibrators", "skip_jecunc",
            "--selector", "default")  # fmt: skip
PRODUCE = ("cf.ProduceColumns", *SELECTED, "--producers", "default")
PRODUCED_COLUMNS = {
    "n_jet", "n_btag", "n_electron", "n_muon", "n_tau", "ht", "m_bb", "m_ll", "category_ids", "normalization_weight",
    "pu_weight", "pu_weight_up", "pu_weight_down", "muon_weight", "muon_weight_up", "muon_weight_down",
}  # fmt: skip


@dataclass(frozen=True)
class ChainOutputs:
    """The outputs of one run of the chain."""

    produced: list[Path]
    reduced: list[Path]
    stats: Path


def _outputs(law_outputs: LawOutputs, env: dict[str, str], *params: str) -> ChainOutputs:
    """The output paths of ProduceColumns and its inputs (ReduceEvents, MergeSelectionStats) in one law call."""
    paths = law_outputs(*PRODUCE, *params, env=env, depth=1)

    def of(task: str) -> list[Path]:
        return [p for p in paths if f"/{task}/" in str(p)]

    (stats,) = of("cf.MergeSelectionStats")
    return ChainOutputs(of("cf.ProduceColumns"), of("cf.ReduceEvents"), stats)


@pytest.fixture(scope="module")
def chain(law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> ChainOutputs:
    """Runs the chain of tt_sl_powheg up to ProduceColumns once; returns its output paths."""
    law_run(*PRODUCE, env=law_env.env)
    outputs = _outputs(law_outputs, law_env.env)
    # the produced files are the task's own outputs (depth 0), the selection stats those of MergeSelectionStats
    assert law_outputs(*PRODUCE, env=law_env.env) == outputs.produced
    assert law_outputs("cf.MergeSelectionStats", *SELECTED, env=law_env.env) == [outputs.stats]
    return outputs


@pytest.fixture(scope="module")
def dataset_xsec_lumi() -> tuple[int, float, float]:
    """The dataset's number of events, the process cross section (pb) and the luminosity (1/pb)."""
    config = analysis_template.get_config(CONFIG)
    dataset = config.get_dataset(DATASET)
    xsec = dataset.processes.get_first().get_xsec(config.campaign.ecm).nominal
    return dataset.n_events, xsec, config.x.luminosity.nominal


def _read(paths: list[Path]) -> list[ak.Array]:
    return [ak.from_parquet(path) for path in paths]


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _error_lines(result_text: str) -> list[str]:
    """The texts of the error lines, in order."""
    return [line.split("error: ", 1)[1] for line in result_text.splitlines() if "error: " in line]


# --------------------------------------------------------------------------------------------------------------------
# the nominal chain
# --------------------------------------------------------------------------------------------------------------------


def test_print_output_lists_the_produced_files(chain: ChainOutputs, law_env: LawEnv) -> None:
    assert [p.name for p in chain.produced] == ["prod_0.parquet", "prod_1.parquet"]
    expected_dir = (
        law_env.store / "analysis_template" / "cf.ProduceColumns" / CONFIG / "nominal" / DATASET
        / "calib__skip_jecunc" / "sel__default" / "prod__default" / "v1"
    )  # fmt: skip
    assert all(p.parent == expected_dir for p in chain.produced)
    assert all(p.is_file() for p in [*chain.produced, *chain.reduced, chain.stats])
    assert [p.name for p in chain.reduced] == ["events_0.parquet", "events_1.parquet"]
    assert chain.stats.name == "stats.json"


def test_produced_columns_and_types(chain: ChainOutputs) -> None:
    for columns in _read(chain.produced):
        assert set(ak.fields(columns)) == PRODUCED_COLUMNS
        assert str(columns.n_jet.type.content) == "int32"
        assert str(columns.ht.type.content) == "float32"
        assert str(columns.category_ids.type.content) == "var * int32"


def test_rows_match_reduced_events_and_selection_stats(
    chain: ChainOutputs, dataset_xsec_lumi: tuple[int, float, float]
) -> None:
    produced, reduced = _read(chain.produced), _read(chain.reduced)
    assert [len(p) for p in produced] == [len(r) for r in reduced]
    stats = load_json(chain.stats)
    n_events, _, _ = dataset_xsec_lumi
    assert stats["n_files"] == 2
    assert stats["n_events"] == n_events
    assert sum(len(p) for p in produced) == stats["n_events_selected"]
    assert 0 < stats["n_events_selected"] < stats["n_events"]
    assert 0 < stats["sum_mc_weight_selected"] < stats["sum_mc_weight"] <= n_events


def test_produced_values_are_sane(chain: ChainOutputs) -> None:
    columns = ak.concatenate(_read(chain.produced))
    reduced = ak.concatenate(_read(chain.reduced))
    # the reduction keeps only selected jets, and the selection asks for two of them above 25 GeV
    assert ak.all(columns.n_jet >= 2)
    assert ak.all(columns.n_jet == ak.num(reduced.Jet, axis=1))
    assert ak.all(columns.ht > 50.0)
    assert np.allclose(ak.to_numpy(columns.ht), ak.to_numpy(ak.sum(reduced.Jet.pt, axis=1)), rtol=1e-5)
    assert ak.all(ak.any(columns.category_ids == 1, axis=1))  # every event is in the inclusive category
    assert ak.all((columns.m_bb > 0.0) | (columns.m_bb == -99999.0))
    assert ak.all(reduced.Jet.pt > 25.0)


def test_normalization_weights_sum_to_selected_cross_section(
    chain: ChainOutputs, dataset_xsec_lumi: tuple[int, float, float]
) -> None:
    stats = load_json(chain.stats)
    _, xsec, lumi = dataset_xsec_lumi
    weights = ak.to_numpy(ak.concatenate([c.normalization_weight for c in _read(chain.produced)])).astype(np.float64)
    expected = xsec * lumi * stats["sum_mc_weight_selected"] / stats["sum_mc_weight"]
    assert weights.sum() == pytest.approx(expected, rel=1e-4)
    assert np.unique(np.abs(weights)).size == 1  # |genWeight| is constant in the embedded sample


def test_rerun_of_complete_chain_does_nothing(chain: ChainOutputs, law_env: LawEnv, law_run: LawRun) -> None:
    before = {p: p.stat().st_mtime_ns for p in _all_files(law_env.store)}
    result = law_run(*PRODUCE, env=law_env.env)
    assert result.returncode == 0
    assert {p: p.stat().st_mtime_ns for p in _all_files(law_env.store)} == before
    assert "generating" not in result.stdout + result.stderr


def _stored_files(store: Path) -> list[Path]:
    """The parquet and json files of a store, relative to it."""
    return sorted(p.relative_to(store) for p in _all_files(store) if p.suffix in {".parquet", ".json"})


def _assert_same_files(store: Path, reference: Path) -> None:
    """The two stores hold the same parquet and json files with the same content (tables equal, json equal)."""
    files = _stored_files(store)
    assert files == _stored_files(reference)
    for path in files:
        if path.suffix == ".parquet":
            assert pq.read_table(store / path).equals(pq.read_table(reference / path)), path
        else:
            assert load_json(store / path) == load_json(reference / path), path


def test_fused_reduction_writes_what_the_tasks_one_by_one_write(
    chain: ChainOutputs, fresh_law_env: LawEnv, law_run: LawRun, tmp_path: Path
) -> None:
    # on an empty store, ReduceEvents runs the calibration and selection of each file itself, in one pass
    fused_env = fresh_law_env.with_paths(store=tmp_path / "fused_store")
    reduce = ("cf.ReduceEvents", *SELECTED)
    fused_run = law_run(*reduce, env=fused_env.env)
    assert "done: cf.CalibrateEvents" not in fused_run.stdout
    assert f"done: cf.ReduceEvents {CONFIG} {DATASET} branch 0" in fused_run.stdout
    # what the run did not ask for is not fused: no produced columns
    assert not any(fused_env.store.rglob("prod_*.parquet"))
    # afterwards every task of the chain is complete: nothing runs again
    rerun = law_run("cf.SelectEvents", *SELECTED, env=fused_env.env)
    assert "done:" not in rerun.stdout
    # the tasks one by one: calibration and selection first, then the reduction reads their outputs
    law_run("cf.SelectEvents", *SELECTED, env=fresh_law_env.env)
    separate_run = law_run(*reduce, env=fresh_law_env.env)
    assert "done: cf.CalibrateEvents" not in separate_run.stdout
    files = _stored_files(fused_env.store)
    assert any(p.name == "calib_0.parquet" for p in files)
    assert any(p.name == "stats_1.json" for p in files)
    _assert_same_files(fused_env.store, fresh_law_env.store)


#: The ML inputs of test_model (whose training calibrators, selector and producers are those of PRODUCE).
PREPARE = ("cf.PrepareMLEvents", "--version", "v1", "--config", CONFIG, "--dataset", DATASET, "--ml-model",
           "test_model")  # fmt: skip


def test_fused_production_writes_what_the_tasks_one_by_one_write(
    chain: ChainOutputs, fresh_law_env: LawEnv, law_run: LawRun, tmp_path: Path
) -> None:
    # the tasks one by one: the production first (which prepares no ML inputs), then the ML inputs read it back
    law_run(*PRODUCE, env=fresh_law_env.env)
    assert not any(fresh_law_env.store.rglob("mlevents_*.parquet"))
    law_run(*PREPARE, env=fresh_law_env.env)
    # on an empty store, PrepareMLEvents runs the production of each file itself, in the same pass (2 workers)
    fused_env = fresh_law_env.with_paths(store=tmp_path / "fused_store")
    fused_run = law_run(*PREPARE, "--workers", "2", env=fused_env.env)
    assert "done: cf.ProduceColumns" not in fused_run.stdout
    assert f"done: cf.PrepareMLEvents {CONFIG} {DATASET} test_model branch 1" in fused_run.stdout
    _assert_same_files(fused_env.store, fresh_law_env.store)
    assert "done:" not in law_run(*PRODUCE, env=fused_env.env).stdout
    # a run killed after storing the production of file 0 and some of its ML inputs, and before that of file 1
    produced = sorted(fused_env.store.rglob("prod_*.parquet"))
    production_time = produced[0].stat().st_mtime_ns
    ml_inputs = next(fused_env.store.rglob("mlevents_f0of3_0.parquet")).parent
    for name in [
        "mlevents_f2of3_0.parquet",
        "stats_0.json",
        "stats_1.json",
        *[f"mlevents_f{i}of3_1.parquet" for i in range(3)],
    ]:
        (ml_inputs / name).unlink()
    produced[1].unlink()
    rerun = law_run(*PREPARE, env=fused_env.env)
    # file 0 runs one by one (its production is read back, not written again), file 1 fused again
    assert f"done: cf.PrepareMLEvents {CONFIG} {DATASET} test_model branch 0" in rerun.stdout
    assert "done: cf.ProduceColumns" not in rerun.stdout
    assert produced[0].stat().st_mtime_ns == production_time
    _assert_same_files(fused_env.store, fresh_law_env.store)


def _listed_requirements(status: str) -> set[str]:
    """The task families that a ``--print-status 1`` tree lists as the root task's requirements."""
    return set(re.findall(r"[├└]──1 > (cf\.\w+)\(", status))


def test_print_status_lists_the_tasks_that_a_fusing_task_runs(fresh_law_env: LawEnv, law_run: LawRun) -> None:
    # on an empty store the reduction and the ML inputs fuse the tasks before them: the tree shows that they run
    reduce_status = law_run("cf.ReduceEvents", *SELECTED, "--print-status", "1", env=fresh_law_env.env).stdout
    assert {"cf.CalibrateEvents", "cf.SelectEvents"} <= _listed_requirements(reduce_status)
    prepare_status = law_run(*PREPARE, "--print-status", "1", env=fresh_law_env.env).stdout
    assert {"cf.ReduceEvents", "cf.ProduceColumns"} <= _listed_requirements(prepare_status)
    assert "absent" in prepare_status
    assert not any(fresh_law_env.store.rglob("*.parquet"))


def test_two_workers_write_the_same_outputs(
    chain: ChainOutputs, fresh_law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs
) -> None:
    # forked task processes for the branches, the workflows and the merged statistics in the scheduling process
    result = law_run(*PRODUCE, "--workers", "2", env=fresh_law_env.env)
    assert "summary: " in result.stdout
    outputs = _outputs(law_outputs, fresh_law_env.env)
    for path, reference in zip(outputs.produced + outputs.reduced, chain.produced + chain.reduced, strict=True):
        assert pq.read_table(path).equals(pq.read_table(reference)), path
    assert load_json(outputs.stats) == load_json(chain.stats)


# --------------------------------------------------------------------------------------------------------------------
# variations: shifts and chunk sizes
# --------------------------------------------------------------------------------------------------------------------


def test_jec_up_shift_has_its_own_path_and_larger_ht(
    chain: ChainOutputs, law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs
) -> None:
    shifted = ("--shift", "jec_up", "--calibrators", "jec")
    law_run(*PRODUCE, *shifted, env=law_env.env)
    outputs = _outputs(law_outputs, law_env.env, *shifted)
    assert all("/jec_up/tt_sl_powheg/calib__jec/" in str(p) for p in outputs.produced)
    assert set(outputs.produced).isdisjoint(chain.produced)
    assert all(p.is_file() for p in outputs.produced)
    # every jet is shifted up, so more events pass and the events in both have a larger HT
    nominal_events = ak.to_numpy(ak.concatenate(_read(chain.reduced)).event)
    shifted_events = ak.to_numpy(ak.concatenate(_read(outputs.reduced)).event)
    assert set(nominal_events) <= set(shifted_events)
    assert len(shifted_events) > len(nominal_events)
    ht_nominal = dict(zip(nominal_events, ak.to_numpy(ak.concatenate(_read(chain.produced)).ht), strict=True))
    ht_shifted = dict(zip(shifted_events, ak.to_numpy(ak.concatenate(_read(outputs.produced)).ht), strict=True))
    assert all(ht_shifted[event] > ht for event, ht in ht_nominal.items())


def test_shift_not_implemented_by_the_functions_maps_to_nominal(
    chain: ChainOutputs, law_env: LawEnv, law_outputs: LawOutputs
) -> None:
    # skip_jecunc does not implement jec_up: the outputs are the nominal ones
    assert law_outputs(*PRODUCE, "--shift", "jec_up", env=law_env.env) == chain.produced
    # data are never shifted
    data = law_outputs(*PRODUCE, "--shift", "jec_up", "--calibrators", "jec", "--dataset", "data_mu_b", env=law_env.env)
    assert all("/nominal/data_mu_b/calib__jec/" in str(p) for p in data)


def test_chunk_size_does_not_change_the_outputs(
    chain: ChainOutputs, fresh_law_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs
) -> None:
    law_run(*PRODUCE, "--chunk-size", "1000", env=fresh_law_env.env)
    outputs = _outputs(law_outputs, fresh_law_env.env)
    assert all(p.is_relative_to(fresh_law_env.store) for p in outputs.produced)
    for small, default in zip(outputs.produced + outputs.reduced, chain.produced + chain.reduced, strict=True):
        assert small.name == default.name
        assert ak.array_equal(ak.from_parquet(small), ak.from_parquet(default))
    # one row group per chunk: the smaller chunks really were used
    n_rows = pq.ParquetFile(outputs.reduced[0]).metadata.num_rows
    assert pq.ParquetFile(outputs.reduced[0]).metadata.num_row_groups == 4  # 4000 input events
    assert pq.ParquetFile(chain.reduced[0]).metadata.num_row_groups == 1
    assert n_rows == len(ak.from_parquet(chain.reduced[0]))
    assert load_json(outputs.stats) == load_json(chain.stats)


# --------------------------------------------------------------------------------------------------------------------
# bad parameters and inputs
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("branch", ["99", "2", "-2"])
def test_a_branch_out_of_range_is_one_clear_error(fresh_law_env: LawEnv, law_run: LawRun, branch: str) -> None:
    args = ("cf.CalibrateEvents", "--version", "v1", "--dataset", DATASET, "--branch", branch)
    result = law_run(*args, env=fresh_law_env.env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert _error_lines(output) == [
        f"--branch {branch} is out of range: dataset '{DATASET}' has 2 file(s), branches 0 to 1 (or -1 for all)"
    ]
    assert "Traceback" not in output
    assert not [path for path in fresh_law_env.store.rglob("*") if path.is_file()]


def test_corrupt_input_file_fails_naming_it(
    chain: ChainOutputs, law_env: LawEnv, law_run: LawRun, tmp_path: Path
) -> None:
    env = law_env.copy_data(tmp_path / "data").with_paths(store=tmp_path / "store")
    corrupt = env.data / "samples" / "run2_2017_nano_uhh_v11" / DATASET / "nano_1.root"
    assert corrupt.is_file()
    corrupt.write_bytes(b"\x00garbage\xff" * 1000)
    result = law_run(*PRODUCE, env=env.env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.count(f"error: cannot open ROOT file '{corrupt}'") == 1, output
    assert "Traceback" not in output
    produced = {p.name for p in _all_files(env.store)}
    # the intact file 0 may be calibrated, nothing is written for file 1 and nothing downstream of it
    assert "calib_1.parquet" not in produced
    assert not {"sel_1.parquet", "events_1.parquet", "stats.json", "prod_0.parquet", "prod_1.parquet"} & produced
    assert not [name for name in produced if name.startswith(".")]  # no temporary files left behind


def test_input_file_without_a_used_column_fails_naming_column_and_file(
    chain: ChainOutputs, law_env: LawEnv, law_run: LawRun, tmp_path: Path
) -> None:
    env = law_env.copy_data(tmp_path / "data").with_paths(store=tmp_path / "store")
    path = env.data / "samples" / "run2_2017_nano_uhh_v11" / DATASET / "nano_1.root"
    events = generate_events({"tt_sl": 200}, seed=102, file_index=1, is_data=False)
    write_nanoaod(path, ak.with_field(events, ak.without_field(events.Jet, "jetId"), "Jet"))
    result = law_run(*PRODUCE, env=env.env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # the message names the input file (and the calibrated columns read with it) and lists the available columns
    declared = f"(declared in config.x.objects of config '{CONFIG}')"
    assert f"error: column 'Jet.jetId' {declared} is not in {path}, " in output
    assert "; closest existing: " in output
    assert "; set the column in config.x.objects for this file's NanoAOD version" in output
    assert "Traceback" not in output
    produced = {p.name for p in _all_files(env.store)}
    # calibration does not use jetId and succeeds; the selection of file 1 fails and writes nothing
    assert {"calib_0.parquet", "calib_1.parquet"} <= produced
    assert not {"sel_1.parquet", "stats_1.json", "stats.json", "prod_1.parquet"} & produced
