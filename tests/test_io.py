"""Tests of the chunked event I/O: ROOT and parquet sources, merged chunks, atomic writers."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import re
import threading
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

from cf.columnar_util import Route, set_ak_column
from cf.io import (
    TASK_PROCESSES_ENV,
    InputFileError,
    MissingColumnError,
    OutputFileError,
    ParquetSource,
    ParquetWriter,
    RootSource,
    atomic_path,
    close_columns,
    dump_json,
    iter_event_chunks,
    load_json,
    open_source,
    resolve_columns,
    writes_in_background,
)
from cf.util import UserError
from sample.generate import create_file

N_EVENTS = 1000


@pytest.fixture(scope="module")
def nano_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A NanoAOD-layout file of 1000 tt_sl events written by the embedded sample generator."""
    path = tmp_path_factory.mktemp("nano") / "nano_0.root"
    create_file(str(path), file_index=0, processes={"tt_sl": N_EVENTS}, seed=7)
    return path


def _write_parquet(path: Path, chunks: list[ak.Array]) -> Path:
    with ParquetWriter(path) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return path


def _numbered(n: int, offset: int = 0) -> ak.Array:
    """Events with a flat ``i`` column (0..n-1 + offset) and a jagged collection of i % 3 objects."""
    i = np.arange(offset, offset + n, dtype=np.int64)
    counts = i % 3
    jets = ak.unflatten(ak.zip({"pt": np.repeat(i, counts).astype(np.float32)}), counts)
    return ak.Array({"i": i, "Jet": jets})


# --------------------------------------------------------------------------------------------------------------------
# RootSource
# --------------------------------------------------------------------------------------------------------------------


def test_root_source_routes_hide_counters(nano_file: Path) -> None:
    source = RootSource(str(nano_file))
    assert source.n_events == N_EVENTS
    assert source.path == str(nano_file)
    routes = {str(route) for route in source.routes()}
    expected = {"run", "luminosityBlock", "event", "genWeight", "Jet.pt", "Jet.jetId", "MET.pt", "PV.npvs"}
    assert expected <= routes
    assert {"Electron.mvaFall17V2Iso_WP90", "Tau.idDeepTau2017v2p1VSjet"} <= routes
    # counters such as nJet are the structure of the collections, not columns
    assert not [r for r in routes if r.split(".")[0] in {"nJet", "nElectron", "nMuon", "nTau"}]
    assert all(isinstance(route, Route) for route in source.routes())


def test_root_source_reads_collections_as_records(nano_file: Path) -> None:
    source = RootSource(str(nano_file))
    events = source.read([Route("Jet.pt"), Route("Jet.eta"), Route("MET.pt"), Route("run")], 10, 60)
    assert len(events) == 50
    assert set(ak.fields(events)) == {"Jet", "MET", "run"}
    assert ak.fields(events.Jet) == ["pt", "eta"]
    raw = uproot.open(nano_file)["Events"].arrays(["nJet", "Jet_pt", "MET_pt"], entry_start=10, entry_stop=60)
    assert ak.to_list(ak.num(events.Jet, axis=1)) == ak.to_list(raw.nJet)
    assert ak.to_list(events.Jet.pt) == ak.to_list(raw.Jet_pt)
    assert ak.to_list(events.MET.pt) == ak.to_list(raw.MET_pt)
    # reading no column still gives the right number of (empty) events
    assert len(source.read([], 0, 7)) == 7


def test_root_source_hides_per_branch_counters(tmp_path: Path) -> None:
    """Files written by uproot branch by branch (as some real NanoAOD test files) have nJet_pt-style counters."""
    path = tmp_path / "per_branch.root"
    with uproot.recreate(path) as output:
        output.mktree("Events", {"Jet_pt": "var * float32", "Jet_eta": "var * float32", "MET_pt": "float32"})
        output["Events"].extend(
            {"Jet_pt": ak.Array([[1.0, 2.0], [3.0], []]), "Jet_eta": ak.Array([[0.1, 0.2], [0.3], []]),
             "MET_pt": np.array([1.0, 2.0, 3.0])},
        )  # fmt: skip
    assert {"nJet_pt", "nJet_eta"} <= set(uproot.open(path)["Events"].keys())
    source = RootSource(str(path))
    assert sorted(str(r) for r in source.routes()) == ["Jet.eta", "Jet.pt", "MET.pt"]
    assert ak.to_list(source.read(source.routes(), 0, 3).Jet.pt) == [[1.0, 2.0], [3.0], []]


