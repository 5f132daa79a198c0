"""The bench (``python -m bench``): its helpers, the I/O fast paths it measures, and a smoke run so that it cannot rot.

The full bench is not part of the tests (it takes half an hour); the smoke runs use 20k events and one repetition and
write their page to a temporary path, never to docs/performance.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pytest
import uproot

from bench.check import compare_columns, compare_outputs, read_columns
from bench.common import DATASETS, data_dir, format_count, parse_count, sample_scale
from bench.measure import BenchError, run_measured, summarize
from bench.report import NOT_MEASURED, NOTES_TEMPLATE, Target, page_numbers, render, target_notes, targets
from bench.run import Bench
from bench.sample import write_file
from cf.columnar_util import Route, strip_unused_options
from cf.io import ParquetSource, ParquetWriter, RootSource
from tests.conftest import require_cf_base

#: A tiny tt_sl file: the template generator's events, written with different basket layouts.
SAMPLE_KWARGS = {"processes": {"tt_sl": 300}, "seed": 102, "is_data": False}
#: Timeout of a smoke run of the bench, in seconds.
SMOKE_TIMEOUT = 900


def test_event_counts_parse_and_format() -> None:
    assert parse_count("1M") == 1_000_000
    assert parse_count("20k") == 20_000
    assert parse_count("2.5M") == 2_500_000
    assert parse_count("250000") == 250_000
    assert format_count(8_000_000) == "8M"
    assert format_count(20_000) == "20k"
    assert format_count(1234) == "1234"
    for bad in ("", "1G", "-5", "0"):
        with pytest.raises(ValueError, match="count"):
            parse_count(bad)


def test_sample_scale_gives_the_requested_events() -> None:
    # 4 datasets x 2 files x 4000 events x scale
    assert sample_scale(1_000_000) * 4000 * 2 * len(DATASETS) == pytest.approx(1_000_000)
    assert data_dir("/w", 1_000_000, 10_000) == Path("/w/data_1M_b10k")
    assert data_dir("/w", 20_000, 0) == Path("/w/data_20k_b0")


@pytest.fixture(scope="module")
def root_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """The same 300 events in one basket per branch (0), and in baskets of 64 and of 100 entries."""
    directory = tmp_path_factory.mktemp("bench_root")
    return {size: write_file(str(directory / f"b{size}.root"), 0, SAMPLE_KWARGS, size) for size in (0, 64, 100)}


def test_sample_files_hold_the_requested_baskets(root_files: dict[int, str]) -> None:
    with uproot.open(root_files[64]) as file:
        branch = file["Events"]["Jet_pt"]
        assert branch.num_baskets == 5
        assert list(branch.entry_offsets) == [0, 64, 128, 192, 256, 300]
    with uproot.open(root_files[0]) as file:
        assert file["Events"]["Jet_pt"].num_baskets == 1
    contents = [uproot.open(path)["Events"].arrays(["Jet_pt", "MET_pt", "event"]) for path in root_files.values()]
    for other in contents[1:]:
        assert ak.array_equal(contents[0], other)


@pytest.mark.parametrize("basket_size", [0, 64, 100])
@pytest.mark.parametrize("chunk_size", [50, 64, 100, 128, 300])
def test_root_chunks_equal_a_full_read(root_files: dict[int, str], basket_size: int, chunk_size: int) -> None:
    """RootSource keeps basket-aligned reads between chunks: the chunks must still be exactly the file's entries."""
    source = RootSource(root_files[basket_size])
    routes = [Route("Jet.pt"), Route("Jet.eta"), Route("MET.pt"), Route("event")]
    with uproot.open(root_files[basket_size]) as file:
        full = file["Events"].arrays(["Jet_pt", "Jet_eta", "MET_pt", "event"])
    chunks = [source.read(routes, start, min(start + chunk_size, 300)) for start in range(0, 300, chunk_size)]
    # a second pass from the start and a jump back must not reuse stale windows
    chunks_again = [source.read(routes[:2], start, min(start + chunk_size, 300)) for start in range(0, 300, chunk_size)]
    events = ak.concatenate(chunks)
    assert ak.array_equal(events.Jet.pt, full.Jet_pt)
    assert ak.array_equal(events.Jet.eta, full.Jet_eta)
    assert ak.array_equal(events.MET.pt, full.MET_pt)
    assert ak.array_equal(events.event, full.event)
    assert ak.array_equal(ak.concatenate(chunks_again).Jet.pt, full.Jet_pt)
    assert ak.array_equal(source.read(routes, 10, 20).Jet.pt, full.Jet_pt[10:20])


