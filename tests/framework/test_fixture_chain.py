"""The framework's task chain on the fixture analysis, through the real command line (``law run``).

``cf.CreateHistograms`` runs once per module for the simulated and the data dataset (which runs the chain from
``cf.GetDatasetLFNs`` to ``cf.ProduceColumns``); the tests inspect the outputs. Only ``cf`` and the fixture
analysis are imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import awkward as ak
import hist
import numpy as np
import pytest

from cf.io import load_json
from cf.tasks.histograms import load_histograms
from tests.framework.fixture_analysis.config import (
    CONFIG_NAME,
    DATA_DATASET,
    LUMINOSITY,
    SIM_DATASET,
    SIM_XSEC,
    fixture_config,
)

if TYPE_CHECKING:
    from tests.conftest import LawEnv, LawOutputs, LawRun

pytestmark = pytest.mark.slow

#: The chain's parameters up to the production (the dataset is added per run).
PRODUCED = (
    "--version", "v1", "--config", CONFIG_NAME, "--calibrators", "fixture_jet_scale", "--selector", "fixture_jets",
    "--producers", "fixture_default",
)  # fmt: skip
PRODUCED_COLUMNS = {"n_jet", "ht", "category_ids", "normalization_weight"}


@dataclass(frozen=True)
class DatasetOutputs:
    """The output files of the chain of one dataset."""

    produced: list[Path]
    reduced: list[Path]
    stats: list[Path]  # the merged selection stats, required by fixture_weight for simulation only
    histograms: list[Path]


def _outputs(law_outputs: LawOutputs, env: dict[str, str], dataset: str) -> DatasetOutputs:
    """The outputs of CreateHistograms and of its inputs (ProduceColumns, ReduceEvents, MergeSelectionStats)."""
    paths = law_outputs("cf.CreateHistograms", *PRODUCED, "--dataset", dataset, env=env, depth=2)

    def of(task: str) -> list[Path]:
        return [path for path in paths if f"/{task}/" in str(path)]

    return DatasetOutputs(
        of("cf.ProduceColumns"), of("cf.ReduceEvents"), of("cf.MergeSelectionStats"), of("cf.CreateHistograms")
    )


@pytest.fixture(scope="module")
def chain(fixture_env: LawEnv, law_run: LawRun, law_outputs: LawOutputs) -> dict[str, DatasetOutputs]:
    """Runs the chain up to CreateHistograms for both datasets; their output files by dataset name."""
    outputs = {}
    for dataset in (SIM_DATASET, DATA_DATASET):
        law_run("cf.CreateHistograms", *PRODUCED, "--dataset", dataset, env=fixture_env.env)
        outputs[dataset] = _outputs(law_outputs, fixture_env.env, dataset)
    return outputs


def _read(paths: list[Path]) -> ak.Array:
    return ak.concatenate([ak.from_parquet(path) for path in paths])


def _error_messages(output: str) -> list[str]:
    """The texts of the one-line errors (``error: ...``) of a law run's output."""
    return [line.split("error: ", 1)[1] for line in output.splitlines() if "error: " in line]


def test_outputs_are_at_the_store_paths(chain: dict[str, DatasetOutputs], fixture_env: LawEnv) -> None:
    sim = chain[SIM_DATASET]
    expected_dir = (
        fixture_env.store / "fixture_analysis" / "cf.ProduceColumns" / CONFIG_NAME / "nominal" / SIM_DATASET
        / "calib__fixture_jet_scale" / "sel__fixture_jets" / "prod__fixture_default" / "v1"
    )  # fmt: skip
    assert sim.produced == [expected_dir / "prod_0.parquet", expected_dir / "prod_1.parquet"]
    assert [path.name for path in sim.reduced] == ["events_0.parquet", "events_1.parquet"]
    assert [path.name for path in sim.histograms] == ["hists_0.pickle", "hists_1.pickle"]
    assert all(path.is_file() for path in [*sim.produced, *sim.reduced, *sim.stats, *sim.histograms])


def test_defaults_come_from_law_cfg_and_the_config(
    chain: dict[str, DatasetOutputs], fixture_env: LawEnv, law_outputs: LawOutputs
) -> None:
    # law.cfg names the config and the dataset, the config its calibrators, selector and producers
    assert law_outputs("cf.ProduceColumns", "--version", "v1", env=fixture_env.env) == chain[SIM_DATASET].produced