def _same_arrays(result: ak.Array, expected: ak.Array) -> None:
    """The same layout types with all parameters, values and parquet schema (with awkward's metadata)."""
    assert result.layout.form.to_dict() == expected.layout.form.to_dict()
    assert ak.to_list(result) == ak.to_list(expected)
    assert ak.to_arrow_table(result).schema.equals(ak.to_arrow_table(expected).schema, check_metadata=True)


@pytest.mark.parametrize(("start", "stop"), [(0, N_EVENTS), (10, 60), (300, 600), (999, 1000), (5, 5)])
def test_root_source_builds_collections_as_ak_zip(
    nano_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    start: int,
    stop: int,
) -> None:
    """The collections' records, built from the branches directly, are those of ``ak.zip``."""
    routes = RootSource(str(nano_file)).routes()
    result = RootSource(str(nano_file)).read(routes, start, stop)
    monkeypatch.setattr("cf.io._zip_branches", ak.zip)
    _same_arrays(result, RootSource(str(nano_file)).read(routes, start, stop))


def test_root_source_collection_of_lists_and_flat_branches_is_broadcast(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A collection whose branches are not all lists of the same lengths is zipped by ``ak.zip`` (broadcast)."""
    path = tmp_path / "mixed.root"
    with uproot.recreate(path) as output:
        output["Events"] = {
            "Jet_pt": ak.Array([[1.0, 2.0], [3.0], []]),
            "Jet_area": np.array([0.5, 0.6, 0.7]),
            "Muon_pt": ak.Array([[1.0], [], [2.0, 3.0]]),
            "Muon_eta": ak.Array([[0.1], [], [0.2, 0.3]]),
        }
    source = RootSource(str(path))
    result = source.read(source.routes(), 0, 3)
    assert ak.to_list(result.Jet.area) == [[0.5, 0.5], [0.6], []]
    monkeypatch.setattr("cf.io._zip_branches", ak.zip)
    _same_arrays(result, RootSource(str(path)).read(source.routes(), 0, 3))


def test_chunked_root_reads_equal_a_full_read(nano_file: Path) -> None:
    source = RootSource(str(nano_file))
    uses = ["Jet.*", "MET.pt", "event", "genWeight"]
    chunks = list(iter_event_chunks([source], uses, chunk_size=300))
    # memory stays bounded by the chunk size: chunks of exactly the requested size, the remainder last
    assert [(start, stop) for _, start, stop in chunks] == [(0, 300), (300, 600), (600, 900), (900, 1000)]
    assert [len(chunk) for chunk, _, _ in chunks] == [300, 300, 300, 100]
    (full, _, _), *_ = iter_event_chunks([source], uses, chunk_size=10 * N_EVENTS)
    assert len(full) == N_EVENTS
    assert ak.array_equal(ak.concatenate([chunk for chunk, _, _ in chunks]), full)
    assert ak.to_list(full.event[:3]) == [1, 2, 3]
    assert {"pt", "eta", "phi", "mass", "btagDeepFlavB", "jetId", "hadronFlavour"} == set(ak.fields(full.Jet))


def test_root_source_errors_name_the_file(tmp_path: Path, nano_file: Path) -> None:
    garbage = tmp_path / "garbage.root"
    garbage.write_bytes(b"this is not a ROOT file" * 100)
    with pytest.raises(InputFileError, match=f"cannot open ROOT file '{re.escape(str(garbage))}'"):
        open_source(str(garbage))
    missing = tmp_path / "missing.root"
    with pytest.raises(InputFileError, match=f"cannot open ROOT file '{re.escape(str(missing))}'"):
        RootSource(str(missing))
    with pytest.raises(InputFileError, match=f"ROOT file '{re.escape(str(nano_file))}' has no tree 'Other'"):
        RootSource(str(nano_file), tree_name="Other")
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 not really")
    with pytest.raises(InputFileError, match=f"cannot open parquet file '{re.escape(str(bad_parquet))}'"):
        open_source(str(bad_parquet))
    assert issubclass(InputFileError, OSError)


def test_truncated_root_file_fails_reading_naming_the_file(tmp_path: Path, nano_file: Path) -> None:
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(nano_file.read_bytes()[: nano_file.stat().st_size // 3])

    def read_all() -> None:
        source = RootSource(str(truncated))
        list(iter_event_chunks([source], ["Jet.pt", "MET.pt", "event"], chunk_size=N_EVENTS))

    with pytest.raises(InputFileError, match=r"cannot read entries 0-1000 of '.*truncated\.root'"):
        read_all()


# --------------------------------------------------------------------------------------------------------------------
# ParquetSource and merged chunks
# --------------------------------------------------------------------------------------------------------------------


def test_parquet_source_entry_ranges_across_row_groups(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "events.parquet", [_numbered(10), _numbered(10, 10), _numbered(5, 20)])
    source = open_source(str(path))
    assert isinstance(source, ParquetSource)
    assert source.n_events == 25
    assert [str(r) for r in source.routes()] == ["i", "Jet.pt"]
    full = _numbered(25)
    for start, stop in [(0, 25), (5, 22), (9, 11), (10, 20), (20, 25), (24, 25), (3, 3)]:
        part = source.read(source.routes(), start, stop)
        assert ak.to_list(part) == ak.to_list(full[start:stop]), (start, stop)
    # projected columns carry no spurious option types
    assert str(source.read([Route("Jet.pt")], 0, 25).type) == "25 * {Jet: var * {pt: float32}}"
    assert len(source.read([], 2, 9)) == 7


def test_iter_event_chunks_later_source_overrides(tmp_path: Path) -> None:
    base = _numbered(25)
    calibrated = set_ak_column(base, "Jet.pt", base.Jet.pt * 2)
    calibrated = set_ak_column(calibrated, "Jet.pt_raw", base.Jet.pt)
    first = _write_parquet(tmp_path / "base.parquet", [base])
    second = _write_parquet(tmp_path / "calib.parquet", [calibrated[:12], calibrated[12:]])
    sources = [ParquetSource(str(first)), ParquetSource(str(second))]
    chunks = list(iter_event_chunks(sources, ["i", "Jet.pt", "Jet.pt_raw"], chunk_size=7))
    assert [len(c) for c, _, _ in chunks] == [7, 7, 7, 4]
    merged = ak.concatenate([c for c, _, _ in chunks])
    assert ak.to_list(merged.i) == list(range(25))
    assert ak.to_list(merged.Jet.pt) == ak.to_list(base.Jet.pt * 2)
    assert ak.to_list(merged.Jet.pt_raw) == ak.to_list(base.Jet.pt)


def test_iter_event_chunks_root_plus_parquet(tmp_path: Path, nano_file: Path) -> None:
    root = RootSource(str(nano_file))
    (events, _, _), *_ = iter_event_chunks([root], ["Jet.pt"], chunk_size=N_EVENTS)
    overlay = _write_parquet(tmp_path / "calib.parquet", [ak.Array({"Jet": {"pt": events.Jet.pt + 1}})])
    merged = next(iter_event_chunks([root, ParquetSource(str(overlay))], ["Jet.pt", "Jet.eta"], chunk_size=400))[0]
    assert len(merged) == 400
    assert ak.to_list(merged.Jet.pt) == ak.to_list(events.Jet.pt[:400] + 1)
    assert set(ak.fields(merged.Jet)) == {"pt", "eta"}


def test_missing_uses_column_names_column_and_files(tmp_path: Path, nano_file: Path) -> None:
    root = RootSource(str(nano_file))
    message = rf"^column 'Jet\.nope' \(declared in 'uses'\) is not in {re.escape(str(nano_file))}; closest existing: "
    with pytest.raises(MissingColumnError, match=message) as error:
        list(iter_event_chunks([root], ["Jet.pt", "Jet.nope"]))
    assert "\n" not in str(error.value)
    parquet = ParquetSource(str(_write_parquet(tmp_path / "p.parquet", [_numbered(N_EVENTS)])))
    with pytest.raises(MissingColumnError, match=r"'Photon\.\*' .* is not in .*nano_0\.root, .*p\.parquet; "):
        resolve_columns([root, parquet], ["Photon.*", "i"])


def test_missing_column_names_its_origin_and_close_matches(nano_file: Path) -> None:
    root = RootSource(str(nano_file))
    origins = {"Electron.mvaIso_WP90": "config.x.objects of config 'c'", "Jet.pt": "'uses' of selector 's'"}
    with pytest.raises(MissingColumnError) as error:
        resolve_columns([root], origins)
    message = str(error.value)
    assert message.startswith("column 'Electron.mvaIso_WP90' (declared in config.x.objects of config 'c') is not in")
    assert "closest existing: Electron.mvaFall17V2Iso_WP90" in message
    assert message.endswith("; set the column in config.x.objects for this file's NanoAOD version")
    assert len(close_columns("Electron.mvaIso_WP90", [r.column for r in root.routes()])) <= 10


def test_resolve_columns_optional_and_per_source(tmp_path: Path, nano_file: Path) -> None:
    root = RootSource(str(nano_file))
    parquet = ParquetSource(str(_write_parquet(tmp_path / "p.parquet", [_numbered(N_EVENTS)])))
    per_source = resolve_columns([root, parquet], ["MET.pt", "i"], optional=["Jet.pt", "not_there"])
    assert sorted(str(r) for r in per_source[0]) == ["Jet.pt", "MET.pt"]
    assert sorted(str(r) for r in per_source[1]) == ["Jet.pt", "i"]


def test_misaligned_sources_are_an_error(tmp_path: Path, nano_file: Path) -> None:
    short = _write_parquet(tmp_path / "short.parquet", [_numbered(N_EVENTS - 1)])
    message = rf"not row-aligned: '{re.escape(str(nano_file))}' has 1000 events, '{re.escape(str(short))}' has 999"
    with pytest.raises(ValueError, match=message):
        list(iter_event_chunks([RootSource(str(nano_file)), ParquetSource(str(short))], ["Jet.pt"]))


def test_invalid_chunk_size_is_an_error(nano_file: Path) -> None:
    with pytest.raises(ValueError, match="chunk size must be positive, got 0"):
        list(iter_event_chunks([RootSource(str(nano_file))], ["Jet.pt"], chunk_size=0))


def test_empty_source_yields_one_empty_chunk(tmp_path: Path) -> None:
    path = _write_parquet(tmp_path / "empty.parquet", [_numbered(0)])
    chunks = list(iter_event_chunks([ParquetSource(str(path))], ["i"], chunk_size=10))
    assert [(len(c), start, stop) for c, start, stop in chunks] == [(0, 0, 0)]


# --------------------------------------------------------------------------------------------------------------------
# atomic outputs
# --------------------------------------------------------------------------------------------------------------------


def _default_mode() -> int:
    """The permissions of a newly created file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_parquet_writer_success_leaves_exactly_one_file(tmp_path: Path) -> None:
    destination = tmp_path / "out" / "events.parquet"
    with ParquetWriter(destination) as writer:
        writer.write(_numbered(10))
        writer.write(_numbered(5, 10))
        assert not destination.exists()  # only the hidden temporary file exists while writing
    assert writer.n_written == 15
    assert [p.name for p in destination.parent.iterdir()] == ["events.parquet"]
    assert ak.to_list(ak.from_parquet(destination).i) == list(range(15))
    # the usual permissions (0644 with umask 022), not the 0600 of a private temporary file
    assert destination.stat().st_mode & 0o777 == _default_mode()


def test_parquet_writer_exception_leaves_nothing(tmp_path: Path) -> None:
    destination = tmp_path / "events.parquet"

    class Boom(Exception):
        pass

    def write_then_fail() -> None:
        with ParquetWriter(destination) as writer:
            writer.write(_numbered(10))
            raise Boom

    with pytest.raises(Boom):
        write_then_fail()
    assert list(tmp_path.iterdir()) == []


def test_parquet_writer_keeps_previous_file_on_failure(tmp_path: Path) -> None:
    destination = _write_parquet(tmp_path / "events.parquet", [_numbered(3)])

    def write_then_fail() -> None:
        with ParquetWriter(destination) as writer:
            writer.write(_numbered(10))
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_then_fail()
    assert ak.to_list(ak.from_parquet(destination).i) == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["events.parquet"]


def test_parquet_writer_without_write_is_an_error(tmp_path: Path) -> None:
    destination = tmp_path / "events.parquet"
    with pytest.raises(ValueError, match=r"nothing was written to .*events\.parquet"), ParquetWriter(destination):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("cores", "task_processes", "expected"), [(2, None, True), (2, "2", False), (8, "4", True)])