def test_parquet_source_reads_what_from_parquet_reads(tmp_path: Path) -> None:
    """ParquetSource reads row groups from its open file: the same arrays as ak.from_parquet, in file order."""
    rng = np.random.default_rng(1)
    n_jets = rng.integers(0, 5, 1000)
    events = ak.zip(
        {
            "run": np.arange(1000, dtype=np.uint32),
            "Jet": ak.zip(
                {
                    "pt": ak.unflatten(rng.random(n_jets.sum()).astype(np.float32), n_jets),
                    "eta": ak.unflatten(rng.random(n_jets.sum()), n_jets),
                }
            ),
            "MET": ak.zip({"pt": rng.random(1000), "phi": rng.random(1000)}),
            "category_ids": ak.unflatten(np.arange(n_jets.sum(), dtype=np.int32), n_jets),
        },
        depth_limit=1,
    )
    path = tmp_path / "events.parquet"
    with ParquetWriter(path) as writer:
        for start in range(0, 1000, 300):
            writer.write(events[start : start + 300])
    source = ParquetSource(str(path))
    assert source._leaves is not None  # the fast path is taken for files the tasks write
    for columns, start, stop in (
        (["MET.pt", "Jet.pt", "run"], 0, 1000),
        (["category_ids", "Jet.eta"], 250, 700),
        (["Jet.eta", "Jet.pt", "MET.phi"], 900, 1000),
    ):
        routes = [Route(column) for column in columns]
        got = source.read(routes, start, stop)
        expected = strip_unused_options(ak.from_parquet(path, columns=columns)[start:stop])
        assert got.fields == expected.fields
        assert got.layout.form == expected.layout.form
        assert ak.array_equal(got, expected)


def test_measured_run_reports_time_cpu_and_rss(tmp_path: Path) -> None:
    code = "import json, numpy; a = numpy.ones(50_000_000); print(json.dumps({'events': 7}))"
    run = run_measured([sys.executable, "-c", code], os.environ, tmp_path / "ok.log")
    assert run.output == {"events": 7}
    assert run.wall > 0
    assert run.cpu > 0
    assert run.max_rss_mb > 300  # the 400 MB array
    stats = summarize([run, run])
    assert stats["n"] == 2
    assert stats["spread"] == 0
    with pytest.raises(BenchError, match="exited with 3"):
        run_measured([sys.executable, "-c", "raise SystemExit(3)"], os.environ, tmp_path / "fail.log")


def _run(wall: float, rss: float = 200.0, **output: float) -> dict[str, object]:
    return {"wall": wall, "cpu": wall, "max_rss_mb": rss, "load": 1.0, "output": output}


