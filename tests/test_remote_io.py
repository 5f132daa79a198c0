"""RNTuple and ``root://`` (XRootD) input: the same routes and arrays as the local NanoAOD TTree.

The files are real CMS NanoAOD from coffea's test samples: ``nano_dy.root`` and its RNTuple twin
``nano_dy_rntuple.root`` (converted by ROOT), and so on. The remote tests serve them with a real XRootD server on
127.0.0.1 (``tests/xrootd_server.py``; skipped without the ``xrootd`` binary, except in CI).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa
import pytest
import uproot

import cf.io
from cf.columnar_util import Route
from cf.io import EventSource, InputFileError, RootSource, iter_event_chunks, open_source
from sample.coffea_files import download_sdist, extract_member
from tests.xrootd_server import XRootDServer, free_port

pytestmark = pytest.mark.slow

#: The TTree files that have an RNTuple twin ``<name>_rntuple.root``.
TWINS = ["nano_dy", "nano_dimuon", "nano_tree"]
CHUNK_SIZE = 16
#: Stands in for NaN before tables are compared (``Table.equals`` never finds NaN equal to NaN).
NAN_STANDIN = -987654.25
#: Seconds within which opening a file of a server that is down must fail: cf.io.REMOTE_TIMEOUT is 20 s and the
#: XRootD client checks timeouts every 15 s, so it fails after ~30 s.
DOWN_SERVER_BOUND = 40.0


@pytest.fixture(scope="session")
def coffea_sample(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``coffea_sample(name)``: the path of one of the real NanoAOD files of the coffea sdist.

    The sdist is downloaded once with pip into ``$CF_DOWNLOAD_CACHE`` (default ``$CF_DATA/downloads``) by the
    analysis' own fetcher, and each file is extracted into a temporary folder of the session.
    """
    if not (os.environ.get("CF_DOWNLOAD_CACHE") or os.environ.get("CF_DATA")):
        pytest.skip("CF_DATA is not set: run the tests after 'source setup.sh'")
    sdist = download_sdist()
    folder = tmp_path_factory.mktemp("coffea_samples")

    def extract(name: str) -> Path:
        path = folder / name
        if not path.is_file():
            extract_member(sdist, name, path)
        return path

    return extract


def _sorted_fields(events: ak.Array) -> ak.Array:
    """The events with their fields, and the fields of their collections, in name order (sources differ)."""
    columns = {}
    for name in sorted(ak.fields(events)):
        column = events[name]
        fields = ak.fields(column)
        columns[name] = column[sorted(fields)] if fields else column
    return ak.Array(columns)


def _table(events: ak.Array) -> pa.Table:
    """An arrow table of the events for exact comparison: fields in name order, NaN replaced by a stand-in."""
    return ak.to_arrow_table(ak.nan_to_num(_sorted_fields(events), nan=NAN_STANDIN, posinf=np.inf, neginf=-np.inf))


def _assert_same_events(actual: ak.Array, expected: ak.Array) -> None:
    actual_table, expected_table = _table(actual), _table(expected)
    assert actual_table.schema.equals(expected_table.schema), "the column types differ"
    assert actual_table.equals(expected_table), "the values differ"


def _read_chunked(source: EventSource, routes: list[Route]) -> ak.Array:
    chunks = [events for events, _, _ in iter_event_chunks([source], [str(r) for r in routes], CHUNK_SIZE)]
    return ak.concatenate(chunks) if len(chunks) > 1 else chunks[0]


# --------------------------------------------------------------------------------------------------------------------
# RNTuple twins
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TWINS)
def test_rntuple_twin_reads_like_the_ttree(coffea_sample: Callable[[str], Path], name: str) -> None:
    tree = open_source(str(coffea_sample(f"{name}.root")))
    ntuple = open_source(str(coffea_sample(f"{name}_rntuple.root")))
    assert isinstance(ntuple, RootSource)
    assert ntuple.n_events == tree.n_events
    routes = tree.routes()
    assert sorted(map(str, ntuple.routes())) == sorted(map(str, routes))
    assert len(set(ntuple.routes())) == len(ntuple.routes())
    # the storage of the converted collections and the counters are no columns
    assert not [r for r in ntuple.routes() if r.fields[0].startswith("_") or r.column in {"nJet", "nMuon"}]
    assert {"run", "event", "Jet.pt", "Muon.pt", "MET.pt"} <= {r.column for r in ntuple.routes()}

    expected = _read_chunked(tree, routes)
    _assert_same_events(_read_chunked(ntuple, routes), expected)
    # a full read and an unaligned range of a fresh source agree with the chunks
    _assert_same_events(RootSource(str(coffea_sample(f"{name}_rntuple.root"))).read(routes, 0, tree.n_events), expected)
    start, stop = 3, min(tree.n_events, 27)
    _assert_same_events(
        RootSource(str(coffea_sample(f"{name}_rntuple.root"))).read(routes, start, stop), expected[start:stop]
    )


def test_rntuple_jagged_columns_keep_their_types(coffea_sample: Callable[[str], Path]) -> None:
    tree = RootSource(str(coffea_sample("nano_dy.root")))
    ntuple = RootSource(str(coffea_sample("nano_dy_rntuple.root")))
    routes = [Route("Jet.pt"), Route("Jet.jetId"), Route("Muon.charge"), Route("run"), Route("HLT.IsoMu24")]
    events = ntuple.read(routes, 5, 21)
    assert str(events.type) == str(tree.read(routes, 5, 21).type)
    assert str(events.Jet.type) == "16 * var * {pt: float32, jetId: int32}"
    assert ak.to_list(ak.num(events.Jet)) == ak.to_list(ak.num(tree.read(routes, 5, 21).Jet))