def test_writes_in_background_when_a_core_is_left(
    monkeypatch: pytest.MonkeyPatch, cores: int, task_processes: str | None, expected: bool
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    if task_processes is None:
        monkeypatch.delenv(TASK_PROCESSES_ENV, raising=False)
    else:
        monkeypatch.setenv(TASK_PROCESSES_ENV, task_processes)
    assert writes_in_background() is expected


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_task_processes_value_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(TASK_PROCESSES_ENV, value)
    with pytest.raises(UserError, match=f"CF_TASK_PROCESSES must be a positive integer .*, got '{re.escape(value)}'"):
        writes_in_background()


def _record_writing_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of the thread of every row group written."""
    threads: list[str] = []
    write_table = pq.ParquetWriter.write_table

    def recording(self: pq.ParquetWriter, table: Any, *args: Any, **kwargs: Any) -> None:
        threads.append(threading.current_thread().name)
        write_table(self, table, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", recording)
    return threads


def _write_two_files(directory: Path) -> list[bytes]:
    """Two writers open at once, their chunks interleaved, as a fused task writes its outputs."""
    paths = [directory / "a.parquet", directory / "b.parquet"]
    with ParquetWriter(paths[0]) as first, ParquetWriter(paths[1]) as second:
        for offset in range(0, 400, 100):
            first.write(_numbered(100, offset))
            second.write(_numbered(50, offset)[["Jet"]])
    return [path.read_bytes() for path in paths]


def test_background_writes_give_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads = _record_writing_threads(monkeypatch)
    monkeypatch.setenv(TASK_PROCESSES_ENV, str(len(os.sched_getaffinity(0))))
    in_caller = _write_two_files(tmp_path / "caller")
    assert set(threads) == {threading.current_thread().name}
    threads.clear()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv(TASK_PROCESSES_ENV, "1")
    in_background = _write_two_files(tmp_path / "background")
    assert len(threads) == 8
    assert all(name.startswith("cf-parquet-writer") for name in threads)
    assert in_background == in_caller
    assert ak.to_list(ak.from_parquet(tmp_path / "background" / "a.parquet").i) == list(range(400))


def test_failed_background_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv(TASK_PROCESSES_ENV, "1")

    def disk_full(self: pq.ParquetWriter, table: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", disk_full)
    destination = tmp_path / "events.parquet"
    writer = ParquetWriter(destination)
    with pytest.raises(OutputFileError, match=r"events\.parquet"), writer:
        writer.write(_numbered(10))  # handed to the writing thread; its error comes at the next write or the end
    assert list(tmp_path.iterdir()) == []


def _write_in_child(path: Path) -> None:
    _write_parquet(path, [_numbered(10), _numbered(5, 10)])


def test_background_writes_in_a_forked_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task process forked after the parent wrote has its own writing thread (the parent's is not there)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setenv(TASK_PROCESSES_ENV, "1")
    _write_parquet(tmp_path / "parent.parquet", [_numbered(10)])
    child = multiprocessing.get_context("fork").Process(target=_write_in_child, args=(tmp_path / "child.parquet",))
    child.start()
    child.join(timeout=60)
    if child.is_alive():  # waits on a thread that is not there
        child.kill()
    assert child.exitcode == 0
    assert ak.to_list(ak.from_parquet(tmp_path / "child.parquet").i) == list(range(15))


def test_dump_json_is_atomic(tmp_path: Path) -> None:
    destination = tmp_path / "stats.json"
    dump_json(destination, {"n_events": 3, "a": [1.5]})
    assert load_json(destination) == {"a": [1.5], "n_events": 3}
    assert destination.read_text().endswith("\n")
    assert destination.stat().st_mode & 0o777 == _default_mode()
    # a value that cannot be serialised fails half way: the old file stays, no temporary file is left
    with pytest.raises(TypeError):
        dump_json(destination, {"n_events": 4, "bad": object()})
    assert json.loads(destination.read_text()) == {"a": [1.5], "n_events": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]


def test_atomic_path_removes_temporary_on_error(tmp_path: Path) -> None:
    seen: list[Path] = []

    def write_then_interrupt() -> None:
        with atomic_path(tmp_path / "x" / "out.txt") as tmp:
            Path(tmp).write_text("partial")
            seen.append(Path(tmp))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_then_interrupt()
    assert seen[0].parent == tmp_path / "x"
    assert seen[0].name.startswith(".out.txt.")
    assert list((tmp_path / "x").iterdir()) == []