def _full_results() -> dict[str, Any]:
    """The results of a full run (every line at 1M, the chain lines at 8M, every ML line)."""
    return {
        "date": "2026-01-01 00:00 UTC",
        "machine": {
            "cpu": "test cpu",
            "cores": 2,
            "memory_gib": 24,
            "os": "linux",
            "python": "3.11",
            "packages": {"awkward": "2"},
            "commit": "abc",
        },
        "settings": {
            "events": 1_000_000,
            "scaling": [8_000_000],
            "reps": 2,
            "ml_reps": 4,
            "chunk_size": 50_000,
            "epochs": 5,
            "command": "python -m bench",
        },
        "load_start": [1.0, 1.0, 1.0],
        "sizes": {
            "1M": {
                "raw": [_run(2.0, events=1e6), _run(2.2, events=1e6)],
                "baseline": [_run(10.0, events=1e6), _run(10.0, events=1e6)],
                "chain": [_run(12.0, 300, events=1e6), _run(13.0, 300, events=1e6)],
                "chain_nothread": [_run(15.0, events=1e6), _run(15.0, events=1e6)],
                "chain_w2": [_run(11.0, events=1e6), _run(11.5, events=1e6)],
                "coffea": [_run(8.0, events=1e6), _run(8.2, events=1e6)],
                "chain_complete": [_run(1.5), _run(1.4)],
            },
            "8M": {
                "raw": [_run(16.0, events=8e6)],
                "baseline": [_run(90.0, events=8e6)],
                "chain": [_run(100.0, 330, events=8e6)],
                "chain_nothread": [_run(120.0, events=8e6)],
                "chain_w2": [_run(55.0, 200, events=8e6)],
                "coffea": [_run(70.0, events=8e6)],
            },
        },
        "setup_sh": [_run(0.2), _run(0.3), _run(0.2)],
        "profile": {
            "dataset": "tt_sl_powheg",
            "branch": 0,
            "file_events": 125_000,
            "repeat": 3,
            "tasks": {
                name: {"wall": wall, "cpu": wall, "runs": [wall]}
                for name, wall in (
                    ("CalibrateEvents", 0.08),
                    ("SelectEvents", 0.13),
                    ("ReduceEvents", 0.16),
                    ("ProduceColumns", 0.1),
                    ("PrepareMLEvents", 0.06),
                )
            },
            "fused": {
                "ReduceEvents": {"wall": 0.25, "cpu": 0.3, "runs": [0.25]},
                "PrepareMLEvents": {"wall": 0.14, "cpu": 0.15, "runs": [0.14]},
            },
        },
        "checks": {
            "1M": {
                "columns": {
                    "coffea_vs_chain": {
                        "events": 650_000,
                        "columns": 50,
                        "inexact": ["m_bb"],
                        "max_rel_diff": 6e-8,
                        "worst_column": "m_bb",
                        "problems": [],
                        "agrees": True,
                    }
                }
            }
        },
        "ml": {
            "train_cf": [_run(30.0, n_fit=1000, epochs=5, load_fit_seconds=20.0)],
            "train_cf_deterministic": [_run(33.0, n_fit=1000, epochs=5, load_fit_seconds=23.1)],
            "train_plain": [_run(25.0, n_fit=1000, epochs=5, load_fit_seconds=21.0)],
            "eval_onnx": [_run(5.0, events=5e5)],
            "eval_keras": [_run(12.5, events=5e5)],
            "eval_keras_in_sandbox": [_run(9.0, events=5e5)],
            "predict_plain": [_run(10.0, events=5e5)],
        },
    }