def test_produced_columns_follow_the_declarations(chain: dict[str, DatasetOutputs]) -> None:
    sim = chain[SIM_DATASET]
    produced, reduced = _read(sim.produced), _read(sim.reduced)
    assert set(produced.fields) == PRODUCED_COLUMNS
    assert str(produced.n_jet.type.content) == "int32"
    assert str(produced.category_ids.type.content) == "var * int32"
    assert len(produced) == len(reduced)
    # the reduction keeps the selected jets only, and the selection asks for one of them
    assert ak.all((reduced.Jet.pt > 20.0) & (abs(reduced.Jet.eta) < 2.4))
    assert ak.all(produced.n_jet == ak.num(reduced.Jet, axis=1))
    assert ak.all(produced.n_jet >= 1)
    assert np.allclose(ak.to_numpy(produced.ht), ak.to_numpy(ak.sum(reduced.Jet.pt, axis=1)), rtol=1e-6)
    expected_ids = [[1, 2] if n >= 2 else [1] for n in ak.to_list(produced.n_jet)]
    assert ak.to_list(produced.category_ids) == expected_ids


def test_selection_stats_and_normalization_weight(chain: dict[str, DatasetOutputs]) -> None:
    sim = chain[SIM_DATASET]
    (stats_path,) = sim.stats
    stats = load_json(stats_path)
    assert stats["n_files"] == 2
    assert stats["n_events"] == fixture_config.get_dataset(SIM_DATASET).n_events
    assert 0 < stats["n_events_selected"] == len(_read(sim.produced)) < stats["n_events"]
    weights = ak.to_numpy(_read(sim.produced).normalization_weight).astype(np.float64)
    expected = SIM_XSEC * LUMINOSITY * stats["sum_mc_weight_selected"] / stats["sum_mc_weight"]
    assert weights.sum() == pytest.approx(expected, rel=1e-5)


def test_data_reads_no_simulation_columns(chain: dict[str, DatasetOutputs]) -> None:
    data = chain[DATA_DATASET]
    assert all(f"/nominal/{DATA_DATASET}/" in str(path) for path in data.produced)
    assert "genWeight" not in _read(data.reduced).fields
    assert ak.all(_read(data.produced).normalization_weight == 1.0)
    assert data.stats == []  # the requires hook of fixture_weight asks for them for simulation only


def test_histograms_are_filled_per_category_with_the_event_weights(chain: dict[str, DatasetOutputs]) -> None:
    sim = chain[SIM_DATASET]
    produced = _read(sim.produced)
    first, second = (load_histograms(str(path)) for path in sim.histograms)
    assert set(first) == set(second) == {"n_jet", "ht", "jet1_pt"}
    n_jet = first["n_jet"] + second["n_jet"]
    weights = ak.to_numpy(produced.normalization_weight).astype(np.float64)
    two_jets = ak.to_numpy(produced.n_jet) >= 2
    inclusive = n_jet[{"category": hist.loc(1), "shift": hist.loc("nominal")}]
    assert inclusive.sum().value == pytest.approx(weights.sum(), rel=1e-5)
    in_two_jets = n_jet[{"category": hist.loc(2), "shift": hist.loc("nominal")}]
    assert in_two_jets.sum().value == pytest.approx(weights[two_jets].sum(), rel=1e-5)


def test_a_shift_the_calibrator_implements_has_its_own_outputs(
    chain: dict[str, DatasetOutputs], fixture_env: LawEnv, law_outputs: LawOutputs
) -> None:
    shifted = law_outputs("cf.ProduceColumns", *PRODUCED, "--shift", "jet_up", env=fixture_env.env)
    assert len(shifted) == 2
    assert all(f"/{CONFIG_NAME}/jet_up/{SIM_DATASET}/" in str(path) for path in shifted)
    # data are never shifted
    data = law_outputs(
        "cf.ProduceColumns", *PRODUCED, "--shift", "jet_up", "--dataset", DATA_DATASET, env=fixture_env.env
    )
    assert data == chain[DATA_DATASET].produced


#: Per parameter, the kind of name and the names the fixture analysis registers (all of them, and no other).
BAD_NAME_CASES = {
    "--producers": ("producer", "fixture_categories, fixture_default, fixture_features, fixture_weight"),
    "--selector": ("selector", "fixture_jets"),
    "--calibrators": ("calibrator", "fixture_jet_scale, fixture_jet_scale_x2"),
    "--dataset": ("dataset", "fixture_data, fixture_sim"),
}


@pytest.mark.parametrize("parameter", list(BAD_NAME_CASES))
def test_a_bad_name_is_one_line_error_listing_the_fixture_names(
    fixture_env: LawEnv, law_run: LawRun, tmp_path: Path, parameter: str
) -> None:
    kind, available = BAD_NAME_CASES[parameter]
    where = f" in config '{CONFIG_NAME}'" if kind == "dataset" else ""
    env = fixture_env.with_paths(store=tmp_path / "store")
    args = [*PRODUCED, "--dataset", SIM_DATASET]
    args[args.index(parameter) + 1] = "no_such_name"
    result = law_run("cf.ProduceColumns", *args, env=env.env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert _error_messages(output) == [f"unknown {kind} 'no_such_name'{where}, available: {available}"], output
    assert "Traceback" not in output
    assert not any(path.is_file() for path in env.store.rglob("*"))