def test_rntuple_errors_name_the_file(coffea_sample: Callable[[str], Path], tmp_path: Path) -> None:
    special = coffea_sample("nano_dy_SpecialTree_rntuple.root")  # its RNTuple is called NotEvents
    with pytest.raises(InputFileError, match=f"ROOT file '{special}' has no tree 'Events'"):
        open_source(str(special))
    assert RootSource(str(special), tree_name="NotEvents").n_events == 40
    truncated = tmp_path / "truncated_rntuple.root"
    truncated.write_bytes(coffea_sample("nano_dy_rntuple.root").read_bytes()[:20000])
    with pytest.raises(InputFileError, match=f"'{truncated}'"):
        RootSource(str(truncated)).read([Route("Jet.pt")], 0, 40)


def test_empty_rntuple(coffea_sample: Callable[[str], Path]) -> None:
    source = open_source(str(coffea_sample("nano_dy_empty_rntuple.root")))
    assert source.n_events == 0
    chunks = list(iter_event_chunks([source], ["Jet.pt", "run"]))
    assert len(chunks) == 1
    assert len(chunks[0][0]) == 0


def test_rntuple_with_nested_collections(tmp_path: Path) -> None:
    """An RNTuple as uproot writes it (``ak.zip`` collections as record fields): routes ``Jet.pt`` too."""
    path = tmp_path / "nested_rntuple.root"
    n_events = 50
    counts = np.arange(n_events) % 4
    jets = ak.unflatten(
        ak.zip({"pt": np.arange(counts.sum(), dtype=np.float32), "eta": np.zeros(counts.sum())}), counts
    )
    met = ak.zip({"pt": np.arange(n_events, dtype=np.float64), "phi": np.ones(n_events)})
    with uproot.recreate(path) as file:
        file["Events"] = {"run": np.arange(n_events, dtype=np.uint32), "Jet": jets, "MET": met}
    source = open_source(str(path))
    assert sorted(map(str, source.routes())) == ["Jet.eta", "Jet.pt", "MET.phi", "MET.pt", "run"]
    events = _read_chunked(source, [Route("Jet.pt"), Route("MET.pt"), Route("run")])
    assert ak.to_list(events.Jet.pt) == ak.to_list(jets.pt)
    assert ak.to_list(events.MET.pt) == ak.to_list(met.pt)
    assert str(events.Jet.pt.type) == f"{n_events} * var * float32"


# --------------------------------------------------------------------------------------------------------------------
# XRootD
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["nano_dy.root", "nano_dy_rntuple.root"])
def test_xrootd_file_reads_like_the_local_file(
    xrootd_server: XRootDServer,
    coffea_sample: Callable[[str], Path],
    name: str,
) -> None:
    local_path = coffea_sample(name)
    xrootd_server.add_file(local_path)
    url = xrootd_server.url(name)
    local = open_source(str(local_path))
    remote = open_source(url)
    assert remote.path == url
    assert remote.n_events == local.n_events
    routes = local.routes()
    assert sorted(map(str, remote.routes())) == sorted(map(str, routes))
    expected = local.read(routes, 0, local.n_events)
    _assert_same_events(remote.read(routes, 0, remote.n_events), expected)
    # the remote RNTuple also equals the local TTree
    tree = open_source(str(coffea_sample("nano_dy.root")))
    _assert_same_events(_read_chunked(remote, routes), tree.read(routes, 0, tree.n_events))


def _open_bounded(url: str, bound: float) -> tuple[BaseException | None, float]:
    """Open ``url`` in a daemon thread; the error and the seconds it took. Fails the test after ``bound`` s."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            open_source(url)
        except BaseException as error:  # noqa: BLE001 (handed to the test)
            outcome["error"] = error

    start = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound)
    elapsed = time.monotonic() - start
    if thread.is_alive():
        pytest.fail(f"opening '{url}' did not fail within {bound} s")
    return outcome.get("error"), elapsed


def _assert_good_message(error: BaseException | None, url: str) -> None:
    assert isinstance(error, InputFileError), f"expected an InputFileError, got {error!r}"
    message = str(error)
    assert url in message
    assert "\n" not in message
    assert len(message) < 1000


def test_missing_remote_file(xrootd_server: XRootDServer) -> None:
    url = xrootd_server.url("does/not/exist.root")
    error, elapsed = _open_bounded(url, DOWN_SERVER_BOUND)
    _assert_good_message(error, url)
    assert "no such file" in str(error).lower()
    assert elapsed < 10


def test_stopped_server_fails_in_bounded_time(coffea_sample: Callable[[str], Path]) -> None:
    with XRootDServer() as server:
        server.add_file(coffea_sample("nano_dy.root"))
        url = server.url("nano_dy.root")
        assert open_source(url).n_events == 40
    assert not server.running
    # connections to the stopped server are refused and retried by the client until cf.io.REMOTE_TIMEOUT
    error, elapsed = _open_bounded(url, DOWN_SERVER_BOUND)
    _assert_good_message(error, url)
    assert elapsed < DOWN_SERVER_BOUND


def test_unused_port_fails_in_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # a shorter timeout than the default keeps the test short; the stopped-server test checks the default
    monkeypatch.setattr(cf.io, "REMOTE_TIMEOUT", 5)
    url = f"root://127.0.0.1:{free_port()}//nano_dy.root"
    error, elapsed = _open_bounded(url, DOWN_SERVER_BOUND)
    _assert_good_message(error, url)
    assert elapsed < 30