def test_report_renders_every_table_and_target() -> None:
    results = _full_results()
    page = render(results)
    assert "$" not in page.replace("$$", "")  # every placeholder was filled
    assert "test cpu" in page
    assert "### ML training (5 epochs) and evaluation (4 repetitions, interleaved)" in page
    assert "| `law run` chain, 1 worker | 80k |" in page
    assert "0.80x baseline" in page
    assert "chain peak RSS flat 1M → 8M | within ±20% | +10%" in page
    assert "MLEvaluation (ONNX) vs plain Keras `predict` | >= 2.5x | 2.00x | **not met**" in page
    assert "MLEvaluation (Keras) vs plain Keras `predict` | >= 1.0x | 0.80x | **not met**" in page
    assert "MLTraining fold (`deterministic=false`) vs plain `keras.fit` | >= 0.95x | 1.05x" in page
    assert "default (op determinism): 0.91x" in page
    assert (
        "| `cf.MLTraining` fold 0, default: TensorFlow's op determinism | 216 (152) | 23.1 / 33.0 | 0.91x (0.76x) |"
        in page
    )
    # an ML-only run (--items none) has no chain lines
    ml_only = render({**results, "sizes": {}})
    assert "MLEvaluation (Keras) vs plain Keras `predict` | >= 1.0x | 0.80x" in ml_only
    assert "| 8M | 100.0 | 80k | 8.0x (events 8x) | 330 | +10% |" in page
    # every line says whether it or the coffea peer is ahead
    assert "| 0.80x baseline, 0.17x raw | 0.65x: **coffea** ahead |" in page
    assert "| 0.81x: **coffea** ahead |" in page  # the hand-written script
    assert "| 0.26x raw | — |" in page  # the peer itself
    assert "chain, 1 worker vs coffea peer | >= 1.2x | 0.65x | **not met**" in page
    # two workers: 12.5 s / 11.25 s at 1M, 100 s / 55 s at 8M
    assert "chain, 2 workers vs 1 worker | >= 1.7x | 1.11x | **not met**" in page
    assert "chain, 2 workers vs 1 worker at 8M | >= 1.7x | 1.82x | **met**" in page
    assert "| 8M | 55.0 | 145k | 4.9x (events 8x) | 200 |" in page
    # the chain without the parquet writing thread, against the chain: 12.5 s / 15 s
    assert "| `law run` chain, 1 worker, no parquet writing thread (`CF_TASK_PROCESSES` = cores) | 67k |" in page
    assert "| 0.83x chain, 0.14x raw |" in page
    assert "`coffea` vs `chain`: the same 650,000 selected events" in page
    assert "49 columns bit-identical, 1 within float rounding (largest relative difference 6e-08, `m_bb`)" in page


def test_report_explains_each_target_with_the_runs_numbers_under_its_verdict() -> None:
    page = render(_full_results())
    assert NOT_MEASURED not in page  # every number the text quotes was measured by a full run
    notes = page[page.index("## What limits the targets") : page.index("## Sample layout")]
    notes = " ".join(notes.split()).replace("\N{MULTIPLICATION SIGN}", "x")  # one line, ratios as in the tables
    not_met, met = notes.split("### Met in this run")
    # two workers: 1.11x at 1M (not met) and 1.82x at 8M (met): the group is not met
    assert "**Chain, 2 workers vs 1 worker (≥ 1.7x)**: 1.11x at 1M and 1.82x at 8M in this run" in not_met
    # 100 s of the one-worker chain against 55 s of CPU on two cores: 100 / 27.5
    assert "the ratio cannot exceed 3.64x" in not_met
    assert "`--workers 2` is 1.33x at 1M, 2.18x at 8M" in not_met
    assert "**Chain vs raw read (≥ 0.5x)**: 0.17x" in not_met
    assert "**Keras evaluation (≥ 1.0x)**: 0.80x" in not_met
    assert "**Training (≥ 0.95x)**: 1.05x for" in met
    # the per-file table is this run's profile
    assert "(`tt_sl_powheg` file 0: 125k events)" in page
    assert "| `SelectEvents` | 0.13 |" in page
    assert "| **total, one task after the other** | **0.53** |  |" in page
    assert "| **total, as a fresh chain runs them** | **0.39** |  |" in page
    # the page's text quotes the run's times, not those of the run that wrote the template
    assert "takes 15.0 s instead of 12.5 s at 1M and 120.0 s" in page


def test_target_notes_go_under_the_verdict_of_their_group(tmp_path: Path) -> None:
    template = tmp_path / "notes.md.in"
    template.write_text(
        "<!-- ## not a note -->\n## a: First\n\nfirst at\n$size.\n\n## b: Second\n\nsecond $nothing.\n\n## c: Third\n\nx\n"
    )
    tgts = [
        Target("a1", "", "", met=True, group="a"),
        Target("a2", "", "", met=False, group="a"),
        Target("b1", "", "", met=True, group="b"),
        Target("d1", "", "", met=False, group="d"),  # a group without a note
    ]
    text = target_notes(tgts, page_numbers({"settings": {"events": 1_000_000}}), template)
    assert text == (
        "### Not met in this run\n\n- **First**: first at 1M.\n\n"
        f"### Met in this run\n\n- **Second**: second {NOT_MEASURED}."
    )


def test_every_note_explains_a_group_of_targets() -> None:
    groups = {target.group for target in targets(_full_results())}
    headings = [line for line in NOTES_TEMPLATE.read_text().splitlines() if line.startswith("## ")]
    assert headings
    assert {line[3:].partition(":")[0] for line in headings} <= groups


def _write_events(path: Path, events: dict[str, object]) -> list[str]:
    ak.to_parquet(ak.zip(events, depth_limit=1), path)
    return [str(path)]


def test_output_check_finds_every_difference(tmp_path: Path) -> None:
    """Same events and columns agree (floats within a few units of their last place); anything else is named."""
    jets = ak.Array([[40.5, 30.25], [55.0, 26.0, 25.5], [31.0, 30.0]])
    events = {
        "run": np.ones(3, dtype=np.uint32),
        "luminosityBlock": np.ones(3, dtype=np.uint32),
        "event": np.array([7, 8, 9], dtype=np.uint64),
        "Jet": ak.zip({"pt": ak.values_astype(jets, np.float32)}),
        "n_jet": np.array([2, 3, 2], dtype=np.int32),
        "m_bb": np.array([91.0, 125.0, 60.0], dtype=np.float32),
    }
    reference = read_columns(_write_events(tmp_path / "ref.parquet", events))
    assert compare_columns(reference, reference).agrees
    one_ulp = {**events, "m_bb": np.nextafter(events["m_bb"], np.float32(np.inf))}
    rounded = compare_columns(reference, read_columns(_write_events(tmp_path / "ulp.parquet", one_ulp)))
    assert rounded.agrees
    assert rounded.inexact == ["m_bb"]
    assert 0 < rounded.max_rel_diff < 1e-6
    changes = {
        "m_bb": {**events, "m_bb": events["m_bb"] * np.float32(1.001)},
        "n_jet": {**events, "n_jet": np.array([2, 3, 3], dtype=np.int32)},
        "Jet.pt": {**events, "Jet": ak.zip({"pt": ak.values_astype(jets, np.float64)})},
        "events differ": {**events, "event": np.array([7, 8, 10], dtype=np.uint64)},
        "columns missing": {key: value for key, value in events.items() if key != "n_jet"},
    }
    for expected, changed in changes.items():
        check = compare_columns(reference, read_columns(_write_events(tmp_path / "changed.parquet", changed)))
        assert not check.agrees, expected
        assert any(expected in problem for problem in check.problems), (expected, check.problems)
    fewer = {key: value[:2] for key, value in events.items()}
    outputs = compare_outputs(
        {"tt": [_write_events(tmp_path / "a.parquet", events)]}, {"tt": [_write_events(tmp_path / "b.parquet", fewer)]}
    )
    assert outputs.problems == ["tt file 0: 3 vs 2 events (1 only in the reference, 0 only in the other)"]


@pytest.mark.slow
def test_coffea_peer_selects_the_chains_events_and_columns(tmp_path: Path) -> None:
    """The harness measures the chain and the coffea peer on a tiny sample and compares their outputs (~15 s)."""
    bench = Bench(base=require_cf_base(), workdir=tmp_path, chunk_size=300, reps=1, epochs=1)
    n_events = 4000  # 500 per file: two chunks of 300 and 200
    bench.prepare_sample(n_events)
    for item in ("chain", "coffea"):
        bench.run_item(n_events, item, 0)
    checks = bench.results["checks"]["4k"]
    assert checks["coffea_agrees"]  # the same ML inputs per fold
    agreement = checks["columns"]["coffea_vs_chain"]
    assert agreement["agrees"], agreement["problems"]
    assert agreement["events"] > 1000
    assert agreement["columns"] == 50


def _smoke(tmp_path: Path, *args: str) -> tuple[str, dict[str, object]]:
    """Run the bench with a page and results under tmp_path; docs/performance.md must stay untouched."""
    base = require_cf_base()
    page_path, results_path = tmp_path / "performance.md", tmp_path / "results.json"
    docs_page = base / "docs" / "performance.md"
    before = docs_page.read_bytes() if docs_page.exists() else None
    command = [sys.executable, "-m", "bench", "--events", "20k", "--reps", "1", "--scaling", "none"]
    command += ["--workdir", str(tmp_path / "work"), "--output", str(page_path), "--results-json", str(results_path)]
    result = subprocess.run(
        [*command, *args], cwd=base, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, check=False
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert (docs_page.read_bytes() if docs_page.exists() else None) == before
    return page_path.read_text(), json.loads(results_path.read_text())


@pytest.mark.slow
def test_bench_smoke_run_of_the_chain(tmp_path: Path) -> None:
    page, results = _smoke(tmp_path, "--items", "raw,baseline,chain,chain_nothread", "--ml-items", "none")
    assert "### Targets" in page
    assert "| `law run` chain, 1 worker |" in page
    assert "| `law run` chain, 1 worker, no parquet writing thread (`CF_TASK_PROCESSES` = cores) |" in page
    runs = results["sizes"]["20k"]  # type: ignore[index]
    assert {"raw", "baseline", "chain", "chain_nothread", "chain_complete"} <= set(runs)
    # with and without the writing thread the chain writes the same values
    columns = results["checks"]["20k"]["columns"]  # type: ignore[index]
    threads = columns.get("chain_nothread_vs_chain") or columns["chain_vs_chain_nothread"]
    assert threads["agrees"]
    assert threads["max_rel_diff"] == 0
    assert all(run["output"]["events"] == 20_000 for run in runs["raw"])
    # the hand-written script and the chain wrote the same ML inputs
    assert results["checks"]["20k"]["chain_agrees"] or results["checks"]["20k"]["baseline_agrees"]  # type: ignore[index]
    assert results["setup_sh"]
    # the page's per-file times come from this run's profile of one file (20k events over 8 files)
    profile = results["profile"]  # type: ignore[index]
    assert profile["file_events"] == 2_500
    assert set(profile["tasks"]) == {
        "CalibrateEvents",
        "SelectEvents",
        "ReduceEvents",
        "ProduceColumns",
        "PrepareMLEvents",
    }
    assert set(profile["fused"]) == {"ReduceEvents", "PrepareMLEvents"}
    assert all(task["wall"] > 0 for task in [*profile["tasks"].values(), *profile["fused"].values()])
    assert "(`tt_sl_powheg` file 0: 2500 events)" in page


@pytest.mark.slow
@pytest.mark.sandbox
def test_bench_smoke_run_of_training_and_evaluation(tmp_path: Path) -> None:
    ml_items = "train,eval_onnx,eval_keras,predict_plain"
    page, results = _smoke(tmp_path, "--items", "chain", "--ml-items", ml_items, "--epochs", "1", "--ml-reps", "2")
    ml = results["ml"]  # type: ignore[index]
    assert set(ml) == {"train_cf", "train_cf_deterministic", "train_plain", "eval_onnx", "eval_keras", "predict_plain"}
    assert [len(ml[key]) for key in ("train_cf", "train_plain", "eval_onnx", "predict_plain")] == [2, 2, 2, 2]
    assert ml["train_cf"][0]["output"]["epochs"] == 1
    # the TF sandbox was entered, not timed, before the first timed training (a missing venv is built there)
    logs = tmp_path / "work" / "logs"
    first_training = min((logs / f"20k_{key}_0.log").stat().st_mtime for key in ("train_cf", "train_plain"))
    assert (logs / "20k_ml_sandbox.log").stat().st_mtime <= first_training
    assert ml["train_plain"][0]["output"]["n_fit"] == ml["train_cf"][0]["output"]["n_fit"]
    events = ml["predict_plain"][0]["output"]["events"]
    assert ml["eval_onnx"][0]["output"]["events"] == ml["eval_keras"][0]["output"]["events"] == events > 0
    assert "plain `keras.fit`" in page
